//! Reads: choosing the replica the context allows, falling back to the
//! primary, and retrying once elsewhere when a read fails on a replica.

use std::sync::Arc;

use crate::classify::Reason;
use crate::client::{NodeClient, Transaction};
use crate::cluster::Cluster;
use crate::config::Fallback;
use crate::error::{Error, Result};
use crate::functions::{FunctionName, Volatility};
use crate::node::NodeId;
use crate::route::ops::{Acquire, Batch, Op, Params};
use crate::route::volatility;
use crate::route::wait::wait_for_catch_up;
use crate::route::{Routed, connect, on_primary, run_as_write};
use crate::session_state::ReadContext;
use crate::stats::FallbackReason;
use crate::token::LsnToken;

/// A statement to read, and what its routing depends on.
pub(crate) struct Statement<'a> {
    pub(crate) sql: &'a str,
    /// Functions the node must say are IMMUTABLE or STABLE first.
    pub(crate) functions: &'a [FunctionName],
    /// It carries the `/* drr:replica */` hint.
    pub(crate) replica_hint: bool,
}

impl Statement<'static> {
    /// A statement that calls no function and may run anywhere.
    const fn plain(sql: &'static str) -> Self {
        Statement {
            sql,
            functions: &[],
            replica_hint: false,
        }
    }
}

/// Runs a read on a replica the context allows. If the node says a function
/// the statement calls may write, or a replica refuses it as a write, it
/// runs on the primary as a write instead (never on another replica). If it
/// fails on a replica in a way another node may not repeat, bans the node if
/// it is unreachable and retries once elsewhere.
pub(crate) async fn read<O: Op>(
    cluster: &Arc<Cluster>,
    ctx: &ReadContext,
    statement: &Statement<'_>,
    params: Params<'_>,
) -> Result<Routed<O::Out>> {
    let sql = statement.sql;
    let mut failed = None;
    loop {
        let (id, error) = match choose(cluster, ctx, failed).await {
            Ok(client) => match within_deadline(cluster, client.id(), async {
                match volatility::verdict(&client, statement.functions).await {
                    Ok(Some(Volatility::ReadOnly)) => O::run(&client, sql, params).await.map(Ok),
                    Ok(verdict) => Ok(Err(verdict)),
                    Err(err) => Err(err),
                }
            })
            .await
            {
                Err(timeout) => {
                    // It may answer later, on a connection no one waits on.
                    let id = client.id();
                    client.discard();
                    (id, timeout)
                }
                Ok(Ok(Ok(out))) => {
                    cluster.node(client.id()).counters.read();
                    tracing::Span::current().record("node", client.node());
                    return Ok(Routed {
                        out,
                        client,
                        wrote: false,
                    });
                }
                Ok(Ok(Err(verdict))) => {
                    return writes::<O>(cluster, statement, params, client, verdict).await;
                }
                Ok(Err(err)) => (client.id(), client.error(err)),
            },
            Err(Failure::On(id, error)) => (id, error),
            Err(Failure::Final(error)) => return Err(error),
        };
        let node = cluster.node(id);
        let on_primary_node = cluster.primary() == Some(id);
        if !on_primary_node && error.is_read_only_violation() {
            // It writes after all (a view over a writing function, say):
            // only the primary can run it, now and from now on.
            node.counters.retry();
            node.counters.read_only_error();
            cluster.cache.remember_primary(sql, Reason::WroteOnReplica);
            tracing::info!(node = %node.name, "a read wrote on a replica: running it on the primary");
            return on_primary::<O>(cluster, sql, params, Reason::WroteOnReplica).await;
        }
        if on_primary_node {
            return Err(cluster.primary_error(id, error));
        }
        if failed.is_some() || !error.is_retryable_read() {
            return Err(error);
        }
        node.counters.retry();
        if error.is_connection() || error.is_authentication() || error.is_read_timeout() {
            node.ban(cluster.clock.now_ms(), cluster.config.ban_duration);
        }
        tracing::info!(node = %node.name, %error, "read failed on a replica: retrying elsewhere");
        failed = Some(id);
    }
}

/// Runs a statement that calls a function the node on `client` says is
/// VOLATILE (`verdict`), or does not know (`None`), as a write on the
/// primary: on `client` itself if it is the primary.
async fn writes<O: Op>(
    cluster: &Arc<Cluster>,
    statement: &Statement<'_>,
    params: Params<'_>,
    client: NodeClient,
    verdict: Option<Volatility>,
) -> Result<Routed<O::Out>> {
    if statement.replica_hint {
        return Err(Error::hint_refused(Reason::WritingFunction));
    }
    if verdict == Some(Volatility::Volatile) {
        // What the server says is settled: skip the lookup next time.
        cluster
            .cache
            .remember_primary(statement.sql, Reason::WritingFunction);
    }
    if cluster.primary() == Some(client.id()) {
        return run_as_write::<O>(client, statement.sql, params).await;
    }
    drop(client);
    on_primary::<O>(cluster, statement.sql, params, Reason::WritingFunction).await
}

/// A connection for a read the context allows, retrying once elsewhere if
/// connecting fails.
pub(crate) async fn read_client(cluster: &Arc<Cluster>, ctx: &ReadContext) -> Result<NodeClient> {
    read::<Acquire>(cluster, ctx, &Statement::plain(""), &[])
        .await
        .map(|routed| routed.client)
}

/// A `READ ONLY`, `REPEATABLE READ` transaction where the context allows.
pub(crate) async fn read_transaction(
    cluster: &Arc<Cluster>,
    ctx: &ReadContext,
) -> Result<Transaction<'static>> {
    let begin = Statement::plain("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
    let routed = read::<Batch>(cluster, ctx, &begin, &[]).await?;
    Ok(Transaction::new(routed.client, false, None))
}

/// Why no connection for a read: a node that failed (worth a retry
/// elsewhere), or nothing left to try.
pub(crate) enum Failure {
    On(NodeId, Error),
    Final(Error),
}

/// Picks the node for a read and connects to it.
async fn choose(
    cluster: &Arc<Cluster>,
    ctx: &ReadContext,
    failed: Option<NodeId>,
) -> Result<NodeClient, Failure> {
    if ctx.pinned() {
        let primary = read_primary(cluster)?;
        cluster.node(primary).counters.pinned_read();
        return connect_for_read(cluster, primary).await;
    }
    if cluster.nodes.len() == 1 {
        return connect_for_read(cluster, NodeId(0)).await;
    }
    let required = ctx.required();
    if required.is_some_and(|token| is_foreign(cluster, token)) {
        return fall_back(cluster, FallbackReason::ForeignToken).await;
    }
    if let Some(id) = pick_replica(cluster, required, failed) {
        return connect_for_read(cluster, id).await;
    }
    let reason = match (required, failed) {
        (_, Some(_)) => FallbackReason::ReplicaFailed,
        (Some(token), None) => match wait_for_catch_up(cluster, token).await? {
            Ok(client) => return Ok(client),
            Err(reason) => reason,
        },
        (None, None) => FallbackReason::NoEligibleReplica,
    };
    fall_back(cluster, reason).await
}

/// Whether `token` names another cluster than the primary's: no replica of
/// this primary has what it covers, whatever their positions.
fn is_foreign(cluster: &Cluster, token: LsnToken) -> bool {
    let ours = cluster
        .primary()
        .and_then(|p| cluster.node(p).health.cluster());
    match (token.cluster(), ours) {
        (Some(theirs), Some(ours)) => theirs.as_u64() != ours,
        _ => false,
    }
}

/// A replica that may serve reads and has replayed `required`, by the
/// balancing policy, skipping `failed`.
pub(crate) fn pick_replica(
    cluster: &Arc<Cluster>,
    required: Option<LsnToken>,
    failed: Option<NodeId>,
) -> Option<NodeId> {
    let now = cluster.clock.now_ms();
    let primary = cluster.primary();
    cluster
        .balancer
        .pick(
            cluster.nodes.len(),
            |i| {
                let health = &cluster.nodes[i].health;
                let id = Some(NodeId(i));
                failed != id
                    && primary != id
                    && health.serves_reads(now, &cluster.config.max_lag)
                    && required.is_none_or(|token| health.has_replayed(token))
            },
            |i| {
                cluster.nodes[i]
                    .health
                    .outstanding
                    .load(std::sync::atomic::Ordering::Relaxed)
            },
        )
        .map(NodeId)
}

/// Sends a read to the primary, or fails, as configured.
async fn fall_back(cluster: &Arc<Cluster>, reason: FallbackReason) -> Result<NodeClient, Failure> {
    tracing::debug!(?reason, "no replica may serve the read");
    if cluster.config.fallback == Fallback::Error {
        let why = match reason {
            FallbackReason::NoEligibleReplica => {
                "every replica is down, banned or lagging beyond max_lag"
            }
            FallbackReason::CatchUpTimeout => {
                "no replica replays the session's writes within max_wait"
            }
            FallbackReason::ReplicaFailed => {
                "the read failed on a replica and no other replica may serve it"
            }
            FallbackReason::ForeignToken => {
                "the session's token comes from another cluster than the primary's"
            }
            FallbackReason::UnreachedTimeline => {
                "no replica has reached the timeline of the session's token"
            }
        };
        return Err(Failure::Final(Error::no_healthy_node("read", why)));
    }
    let primary = read_primary(cluster)?;
    cluster.node(primary).counters.fallback(reason);
    connect_for_read(cluster, primary).await
}

/// The primary, for a read that must go there; a failover error while no
/// node is the primary.
fn read_primary(cluster: &Cluster) -> Result<NodeId, Failure> {
    cluster.writer().map_err(Failure::Final)
}

pub(crate) async fn connect_for_read(
    cluster: &Arc<Cluster>,
    id: NodeId,
) -> Result<NodeClient, Failure> {
    match within_deadline(cluster, id, connect(cluster, id)).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(error)) | Err(error) => Err(Failure::On(id, error)),
    }
}

/// Runs `work` for a read on node `id`: on a replica within the read
/// timeout (`Err` when it passes), on the primary without a deadline.
async fn within_deadline<T>(
    cluster: &Cluster,
    id: NodeId,
    work: impl std::future::Future<Output = T>,
) -> Result<T, Error> {
    if cluster.role(id) == crate::role::Role::Primary {
        return Ok(work.await);
    }
    let after = cluster.config.read_timeout;
    tokio::time::timeout(after, work)
        .await
        .map_err(|_| Error::read_timeout(&cluster.node(id).name, after))
}
