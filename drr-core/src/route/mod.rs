//! Routing decisions: which node serves a statement, waiting for a replica
//! to catch up, falling back, and retrying a failed read once elsewhere.

mod ops;
mod read;
mod volatility;
mod wait;

use std::sync::Arc;
use std::time::Instant;

use tracing::Instrument;

use crate::classify::{Classification, Reason};
use crate::client::{NodeClient, Transaction};
use crate::cluster::Cluster;
use crate::error::{Error, Result};
use crate::node::NodeId;
use crate::session_state::{ReadContext, SessionState};

pub(crate) use ops::{Execute, Op, Params, Query, QueryOne, QueryOpt};
pub(crate) use read::{pick_replica, read_client, read_transaction};

/// A statement's result, the connection it ran on, and whether it counted as
/// a write.
pub(crate) struct Routed<T> {
    pub(crate) out: T,
    pub(crate) client: NodeClient,
    pub(crate) wrote: bool,
}

/// Classifies `sql` and runs it: on a replica if it is provably read-only
/// (functions included, as the server says), on the primary otherwise.
pub(crate) async fn run<O: Op>(
    cluster: &Arc<Cluster>,
    ctx: &ReadContext,
    sql: &str,
    params: Params<'_>,
) -> Result<Routed<O::Out>> {
    let analysis = cluster.cache.analyze(sql);
    match analysis.classification {
        Classification::ReadOnly | Classification::DependsOnFunctions => {
            let span = tracing::debug_span!("drr.read", consistency = ?ctx.consistency, node = tracing::field::Empty);
            let statement = read::Statement {
                sql,
                functions: analysis.functions.as_deref().unwrap_or_default(),
                replica_hint: analysis.replica_hint,
            };
            read::read::<O>(cluster, ctx, &statement, params)
                .instrument(span)
                .await
        }
        Classification::HintRefused(reason) => Err(Error::hint_refused(reason)),
        Classification::Refused(reason) => Err(Error::session_statement(reason)),
        Classification::Primary(reason) => on_primary::<O>(cluster, sql, params, reason).await,
    }
}

/// Runs `sql` on the primary as a write, for `reason`.
pub(crate) async fn on_primary<O: Op>(
    cluster: &Arc<Cluster>,
    sql: &str,
    params: Params<'_>,
    reason: Reason,
) -> Result<Routed<O::Out>> {
    let span = tracing::debug_span!("drr.write", ?reason);
    async {
        let client = connect_writer(cluster).await?;
        run_as_write::<O>(client, sql, params).await
    }
    .instrument(span)
    .await
}

/// Runs `sql` as a write on `client`, a primary connection.
async fn run_as_write<O: Op>(
    client: NodeClient,
    sql: &str,
    params: Params<'_>,
) -> Result<Routed<O::Out>> {
    client.node_ref().counters.write();
    let out = O::run(&client, sql, params)
        .await
        .map_err(|e| client.write_error(e))?;
    Ok(Routed {
        out,
        client,
        wrote: true,
    })
}

/// A read-write transaction on the primary.
pub(crate) async fn write_transaction<'s>(
    cluster: &Arc<Cluster>,
    session: Option<&'s SessionState>,
) -> Result<Transaction<'s>> {
    let client = connect_writer(cluster).await?;
    client.node_ref().counters.write();
    client
        .batch_execute("BEGIN")
        .await
        .map_err(|e| client.write_error(e))?;
    Ok(Transaction::new(client, true, session))
}

/// A pooled connection to the primary, for writes. In a cluster whose
/// primary the router discovers, fails with a failover error while there is
/// none, or when it cannot be reached (and has the monitor look for it).
pub(crate) async fn connect_writer(cluster: &Arc<Cluster>) -> Result<NodeClient> {
    let id = cluster.writer()?;
    connect(cluster, id)
        .await
        .map_err(|error| cluster.primary_error(id, error))
}

/// A pooled connection to one node.
pub(crate) async fn connect(cluster: &Arc<Cluster>, id: NodeId) -> Result<NodeClient> {
    let node = cluster.node(id);
    let started = Instant::now();
    match node.pool.get().await {
        Ok(object) => Ok(NodeClient::new(cluster.clone(), id, object)),
        Err(err) => Err(Error::pool(&node.name, err, started.elapsed())),
    }
}
