//! Lag assertions: a row is not visible on a replica yet, it becomes
//! visible within a bound, and how long a write takes to become visible.

use std::time::{Duration, Instant};

use tokio_postgres::Client;
use tokio_postgres::types::ToSql;

use crate::testing::error::Error;
use crate::testing::wait::POLL_INTERVAL;

/// Query parameters, as tokio-postgres takes them.
pub type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// Asserts that `sql` returns no rows on `replica` right now: the write it
/// looks for has not been replayed there yet.
///
/// Fails with [`Error::AlreadyVisible`] when rows come back.
pub async fn assert_not_visible(
    replica: &Client,
    sql: &str,
    params: Params<'_>,
) -> Result<(), Error> {
    let rows = count(replica, sql, params).await?;
    if rows > 0 {
        return Err(Error::AlreadyVisible {
            sql: sql.to_owned(),
            rows,
        });
    }
    Ok(())
}

/// Asserts that `sql` returns at least one row on `replica` within `bound`,
/// polling every few milliseconds. Returns how long it took.
///
/// Fails with [`Error::NotVisible`] when the bound passes.
pub async fn assert_visible_within(
    replica: &Client,
    sql: &str,
    params: Params<'_>,
    bound: Duration,
) -> Result<Duration, Error> {
    poll_visible(replica, sql, params, Instant::now(), bound).await
}

/// Runs `write` on `primary`, then polls `check` on `replica` until it
/// returns a row: the visibility lag of that write, measured from the moment
/// the write returned. Fails with [`Error::NotVisible`] after `timeout`.
pub async fn measure_visibility_lag(
    primary: &Client,
    write: &str,
    write_params: Params<'_>,
    replica: &Client,
    check: &str,
    check_params: Params<'_>,
    timeout: Duration,
) -> Result<Duration, Error> {
    primary
        .execute(write, write_params)
        .await
        .map_err(Error::postgres("primary", "running the write"))?;
    poll_visible(replica, check, check_params, Instant::now(), timeout).await
}

async fn poll_visible(
    replica: &Client,
    sql: &str,
    params: Params<'_>,
    started: Instant,
    bound: Duration,
) -> Result<Duration, Error> {
    let deadline = started + bound;
    loop {
        if count(replica, sql, params).await? > 0 {
            return Ok(started.elapsed());
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(Error::NotVisible {
                sql: sql.to_owned(),
                bound,
            });
        }
        tokio::time::sleep(POLL_INTERVAL.min(deadline - now)).await;
    }
}

async fn count(replica: &Client, sql: &str, params: Params<'_>) -> Result<usize, Error> {
    replica
        .query(sql, params)
        .await
        .map(|rows| rows.len())
        .map_err(Error::postgres("replica", "running the visibility check"))
}
