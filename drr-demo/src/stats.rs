//! `GET /stats`: the router's counters per node, to see where reads went.

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use crate::state::AppState;

/// One node's counters, as `GET /stats` returns them.
#[derive(Debug, Clone, Serialize)]
pub struct NodeCounters {
    /// The node's name.
    pub name: String,
    /// `primary` or `replica`.
    pub role: String,
    /// Reads served, fallbacks and pinned reads included.
    pub reads: u64,
    /// Writes served.
    pub writes: u64,
    /// Reads sent to the primary by pin mode.
    pub pinned_reads: u64,
    /// Reads the primary served because no replica could.
    pub fallbacks: u64,
    /// Read-your-writes reads that waited for this replica.
    pub waits: u64,
    /// Total time of those waits, in milliseconds.
    pub wait_ms: u128,
    /// Replay lag at the last check, in milliseconds (replicas).
    pub lag_ms: Option<u128>,
    /// Whether the last check reached the node.
    pub reachable: bool,
}

/// `GET /stats`: 200 with every node's counters, the primary first.
pub async fn stats(State(state): State<AppState>) -> Json<Vec<NodeCounters>> {
    let nodes = state
        .router
        .stats()
        .nodes
        .into_iter()
        .map(|node| NodeCounters {
            role: node.role.to_string(),
            reads: node.reads,
            writes: node.writes,
            pinned_reads: node.pinned_reads,
            fallbacks: node.fallbacks.total(),
            waits: node.waits,
            wait_ms: node.wait_time.as_millis(),
            lag_ms: node.health.lag.map(|lag| lag.as_millis()),
            reachable: node.health.reachable,
            name: node.name,
        })
        .collect();
    Json(nodes)
}
