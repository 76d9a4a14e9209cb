//! What a probe run found, as plain data: samples, per-replica summaries and
//! the probe's own measuring error, plus the pure functions that summarise
//! and format them (percentiles, live lines, the summary table).

use std::fmt::Write as _;

use serde::Serialize;

/// One marker becoming visible on one replica.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    /// Replica the marker became visible on.
    pub replica: String,
    /// Marker number, counting from 0 in write order.
    pub marker: u32,
    /// When the marker's INSERT returned, in seconds since the probe's first
    /// write was due.
    pub written_s: f64,
    /// Visibility lag: from the INSERT returning on the primary to the end of
    /// the first replica query that saw the marker.
    pub lag_ms: f64,
    /// `lag_ms` minus the replica's configured delay.
    pub error_ms: f64,
    /// The marker's INSERT round trip, from sending it to its return.
    /// `lag_ms + write_ms` counts from before the commit, so it is never
    /// below the replica's delay, however loaded the machine; `lag_ms`
    /// can be, by up to `write_ms`.
    pub write_ms: f64,
    /// Width of the window the marker became visible in: from the start of
    /// the previous replica query (which did not see it) to the end of the
    /// one that did. The true visibility lag lies in
    /// `[lag_ms - window_ms, lag_ms]`.
    pub window_ms: f64,
}

/// Order statistics of one set of values, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    /// Number of values.
    pub samples: usize,
    /// Smallest value.
    pub min: f64,
    /// Median (nearest rank).
    pub p50: f64,
    /// 95th percentile (nearest rank).
    pub p95: f64,
    /// 99th percentile (nearest rank).
    pub p99: f64,
    /// Largest value.
    pub max: f64,
}

impl Summary {
    /// Summarises `values`; `None` when there are none. NaNs sort last.
    pub fn of(values: &[f64]) -> Option<Summary> {
        if values.is_empty() {
            return None;
        }
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        Some(Summary {
            samples: sorted.len(),
            min: sorted[0],
            p50: percentile(&sorted, 50.0),
            p95: percentile(&sorted, 95.0),
            p99: percentile(&sorted, 99.0),
            max: sorted[sorted.len() - 1],
        })
    }

    /// The same summary with `offset` subtracted from every value.
    pub fn shifted(&self, offset: f64) -> Summary {
        Summary {
            samples: self.samples,
            min: self.min - offset,
            p50: self.p50 - offset,
            p95: self.p95 - offset,
            p99: self.p99 - offset,
            max: self.max - offset,
        }
    }
}

/// Nearest-rank percentile `p` (0–100] of `sorted` (ascending, non-empty):
/// the smallest value with at least `p`% of the values at or below it.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// One replica's results.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplicaReport {
    /// Replica name.
    pub name: String,
    /// `recovery_min_apply_delay` in force when the probe started (changed
    /// with `cargo xtask delay`, or the spec's).
    pub delay_ms: f64,
    /// The delay the spec declares.
    pub spec_delay_ms: f64,
    /// Whether replay ran or was held by a pause, at the end (at the start
    /// for a replica that was paused then and so was not probed).
    pub replay: crate::pg::Replay,
    /// Lag statistics over every seen marker.
    pub lag: Option<Summary>,
    /// Lag minus `delay_ms`.
    pub error: Option<Summary>,
    /// Markers written but never seen on this replica before the probe gave up.
    pub unseen: Vec<u32>,
    /// Queries the probe sent to this replica.
    pub polls: u64,
    /// Every seen marker, in marker order.
    pub samples: Vec<Sample>,
}

impl ReplicaReport {
    /// Whether replay was paused, so this replica's lag is unbounded.
    pub fn paused(&self) -> bool {
        self.replay == crate::pg::Replay::Paused
    }
}

/// How precisely the probe measures, in milliseconds.
///
/// A sample's lag is an upper bound: the marker became visible somewhere
/// in its window (previous query start → this query end), which is one poll
/// period plus one query round trip wide. On the write side, the commit
/// happened during the INSERT's round trip, before `t_commit`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MeasuringError {
    /// Visibility windows of every sample: the measuring error of a lag.
    pub window: Option<Summary>,
    /// Round trips of the replica queries.
    pub poll_round_trip: Option<Summary>,
    /// Round trips of the marker INSERTs on the primary.
    pub write_round_trip: Option<Summary>,
}

/// Everything one probe run measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeReport {
    /// Stack name from the spec.
    pub stack: String,
    /// Random id of this run's marker rows in `drr_probe`.
    pub run: i64,
    /// Requested probe duration.
    pub duration_ms: f64,
    /// Requested time between marker writes.
    pub interval_ms: f64,
    /// Markers written on the primary.
    pub markers: u32,
    /// One entry per replica, in spec order.
    pub replicas: Vec<ReplicaReport>,
    /// The probe's own measuring error.
    pub measuring_error: MeasuringError,
}

impl ProbeReport {
    /// Whether every replica saw every marker.
    pub fn complete(&self) -> bool {
        self.replicas.iter().all(|r| r.unseen.is_empty())
    }
}

/// The live line for one sample, e.g. `replica1  #12  3004.2 ms  (+4.2 ms)`.
pub fn live_line(sample: &Sample, name_width: usize) -> String {
    format!(
        "{:<name_width$}  #{:<5}{:>8.1} ms  ({:+.1} ms)",
        sample.replica, sample.marker, sample.lag_ms, sample.error_ms
    )
}

/// The human summary: one table row per replica, then notes (paused or
/// unseen markers) and the measuring error.
pub fn summary_table(report: &ProbeReport) -> String {
    let width = report
        .replicas
        .iter()
        .map(|r| r.name.len())
        .chain(["replica".len()])
        .max()
        .unwrap_or(7);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<width$}  {:>10}  {:>7}  {:>9}  {:>9}  {:>9}  {:>9}  {:>9}  {:>8}  {:>8}",
        "replica", "delay", "samples", "min", "p50", "p95", "p99", "max", "p50 err", "p99 err"
    );
    for r in &report.replicas {
        let delay = format!("{} ms", r.delay_ms.round());
        match (&r.lag, &r.error) {
            (Some(lag), Some(err)) => {
                let _ = writeln!(
                    out,
                    "{:<width$}  {delay:>10}  {:>7}  {:>9.1}  {:>9.1}  {:>9.1}  {:>9.1}  {:>9.1}  {:>+8.1}  {:>+8.1}",
                    r.name,
                    lag.samples,
                    lag.min,
                    lag.p50,
                    lag.p95,
                    lag.p99,
                    lag.max,
                    err.p50,
                    err.p99
                );
            }
            _ => {
                let _ = writeln!(out, "{:<width$}  {delay:>10}  {:>7}", r.name, 0);
            }
        }
    }
    out.push_str("(lags in ms; err = lag - configured delay)\n");
    for r in &report.replicas {
        if r.delay_ms != r.spec_delay_ms {
            let _ = writeln!(
                out,
                "note: {} runs with a {} ms delay, the spec says {} ms (`cargo xtask delay --reset` restores it)",
                r.name,
                r.delay_ms.round(),
                r.spec_delay_ms.round()
            );
        }
        if r.paused() {
            let _ = writeln!(
                out,
                "note: replay on {} is paused, so its lag is unbounded; run `cargo xtask resume`",
                r.name
            );
        }
        if !r.unseen.is_empty() {
            let _ = writeln!(
                out,
                "note: {} never showed {} of {} markers (first unseen: #{})",
                r.name,
                r.unseen.len(),
                report.markers,
                r.unseen[0]
            );
        }
    }
    let m = &report.measuring_error;
    if let (Some(window), Some(rtt)) = (&m.window, &m.poll_round_trip) {
        let _ = writeln!(
            out,
            "measuring error: a lag is at most its poll window late: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            window.p50, window.p99, window.max
        );
        let _ = write!(
            out,
            "  (poll period + one replica query round trip: p50 {:.2} ms, p99 {:.2} ms",
            rtt.p50, rtt.p99
        );
        if let Some(write) = &m.write_round_trip {
            let _ = write!(
                out,
                "; INSERT round trip: p50 {:.2} ms, p99 {:.2} ms",
                write.p50, write.p99
            );
        }
        out.push_str(")\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample(replica: &str, marker: u32, lag_ms: f64, delay_ms: f64) -> Sample {
        Sample {
            replica: replica.to_owned(),
            marker,
            written_s: f64::from(marker) * 0.5,
            lag_ms,
            error_ms: lag_ms - delay_ms,
            write_ms: 0.8,
            window_ms: 1.5,
        }
    }

    #[test]
    fn nearest_rank_percentiles_on_known_data() {
        let values: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        let s = Summary::of(&values).unwrap();
        assert_eq!(
            (s.samples, s.min, s.p50, s.p95, s.p99, s.max),
            (100, 1.0, 50.0, 95.0, 99.0, 100.0)
        );
        let s = Summary::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.p50, s.p95, s.p99), (2.0, 3.0, 3.0));
        let s = Summary::of(&[7.5]).unwrap();
        assert_eq!((s.min, s.p50, s.p99, s.max), (7.5, 7.5, 7.5, 7.5));
        assert_eq!(Summary::of(&[]), None);
        assert_eq!(percentile(&[1.0, 2.0], 0.0), 1.0);
    }

    #[test]
    fn shifted_summary_subtracts_everywhere() {
        let s = Summary::of(&[3001.0, 3002.0, 3010.0])
            .unwrap()
            .shifted(3000.0);
        assert_eq!((s.min, s.p50, s.max), (1.0, 2.0, 10.0));
    }

    #[test]
    fn live_line_shows_lag_and_error() {
        let line = live_line(&sample("replica1", 12, 3004.2, 3000.0), 8);
        assert_eq!(line, "replica1  #12     3004.2 ms  (+4.2 ms)");
        let line = live_line(&sample("r2", 3, 99.0, 100.0), 8);
        assert_eq!(line, "r2        #3        99.0 ms  (-1.0 ms)");
        let line = live_line(&sample("replica1", 12345, 13004.25, 10000.0), 8);
        assert_eq!(line, "replica1  #12345 13004.2 ms  (+3004.2 ms)");
    }

    #[test]
    fn summary_table_rows_and_notes() {
        let report = crate::probe::tests::report();
        let table = summary_table(&report);
        insta::assert_snapshot!(table);
    }
}
