//! Finding the local stack, and small helpers shared by the integration
//! tests.
#![allow(dead_code)] // Each test binary uses a different subset.

pub mod proxy;
pub mod traffic;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use drr_core::testing::TestStack;

/// The stack from the variables `cargo xtask test` exports; fails the test
/// (never skips it) when they are missing.
pub fn stack() -> TestStack {
    let stack = TestStack::require();
    assert!(
        !stack.replicas().is_empty(),
        "DRR_REPLICA_URLS lists no replica"
    );
    stack
}

/// The smallest replica delay, failing the test when it is under `needed`
/// (a test that needs a visible delay must not pass without one).
pub fn delay_at_least(stack: &TestStack, needed: Duration) -> Duration {
    let delay = stack.min_delay();
    assert!(
        delay >= needed,
        "this test needs every replica at least {needed:?} behind, but the smallest delay is \
         {delay:?}; restore the spec's delays with `cargo xtask delay --reset`"
    );
    delay
}

/// The superuser URL of the primary (`DRR_ADMIN_PRIMARY_URL`), exported by
/// `cargo xtask test` for tests that need more than the application role.
pub fn admin_primary_url(stack: &TestStack) -> &str {
    stack.admin_primary_url().unwrap_or_else(|| {
        panic!(
            "DRR_ADMIN_PRIMARY_URL is not set: this test needs superuser access to the local \
             stack. Run the tests with `cargo xtask test`."
        )
    })
}

/// A table name no other test (in this or another process) uses.
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

/// `url` with its password replaced, as a `key=value` string.
pub fn with_password(url: &str, password: &str) -> String {
    let config: tokio_postgres::Config = url.parse().expect("url");
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let with_port = proxy::with_port(url, port);
    let config: tokio_postgres::Config = with_port.parse().expect("url");
    let user = config.get_user().unwrap_or("postgres");
    let dbname = config.get_dbname().unwrap_or(user);
    format!("host=127.0.0.1 port={port} user={user} password={password} dbname={dbname}")
}
