//! What a stack meets on this machine, whichever backend runs it: the
//! Postgres binaries installed here (for the native servers and for `psql`),
//! the unprivileged user servers run as when drr runs as root, and who
//! holds a port, and the directories drr may keep stacks in.
//!
//! **Architecture Invariant:** the backends share this layer and never
//! import each other; nothing here starts a server or a container.

mod binaries;
pub mod dirs;
pub mod ports;
mod user;

pub use binaries::{BINDIR_ENV, Binaries};
pub use user::{SERVER_USER_ENV, ServerUser, give};
