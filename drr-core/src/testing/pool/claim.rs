//! Claiming a ready database: taking one from the pool table, or becoming
//! the process that creates them, and then waiting until every replica has
//! replayed its creation.

use std::time::{Duration, Instant};

use tokio::sync::{OnceCell, oneshot};
use tokio_postgres::Client;
use tokio_postgres::types::PgLsn;

use crate::lsn::Lsn;
use crate::testing::error::Error;
use crate::testing::stack::{connect, with_dbname};
use crate::testing::wait;

use super::DbPool;
use super::coordination::{REFILL_LOCK_CLASS, lock_key, try_lock};
use super::refill::refill;
use super::test_db::{Conns, ReplicaConn, TestDb};

/// How often a claim looks for a ready database while another process
/// creates them, and retries to become the creator.
const READY_POLL: Duration = Duration::from_millis(10);
const REFILL_RETRY: Duration = Duration::from_millis(100);

/// How many times a connection to a claimed database on a replica is tried
/// when replay cancels it, and how long apart.
const CONFLICT_ATTEMPTS: u32 = 5;
const CONFLICT_RETRY: Duration = Duration::from_millis(50);

impl DbPool {
    pub(super) async fn take(
        &self,
        coordinator: &Client,
        pid: i32,
        started: Instant,
    ) -> Result<(String, Lsn, usize), Error> {
        let shared = &self.shared;
        let deadline = started + shared.claim_timeout;
        let mut lock_conn: Option<Client> = None;
        let mut last_try: Option<Instant> = None;
        loop {
            if let Some(found) = try_claim(coordinator, &shared.template).await? {
                return Ok(found);
            }
            if last_try.is_none_or(|t| t.elapsed() >= REFILL_RETRY) {
                last_try = Some(Instant::now());
                let conn = match lock_conn.take() {
                    Some(conn) => conn,
                    None => connect(shared.stack.primary_url(), "primary").await?,
                };
                if try_lock(&conn, REFILL_LOCK_CLASS, lock_key(shared.hash)).await? {
                    let (tx, rx) = oneshot::channel();
                    tokio::spawn(refill(conn, shared.clone(), Some((pid, tx))));
                    match rx.await {
                        Ok(Ok(Some((name, lsn)))) => return Ok((name, lsn, 0)),
                        Ok(Err(err)) => return Err(err),
                        Ok(Ok(None)) | Err(_) => {}
                    }
                } else {
                    lock_conn = Some(conn);
                }
            }
            if Instant::now() >= deadline {
                return Err(Error::ClaimTimeout {
                    waited: started.elapsed(),
                    detail: format!(
                        "no ready database from template {} appeared while another process held the refill lock",
                        shared.template
                    ),
                });
            }
            tokio::time::sleep(READY_POLL).await;
        }
    }

    pub(super) async fn finish_claim(
        &self,
        coordinator: &Client,
        name: String,
        lsn: Lsn,
        left: usize,
        started: Instant,
    ) -> Result<TestDb, Error> {
        let shared = &self.shared;
        let stack = &shared.stack;
        // Refill ahead, without making this claim wait.
        if left < shared.batch_size.div_ceil(2) {
            let shared = shared.clone();
            tokio::spawn(async move {
                let Ok(conn) = connect(shared.stack.primary_url(), "primary").await else {
                    return;
                };
                if try_lock(&conn, REFILL_LOCK_CLASS, lock_key(shared.hash))
                    .await
                    .unwrap_or(false)
                {
                    refill(conn, shared, None).await;
                }
            });
        }

        let primary_url = with_dbname(stack.primary_url(), &name)?;
        let primary = connect(&primary_url, "primary").await?;
        // From now on the claim lives as long as this connection does.
        let owner: i32 = primary
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .map_err(Error::postgres("primary", "reading the backend pid"))?
            .get(0);
        coordinator
            .execute(
                "UPDATE drr_testing.pool SET owner_pid = $2, owner_since = now() WHERE name = $1",
                &[&name, &owner],
            )
            .await
            .map_err(Error::postgres("primary", "recording the claim"))?;

        // Wait until the database exists on every replica. Usually it does,
        // and connecting to it is the whole check.
        let remaining = || shared.claim_timeout.saturating_sub(started.elapsed());
        let mut replicas = Vec::with_capacity(stack.replicas().len());
        for replica in stack.replicas() {
            let url = with_dbname(&replica.url, &name)?;
            let client = match connect_on_replica(&url, &replica.name).await {
                Ok(client) => {
                    let node = [(replica.name.as_str(), &client)];
                    wait::wait_for_lsn(&node, lsn, Instant::now(), remaining()).await?;
                    client
                }
                Err(err) if is_missing_database(&err) => {
                    let login = connect(&replica.url, &replica.name).await?;
                    let node = [(replica.name.as_str(), &login)];
                    wait::wait_for_lsn(&node, lsn, Instant::now(), remaining()).await?;
                    connect_on_replica(&url, &replica.name).await?
                }
                Err(err) => return Err(err),
            };
            replicas.push(ReplicaConn {
                name: replica.name.clone(),
                url,
                client,
            });
        }
        Ok(TestDb {
            name,
            login_url: stack.primary_url().to_owned(),
            primary_url,
            setup: started.elapsed(),
            conns: Some(Conns {
                router: OnceCell::new(),
                primary,
                replicas,
            }),
        })
    }
}

/// Connects to a database on a replica. Replay may cancel a session while
/// it starts (`canceling statement due to conflict with recovery`, as the
/// pool's databases are created and dropped around it); Postgres calls
/// that error retryable, so it is retried a few times.
async fn connect_on_replica(url: &str, node: &str) -> Result<Client, Error> {
    let mut attempt = 1;
    loop {
        match connect(url, node).await {
            Err(err) if is_recovery_conflict(&err) && attempt < CONFLICT_ATTEMPTS => {
                attempt += 1;
                tokio::time::sleep(CONFLICT_RETRY).await;
            }
            other => return other,
        }
    }
}

fn is_recovery_conflict(err: &Error) -> bool {
    matches!(err, Error::Postgres { source, .. }
        if source.code() == Some(&tokio_postgres::error::SqlState::T_R_SERIALIZATION_FAILURE))
}

fn is_missing_database(err: &Error) -> bool {
    matches!(err, Error::Postgres { source, .. }
        if source.code() == Some(&tokio_postgres::error::SqlState::INVALID_CATALOG_NAME))
}

async fn try_claim(conn: &Client, template: &str) -> Result<Option<(String, Lsn, usize)>, Error> {
    let row = conn
        .query_opt(
            "UPDATE drr_testing.pool SET state = 'claimed', owner_pid = pg_backend_pid(), \
             owner_since = now() \
             WHERE name = (SELECT name FROM drr_testing.pool \
                           WHERE template = $1 AND state = 'ready' \
                           ORDER BY ready_lsn LIMIT 1 FOR UPDATE SKIP LOCKED) \
             RETURNING name, ready_lsn, (SELECT count(*) FROM drr_testing.pool \
                                         WHERE template = $1 AND state IN ('ready', 'creating'))",
            &[&template],
        )
        .await
        .map_err(Error::postgres("primary", "claiming a test database"))?;
    Ok(row.map(|row| {
        let lsn = row.get::<_, Option<PgLsn>>(1).map_or(0, u64::from);
        let left = usize::try_from(row.get::<_, i64>(2)).unwrap_or(0);
        (row.get(0), Lsn::from(lsn), left.saturating_sub(1))
    }))
}
