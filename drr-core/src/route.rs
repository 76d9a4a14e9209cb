//! Routing decisions: which node serves a statement, waiting for a replica
//! to catch up, falling back, and retrying a failed read once elsewhere.

use std::future::Future;
use std::time::Instant;

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row};
use tracing::Instrument;

use crate::classify::Classification;
use crate::client::{NodeClient, Transaction};
use crate::config::{Consistency, Fallback};
use crate::error::{Error, Result};
use crate::lsn::{Lsn, LsnToken};
use crate::router::{NodeId, Router};
use crate::session::Session;
use crate::stats::FallbackReason;
use crate::wal;

/// Statement parameters, as tokio-postgres takes them.
pub(crate) type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// What a read must respect: the consistency in force and what the session
/// has written.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadContext {
    pub(crate) consistency: Consistency,
    pub(crate) last_write: Option<Instant>,
    pub(crate) token: Option<LsnToken>,
}

impl ReadContext {
    pub(crate) const EVENTUAL: ReadContext = ReadContext {
        consistency: Consistency::Eventual,
        last_write: None,
        token: None,
    };

    /// The position a replica must have replayed, under read-your-writes.
    fn required(&self) -> Option<Lsn> {
        match self.consistency {
            Consistency::ReadYourWrites => self.token.map(LsnToken::lsn),
            _ => None,
        }
    }

    fn pinned(&self) -> bool {
        match self.consistency {
            Consistency::PinAfterWrite(pin) => self.last_write.is_some_and(|at| at.elapsed() < pin),
            _ => false,
        }
    }
}

/// One way of running a statement on a client.
pub(crate) trait Op {
    type Out;
    fn run<'a>(
        client: &'a Client,
        sql: &'a str,
        params: Params<'a>,
    ) -> impl Future<Output = Result<Self::Out, tokio_postgres::Error>> + Send + 'a;
}

pub(crate) struct Query;
pub(crate) struct QueryOne;
pub(crate) struct QueryOpt;
pub(crate) struct Execute;
/// Runs `sql` as a simple-protocol batch (for `BEGIN`).
struct Batch;
/// Runs nothing: just the connection.
struct Acquire;

impl Op for Query {
    type Out = Vec<Row>;
    fn run<'a>(
        client: &'a Client,
        sql: &'a str,
        params: Params<'a>,
    ) -> impl Future<Output = Result<Vec<Row>, tokio_postgres::Error>> + Send + 'a {
        client.query(sql, params)
    }
}

impl Op for QueryOne {
    type Out = Row;
    fn run<'a>(
        client: &'a Client,
        sql: &'a str,
        params: Params<'a>,
    ) -> impl Future<Output = Result<Row, tokio_postgres::Error>> + Send + 'a {
        client.query_one(sql, params)
    }
}

impl Op for QueryOpt {
    type Out = Option<Row>;
    fn run<'a>(
        client: &'a Client,
        sql: &'a str,
        params: Params<'a>,
    ) -> impl Future<Output = Result<Option<Row>, tokio_postgres::Error>> + Send + 'a {
        client.query_opt(sql, params)
    }
}

impl Op for Execute {
    type Out = u64;
    fn run<'a>(
        client: &'a Client,
        sql: &'a str,
        params: Params<'a>,
    ) -> impl Future<Output = Result<u64, tokio_postgres::Error>> + Send + 'a {
        client.execute(sql, params)
    }
}

impl Op for Batch {
    type Out = ();
    fn run<'a>(
        client: &'a Client,
        sql: &'a str,
        _: Params<'a>,
    ) -> impl Future<Output = Result<(), tokio_postgres::Error>> + Send + 'a {
        client.batch_execute(sql)
    }
}

impl Op for Acquire {
    type Out = ();
    fn run<'a>(
        _: &'a Client,
        _: &'a str,
        _: Params<'a>,
    ) -> impl Future<Output = Result<(), tokio_postgres::Error>> + Send + 'a {
        std::future::ready(Ok(()))
    }
}

/// A statement's result, the connection it ran on, and whether it counted as
/// a write.
pub(crate) struct Routed<T> {
    pub(crate) out: T,
    pub(crate) client: NodeClient,
    pub(crate) wrote: bool,
}

/// Classifies `sql` and runs it: on a replica if it is provably read-only,
/// on the primary otherwise.
pub(crate) async fn run<O: Op>(
    router: &Router,
    ctx: &ReadContext,
    sql: &str,
    params: Params<'_>,
) -> Result<Routed<O::Out>> {
    match router.inner.cache.classify(sql) {
        Classification::ReadOnly => {
            let span = tracing::debug_span!("drr.read", consistency = ?ctx.consistency, node = tracing::field::Empty);
            read::<O>(router, ctx, sql, params).instrument(span).await
        }
        Classification::HintRefused(reason) => Err(Error::hint_refused(reason)),
        Classification::Primary(reason) => {
            let span = tracing::debug_span!("drr.write", ?reason);
            async {
                let client = connect(router, NodeId::Primary).await?;
                router.node(NodeId::Primary).counters.write();
                let out = O::run(&client, sql, params)
                    .await
                    .map_err(|e| client.error(e))?;
                Ok(Routed {
                    out,
                    client,
                    wrote: true,
                })
            }
            .instrument(span)
            .await
        }
    }
}

/// Runs a read on a replica the context allows; if it fails there in a way
/// another node may not repeat, bans the node if it is unreachable and
/// retries once elsewhere.
async fn read<O: Op>(
    router: &Router,
    ctx: &ReadContext,
    sql: &str,
    params: Params<'_>,
) -> Result<Routed<O::Out>> {
    let mut failed = None;
    loop {
        let (id, error) = match choose(router, ctx, failed).await {
            Ok(client) => match O::run(&client, sql, params).await {
                Ok(out) => {
                    router.node(client.id()).counters.read();
                    tracing::Span::current().record("node", client.node());
                    return Ok(Routed {
                        out,
                        client,
                        wrote: false,
                    });
                }
                Err(err) => (client.id(), client.error(err)),
            },
            Err(Failure::On(id, error)) => (id, error),
            Err(Failure::Final(error)) => return Err(error),
        };
        if failed.is_some() || id == NodeId::Primary || !error.is_retryable_read() {
            return Err(error);
        }
        let node = router.node(id);
        node.counters.retry();
        if error.is_connection() {
            node.ban(
                router.inner.clock.now_ms(),
                router.inner.config.ban_duration,
            );
        }
        tracing::info!(node = %node.name, %error, "read failed on a replica: retrying elsewhere");
        failed = Some(id);
    }
}

/// A connection for a read the context allows, retrying once elsewhere if
/// connecting fails.
pub(crate) async fn read_client(router: &Router, ctx: &ReadContext) -> Result<NodeClient> {
    read::<Acquire>(router, ctx, "", &[])
        .await
        .map(|routed| routed.client)
}

/// A `READ ONLY`, `REPEATABLE READ` transaction where the context allows.
pub(crate) async fn read_transaction(
    router: &Router,
    ctx: &ReadContext,
) -> Result<Transaction<'static>> {
    let begin = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";
    let routed = read::<Batch>(router, ctx, begin, &[]).await?;
    Ok(Transaction::new(routed.client, None))
}

/// A read-write transaction on the primary.
pub(crate) async fn write_transaction<'s>(
    router: &Router,
    session: Option<&'s Session>,
) -> Result<Transaction<'s>> {
    let client = connect(router, NodeId::Primary).await?;
    router.node(NodeId::Primary).counters.write();
    client
        .batch_execute("BEGIN")
        .await
        .map_err(|e| client.error(e))?;
    Ok(Transaction::new(client, session))
}

/// Why no connection for a read: a node that failed (worth a retry
/// elsewhere), or nothing left to try.
enum Failure {
    On(NodeId, Error),
    Final(Error),
}

/// Picks the node for a read and connects to it.
async fn choose(
    router: &Router,
    ctx: &ReadContext,
    failed: Option<NodeId>,
) -> Result<NodeClient, Failure> {
    if ctx.pinned() {
        router.node(NodeId::Primary).counters.pinned_read();
        return connect_for_read(router, NodeId::Primary).await;
    }
    if router.inner.replicas.is_empty() {
        return connect_for_read(router, NodeId::Primary).await;
    }
    let required = ctx.required();
    if let Some(id) = pick_replica(router, required, failed) {
        return connect_for_read(router, id).await;
    }
    let reason = match (required, failed) {
        (_, Some(_)) => FallbackReason::ReplicaFailed,
        (Some(target), None) => match wait_for_catch_up(router, target).await? {
            Some(client) => return Ok(client),
            None => FallbackReason::CatchUpTimeout,
        },
        (None, None) => FallbackReason::NoEligibleReplica,
    };
    fall_back(router, reason).await
}

/// A replica that may serve reads and has replayed `required`, by the
/// balancing policy, skipping `failed`.
pub(crate) fn pick_replica(
    router: &Router,
    required: Option<Lsn>,
    failed: Option<NodeId>,
) -> Option<NodeId> {
    let inner = &router.inner;
    let now = inner.clock.now_ms();
    inner
        .balancer
        .pick(
            inner.replicas.len(),
            |i| {
                let health = &inner.replicas[i].health;
                failed != Some(NodeId::Replica(i))
                    && health.serves_reads(now, &inner.config.max_lag)
                    && required.is_none_or(|lsn| health.replay_lsn() >= lsn)
            },
            |i| {
                inner.replicas[i]
                    .health
                    .outstanding
                    .load(std::sync::atomic::Ordering::Relaxed)
            },
        )
        .map(NodeId::Replica)
}

/// Waits, up to the configured bound, for the most advanced eligible replica
/// to replay `target`, polling it (or `WAIT FOR LSN` where the server has
/// it). Returns the connection it waited on if the replica got there.
async fn wait_for_catch_up(router: &Router, target: Lsn) -> Result<Option<NodeClient>, Failure> {
    let inner = &router.inner;
    let now = inner.clock.now_ms();
    let max_wait = inner.config.max_wait;
    let candidate = (0..inner.replicas.len())
        .filter(|&i| {
            inner.replicas[i]
                .health
                .serves_reads(now, &inner.config.max_lag)
        })
        .max_by_key(|&i| inner.replicas[i].health.replay_lsn());
    let Some(i) = candidate else {
        return Ok(None);
    };
    let id = NodeId::Replica(i);
    let node = router.node(id);
    // Waiting for a replica known to be further behind than the bound
    // would only delay the fallback.
    if max_wait.is_zero() || node.health.lag().is_some_and(|lag| lag > max_wait) {
        return Ok(None);
    }
    let client = connect_for_read(router, id).await?;
    let started = Instant::now();
    let span = tracing::debug_span!("drr.wait", node = %node.name, %target);
    let waited = wal::wait_for_replay(
        &client,
        target,
        max_wait,
        inner.config.poll_interval,
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

/// Sends a read to the primary, or fails, as configured.
async fn fall_back(router: &Router, reason: FallbackReason) -> Result<NodeClient, Failure> {
    tracing::debug!(?reason, "no replica may serve the read");
    if router.inner.config.fallback == Fallback::Error {
        let why = match reason {
            FallbackReason::NoEligibleReplica => {
                "every replica is down, banned or lagging beyond max_lag"
            }
            FallbackReason::CatchUpTimeout => {
                "no replica replayed the session's writes within max_wait"
            }
            FallbackReason::ReplicaFailed => {
                "the read failed on a replica and no other replica may serve it"
            }
        };
        return Err(Failure::Final(Error::no_healthy_node("read", why)));
    }
    router.node(NodeId::Primary).counters.fallback(reason);
    connect_for_read(router, NodeId::Primary).await
}

async fn connect_for_read(router: &Router, id: NodeId) -> Result<NodeClient, Failure> {
    connect(router, id)
        .await
        .map_err(|error| Failure::On(id, error))
}

/// A pooled connection to one node.
pub(crate) async fn connect(router: &Router, id: NodeId) -> Result<NodeClient> {
    let node = router.node(id);
    let started = Instant::now();
    match node.pool.get().await {
        Ok(object) => Ok(NodeClient::new(router.clone(), id, object)),
        Err(err) => Err(Error::pool(&node.name, err, started.elapsed())),
    }
}
