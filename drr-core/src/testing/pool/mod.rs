//! Per-test databases that already exist on every replica: a template with
//! the migrations, a pool of copies created ahead in batches, claims that
//! are safe across processes, and cleanup.
//!
//! All coordination goes through the primary, so test processes (nextest
//! runs one per test) share one pool:
//!
//! - the table `drr_testing.pool` in the login database has a row per pool
//!   database: `creating` → `ready` (with the WAL position after its
//!   `CREATE DATABASE`) → `claimed` → dropped, or `done` if dropping failed;
//! - a row's `owner_pid` is the primary backend of the process that creates
//!   or claims it, so a row whose backend is gone belongs to a crashed
//!   process and is swept;
//! - a claim is one `UPDATE ... WHERE name = (SELECT ... FOR UPDATE SKIP
//!   LOCKED LIMIT 1)`, so concurrent claims never share a database;
//! - the template is built once under a session advisory lock, and one
//!   process at a time refills the pool under another.

mod claim;
mod coordination;
mod refill;
mod sweep;
mod template;
mod test_db;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::testing::error::Error;
use crate::testing::migrations::Migrations;
use crate::testing::sql::StableHash;
use crate::testing::stack::{TestStack, connect};

pub use test_db::TestDb;

use coordination::ensure_schema;
use sweep::sweep;
use test_db::drop_database;

/// Names of pool databases start with this, then a tag of the login
/// database whose pool tracks them (see [`DbPool::database_prefix`]).
pub const DATABASE_PREFIX: &str = "drr_t_";
/// Names of template databases start with this, then the same tag.
pub const TEMPLATE_PREFIX: &str = "drr_tpl_";

/// Per-test databases, copied from a template that has the migrations and
/// created ahead so that they already exist on every replica when a test
/// claims one.
///
/// Cheap to build (no I/O until [`claim`](DbPool::claim)); a test usually
/// calls [`test_db`](crate::testing::test_db) instead.
#[derive(Debug, Clone)]
pub struct DbPool {
    shared: Arc<Shared>,
    coordinator: Arc<Coordinator>,
}

/// The connection claims are made on, shared by the pool's clones and
/// reopened when its runtime has gone.
#[derive(Default)]
struct Coordinator(tokio::sync::Mutex<Option<(Arc<Client>, i32)>>);

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Coordinator")
    }
}

#[derive(Debug, Clone)]
struct Shared {
    stack: TestStack,
    migrations: Migrations,
    hash: u64,
    /// `drr_t_<home>_`: the names of this pool's databases.
    database_prefix: String,
    /// `drr_tpl_<home>_`: the names of this pool's templates.
    template_prefix: String,
    template: String,
    batch_size: usize,
    claim_timeout: Duration,
    max_ready_age: Duration,
}

impl DbPool {
    /// A pool for databases of `stack` with `migrations`.
    pub fn new(stack: TestStack, migrations: Migrations) -> Self {
        let hash = migrations.hash();
        let claim_timeout = Duration::from_secs(60) + stack.max_delay();
        let home = home_tag(stack.primary_url());
        let template_prefix = format!("{TEMPLATE_PREFIX}{home:08x}_");
        DbPool {
            shared: Arc::new(Shared {
                database_prefix: format!("{DATABASE_PREFIX}{home:08x}_"),
                template: format!("{template_prefix}{hash:016x}"),
                template_prefix,
                stack,
                migrations,
                hash,
                batch_size: 16,
                claim_timeout,
                max_ready_age: Duration::from_secs(3600),
            }),
            coordinator: Arc::default(),
        }
    }

    /// How many databases one refill creates ahead (default 16; at least 1).
    pub fn batch_size(mut self, size: usize) -> Self {
        Arc::make_mut(&mut self.shared).batch_size = size.max(1);
        self
    }

    /// How long a claim may take in all, including building the template and
    /// waiting for the replicas (default 60 s plus the largest delay).
    pub fn claim_timeout(mut self, timeout: Duration) -> Self {
        Arc::make_mut(&mut self.shared).claim_timeout = timeout;
        self
    }

    /// How long an unclaimed database is kept for later runs before the
    /// sweep drops it (default one hour).
    pub fn max_ready_age(mut self, age: Duration) -> Self {
        Arc::make_mut(&mut self.shared).max_ready_age = age;
        self
    }

    /// The template database's name, `drr_tpl_<home>_<hash of the
    /// migrations>`.
    pub fn template_name(&self) -> &str {
        &self.shared.template
    }

    /// The prefix of this pool's database names, `drr_t_<home>_`, where
    /// `<home>` tags the login database whose `drr_testing.pool` table
    /// tracks them. Sweeps drop only databases with this prefix, so pools
    /// of other login databases on the same server (another project using
    /// the same role) never drop each other's databases.
    pub fn database_prefix(&self) -> &str {
        &self.shared.database_prefix
    }

    /// Claims a fresh database that exists on the primary and on every
    /// replica, with the migrations applied.
    ///
    /// Takes a ready database if there is one; otherwise creates one (and
    /// the rest of a batch in the background), or waits for the process that
    /// is creating them. Then waits until every replica has replayed the
    /// database's creation: for databases created ahead, that wait is over
    /// or short. When few ready databases remain, a background refill
    /// creates the next batch without delaying this claim.
    pub async fn claim(&self) -> Result<TestDb, Error> {
        let started = Instant::now();
        let shared = &self.shared;
        let stack = &shared.stack;
        let (coordinator, pid) = self.coordinator().await?;
        let (name, lsn, left) = self.take(&coordinator, pid, started).await?;
        match self
            .finish_claim(&coordinator, name.clone(), lsn, left, started)
            .await
        {
            Ok(db) => Ok(db),
            Err(err) => {
                let _ = drop_database(stack.primary_url(), &name).await;
                Err(err)
            }
        }
    }

    async fn coordinator(&self) -> Result<(Arc<Client>, i32), Error> {
        let mut slot = self.coordinator.0.lock().await;
        if let Some((client, pid)) = &*slot
            && !client.is_closed()
        {
            return Ok((client.clone(), *pid));
        }
        let client = connect(self.shared.stack.primary_url(), "primary").await?;
        let pid = ensure_schema(&client).await?;
        let client = Arc::new(client);
        *slot = Some((client.clone(), pid));
        Ok((client, pid))
    }

    /// Drops what crashed or finished runs left behind: databases marked
    /// `done`, databases claimed or being created by a backend that is gone,
    /// ready databases older than [`max_ready_age`](DbPool::max_ready_age),
    /// and databases named with this pool's
    /// [`database_prefix`](DbPool::database_prefix) that have no row at all.
    /// Returns the names dropped. Every refill runs it first.
    pub async fn sweep(&self) -> Result<Vec<String>, Error> {
        let conn = connect(self.shared.stack.primary_url(), "primary").await?;
        ensure_schema(&conn).await?;
        sweep(&conn, &self.shared, false).await
    }

    /// [`sweep`](DbPool::sweep), and also every unclaimed pool database
    /// whatever its age, and this pool's templates (`drr_tpl_<home>_...`)
    /// no pool database refers to and nobody is building. For a clean slate
    /// between suites.
    pub async fn cleanup_leftovers(&self) -> Result<Vec<String>, Error> {
        let conn = connect(self.shared.stack.primary_url(), "primary").await?;
        ensure_schema(&conn).await?;
        sweep(&conn, &self.shared, true).await
    }
}

/// The tag of the login database a pool lives in (named in the URL, else
/// the user's name, as Postgres defaults it): 32 bits of a stable hash.
fn home_tag(primary_url: &str) -> u32 {
    let config: Option<tokio_postgres::Config> = primary_url.parse().ok();
    let database = config
        .as_ref()
        .and_then(|c| c.get_dbname().or(c.get_user()))
        .unwrap_or(primary_url);
    let mut hash = StableHash::new();
    hash.write(b"home");
    hash.write(database.as_bytes());
    (hash.finish() >> 32) as u32
}
