//! The error type of the test helpers: what went wrong, on which node, and
//! what to do next.

use std::fmt;
use std::time::Duration;

use crate::lsn::Lsn;
use crate::wal::ReplayPause;

/// An error from the test helpers.
///
/// `Debug` prints the same message as `Display`, so a test that returns
/// `Result<(), testing::Error>` fails with a readable message.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A variable of the stack environment is missing.
    #[error(
        "{var} is not set: this test needs the local Postgres stack with its replicas. \
         Run the tests with `cargo xtask test`, or start the stack with `cargo xtask up` \
         and export the variables printed by `cargo xtask env --admin`"
    )]
    NoStack {
        /// The missing variable.
        var: &'static str,
    },
    /// The stack's environment or a URL is malformed.
    #[error("invalid test stack configuration: {0}")]
    Config(String),
    /// A migration could not be read or failed to apply.
    #[error("migration {name} failed: {detail}")]
    Migration {
        /// The migration's name (a file name, or the closure's key).
        name: String,
        /// What went wrong.
        detail: String,
    },
    /// A statement failed on a node.
    #[error("{context} failed on {node}: {detail}")]
    Postgres {
        /// The node: `primary` or a replica's name.
        node: String,
        /// What the helper was doing.
        context: &'static str,
        /// The server's message and SQLSTATE, or the connection error.
        detail: String,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// A replica did not replay a WAL position in time.
    #[error(
        "{replica} did not replay {target} within {waited:?}: {}{}",
        describe_position(*replayed, *target),
        describe_pause(*pause)
    )]
    ReplicaTimeout {
        /// The replica's name.
        replica: String,
        /// How long the helper waited.
        waited: Duration,
        /// The position it waited for.
        target: Lsn,
        /// The replica's replay position when the wait ended.
        replayed: Option<Lsn>,
        /// Whether replay is paused there.
        pause: Option<ReplayPause>,
    },
    /// No test database could be claimed in time.
    #[error(
        "no test database could be claimed within {waited:?}: {detail}; \
         check that the stack runs (`cargo xtask status`)"
    )]
    ClaimTimeout {
        /// How long the claim waited.
        waited: Duration,
        /// What it was waiting for.
        detail: String,
    },
    /// `assert_not_visible` found rows.
    #[error("expected no rows yet, but `{sql}` returned {rows} row(s) on the replica")]
    AlreadyVisible {
        /// The query.
        sql: String,
        /// How many rows it returned.
        rows: usize,
    },
    /// `assert_visible_within` or `measure_visibility_lag` saw no rows in time.
    #[error("`{sql}` returned no rows on the replica within {bound:?}")]
    NotVisible {
        /// The query.
        sql: String,
        /// The bound that passed.
        bound: Duration,
    },
    /// Building or using a [`Router`](crate::Router) failed.
    #[error(transparent)]
    Router(#[from] crate::error::Error),
}

impl Error {
    pub(crate) fn postgres(
        node: impl Into<String>,
        context: &'static str,
    ) -> impl FnOnce(tokio_postgres::Error) -> Error {
        let node = node.into();
        move |source| Error::Postgres {
            node,
            context,
            detail: crate::error::describe(&source),
            source,
        }
    }

    /// Whether the stack's environment is missing: the test was not run
    /// through `cargo xtask test`.
    pub fn is_no_stack(&self) -> bool {
        matches!(self, Error::NoStack { .. })
    }

    /// Whether a replica did not catch up in time.
    pub fn is_replica_timeout(&self) -> bool {
        matches!(self, Error::ReplicaTimeout { .. })
    }
}

fn describe_position(replayed: Option<Lsn>, target: Lsn) -> String {
    match replayed {
        Some(at) => format!(
            "it has replayed up to {at}, {} bytes behind",
            target.bytes_since(at)
        ),
        None => "its replay position is unknown".to_owned(),
    }
}

fn describe_pause(pause: Option<ReplayPause>) -> &'static str {
    match pause {
        Some(ReplayPause::Paused) => {
            "; replay is held there by a pause (resume it with `cargo xtask resume`)"
        }
        Some(ReplayPause::NotPaused) => "; replay is not paused, the replica is just behind",
        None => "",
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_stack_says_to_use_xtask_test() {
        let err = Error::NoStack {
            var: "DRR_PRIMARY_URL",
        };
        assert!(err.is_no_stack());
        let text = format!("{err:?}");
        assert!(text.contains("cargo xtask test"), "{text}");
        assert!(text.starts_with("DRR_PRIMARY_URL is not set"), "{text}");
    }

    #[test]
    fn replica_timeout_names_replica_lag_and_pause() {
        let err = Error::ReplicaTimeout {
            replica: "replica1".into(),
            waited: Duration::from_millis(500),
            target: Lsn::from(0x3000148),
            replayed: Some(Lsn::from(0x3000100)),
            pause: Some(ReplayPause::Paused),
        };
        assert!(err.is_replica_timeout());
        assert_eq!(
            err.to_string(),
            "replica1 did not replay 0/3000148 within 500ms: it has replayed up to \
             0/3000100, 72 bytes behind; replay is held there by a pause (resume it \
             with `cargo xtask resume`)"
        );
    }
}
