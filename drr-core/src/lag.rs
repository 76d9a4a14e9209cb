//! Replication lag, measured as an upper bound: from a short history of the
//! primary's WAL positions, how long ago the primary may first have written
//! what a replica has not replayed, and how many bytes it may lack.
//!
//! A replica that has replayed up to `replay` had everything the primary
//! had written by the last sample at or before `replay` (taken at
//! `caught_up_at`); whatever it lacks was written after that. So its lag
//! now is at most `now - caught_up_at`, which grows until the next check.
//! The first sample past `replay` gives a floor: the replica lacked what the
//! primary had written by then. Until the history reaches back to a sample
//! the replica has replayed, its lag has no bound: it is unknown, and
//! `MaxLag` excludes it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::config::MaxLag;
use crate::lsn::Lsn;

/// Recent positions of the primary, oldest first, with when they were
/// sampled (milliseconds on the router's clock).
#[derive(Default)]
pub(crate) struct History {
    samples: VecDeque<(u64, Lsn)>,
}

/// Samples kept: at the default interval (two per check), minutes.
const HISTORY: usize = 1024;

/// Where a replica stands against the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Measure {
    /// The latest primary position minus the replay position.
    pub(crate) bytes: u64,
    /// When the primary was last sampled at or before the replay position:
    /// the replica lacks nothing written before then.
    pub(crate) caught_up_at: Option<u64>,
    /// When the primary was first sampled past the replay position: the
    /// replica lacked something written by then.
    pub(crate) behind_since: Option<u64>,
}

impl History {
    pub(crate) fn push(&mut self, now_ms: u64, lsn: Lsn) {
        if self.samples.len() == HISTORY {
            self.samples.pop_front();
        }
        self.samples.push_back((now_ms, lsn));
    }

    /// When the primary was last sampled short of `lsn`: what ends at `lsn`
    /// was written after that. `None` if no sample is (the write may be
    /// older than the history).
    pub(crate) fn last_short_of(&self, lsn: Lsn) -> Option<u64> {
        let short = self.samples.partition_point(|&(_, sampled)| sampled < lsn);
        short
            .checked_sub(1)
            .and_then(|i| self.samples.get(i))
            .map(|&(t, _)| t)
    }

    /// Forgets every sample: they were another server's, or another
    /// timeline's.
    pub(crate) fn clear(&mut self) {
        self.samples.clear();
    }

    /// Where a replica that has replayed up to `replay` stands; `None`
    /// before the primary has been sampled.
    pub(crate) fn measure(&self, replay: Lsn) -> Option<Measure> {
        let &(_, latest) = self.samples.back()?;
        // Positions only grow: samples at or before `replay` come first.
        let first_ahead = self.samples.partition_point(|&(_, lsn)| lsn <= replay);
        Some(Measure {
            bytes: latest.bytes_since(replay),
            caught_up_at: first_ahead
                .checked_sub(1)
                .and_then(|i| self.samples.get(i))
                .map(|&(t, _)| t),
            behind_since: self.samples.get(first_ahead).map(|&(t, _)| t),
        })
    }
}

/// Stands for "unknown" in the atomics.
const UNKNOWN: u64 = u64::MAX;

/// A replica's lag as of its last check, kept in atomics.
pub(crate) struct Lag {
    bytes: AtomicU64,
    caught_up_at_ms: AtomicU64,
    /// The lag the replica certainly had at the check.
    floor_ms: AtomicU64,
}

impl Lag {
    pub(crate) fn new() -> Self {
        Lag {
            bytes: AtomicU64::new(UNKNOWN),
            caught_up_at_ms: AtomicU64::new(UNKNOWN),
            floor_ms: AtomicU64::new(UNKNOWN),
        }
    }

    /// Records a check made at `now_ms`.
    pub(crate) fn record(&self, measure: Option<Measure>, now_ms: u64) {
        let bytes = measure.map_or(UNKNOWN, |m| m.bytes);
        let caught_up_at = measure.and_then(|m| m.caught_up_at).unwrap_or(UNKNOWN);
        let floor = match measure {
            None => UNKNOWN,
            Some(m) => m.behind_since.map_or(0, |t| now_ms.saturating_sub(t)),
        };
        self.bytes.store(bytes, Relaxed);
        self.caught_up_at_ms.store(caught_up_at, Relaxed);
        self.floor_ms.store(floor, Relaxed);
    }

    /// Lag in bytes at the last check.
    pub(crate) fn bytes(&self) -> Option<u64> {
        known(self.bytes.load(Relaxed))
    }

    /// The most the lag in time can be at `now_ms`.
    pub(crate) fn upper(&self, now_ms: u64) -> Option<Duration> {
        known(self.caught_up_at_ms.load(Relaxed))
            .map(|at| Duration::from_millis(now_ms.saturating_sub(at)))
    }

    /// The lag in time the replica certainly had at the last check.
    pub(crate) fn floor(&self) -> Option<Duration> {
        known(self.floor_ms.load(Relaxed)).map(Duration::from_millis)
    }

    /// Whether the lag is measured and within `max_lag` at `now_ms`.
    pub(crate) fn within(&self, max_lag: &MaxLag, now_ms: u64) -> bool {
        let time = max_lag
            .time
            .is_none_or(|limit| self.upper(now_ms).is_some_and(|lag| lag <= limit));
        let bytes = max_lag
            .bytes
            .is_none_or(|limit| self.bytes().is_some_and(|lag| lag <= limit));
        time && bytes
    }
}

fn known(value: u64) -> Option<u64> {
    (value != UNKNOWN).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(samples: &[(u64, u64)]) -> History {
        let mut h = History::default();
        for &(t, lsn) in samples {
            h.push(t, Lsn::from(lsn));
        }
        h
    }

    fn lag_at(h: &History, replay: u64, check_ms: u64) -> Lag {
        let lag = Lag::new();
        lag.record(h.measure(Lsn::from(replay)), check_ms);
        lag
    }

    #[test]
    fn a_caught_up_replica_lags_at_most_the_time_since_the_last_sample() {
        let h = history(&[(0, 100), (60_000, 100), (120_000, 100)]);
        let lag = lag_at(&h, 100, 120_010);
        assert_eq!(lag.bytes(), Some(0));
        assert_eq!(lag.floor(), Some(Duration::ZERO));
        assert_eq!(lag.upper(120_010), Some(Duration::from_millis(10)));
        // It grows until the next check: nothing is known since.
        assert_eq!(lag.upper(120_500), Some(Duration::from_millis(500)));
    }

    #[test]
    fn lag_counts_from_the_last_sample_the_replica_has() {
        let h = history(&[(0, 100), (1_000, 100), (2_000, 150), (3_000, 200)]);
        // At 100, the replica had everything written by 1000 and lacked
        // something written by 2000.
        let lag = lag_at(&h, 100, 3_500);
        assert_eq!(lag.bytes(), Some(100));
        assert_eq!(lag.upper(3_500), Some(Duration::from_millis(2_500)));
        assert_eq!(lag.floor(), Some(Duration::from_millis(1_500)));
        let lag = lag_at(&h, 150, 3_500);
        assert_eq!(lag.upper(3_500), Some(Duration::from_millis(1_500)));
        assert_eq!(lag.floor(), Some(Duration::from_millis(500)));
    }

    #[test]
    fn lag_beyond_the_history_is_unknown_and_excluded() {
        let h = history(&[(5_000, 500), (6_000, 600)]);
        let lag = lag_at(&h, 100, 7_000);
        assert_eq!(lag.bytes(), Some(500));
        assert_eq!(lag.upper(7_000), None);
        assert_eq!(lag.floor(), Some(Duration::from_millis(2_000)));
        let limit = MaxLag::time(Duration::from_secs(3600));
        assert!(!lag.within(&limit, 7_000));
        assert!(lag.within(&MaxLag::none(), 7_000));
    }

    #[test]
    fn unknown_before_the_primary_is_sampled() {
        assert_eq!(History::default().measure(Lsn::from(1)), None);
        let lag = lag_at(&History::default(), 1, 10);
        assert_eq!(
            (lag.bytes(), lag.upper(10), lag.floor()),
            (None, None, None)
        );
        assert!(!lag.within(&MaxLag::bytes(u64::MAX), 10));
    }

    #[test]
    fn limits_apply_to_the_upper_bound() {
        let h = history(&[(0, 100), (1_000, 200)]);
        let lag = lag_at(&h, 100, 1_000);
        let limit = MaxLag::time(Duration::from_millis(1_200)).and_bytes(100);
        assert!(lag.within(&limit, 1_100));
        assert!(
            !lag.within(&limit, 1_300),
            "the bound grows after the check"
        );
        assert!(!lag.within(&MaxLag::bytes(99), 1_000));
    }

    #[test]
    fn a_position_was_written_after_the_last_sample_short_of_it() {
        let h = history(&[(0, 100), (1_000, 200), (2_000, 300)]);
        assert_eq!(h.last_short_of(Lsn::from(250)), Some(1_000));
        assert_eq!(h.last_short_of(Lsn::from(200)), Some(0));
        assert_eq!(h.last_short_of(Lsn::from(900)), Some(2_000));
        assert_eq!(h.last_short_of(Lsn::from(100)), None);
    }

    #[test]
    fn history_is_bounded() {
        let mut h = History::default();
        for i in 0..(HISTORY as u64 + 10) {
            h.push(i, Lsn::from(i));
        }
        assert_eq!(h.samples.len(), HISTORY);
        assert_eq!(h.samples.front().map(|s| s.0), Some(10));
    }
}
