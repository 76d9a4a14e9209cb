//! Read/write routing for PostgreSQL read replicas.
#![deny(missing_docs)]

pub use classify::{Classification, PRIMARY_HINT, REPLICA_HINT, Reason, classify};
pub use client::{NodeClient, Transaction};
pub use config::{Balance, Consistency, Fallback, MaxLag, RouterConfig};
pub use error::{Error, Result};
pub use lsn::{Lsn, LsnToken, ParseLsnError};
pub use node::{HealthSnapshot, Role};
pub use router::{Route, Router};
pub use session::Session;
pub use stats::{Fallbacks, NodeStats, Stats};

pub mod env;
pub mod wal;

mod balance;
mod classify;
mod client;
mod config;
mod error;
mod lsn;
mod monitor;
mod node;
mod route;
mod router;
mod session;
mod stats;
