//! Finding the local stack, and small helpers shared by the integration
//! tests.
#![allow(dead_code)] // Each test binary uses a different subset.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use drr_core::RouterConfig;

/// The stack the tests run against, from the variables that `cargo xtask
/// test` exports.
pub struct Stack {
    pub primary_url: String,
    pub replica_urls: Vec<String>,
    pub replica_names: Vec<String>,
    pub delays_ms: Vec<u64>,
}

/// Reads the stack's variables, failing the test (never skipping it) when
/// they are missing.
pub fn stack() -> Stack {
    let var = |name: &str| match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => value,
        _ => panic!(
            "{name} is not set: this test needs the local Postgres stack. \
             Run the tests with `cargo xtask test`, or start the stack with `cargo xtask up` \
             and export the variables printed by `cargo xtask env`."
        ),
    };
    let list = |value: String| -> Vec<String> {
        value
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    };
    let replica_urls = list(var("DRR_REPLICA_URLS"));
    let replica_names = list(var("DRR_REPLICA_NAMES"));
    let delays_ms: Vec<u64> = list(var("DRR_REPLICA_DELAYS_MS"))
        .iter()
        .map(|d| {
            d.parse()
                .unwrap_or_else(|_| panic!("DRR_REPLICA_DELAYS_MS has a bad entry {d:?}"))
        })
        .collect();
    assert!(
        !replica_urls.is_empty(),
        "DRR_REPLICA_URLS lists no replica"
    );
    assert_eq!(
        replica_urls.len(),
        delays_ms.len(),
        "DRR_REPLICA_URLS and DRR_REPLICA_DELAYS_MS differ in length"
    );
    Stack {
        primary_url: var("DRR_PRIMARY_URL"),
        replica_urls,
        replica_names,
        delays_ms,
    }
}

impl Stack {
    /// A router configuration for the whole stack, with a fast monitor and
    /// small pools (other test binaries share the servers' connection
    /// slots).
    pub fn config(&self) -> RouterConfig {
        let mut config =
            RouterConfig::new(&self.primary_url).expect("DRR_PRIMARY_URL is a valid URL");
        for url in &self.replica_urls {
            config = config
                .replica(url)
                .expect("DRR_REPLICA_URLS holds valid URLs");
        }
        config
            .check_interval(Duration::from_millis(100))
            .pool_size(4)
    }

    /// The smallest configured replica delay, or `None` (with a loud message)
    /// when it is too small for a test that needs a visible delay.
    pub fn delay_at_least(&self, needed: Duration) -> Option<Duration> {
        let delay = Duration::from_millis(self.delays_ms.iter().copied().min().unwrap_or(0));
        if delay < needed {
            eprintln!(
                "SKIPPING: this test needs replicas delayed by at least {needed:?}, \
                 but DRR_REPLICA_DELAYS_MS is {:?}",
                self.delays_ms
            );
            return None;
        }
        Some(delay)
    }
}

/// The superuser URL for the primary (`DRR_ADMIN_PRIMARY_URL`), exported by
/// `cargo xtask test` for tests that need more than the application role.
pub fn admin_primary_url() -> String {
    match std::env::var("DRR_ADMIN_PRIMARY_URL") {
        Ok(value) if !value.trim().is_empty() => value,
        _ => panic!(
            "DRR_ADMIN_PRIMARY_URL is not set: this test needs superuser access to the local stack. \
             Run the tests with `cargo xtask test`."
        ),
    }
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
