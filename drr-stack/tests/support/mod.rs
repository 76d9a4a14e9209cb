//! Native stacks for integration tests: each test gets its own spec on free
//! ports and its own temporary state directory, so tests never clash with
//! each other or with a developer's running default stack.

#![allow(dead_code)] // Each test binary uses a different part.

use std::time::{Duration, Instant};

use drr_stack::native::{Native, StateDir};
use drr_stack::pg::{self, Login};
use drr_stack::progress::Progress;
use drr_stack::project::Project;
use drr_stack::secrets::Secrets;
use drr_stack::spec::{Node, Replica, Role, StackSpec};
use tokio_postgres::Client;

/// A running test stack; destroyed on drop.
pub struct TestStack {
    pub project: Project,
    pub dir: tempfile::TempDir,
}

/// `n` distinct free ports.
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<_> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// A spec with a primary and one replica per delay, on free ports.
pub fn spec(delays_ms: &[u64]) -> StackSpec {
    let ports = free_ports(delays_ms.len() + 1);
    let mut spec = StackSpec::new("t", 15)
        .primary(Node::new("primary", ports[0]))
        .role(Role::login("app", "secret pass").createdb())
        .database("app", "app");
    for (i, delay) in delays_ms.iter().enumerate() {
        spec = spec.replica(
            Replica::new(&format!("replica{}", i + 1), ports[i + 1])
                .delay(Duration::from_millis(*delay)),
        );
    }
    spec
}

/// The project root every test stack shares: one set of generated
/// passwords, so every test's template cluster is the same cached one. Each
/// stack keeps its own state directory.
fn project_root() -> std::path::PathBuf {
    std::env::temp_dir().join("drr-test-project")
}

impl TestStack {
    /// A stopped stack for `spec` in a fresh temporary directory.
    pub fn new(spec: StackSpec) -> TestStack {
        let dir = tempfile::Builder::new()
            .prefix("drr-test-")
            .tempdir()
            .expect("temp dir");
        // The temp dir must be reachable by the server user when tests run as root.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let project = Project::new(spec, project_root()).expect("valid spec");
        TestStack { project, dir }
    }

    /// Starts a stack for `spec` and waits until it streams.
    pub async fn up(spec: StackSpec) -> TestStack {
        let stack = TestStack::new(spec);
        stack.try_up().await.expect("stack comes up");
        stack
    }

    /// Runs `up` again (with the current spec).
    pub async fn try_up(&self) -> anyhow::Result<()> {
        self.native().up(&mut Progress::new(true)).await
    }

    /// Replaces the spec (as a user editing it would), keeping the state.
    pub fn respec(&mut self, spec: StackSpec) {
        self.project = Project::new(spec, project_root()).expect("valid spec");
    }

    pub fn native(&self) -> Native<'_> {
        let cache = std::env::temp_dir().join("drr-test-cache");
        Native::with_state(
            &self.project,
            StateDir::at(self.dir.path().join("state"), cache),
        )
        .expect("native backend")
    }

    pub fn spec(&self) -> &StackSpec {
        self.project.spec()
    }

    pub fn secrets(&self) -> Secrets {
        Secrets::load_or_create(&self.project.secrets_dir()).expect("secrets")
    }

    /// A connection as the login role to `node`.
    pub async fn connect(&self, node: &str) -> Client {
        let spec = self.spec();
        let node = spec.nodes().find(|n| n.name == node).expect("node in spec");
        let login = Login {
            user: "app",
            password: "secret pass",
            database: "app",
        };
        pg::connect(spec, node, login).await.expect("connect")
    }

    /// A superuser connection to `node`.
    pub async fn admin(&self, node: &str) -> Client {
        let spec = self.spec();
        let node = spec.nodes().find(|n| n.name == node).expect("node in spec");
        let secrets = self.secrets();
        pg::connect(spec, node, Login::admin(&secrets))
            .await
            .expect("connect")
    }
}

impl Drop for TestStack {
    fn drop(&mut self) {
        let _ = self.native().destroy(&mut Progress::new(true));
    }
}

/// Whether `id` is visible in table `t` on `client` (a missing table counts as not visible).
pub async fn visible(client: &Client, table: &str, id: i32) -> bool {
    let sql = format!("SELECT 1 FROM {table} WHERE id = $1");
    matches!(client.query_opt(&sql, &[&id]).await, Ok(Some(_)))
}

/// Polls until `id` is visible, returning how long it took, or `None` after `timeout`.
pub async fn time_until_visible(
    client: &Client,
    table: &str,
    id: i32,
    timeout: Duration,
) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if visible(client, table, id).await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    None
}

/// Polls until table `name` exists on `client` (DDL is delayed like data).
pub async fn wait_for_table(client: &Client, name: &str, timeout: Duration) {
    let start = Instant::now();
    let sql = "SELECT 1 FROM pg_class WHERE relname = $1";
    while client
        .query_opt(sql, &[&name])
        .await
        .expect("query pg_class")
        .is_none()
    {
        assert!(
            start.elapsed() < timeout,
            "table {name} did not replicate within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
