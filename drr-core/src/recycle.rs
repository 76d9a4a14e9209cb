//! Connections a caller held go back to their pool only when they are
//! clean. In the background, one simple query checks that no transaction is
//! open and resets the session state a caller may have left (settings,
//! role, cursors, `LISTEN`, advisory locks, temporary tables, sequence
//! state: deadpool's `RecyclingMethod::Clean` statements, PgBouncer's
//! `DISCARD ALL` without `DEALLOCATE ALL`, which would break the driver's
//! own prepared statements). A connection in a transaction, with an SQL-level
//! prepared statement, or that cannot be checked, is closed instead, so the
//! next user of the pool never inherits an open transaction or a session
//! changed under it.
//!
//! `RecyclingMethod::Clean` itself would reset every connection at every
//! checkout (a round trip on every query's path) and still leave an open
//! transaction open; this runs only for connections that were handed out,
//! off the caller's path.

use std::sync::Arc;

use deadpool_postgres::Object;
use tokio_postgres::SimpleQueryMessage;

use crate::cluster::Cluster;
use crate::node::NodeId;

/// One simple query: its first statement is true only outside any
/// transaction (in autocommit, a statement's transaction starts with it, so
/// `now()` equals `statement_timestamp()`; inside an open one, `now()` is
/// the earlier start of that transaction) and without SQL-level prepared
/// statements. The rest resets what a session can change and the driver
/// does not track. In an open transaction they run inside it, and the
/// connection is closed anyway.
const CHECK_AND_RESET: &str = "SELECT now() = statement_timestamp() \
    AND NOT EXISTS (SELECT FROM pg_prepared_statements WHERE from_sql); \
    CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; UNLISTEN *; \
    SELECT pg_advisory_unlock_all(); DISCARD TEMP; DISCARD SEQUENCES";

/// Returns `object`, a connection of node `id` that a caller held, to its
/// pool once it is reset, and closes it if it is in a transaction or cannot
/// be reset.
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
                tokio::time::timeout(timeout, object.simple_query(CHECK_AND_RESET)).await,
                Ok(Ok(messages)) if messages.iter().find_map(|message| match message {
                    SimpleQueryMessage::Row(row) => Some(row.get(0) == Some("t")),
                    _ => None,
                }) == Some(true)
            ),
            None => false,
        };
        let node = cluster.node(id);
        if clean {
            drop(held.0.take());
        } else {
            node.counters.discarded();
            tracing::debug!(node = %node.name, "closing a connection left in a transaction");
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
