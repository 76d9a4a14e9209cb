//! The measurement itself: one writer task inserting markers on the primary
//! on a fixed schedule, one poller task per replica on its own connection,
//! and a collector that pairs each commit with the first poll that saw it.
//!
//! Every timestamp is an [`Instant`] from this process's monotonic clock.
//! A marker's lag runs from its INSERT returning to the end of the first
//! replica query that saw it, so it is an upper bound of the true lag; the
//! previous query (which did not see it) started at most one poll period
//! plus one round trip earlier, and each sample records that window.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Statement};

use super::report::{MeasuringError, ProbeReport, ReplicaReport, Sample, Summary};
use crate::pg::{self, Login};
use crate::secrets::Secrets;
use crate::spec::{Node, StackSpec};

/// The marker table, in the `postgres` database of the primary.
const CREATE_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS drr_probe (run bigint, marker int, PRIMARY KEY (run, marker))";
const INSERT: &str = "INSERT INTO drr_probe (run, marker) VALUES ($1, $2)";
/// Commits replay in order, so the highest visible marker says that every
/// lower one is visible too.
const POLL: &str = "SELECT coalesce(max(marker), -1) FROM drr_probe WHERE run = $1";
const DELETE: &str = "DELETE FROM drr_probe WHERE run = $1";

/// Poll period while a marker is due on a replica.
const FAST: Duration = Duration::from_millis(1);
/// Poll period while no marker is due: cheap on a shared machine, and
/// still catches markers that arrive early (a lowered delay).
const SLOW: Duration = Duration::from_millis(20);
/// How long before a marker's expected visibility the fast polling starts.
const GUARD: Duration = Duration::from_millis(30);
/// How long after a marker is overdue the poller checks for paused replay.
const OVERDUE: Duration = Duration::from_millis(500);
/// Extra wait after the last marker's expected visibility (plus a tenth of
/// the delay) before a replica's missing markers count as unseen.
const MARGIN: Duration = Duration::from_secs(2);

/// Probes `spec`'s running stack for `duration`, writing a marker every
/// `interval`, and calls `on_sample` as each marker becomes visible on each
/// replica. Prints nothing.
///
/// Connects as the superuser to the `postgres` database of every node, so
/// it works the same for native and compose stacks and for custom specs
/// (benchmarks). The run's marker rows are deleted at the end.
pub async fn measure(
    spec: &StackSpec,
    secrets: &Secrets,
    duration: Duration,
    interval: Duration,
    mut on_sample: impl FnMut(&Sample),
) -> Result<ProbeReport> {
    if interval.is_zero() {
        bail!("the probe interval must be above zero; pass e.g. `--interval 500ms`");
    }
    if spec.replicas.is_empty() {
        bail!(
            "stack `{}` has no replicas, so there is nothing to probe; add one to the spec",
            spec.name
        );
    }
    let login = Login::admin(secrets);
    let primary = connect(spec, &spec.primary, login).await?;
    let mut replicas = Vec::new();
    for replica in &spec.replicas {
        let client = connect(spec, &replica.node, login).await?;
        let state = pg::replay_state(&client)
            .await
            .with_context(|| format!("cannot read the replay state of `{}`", replica.node.name))?;
        replicas.push((client, state));
    }
    primary
        .batch_execute(CREATE_TABLE)
        .await
        .context("cannot create the marker table `drr_probe` on the primary")?;
    let insert = primary
        .prepare(INSERT)
        .await
        .context("cannot prepare the marker insert on the primary")?;
    let run = random_run_id()?;
    let primary = Arc::new(primary);
    let probe = Probe {
        spec,
        run,
        duration,
        interval,
        markers: marker_count(duration, interval),
    };
    let result = probe
        .run(Arc::clone(&primary), insert, replicas, &mut on_sample)
        .await;
    let cleanup = primary
        .execute(DELETE, &[&run])
        .await
        .context("cannot delete this probe's marker rows from `drr_probe` on the primary");
    let report = result?;
    cleanup?;
    Ok(report)
}

/// How many markers a probe writes: one at every multiple of `interval`
/// below `duration`, and at least one.
pub fn marker_count(duration: Duration, interval: Duration) -> u32 {
    let n = duration.as_nanos().div_ceil(interval.as_nanos().max(1));
    u32::try_from(n.max(1))
        .unwrap_or(u32::MAX)
        .min(i32::MAX as u32)
}

async fn connect(spec: &StackSpec, node: &Node, login: Login<'_>) -> Result<Client> {
    pg::connect(spec, node, login).await.with_context(|| {
        format!(
            "node `{}` of stack `{}` is not reachable; start the stack with `cargo xtask up`",
            node.name, spec.name
        )
    })
}

fn random_run_id() -> Result<i64> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).context("cannot get random bytes for the probe's run id")?;
    Ok(i64::from_le_bytes(bytes) & i64::MAX)
}

/// What the tasks tell the collector.
enum Event {
    /// Marker `marker`'s INSERT was sent at `sent` and returned at `at`.
    Committed {
        marker: u32,
        sent: Instant,
        at: Instant,
    },
    /// Replica `replica` sees every marker up to `max` in a query that ended
    /// at `at`; its previous query, which saw less, started at `window_start`.
    Seen {
        replica: usize,
        max: i32,
        window_start: Instant,
        at: Instant,
    },
    /// A poller stopped.
    PollerDone {
        replica: usize,
        polls: u64,
        round_trips: Vec<f64>,
        replay: Option<pg::Replay>,
    },
    /// The writer wrote every marker.
    WriterDone,
    /// A task failed; the probe stops.
    Failed(anyhow::Error),
}

struct Probe<'a> {
    spec: &'a StackSpec,
    run: i64,
    duration: Duration,
    interval: Duration,
    markers: u32,
}

/// Per-replica state of the collector.
struct Collected {
    seen_upto: i32,
    pending: Vec<(u32, Instant, Instant)>,
    samples: Vec<Sample>,
    polls: u64,
    replay: pg::Replay,
}

impl Probe<'_> {
    async fn run(
        &self,
        primary: Arc<Client>,
        insert: Statement,
        replicas: Vec<(Client, pg::ReplayState)>,
        on_sample: &mut impl FnMut(&Sample),
    ) -> Result<ProbeReport> {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut tasks = JoinSet::new();
        // Give every poller time to start before the first marker is due.
        let t0 = Instant::now() + Duration::from_millis(20);
        let mut delays = Vec::new();
        let mut collected = Vec::new();
        let mut running = 1;
        for (i, (client, state)) in replicas.into_iter().enumerate() {
            let delay = Duration::from_millis(state.delay_ms);
            delays.push(delay);
            collected.push(Collected {
                seen_upto: -1,
                pending: Vec::new(),
                samples: Vec::new(),
                polls: 0,
                replay: state.replay,
            });
            if state.replay == pg::Replay::Paused {
                continue;
            }
            let poller = Poller {
                replica: i,
                name: self.spec.replicas[i].node.name.clone(),
                client,
                run: self.run,
                t0,
                interval: self.interval,
                markers: self.markers,
                delay,
                deadline: t0 + self.interval * (self.markers - 1) + delay + MARGIN + delay / 10,
            };
            let tx = tx.clone();
            tasks.spawn(async move {
                let tx2 = tx.clone();
                if let Err(e) = poller.run(tx).await {
                    let _ = tx2.send(Event::Failed(e));
                }
            });
            running += 1;
        }
        let writer = Writer {
            primary,
            insert,
            run: self.run,
            t0,
            interval: self.interval,
            markers: self.markers,
        };
        tasks.spawn(async move {
            match writer.run(&tx).await {
                Ok(()) => tx.send(Event::WriterDone),
                Err(e) => tx.send(Event::Failed(e)),
            }
            .ok();
        });

        let mut commits: Vec<Option<(Instant, Instant)>> = vec![None; self.markers as usize];
        let mut poll_round_trips = Vec::new();
        let make = |replica: usize,
                    marker: u32,
                    commit: (Instant, Instant),
                    window_start: Instant,
                    at: Instant| {
            let (sent, committed) = commit;
            let lag_ms = signed_ms(committed, at);
            let delay_ms = delays[replica].as_secs_f64() * 1000.0;
            Sample {
                replica: self.spec.replicas[replica].node.name.clone(),
                marker,
                written_s: signed_ms(t0, committed) / 1000.0,
                lag_ms,
                error_ms: lag_ms - delay_ms,
                window_ms: signed_ms(window_start.max(sent), at),
            }
        };
        while running > 0 {
            let Some(event) = rx.recv().await else {
                bail!("a probe task stopped without reporting; run the probe again");
            };
            match event {
                Event::Committed { marker, sent, at } => {
                    commits[marker as usize] = Some((sent, at));
                    for (i, c) in collected.iter_mut().enumerate() {
                        let (ready, rest): (Vec<_>, Vec<_>) =
                            c.pending.drain(..).partition(|&(m, _, _)| m == marker);
                        c.pending = rest;
                        for (m, window_start, seen_at) in ready {
                            let sample = make(i, m, (sent, at), window_start, seen_at);
                            on_sample(&sample);
                            c.samples.push(sample);
                        }
                    }
                }
                Event::Seen {
                    replica,
                    max,
                    window_start,
                    at,
                } => {
                    let c = &mut collected[replica];
                    let newly = (c.seen_upto + 1).max(0)..=max;
                    c.seen_upto = c.seen_upto.max(max);
                    for m in newly {
                        let m = m as u32;
                        match commits.get(m as usize).copied().flatten() {
                            Some(commit) => {
                                let sample = make(replica, m, commit, window_start, at);
                                on_sample(&sample);
                                c.samples.push(sample);
                            }
                            None => c.pending.push((m, window_start, at)),
                        }
                    }
                }
                Event::PollerDone {
                    replica,
                    polls,
                    round_trips,
                    replay,
                } => {
                    let c = &mut collected[replica];
                    c.polls = polls;
                    if let Some(replay) = replay {
                        c.replay = replay;
                    }
                    poll_round_trips.extend(round_trips);
                    running -= 1;
                }
                Event::WriterDone => running -= 1,
                Event::Failed(e) => return Err(e),
            }
        }

        let write_round_trips: Vec<f64> = commits
            .iter()
            .flatten()
            .map(|&(sent, at)| signed_ms(sent, at))
            .collect();
        let mut windows = Vec::new();
        let replicas = collected
            .into_iter()
            .zip(&self.spec.replicas)
            .zip(&delays)
            .map(|((mut c, spec), delay)| {
                c.samples.sort_by_key(|s| s.marker);
                windows.extend(c.samples.iter().map(|s| s.window_ms));
                let delay_ms = delay.as_secs_f64() * 1000.0;
                let lags: Vec<f64> = c.samples.iter().map(|s| s.lag_ms).collect();
                let lag = Summary::of(&lags);
                let seen: std::collections::BTreeSet<u32> =
                    c.samples.iter().map(|s| s.marker).collect();
                ReplicaReport {
                    name: spec.node.name.clone(),
                    delay_ms,
                    spec_delay_ms: spec.delay.as_secs_f64() * 1000.0,
                    replay: c.replay,
                    error: lag.map(|l| l.shifted(delay_ms)),
                    lag,
                    unseen: (0..self.markers).filter(|m| !seen.contains(m)).collect(),
                    polls: c.polls,
                    samples: c.samples,
                }
            })
            .collect();
        Ok(ProbeReport {
            stack: self.spec.name.clone(),
            run: self.run,
            duration_ms: self.duration.as_secs_f64() * 1000.0,
            interval_ms: self.interval.as_secs_f64() * 1000.0,
            markers: self.markers,
            replicas,
            measuring_error: MeasuringError {
                window: Summary::of(&windows),
                poll_round_trip: Summary::of(&poll_round_trips),
                write_round_trip: Summary::of(&write_round_trips),
            },
        })
    }
}

/// Milliseconds from `from` to `to`, negative when `to` is earlier.
fn signed_ms(from: Instant, to: Instant) -> f64 {
    match to.checked_duration_since(from) {
        Some(d) => d.as_secs_f64() * 1000.0,
        None => -(from.duration_since(to).as_secs_f64() * 1000.0),
    }
}

struct Writer {
    primary: Arc<Client>,
    insert: Statement,
    run: i64,
    t0: Instant,
    interval: Duration,
    markers: u32,
}

impl Writer {
    /// Inserts marker k at `t0 + k * interval` (autocommit), on a fixed
    /// schedule so that slow commits do not stretch the probe.
    async fn run(&self, tx: &mpsc::UnboundedSender<Event>) -> Result<()> {
        for marker in 0..self.markers {
            tokio::time::sleep_until((self.t0 + self.interval * marker).into()).await;
            let sent = Instant::now();
            let value = marker as i32;
            self.primary
                .execute(&self.insert, &[&self.run, &value])
                .await
                .with_context(|| format!("cannot insert probe marker #{marker} on the primary"))?;
            let at = Instant::now();
            if tx.send(Event::Committed { marker, sent, at }).is_err() {
                break;
            }
        }
        Ok(())
    }
}

struct Poller {
    replica: usize,
    name: String,
    client: Client,
    run: i64,
    t0: Instant,
    interval: Duration,
    markers: u32,
    delay: Duration,
    deadline: Instant,
}

impl Poller {
    /// Polls until every marker is seen, replay turns out paused, or the
    /// deadline passes; then reports its round trips.
    async fn run(self, tx: mpsc::UnboundedSender<Event>) -> Result<()> {
        let mut statement: Option<Statement> = None;
        let mut seen: i32 = -1;
        // Nothing is visible before the first marker is written.
        let mut previous_start = self.t0;
        let mut round_trips = Vec::new();
        let mut polls = 0u64;
        let mut last_state_check = Instant::now();
        let mut replay = None;
        loop {
            let start = Instant::now();
            let timed = statement.is_some();
            let max = self.poll(&mut statement).await?;
            let end = Instant::now();
            polls += 1;
            if timed {
                round_trips.push(signed_ms(start, end));
            }
            if max > seen {
                let event = Event::Seen {
                    replica: self.replica,
                    max,
                    window_start: previous_start,
                    at: end,
                };
                if tx.send(event).is_err() {
                    return Ok(());
                }
                seen = max;
            }
            previous_start = start;
            if seen + 1 >= self.markers as i32 || end >= self.deadline {
                break;
            }
            // Poll fast from shortly before the next marker is due here.
            let next = u32::try_from(seen + 1).unwrap_or(0);
            let due = self.t0 + self.interval * next + self.delay;
            let fast_from = due.checked_sub(GUARD).unwrap_or(self.t0);
            if end >= due + OVERDUE && end >= last_state_check + OVERDUE {
                last_state_check = end;
                let state = pg::replay_state(&self.client)
                    .await
                    .with_context(|| format!("cannot read the replay state of `{}`", self.name))?;
                if state.replay == pg::Replay::Paused {
                    replay = Some(state.replay);
                    break;
                }
            }
            let wake = if end >= fast_from {
                end + FAST
            } else {
                fast_from.min(end + SLOW)
            };
            tokio::time::sleep_until(wake.into()).await;
        }
        if replay.is_none() && seen + 1 < self.markers as i32 {
            replay = pg::replay_state(&self.client).await.ok().map(|s| s.replay);
        }
        let _ = tx.send(Event::PollerDone {
            replica: self.replica,
            polls,
            round_trips,
            replay,
        });
        Ok(())
    }

    /// The highest visible marker of this run, or -1. Until the marker
    /// table's CREATE has replayed here, the table is undefined: not
    /// visible yet.
    async fn poll(&self, statement: &mut Option<Statement>) -> Result<i32> {
        let context = || format!("cannot poll `drr_probe` on replica `{}`", self.name);
        if statement.is_none() {
            match self.client.prepare(POLL).await {
                Ok(s) => *statement = Some(s),
                Err(e) if e.code() == Some(&SqlState::UNDEFINED_TABLE) => return Ok(-1),
                Err(e) => return Err(e).with_context(context),
            }
        }
        let Some(statement) = statement.as_ref() else {
            return Ok(-1);
        };
        let row = self
            .client
            .query_one(statement, &[&self.run])
            .await
            .with_context(context)?;
        Ok(row.get(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_counts() {
        let ms = Duration::from_millis;
        assert_eq!(marker_count(ms(10_000), ms(500)), 20);
        assert_eq!(marker_count(ms(10_001), ms(500)), 21);
        assert_eq!(marker_count(ms(100), ms(500)), 1);
        assert_eq!(marker_count(Duration::ZERO, ms(500)), 1);
    }

    #[test]
    fn signed_millis() {
        let a = Instant::now();
        let b = a + Duration::from_micros(1500);
        assert_eq!(signed_ms(a, b), 1.5);
        assert_eq!(signed_ms(b, a), -1.5);
    }
}
