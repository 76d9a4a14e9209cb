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
//!
//! In a [`cluster`](crate::RouterConfig::cluster) the monitor also finds
//! the primary: when it has none, when the primary's check fails, or when
//! another node answers out of recovery, it asks every node and
//! [`elect`](elect::elect)s one. A write that meets a node in recovery, or
//! loses the primary, wakes it before its interval.

mod elect;
mod probe;

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tokio::task::{JoinHandle, JoinSet};
use tokio_postgres::Client;

use crate::cluster::Cluster;
use crate::health::CheckFailure;
use crate::node::{Node, NodeId};
use crate::wal::{self, ReplayState};

use elect::{Answer, elect};
use probe::probe;

/// Runs [`check`] every interval, and sooner when a write asks for it,
/// until the cluster is dropped.
pub(crate) fn spawn(weak: Weak<Cluster>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut last = Instant::now();
        loop {
            let Some((interval, recheck)) = weak
                .upgrade()
                .map(|cluster| (cluster.config.check_interval, cluster.recheck.clone()))
            else {
                return;
            };
            let asked = tokio::select! {
                () = tokio::time::sleep(interval) => false,
                () = recheck.notified() => true,
            };
            if asked {
                // Many failed writes ask at once: one check answers them all,
                // and checks on demand come at most every fifth of an
                // interval.
                let gap =
                    (interval / 5).clamp(Duration::from_millis(10), Duration::from_millis(100));
                tokio::time::sleep(gap.saturating_sub(last.elapsed())).await;
            }
            let Some(cluster) = weak.upgrade() else {
                return;
            };
            last = Instant::now();
            check(&cluster).await;
        }
    })
}

/// Checks the primary, then every other node at once, then the primary
/// again, and records what it finds. The primary's positions around the
/// replicas' make their lag an upper bound (see [`crate::lag`]). In a
/// cluster whose primary the router discovers, finds the primary first
/// when it is unknown or no longer answers as one.
pub(crate) async fn check(cluster: &Arc<Cluster>) {
    let mut clients = cluster.monitor.lock().await;
    let mut primary = cluster.primary();
    let mut reached = match primary {
        Some(p) => sample_primary(cluster, p, &mut clients[p.0]).await,
        None => false,
    };
    let mut states = probe_all(cluster, &mut clients, primary).await;

    if cluster.follows() && needs_discovery(primary, reached, &states) {
        if let Some(p) = primary.filter(|_| !reached) {
            // What is the primary now: down, or in recovery?
            let (client, state) = probe(
                clients[p.0].take(),
                cluster.node(p),
                cluster.config.check_timeout,
                wal::replay_state,
            )
            .await;
            clients[p.0] = client;
            states.push((p, state));
        }
        let mut answers: Vec<Answer> = states
            .iter()
            .filter_map(|(id, state)| {
                let state = state.as_ref().ok()?;
                Some(Answer {
                    id: *id,
                    in_recovery: state.in_recovery,
                    timeline: state.timeline,
                })
            })
            .collect();
        if let Some(p) = primary.filter(|_| reached) {
            answers.push(Answer {
                id: p,
                in_recovery: false,
                timeline: cluster.node(p).health.timeline(),
            });
        }
        let elected = elect(&answers);
        if cluster.set_primary(elected) {
            // Positions of another server, or of another timeline: no
            // measure of lag against them holds.
            if let Ok(mut history) = cluster.history.lock() {
                history.clear();
            }
            primary = elected;
            reached = false;
            if let Some(p) = primary {
                states.retain(|(id, _)| *id != p);
                reached = sample_primary(cluster, p, &mut clients[p.0]).await;
            }
        }
    }

    if let Some(p) = primary.filter(|_| reached) {
        sample_primary(cluster, p, &mut clients[p.0]).await;
    }
    for (id, state) in states {
        record_replica(cluster, cluster.node(id), state);
    }
}

/// Whether the primary must be looked for: none is known, it did not
/// answer as one, or another node answers out of recovery.
fn needs_discovery(
    primary: Option<NodeId>,
    reached: bool,
    states: &[(NodeId, Result<ReplayState, CheckFailure>)],
) -> bool {
    primary.is_none()
        || !reached
        || states
            .iter()
            .any(|(_, state)| state.as_ref().is_ok_and(|s| !s.in_recovery))
}

/// Checks every node but `primary` at once, on the monitor's connections.
async fn probe_all(
    cluster: &Arc<Cluster>,
    clients: &mut [Option<Client>],
    primary: Option<NodeId>,
) -> Vec<(NodeId, Result<ReplayState, CheckFailure>)> {
    let timeout = cluster.config.check_timeout;
    let mut checks = JoinSet::new();
    for (i, slot) in clients.iter_mut().enumerate() {
        let id = NodeId(i);
        if primary == Some(id) {
            continue;
        }
        let client = slot.take();
        let cluster = cluster.clone();
        checks.spawn(async move {
            let (client, state) = probe(client, cluster.node(id), timeout, wal::replay_state).await;
            (id, client, state)
        });
    }
    let mut states = Vec::with_capacity(clients.len());
    while let Some(joined) = checks.join_next().await {
        let Ok((id, client, state)) = joined else {
            continue;
        };
        clients[id.0] = client;
        states.push((id, state));
    }
    states.sort_by_key(|(id, _)| id.0);
    states
}

/// Samples the primary `id`'s position into the history; returns whether it
/// answered (as a primary: a node in recovery has no write position).
async fn sample_primary(cluster: &Cluster, id: NodeId, client: &mut Option<Client>) -> bool {
    let node = cluster.node(id);
    let (kept, state) = probe(
        client.take(),
        node,
        cluster.config.check_timeout,
        wal::primary_state,
    )
    .await;
    *client = kept;
    match state {
        Ok(state) => {
            let health = &node.health;
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
            record_failure(node, failure);
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
    let primary = cluster
        .primary()
        .and_then(|p| cluster.node(p).health.cluster());
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
