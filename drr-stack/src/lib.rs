//! Typed stacks of one PostgreSQL primary and delayed streaming replicas.
//!
//! `drr-stack` is the tooling behind `cargo xtask`: a project declares its
//! stack as a [`spec::StackSpec`] value and gets every generated file and every
//! stack command from it.

#![deny(missing_docs)]

pub mod bench;
pub mod cli;
pub mod codegen;
pub mod command;
pub mod compose;
pub mod env;
pub mod lag;
pub mod native;
pub mod pg;
pub mod probe;
pub mod progress;
pub mod project;
pub mod render;
pub mod secrets;
pub mod spec;
pub mod stack;
pub mod status;
pub mod test_command;
