//! The probe's tasks: the writer, which inserts markers on the primary on
//! a fixed schedule, and one poller per replica, which polls for the
//! highest visible marker, fast while one is due. Both report to the
//! collector as [`Event`]s.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::sync::mpsc;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Statement};

use super::collect::{Event, signed_ms};
use crate::pg;

/// Commits replay in order, so the highest visible marker says that every
/// lower one is visible too.
const POLL: &str = "SELECT coalesce(max(marker), -1) FROM drr_probe WHERE run = $1";

/// Poll period while a marker is due on a replica.
const FAST: Duration = Duration::from_millis(1);
/// Poll period while no marker is due: cheap on a shared machine, and
/// still catches markers that arrive early (a lowered delay).
const SLOW: Duration = Duration::from_millis(20);
/// How long before a marker's expected visibility the fast polling starts.
const GUARD: Duration = Duration::from_millis(30);
/// How long after a marker is overdue the poller checks for paused replay.
const OVERDUE: Duration = Duration::from_millis(500);

/// Inserts the markers.
pub(super) struct Writer {
    pub(super) primary: Arc<Client>,
    pub(super) insert: Statement,
    pub(super) run: i64,
    pub(super) t0: Instant,
    pub(super) interval: Duration,
    pub(super) markers: u32,
}

impl Writer {
    /// Inserts marker k at `t0 + k * interval` (autocommit), on a fixed
    /// schedule so that slow commits do not stretch the probe.
    pub(super) async fn run(&self, tx: &mpsc::UnboundedSender<Event>) -> Result<()> {
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

/// Polls one replica.
pub(super) struct Poller {
    pub(super) replica: usize,
    pub(super) name: String,
    pub(super) client: Client,
    pub(super) run: i64,
    pub(super) t0: Instant,
    pub(super) interval: Duration,
    pub(super) markers: u32,
    pub(super) delay: Duration,
    pub(super) deadline: Instant,
}

impl Poller {
    /// Polls until every marker is seen, replay turns out paused, or the
    /// deadline passes; then reports its round trips.
    pub(super) async fn run(self, tx: mpsc::UnboundedSender<Event>) -> Result<()> {
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
