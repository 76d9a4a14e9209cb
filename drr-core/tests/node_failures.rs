//! How the router reports nodes that fail and when it trusts them again:
//! a login refused, and the end of a ban. Against the shared stack, with
//! faults injected by wrong passwords and a TCP proxy (never by changing
//! the stack). Run through `cargo xtask test` (see `support::stack`).

mod support;

use std::time::Duration;

use drr_core::{Fallback, Router, RouterConfig};
use support::{stack, with_password};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_an_authentication_error() {
    let stack = stack();
    let config = RouterConfig::new(&with_password(stack.primary_url(), "wrong"))
        .expect("a valid URL")
        .connect_timeout(Duration::from_secs(5));
    let router = Router::connect(config).await.expect("a router");
    let err = router.primary().await.expect_err("the login is refused");
    let text = err.to_string();
    assert!(
        text.starts_with("primary refused the login") && text.contains("password"),
        "{text}"
    );
    assert!(err.is_authentication() && !err.is_connection(), "{err:?}");
    let err = router
        .execute("SELECT 1", &[])
        .await
        .expect_err("every call fails the same way");
    assert!(err.is_authentication(), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_refuses_the_login_is_reported_in_stats() {
    let stack = stack();
    let config = RouterConfig::new(stack.primary_url())
        .and_then(|c| c.replica(&with_password(&stack.replicas()[0].url, "wrong")))
        .expect("valid URLs");
    let router = Router::connect(config.fallback(Fallback::Primary))
        .await
        .expect("a router");
    let stats = router.stats();
    let replica = stats.node("replica1").expect("replica1");
    assert_eq!(
        replica.health.failure,
        Some(drr_core::CheckFailure::LoginRefused),
        "{stats:?}"
    );
    assert!(!replica.health.reachable);
    router
        .query("SELECT 1", &[])
        .await
        .expect("reads fall back to the primary");
    let stats = router.stats();
    assert_eq!(
        stats.primary().map(|p| p.fallbacks.no_eligible_replica),
        Some(1),
        "{stats:?}"
    );
}
