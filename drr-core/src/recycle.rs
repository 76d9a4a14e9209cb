//! Connections a caller held go back to their pool only when they are
//! clean: outside any transaction, and without session state. Checked in
//! the background with one query; a connection that fails the check, or
//! cannot be checked, is closed instead, so that the next user of the pool
//! never inherits an open transaction, a `SET`, a temporary table, a
//! `LISTEN`, a prepared statement, a cursor or an advisory lock.
//!
//! deadpool's `RecyclingMethod::Clean` resets every connection on every
//! checkout (a round trip on the hot path) and still leaves an open
//! transaction open; this check runs only for connections that were
//! handed out, off the caller's path.

use std::sync::Arc;

use deadpool_postgres::Object;
use tokio_postgres::SimpleQueryMessage;

use crate::cluster::Cluster;
use crate::node::NodeId;

/// True only on a connection with no transaction open and no session
/// state. Sent as a simple query, which is one statement in one message: in
/// autocommit its transaction starts with it (`now()` equals
/// `statement_timestamp()`) and it leaves no portal behind in `pg_cursors`;
/// inside an open transaction `now()` is the earlier start of that
/// transaction. No session state means: no setting changed for the
/// session, the user it logged in as, no temporary schema, no `LISTEN`, no
/// open cursor, no SQL-level prepared statement, no advisory lock.
const CLEAN: &str = "SELECT now() = statement_timestamp() \
    AND current_user = session_user \
    AND session_user = (SELECT r.rolname FROM pg_stat_get_activity(pg_backend_pid()) a \
                        JOIN pg_roles r ON r.oid = a.usesysid) \
    AND NOT EXISTS (SELECT FROM pg_settings WHERE source = 'session') \
    AND pg_my_temp_schema() = 0 \
    AND NOT EXISTS (SELECT FROM pg_listening_channels()) \
    AND NOT EXISTS (SELECT FROM pg_cursors) \
    AND NOT EXISTS (SELECT FROM pg_prepared_statements WHERE from_sql) \
    AND NOT EXISTS (SELECT FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'advisory')";

/// Returns `object`, a connection of node `id` that a caller held, to its
/// pool if it is clean, and closes it otherwise.
pub(crate) fn check_then_return(cluster: Arc<Cluster>, id: NodeId, object: Object) {
    let held = Held(Some(object));
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        // No runtime to check on: close it.
        cluster.node(id).counters.discarded();
        return;
    };
    runtime.spawn(async move {
        let mut held = held;
        let timeout = cluster.config.check_timeout;
        let clean = match &held.0 {
            Some(object) => matches!(
                tokio::time::timeout(timeout, object.simple_query(CLEAN)).await,
                Ok(Ok(messages)) if messages.iter().any(|message| matches!(
                    message,
                    SimpleQueryMessage::Row(row) if row.get(0) == Some("t")
                ))
            ),
            None => false,
        };
        let node = cluster.node(id);
        if clean {
            drop(held.0.take());
        } else {
            node.counters.discarded();
            tracing::debug!(node = %node.name, "closing a connection left in a transaction or with session state");
        }
    });
}

/// A connection on its way back: closed when dropped, unless taken out to
/// go back to the pool. So a check that never finishes (its runtime shut
/// down) closes it too.
struct Held(Option<Object>);

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(object) = self.0.take() {
            drop(Object::take(object));
        }
    }
}
