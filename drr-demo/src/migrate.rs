//! The schema: migrations as SQL files compiled into the binary, and the
//! idempotent runner that applies them on the primary.

use drr_core::Router;

/// Every migration, in order: its name and its SQL.
///
/// The same list serves the service at start-up ([`migrate`]) and test
/// harnesses that build a template database.
pub fn migrations() -> &'static [(&'static str, &'static str)] {
    &[("0001_items", include_str!("../migrations/0001_items.sql"))]
}

/// Why the migrations could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// No connection or transaction on the primary.
    #[error("cannot open a transaction on the primary: {0}")]
    Router(#[from] drr_core::Error),
    /// A statement failed.
    #[error("migration {name} failed: {source}")]
    Sql {
        /// The migration, or `bookkeeping` for the runner's own statements.
        name: &'static str,
        /// The server's error.
        #[source]
        source: tokio_postgres::Error,
    },
}

/// Applies every migration not yet recorded in `drr_demo_migrations`, in one
/// transaction on the primary, and returns the names it applied.
///
/// Idempotent and safe to run from several processes at once: an advisory
/// lock serialises runners, and each migration is recorded with its SQL.
/// Tables are created in the first schema of the connection's
/// `search_path`.
pub async fn migrate(router: &Router) -> Result<Vec<&'static str>, MigrateError> {
    let bookkeeping = |source| MigrateError::Sql {
        name: "bookkeeping",
        source,
    };
    let tx = router.transaction().await?;
    tx.batch_execute(
        "SELECT pg_advisory_xact_lock(hashtext('drr_demo_migrations')); \
         CREATE TABLE IF NOT EXISTS drr_demo_migrations ( \
             name text PRIMARY KEY, \
             applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .await
    .map_err(bookkeeping)?;
    let mut applied = Vec::new();
    for &(name, sql) in migrations() {
        let done = tx
            .query_opt(
                "SELECT 1 FROM drr_demo_migrations WHERE name = $1",
                &[&name],
            )
            .await
            .map_err(bookkeeping)?
            .is_some();
        if done {
            continue;
        }
        tx.batch_execute(sql)
            .await
            .map_err(|source| MigrateError::Sql { name, source })?;
        tx.execute(
            "INSERT INTO drr_demo_migrations (name) VALUES ($1)",
            &[&name],
        )
        .await
        .map_err(bookkeeping)?;
        applied.push(name);
    }
    tx.commit().await?;
    Ok(applied)
}
