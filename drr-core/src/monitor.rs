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

use std::collections::VecDeque;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::task::{JoinHandle, JoinSet};
use tokio_postgres::{Client, NoTls};

use crate::lsn::Lsn;
use crate::node::Node;
use crate::router::Inner;
use crate::wal::{self, ReplayState};

/// The monitor's own connections: the primary's, then one per replica.
pub(crate) struct Monitor {
    primary: Option<Client>,
    replicas: Vec<Option<Client>>,
}

impl Monitor {
    pub(crate) fn new(replicas: usize) -> Self {
        Monitor {
            primary: None,
            replicas: (0..replicas).map(|_| None).collect(),
        }
    }
}

/// Runs [`check`] every interval until the router is dropped.
pub(crate) fn spawn(router: Weak<Inner>) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let Some(interval) = router.upgrade().map(|inner| inner.config.check_interval) else {
                return;
            };
            tokio::time::sleep(interval).await;
            let Some(inner) = router.upgrade() else {
                return;
            };
            check(&inner).await;
        }
    })
}

/// Checks the primary, then every replica at once, and records what it
/// finds.
pub(crate) async fn check(inner: &Arc<Inner>) {
    let mut monitor = inner.monitor.lock().await;
    let timeout = inner.config.check_timeout;

    let (client, primary) = probe(
        monitor.primary.take(),
        &inner.primary,
        timeout,
        wal::write_position,
    )
    .await;
    monitor.primary = client;
    let now = inner.clock.now_ms();
    match primary {
        Some(lsn) => {
            inner.primary.health.record_check(false, 0);
            if let Ok(mut history) = inner.history.lock() {
                history.push(now, lsn);
            }
        }
        None => inner.primary.health.mark_unreachable(),
    }

    let mut checks = JoinSet::new();
    for (i, slot) in monitor.replicas.iter_mut().enumerate() {
        let client = slot.take();
        let inner = inner.clone();
        checks.spawn(async move {
            let node = &inner.replicas[i];
            let (client, state) = probe(client, node, timeout, wal::replay_state).await;
            (i, client, state)
        });
    }
    while let Some(joined) = checks.join_next().await {
        let Ok((i, client, state)) = joined else {
            continue;
        };
        monitor.replicas[i] = client;
        record_replica(inner, &inner.replicas[i], state);
    }
}

fn record_replica(inner: &Inner, node: &Node, state: Option<ReplayState>) {
    let now = inner.clock.now_ms();
    let Some(state) = state else {
        node.health.mark_unreachable();
        node.ban(now, inner.config.ban_duration);
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
    let (bytes, time) = match inner.history.lock() {
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

/// Recent positions of the primary, oldest first, for lag in time.
#[derive(Default)]
pub(crate) struct History {
    samples: VecDeque<(u64, Lsn)>,
}

/// Samples kept: at the default interval, several minutes.
const HISTORY: usize = 1024;

impl History {
    pub(crate) fn push(&mut self, now_ms: u64, lsn: Lsn) {
        if self.samples.len() == HISTORY {
            self.samples.pop_front();
        }
        self.samples.push_back((now_ms, lsn));
    }

    /// Lag of a replica at `replay`, in bytes and in time. Unknown until the
    /// primary has been sampled.
    pub(crate) fn lag(&self, replay: Lsn, now_ms: u64) -> (Option<u64>, Option<Duration>) {
        let Some(&(_, latest)) = self.samples.back() else {
            return (None, None);
        };
        let bytes = latest.bytes_since(replay);
        if bytes == 0 {
            return (Some(0), Some(Duration::ZERO));
        }
        // Positions only grow: the first sample past `replay` is when the
        // primary got ahead of what the replica shows. If every sample is
        // past it, the lag is at least the age of the oldest.
        let first_ahead = self.samples.partition_point(|&(_, lsn)| lsn <= replay);
        let since = self.samples.get(first_ahead).map_or(now_ms, |&(t, _)| t);
        (
            Some(bytes),
            Some(Duration::from_millis(now_ms.saturating_sub(since))),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(samples: &[(u64, u64)]) -> History {
        let mut h = History::default();
        for &(t, lsn) in samples {
            h.push(t, Lsn::from(lsn));
        }
        h
    }

    #[test]
    fn caught_up_replica_has_no_lag_however_idle_the_primary() {
        let h = history(&[(0, 100), (60_000, 100), (120_000, 100)]);
        assert_eq!(
            h.lag(Lsn::from(100), 3_600_000),
            (Some(0), Some(Duration::ZERO))
        );
    }

    #[test]
    fn lag_counts_from_when_the_primary_got_ahead() {
        let h = history(&[(0, 100), (1_000, 100), (2_000, 150), (3_000, 200)]);
        assert_eq!(
            h.lag(Lsn::from(100), 3_500),
            (Some(100), Some(Duration::from_millis(1_500)))
        );
        assert_eq!(
            h.lag(Lsn::from(150), 3_500),
            (Some(50), Some(Duration::from_millis(500)))
        );
    }

    #[test]
    fn lag_beyond_the_history_is_at_least_its_age() {
        let h = history(&[(5_000, 500), (6_000, 600)]);
        assert_eq!(
            h.lag(Lsn::from(100), 7_000),
            (Some(500), Some(Duration::from_millis(2_000)))
        );
    }

    #[test]
    fn unknown_before_the_primary_is_sampled() {
        assert_eq!(History::default().lag(Lsn::from(1), 10), (None, None));
    }

    #[test]
    fn history_is_bounded() {
        let mut h = History::default();
        for i in 0..(HISTORY as u64 + 10) {
            h.push(i, Lsn::from(i));
        }
        assert_eq!(h.samples.len(), HISTORY);
        assert_eq!(h.samples.front().map(|s| s.0), Some(10));
    }
}
