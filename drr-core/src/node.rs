//! One database server as the router sees it: its pool, its health, and its
//! counters.

use std::sync::Arc;
use std::time::Duration;

use crate::functions::Verdicts;
use crate::health::Health;
use crate::stats::Counters;

/// Which node: its index in the configuration's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NodeId(pub(crate) usize);

/// A node: its name, its pool, how the monitor connects to it, its health,
/// its counters, and the volatility of functions it was asked about. Its
/// role is the cluster's to say ([`Cluster::role`](crate::cluster::Cluster::role)):
/// it may change.
pub(crate) struct Node {
    pub(crate) name: Arc<str>,
    pub(crate) pool: deadpool_postgres::Pool,
    /// How to connect, for the monitor's own connection.
    pub(crate) pg: tokio_postgres::Config,
    pub(crate) health: Health,
    pub(crate) counters: Counters,
    /// What the node said about the functions looked up there.
    pub(crate) functions: Verdicts,
}

impl Node {
    /// Keeps reads away from the node for `duration` from the first
    /// failure of an outage (see [`Health::ban`]).
    pub(crate) fn ban(&self, now_ms: u64, duration: Duration) {
        if self.health.ban(now_ms, duration) {
            self.counters.ban();
            tracing::warn!(node = %self.name, ?duration, "node unreachable: banned");
        }
    }
}
