//! Network faults on demand, in Toxiproxy's terms: a user-space TCP proxy
//! on the links a spec opts in (applications → node, replica → primary),
//! with latency, jitter, bandwidth and partitions per link, set by
//! `cargo xtask net`/`partition`/`heal` or by a Toxiproxy client.
//!
//! Why not `tc netem`: the kernels drr runs on often lack it. Why not the
//! `noxious` crate (a Rust port of Toxiproxy): its last release (1.0.4)
//! is years old, builds on tokio-util 0.6 and rand 0.8 next to this
//! workspace's current ones, carries mocking crates as runtime
//! dependencies, and keeps its HTTP API and persistence in a separate
//! server binary; drr needs the proxy embedded in its own process model
//! (state directory, server user, `up`/`down`), which a small tokio proxy
//! with Toxiproxy's semantics gives in a few hundred lines.
//!
//! `toxic.rs` (what toxics are and do, pure), `admit.rs` (who may
//! connect to a link listening beyond loopback), `faults.rs` (the commands'
//! edits, pure), `files.rs` (the proxy's files), `proxy.rs` (one link's
//! TCP proxy), `daemon.rs` (the proxy process), `api.rs` (the Toxiproxy
//! HTTP API subset), `launch.rs` (starting and stopping the process),
//! `command.rs` (the commands).

pub mod admit;
mod api;
pub mod command;
pub mod daemon;
pub mod faults;
pub mod files;
pub mod launch;
mod proxy;
pub mod toxic;

pub use command::{NetArgs, PartitionArgs};
pub use files::NetDir;
