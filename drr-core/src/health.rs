//! A node's health as the router knows it: what the monitor found at its
//! last check, bans after failures, and requests in flight.

use std::sync::atomic::{
    AtomicBool, AtomicI32, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed,
};
use std::time::{Duration, Instant};

use crate::config::MaxLag;
use crate::lag::Lag;
use crate::lsn::Lsn;
use crate::token::{ClusterId, LsnToken};

/// Milliseconds since the router started: cheap to store in atomics.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock(Instant);

impl Clock {
    pub(crate) fn new() -> Self {
        Clock(Instant::now())
    }

    pub(crate) fn now_ms(self) -> u64 {
        u64::try_from(self.0.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// Stands for "unknown" in the atomics.
const UNKNOWN: u64 = u64::MAX;

/// The monitor's latest findings, plus bans from failed reads.
pub(crate) struct Health {
    /// At least one check succeeded since the last failure.
    reachable: AtomicBool,
    in_recovery: AtomicBool,
    /// When the current outage began (its first failure), UNKNOWN while
    /// the node is up.
    down_since_ms: AtomicU64,
    banned_until_ms: AtomicU64,
    replay_lsn: AtomicU64,
    /// The node's [`ClusterId`] as of the last check, UNKNOWN before.
    cluster: AtomicU64,
    /// Its timeline as of the last check, 0 before.
    timeline: AtomicU32,
    pub(crate) lag: Lag,
    server_version: AtomicI32,
    /// `recovery_min_apply_delay` in milliseconds, UNKNOWN if not known.
    apply_delay_ms: AtomicU64,
    /// Why the last check failed ([`CheckFailure::code`]), 0 if it did not.
    failure: AtomicU8,
    pub(crate) outstanding: AtomicUsize,
}

impl Health {
    pub(crate) fn new() -> Self {
        Health {
            reachable: AtomicBool::new(false),
            in_recovery: AtomicBool::new(false),
            down_since_ms: AtomicU64::new(UNKNOWN),
            banned_until_ms: AtomicU64::new(0),
            replay_lsn: AtomicU64::new(0),
            cluster: AtomicU64::new(UNKNOWN),
            timeline: AtomicU32::new(0),
            lag: Lag::new(),
            server_version: AtomicI32::new(0),
            apply_delay_ms: AtomicU64::new(UNKNOWN),
            failure: AtomicU8::new(0),
            outstanding: AtomicUsize::new(0),
        }
    }

    /// Whether a replica may serve reads now: reachable, still in recovery,
    /// not banned, and measured within `max_lag`.
    pub(crate) fn serves_reads(&self, now_ms: u64, max_lag: &MaxLag) -> bool {
        self.reachable.load(Relaxed)
            && self.in_recovery.load(Relaxed)
            && self.banned_until_ms.load(Relaxed) <= now_ms
            && self.lag.within(max_lag, now_ms)
    }

    pub(crate) fn replay_lsn(&self) -> Lsn {
        Lsn::from(self.replay_lsn.load(Relaxed))
    }

    /// Records the replay position a check found. It replaces what was known:
    /// a replica that restarted, or a new replica at the same address, can
    /// be behind what the old one had replayed.
    pub(crate) fn record_replay(&self, lsn: Lsn) {
        self.replay_lsn.store(lsn.as_u64(), Relaxed);
    }

    /// Records a replay position seen between checks (by a read that
    /// waited): replay only moves forward until the next check.
    pub(crate) fn saw_replay(&self, lsn: Lsn) {
        self.replay_lsn.fetch_max(lsn.as_u64(), Relaxed);
    }

    /// Records the cluster and timeline a check found. Returns whether
    /// either changed from a previous check (the node is another server
    /// now, or was promoted): what was known of its positions is stale.
    pub(crate) fn record_identity(&self, cluster: ClusterId, timeline: u32) -> bool {
        let was_cluster = self.cluster.swap(cluster.as_u64(), Relaxed);
        let was_timeline = self.timeline.swap(timeline, Relaxed);
        was_cluster != UNKNOWN && (was_cluster != cluster.as_u64() || was_timeline != timeline)
    }

    /// The node's cluster, as of the last check.
    pub(crate) fn cluster(&self) -> Option<u64> {
        let cluster = self.cluster.load(Relaxed);
        (cluster != UNKNOWN).then_some(cluster)
    }

    /// The node's timeline as of the last check (0 before).
    pub(crate) fn timeline(&self) -> u32 {
        self.timeline.load(Relaxed)
    }

    /// Whether the node has replayed `token`: its position, on the token's
    /// cluster and at least its timeline when the token names them.
    pub(crate) fn has_replayed(&self, token: LsnToken) -> bool {
        self.replay_lsn() >= token.lsn() && self.reached_timeline_of(token)
    }

    /// Whether the node belongs to the token's cluster and has reached its
    /// timeline (true for a token that names neither).
    pub(crate) fn reached_timeline_of(&self, token: LsnToken) -> bool {
        match (token.cluster(), token.timeline()) {
            (Some(cluster), Some(timeline)) => {
                self.cluster() == Some(cluster.as_u64()) && self.timeline.load(Relaxed) >= timeline
            }
            _ => true,
        }
    }

    pub(crate) fn server_version(&self) -> i32 {
        self.server_version.load(Relaxed)
    }

    pub(crate) fn record_check(&self, in_recovery: bool, server_version: i32) {
        self.in_recovery.store(in_recovery, Relaxed);
        self.server_version.store(server_version, Relaxed);
        self.failure.store(0, Relaxed);
        self.down_since_ms.store(UNKNOWN, Relaxed);
        self.reachable.store(true, Relaxed);
    }

    /// Records a replica's `recovery_min_apply_delay`.
    pub(crate) fn record_apply_delay(&self, delay: Option<Duration>) {
        let ms = delay.map_or(UNKNOWN, |d| {
            u64::try_from(d.as_millis()).unwrap_or(UNKNOWN - 1)
        });
        self.apply_delay_ms.store(ms, Relaxed);
    }

    /// The replica's `recovery_min_apply_delay`, if known.
    pub(crate) fn apply_delay(&self) -> Option<Duration> {
        let ms = self.apply_delay_ms.load(Relaxed);
        (ms != UNKNOWN).then(|| Duration::from_millis(ms))
    }

    /// Records a failed check. Returns whether it failed differently before
    /// (or not at all), so that each new failure is logged once.
    pub(crate) fn record_failure(&self, failure: CheckFailure) -> bool {
        self.reachable.store(false, Relaxed);
        self.failure.swap(failure.code(), Relaxed) != failure.code()
    }

    /// Bans the node for `duration` if this failure begins an outage (the
    /// node was up); later failures of the same outage neither renew nor
    /// extend the ban. Returns whether it banned, so that an outage counts
    /// as one ban. The ban ends at the first successful check after it
    /// expires: reads also need the last check to have succeeded.
    pub(crate) fn ban(&self, now_ms: u64, duration: Duration) -> bool {
        let began = self
            .down_since_ms
            .compare_exchange(UNKNOWN, now_ms, Relaxed, Relaxed)
            .is_ok();
        if began {
            let ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
            self.banned_until_ms
                .store(now_ms.saturating_add(ms), Relaxed);
        }
        began
    }

    /// What the last check found; a node the last check could not reach
    /// has no lag to show (its last one is history, not its state).
    pub(crate) fn snapshot(&self, now_ms: u64) -> HealthSnapshot {
        let reachable = self.reachable.load(Relaxed);
        HealthSnapshot {
            reachable,
            in_recovery: self.in_recovery.load(Relaxed),
            banned: self.banned_until_ms.load(Relaxed) > now_ms,
            replay_lsn: Some(self.replay_lsn()).filter(|lsn| lsn.as_u64() != 0),
            lag_bytes: self.lag.bytes().filter(|_| reachable),
            lag: self.lag.upper(now_ms).filter(|_| reachable),
            failure: CheckFailure::from_code(self.failure.load(Relaxed)),
            in_flight: self.outstanding.load(Relaxed),
        }
    }
}

/// A node's health as of the last check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct HealthSnapshot {
    /// The last check reached the server.
    pub reachable: bool,
    /// The server is in recovery (a replica).
    pub in_recovery: bool,
    /// Reads avoid the node until its ban ends.
    pub banned: bool,
    /// The furthest replay position seen (replicas).
    pub replay_lsn: Option<Lsn>,
    /// Replay lag in bytes as of the last check (replicas): the primary's
    /// position, sampled after the replica's, minus its replay position.
    /// `None` until a check has measured it, and while the last check
    /// failed (a down replica's lag is unknown, not its last value).
    pub lag_bytes: Option<u64>,
    /// Replay lag in time, an upper bound as of now (replicas): how long
    /// ago the primary may first have written something the replica had
    /// not replayed at its last check, the time since that check included.
    /// `None` until a check has measured it, and while the last check
    /// failed.
    pub lag: Option<Duration>,
    /// Why the last check failed, if it did.
    pub failure: Option<CheckFailure>,
    /// Requests running on the node through this router.
    pub in_flight: usize,
}

/// Why a health check of a node failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckFailure {
    /// The node refused the login (SQLSTATE class 28): a wrong password, an
    /// unknown role, a `pg_hba.conf` rule. Fix the URL; the node stays
    /// without reads until then.
    LoginRefused,
    /// The node could not be reached, or the connection broke.
    Unreachable,
    /// The check took longer than the configured `check_timeout`.
    TimedOut,
    /// The check's query failed on the node.
    QueryFailed,
    /// The replica belongs to another cluster than the primary (another
    /// system identifier or `drr.stack_id`): its data is not the primary's.
    OtherCluster,
}

impl CheckFailure {
    const ALL: [CheckFailure; 5] = [
        CheckFailure::LoginRefused,
        CheckFailure::Unreachable,
        CheckFailure::TimedOut,
        CheckFailure::QueryFailed,
        CheckFailure::OtherCluster,
    ];

    /// A non-zero code for the atomic in [`Health`].
    fn code(self) -> u8 {
        match self {
            CheckFailure::LoginRefused => 1,
            CheckFailure::Unreachable => 2,
            CheckFailure::TimedOut => 3,
            CheckFailure::QueryFailed => 4,
            CheckFailure::OtherCluster => 5,
        }
    }

    fn from_code(code: u8) -> Option<CheckFailure> {
        Self::ALL.into_iter().find(|f| f.code() == code)
    }
}

impl std::fmt::Display for CheckFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CheckFailure::LoginRefused => "refused the login",
            CheckFailure::Unreachable => "is unreachable",
            CheckFailure::TimedOut => "did not answer within check_timeout",
            CheckFailure::QueryFailed => "failed the health check's query",
            CheckFailure::OtherCluster => "belongs to another cluster than the primary",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lag::History;

    #[test]
    fn a_replica_the_last_check_missed_shows_no_lag() {
        let health = Health::new();
        let mut history = History::default();
        history.push(0, Lsn::from(100));
        history.push(10, Lsn::from(200));
        health.record_check(true, 150_000);
        health.lag.record(history.measure(Lsn::from(150)), 10);
        let up = health.snapshot(20);
        assert_eq!(up.lag_bytes, Some(50));
        assert_eq!(up.lag, Some(Duration::from_millis(20)));

        health.record_failure(CheckFailure::Unreachable);
        let down = health.snapshot(30);
        assert!(!down.reachable);
        assert_eq!((down.lag_bytes, down.lag), (None, None), "{down:?}");

        health.record_check(true, 150_000);
        assert_eq!(health.snapshot(30).lag_bytes, Some(50));
    }
}
