//! Reading WAL positions from servers: the primary's position for tokens and
//! lag, a replica's replay state, and waiting for a replica to catch up.
//!
//! These are plain functions on a [`tokio_postgres::Client`], so test
//! harnesses can use them without a [`Router`](crate::Router).

use std::time::{Duration, Instant};

use tokio_postgres::types::PgLsn;
use tokio_postgres::{Client, Row};

use crate::lsn::Lsn;
use crate::token::{ClusterId, LsnToken};

/// The first PostgreSQL version with `WAIT FOR LSN` (as `server_version_num`).
pub const WAIT_FOR_LSN_VERSION: i32 = 190_000;

/// The setting a stack sets, to the same fresh value on every node of each
/// stack instance, so that clusters copied from one template (which share
/// a system identifier) have distinct [`ClusterId`]s. Unset, the system
/// identifier alone is the identity.
pub const STACK_ID_SETTING: &str = "drr.stack_id";

/// Columns naming a server's cluster: its system identifier and
/// `drr.stack_id` (NULL when unset).
const IDENTITY: &str = "(SELECT system_identifier FROM pg_control_system()), \
     current_setting('drr.stack_id', true)";

/// The timeline a primary writes on: the first eight hexadecimal digits of
/// the WAL file name of its position.
const PRIMARY_TIMELINE: &str =
    "('x' || left(pg_walfile_name(pg_current_wal_lsn()), 8))::bit(32)::int8";

/// The timeline a replica has reached, as its control file says (it lags a
/// switch a little, which only makes a newer timeline look unreached).
const REPLICA_TIMELINE: &str = "greatest((SELECT timeline_id FROM pg_control_checkpoint()), \
     (SELECT min_recovery_end_timeline FROM pg_control_recovery()))::int8";

/// What a server reports about its own recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplayState {
    /// `pg_is_in_recovery()`: false on a primary (or a promoted replica).
    pub in_recovery: bool,
    /// `pg_last_wal_replay_lsn()`: the end of the last replayed record.
    pub replay_lsn: Option<Lsn>,
    /// `pg_last_wal_receive_lsn()`: the end of the WAL received so far.
    pub receive_lsn: Option<Lsn>,
    /// `pg_get_wal_replay_pause_state()`, on a server in recovery.
    pub pause: Option<ReplayPause>,
    /// `server_version_num`, e.g. `150004`.
    pub server_version: i32,
    /// `recovery_min_apply_delay`, on a server in recovery: how long after
    /// its commit on the primary a transaction becomes visible here, at
    /// the earliest.
    pub apply_delay: Option<Duration>,
    /// The cluster the server belongs to (see [`ClusterId`]).
    pub cluster: ClusterId,
    /// The timeline it has reached (a replica) or writes on (a primary).
    pub timeline: u32,
}

/// Whether replay is held by `pg_wal_replay_pause()`.
///
/// Postgres reports `pause requested` while a commit waits out
/// `recovery_min_apply_delay` after a pause, and `paused` once replay
/// stopped. In both, nothing new becomes visible until
/// `pg_wal_replay_resume()`, so both are [`ReplayPause::Paused`]: replay is
/// held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplayPause {
    /// Replay runs.
    NotPaused,
    /// Replay is held by a pause, requested or in effect.
    Paused,
}

/// Reads a server's recovery state in one round trip.
pub async fn replay_state(client: &Client) -> Result<ReplayState, tokio_postgres::Error> {
    let sql = format!(
        "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn(), pg_last_wal_receive_lsn(), \
         CASE WHEN pg_is_in_recovery() THEN pg_get_wal_replay_pause_state() END, \
         current_setting('server_version_num')::int4, \
         CASE WHEN pg_is_in_recovery() THEN (extract(epoch FROM \
           current_setting('recovery_min_apply_delay')::interval) * 1000)::int8 END, \
         {IDENTITY}, \
         CASE WHEN pg_is_in_recovery() THEN {REPLICA_TIMELINE} ELSE {PRIMARY_TIMELINE} END"
    );
    let row = client.query_one(&sql, &[]).await?;
    let lsn = |value: Option<PgLsn>| value.map(|v| Lsn::from(u64::from(v)));
    Ok(ReplayState {
        in_recovery: row.try_get(0)?,
        replay_lsn: lsn(row.try_get(1)?),
        receive_lsn: lsn(row.try_get(2)?),
        pause: row.try_get::<_, Option<&str>>(3)?.map(|state| match state {
            "not paused" => ReplayPause::NotPaused,
            _ => ReplayPause::Paused,
        }),
        server_version: row.try_get(4)?,
        apply_delay: row
            .try_get::<_, Option<i64>>(5)?
            .map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0))),
        cluster: cluster(&row, 6)?,
        timeline: timeline(&row, 8)?,
    })
}

/// The primary's position, cluster and timeline, as the monitor samples
/// them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PrimaryState {
    /// [`write_position`]: what caught-up replicas have replayed.
    pub position: Lsn,
    /// The cluster (see [`ClusterId`]).
    pub cluster: ClusterId,
    /// The timeline it writes on.
    pub timeline: u32,
}

/// Reads the primary's [`PrimaryState`] in one round trip.
pub async fn primary_state(client: &Client) -> Result<PrimaryState, tokio_postgres::Error> {
    let sql = format!("SELECT pg_current_wal_lsn(), {IDENTITY}, {PRIMARY_TIMELINE}");
    let row = client.query_one(&sql, &[]).await?;
    Ok(PrimaryState {
        position: Lsn::from(u64::from(row.try_get::<_, PgLsn>(0)?)),
        cluster: cluster(&row, 1)?,
        timeline: timeline(&row, 3)?,
    })
}

/// The cluster from the [`IDENTITY`] columns starting at `at`.
fn cluster(row: &Row, at: usize) -> Result<ClusterId, tokio_postgres::Error> {
    let system_identifier: i64 = row.try_get(at)?;
    let stack_id: Option<&str> = row.try_get(at + 1)?;
    Ok(ClusterId::new(
        u64::from_ne_bytes(system_identifier.to_ne_bytes()),
        stack_id,
    ))
}

fn timeline(row: &Row, at: usize) -> Result<u32, tokio_postgres::Error> {
    let timeline: i64 = row.try_get(at)?;
    Ok(u32::try_from(timeline).unwrap_or(0))
}

/// The primary's WAL position with end-of-record semantics
/// (`pg_current_wal_lsn()`): what caught-up replicas have replayed on an
/// idle primary. Used for lag.
pub async fn write_position(client: &Client) -> Result<Lsn, tokio_postgres::Error> {
    let row = client.query_one("SELECT pg_current_wal_lsn()", &[]).await?;
    Ok(Lsn::from(u64::from(row.try_get::<_, PgLsn>(0)?)))
}

/// The token for everything committed so far on the primary `client` is
/// connected to, including the caller's own last commit, with the primary's
/// cluster and timeline.
///
/// Taken from `pg_current_wal_insert_lsn()`, which covers the caller's commit
/// record even under `synchronous_commit = off` (where
/// `pg_current_wal_lsn()` may still be behind it), and then mapped back from
/// "start of the next record" to "end of the last one" with
/// [`Lsn::end_of_previous_record`], so that a position just past a page
/// header does not wait for WAL that an idle primary never writes.
pub async fn commit_token(client: &Client) -> Result<LsnToken, tokio_postgres::Error> {
    let sql = format!(
        "SELECT pg_current_wal_insert_lsn(), current_setting('wal_block_size')::int8, \
         pg_size_bytes(current_setting('wal_segment_size')), {IDENTITY}, {PRIMARY_TIMELINE}"
    );
    let row = client.query_one(&sql, &[]).await?;
    let insert = Lsn::from(u64::from(row.try_get::<_, PgLsn>(0)?));
    let block: i64 = row.try_get(1)?;
    let segment: i64 = row.try_get(2)?;
    let block = u64::try_from(block).unwrap_or(0);
    let segment = u64::try_from(segment).unwrap_or(0);
    Ok(LsnToken::from_cluster(
        insert.end_of_previous_record(block, segment),
        cluster(&row, 3)?,
        timeline(&row, 5)?,
    ))
}

/// Waits until the replica `client` is connected to has replayed `target`,
/// for at most `timeout`. Returns the replay position last seen, and whether
/// it reached `target`.
///
/// On PostgreSQL 19 and later this uses `WAIT FOR LSN`; below, and if that
/// fails, it polls `pg_last_wal_replay_lsn()` every `poll_interval`. With
/// less than a millisecond left it answers from one check of the replay
/// position: `WAIT FOR LSN` takes whole milliseconds, and reads a timeout of
/// `0ms` as "wait indefinitely".
pub async fn wait_for_replay(
    client: &Client,
    target: Lsn,
    timeout: Duration,
    poll_interval: Duration,
    server_version: i32,
) -> Result<(Option<Lsn>, bool), tokio_postgres::Error> {
    if server_version >= WAIT_FOR_LSN_VERSION && timeout >= Duration::from_millis(1) {
        let sql = format!(
            "WAIT FOR LSN '{target}' WITH (TIMEOUT '{}ms', NO_THROW)",
            timeout.as_millis()
        );
        // The statement's shape is not settled before 19 is released: if it
        // fails, polling still works.
        if let Ok(rows) = client.simple_query(&sql).await {
            let reached = rows.iter().any(|message| match message {
                tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0) == Some("success"),
                _ => false,
            });
            return Ok((reached.then_some(target), reached));
        }
    }
    let deadline = Instant::now() + timeout;
    loop {
        let row = client
            .query_one("SELECT pg_last_wal_replay_lsn()", &[])
            .await?;
        let replayed = row
            .try_get::<_, Option<PgLsn>>(0)?
            .map(|v| Lsn::from(u64::from(v)));
        if replayed.is_some_and(|lsn| lsn >= target) {
            return Ok((replayed, true));
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok((replayed, false));
        }
        tokio::time::sleep(poll_interval.min(deadline - now)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_identity_reads_the_stack_id_setting() {
        assert!(IDENTITY.contains(&format!("'{STACK_ID_SETTING}'")));
    }
}
