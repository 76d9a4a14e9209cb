//! How the demo's tests find the stack, get a private database, and run the
//! app on an ephemeral port.
//!
//! The stack comes from drr-core's [`TestStack`]. Each test gets its own
//! schema on the stack's default database, with the demo's migrations
//! applied by the demo's own runner (what the app does at start) and
//! visible on every replica before the test starts; the app connects with
//! that schema as its `search_path`.
#![allow(dead_code)] // Each test binary uses a different subset.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use drr_core::testing::{ReplicaNode, TestStack};
use drr_core::{Router, RouterConfig};
use drr_demo::{AppConfig, AppState};
use drr_stack::testing::TempStack;

/// The stack from the variables `cargo xtask test` exports; fails the test
/// (never skips it) when they are missing or a replica is less than a
/// second behind.
pub fn stack() -> TestStack {
    let stack = TestStack::require();
    assert!(
        !stack.replicas().is_empty(),
        "DRR_REPLICA_URLS lists no replica"
    );
    for replica in stack.replicas() {
        assert!(
            delay(replica) >= Duration::from_secs(1),
            "these tests need every replica at least 1000 ms behind, but `{}` is {:?} behind \
             (DRR_REPLICA_DELAYS_MS); restore the spec's delays with `cargo xtask delay --reset`",
            replica.name,
            replica.delay
        );
    }
    stack
}

/// A replica's configured delay (known for every replica [`stack`] returns).
pub fn delay(replica: &ReplicaNode) -> Duration {
    replica.delay.unwrap_or_default()
}

/// A name no other test (in this or another process) uses.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{prefix}_{}_{nanos}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// `url` with `search_path` set to `schema` for every connection.
fn with_schema(url: &str, schema: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-c%20search_path%3D{schema}")
}

/// A database of the test's own, migrated and visible on every replica.
/// Dropped (best effort) when the value is.
pub struct TestDb {
    pub schema: String,
    pub primary_url: String,
    pub replica_urls: Vec<String>,
    pub replica_names: Vec<String>,
    admin_url: String,
}

impl TestDb {
    /// Creates the schema, applies the demo's migrations through its own
    /// runner, and waits until every replica shows them.
    pub async fn create(stack: &TestStack) -> TestDb {
        let schema = unique_name("drr_demo_t");
        let primary = direct(stack.primary_url()).await;
        primary
            .batch_execute(&format!("CREATE SCHEMA \"{schema}\""))
            .await
            .expect("create the test schema on the primary");
        let db = TestDb {
            primary_url: with_schema(stack.primary_url(), &schema),
            replica_urls: stack
                .replicas()
                .iter()
                .map(|r| with_schema(&r.url, &schema))
                .collect(),
            replica_names: stack.replicas().iter().map(|r| r.name.clone()).collect(),
            admin_url: stack.primary_url().to_owned(),
            schema,
        };
        let router = Router::connect(db.config()).await.expect("router");
        drr_demo::migrate(&router).await.expect("migrations");
        for url in &db.replica_urls {
            let replica = direct(url).await;
            eventually(
                "the migrations to reach the replica",
                stack.max_delay() + Duration::from_secs(20),
                || async {
                    replica
                        .query_one("SELECT to_regclass('items') IS NOT NULL", &[])
                        .await
                        .is_ok_and(|row| row.get::<_, bool>(0))
                },
            )
            .await;
        }
        db
    }

    /// A router configuration for this database, with a fast monitor.
    pub fn config(&self) -> RouterConfig {
        let mut config = RouterConfig::new(&self.primary_url).expect("primary URL");
        for (i, url) in self.replica_urls.iter().enumerate() {
            config = match self.replica_names.get(i) {
                Some(name) => config.named_replica(name, url),
                None => config.replica(url),
            }
            .expect("replica URL");
        }
        config.check_interval(Duration::from_millis(100))
    }

    /// A direct connection to the primary, bypassing the router.
    pub async fn primary(&self) -> tokio_postgres::Client {
        direct(&self.primary_url).await
    }

    /// Direct connections to every replica, in order.
    pub async fn replicas(&self) -> Vec<tokio_postgres::Client> {
        let mut clients = Vec::new();
        for url in &self.replica_urls {
            clients.push(direct(url).await);
        }
        clients
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let sql = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.schema);
        run_blocking(&self.admin_url, &sql);
    }
}

/// The demo running on an ephemeral port, with a plain HTTP client.
pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub router: Router,
    pub db: TestDb,
    server: tokio::task::JoinHandle<()>,
}

impl TestApp {
    /// A private database, and the app over it with `app` settings and the
    /// router `tune`d.
    pub async fn spawn(
        stack: &TestStack,
        app: AppConfig,
        tune: impl FnOnce(RouterConfig) -> RouterConfig,
    ) -> TestApp {
        let db = TestDb::create(stack).await;
        let router = Router::connect(tune(db.config())).await.expect("router");
        Self::serve(router, app, db).await
    }

    /// Serves `router` on 127.0.0.1 on a free port.
    pub async fn serve(router: Router, app: AppConfig, db: TestDb) -> TestApp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind an ephemeral port");
        let addr = listener.local_addr().expect("local address");
        let service = drr_demo::app(AppState::new(router.clone(), app));
        let server = tokio::spawn(async move {
            axum::serve(listener, service).await.expect("serve");
        });
        TestApp {
            base: format!("http://{addr}"),
            http: client(),
            router,
            db,
            server,
        }
    }

    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `POST /items` with `body` and optional consistency header.
    pub async fn create(&self, body: serde_json::Value, mode: Option<&str>) -> reqwest::Response {
        let mut request = self.http.post(self.url("/items")).json(&body);
        if let Some(mode) = mode {
            request = request.header("x-drr-consistency", mode);
        }
        request.send().await.expect("POST /items")
    }

    /// Creates an item and returns its id and the response's headers.
    pub async fn create_ok(
        &self,
        name: &str,
        mode: Option<&str>,
    ) -> (i64, reqwest::header::HeaderMap) {
        let response = self
            .create(serde_json::json!({ "name": name, "quantity": 1 }), mode)
            .await;
        assert_eq!(response.status(), 201, "POST /items");
        let headers = response.headers().clone();
        let item: serde_json::Value = response.json().await.expect("item JSON");
        (item["id"].as_i64().expect("item id"), headers)
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A plain-HTTP client that ignores proxy variables.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("HTTP client")
}

/// A header's value as text, or "" when absent.
pub fn header<'r>(headers: &'r reqwest::header::HeaderMap, name: &str) -> &'r str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// Polls `condition` until it holds, failing the test after `timeout`.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !condition().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A client straight to one server, bypassing the router.
pub async fn direct(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to a stack node: {e}"));
    tokio::spawn(connection);
    client
}

/// Runs `sql` on `url` from a thread of its own, for `Drop` guards (which
/// cannot await). Failures are printed, not raised: a guard may run while a
/// test is already panicking.
pub fn run_blocking(url: &str, sql: &str) {
    let (url, owned) = (url.to_owned(), sql.to_owned());
    let outcome = std::thread::spawn(move || {
        let sql = owned;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(async {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(connection);
            client.batch_execute(&sql).await.map_err(|e| e.to_string())
        })
    })
    .join();
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(err)) => eprintln!("cleanup {sql:?} failed: {err}"),
        Err(_) => eprintln!("cleanup {sql:?} panicked"),
    }
}

/// Replay paused on every replica of a stack of the test's own (pausing
/// the shared stack would spoil other tests' timings).
pub struct ReplayPause {
    admins: Vec<tokio_postgres::Client>,
}

impl ReplayPause {
    /// Pauses replay on every replica of `own`. Replay is held from then
    /// on, whether Postgres reports `paused` or, while a commit waits out
    /// the apply delay, `pause requested`.
    pub async fn all(own: &TempStack) -> ReplayPause {
        let mut admins = Vec::new();
        for replica in &own.spec().replicas {
            let admin = own
                .admin(&replica.node.name)
                .await
                .expect("superuser connection");
            admin
                .execute("SELECT pg_wal_replay_pause()", &[])
                .await
                .expect("pg_wal_replay_pause()");
            let state: String = admin
                .query_one("SELECT pg_get_wal_replay_pause_state()", &[])
                .await
                .expect("pg_get_wal_replay_pause_state()")
                .get(0);
            assert_ne!(state, "not paused", "replay is held after the pause");
            admins.push(admin);
        }
        ReplayPause { admins }
    }

    /// Resumes replay everywhere.
    pub async fn resume(self) {
        for admin in &self.admins {
            admin
                .execute("SELECT pg_wal_replay_resume()", &[])
                .await
                .expect("pg_wal_replay_resume()");
        }
    }
}
