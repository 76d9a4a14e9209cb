//! The health and lag monitor: a background task that checks every node at
//! an interval on its own connections (never the pools', so a busy pool
//! cannot make a healthy node look dead).
//!
//! Lag in bytes is the primary's `pg_current_wal_lsn()`, sampled after the
//! replica's, minus the replica's replay position. Lag in time is *not*
//! `now() - pg_last_xact_replay_timestamp()`, which keeps growing while the
//! primary is idle: it is an upper bound of how long ago the primary first
//! wrote what the replica has not replayed, from a short history of the
//! primary's positions ([`crate::lag`]). A replica that has replayed
//! everything lags at most the time since the last check, however idle the
//! primary.

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

/// Checks the primary, then every replica at once, then the primary again,
/// and records what it finds. The primary's positions around the replicas'
/// make their lag an upper bound (see [`crate::lag`]).
pub(crate) async fn check(cluster: &Arc<Cluster>) {
    let mut monitor = cluster.monitor.lock().await;
    let reached = sample_primary(cluster, &mut monitor.primary).await;

    let timeout = cluster.config.check_timeout;
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
    let mut states = Vec::with_capacity(cluster.replicas.len());
    while let Some(joined) = checks.join_next().await {
        let Ok((i, client, state)) = joined else {
            continue;
        };
        monitor.replicas[i] = client;
        states.push((i, state));
    }

    if reached {
        sample_primary(cluster, &mut monitor.primary).await;
    }
    for (i, state) in states {
        record_replica(cluster, &cluster.replicas[i], state);
    }
}

/// Samples the primary's position into the history; returns whether it
/// answered.
async fn sample_primary(cluster: &Cluster, client: &mut Option<tokio_postgres::Client>) -> bool {
    let (kept, state) = probe(
        client.take(),
        &cluster.primary,
        cluster.config.check_timeout,
        wal::primary_state,
    )
    .await;
    *client = kept;
    match state {
        Ok(state) => {
            let health = &cluster.primary.health;
            health.record_check(false, 0);
            let changed = health.record_identity(state.cluster, state.timeline);
            if let Ok(mut history) = cluster.history.lock() {
                if changed {
                    // Positions of another server, or of an older timeline:
                    // no measure of lag against them holds.
                    tracing::info!(cluster = %state.cluster, timeline = state.timeline, "the primary is another cluster or timeline now: forgetting its positions");
                    history.clear();
                }
                history.push(cluster.clock.now_ms(), state.position);
            }
            true
        }
        Err(failure) => {
            record_failure(&cluster.primary, failure);
            false
        }
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
    let primary = cluster.primary.health.cluster();
    if primary.is_some_and(|primary| primary != state.cluster.as_u64()) {
        record_failure(node, CheckFailure::OtherCluster);
        return;
    }
    let health = &node.health;
    health.record_check(state.in_recovery, state.server_version);
    health.record_apply_delay(state.apply_delay);
    if health.record_identity(state.cluster, state.timeline) {
        tracing::info!(node = %node.name, cluster = %state.cluster, timeline = state.timeline, "replica is another cluster or timeline now");
    }
    if !state.in_recovery {
        tracing::warn!(node = %node.name, "replica is not in recovery: no reads until it is");
    }
    if let Some(replay) = state.replay_lsn {
        health.record_replay(replay);
    }
    let measure = match cluster.history.lock() {
        Ok(history) => history.measure(node.health.replay_lsn()),
        Err(_) => None,
    };
    node.health.lag.record(measure, now);
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
