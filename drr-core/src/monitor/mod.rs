//! The health and lag monitor: a background task that checks every node at
//! an interval on its own connections (never the pools', so a busy pool
//! cannot make a healthy node look dead).
//!
//! Lag in bytes is the primary's `pg_current_wal_lsn()` minus the replica's
//! replay position. Lag in time is *not* `now() - pg_last_xact_replay_timestamp()`,
//! which keeps growing while the primary is idle: it is how long ago the
//! primary first wrote past the replica's replay position, from a short
//! history of the primary's positions. A replica that has replayed
//! everything has zero lag, however idle the primary.

mod probe;

use std::sync::{Arc, Weak};

use tokio::task::{JoinHandle, JoinSet};

use crate::cluster::Cluster;
use crate::health::CheckFailure;
use crate::node::Node;
use crate::wal::{self, ReplayState};

use probe::probe;

/// Runs [`check`] every interval until the cluster is dropped.
pub(crate) fn spawn(weak: Weak<Cluster>) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let Some(interval) = weak.upgrade().map(|cluster| cluster.config.check_interval) else {
                return;
            };
            tokio::time::sleep(interval).await;
            let Some(cluster) = weak.upgrade() else {
                return;
            };
            check(&cluster).await;
        }
    })
}

/// Checks the primary, then every replica at once, and records what it
/// finds.
pub(crate) async fn check(cluster: &Arc<Cluster>) {
    let mut monitor = cluster.monitor.lock().await;
    let timeout = cluster.config.check_timeout;

    let (client, primary) = probe(
        monitor.primary.take(),
        &cluster.primary,
        timeout,
        wal::write_position,
    )
    .await;
    monitor.primary = client;
    let now = cluster.clock.now_ms();
    match primary {
        Ok(lsn) => {
            cluster.primary.health.record_check(false, 0);
            if let Ok(mut history) = cluster.history.lock() {
                history.push(now, lsn);
            }
        }
        Err(failure) => record_failure(&cluster.primary, failure),
    }

    let mut checks = JoinSet::new();
    for (i, slot) in monitor.replicas.iter_mut().enumerate() {
        let client = slot.take();
        let cluster = cluster.clone();
        checks.spawn(async move {
            let node = &cluster.replicas[i];
            let (client, state) = probe(client, node, timeout, wal::replay_state).await;
            (i, client, state)
        });
    }
    while let Some(joined) = checks.join_next().await {
        let Ok((i, client, state)) = joined else {
            continue;
        };
        monitor.replicas[i] = client;
        record_replica(cluster, &cluster.replicas[i], state);
    }
}

fn record_replica(cluster: &Cluster, node: &Node, state: Result<ReplayState, CheckFailure>) {
    let now = cluster.clock.now_ms();
    let state = match state {
        Ok(state) => state,
        Err(failure) => {
            record_failure(node, failure);
            node.ban(now, cluster.config.ban_duration);
            return;
        }
    };
    node.health
        .record_check(state.in_recovery, state.server_version);
    if !state.in_recovery {
        tracing::warn!(node = %node.name, "replica is not in recovery: no reads until it is");
    }
    if let Some(replay) = state.replay_lsn {
        node.health.saw_replay(replay);
    }
    let (bytes, time) = match cluster.history.lock() {
        Ok(history) => history.lag(node.health.replay_lsn(), now),
        Err(_) => (None, None),
    };
    node.health.record_lag(bytes, time);
}

/// Records a failed check, logging it at `warn` when the node failed
/// differently before, or not at all.
fn record_failure(node: &Node, failure: CheckFailure) {
    if node.health.record_failure(failure) {
        match failure {
            CheckFailure::LoginRefused => tracing::warn!(
                node = %node.name,
                "{} refused the login: check the user and password in its URL; it gets no reads until it accepts",
                node.name
            ),
            _ => tracing::warn!(node = %node.name, "{} {failure}", node.name),
        }
    }
}
