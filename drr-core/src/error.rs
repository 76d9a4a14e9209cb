//! The error type: which node failed, and why.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::error::{DbError, SqlState};

use crate::classify::Reason;

/// An error from drr: it names the node involved and the cause.
///
/// The type is opaque so that it can grow; ask it questions instead of
/// matching on it: [`node`](Error::node), [`code`](Error::code),
/// [`is_no_healthy_node`](Error::is_no_healthy_node), and so on.
pub struct Error(Box<Inner>);

#[derive(Debug, thiserror::Error)]
enum Inner {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("no healthy node to {what}: {why}")]
    NoHealthyNode { what: &'static str, why: String },
    #[error("timed out after {waited:?} waiting for a connection to {node}")]
    PoolTimeout { node: Arc<str>, waited: Duration },
    #[error("cannot connect to {node}: {}", describe(source))]
    Connect {
        node: Arc<str>,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error(
        "{node} refused the login: {}; check the user and password in its URL",
        describe(source)
    )]
    Authentication {
        node: Arc<str>,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("connection pool of {node} failed: {detail}")]
    Pool { node: Arc<str>, detail: String },
    #[error("the /* drr:replica */ hint was refused: the statement {reason}")]
    HintRefused { reason: Reason },
    #[error(
        "automatic routing refused a statement that {reason}: each call may run on another \
         pooled connection; use `transaction()` for statements that belong together"
    )]
    SessionStatement { reason: Reason },
    #[error(
        "no primary: no node answers as one, the cluster is failing over; retry once a new \
         primary is up"
    )]
    NoPrimary,
    #[error(
        "{node} is not the primary any more (it is in recovery: the cluster failed over); retry \
         the write, it goes to the new primary"
    )]
    NotPrimary {
        node: Arc<str>,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error(
        "lost the connection to the primary {node}: {}; the cluster may be failing over, retry \
         once a new primary is up",
        describe(source)
    )]
    PrimaryLost {
        node: Arc<str>,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error(
        "a read on {node} got no answer within read_timeout ({after:?}); the replica is banned \
         and the read retried elsewhere"
    )]
    ReadTimeout { node: Arc<str>, after: Duration },
    #[error("query failed on {node}: {}", describe(source))]
    Postgres {
        node: Arc<str>,
        #[source]
        source: tokio_postgres::Error,
    },
}

/// A shorthand for results with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn config(message: impl Into<String>) -> Self {
        Error(Box::new(Inner::Config(message.into())))
    }

    pub(crate) fn no_healthy_node(what: &'static str, why: impl Into<String>) -> Self {
        Error(Box::new(Inner::NoHealthyNode {
            what,
            why: why.into(),
        }))
    }

    pub(crate) fn hint_refused(reason: Reason) -> Self {
        Error(Box::new(Inner::HintRefused { reason }))
    }

    pub(crate) fn session_statement(reason: Reason) -> Self {
        Error(Box::new(Inner::SessionStatement { reason }))
    }

    pub(crate) fn pool(
        node: &Arc<str>,
        err: deadpool_postgres::PoolError,
        waited: Duration,
    ) -> Self {
        use deadpool_postgres::PoolError;
        let node = node.clone();
        Error(Box::new(match err {
            PoolError::Timeout(_) => Inner::PoolTimeout { node, waited },
            PoolError::Backend(source) if is_login_refused(&source) => {
                Inner::Authentication { node, source }
            }
            PoolError::Backend(source) => Inner::Connect { node, source },
            other => Inner::Pool {
                node,
                detail: other.to_string(),
            },
        }))
    }

    pub(crate) fn no_primary() -> Self {
        Error(Box::new(Inner::NoPrimary))
    }

    /// What a failure on the primary means in a cluster whose primary the
    /// router discovers: a node in recovery refused a write
    /// ([`Error::is_failover`]), the connection to the primary broke
    /// (likewise), or anything else (returned unchanged).
    pub(crate) fn on_primary(self) -> Self {
        match *self.0 {
            Inner::Postgres { node, source }
                if source.code() == Some(&SqlState::READ_ONLY_SQL_TRANSACTION) =>
            {
                Error(Box::new(Inner::NotPrimary { node, source }))
            }
            Inner::Connect { node, source } => Error(Box::new(Inner::PrimaryLost { node, source })),
            other => Error(Box::new(other)),
        }
    }

    pub(crate) fn read_timeout(node: &Arc<str>, after: Duration) -> Self {
        Error(Box::new(Inner::ReadTimeout {
            node: node.clone(),
            after,
        }))
    }

    pub(crate) fn postgres(node: &Arc<str>, source: tokio_postgres::Error) -> Self {
        let node = node.clone();
        Error(Box::new(if is_login_refused(&source) {
            Inner::Authentication { node, source }
        } else if is_connection_error(&source) {
            Inner::Connect { node, source }
        } else {
            Inner::Postgres { node, source }
        }))
    }

    /// The node (`primary`, `replica1`, ...) the error happened on, if any.
    pub fn node(&self) -> Option<&str> {
        match &*self.0 {
            Inner::PoolTimeout { node, .. }
            | Inner::Connect { node, .. }
            | Inner::Authentication { node, .. }
            | Inner::Pool { node, .. }
            | Inner::NotPrimary { node, .. }
            | Inner::PrimaryLost { node, .. }
            | Inner::ReadTimeout { node, .. }
            | Inner::Postgres { node, .. } => Some(node),
            Inner::Config(_)
            | Inner::NoHealthyNode { .. }
            | Inner::NoPrimary
            | Inner::HintRefused { .. }
            | Inner::SessionStatement { .. } => None,
        }
    }

    /// The SQLSTATE of a database error.
    pub fn code(&self) -> Option<&SqlState> {
        self.as_db_error().map(DbError::code)
    }

    /// The error the server reported, if this is one.
    pub fn as_db_error(&self) -> Option<&DbError> {
        match &*self.0 {
            Inner::Postgres { source, .. }
            | Inner::Connect { source, .. }
            | Inner::NotPrimary { source, .. }
            | Inner::PrimaryLost { source, .. }
            | Inner::Authentication { source, .. } => source.as_db_error(),
            _ => None,
        }
    }

    /// Whether no node could serve the request (every replica banned or too
    /// far behind, with fallback to the primary turned off).
    pub fn is_no_healthy_node(&self) -> bool {
        matches!(&*self.0, Inner::NoHealthyNode { .. })
    }

    /// Whether waiting for a pooled connection timed out.
    pub fn is_pool_timeout(&self) -> bool {
        matches!(&*self.0, Inner::PoolTimeout { .. })
    }

    /// Whether the node could not be reached or the connection broke
    /// (the primary's too: then [`is_failover`](Error::is_failover) holds
    /// as well, in a [`cluster`](crate::RouterConfig::cluster)).
    pub fn is_connection(&self) -> bool {
        matches!(&*self.0, Inner::Connect { .. } | Inner::PrimaryLost { .. })
    }

    /// Whether a write (or a read that needed the primary) failed because
    /// the cluster is changing its primary, in a
    /// [`cluster`](crate::RouterConfig::cluster) whose primary the router
    /// discovers: no node answers as primary, the node written to is in
    /// recovery now (SQLSTATE 25006), or the connection to the primary
    /// broke. The router has started looking for the new primary; retry
    /// the write (after a short pause, for as long as a failover may take).
    /// drr never retries a write itself: a write whose connection broke may
    /// have committed, so make writes you retry idempotent.
    pub fn is_failover(&self) -> bool {
        matches!(
            &*self.0,
            Inner::NoPrimary | Inner::NotPrimary { .. } | Inner::PrimaryLost { .. }
        )
    }

    /// Whether a read on a replica got no answer within
    /// [`read_timeout`](crate::RouterConfig::read_timeout).
    pub fn is_read_timeout(&self) -> bool {
        matches!(&*self.0, Inner::ReadTimeout { .. })
    }

    /// Whether the node refused the login (SQLSTATE class 28: a wrong
    /// password, an unknown role, a `pg_hba.conf` rule): check the user and
    /// password in its URL. Not a connection error: the node was reached.
    pub fn is_authentication(&self) -> bool {
        matches!(&*self.0, Inner::Authentication { .. })
    }

    /// Whether a `/* drr:replica */` hint was put on a statement that is not
    /// provably read-only.
    pub fn is_hint_refused(&self) -> bool {
        matches!(&*self.0, Inner::HintRefused { .. })
    }

    /// Whether automatic routing refused a statement that controls a
    /// transaction or leaves state on its connection (`BEGIN`, `COMMIT`,
    /// `SET` without `LOCAL`, `LISTEN`, `PREPARE`, `DECLARE`, a temporary
    /// table, a session-level advisory lock, ...). Each plain call may run on
    /// another pooled connection: run such statements in a
    /// [`transaction()`](crate::Router::transaction), or on one client from
    /// [`primary()`](crate::Router::primary).
    pub fn is_session_statement(&self) -> bool {
        matches!(&*self.0, Inner::SessionStatement { .. })
    }

    /// Whether the configuration (or environment) is invalid.
    pub fn is_config(&self) -> bool {
        matches!(&*self.0, Inner::Config(_))
    }

    /// Whether a read failed in a way another node may not repeat, so it can
    /// be retried there: a broken connection, a refused login, no answer
    /// within the read timeout, or a query cancelled by a conflict with
    /// recovery.
    pub(crate) fn is_retryable_read(&self) -> bool {
        self.is_connection()
            || self.is_authentication()
            || self.is_read_timeout()
            || self.is_pool_timeout()
            || self.code() == Some(&SqlState::T_R_SERIALIZATION_FAILURE)
    }

    /// Whether a replica refused to write (SQLSTATE 25006): the statement
    /// writes, through a function or view, and only the primary can run it.
    pub(crate) fn is_read_only_violation(&self) -> bool {
        self.code() == Some(&SqlState::READ_ONLY_SQL_TRANSACTION)
    }
}

/// The driver's error with its causes: the server's message and SQLSTATE,
/// or the chain of I/O errors.
pub(crate) fn describe(err: &tokio_postgres::Error) -> String {
    if let Some(db) = err.as_db_error() {
        return format!(
            "{}: {} (SQLSTATE {})",
            db.severity(),
            db.message(),
            db.code().code()
        );
    }
    let mut text = err.to_string();
    let mut cause = std::error::Error::source(err);
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}

/// Whether the server refused the login (SQLSTATE class 28, invalid
/// authorization specification).
pub(crate) fn is_login_refused(err: &tokio_postgres::Error) -> bool {
    err.as_db_error()
        .is_some_and(|db| db.code().code().starts_with("28"))
}

/// Whether a driver error means the connection, not the statement, failed.
pub(crate) fn is_connection_error(err: &tokio_postgres::Error) -> bool {
    if err.is_closed() {
        return true;
    }
    if let Some(db) = err.as_db_error() {
        // Class 08 (connection exception) and 57P (operator intervention:
        // shutdown, crash, cannot connect now).
        let code = db.code().code();
        return code.starts_with("08") || code.starts_with("57P");
    }
    std::error::Error::source(err).is_some_and(|source| source.is::<std::io::Error>())
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&*self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_say_what_and_answer_questions() {
        let err = Error::no_healthy_node("read", "every replica is down");
        assert_eq!(
            err.to_string(),
            "no healthy node to read: every replica is down"
        );
        assert!(err.is_no_healthy_node() && !err.is_connection());
        assert_eq!(err.node(), None);

        let err = Error::hint_refused(Reason::Locking);
        assert_eq!(
            err.to_string(),
            "the /* drr:replica */ hint was refused: the statement locks rows"
        );
        assert!(err.is_hint_refused());
        assert!(!err.is_retryable_read());

        let err = Error::session_statement(Reason::TransactionControl);
        assert!(err.is_session_statement() && !err.is_hint_refused());
        assert!(err.to_string().contains("`transaction()`"), "{err}");

        let err = Error::config("bad");
        assert!(err.is_config() && err.code().is_none());
        assert!(!err.is_failover());

        let err = Error::no_primary();
        assert!(err.is_failover() && err.node().is_none());
        assert!(err.to_string().contains("retry once"), "{err}");
    }
}
