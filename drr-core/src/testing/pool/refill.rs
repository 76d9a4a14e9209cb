//! Refilling the pool: creating databases ahead from the template, in
//! batches, under the refill lock.

use std::sync::Arc;

use tokio::sync::oneshot;
use tokio_postgres::Client;
use tokio_postgres::types::PgLsn;

use crate::lsn::Lsn;
use crate::testing::error::Error;
use crate::testing::sql::quote_ident;
use crate::wal;

use super::Shared;
use super::coordination::{REFILL_LOCK_CLASS, exec, lock_key};
use super::sweep::sweep;
use super::template::ensure_template;

/// Where a refill sends the database it created for a waiting claim.
type Reply = oneshot::Sender<Result<Option<(String, Lsn)>, Error>>;
type FirstClaim = (i32, Reply);

/// Creates databases ahead, holding the refill lock on `conn`, until the pool
/// holds a batch; the first one goes to `first` (claimed for its pid) as
/// soon as it exists.
pub(super) async fn refill(conn: Client, shared: Arc<Shared>, first: Option<FirstClaim>) {
    let (claimer, mut reply) = match first {
        Some((pid, tx)) => (Some(pid), Some(tx)),
        None => (None, None),
    };
    let result = refill_inner(&conn, &shared, claimer, &mut reply).await;
    match (result, reply.take()) {
        (Err(err), Some(tx)) => {
            let _ = tx.send(Err(err));
        }
        (Err(err), None) => tracing::warn!("refilling the test database pool failed: {err}"),
        (Ok(()), Some(tx)) => {
            let _ = tx.send(Ok(None));
        }
        (Ok(()), None) => {}
    }
    let _ = conn
        .execute(
            "SELECT pg_advisory_unlock($1, $2)",
            &[&REFILL_LOCK_CLASS, &lock_key(shared.hash)],
        )
        .await;
}

async fn refill_inner(
    conn: &Client,
    shared: &Shared,
    claimer: Option<i32>,
    reply: &mut Option<Reply>,
) -> Result<(), Error> {
    if let Err(err) = sweep(conn, shared, false).await {
        tracing::warn!("sweeping the test database pool failed: {err}");
    }
    let strategy = ensure_template(conn, shared).await?;
    // Keep creating while claims drain the pool, within a bound.
    let mut created = 0;
    while created < shared.batch_size * 4 {
        let have: i64 = conn
            .query_one(
                "SELECT count(*) FROM drr_testing.pool \
                 WHERE template = $1 AND state IN ('ready', 'creating')",
                &[&shared.template],
            )
            .await
            .map_err(Error::postgres("primary", "counting ready databases"))?
            .get(0);
        let have = usize::try_from(have).unwrap_or(0);
        let want = shared
            .batch_size
            .saturating_sub(have)
            .max(usize::from(reply.is_some()));
        if want == 0 {
            break;
        }
        for _ in 0..want {
            let claim_for = if reply.is_some() { claimer } else { None };
            let new = create_one(conn, shared, strategy, claim_for).await?;
            created += 1;
            if claim_for.is_some()
                && let Some(tx) = reply.take()
            {
                let _ = tx.send(Ok(Some(new)));
            }
        }
    }
    Ok(())
}

/// Creates one pool database: registered first (so a sweep never takes it
/// for an orphan), then created, then marked ready with the WAL position
/// replicas must replay before it exists there.
async fn create_one(
    conn: &Client,
    shared: &Shared,
    strategy: &str,
    claim_for: Option<i32>,
) -> Result<(String, Lsn), Error> {
    let id: i64 = conn
        .query_one("SELECT nextval('drr_testing.pool_seq')", &[])
        .await
        .map_err(Error::postgres("primary", "numbering a test database"))?
        .get(0);
    let name = format!("{}{:012x}_{id}", shared.database_prefix, shared.hash >> 16);
    conn.execute(
        "INSERT INTO drr_testing.pool (name, template, state, owner_pid) \
         VALUES ($1, $2, 'creating', pg_backend_pid())",
        &[&name, &shared.template],
    )
    .await
    .map_err(Error::postgres("primary", "registering a test database"))?;
    let created = exec(
        conn,
        &format!(
            "CREATE DATABASE {} TEMPLATE {}{strategy}",
            quote_ident(&name),
            quote_ident(&shared.template)
        ),
    )
    .await;
    if let Err(err) = created {
        let _ = conn
            .execute("DELETE FROM drr_testing.pool WHERE name = $1", &[&name])
            .await;
        return Err(Error::postgres("primary", "creating a test database")(err));
    }
    let lsn = wal::commit_token(conn)
        .await
        .map_err(Error::postgres("primary", "reading the WAL position"))?
        .lsn();
    let state = if claim_for.is_some() {
        "claimed"
    } else {
        "ready"
    };
    conn.execute(
        "UPDATE drr_testing.pool SET state = $2, ready_lsn = $3, \
         owner_pid = coalesce($4, pg_backend_pid()), owner_since = now() WHERE name = $1",
        &[&name, &state, &PgLsn::from(lsn.as_u64()), &claim_for],
    )
    .await
    .map_err(Error::postgres("primary", "registering a test database"))?;
    Ok((name, lsn))
}
