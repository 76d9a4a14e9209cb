//! `wait_for_replicas`: wait until replicas have replayed what the primary
//! has committed, and say precisely why when they do not.

use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::lsn::Lsn;
use crate::testing::error::Error;
use crate::wal;

/// How often a replica's replay position is polled while waiting.
pub const POLL_INTERVAL: Duration = Duration::from_millis(2);

/// Waits until every replica in `replicas` (name, client) has replayed
/// everything committed on `primary` so far, for at most `timeout` in all.
/// Returns how long it waited.
///
/// The target is the primary's [`commit_token`](crate::wal::commit_token),
/// which an idle primary's replicas do reach (unlike the raw insert
/// position). Each replica's replay position is polled every
/// [`POLL_INTERVAL`], so it returns within a few milliseconds of the data
/// becoming visible. On timeout the error names the replica, how far behind
/// it is, and whether its replay is paused.
pub async fn wait_for_replicas(
    primary: &Client,
    replicas: &[(&str, &Client)],
    timeout: Duration,
) -> Result<Duration, Error> {
    let started = Instant::now();
    let target = wal::commit_token(primary)
        .await
        .map_err(Error::postgres("primary", "reading the WAL position"))?
        .lsn();
    wait_for_lsn(replicas, target, started, timeout).await
}

/// Waits until every replica has replayed `target`, counting `timeout` from
/// `started`; returns the time since `started`.
pub(crate) async fn wait_for_lsn(
    replicas: &[(&str, &Client)],
    target: Lsn,
    started: Instant,
    timeout: Duration,
) -> Result<Duration, Error> {
    for &(name, client) in replicas {
        let state = wal::replay_state(client)
            .await
            .map_err(Error::postgres(name, "reading the replay position"))?;
        if state.replay_lsn.is_some_and(|lsn| lsn >= target) {
            continue;
        }
        let remaining = timeout.saturating_sub(started.elapsed());
        let (replayed, reached) = wal::wait_for_replay(
            client,
            target,
            remaining,
            POLL_INTERVAL,
            state.server_version,
        )
        .await
        .map_err(Error::postgres(name, "waiting for replay"))?;
        if !reached {
            let now = wal::replay_state(client).await.ok();
            return Err(Error::ReplicaTimeout {
                replica: name.to_owned(),
                waited: started.elapsed(),
                target,
                replayed: now.and_then(|s| s.replay_lsn).or(replayed),
                pause: now.and_then(|s| s.pause),
            });
        }
    }
    Ok(started.elapsed())
}
