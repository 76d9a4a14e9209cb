//! How test processes coordinate through the primary: the pool table and
//! the advisory locks that guard the template and the refill.

use tokio_postgres::Client;

use crate::testing::error::Error;

/// Advisory lock classes (`pg_advisory_lock(class, key)`), "DRRT" and up.
const SCHEMA_LOCK: (i32, i32) = (0x4452_5254, 0);
pub(super) const TEMPLATE_LOCK_CLASS: i32 = 0x4452_5255;
pub(super) const REFILL_LOCK_CLASS: i32 = 0x4452_5256;

const SCHEMA_SQL: &str = "
CREATE SCHEMA IF NOT EXISTS drr_testing;
CREATE SEQUENCE IF NOT EXISTS drr_testing.pool_seq;
CREATE TABLE IF NOT EXISTS drr_testing.pool (
    name text PRIMARY KEY,
    template text NOT NULL,
    state text NOT NULL CHECK (state IN ('creating', 'ready', 'claimed', 'done')),
    ready_lsn pg_lsn,
    created_at timestamptz NOT NULL DEFAULT now(),
    owner_pid int4 NOT NULL,
    owner_since timestamptz NOT NULL DEFAULT now()
);";

pub(super) fn lock_key(hash: u64) -> i32 {
    // The low 32 bits, as the signed key pg_advisory_lock takes.
    i32::from_ne_bytes((hash as u32).to_ne_bytes())
}

pub(super) async fn try_lock(conn: &Client, class: i32, key: i32) -> Result<bool, Error> {
    Ok(conn
        .query_one("SELECT pg_try_advisory_lock($1, $2)", &[&class, &key])
        .await
        .map_err(Error::postgres("primary", "taking an advisory lock"))?
        .get(0))
}

/// Creates the pool table if needed; returns the backend's pid.
pub(super) async fn ensure_schema(conn: &Client) -> Result<i32, Error> {
    let row = conn
        .query_one(
            "SELECT pg_backend_pid(), to_regclass('drr_testing.pool') IS NOT NULL",
            &[],
        )
        .await
        .map_err(Error::postgres("primary", "checking the pool table"))?;
    if !row.get::<_, bool>(1) {
        let (class, key) = SCHEMA_LOCK;
        conn.batch_execute(&format!(
            "BEGIN; SELECT pg_advisory_xact_lock({class}, {key}); {SCHEMA_SQL} COMMIT;"
        ))
        .await
        .map_err(Error::postgres(
            "primary",
            "creating the pool table drr_testing.pool (the login role needs CREATE on its database)",
        ))?;
    }
    Ok(row.get(0))
}

pub(super) async fn exec(conn: &Client, sql: &str) -> Result<(), tokio_postgres::Error> {
    conn.batch_execute(sql).await
}

/// `DROP DATABASE IF EXISTS` the pool's database `name` (quoted here),
/// ending the sessions still in it (`WITH (FORCE)`). FORCE may not end a
/// session of a role the login role is not a member of: an autovacuum
/// worker in a fresh database, say. Then a plain DROP, which makes
/// autovacuum workers leave, is tried once more.
pub(super) async fn drop_database_if_exists(
    conn: &Client,
    name: &str,
) -> Result<(), tokio_postgres::Error> {
    let name = crate::testing::sql::quote_ident(name);
    match exec(
        conn,
        &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
    )
    .await
    {
        Err(err)
            if err.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) =>
        {
            exec(conn, &format!("DROP DATABASE IF EXISTS {name}")).await
        }
        other => other,
    }
}
