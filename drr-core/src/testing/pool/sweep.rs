//! Sweeping: dropping what crashed or finished runs left behind, and, for
//! a clean slate, unclaimed databases and unused templates.

use tokio_postgres::Client;

use crate::testing::error::Error;
use crate::testing::sql::quote_ident;

use super::Shared;
use super::coordination::{TEMPLATE_LOCK_CLASS, drop_database_if_exists, exec, lock_key, try_lock};

pub(super) async fn sweep(
    conn: &Client,
    shared: &Shared,
    everything: bool,
) -> Result<Vec<String>, Error> {
    let max_age = shared.max_ready_age.as_secs_f64();
    // Rows whose owner is gone, finished, or (ready and) too old; rows of
    // ready databases that no longer exist. Locked rows are someone else's
    // claim in progress: skip them.
    let rows = conn
        .query(
            "WITH stale AS ( \
               SELECT p.name FROM drr_testing.pool p \
               WHERE p.state = 'done' \
                  OR (p.state IN ('creating', 'claimed') AND NOT EXISTS ( \
                        SELECT 1 FROM pg_stat_activity a \
                        WHERE a.pid = p.owner_pid AND a.backend_start <= p.owner_since)) \
                  OR (p.state = 'ready' AND ($2 OR p.created_at < now() - make_interval(secs => $1))) \
                  OR (p.state = 'ready' AND NOT EXISTS ( \
                        SELECT 1 FROM pg_database d WHERE d.datname = p.name)) \
               FOR UPDATE SKIP LOCKED) \
             DELETE FROM drr_testing.pool p USING stale WHERE p.name = stale.name \
             RETURNING p.name",
            &[&max_age, &everything],
        )
        .await
        .map_err(Error::postgres("primary", "sweeping the pool"))?;
    let mut names: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    // Databases by prefix with no row: a crash between unregistering and
    // dropping, or a pool table that was dropped.
    names.extend(unreferenced(conn, &shared.database_prefix, PoolColumn::Name).await?);
    names.sort();
    names.dedup();
    let mut dropped = Vec::with_capacity(names.len());
    for name in names {
        match drop_database_if_exists(conn, &name).await {
            Ok(()) => dropped.push(name),
            Err(err) => {
                tracing::warn!(database = %name, "cannot drop leftover test database: {err}")
            }
        }
    }
    if everything {
        dropped.extend(drop_unused_templates(conn, &shared.template_prefix).await?);
    }
    Ok(dropped)
}

/// A column of `drr_testing.pool` that names a database.
#[derive(Clone, Copy)]
enum PoolColumn {
    /// `name`: a pool database.
    Name,
    /// `template`: the template a pool database was copied from.
    Template,
}

/// Databases named `prefix...` and owned by the login role that no pool
/// row names in `column`.
async fn unreferenced(
    conn: &Client,
    prefix: &str,
    column: PoolColumn,
) -> Result<Vec<String>, Error> {
    let (column, listing) = match column {
        PoolColumn::Name => ("name", "listing leftover databases"),
        PoolColumn::Template => ("template", "listing templates"),
    };
    let rows = conn
        .query(
            &format!(
                "SELECT datname FROM pg_database d \
                 WHERE left(datname, length($1)) = $1 \
                   AND pg_get_userbyid(datdba) = current_user \
                   AND NOT EXISTS (SELECT 1 FROM drr_testing.pool p WHERE p.{column} = d.datname)"
            ),
            &[&prefix],
        )
        .await
        .map_err(Error::postgres("primary", listing))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Drops templates that no pool row refers to and that nobody is building.
async fn drop_unused_templates(conn: &Client, prefix: &str) -> Result<Vec<String>, Error> {
    let mut dropped = Vec::new();
    for name in unreferenced(conn, prefix, PoolColumn::Template).await? {
        let Some(hash) = name
            .strip_prefix(prefix)
            .and_then(|h| u64::from_str_radix(h, 16).ok())
        else {
            continue;
        };
        if !try_lock(conn, TEMPLATE_LOCK_CLASS, lock_key(hash)).await? {
            continue;
        }
        let tpl = quote_ident(&name);
        // Two statements: DROP DATABASE cannot run in a multi-statement string.
        let mut result = exec(conn, &format!("ALTER DATABASE {tpl} IS_TEMPLATE false")).await;
        if result.is_ok() {
            result = drop_database_if_exists(conn, &name).await;
        }
        let _ = conn
            .execute(
                "SELECT pg_advisory_unlock($1, $2)",
                &[&TEMPLATE_LOCK_CLASS, &lock_key(hash)],
            )
            .await;
        match result {
            Ok(()) => dropped.push(name),
            Err(err) => tracing::warn!(database = %name, "cannot drop template: {err}"),
        }
    }
    Ok(dropped)
}
