//! The routing policy's types: how reads choose a replica, what they may
//! see, what they do when no replica may serve them, and how far behind a
//! replica may be.

use std::time::Duration;

/// How a read chooses among the replicas that may serve it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Balance {
    /// Take turns (the default).
    #[default]
    RoundRobin,
    /// Pick at random.
    Random,
    /// Pick the replica with the fewest requests in flight through this
    /// router.
    LeastOutstanding,
}

/// What a read may see, relative to the writes of its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Consistency {
    /// Any eligible replica, however recent: a read may miss the session's
    /// own writes.
    Eventual,
    /// After a write, the session reads from the primary for this long, then
    /// from replicas again. Simple, but only as good as the guess.
    PinAfterWrite(Duration),
    /// Causal: a read sees the session's writes. It goes to a replica that
    /// has replayed the session's [`LsnToken`](crate::LsnToken), waits a
    /// bounded time for one to get there, or falls back to the primary. The
    /// default. Taking the token costs one extra round trip to the primary
    /// per write.
    #[default]
    ReadYourWrites,
}

/// What a read does when no replica may serve it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Fallback {
    /// Read from the primary (the default): fail safe, at the primary's cost.
    #[default]
    Primary,
    /// Fail with an error for which
    /// [`Error::is_no_healthy_node`](crate::Error::is_no_healthy_node) holds.
    Error,
}

/// How far behind a replica may be and still serve reads. Unset limits do
/// not apply. A replica is not eligible under a limit until the monitor has
/// measured its lag, and the lag it compares is an upper bound, so a
/// replica is never let through further behind than the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct MaxLag {
    /// Replay lag in time: an upper bound that includes the time since the
    /// last check, so a caught-up replica counts up to one check interval
    /// (more under load) behind. Keep the limit well above the interval.
    pub time: Option<Duration>,
    /// Replay lag in bytes of WAL.
    pub bytes: Option<u64>,
}

impl MaxLag {
    /// No limit: lag never excludes a replica.
    pub const fn none() -> Self {
        MaxLag {
            time: None,
            bytes: None,
        }
    }

    /// A limit in time.
    pub const fn time(limit: Duration) -> Self {
        MaxLag {
            time: Some(limit),
            bytes: None,
        }
    }

    /// A limit in bytes of WAL.
    pub const fn bytes(limit: u64) -> Self {
        MaxLag {
            time: None,
            bytes: Some(limit),
        }
    }

    /// Adds a limit in bytes to this one.
    pub const fn and_bytes(self, limit: u64) -> Self {
        MaxLag {
            bytes: Some(limit),
            ..self
        }
    }
}
