//! Read/write routing for PostgreSQL read replicas, on tokio-postgres and
//! deadpool-postgres: pooling, lag awareness, read-your-writes.
//!
//! A [`Router`] holds a pool for one primary and each replica. Plain calls
//! are classified by a real SQL parser: only statements proven read-only go
//! to a replica. A background monitor tracks every replica's health and
//! replay position; sessions make sure a user's reads never miss that
//! user's writes.
//!
//! ```no_run
//! use drr_core::{Router, RouterConfig};
//!
//! # async fn example() -> drr_core::Result<()> {
//! // DRR_PRIMARY_URL and DRR_REPLICA_URLS, as printed by `cargo xtask env`.
//! let router = Router::connect(RouterConfig::from_env()?).await?;
//!
//! // One session per request. Its reads see its own writes
//! // (read-your-writes is the default).
//! let session = router.session();
//! session
//!     .execute("INSERT INTO notes (body) VALUES ($1)", &[&"hello"])
//!     .await?; // on the primary
//! let rows = session.query("SELECT body FROM notes", &[]).await?; // a replica that has it
//! assert!(!rows.is_empty());
//!
//! // Hand the session's position to the next request, e.g. as a header.
//! if let Some(token) = session.token() {
//!     println!("x-drr-lsn: {token}");
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Behavior
//!
//! **Classification.** `query`, `query_one`, `query_opt` and `execute` on a
//! [`Router`] or [`Session`] go to a replica only if the statement is a
//! single `SELECT`, `WITH`, `VALUES`, `TABLE` or `SHOW` with no locking
//! clause (`FOR UPDATE`, `FOR SHARE`, ...), no data-modifying CTE, no
//! `SELECT ... INTO`, no call to a function that needs the primary
//! (`nextval`, `setval`, `pg_notify`, and admin and replica-only functions
//! such as `pg_promote`, `pg_wal_replay_pause` or `pg_terminate_backend`),
//! and only calls of functions PostgreSQL says are IMMUTABLE or STABLE
//! (pgpool-II's rule: a VOLATILE function may write). The router asks the
//! node a read lands on about each function once
//! ([`functions::lookup`](mod@functions): `pg_proc.provolatile` of every
//! function the name may resolve to, in the named schema or along the
//! `search_path`), keeps the answer per node, and asks again about a name
//! the node did not know; a statement calling a VOLATILE or unknown
//! function runs on the primary as a write.
//! [`RouterConfig::read_only_functions`] and
//! [`RouterConfig::write_functions`] override the server. Everything else
//! goes to the primary: other statements, several statements, text that
//! does not parse, and anything containing the [`PRIMARY_HINT`]
//! `/* drr:primary */`. The [`REPLICA_HINT`] `/* drr:replica */` asserts a
//! statement is read-only: if it is not provably so, the call fails
//! ([`Error::is_hint_refused`]). Results are cached per SQL text.
//! [`classify`] is the classifier itself (without a server, it answers
//! [`Classification::DependsOnFunctions`] where functions decide).
//!
//! **Choosing a replica.** A replica serves reads if the last health check
//! reached it, it is in recovery, it is not banned, and it is within
//! [`MaxLag`]. Among those, [`Balance`] picks one: round-robin (default),
//! random, or least outstanding requests.
//!
//! **Consistency** ([`Consistency`], per router default, per session, or per
//! call with [`Session::replica_with`]):
//! - `Eventual`: any eligible replica.
//! - `PinAfterWrite(d)`: for `d` after a session's write, its reads go to
//!   the primary.
//! - `ReadYourWrites` (default): after each write the session takes the
//!   primary's WAL position, with its cluster and timeline, as an
//!   [`LsnToken`]. A read goes to an eligible replica of that cluster that
//!   has reached the timeline and replayed the position (a token of another
//!   cluster, or of a timeline no replica has reached, reads from the
//!   primary); if none has, it waits up to
//!   [`RouterConfig::max_wait`] on the most advanced one, polling its replay
//!   position (`WAIT FOR LSN` on PostgreSQL 19 and later); then it falls
//!   back. It falls back at once, without waiting, when that replica
//!   certainly needs longer than `max_wait`: its `recovery_min_apply_delay`
//!   less the most the write's age can be, or the lag it certainly had at
//!   its last check.
//!
//! Calls on the [`Router`] itself remember nothing and read eventually.
//!
//! **Connections.** Each plain call may run on another pooled connection,
//! so plain calls refuse statements that control a transaction or leave
//! state on their connection (`BEGIN`, `COMMIT`, `SAVEPOINT`, `SET` without
//! `LOCAL`, `LISTEN`, `PREPARE`, `DECLARE`, temporary tables, session-level
//! advisory locks, ...) with [`Error::is_session_statement`]: use a
//! [`transaction`](Router::transaction). A connection handed to the caller
//! (a [`NodeClient`] or a [`Transaction`]) is checked and reset in the
//! background when it is dropped (settings, role, temporary tables,
//! `LISTEN`, cursors, advisory locks), and closed instead of going back to
//! its pool if it is still in a transaction or holds an SQL-level prepared
//! statement; [`NodeStats::discarded`] counts those.
//!
//! **Failures.** The first failure of an outage (a check the monitor
//! cannot complete, or a read that cannot connect) bans a replica: it gets
//! no reads again until the first successful check at least
//! [`RouterConfig::ban_duration`] after that first failure. Later failures
//! of the same outage do not extend the ban. A read that fails on a replica
//! with a connection error, a refused login or a recovery conflict is
//! retried once elsewhere. A read that a replica refuses as a write
//! (SQLSTATE 25006: a view or function that writes after all) runs on the
//! primary as a write, never on another replica; it is counted
//! ([`NodeStats::read_only_errors`]) and its SQL text goes to the primary
//! from then on. Writes are never retried. When no replica may
//! serve a read, it goes to the primary, or fails if [`Fallback::Error`] is
//! set. [`Router::stats`] counts reads, writes, retries, fallbacks by
//! reason, waits and bans per node.
//!
//! **Failover.** A router over a [`cluster`](RouterConfig::cluster) (or
//! [`RouterConfig::from_env`] where `DRR_WRITER_URL` is set) fixes no
//! primary: it asks every node (`pg_is_in_recovery()`, its timeline) at
//! start and at every check, and at once when a write meets a node in
//! recovery (SQLSTATE 25006) or loses the primary. Writes go to the node
//! out of recovery on the newest timeline; while there is none, a write
//! fails with an error for which [`Error::is_failover`] holds, and drr
//! never retries it. A node that comes back in recovery is a replica, and
//! is never written to. [`NodeStats::role_changes`] counts what the router
//! saw.
//!
//! **Lag** is measured as an upper bound. In bytes, it is the primary's
//! position, sampled after the replica's, minus the replica's replay
//! position. In time, it is how long ago the primary may first have written
//! something the replica has not replayed: from a history of the primary's
//! positions, the time since the last sample the replica had replayed, so
//! it includes the time since the last check. A caught-up replica of an
//! idle primary lags at most that (unlike
//! `now() - pg_last_xact_replay_timestamp()`, which grows without bound).
//! Until a check has measured a replica, its lag is unknown and
//! [`MaxLag`] excludes it.
//!
//! # Consistency modes
//!
//! Eventual reads, for data where a little staleness is fine:
//!
//! ```no_run
//! use drr_core::{Consistency, Router, RouterConfig};
//! # async fn example() -> drr_core::Result<()> {
//! let config = RouterConfig::from_env()?.consistency(Consistency::Eventual);
//! let router = Router::connect(config).await?;
//! let count: i64 = router.query_one("SELECT count(*) FROM notes", &[]).await?.get(0);
//! # Ok(())
//! # }
//! ```
//!
//! Pin after write, as Rails does with its two seconds:
//!
//! ```no_run
//! use std::time::Duration;
//! use drr_core::{Consistency, Router};
//! # async fn example(router: Router) -> drr_core::Result<()> {
//! let session = router.session_with(Consistency::PinAfterWrite(Duration::from_secs(2)));
//! session.execute("UPDATE notes SET body = $1 WHERE id = 1", &[&"edited"]).await?;
//! // Within two seconds of the write: read from the primary.
//! let row = session.query_one("SELECT body FROM notes WHERE id = 1", &[]).await?;
//! # Ok(())
//! # }
//! ```
//!
//! Read-your-writes across requests, with the token in a header or cookie:
//!
//! ```no_run
//! use drr_core::{Consistency, LsnToken, Router};
//! # async fn example(router: Router, header: Option<&str>) -> drr_core::Result<()> {
//! // The request carries the token from an earlier response, if any.
//! let mut session = router.session_with(Consistency::ReadYourWrites);
//! if let Some(token) = header.and_then(|h| h.parse::<LsnToken>().ok()) {
//!     session = session.with_token(token);
//! }
//! let rows = session.query("SELECT body FROM notes", &[]).await?;
//!
//! // Transactions: read-write on the primary, read-only on a replica.
//! let tx = session.transaction().await?;
//! tx.execute("INSERT INTO notes (body) VALUES ('a')", &[]).await.ok();
//! tx.commit().await?; // the session's token now covers this commit
//! let snapshot = session.read_transaction().await?; // REPEATABLE READ, READ ONLY
//! let n: i64 = snapshot.query_one("SELECT count(*) FROM notes", &[]).await.map(|r| r.get(0)).unwrap_or(0);
//! snapshot.commit().await?;
//! let next = session.token().map(|t| t.to_string()); // send back as x-drr-lsn
//! # Ok(())
//! # }
//! ```
//!
//! # Features
//!
//! | Feature | Description | Extra dependencies | Default |
//! |---------|-------------|--------------------|---------|
//! | (none)  | Everything above. | | |
//! | `testing` | `drr_core::testing`: per-test databases that exist on every replica, `wait_for_replicas`, lag assertions. | none | no |
//!
//! # Testing
//!
//! With the `testing` feature, `drr_core::testing` gives each test a database of its
//! own that already exists on every replica (from a pool created ahead, safe
//! across nextest's processes), waits for replicas precisely
//! (`wait_for_replicas`), and asserts on lag. The module's
//! documentation has a complete example; `cargo xtask test` provides the
//! stack its tests need.
//!
//! The [`env`](mod@env) module names the environment variables; [`wal`]
//! holds the WAL-position queries the router uses, and [`functions`] the
//! volatility lookup, for test harnesses.
//!
//! # Without a server
//!
//! The classifier and the token need no database:
//!
//! ```
//! use drr_core::{Classification, LsnToken, Reason, classify};
//!
//! assert_eq!(classify("SELECT id FROM notes WHERE id = $1"), Classification::ReadOnly);
//! assert_eq!(
//!     classify("SELECT * FROM jobs FOR UPDATE"),
//!     Classification::Primary(Reason::Locking)
//! );
//! // Plain calls refuse what would outlive them on a pooled connection.
//! assert_eq!(classify("BEGIN"), Classification::Refused(Reason::TransactionControl));
//! // A function decides: the router asks the server whether it is VOLATILE.
//! assert_eq!(classify("SELECT create_order($1)"), Classification::DependsOnFunctions);
//!
//! // Tokens from before they named their cluster still parse.
//! let token: LsnToken = "v1:0/3000148".parse()?;
//! assert_eq!(token.cluster(), None);
//! assert_eq!(token.to_string(), "v1:0/3000148");
//! # Ok::<(), drr_core::ParseLsnError>(())
//! ```
#![deny(missing_docs)]

pub use classify::{Classification, PRIMARY_HINT, REPLICA_HINT, Reason, classify};
pub use client::{NodeClient, Transaction};
pub use config::{Balance, Consistency, Fallback, MaxLag, RouterConfig};
pub use error::{Error, Result};
pub use health::{CheckFailure, HealthSnapshot};
pub use lsn::{Lsn, ParseLsnError};
pub use role::Role;
pub use router::{Route, Router};
pub use session::Session;
pub use stats::{Fallbacks, NodeStats, Stats};
pub use token::{ClusterId, LsnToken};

pub mod env;
pub mod functions;
#[cfg(feature = "testing")]
pub mod testing;
pub mod wal;

mod balance;
mod classify;
mod client;
mod cluster;
mod config;
mod error;
mod health;
mod lag;
mod lsn;
mod monitor;
mod node;
mod recycle;
mod role;
mod route;
mod router;
mod session;
mod session_state;
mod stats;
mod token;
