//! Choosing one replica among those eligible, without allocating.

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

use crate::config::Balance;

pub(crate) struct Balancer {
    policy: Balance,
    turn: AtomicUsize,
    random: AtomicU64,
}

impl Balancer {
    pub(crate) fn new(policy: Balance) -> Self {
        Balancer {
            policy,
            turn: AtomicUsize::new(0),
            random: AtomicU64::new(RandomState::new().hash_one(0xD22_u64)),
        }
    }

    /// Picks one of `0..count` for which `eligible` holds; `load` gives the
    /// requests in flight, for least-outstanding. Every policy counts turns
    /// and draws among the eligible only, so an ineligible replica's share
    /// spreads evenly over the others instead of going to its successor.
    pub(crate) fn pick(
        &self,
        count: usize,
        eligible: impl Fn(usize) -> bool,
        load: impl Fn(usize) -> usize,
    ) -> Option<usize> {
        let candidates = || (0..count).filter(|&i| eligible(i));
        let eligible_count = candidates().count();
        if eligible_count == 0 {
            return None;
        }
        match self.policy {
            Balance::RoundRobin => candidates().nth(self.next_turn() % eligible_count),
            Balance::Random => {
                let nth = self.next_random() % eligible_count as u64;
                candidates().nth(usize::try_from(nth).unwrap_or(0))
            }
            // The first of the least loaded, scanning from a rotating start:
            // ties take turns.
            Balance::LeastOutstanding => candidates()
                .cycle()
                .skip(self.next_turn() % eligible_count)
                .take(eligible_count)
                .min_by_key(|&i| load(i)),
        }
    }

    fn next_turn(&self) -> usize {
        self.turn.fetch_add(1, Relaxed)
    }

    /// SplitMix64 over a shared counter: fast, and random enough to spread
    /// load.
    fn next_random(&self) -> u64 {
        let mut z = self.random.fetch_add(0x9E37_79B9_7F4A_7C15, Relaxed);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(policy: Balance, eligible: &[bool], loads: &[usize], picks: usize) -> Vec<usize> {
        let balancer = Balancer::new(policy);
        let mut counts = vec![0; eligible.len()];
        for _ in 0..picks {
            if let Some(i) = balancer.pick(eligible.len(), |i| eligible[i], |i| loads[i]) {
                counts[i] += 1;
            }
        }
        counts
    }

    #[test]
    fn round_robin_takes_turns_among_eligible() {
        assert_eq!(
            counts(Balance::RoundRobin, &[true, true, true], &[0; 3], 300),
            [100, 100, 100]
        );
        assert_eq!(
            counts(Balance::RoundRobin, &[true, false, true], &[0; 3], 300),
            [150, 0, 150]
        );
    }

    #[test]
    fn random_spreads_and_skips_ineligible() {
        let c = counts(Balance::Random, &[true, false, true, true], &[0; 4], 3000);
        assert_eq!(c[1], 0);
        assert!(
            c.iter().enumerate().all(|(i, &n)| i == 1 || n > 800),
            "{c:?}"
        );
    }

    #[test]
    fn least_outstanding_prefers_idle_nodes() {
        assert_eq!(
            counts(
                Balance::LeastOutstanding,
                &[true, true, true],
                &[5, 1, 3],
                10
            ),
            [0, 10, 0]
        );
        let ties = counts(Balance::LeastOutstanding, &[true, true], &[0, 0], 10);
        assert_eq!(ties, [5, 5]);
        let ties = counts(Balance::LeastOutstanding, &[true, false, true], &[0; 3], 10);
        assert_eq!(ties, [5, 0, 5]);
    }

    #[test]
    fn nothing_eligible_picks_nothing() {
        assert_eq!(
            counts(Balance::RoundRobin, &[false, false], &[0; 2], 5),
            [0, 0]
        );
        assert_eq!(
            Balancer::new(Balance::Random).pick(0, |_| true, |_| 0),
            None
        );
    }
}
