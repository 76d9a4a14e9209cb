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

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::task::{JoinHandle, JoinSet};
use tokio_postgres::{Client, NoTls};

use crate::cluster::Cluster;
use crate::node::Node;
use crate::wal::{self, ReplayState};

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
        Some(lsn) => {
            cluster.primary.health.record_check(false, 0);
            if let Ok(mut history) = cluster.history.lock() {
                history.push(now, lsn);
            }
        }
        None => cluster.primary.health.mark_unreachable(),
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

fn record_replica(cluster: &Cluster, node: &Node, state: Option<ReplayState>) {
    let now = cluster.clock.now_ms();
    let Some(state) = state else {
        node.health.mark_unreachable();
        node.ban(now, cluster.config.ban_duration);
        return;
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

/// Runs one check on the monitor's connection to `node`, connecting first if
/// needed. Returns the connection to keep (none after a failure) and the
/// result.
async fn probe<T, F>(
    client: Option<Client>,
    node: &Node,
    timeout: Duration,
    read: F,
) -> (Option<Client>, Option<T>)
where
    F: AsyncFnOnce(&Client) -> Result<T, tokio_postgres::Error>,
{
    let attempt = async {
        let client = match client {
            Some(client) if !client.is_closed() => client,
            _ => connect(node).await?,
        };
        let value = read(&client).await?;
        Ok::<_, tokio_postgres::Error>((client, value))
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok((client, value))) => (Some(client), Some(value)),
        Ok(Err(err)) => {
            tracing::debug!(node = %node.name, error = %err, "health check failed");
            (None, None)
        }
        Err(_) => {
            tracing::debug!(node = %node.name, ?timeout, "health check timed out");
            (None, None)
        }
    }
}

async fn connect(node: &Node) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = node.pg.connect(NoTls).await?;
    tokio::spawn(async move {
        // Ends when the client is dropped or the server goes away.
        let _ = connection.await;
    });
    Ok(client)
}
