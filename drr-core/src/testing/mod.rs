//! Test helpers that know about replicas (feature `testing`): per-test
//! databases that already exist on every replica, [`wait_for_replicas`],
//! and lag assertions.
//!
//! ```no_run
//! use std::time::Duration;
//! use drr_core::testing::{self, Migrations};
//!
//! # async fn example() -> Result<(), testing::Error> {
//! let migrations = Migrations::new().sql("0001", "CREATE TABLE notes (id int PRIMARY KEY)");
//! // A fresh database with the migrations, on the primary and every replica.
//! // Fails, naming `cargo xtask test`, when the stack's variables are missing.
//! let db = testing::test_db(&migrations).await?;
//!
//! db.primary().execute("INSERT INTO notes VALUES (1)", &[]).await.ok();
//! let check = "SELECT 1 FROM notes WHERE id = 1";
//! // The replica is behind: the row is not there yet...
//! testing::assert_not_visible(db.replica(), check, &[]).await?;
//! // ...until the replicas replay the primary's position.
//! let waited = db.wait_for_replicas(Duration::from_secs(10)).await?;
//! testing::assert_visible_within(db.replica(), check, &[], Duration::from_millis(50)).await?;
//!
//! // Or through a router on this database.
//! let router = db.router().await?;
//! # let _ = (waited, router);
//! # Ok(())
//! # }
//! ```
//!
//! # Per-test databases
//!
//! A replica delays everything, `CREATE DATABASE` included, so a database
//! created when a test starts would cost the test a full delay. Instead,
//! [`DbPool`] copies databases from a template that has the migrations,
//! ahead of time and in batches, and hands out only those every replica has
//! already replayed: a suite pays about one delay of setup, not one per
//! test. The pool is coordinated through the primary (a `drr_testing.pool`
//! table in the login database, `FOR UPDATE SKIP LOCKED` claims, advisory
//! locks), so it is safe across test processes such as nextest's. Databases
//! are dropped after use, and what crashed runs leave behind is swept (see
//! [`DbPool::sweep`]).
//!
//! # Environment
//!
//! [`TestStack::from_env`] reads the variables `cargo xtask test` exports.
//! Without them it fails with a message saying to run the tests through
//! `cargo xtask test`: a test that needs replicas never passes without them.

mod assert;
mod error;
mod migrations;
mod pool;
mod sql;
mod stack;
mod wait;

pub use assert::{Params, assert_not_visible, assert_visible_within, measure_visibility_lag};
pub use error::Error;
pub use migrations::Migrations;
pub use pool::{DATABASE_PREFIX, DbPool, TEMPLATE_PREFIX, TestDb};
pub use sql::quote_ident;
pub use stack::{ADMIN_PRIMARY_URL, ADMIN_REPLICA_URLS, REPLICA_DELAYS_MS, ReplicaNode, TestStack};
pub use wait::{POLL_INTERVAL, wait_for_replicas};

/// Claims a fresh database with `migrations` from the stack in the
/// environment: [`TestStack::from_env`], then [`DbPool::claim`].
pub async fn test_db(migrations: &Migrations) -> Result<TestDb, Error> {
    DbPool::new(TestStack::from_env()?, migrations.clone())
        .claim()
        .await
}
