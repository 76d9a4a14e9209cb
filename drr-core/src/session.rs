//! Sessions: a sequence of calls from one user or request chain, whose reads
//! respect its own writes.

use std::sync::Arc;

use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::client::{NodeClient, Transaction};
use crate::cluster::Cluster;
use crate::config::Consistency;
use crate::error::Result;
use crate::route::{self, Op};
use crate::session_state::SessionState;
use crate::token::LsnToken;

/// Calls that remember their writes, so reads can follow them.
///
/// A session records, after each write (a statement that is not provably
/// read-only, or a committed read-write transaction), when it happened and,
/// under [`Consistency::ReadYourWrites`], the primary's WAL position as an
/// [`LsnToken`]. Reads then go where the consistency allows.
///
/// Sessions are cheap: make one per request, and carry the token between
/// requests with [`token`](Session::token) and
/// [`with_token`](Session::with_token). A session may be shared between
/// tasks; its state is updated atomically.
///
/// Plain calls run in autocommit mode, each on a pooled connection that may
/// differ from the last: use [`transaction`](Session::transaction) for
/// statements that belong together. Plain calls refuse statements that
/// control a transaction or leave state on their connection (`BEGIN`,
/// `SET` without `LOCAL`, `LISTEN`, ...; see
/// [`Error::is_session_statement`](crate::Error::is_session_statement)).
pub struct Session {
    cluster: Arc<Cluster>,
    state: SessionState,
}

impl Session {
    pub(crate) fn new(cluster: Arc<Cluster>, consistency: Consistency) -> Self {
        Session {
            cluster,
            state: SessionState::new(consistency),
        }
    }

    /// Resumes a session that wrote elsewhere (another request, another
    /// service): under read-your-writes, its reads will not miss what
    /// `token` covers.
    pub fn with_token(self, token: LsnToken) -> Self {
        self.observe(token);
        self
    }

    /// The session's consistency.
    pub fn consistency(&self) -> Consistency {
        self.state.consistency()
    }

    /// Changes the session's consistency for later calls.
    pub fn set_consistency(&mut self, consistency: Consistency) {
        self.state.set_consistency(consistency);
    }

    /// The position of the session's latest write, to hand to a later
    /// request (say, as the `x-drr-lsn` header or a cookie). `None` before
    /// the first write, and always outside read-your-writes unless a token
    /// was given with [`with_token`](Session::with_token).
    pub fn token(&self) -> Option<LsnToken> {
        self.state.token()
    }

    /// Merges a token from elsewhere into the session: reads will follow the
    /// later of the two, or the new one if it names another cluster (see
    /// [`LsnToken::merge`]).
    pub fn observe(&self, token: LsnToken) {
        self.state.observe(token);
    }

    /// Runs a statement where its classification and the session's
    /// consistency allow, returning the rows.
    pub async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        self.run::<route::Query>(sql, params).await
    }

    /// Like [`query`](Session::query), for exactly one row.
    pub async fn query_one(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row> {
        self.run::<route::QueryOne>(sql, params).await
    }

    /// Like [`query`](Session::query), for at most one row.
    pub async fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>> {
        self.run::<route::QueryOpt>(sql, params).await
    }

    /// Runs a statement where its classification and the session's
    /// consistency allow, returning the number of rows affected.
    pub async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        self.run::<route::Execute>(sql, params).await
    }

    /// A pooled connection to the primary. Writes made through it are not
    /// seen by the session: call [`note_write`](Session::note_write) after
    /// them.
    pub async fn primary(&self) -> Result<NodeClient> {
        route::connect_writer(&self.cluster)
            .await
            .map(NodeClient::handed_out)
    }

    /// A pooled connection for reads, chosen by the session's consistency.
    pub async fn replica(&self) -> Result<NodeClient> {
        self.replica_with(self.consistency()).await
    }

    /// A pooled connection for reads, chosen by `consistency` for this call
    /// only.
    pub async fn replica_with(&self, consistency: Consistency) -> Result<NodeClient> {
        route::read_client(&self.cluster, &self.state.context(consistency))
            .await
            .map(NodeClient::handed_out)
    }

    /// A read-write transaction on the primary. Its commit counts as a
    /// write of the session.
    pub async fn transaction(&self) -> Result<Transaction<'_>> {
        route::write_transaction(&self.cluster, Some(&self.state)).await
    }

    /// A `READ ONLY`, `REPEATABLE READ` transaction where the session's
    /// consistency allows.
    pub async fn read_transaction(&self) -> Result<Transaction<'_>> {
        let context = self.state.context(self.consistency());
        route::read_transaction(&self.cluster, &context).await
    }

    /// Records a write made outside the session's own calls (e.g. through
    /// [`primary`](Session::primary)): pins the session and, under
    /// read-your-writes, takes a token from the primary.
    pub async fn note_write(&self) -> Result<()> {
        let client = route::connect_writer(&self.cluster).await?;
        client.note_write(&self.state).await
    }

    async fn run<O: Op>(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<O::Out> {
        let context = self.state.context(self.consistency());
        let routed = route::run::<O>(&self.cluster, &context, sql, params).await?;
        if routed.wrote {
            routed.client.note_write(&self.state).await?;
        }
        Ok(routed.out)
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}
