//! Read-your-writes: waiting a bounded time for a replica to replay a
//! session's token.

use std::sync::Arc;
use std::time::Instant;

use tracing::Instrument;

use crate::client::NodeClient;
use crate::cluster::Cluster;
use crate::lsn::Lsn;
use crate::node::NodeId;
use crate::route::read::{Failure, connect_for_read};
use crate::wal;

/// Waits, up to the configured bound, for the most advanced eligible replica
/// to replay `target`, polling it (or `WAIT FOR LSN` where the server has
/// it). Returns the connection it waited on if the replica got there.
pub(crate) async fn wait_for_catch_up(
    cluster: &Arc<Cluster>,
    target: Lsn,
) -> Result<Option<NodeClient>, Failure> {
    let now = cluster.clock.now_ms();
    let max_wait = cluster.config.max_wait;
    let candidate = (0..cluster.replicas.len())
        .filter(|&i| {
            cluster.replicas[i]
                .health
                .serves_reads(now, &cluster.config.max_lag)
        })
        .max_by_key(|&i| cluster.replicas[i].health.replay_lsn());
    let Some(i) = candidate else {
        return Ok(None);
    };
    let id = NodeId::Replica(i);
    let node = cluster.node(id);
    // Waiting for a replica known to be further behind than the bound
    // would only delay the fallback.
    if max_wait.is_zero() || node.health.lag.floor().is_some_and(|lag| lag > max_wait) {
        return Ok(None);
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
            Ok(reached.then_some(client))
        }
        Err(err) => Err(Failure::On(id, client.error(err))),
    }
}
