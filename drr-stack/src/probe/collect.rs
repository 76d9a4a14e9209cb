//! Pairing what the probe's tasks report: each marker's commit on the
//! primary with the first replica query that saw it, into samples and a
//! report. Pure bookkeeping on [`Instant`]s, no I/O, so it is tested with
//! made-up events.

use std::time::{Duration, Instant};

use super::report::{MeasuringError, ProbeReport, ReplicaReport, Sample, Summary};
use crate::pg;
use crate::spec::StackSpec;

/// What the tasks tell the collector.
pub(super) enum Event {
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

/// Per-replica state of the collector.
struct Collected {
    seen_upto: i32,
    pending: Vec<(u32, Instant, Instant)>,
    samples: Vec<Sample>,
    polls: u64,
    replay: pg::Replay,
    delay: Duration,
}

/// Pairs commits with sightings as events arrive.
pub(super) struct Collector<'a> {
    spec: &'a StackSpec,
    t0: Instant,
    markers: u32,
    commits: Vec<Option<(Instant, Instant)>>,
    replicas: Vec<Collected>,
    poll_round_trips: Vec<f64>,
}

impl<'a> Collector<'a> {
    /// A collector for `markers` markers, the first due at `t0`, and one
    /// replica per `(replay state, delay)` in spec order.
    pub(super) fn new(
        spec: &'a StackSpec,
        t0: Instant,
        markers: u32,
        replicas: impl IntoIterator<Item = (pg::Replay, Duration)>,
    ) -> Self {
        Collector {
            spec,
            t0,
            markers,
            commits: vec![None; markers as usize],
            replicas: replicas
                .into_iter()
                .map(|(replay, delay)| Collected {
                    seen_upto: -1,
                    pending: Vec::new(),
                    samples: Vec::new(),
                    polls: 0,
                    replay,
                    delay,
                })
                .collect(),
            poll_round_trips: Vec::new(),
        }
    }

    /// Takes in one event, calling `on_sample` for every sample it
    /// completes; `Ok(true)` when it ends a task, `Err` when a task failed.
    pub(super) fn take(
        &mut self,
        event: Event,
        on_sample: &mut impl FnMut(&Sample),
    ) -> anyhow::Result<bool> {
        match event {
            Event::Committed { marker, sent, at } => {
                self.commits[marker as usize] = Some((sent, at));
                for replica in 0..self.replicas.len() {
                    let (ready, rest): (Vec<_>, Vec<_>) = self.replicas[replica]
                        .pending
                        .drain(..)
                        .partition(|&(m, _, _)| m == marker);
                    self.replicas[replica].pending = rest;
                    for (m, window_start, seen_at) in ready {
                        self.sample(replica, m, (sent, at), window_start, seen_at, on_sample);
                    }
                }
                Ok(false)
            }
            Event::Seen {
                replica,
                max,
                window_start,
                at,
            } => {
                let c = &mut self.replicas[replica];
                let newly = (c.seen_upto + 1).max(0)..=max;
                c.seen_upto = c.seen_upto.max(max);
                for m in newly {
                    let m = m as u32;
                    match self.commits.get(m as usize).copied().flatten() {
                        Some(commit) => {
                            self.sample(replica, m, commit, window_start, at, on_sample)
                        }
                        None => self.replicas[replica].pending.push((m, window_start, at)),
                    }
                }
                Ok(false)
            }
            Event::PollerDone {
                replica,
                polls,
                round_trips,
                replay,
            } => {
                let c = &mut self.replicas[replica];
                c.polls = polls;
                if let Some(replay) = replay {
                    c.replay = replay;
                }
                self.poll_round_trips.extend(round_trips);
                Ok(true)
            }
            Event::WriterDone => Ok(true),
            Event::Failed(e) => Err(e),
        }
    }

    /// Records marker `marker`'s sample on `replica`.
    fn sample(
        &mut self,
        replica: usize,
        marker: u32,
        (sent, committed): (Instant, Instant),
        window_start: Instant,
        at: Instant,
        on_sample: &mut impl FnMut(&Sample),
    ) {
        let lag_ms = signed_ms(committed, at);
        let delay_ms = self.replicas[replica].delay.as_secs_f64() * 1000.0;
        let sample = Sample {
            replica: self.spec.replicas[replica].node.name.clone(),
            marker,
            written_s: signed_ms(self.t0, committed) / 1000.0,
            lag_ms,
            error_ms: lag_ms - delay_ms,
            write_ms: signed_ms(sent, committed),
            window_ms: signed_ms(window_start.max(sent), at),
        };
        on_sample(&sample);
        self.replicas[replica].samples.push(sample);
    }

    /// The report once every task has ended.
    pub(super) fn report(self, run: i64, duration: Duration, interval: Duration) -> ProbeReport {
        let write_round_trips: Vec<f64> = self
            .commits
            .iter()
            .flatten()
            .map(|&(sent, at)| signed_ms(sent, at))
            .collect();
        let mut windows = Vec::new();
        let markers = self.markers;
        let replicas = self
            .replicas
            .into_iter()
            .zip(&self.spec.replicas)
            .map(|(mut c, spec)| {
                c.samples.sort_by_key(|s| s.marker);
                windows.extend(c.samples.iter().map(|s| s.window_ms));
                let delay_ms = c.delay.as_secs_f64() * 1000.0;
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
                    unseen: (0..markers).filter(|m| !seen.contains(m)).collect(),
                    polls: c.polls,
                    samples: c.samples,
                }
            })
            .collect();
        ProbeReport {
            stack: self.spec.name.clone(),
            run,
            duration_ms: duration.as_secs_f64() * 1000.0,
            interval_ms: interval.as_secs_f64() * 1000.0,
            markers,
            replicas,
            measuring_error: MeasuringError {
                window: Summary::of(&windows),
                poll_round_trip: Summary::of(&self.poll_round_trips),
                write_round_trip: Summary::of(&write_round_trips),
            },
        }
    }
}

/// Milliseconds from `from` to `to`, negative when `to` is earlier.
pub(super) fn signed_ms(from: Instant, to: Instant) -> f64 {
    match to.checked_duration_since(from) {
        Some(d) => d.as_secs_f64() * 1000.0,
        None => -(from.duration_since(to).as_secs_f64() * 1000.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Replica, default_spec};

    #[test]
    fn signed_millis() {
        let a = Instant::now();
        let b = a + Duration::from_micros(1500);
        assert_eq!(signed_ms(a, b), 1.5);
        assert_eq!(signed_ms(b, a), -1.5);
    }

    #[test]
    fn a_sighting_before_its_commit_is_reported_becomes_a_sample_when_it_is() {
        let spec = default_spec().replica(Replica::new("replica2", 5434));
        let ms = Duration::from_millis;
        let t0 = Instant::now();
        let delays = [(pg::Replay::Running, ms(100)), (pg::Replay::Running, ms(0))];
        let mut collector = Collector::new(&spec, t0, 2, delays);
        let mut seen = Vec::new();
        {
            let mut on_sample = |s: &Sample| seen.push((s.replica.clone(), s.marker));
            // replica2 sees marker 0 before the writer reports its commit.
            let seen_at = t0 + ms(5);
            let sighting = Event::Seen {
                replica: 1,
                max: 0,
                window_start: t0,
                at: seen_at,
            };
            assert!(!collector.take(sighting, &mut on_sample).unwrap());
            let commit = Event::Committed {
                marker: 0,
                sent: t0,
                at: t0 + ms(2),
            };
            assert!(!collector.take(commit, &mut on_sample).unwrap());
            // replica1 sees markers 0 and 1 at once; marker 1 is not committed yet.
            let sighting = Event::Seen {
                replica: 0,
                max: 1,
                window_start: t0 + ms(90),
                at: t0 + ms(110),
            };
            collector.take(sighting, &mut on_sample).unwrap();
            let commit = Event::Committed {
                marker: 1,
                sent: t0 + ms(50),
                at: t0 + ms(52),
            };
            collector.take(commit, &mut on_sample).unwrap();
            let done = Event::PollerDone {
                replica: 0,
                polls: 7,
                round_trips: vec![0.5],
                replay: None,
            };
            assert!(collector.take(done, &mut on_sample).unwrap());
            assert!(
                collector
                    .take(Event::Failed(anyhow::anyhow!("boom")), &mut on_sample)
                    .is_err()
            );
        }
        assert_eq!(
            seen,
            [
                ("replica2".into(), 0),
                ("replica1".into(), 0),
                ("replica1".into(), 1)
            ]
        );
        let report = collector.report(1, ms(1000), ms(50));
        let replica1 = &report.replicas[0];
        assert_eq!(replica1.polls, 7);
        assert_eq!(replica1.samples.len(), 2);
        assert_eq!(replica1.samples[0].lag_ms, 108.0);
        assert_eq!(replica1.samples[0].error_ms, 8.0);
        assert!(
            report.replicas[1].unseen == [1],
            "{:?}",
            report.replicas[1].unseen
        );
    }
}
