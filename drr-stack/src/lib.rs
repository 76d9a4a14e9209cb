//! Typed stacks of one PostgreSQL primary and delayed streaming replicas.
//!
//! `drr-stack` is the tooling behind `cargo xtask`: a project declares its
//! stack as a [`spec::StackSpec`] value and gets every generated file and
//! every stack command from it. A workspace's whole `xtask/src/main.rs`:
//!
//! ```no_run
//! use std::time::Duration;
//! use drr_stack::spec::{Node, Replica, Role, StackSpec};
//!
//! fn main() -> std::process::ExitCode {
//!     let spec = StackSpec::new("shop", 15)
//!         .primary(Node::new("primary", 15432))
//!         .replica(Replica::new("replica1", 15433).delay(Duration::from_millis(3000)))
//!         .role(Role::login("shop", "pass").createdb())
//!         .database("shop", "shop");
//!     drr_stack::cli::main(spec, concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
//! }
//! ```
//!
//! # Stable surface
//!
//! [`spec`] (the typed spec), [`cli::main`], [`project::Project`],
//! [`codegen`] (`run`, `check`), [`env`] (connection variables), [`lag`],
//! [`probe`] (`measure` and its report types) and [`status`]. The backends
//! ([`native`], [`compose`], [`stack`]) and the helpers they share are public
//! so that tests and benchmarks can drive stacks with their own specs and
//! directories; they may change between minor versions. [`testing`] gives
//! tests and benchmarks throw-away stacks of their own.

#![deny(missing_docs)]

pub mod cli;
pub mod codegen;
pub mod compose;
pub mod env;
pub mod external;
pub mod failover;
pub mod host;
pub mod lag;
pub mod native;
pub mod net;
pub mod probe;
pub mod project;
pub mod psql;
mod readiness;
pub mod render;
pub mod scaffold;
mod server_log;
pub mod spec;
pub mod stack;
pub mod status;
pub mod testing;
pub mod topology;

#[doc(hidden)]
pub mod command;
#[doc(hidden)]
pub mod pg;
#[doc(hidden)]
pub mod progress;
#[doc(hidden)]
pub mod secrets;

mod bench;
mod test_command;
