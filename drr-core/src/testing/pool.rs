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

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{OnceCell, oneshot};
use tokio_postgres::Client;
use tokio_postgres::types::PgLsn;

use crate::config::RouterConfig;
use crate::lsn::Lsn;
use crate::router::Router;
use crate::testing::error::Error;
use crate::testing::migrations::Migrations;
use crate::testing::sql::{StableHash, quote_ident};
use crate::testing::stack::{TestStack, connect, with_dbname};
use crate::testing::wait;
use crate::wal;

/// Names of pool databases start with this, then a tag of the login
/// database whose pool tracks them (see [`DbPool::database_prefix`]).
pub const DATABASE_PREFIX: &str = "drr_t_";
/// Names of template databases start with this, then the same tag.
pub const TEMPLATE_PREFIX: &str = "drr_tpl_";

/// Advisory lock classes (`pg_advisory_lock(class, key)`), "DRRT" and up.
const SCHEMA_LOCK: (i32, i32) = (0x4452_5254, 0);
const TEMPLATE_LOCK_CLASS: i32 = 0x4452_5255;
const REFILL_LOCK_CLASS: i32 = 0x4452_5256;

/// How often a claim looks for a ready database while another process
/// creates them, and retries to become the creator.
const READY_POLL: Duration = Duration::from_millis(10);
const REFILL_RETRY: Duration = Duration::from_millis(100);

const SCHEMA_SQL: &str = "
CREATE SCHEMA IF NOT EXISTS drr_testing;
CREATE SEQUENCE IF NOT EXISTS drr_testing.pool_seq;
CREATE TABLE IF NOT EXISTS drr_testing.pool (
    name text PRIMARY KEY,
    template text NOT NULL,
    state text NOT NULL CHECK (state IN ('creating', 'ready', 'claimed', 'done')),
    ready_lsn pg_lsn,
    created_at timestamptz NOT NULL DEFAULT now(),
    owner_pid int4 NOT NULL,
    owner_since timestamptz NOT NULL DEFAULT now()
);";

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

    async fn take(
        &self,
        coordinator: &Client,
        pid: i32,
        started: Instant,
    ) -> Result<(String, Lsn, usize), Error> {
        let shared = &self.shared;
        let deadline = started + shared.claim_timeout;
        let mut lock_conn: Option<Client> = None;
        let mut last_try: Option<Instant> = None;
        loop {
            if let Some(found) = try_claim(coordinator, &shared.template).await? {
                return Ok(found);
            }
            if last_try.is_none_or(|t| t.elapsed() >= REFILL_RETRY) {
                last_try = Some(Instant::now());
                let conn = match lock_conn.take() {
                    Some(conn) => conn,
                    None => connect(shared.stack.primary_url(), "primary").await?,
                };
                if try_lock(&conn, REFILL_LOCK_CLASS, lock_key(shared.hash)).await? {
                    let (tx, rx) = oneshot::channel();
                    tokio::spawn(refill(conn, shared.clone(), Some((pid, tx))));
                    match rx.await {
                        Ok(Ok(Some((name, lsn)))) => return Ok((name, lsn, 0)),
                        Ok(Err(err)) => return Err(err),
                        Ok(Ok(None)) | Err(_) => {}
                    }
                } else {
                    lock_conn = Some(conn);
                }
            }
            if Instant::now() >= deadline {
                return Err(Error::ClaimTimeout {
                    waited: started.elapsed(),
                    detail: format!(
                        "no ready database from template {} appeared while another process held the refill lock",
                        shared.template
                    ),
                });
            }
            tokio::time::sleep(READY_POLL).await;
        }
    }

    async fn finish_claim(
        &self,
        coordinator: &Client,
        name: String,
        lsn: Lsn,
        left: usize,
        started: Instant,
    ) -> Result<TestDb, Error> {
        let shared = &self.shared;
        let stack = &shared.stack;
        // Refill ahead, without making this claim wait.
        if left < shared.batch_size.div_ceil(2) {
            let shared = shared.clone();
            tokio::spawn(async move {
                let Ok(conn) = connect(shared.stack.primary_url(), "primary").await else {
                    return;
                };
                if try_lock(&conn, REFILL_LOCK_CLASS, lock_key(shared.hash))
                    .await
                    .unwrap_or(false)
                {
                    refill(conn, shared, None).await;
                }
            });
        }

        let primary_url = with_dbname(stack.primary_url(), &name)?;
        let primary = connect(&primary_url, "primary").await?;
        // From now on the claim lives as long as this connection does.
        let owner: i32 = primary
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .map_err(Error::postgres("primary", "reading the backend pid"))?
            .get(0);
        coordinator
            .execute(
                "UPDATE drr_testing.pool SET owner_pid = $2, owner_since = now() WHERE name = $1",
                &[&name, &owner],
            )
            .await
            .map_err(Error::postgres("primary", "recording the claim"))?;

        // Wait until the database exists on every replica. Usually it does,
        // and connecting to it is the whole check.
        let remaining = || shared.claim_timeout.saturating_sub(started.elapsed());
        let mut replicas = Vec::with_capacity(stack.replicas().len());
        for replica in stack.replicas() {
            let url = with_dbname(&replica.url, &name)?;
            let client = match connect(&url, &replica.name).await {
                Ok(client) => {
                    let node = [(replica.name.as_str(), &client)];
                    wait::wait_for_lsn(&node, lsn, Instant::now(), remaining()).await?;
                    client
                }
                Err(err) if is_missing_database(&err) => {
                    let login = connect(&replica.url, &replica.name).await?;
                    let node = [(replica.name.as_str(), &login)];
                    wait::wait_for_lsn(&node, lsn, Instant::now(), remaining()).await?;
                    connect(&url, &replica.name).await?
                }
                Err(err) => return Err(err),
            };
            replicas.push(ReplicaConn {
                name: replica.name.clone(),
                url,
                client,
            });
        }
        Ok(TestDb {
            name,
            login_url: stack.primary_url().to_owned(),
            primary_url,
            setup: started.elapsed(),
            conns: Some(Conns {
                router: OnceCell::new(),
                primary,
                replicas,
            }),
        })
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

/// A database of its own for one test, on the primary and every replica,
/// with the migrations applied. Dropped (`DROP DATABASE ... WITH (FORCE)`)
/// when this value is, or by [`release`](TestDb::release).
pub struct TestDb {
    name: String,
    login_url: String,
    primary_url: String,
    setup: Duration,
    conns: Option<Conns>,
}

struct Conns {
    router: OnceCell<Router>,
    /// Its backend marks the claim as live: a sweep drops the database
    /// once it is gone.
    primary: Client,
    replicas: Vec<ReplicaConn>,
}

struct ReplicaConn {
    name: String,
    url: String,
    client: Client,
}

impl TestDb {
    fn conns(&self) -> &Conns {
        // Only `release` and `drop` take them, and both consume the value.
        self.conns
            .as_ref()
            .expect("a TestDb's connections live as long as it does")
    }

    /// The database's name (`drr_t_...`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The primary's URL for this database.
    pub fn primary_url(&self) -> &str {
        &self.primary_url
    }

    /// The replicas' URLs for this database, in the stack's order.
    pub fn replica_urls(&self) -> Vec<&str> {
        self.conns()
            .replicas
            .iter()
            .map(|r| r.url.as_str())
            .collect()
    }

    /// How long the claim took, from the call to a usable database.
    pub fn setup_time(&self) -> Duration {
        self.setup
    }

    /// A client to this database on the primary.
    pub fn primary(&self) -> &Client {
        &self.conns().primary
    }

    /// A client to this database on the first replica.
    pub fn replica(&self) -> &Client {
        // `TestStack::from_env` requires at least one replica, and a stack
        // built in code without one has nothing to test here.
        &self
            .conns()
            .replicas
            .first()
            .expect("the test stack has at least one replica")
            .client
    }

    /// A client to this database on the replica named `name`.
    pub fn replica_named(&self, name: &str) -> Option<&Client> {
        self.conns()
            .replicas
            .iter()
            .find(|r| r.name == name)
            .map(|r| &r.client)
    }

    /// The replicas' names and clients, in the stack's order.
    pub fn replicas(&self) -> impl Iterator<Item = (&str, &Client)> {
        self.conns()
            .replicas
            .iter()
            .map(|r| (r.name.as_str(), &r.client))
    }

    /// A router configuration for this database (fast monitor, small pools).
    pub fn router_config(&self) -> Result<RouterConfig, Error> {
        let mut config = RouterConfig::new(&self.primary_url)?;
        for replica in &self.conns().replicas {
            config = config.named_replica(&replica.name, &replica.url)?;
        }
        Ok(config
            .check_interval(Duration::from_millis(100))
            .pool_size(4))
    }

    /// A [`Router`] for this database, built on first use with
    /// [`router_config`](TestDb::router_config).
    pub async fn router(&self) -> Result<&Router, Error> {
        self.conns()
            .router
            .get_or_try_init(|| async { Ok(Router::connect(self.router_config()?).await?) })
            .await
    }

    /// Waits until every replica has replayed everything committed on the
    /// primary so far; returns how long it waited. See
    /// [`wait_for_replicas`](crate::testing::wait_for_replicas).
    pub async fn wait_for_replicas(&self, timeout: Duration) -> Result<Duration, Error> {
        let refs: Vec<(&str, &Client)> = self.replicas().collect();
        wait::wait_for_replicas(self.primary(), &refs, timeout).await
    }

    /// Waits until the replica named `name` has replayed everything
    /// committed on the primary so far.
    pub async fn wait_for_replica(&self, name: &str, timeout: Duration) -> Result<Duration, Error> {
        let client = self
            .replica_named(name)
            .ok_or_else(|| Error::Config(format!("the stack has no replica named {name:?}")))?;
        wait::wait_for_replicas(self.primary(), &[(name, client)], timeout).await
    }

    /// Drops the database now, reporting failures (dropping the value does
    /// the same, best effort).
    pub async fn release(mut self) -> Result<(), Error> {
        drop(self.conns.take());
        drop_database(&self.login_url, &self.name).await
    }
}

impl std::fmt::Debug for TestDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestDb")
            .field("name", &self.name)
            .field("setup", &self.setup)
            .finish_non_exhaustive()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(conns) = self.conns.take() else {
            return;
        };
        drop(conns);
        // Drop cannot await, and the test's runtime may be shutting down: drop
        // the database from a thread with a runtime of its own, and wait for
        // it so that a test process does not exit first. If this fails, the
        // claim's backend is gone and a later sweep drops the database.
        let url = self.login_url.clone();
        let name = self.name.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(runtime) = runtime
                && let Err(err) = runtime.block_on(drop_database(&url, &name))
            {
                tracing::warn!(database = %name, "cannot drop test database: {err}");
            }
        });
        let _ = thread.join();
    }
}

fn lock_key(hash: u64) -> i32 {
    // The low 32 bits, as the signed key pg_advisory_lock takes.
    i32::from_ne_bytes((hash as u32).to_ne_bytes())
}

fn is_missing_database(err: &Error) -> bool {
    matches!(err, Error::Postgres { source, .. }
        if source.code() == Some(&tokio_postgres::error::SqlState::INVALID_CATALOG_NAME))
}

async fn try_lock(conn: &Client, class: i32, key: i32) -> Result<bool, Error> {
    Ok(conn
        .query_one("SELECT pg_try_advisory_lock($1, $2)", &[&class, &key])
        .await
        .map_err(Error::postgres("primary", "taking an advisory lock"))?
        .get(0))
}

/// Creates the pool table if needed; returns the backend's pid.
async fn ensure_schema(conn: &Client) -> Result<i32, Error> {
    let row = conn
        .query_one(
            "SELECT pg_backend_pid(), to_regclass('drr_testing.pool') IS NOT NULL",
            &[],
        )
        .await
        .map_err(Error::postgres("primary", "checking the pool table"))?;
    if !row.get::<_, bool>(1) {
        let (class, key) = SCHEMA_LOCK;
        conn.batch_execute(&format!(
            "BEGIN; SELECT pg_advisory_xact_lock({class}, {key}); {SCHEMA_SQL} COMMIT;"
        ))
        .await
        .map_err(Error::postgres(
            "primary",
            "creating the pool table drr_testing.pool (the login role needs CREATE on its database)",
        ))?;
    }
    Ok(row.get(0))
}

async fn try_claim(conn: &Client, template: &str) -> Result<Option<(String, Lsn, usize)>, Error> {
    let row = conn
        .query_opt(
            "UPDATE drr_testing.pool SET state = 'claimed', owner_pid = pg_backend_pid(), \
             owner_since = now() \
             WHERE name = (SELECT name FROM drr_testing.pool \
                           WHERE template = $1 AND state = 'ready' \
                           ORDER BY ready_lsn LIMIT 1 FOR UPDATE SKIP LOCKED) \
             RETURNING name, ready_lsn, (SELECT count(*) FROM drr_testing.pool \
                                         WHERE template = $1 AND state IN ('ready', 'creating'))",
            &[&template],
        )
        .await
        .map_err(Error::postgres("primary", "claiming a test database"))?;
    Ok(row.map(|row| {
        let lsn = row.get::<_, Option<PgLsn>>(1).map_or(0, u64::from);
        let left = usize::try_from(row.get::<_, i64>(2)).unwrap_or(0);
        (row.get(0), Lsn::from(lsn), left.saturating_sub(1))
    }))
}

/// Where a refill sends the database it created for a waiting claim.
type Reply = oneshot::Sender<Result<Option<(String, Lsn)>, Error>>;
type FirstClaim = (i32, Reply);

/// Creates databases ahead, holding the refill lock on `conn`, until the pool
/// holds a batch; the first one goes to `first` (claimed for its pid) as
/// soon as it exists.
async fn refill(conn: Client, shared: Arc<Shared>, first: Option<FirstClaim>) {
    let (claimer, mut reply) = match first {
        Some((pid, tx)) => (Some(pid), Some(tx)),
        None => (None, None),
    };
    let result = refill_inner(&conn, &shared, claimer, &mut reply).await;
    match (result, reply.take()) {
        (Err(err), Some(tx)) => {
            let _ = tx.send(Err(err));
        }
        (Err(err), None) => tracing::warn!("refilling the test database pool failed: {err}"),
        (Ok(()), Some(tx)) => {
            let _ = tx.send(Ok(None));
        }
        (Ok(()), None) => {}
    }
    let _ = conn
        .execute(
            "SELECT pg_advisory_unlock($1, $2)",
            &[&REFILL_LOCK_CLASS, &lock_key(shared.hash)],
        )
        .await;
}

async fn refill_inner(
    conn: &Client,
    shared: &Shared,
    claimer: Option<i32>,
    reply: &mut Option<Reply>,
) -> Result<(), Error> {
    if let Err(err) = sweep(conn, shared, false).await {
        tracing::warn!("sweeping the test database pool failed: {err}");
    }
    let strategy = ensure_template(conn, shared).await?;
    // Keep creating while claims drain the pool, within a bound.
    let mut created = 0;
    while created < shared.batch_size * 4 {
        let have: i64 = conn
            .query_one(
                "SELECT count(*) FROM drr_testing.pool \
                 WHERE template = $1 AND state IN ('ready', 'creating')",
                &[&shared.template],
            )
            .await
            .map_err(Error::postgres("primary", "counting ready databases"))?
            .get(0);
        let have = usize::try_from(have).unwrap_or(0);
        let want = shared
            .batch_size
            .saturating_sub(have)
            .max(usize::from(reply.is_some()));
        if want == 0 {
            break;
        }
        for _ in 0..want {
            let claim_for = if reply.is_some() { claimer } else { None };
            let new = create_one(conn, shared, strategy, claim_for).await?;
            created += 1;
            if claim_for.is_some()
                && let Some(tx) = reply.take()
            {
                let _ = tx.send(Ok(Some(new)));
            }
        }
    }
    Ok(())
}

/// Builds the template once (under its advisory lock); returns the
/// `STRATEGY` clause for copies.
async fn ensure_template(conn: &Client, shared: &Shared) -> Result<&'static str, Error> {
    let key = lock_key(shared.hash);
    conn.execute(
        "SELECT pg_advisory_lock($1, $2)",
        &[&TEMPLATE_LOCK_CLASS, &key],
    )
    .await
    .map_err(Error::postgres("primary", "locking the template"))?;
    let result = build_template(conn, shared).await;
    let _ = conn
        .execute(
            "SELECT pg_advisory_unlock($1, $2)",
            &[&TEMPLATE_LOCK_CLASS, &key],
        )
        .await;
    result
}

async fn build_template(conn: &Client, shared: &Shared) -> Result<&'static str, Error> {
    let row = conn
        .query_one(
            "SELECT current_setting('server_version_num')::int4, \
             (SELECT datistemplate FROM pg_database WHERE datname = $1)",
            &[&shared.template],
        )
        .await
        .map_err(Error::postgres("primary", "looking for the template"))?;
    // STRATEGY FILE_COPY (15+) writes a few WAL records instead of the whole
    // template, so replicas replay a batch quickly.
    let strategy = if row.get::<_, i32>(0) >= 150_000 {
        " STRATEGY FILE_COPY"
    } else {
        ""
    };
    let tpl = quote_ident(&shared.template);
    match row.get::<_, Option<bool>>(1) {
        Some(true) => return Ok(strategy),
        // Left half-built by a crashed process: start over.
        Some(false) => exec(conn, &format!("DROP DATABASE IF EXISTS {tpl} WITH (FORCE)"))
            .await
            .map_err(Error::postgres("primary", "dropping a half-built template"))?,
        None => {}
    }
    exec(conn, &format!("CREATE DATABASE {tpl} TEMPLATE template0"))
        .await
        .map_err(Error::postgres(
            "primary",
            "creating the template database (the login role needs CREATEDB)",
        ))?;
    let url = with_dbname(shared.stack.primary_url(), &shared.template)?;
    shared.migrations.apply(&url).await?;
    exec(conn, &format!("ALTER DATABASE {tpl} IS_TEMPLATE true"))
        .await
        .map_err(Error::postgres("primary", "marking the template"))?;
    Ok(strategy)
}

async fn exec(conn: &Client, sql: &str) -> Result<(), tokio_postgres::Error> {
    conn.batch_execute(sql).await
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

/// Creates one pool database: registered first (so a sweep never takes it
/// for an orphan), then created, then marked ready with the WAL position
/// replicas must replay before it exists there.
async fn create_one(
    conn: &Client,
    shared: &Shared,
    strategy: &str,
    claim_for: Option<i32>,
) -> Result<(String, Lsn), Error> {
    let id: i64 = conn
        .query_one("SELECT nextval('drr_testing.pool_seq')", &[])
        .await
        .map_err(Error::postgres("primary", "numbering a test database"))?
        .get(0);
    let name = format!("{}{:012x}_{id}", shared.database_prefix, shared.hash >> 16);
    conn.execute(
        "INSERT INTO drr_testing.pool (name, template, state, owner_pid) \
         VALUES ($1, $2, 'creating', pg_backend_pid())",
        &[&name, &shared.template],
    )
    .await
    .map_err(Error::postgres("primary", "registering a test database"))?;
    let created = exec(
        conn,
        &format!(
            "CREATE DATABASE {} TEMPLATE {}{strategy}",
            quote_ident(&name),
            quote_ident(&shared.template)
        ),
    )
    .await;
    if let Err(err) = created {
        let _ = conn
            .execute("DELETE FROM drr_testing.pool WHERE name = $1", &[&name])
            .await;
        return Err(Error::postgres("primary", "creating a test database")(err));
    }
    let lsn = wal::commit_token(conn)
        .await
        .map_err(Error::postgres("primary", "reading the WAL position"))?
        .lsn();
    let state = if claim_for.is_some() {
        "claimed"
    } else {
        "ready"
    };
    conn.execute(
        "UPDATE drr_testing.pool SET state = $2, ready_lsn = $3, \
         owner_pid = coalesce($4, pg_backend_pid()), owner_since = now() WHERE name = $1",
        &[&name, &state, &PgLsn::from(lsn.as_u64()), &claim_for],
    )
    .await
    .map_err(Error::postgres("primary", "registering a test database"))?;
    Ok((name, lsn))
}

/// Drops one pool database and its row.
async fn drop_database(login_url: &str, name: &str) -> Result<(), Error> {
    let conn = connect(login_url, "primary").await?;
    let dropped = exec(
        &conn,
        &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(name)),
    )
    .await;
    match dropped {
        Ok(()) => conn
            .execute("DELETE FROM drr_testing.pool WHERE name = $1", &[&name])
            .await
            .map(drop)
            .map_err(Error::postgres("primary", "unregistering a test database")),
        Err(err) => {
            // Leave it to a sweep.
            let _ = conn
                .execute(
                    "UPDATE drr_testing.pool SET state = 'done' WHERE name = $1",
                    &[&name],
                )
                .await;
            Err(Error::postgres("primary", "dropping a test database")(err))
        }
    }
}

async fn sweep(conn: &Client, shared: &Shared, everything: bool) -> Result<Vec<String>, Error> {
    let max_age = shared.max_ready_age.as_secs_f64();
    // Rows whose owner is gone, finished, or (ready and) too old; rows of
    // ready databases that no longer exist. Locked rows are someone else's
    // claim in progress: skip them.
    let rows = conn
        .query(
            "WITH stale AS ( \
               SELECT p.name FROM drr_testing.pool p \
               WHERE p.state = 'done' \
                  OR (p.state IN ('creating', 'claimed') AND NOT EXISTS ( \
                        SELECT 1 FROM pg_stat_activity a \
                        WHERE a.pid = p.owner_pid AND a.backend_start <= p.owner_since)) \
                  OR (p.state = 'ready' AND ($2 OR p.created_at < now() - make_interval(secs => $1))) \
                  OR (p.state = 'ready' AND NOT EXISTS ( \
                        SELECT 1 FROM pg_database d WHERE d.datname = p.name)) \
               FOR UPDATE SKIP LOCKED) \
             DELETE FROM drr_testing.pool p USING stale WHERE p.name = stale.name \
             RETURNING p.name",
            &[&max_age, &everything],
        )
        .await
        .map_err(Error::postgres("primary", "sweeping the pool"))?;
    let mut names: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    // Databases by prefix with no row: a crash between unregistering and
    // dropping, or a pool table that was dropped.
    names.extend(unreferenced(conn, &shared.database_prefix, PoolColumn::Name).await?);
    names.sort();
    names.dedup();
    let mut dropped = Vec::with_capacity(names.len());
    for name in names {
        let sql = format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(&name)
        );
        match exec(conn, &sql).await {
            Ok(()) => dropped.push(name),
            Err(err) => {
                tracing::warn!(database = %name, "cannot drop leftover test database: {err}")
            }
        }
    }
    if everything {
        dropped.extend(drop_unused_templates(conn, &shared.template_prefix).await?);
    }
    Ok(dropped)
}

/// A column of `drr_testing.pool` that names a database.
#[derive(Clone, Copy)]
enum PoolColumn {
    /// `name`: a pool database.
    Name,
    /// `template`: the template a pool database was copied from.
    Template,
}

/// Databases named `prefix...` and owned by the login role that no pool
/// row names in `column`.
async fn unreferenced(
    conn: &Client,
    prefix: &str,
    column: PoolColumn,
) -> Result<Vec<String>, Error> {
    let (column, listing) = match column {
        PoolColumn::Name => ("name", "listing leftover databases"),
        PoolColumn::Template => ("template", "listing templates"),
    };
    let rows = conn
        .query(
            &format!(
                "SELECT datname FROM pg_database d \
                 WHERE left(datname, length($1)) = $1 \
                   AND pg_get_userbyid(datdba) = current_user \
                   AND NOT EXISTS (SELECT 1 FROM drr_testing.pool p WHERE p.{column} = d.datname)"
            ),
            &[&prefix],
        )
        .await
        .map_err(Error::postgres("primary", listing))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Drops templates that no pool row refers to and that nobody is building.
async fn drop_unused_templates(conn: &Client, prefix: &str) -> Result<Vec<String>, Error> {
    let mut dropped = Vec::new();
    for name in unreferenced(conn, prefix, PoolColumn::Template).await? {
        let Some(hash) = name
            .strip_prefix(prefix)
            .and_then(|h| u64::from_str_radix(h, 16).ok())
        else {
            continue;
        };
        if !try_lock(conn, TEMPLATE_LOCK_CLASS, lock_key(hash)).await? {
            continue;
        }
        let tpl = quote_ident(&name);
        // Two statements: DROP DATABASE cannot run in a multi-statement string.
        let mut result = exec(conn, &format!("ALTER DATABASE {tpl} IS_TEMPLATE false")).await;
        if result.is_ok() {
            result = exec(conn, &format!("DROP DATABASE IF EXISTS {tpl} WITH (FORCE)")).await;
        }
        let _ = conn
            .execute(
                "SELECT pg_advisory_unlock($1, $2)",
                &[&TEMPLATE_LOCK_CLASS, &lock_key(hash)],
            )
            .await;
        match result {
            Ok(()) => dropped.push(name),
            Err(err) => tracing::warn!(database = %name, "cannot drop template: {err}"),
        }
    }
    Ok(dropped)
}
