//! Live lag control: `delay`, `pause` and `resume`, over TCP on each replica.
//!
//! The delay is Postgres's `recovery_min_apply_delay`: a replica replays a
//! commit record only once `commit time on the primary + delay` has passed
//! on its clock. WAL still streams at once and non-commit records replay at
//! once, but stay invisible under MVCC until their commit is applied — so
//! the delay holds back exactly the *visibility* of committed transactions,
//! DDL such as `CREATE DATABASE` included. Aborts are not delayed.
//!
//! `delay` writes the value with `ALTER SYSTEM` (into the replica's
//! `postgresql.auto.conf`, so it survives `down`/`up`) and reloads; a lowered
//! delay releases commits already waiting. `--reset` removes the override,
//! returning to the spec's value. Every target is validated and connected
//! before the first one changes, so bad input changes no replica.

use std::time::Duration;

use anyhow::{Context, Result};
use tokio_postgres::Client;

use crate::pg::{self, Login};
use crate::render::postgres;
use crate::secrets::Secrets;
use crate::spec::{MAX_DELAY, Replica, StackSpec};

/// Parses a delay: bare milliseconds (`5000`) or a duration (`250ms`, `5s`, `1m`).
pub fn parse_delay(value: &str) -> Result<Duration> {
    let value = value.trim();
    let parsed = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        value.parse::<u64>().ok().map(Duration::from_millis)
    } else {
        humantime::parse_duration(value).ok()
    };
    let Some(delay) = parsed else {
        anyhow::bail!(
            "`{value}` is not a delay; give milliseconds (`5000`) or a duration (`250ms`, `5s`, `1m`)"
        );
    };
    anyhow::ensure!(
        delay <= MAX_DELAY,
        "a delay of `{value}` is above the 24 h maximum; use `cargo xtask pause` for an unbounded lag"
    );
    anyhow::ensure!(
        delay.subsec_nanos() % 1_000_000 == 0,
        "`{value}` is finer than a millisecond, the unit of recovery_min_apply_delay; round it to whole milliseconds"
    );
    Ok(delay)
}

/// The replicas named on the command line (all when none are), or an error
/// listing the names that exist.
pub fn select<'s>(spec: &'s StackSpec, names: &[String]) -> Result<Vec<&'s Replica>> {
    if spec.replicas.is_empty() {
        anyhow::bail!(
            "the spec declares no replicas; add one to the spec, run `cargo xtask up`, then retry"
        );
    }
    if names.is_empty() {
        return Ok(spec.replicas.iter().collect());
    }
    names
        .iter()
        .map(|name| {
            spec.find_replica(name).with_context(|| {
                let known: Vec<&str> = spec.replicas.iter().map(|r| r.node.name.as_str()).collect();
                format!(
                    "there is no replica `{name}`; the spec's replicas are: {}",
                    known.join(", ")
                )
            })
        })
        .collect()
}

/// Connects to every replica first, so that an unreachable one fails the
/// command before anything changes.
async fn connect_all<'s>(
    spec: &StackSpec,
    replicas: &[&'s Replica],
    secrets: &Secrets,
) -> Result<Vec<(&'s Replica, Client)>> {
    let mut clients = Vec::new();
    for replica in replicas {
        let client = pg::connect(spec, &replica.node, Login::admin(secrets))
            .await
            .context("is the stack running? start it with `cargo xtask up`")?;
        clients.push((*replica, client));
    }
    Ok(clients)
}

/// A replica's delay: what runs now and what the spec says.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DelayState {
    /// Replica name.
    pub replica: String,
    /// `recovery_min_apply_delay` in effect, in milliseconds.
    pub current_ms: u64,
    /// The spec's delay, in milliseconds.
    pub spec_ms: u64,
}

/// What `delay` should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DelayChange {
    /// Only report.
    Show,
    /// Set this delay.
    Set(Duration),
    /// Return to the spec's value.
    Reset,
}

impl std::fmt::Display for DelayState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ms", self.current_ms)
    }
}

/// Shows or changes the delay of `replicas`; returns the resulting states.
///
/// With the apply delay, `max_standby_streaming_delay` moves too (see
/// [`postgres::standby_streaming_delay`]), so that long delays keep replica
/// queries usable. When a change fails on a replica, the others still
/// change and the error lists every replica's outcome.
pub async fn delay(
    spec: &StackSpec,
    secrets: &Secrets,
    replicas: &[&Replica],
    change: DelayChange,
) -> Result<Vec<DelayState>> {
    let clients = connect_all(spec, replicas, secrets).await?;
    if change != DelayChange::Show {
        for (replica, client) in &clients {
            refuse_under_patroni(client, replica).await?;
        }
    }
    let mut outcomes = Vec::new();
    for (replica, client) in &clients {
        outcomes.push((
            replica.node.name.clone(),
            change_delay(client, replica, change).await,
        ));
    }
    every_replica("the delay", outcomes)
}

/// Refuses a delay change on a node whose configuration Patroni writes:
/// Patroni owns the recovery settings, and at its next HA loop it removes
/// `recovery_min_apply_delay` from `postgresql.auto.conf`, so an
/// `ALTER SYSTEM` delay would hold for about a second. Patroni's layout
/// gives it away: its `postgresql.conf` includes `postgresql.base.conf`.
/// Where the role may not read `pg_file_settings`, nothing is refused.
async fn refuse_under_patroni(client: &Client, replica: &Replica) -> Result<()> {
    let patroni = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_file_settings \
             WHERE sourcefile LIKE '%/postgresql.base.conf')",
            &[],
        )
        .await
        .is_ok_and(|row| row.get::<_, bool>(0));
    anyhow::ensure!(
        !patroni,
        "`{}` is managed by Patroni, which removes a delay set with ALTER SYSTEM at its next \
         loop; set `recovery_min_apply_delay` under `postgresql.recovery_conf` in that node's \
         Patroni configuration and run `patronictl reload`",
        replica.node.name
    );
    Ok(())
}

async fn change_delay(
    client: &Client,
    replica: &Replica,
    change: DelayChange,
) -> Result<DelayState> {
    // The values are validated durations: no injection possible, and ALTER
    // SYSTEM cannot take a bind parameter.
    let statements = match change {
        DelayChange::Show => Vec::new(),
        DelayChange::Set(d) => vec![
            format!(
                "ALTER SYSTEM SET recovery_min_apply_delay = '{}ms'",
                d.as_millis()
            ),
            format!(
                "ALTER SYSTEM SET max_standby_streaming_delay = '{}ms'",
                postgres::standby_streaming_delay(d, replica.query_grace).as_millis()
            ),
        ],
        DelayChange::Reset => vec![
            "ALTER SYSTEM RESET recovery_min_apply_delay".to_owned(),
            "ALTER SYSTEM RESET max_standby_streaming_delay".to_owned(),
        ],
    };
    if !statements.is_empty() {
        // One round trip each: ALTER SYSTEM refuses to run in the implicit
        // transaction of a multi-statement query.
        for statement in statements
            .iter()
            .map(String::as_str)
            .chain(["SELECT pg_reload_conf()"])
        {
            client.batch_execute(statement).await.map_err(|e| {
                let refused =
                    e.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE);
                let hint = if refused {
                    " (drr's role may not run ALTER SYSTEM there: managed services do not \
                     allow it, so their delay cannot be changed)"
                } else {
                    ""
                };
                anyhow::Error::new(e).context(format!(
                    "cannot change the delay of `{}`{hint}",
                    replica.node.name
                ))
            })?;
        }
    }
    let want = match change {
        DelayChange::Show => None,
        DelayChange::Set(d) => Some(d.as_millis() as u64),
        DelayChange::Reset => Some(replica.delay.as_millis() as u64),
    };
    let current_ms = wait_for_delay(client, want).await?;
    Ok(DelayState {
        replica: replica.node.name.clone(),
        current_ms,
        spec_ms: replica.delay.as_millis() as u64,
    })
}

/// Every replica's result when all succeeded; else an error that reports
/// each replica's outcome, so that nothing half-done goes unsaid.
fn every_replica<T: std::fmt::Display>(
    what: &str,
    outcomes: Vec<(String, Result<T>)>,
) -> Result<Vec<T>> {
    if outcomes.iter().all(|(_, r)| r.is_ok()) {
        return Ok(outcomes.into_iter().filter_map(|(_, r)| r.ok()).collect());
    }
    let lines: Vec<String> = outcomes
        .iter()
        .map(|(name, result)| match result {
            Ok(state) => format!("  {name}: {state}"),
            Err(e) => format!("  {name}: failed: {e:#}"),
        })
        .collect();
    anyhow::bail!(
        "{what} did not change on every replica:\n{}\nfix the cause and run the command again",
        lines.join("\n")
    )
}

/// How long a reload may take to show a changed delay.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(5);

/// Waits until the (asynchronous) reload shows `want`; returns the value in
/// effect, or an error when the reload did not apply it in time.
async fn wait_for_delay(client: &Client, want: Option<u64>) -> Result<u64> {
    let deadline = std::time::Instant::now() + RELOAD_TIMEOUT;
    loop {
        let current = pg::replay_state(client).await?.delay_ms;
        match want {
            None => return Ok(current),
            Some(w) if w == current => return Ok(current),
            Some(w) if std::time::Instant::now() > deadline => anyhow::bail!(
                "the delay is still {current} ms {RELOAD_TIMEOUT:?} after the reload that sets \
                 {w} ms; check the replica's log with `cargo xtask logs`"
            ),
            Some(_) => tokio::time::sleep(Duration::from_millis(2)).await,
        }
    }
}

/// Pauses (`true`) or resumes WAL replay; returns each replica's replay state.
pub async fn set_paused(
    spec: &StackSpec,
    secrets: &Secrets,
    replicas: &[&Replica],
    paused: bool,
) -> Result<Vec<(String, pg::Replay)>> {
    let clients = connect_all(spec, replicas, secrets).await?;
    let call = if paused {
        "SELECT pg_wal_replay_pause()"
    } else {
        "SELECT pg_wal_replay_resume()"
    };
    let mut outcomes = Vec::new();
    for (replica, client) in &clients {
        let name = replica.node.name.clone();
        let result = async {
            client.execute(call, &[]).await.with_context(|| {
                format!(
                    "cannot {} replay on `{name}`",
                    if paused { "pause" } else { "resume" }
                )
            })?;
            Ok((name.clone(), pg::replay_state(client).await?.replay))
        }
        .await;
        outcomes.push((replica.node.name.clone(), result.map(ReplayOf)));
    }
    Ok(every_replica("replay", outcomes)?
        .into_iter()
        .map(|ReplayOf(pair)| pair)
        .collect())
}

/// A replica's replay state, shown as `replay paused` / `replay running`.
struct ReplayOf((String, pg::Replay));

impl std::fmt::Display for ReplayOf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "replay {}", self.0.1)
    }
}

/// `cargo xtask delay`: shows or changes the delay of the replicas named
/// (all when none are), one line per replica, in the roles the nodes play
/// now (after a failover the spec's primary is a replica).
pub async fn run_delay(
    spec: &StackSpec,
    secrets: &Secrets,
    names: &[String],
    change: DelayChange,
) -> Result<()> {
    let runtime = crate::topology::discover(spec, secrets).await?;
    let targets = select(&runtime, names)?;
    for state in delay(&runtime, secrets, &targets, change).await? {
        let note = if state.current_ms == state.spec_ms {
            "the spec's value".to_owned()
        } else {
            format!(
                "spec: {} ms; `cargo xtask delay --reset` returns to it",
                state.spec_ms
            )
        };
        println!("{}: {} ms ({note})", state.replica, state.current_ms);
    }
    Ok(())
}

/// `cargo xtask pause` / `resume`: one line per replica.
pub async fn run_pause(
    spec: &StackSpec,
    secrets: &Secrets,
    names: &[String],
    paused: bool,
) -> Result<()> {
    let runtime = crate::topology::discover(spec, secrets).await?;
    let targets = select(&runtime, names)?;
    for (name, state) in set_paused(&runtime, secrets, &targets, paused).await? {
        println!("{name}: replay {state}");
    }
    Ok(())
}

/// What a replica runs with now, next to what the spec says.
#[derive(Debug, Clone, PartialEq)]
pub struct Runtime {
    /// Replica name.
    pub replica: String,
    /// `recovery_min_apply_delay` in effect, in milliseconds.
    pub delay_ms: u64,
    /// The spec's delay, in milliseconds.
    pub spec_delay_ms: u64,
    /// Whether replay runs or is held by a pause.
    pub replay: pg::Replay,
}

/// Reads every replica's delay and replay state.
pub async fn runtime(spec: &StackSpec, secrets: &Secrets) -> Result<Vec<Runtime>> {
    let replicas: Vec<&Replica> = spec.replicas.iter().collect();
    let mut out = Vec::new();
    for (replica, client) in connect_all(spec, &replicas, secrets).await? {
        let state = pg::replay_state(&client).await?;
        out.push(Runtime {
            replica: replica.node.name.clone(),
            delay_ms: state.delay_ms,
            spec_delay_ms: replica.delay.as_millis() as u64,
            replay: state.replay,
        });
    }
    Ok(out)
}

/// A runtime change that [`restore_spec`] undid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restored {
    /// The delay was `from_ms`; it is the spec's `to_ms` again.
    Delay {
        /// Replica name.
        replica: String,
        /// The delay that was in effect.
        from_ms: u64,
        /// The spec's delay, now in effect.
        to_ms: u64,
    },
    /// Replay was paused; it runs again.
    Resumed {
        /// Replica name.
        replica: String,
    },
}

impl std::fmt::Display for Restored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Restored::Delay {
                replica,
                from_ms,
                to_ms,
            } => write!(
                f,
                "reset {replica}'s delay from {from_ms} ms to the spec's {to_ms} ms"
            ),
            Restored::Resumed { replica } => {
                write!(f, "resumed replay on {replica}, which was paused")
            }
        }
    }
}

/// Returns every replica to what the spec says: its delay (a `cargo xtask
/// delay` override is removed) and running replay. Returns what changed.
pub async fn restore_spec(spec: &StackSpec, secrets: &Secrets) -> Result<Vec<Restored>> {
    let mut restored = Vec::new();
    for now in runtime(spec, secrets).await? {
        let Some(replica) = spec.find_replica(&now.replica) else {
            continue;
        };
        if now.delay_ms != now.spec_delay_ms {
            delay(spec, secrets, &[replica], DelayChange::Reset).await?;
            restored.push(Restored::Delay {
                replica: now.replica.clone(),
                from_ms: now.delay_ms,
                to_ms: now.spec_delay_ms,
            });
        }
        if now.replay == pg::Replay::Paused {
            set_paused(spec, secrets, &[replica], false).await?;
            restored.push(Restored::Resumed {
                replica: now.replica,
            });
        }
    }
    Ok(restored)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::default_spec;

    #[test]
    fn bare_numbers_are_milliseconds_and_durations_parse() {
        assert_eq!(parse_delay("5000").unwrap(), Duration::from_millis(5000));
        assert_eq!(parse_delay("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_delay("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_delay("1m").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_delay("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_delay("24h").unwrap(), MAX_DELAY);
    }

    #[test]
    fn bad_delays_name_the_fix() {
        for bad in [
            "abc",
            "-5",
            "1e99",
            "",
            "5 parsecs",
            "99999999999999999999999",
        ] {
            let err = parse_delay(bad).unwrap_err().to_string();
            assert!(err.contains("milliseconds"), "{bad}: {err}");
        }
        assert!(
            parse_delay("25h")
                .unwrap_err()
                .to_string()
                .contains("24 h maximum")
        );
        assert!(
            parse_delay("1500us")
                .unwrap_err()
                .to_string()
                .contains("whole milliseconds")
        );
    }

    #[test]
    fn restored_changes_read_as_one_line_each() {
        let delay = Restored::Delay {
            replica: "replica1".into(),
            from_ms: 0,
            to_ms: 3000,
        };
        assert_eq!(
            delay.to_string(),
            "reset replica1's delay from 0 ms to the spec's 3000 ms"
        );
        let resumed = Restored::Resumed {
            replica: "replica1".into(),
        };
        assert_eq!(
            resumed.to_string(),
            "resumed replay on replica1, which was paused"
        );
    }

    #[test]
    fn unknown_replica_lists_the_known_ones() {
        let spec = default_spec();
        assert_eq!(select(&spec, &[]).unwrap().len(), 1);
        let err = select(&spec, &["replica9".into()]).unwrap_err().to_string();
        assert_eq!(
            err,
            "there is no replica `replica9`; the spec's replicas are: replica1"
        );
    }
}
