//! The template database: built once, under its advisory lock, with the
//! migrations applied.

use tokio_postgres::Client;

use crate::testing::error::Error;
use crate::testing::sql::quote_ident;
use crate::testing::stack::with_dbname;

use super::Shared;
use super::coordination::{TEMPLATE_LOCK_CLASS, drop_database_if_exists, exec, lock_key};

/// Builds the template once (under its advisory lock); returns the
/// `STRATEGY` clause for copies.
pub(super) async fn ensure_template(conn: &Client, shared: &Shared) -> Result<&'static str, Error> {
    let key = lock_key(shared.hash);
    conn.execute(
        "SELECT pg_advisory_lock($1, $2)",
        &[&TEMPLATE_LOCK_CLASS, &key],
    )
    .await
    .map_err(Error::postgres("primary", "locking the template"))?;
    let result = build_template(conn, shared).await;
    let _ = conn
        .execute(
            "SELECT pg_advisory_unlock($1, $2)",
            &[&TEMPLATE_LOCK_CLASS, &key],
        )
        .await;
    result
}

async fn build_template(conn: &Client, shared: &Shared) -> Result<&'static str, Error> {
    let row = conn
        .query_one(
            "SELECT current_setting('server_version_num')::int4, \
             (SELECT datistemplate FROM pg_database WHERE datname = $1)",
            &[&shared.template],
        )
        .await
        .map_err(Error::postgres("primary", "looking for the template"))?;
    // STRATEGY FILE_COPY (15+) writes a few WAL records instead of the whole
    // template, so replicas replay a batch quickly.
    let strategy = if row.get::<_, i32>(0) >= 150_000 {
        " STRATEGY FILE_COPY"
    } else {
        ""
    };
    let tpl = quote_ident(&shared.template);
    match row.get::<_, Option<bool>>(1) {
        Some(true) => return Ok(strategy),
        // Left half-built by a crashed process: start over.
        Some(false) => drop_database_if_exists(conn, &shared.template)
            .await
            .map_err(Error::postgres("primary", "dropping a half-built template"))?,
        None => {}
    }
    exec(conn, &format!("CREATE DATABASE {tpl} TEMPLATE template0"))
        .await
        .map_err(Error::postgres(
            "primary",
            "creating the template database (the login role needs CREATEDB)",
        ))?;
    let url = with_dbname(shared.stack.primary_url(), &shared.template)?;
    shared.migrations.apply(&url).await?;
    exec(conn, &format!("ALTER DATABASE {tpl} IS_TEMPLATE true"))
        .await
        .map_err(Error::postgres("primary", "marking the template"))?;
    Ok(strategy)
}
