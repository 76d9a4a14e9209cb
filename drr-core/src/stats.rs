//! Counters per node, and the snapshot [`Router::stats`](crate::Router::stats)
//! returns.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::health::HealthSnapshot;
use crate::role::Role;

/// Why a read went to the primary instead of a replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FallbackReason {
    /// Every replica was down, banned, or too far behind.
    NoEligibleReplica,
    /// No replica reached the session's token within `max_wait`, or the
    /// most advanced one certainly could not.
    CatchUpTimeout,
    /// The read failed on a replica and was retried on the primary.
    ReplicaFailed,
    /// The session's token names another cluster than the primary's.
    ForeignToken,
    /// The session's token names a timeline no eligible replica has
    /// reached.
    UnreachedTimeline,
}

#[derive(Default)]
pub(crate) struct Counters {
    reads: AtomicU64,
    writes: AtomicU64,
    pinned_reads: AtomicU64,
    retries: AtomicU64,
    no_eligible_replica: AtomicU64,
    catch_up_timeout: AtomicU64,
    replica_failed: AtomicU64,
    foreign_token: AtomicU64,
    unreached_timeline: AtomicU64,
    waits: AtomicU64,
    wait_micros: AtomicU64,
    bans: AtomicU64,
    discarded: AtomicU64,
    read_only_errors: AtomicU64,
    role_changes: AtomicU64,
}

impl Counters {
    pub(crate) fn read(&self) {
        self.reads.fetch_add(1, Relaxed);
    }

    pub(crate) fn write(&self) {
        self.writes.fetch_add(1, Relaxed);
    }

    pub(crate) fn pinned_read(&self) {
        self.pinned_reads.fetch_add(1, Relaxed);
    }

    pub(crate) fn retry(&self) {
        self.retries.fetch_add(1, Relaxed);
    }

    pub(crate) fn ban(&self) {
        self.bans.fetch_add(1, Relaxed);
    }

    pub(crate) fn read_only_error(&self) {
        self.read_only_errors.fetch_add(1, Relaxed);
    }

    pub(crate) fn role_change(&self) {
        self.role_changes.fetch_add(1, Relaxed);
    }

    pub(crate) fn discarded(&self) {
        self.discarded.fetch_add(1, Relaxed);
    }

    pub(crate) fn fallback(&self, reason: FallbackReason) {
        match reason {
            FallbackReason::NoEligibleReplica => &self.no_eligible_replica,
            FallbackReason::CatchUpTimeout => &self.catch_up_timeout,
            FallbackReason::ReplicaFailed => &self.replica_failed,
            FallbackReason::ForeignToken => &self.foreign_token,
            FallbackReason::UnreachedTimeline => &self.unreached_timeline,
        }
        .fetch_add(1, Relaxed);
    }

    pub(crate) fn waited(&self, time: Duration) {
        self.waits.fetch_add(1, Relaxed);
        self.wait_micros
            .fetch_add(u64::try_from(time.as_micros()).unwrap_or(u64::MAX), Relaxed);
    }

    pub(crate) fn snapshot(&self, name: &str, role: Role, health: HealthSnapshot) -> NodeStats {
        NodeStats {
            name: name.to_owned(),
            role,
            reads: self.reads.load(Relaxed),
            writes: self.writes.load(Relaxed),
            pinned_reads: self.pinned_reads.load(Relaxed),
            retries: self.retries.load(Relaxed),
            fallbacks: Fallbacks {
                no_eligible_replica: self.no_eligible_replica.load(Relaxed),
                catch_up_timeout: self.catch_up_timeout.load(Relaxed),
                replica_failed: self.replica_failed.load(Relaxed),
                foreign_token: self.foreign_token.load(Relaxed),
                unreached_timeline: self.unreached_timeline.load(Relaxed),
            },
            waits: self.waits.load(Relaxed),
            wait_time: Duration::from_micros(self.wait_micros.load(Relaxed)),
            bans: self.bans.load(Relaxed),
            discarded: self.discarded.load(Relaxed),
            read_only_errors: self.read_only_errors.load(Relaxed),
            role_changes: self.role_changes.load(Relaxed),
            health,
        }
    }
}

/// A snapshot of every node's counters and health.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Every node in configuration order (a fixed primary first).
    pub nodes: Vec<NodeStats>,
}

impl Stats {
    /// The node with this name.
    pub fn node(&self, name: &str) -> Option<&NodeStats> {
        self.nodes.iter().find(|node| node.name == name)
    }

    /// The primary; `None` while no node answers as one (a failover under
    /// way, in a [`cluster`](crate::RouterConfig::cluster)).
    pub fn primary(&self) -> Option<&NodeStats> {
        self.nodes.iter().find(|node| node.role == Role::Primary)
    }

    /// Role changes the router has seen, summed over the nodes (see
    /// [`NodeStats::role_changes`]): a failover counts two, the old
    /// primary's and the new one's.
    pub fn role_changes(&self) -> u64 {
        self.nodes.iter().map(|n| n.role_changes).sum()
    }

    /// Reads served by replicas, summed.
    pub fn replica_reads(&self) -> u64 {
        self.nodes
            .iter()
            .filter(|n| n.role == Role::Replica)
            .map(|n| n.reads)
            .sum()
    }
}

/// Counters for one node since the router started.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeStats {
    /// The node's name.
    pub name: String,
    /// What the node is for now.
    pub role: Role,
    /// Reads served, including fallbacks and pinned reads.
    pub reads: u64,
    /// Statements that were not provably read-only, and read-write
    /// transactions.
    pub writes: u64,
    /// Reads sent to the primary by [`Consistency::PinAfterWrite`](crate::Consistency::PinAfterWrite).
    pub pinned_reads: u64,
    /// Reads that failed here and were retried on another node.
    pub retries: u64,
    /// Reads this node (the primary) served because no replica could.
    pub fallbacks: Fallbacks,
    /// Read-your-writes reads that waited for this replica to catch up.
    pub waits: u64,
    /// Total time of those waits.
    pub wait_time: Duration,
    /// Times the node was banned after failing.
    pub bans: u64,
    /// Connections closed instead of going back to the pool, because a
    /// caller left a transaction open or an SQL prepared statement on them
    /// (other session state is reset).
    pub discarded: u64,
    /// Reads that wrote here and were refused (SQLSTATE 25006,
    /// `read_only_sql_transaction`): retried on the primary, never on another
    /// replica, and their SQL text sent to the primary from then on.
    pub read_only_errors: u64,
    /// Times the node stopped or started being the primary, as the router
    /// saw it after it first found one (in a
    /// [`cluster`](crate::RouterConfig::cluster); a fixed primary never
    /// changes).
    pub role_changes: u64,
    /// The node's health as of the last check.
    pub health: HealthSnapshot,
}

/// Reads the primary served instead of a replica, by reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Fallbacks {
    /// Every replica was down, banned, or too far behind.
    pub no_eligible_replica: u64,
    /// No replica reached the session's token within `max_wait`, or the
    /// most advanced one certainly could not (then the read did not wait).
    pub catch_up_timeout: u64,
    /// The read failed on a replica and was retried here.
    pub replica_failed: u64,
    /// The session's token named another cluster than the primary's (a
    /// stack replaced under the application, a token from elsewhere).
    pub foreign_token: u64,
    /// The session's token named a timeline no eligible replica has reached
    /// (after a failover).
    pub unreached_timeline: u64,
}

impl Fallbacks {
    /// All fallbacks, whatever the reason.
    pub fn total(&self) -> u64 {
        self.no_eligible_replica
            + self.catch_up_timeout
            + self.replica_failed
            + self.foreign_token
            + self.unreached_timeline
    }
}
