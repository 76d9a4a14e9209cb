//! Read-your-writes: waiting a bounded time for a replica to replay a
//! session's token.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::Instrument;

use crate::client::NodeClient;
use crate::cluster::Cluster;
use crate::node::NodeId;
use crate::route::read::{Failure, connect_for_read};
use crate::stats::FallbackReason;
use crate::token::LsnToken;
use crate::wal;

/// Waits, up to the configured bound, for the most advanced eligible replica
/// to replay `token`, polling it (or `WAIT FOR LSN` where the server has
/// it). Returns the connection it waited on if the replica got there, or
/// why the read falls back.
pub(crate) async fn wait_for_catch_up(
    cluster: &Arc<Cluster>,
    token: LsnToken,
) -> Result<Result<NodeClient, FallbackReason>, Failure> {
    let now = cluster.clock.now_ms();
    let max_wait = cluster.config.max_wait;
    let target = token.lsn();
    let primary = cluster.primary();
    let eligible: Vec<NodeId> = cluster
        .ids()
        .filter(|&(id, node)| {
            Some(id) != primary && node.health.serves_reads(now, &cluster.config.max_lag)
        })
        .map(|(id, _)| id)
        .collect();
    let candidate = eligible
        .iter()
        .copied()
        .filter(|&id| cluster.node(id).health.reached_timeline_of(token))
        .max_by_key(|&id| cluster.node(id).health.replay_lsn());
    let Some(id) = candidate else {
        return Ok(Err(if eligible.is_empty() {
            FallbackReason::CatchUpTimeout
        } else {
            FallbackReason::UnreachedTimeline
        }));
    };
    let node = cluster.node(id);
    let written_after = cluster
        .history
        .lock()
        .ok()
        .and_then(|history| history.last_short_of(target));
    let needs = certainly_needs(
        node.health.apply_delay(),
        written_after.map(|at| Duration::from_millis(now.saturating_sub(at))),
        node.health.lag.floor(),
    );
    // Waiting for a replica that cannot get there in time would only delay
    // the fallback.
    if max_wait.is_zero() || needs > max_wait {
        return Ok(Err(FallbackReason::CatchUpTimeout));
    }
    let client = connect_for_read(cluster, id).await?;
    let started = Instant::now();
    let span = tracing::debug_span!("drr.wait", node = %node.name, %target);
    let waited = wal::wait_for_replay(
        &client,
        target,
        max_wait,
        cluster.config.poll_interval,
        node.health.server_version(),
    )
    .instrument(span)
    .await;
    node.counters.waited(started.elapsed());
    match waited {
        Ok((replayed, reached)) => {
            if let Some(lsn) = replayed {
                node.health.saw_replay(lsn);
            }
            Ok(if reached {
                Ok(client)
            } else {
                Err(FallbackReason::CatchUpTimeout)
            })
        }
        Err(err) => Err(Failure::On(id, client.error(err))),
    }
}

/// How long a replica certainly still needs to replay a position: its
/// apply delay less the most the position's age can be (only when the
/// history bounds that age), or the lag it certainly had at its last
/// check, whichever is longer.
fn certainly_needs(
    apply_delay: Option<Duration>,
    age_at_most: Option<Duration>,
    lag_floor: Option<Duration>,
) -> Duration {
    let by_delay = match (apply_delay, age_at_most) {
        (Some(delay), Some(age)) => delay.saturating_sub(age),
        _ => Duration::ZERO,
    };
    by_delay.max(lag_floor.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_delay_less_the_age_cannot_be_waited_out_faster() {
        // A 3 s delay, a write at most 100 ms old: 2.9 s more at least.
        assert_eq!(
            certainly_needs(Some(3000 * MS), Some(100 * MS), Some(Duration::ZERO)),
            2900 * MS
        );
        // An old write: nothing left to wait for by the delay.
        assert_eq!(
            certainly_needs(Some(3000 * MS), Some(5000 * MS), None),
            Duration::ZERO
        );
        // A write older than the history: its age is unbounded.
        assert_eq!(certainly_needs(Some(3000 * MS), None, None), Duration::ZERO);
    }

    #[test]
    fn a_measured_lag_counts_too() {
        assert_eq!(certainly_needs(None, Some(MS), Some(1500 * MS)), 1500 * MS);
        assert_eq!(
            certainly_needs(Some(1000 * MS), Some(MS), Some(1500 * MS)),
            1500 * MS
        );
    }
}
