//! Pooled connections handed to callers: a client on a known node, and
//! transactions on top of one.

use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use crate::cluster::Cluster;
use crate::error::{Error, Result};
use crate::node::{Node, NodeId};
use crate::recycle;
use crate::role::Role;
use crate::session_state::SessionState;
use crate::wal;

/// A pooled connection to one node, returned to its pool on drop.
///
/// Dereferences to [`tokio_postgres::Client`], so the whole driver API is
/// there; [`node`](NodeClient::node) and [`role`](NodeClient::role) say
/// where it points.
///
/// When it is dropped, one query in the background checks that no
/// transaction is open and resets the session state a caller may have left
/// (settings, role, temporary tables, `LISTEN`, cursors, advisory locks)
/// before it goes back to the pool. In a transaction, with an SQL-level
/// prepared statement, or when the check fails, it is closed instead, and
/// [`NodeStats::discarded`](crate::NodeStats::discarded) counts it.
pub struct NodeClient {
    /// Present until drop.
    object: Option<deadpool_postgres::Object>,
    /// Set when a caller holds the connection: it may come back dirty.
    check_on_return: bool,
    in_flight: InFlight,
}

/// Counts a request in flight on its node for as long as it lives.
struct InFlight {
    cluster: Arc<Cluster>,
    id: NodeId,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.cluster
            .node(self.id)
            .health
            .outstanding
            .fetch_sub(1, Relaxed);
    }
}

impl NodeClient {
    pub(crate) fn new(
        cluster: Arc<Cluster>,
        id: NodeId,
        object: deadpool_postgres::Object,
    ) -> Self {
        cluster.node(id).health.outstanding.fetch_add(1, Relaxed);
        NodeClient {
            object: Some(object),
            check_on_return: false,
            in_flight: InFlight { cluster, id },
        }
    }

    /// Marks the connection as held by a caller, who may run anything on
    /// it: it is checked before it goes back to the pool.
    pub(crate) fn handed_out(mut self) -> Self {
        self.check_on_return = true;
        self
    }

    /// The node's name, e.g. `primary` or `replica1`.
    pub fn node(&self) -> &str {
        &self.node_ref().name
    }

    /// Whether the connection is to the primary or a replica, as the router
    /// knows it now.
    pub fn role(&self) -> Role {
        self.in_flight.cluster.role(self.id())
    }

    pub(crate) fn id(&self) -> NodeId {
        self.in_flight.id
    }

    pub(crate) fn node_ref(&self) -> &Node {
        self.in_flight.cluster.node(self.in_flight.id)
    }

    /// Wraps a driver error with this node's name.
    pub(crate) fn error(&self, err: tokio_postgres::Error) -> Error {
        Error::postgres(&self.node_ref().name, err)
    }

    /// Wraps a driver error from a write with this node's name. In a cluster
    /// whose primary the router discovers, a node in recovery or a broken
    /// connection is a failover error, and the monitor looks for the
    /// primary at once.
    pub(crate) fn write_error(&self, err: tokio_postgres::Error) -> Error {
        self.in_flight
            .cluster
            .primary_error(self.id(), self.error(err))
    }

    /// Records, in `session`, a write just committed through this primary
    /// connection: pins the session and, under read-your-writes, takes a
    /// token.
    pub(crate) async fn note_write(&self, session: &SessionState) -> Result<()> {
        let token = if session.wants_token() {
            Some(
                wal::commit_token(self)
                    .await
                    .map_err(|e| self.write_error(e))?,
            )
        } else {
            None
        };
        session.record_write(token);
        Ok(())
    }

    /// Closes the connection instead of returning it to the pool.
    pub(crate) fn discard(mut self) {
        if let Some(object) = self.object.take() {
            self.node_ref().counters.discarded();
            drop(deadpool_postgres::Object::take(object));
        }
    }
}

impl Deref for NodeClient {
    type Target = tokio_postgres::Client;

    fn deref(&self) -> &Self::Target {
        // Only `drop` and `discard` take it.
        self.object
            .as_ref()
            .expect("a NodeClient's connection is present until it is dropped")
    }
}

impl Drop for NodeClient {
    fn drop(&mut self) {
        let Some(object) = self.object.take() else {
            return;
        };
        if self.check_on_return {
            let InFlight { cluster, id } = &self.in_flight;
            recycle::check_then_return(cluster.clone(), *id, object);
        }
    }
}

impl std::fmt::Debug for NodeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeClient")
            .field("node", &self.node())
            .field("role", &self.role())
            .finish_non_exhaustive()
    }
}

/// A transaction on one pooled connection: read-write on the primary, or
/// `READ ONLY` with `REPEATABLE READ` on a replica, so that all its reads see
/// one snapshot.
///
/// Dereferences to [`tokio_postgres::Client`] for its statements. End it
/// with [`commit`](Transaction::commit) or [`rollback`](Transaction::rollback);
/// dropped without either, it is rolled back in the background (or its
/// connection closed, outside a runtime).
pub struct Transaction<'s> {
    /// Present until commit, rollback or drop.
    client: Option<NodeClient>,
    /// Read-write, on the primary.
    writes: bool,
    /// The session to tell about the commit of a read-write transaction.
    writer: Option<&'s SessionState>,
}

impl<'s> Transaction<'s> {
    /// A read-write transaction on the primary if `writes`, with `writer`
    /// the session whose write it is (if any); else a read-only one.
    pub(crate) fn new(client: NodeClient, writes: bool, writer: Option<&'s SessionState>) -> Self {
        Transaction {
            client: Some(client.handed_out()),
            writes,
            writer,
        }
    }

    fn client(&self) -> &NodeClient {
        // Only `commit`, `rollback` (which consume `self`) and `drop` take it.
        self.client
            .as_ref()
            .expect("transaction client is present until it ends")
    }

    /// The node the transaction runs on.
    pub fn node(&self) -> &str {
        self.client().node()
    }

    /// Whether the transaction runs on the primary or a replica.
    pub fn role(&self) -> Role {
        self.client().role()
    }

    /// Commits. In a session, a committed read-write transaction counts as a
    /// write for pinning and read-your-writes.
    pub async fn commit(mut self) -> Result<()> {
        let client = self
            .client
            .take()
            .expect("transaction client is present until it ends");
        client.batch_execute("COMMIT").await.map_err(|e| {
            if self.writes {
                client.write_error(e)
            } else {
                client.error(e)
            }
        })?;
        match self.writer {
            Some(session) => client.note_write(session).await,
            None => Ok(()),
        }
    }

    /// Rolls back.
    pub async fn rollback(mut self) -> Result<()> {
        let client = self
            .client
            .take()
            .expect("transaction client is present until it ends");
        client
            .batch_execute("ROLLBACK")
            .await
            .map_err(|e| client.error(e))
    }
}

impl Deref for Transaction<'_> {
    type Target = tokio_postgres::Client;

    fn deref(&self) -> &Self::Target {
        self.client()
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if client.batch_execute("ROLLBACK").await.is_err() {
                        client.discard();
                    }
                });
            }
            Err(_) => client.discard(),
        }
    }
}
