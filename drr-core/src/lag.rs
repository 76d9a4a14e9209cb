//! Lag in time from a short history of the primary's WAL positions: how
//! long ago the primary first wrote past a replica's replay position.

use std::collections::VecDeque;
use std::time::Duration;

use crate::lsn::Lsn;

/// Recent positions of the primary, oldest first, for lag in time.
#[derive(Default)]
pub(crate) struct History {
    samples: VecDeque<(u64, Lsn)>,
}

/// Samples kept: at the default interval, several minutes.
const HISTORY: usize = 1024;

impl History {
    pub(crate) fn push(&mut self, now_ms: u64, lsn: Lsn) {
        if self.samples.len() == HISTORY {
            self.samples.pop_front();
        }
        self.samples.push_back((now_ms, lsn));
    }

    /// Lag of a replica at `replay`, in bytes and in time. Unknown until the
    /// primary has been sampled.
    pub(crate) fn lag(&self, replay: Lsn, now_ms: u64) -> (Option<u64>, Option<Duration>) {
        let Some(&(_, latest)) = self.samples.back() else {
            return (None, None);
        };
        let bytes = latest.bytes_since(replay);
        if bytes == 0 {
            return (Some(0), Some(Duration::ZERO));
        }
        // Positions only grow: the first sample past `replay` is when the
        // primary got ahead of what the replica shows. If every sample is
        // past it, the lag is at least the age of the oldest.
        let first_ahead = self.samples.partition_point(|&(_, lsn)| lsn <= replay);
        let since = self.samples.get(first_ahead).map_or(now_ms, |&(t, _)| t);
        (
            Some(bytes),
            Some(Duration::from_millis(now_ms.saturating_sub(since))),
        )
    }
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

    #[test]
    fn caught_up_replica_has_no_lag_however_idle_the_primary() {
        let h = history(&[(0, 100), (60_000, 100), (120_000, 100)]);
        assert_eq!(
            h.lag(Lsn::from(100), 3_600_000),
            (Some(0), Some(Duration::ZERO))
        );
    }

    #[test]
    fn lag_counts_from_when_the_primary_got_ahead() {
        let h = history(&[(0, 100), (1_000, 100), (2_000, 150), (3_000, 200)]);
        assert_eq!(
            h.lag(Lsn::from(100), 3_500),
            (Some(100), Some(Duration::from_millis(1_500)))
        );
        assert_eq!(
            h.lag(Lsn::from(150), 3_500),
            (Some(50), Some(Duration::from_millis(500)))
        );
    }

    #[test]
    fn lag_beyond_the_history_is_at_least_its_age() {
        let h = history(&[(5_000, 500), (6_000, 600)]);
        assert_eq!(
            h.lag(Lsn::from(100), 7_000),
            (Some(500), Some(Duration::from_millis(2_000)))
        );
    }

    #[test]
    fn unknown_before_the_primary_is_sampled() {
        assert_eq!(History::default().lag(Lsn::from(1), 10), (None, None));
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
