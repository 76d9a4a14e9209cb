//! Native stacks for integration tests: each test gets its own spec on free
//! ports and its own temporary state directory (drr-stack's
//! `TempStack`), so tests never clash with each other or with a
//! developer's running default stack.

#![allow(dead_code)] // Each test binary uses a different part.

use std::time::{Duration, Instant};

use drr_stack::native::Native;
use drr_stack::progress::Progress;
use drr_stack::spec::StackSpec;
use drr_stack::stack::UpOptions;
use tokio_postgres::Client;

/// `n` distinct free loopback ports.
pub fn free_ports(n: usize) -> Vec<u16> {
    drr_stack::testing::free_ports(n).expect("free ports")
}

/// A test stack of its own (drr-stack's `TempStack` with panicking
/// accessors); destroyed on drop.
pub struct TempStack(drr_stack::testing::TempStack);

/// A spec with a primary and one replica per delay, on free ports.
pub fn spec(delays_ms: &[u64]) -> StackSpec {
    let delays: Vec<Duration> = delays_ms
        .iter()
        .copied()
        .map(Duration::from_millis)
        .collect();
    drr_stack::testing::spec(&delays).expect("a spec on free ports")
}

impl TempStack {
    /// A stopped stack for `spec` in a fresh temporary directory.
    pub fn new(spec: StackSpec) -> TempStack {
        TempStack(drr_stack::testing::TempStack::new(spec).expect("a test stack"))
    }

    /// A stopped stack for `spec` using the template cache `cache` (a test
    /// that looks into the cache has one of its own).
    pub fn with_cache(spec: StackSpec, cache: &std::path::Path) -> TempStack {
        TempStack(drr_stack::testing::TempStack::with_cache(spec, cache).expect("a test stack"))
    }

    /// Starts a stack for `spec` and waits until it streams.
    pub async fn up(spec: StackSpec) -> TempStack {
        let stack = TempStack::new(spec);
        stack.try_up().await.expect("stack comes up");
        stack
    }

    /// Runs `up` again (with the current spec).
    pub async fn try_up(&self) -> anyhow::Result<()> {
        self.0.up().await
    }

    /// Runs `up` with `options` and returns the labels of the steps it took.
    pub async fn up_steps(&self, options: UpOptions) -> anyhow::Result<Vec<String>> {
        let mut progress = Progress::new(true);
        self.native().up_with(&mut progress, options).await?;
        Ok(progress
            .steps()
            .iter()
            .map(|(label, _)| label.clone())
            .collect())
    }

    /// Replaces the spec (as a user editing it would), keeping the state.
    pub fn respec(&mut self, spec: StackSpec) {
        self.0.respec(spec).expect("valid spec");
    }

    pub fn native(&self) -> Native<'_> {
        self.0.native().expect("native backend")
    }

    pub fn spec(&self) -> &StackSpec {
        self.0.spec()
    }

    pub fn secrets(&self) -> drr_stack::secrets::Secrets {
        self.0.secrets().expect("secrets")
    }

    /// A connection as the login role to `node`.
    pub async fn connect(&self, node: &str) -> Client {
        self.0.connect(node).await.expect("connect")
    }

    /// A superuser connection to `node`.
    pub async fn admin(&self, node: &str) -> Client {
        self.0.admin(node).await.expect("connect")
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
    let seen = visible_at(client, table, id, timeout).await?;
    Some(seen - start)
}

/// Polls until row `id` of `table` is visible on `client`; returns the
/// moment a poll first saw it, or `None` after `timeout`.
///
/// A lower bound on lag is sound only from a moment taken before the write
/// was sent (the commit timestamp, from which a replica counts its delay,
/// comes after it); an upper bound, from one taken after the write returned.
pub async fn visible_at(
    client: &Client,
    table: &str,
    id: i32,
    timeout: Duration,
) -> Option<Instant> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if visible(client, table, id).await {
            return Some(Instant::now());
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

/// The user id process `pid` runs as.
pub fn process_uid(pid: i32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|u| u.parse().ok())
        .unwrap()
}

/// The user id drr's servers and fault proxy must run as: the server user
/// when the tests run as root, else the tests' own.
pub fn server_uid() -> u32 {
    match drr_stack::host::ServerUser::resolve().unwrap() {
        Some(user) => user.uid,
        None => nix::unistd::geteuid().as_raw(),
    }
}
