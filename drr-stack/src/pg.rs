//! Talking to the stack's nodes over TCP with tokio-postgres: the same code
//! serves both backends, since compose publishes every node on its spec port.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio_postgres::{Client, NoTls};

use crate::secrets::Secrets;
use crate::spec::{Node, StackSpec};

/// Credentials for one connection.
#[derive(Debug, Clone, Copy)]
pub struct Login<'a> {
    /// Role name.
    pub user: &'a str,
    /// Password.
    pub password: &'a str,
    /// Database name.
    pub database: &'a str,
}

impl<'a> Login<'a> {
    /// The superuser (`postgres`, or an external cluster's admin role) on
    /// the `postgres` database.
    pub fn admin(secrets: &'a Secrets) -> Self {
        Login {
            user: &secrets.superuser,
            password: &secrets.superuser_password,
            database: "postgres",
        }
    }

    /// The login role's credentials.
    pub fn of(credentials: &'a crate::spec::Credentials) -> Self {
        Login {
            user: &credentials.user,
            password: &credentials.password,
            database: &credentials.database,
        }
    }
}

/// Connects once; the connection's task runs on the current runtime.
pub async fn connect(spec: &StackSpec, node: &Node, login: Login<'_>) -> Result<Client> {
    let mut config = tokio_postgres::Config::new();
    config
        .host(spec.node_host(node))
        .port(node.port)
        .user(login.user)
        .password(login.password)
        .dbname(login.database)
        .application_name("drr")
        .connect_timeout(Duration::from_secs(5));
    let (client, connection) = config.connect(NoTls).await.with_context(|| {
        format!(
            "cannot connect to node `{}` on {}:{} as `{}`",
            node.name,
            spec.host(),
            node.port,
            login.user
        )
    })?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// Connects, retrying until `timeout`: for servers that are starting.
pub async fn connect_retrying(
    spec: &StackSpec,
    node: &Node,
    login: Login<'_>,
    timeout: Duration,
    mut still_starting: impl FnMut() -> Result<()>,
) -> Result<Client> {
    let deadline = Instant::now() + timeout;
    loop {
        match connect(spec, node, login).await {
            Ok(client) => return Ok(client),
            Err(e) if Instant::now() >= deadline => {
                return Err(e.context(format!(
                    "node `{}` did not accept logins within {timeout:?}",
                    node.name
                )));
            }
            Err(_) => {
                still_starting()?;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
}

/// The version the server runs, e.g. `15.18`: `server_version` without a
/// packager's suffix such as ` (Debian 15.18-0+deb12u1)`.
pub async fn server_version(client: &Client) -> Result<String> {
    let row = client
        .query_one(
            "SELECT split_part(current_setting('server_version'), ' ', 1)",
            &[],
        )
        .await
        .context("cannot read the server version")?;
    Ok(row.get(0))
}

/// Whether a replica replays WAL.
///
/// Postgres has three pause states: `not paused`, `paused`, and `pause
/// requested`, which `pg_wal_replay_pause()` leaves in place while a commit
/// waits out `recovery_min_apply_delay`. In both of the last two nothing new
/// becomes visible until `pg_wal_replay_resume()`, so drr shows them as one
/// state: replay is held, [`Replay::Paused`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Replay {
    /// Replay runs.
    Running,
    /// Replay is held by a pause (requested or in effect) until `resume`.
    Paused,
}

impl Replay {
    /// From `pg_get_wal_replay_pause_state()`.
    pub fn from_pause_state(state: &str) -> Replay {
        if state == "not paused" {
            Replay::Running
        } else {
            Replay::Paused
        }
    }

    /// `running` or `paused`.
    pub fn as_str(self) -> &'static str {
        match self {
            Replay::Running => "running",
            Replay::Paused => "paused",
        }
    }
}

impl std::fmt::Display for Replay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A replica's replay state as seen on the replica itself.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayState {
    /// `pg_is_in_recovery()`.
    pub in_recovery: bool,
    /// Whether replay runs or is held by a pause.
    pub replay: Replay,
    /// Current `recovery_min_apply_delay` in milliseconds.
    pub delay_ms: u64,
    /// `pg_last_wal_replay_lsn()` as text.
    pub replay_lsn: Option<String>,
    /// Whether its WAL receiver streams (`pg_stat_wal_receiver`).
    pub streaming: bool,
    /// The replication slot it streams through, as it says itself (an
    /// external cluster's slots may be named anyhow).
    pub slot: Option<String>,
}

/// Reads a replica's replay state.
pub async fn replay_state(client: &Client) -> Result<ReplayState> {
    let row = client
        .query_one(
            "SELECT pg_is_in_recovery(), \
                    CASE WHEN pg_is_in_recovery() THEN pg_get_wal_replay_pause_state() ELSE 'not paused' END, \
                    (SELECT setting::bigint FROM pg_settings WHERE name = 'recovery_min_apply_delay'), \
                    pg_last_wal_replay_lsn()::text, \
                    coalesce((SELECT status = 'streaming' FROM pg_stat_wal_receiver), false), \
                    (SELECT slot_name FROM pg_stat_wal_receiver)",
            &[],
        )
        .await
        .context("cannot read the replay state")?;
    Ok(ReplayState {
        in_recovery: row.get(0),
        replay: Replay::from_pause_state(row.get(1)),
        delay_ms: u64::try_from(row.get::<_, i64>(2)).unwrap_or(0),
        replay_lsn: row.get(3),
        streaming: row.get(4),
        slot: row.get(5),
    })
}

/// One row of the primary's view of its replicas.
#[derive(Debug, Clone, PartialEq)]
pub struct Streaming {
    /// Replication slot (named after the replica).
    pub slot: String,
    /// Whether a walsender streams to it right now.
    pub streaming: bool,
    /// Bytes between the primary's current WAL position and the replica's replay position.
    pub replay_lag_bytes: Option<i64>,
    /// `pg_stat_replication.replay_lag` in milliseconds (NULL when idle: 0).
    pub replay_lag_ms: Option<f64>,
    /// WAL the slot keeps on the primary, in bytes (none once invalidated).
    pub retained_bytes: Option<i64>,
    /// `pg_replication_slots.wal_status`: `reserved`, `extended`,
    /// `unreserved` (about to be lost) or `lost` (invalidated).
    pub wal_status: Option<String>,
}

impl Streaming {
    /// Whether the slot was invalidated (it held more WAL than
    /// `max_slot_wal_keep_size` allows): its replica can never stream
    /// through it again.
    pub fn is_lost(&self) -> bool {
        self.wal_status.as_deref() == Some("lost")
    }
}

/// The primary's view of every replication slot.
pub async fn streaming(primary: &Client) -> Result<Vec<Streaming>> {
    let rows = primary
        .query(
            "SELECT s.slot_name::text, coalesce(r.state = 'streaming', false), \
                    pg_wal_lsn_diff(pg_current_wal_lsn(), r.replay_lsn)::bigint, \
                    extract(epoch FROM r.replay_lag)::float8 * 1000, \
                    pg_wal_lsn_diff(pg_current_wal_lsn(), s.restart_lsn)::bigint, \
                    s.wal_status \
             FROM pg_replication_slots s LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid \
             WHERE s.slot_type = 'physical' ORDER BY 1",
            &[],
        )
        .await
        .context("cannot read pg_stat_replication on the primary")?;
    Ok(rows
        .iter()
        .map(|row| Streaming {
            slot: row.get(0),
            streaming: row.get(1),
            replay_lag_bytes: row.get(2),
            replay_lag_ms: row.get(3),
            retained_bytes: row.get(4),
            wal_status: row.get(5),
        })
        .collect())
}

/// A primary's WAL write position (`pg_current_wal_lsn()`), as a number.
pub async fn write_position(client: &Client) -> Result<u64> {
    let row = client
        .query_one("SELECT pg_current_wal_lsn()", &[])
        .await
        .context("cannot read the primary's WAL position")?;
    Ok(u64::from(row.get::<_, tokio_postgres::types::PgLsn>(0)))
}

/// The WAL position a replica has received (`pg_last_wal_receive_lsn()`),
/// as a number; 0 before it received any.
pub async fn received_position(client: &Client) -> Result<u64> {
    let row = client
        .query_one("SELECT pg_last_wal_receive_lsn()", &[])
        .await
        .context("cannot read the replica's received WAL position")?;
    Ok(row
        .get::<_, Option<tokio_postgres::types::PgLsn>>(0)
        .map_or(0, u64::from))
}

/// The timeline a node is on: a primary's current one, a replica's from
/// its WAL receiver (or its last checkpoint while it does not stream).
pub async fn timeline(client: &Client) -> Result<i32> {
    let row = client
        .query_one(
            "SELECT CASE WHEN pg_is_in_recovery() THEN coalesce( \
                 (SELECT received_tli FROM pg_stat_wal_receiver), \
                 (SELECT timeline_id FROM pg_control_checkpoint())) \
             ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int4 END",
            &[],
        )
        .await
        .context("cannot read the node's timeline")?;
    Ok(row.get(0))
}

/// Creates the physical replication slot `name` on the primary, reserving
/// WAL from now on.
pub async fn create_slot(primary: &Client, name: &str) -> Result<()> {
    primary
        .execute(
            "SELECT pg_create_physical_replication_slot($1, true)",
            &[&name],
        )
        .await
        .with_context(|| format!("cannot create the replication slot of `{name}`"))?;
    Ok(())
}

/// Creates the physical replication slot `name` on the primary unless it
/// exists.
pub async fn ensure_slot(primary: &Client, name: &str) -> Result<()> {
    let exists = primary
        .query_opt(
            "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1",
            &[&name],
        )
        .await
        .context("cannot read the replication slots on the primary")?
        .is_some();
    if exists {
        return Ok(());
    }
    create_slot(primary, name).await
}

/// Drops replication slot `name` on the primary if it exists and is idle.
pub async fn drop_slot(primary: &Client, name: &str) -> Result<()> {
    primary
        .execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
             WHERE slot_name = $1 AND NOT active",
            &[&name],
        )
        .await
        .with_context(|| format!("cannot drop replication slot `{name}` on the primary"))?;
    Ok(())
}
