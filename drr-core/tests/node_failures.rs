//! How the router reports nodes that fail and when it trusts them again:
//! a login refused, and the end of a ban. Against the shared stack, with
//! faults injected by wrong passwords and a TCP proxy (never by changing
//! the stack). Run through `cargo xtask test` (see `support::stack`).

mod support;

use std::time::{Duration, Instant};

use drr_core::{Fallback, Role, Router, RouterConfig};
use support::proxy::Proxy;
use support::{eventually, stack, with_password};

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

/// A replica behind a proxy that the test cuts and heals, with a fast
/// monitor and a ban of `ban`.
async fn router_through(proxy: &Proxy, ban: Duration) -> Router {
    let stack = stack();
    let config = RouterConfig::new(stack.primary_url())
        .and_then(|c| c.replica(&proxy.url))
        .expect("valid URLs")
        .check_interval(Duration::from_millis(100))
        .check_timeout(Duration::from_millis(500))
        .connect_timeout(Duration::from_millis(500))
        .ban_duration(ban);
    Router::connect(config).await.expect("a router")
}

fn serves_reads(router: &Router) -> bool {
    router.route("SELECT 1").role == Role::Replica
}

/// The ban lasts `ban_duration` from the first failure of an outage, not
/// from the last: a replica that was down longer than that serves reads
/// again at the first successful check after it is back, and one that was
/// down briefly waits out the ban.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ban_ends_at_the_first_good_check_after_ban_duration_from_the_first_failure() {
    let stack = stack();
    let proxy = Proxy::start(&stack.replicas()[0].url).await;
    let ban = Duration::from_secs(2);
    let router = router_through(&proxy, ban).await;
    eventually(
        "the replica to serve reads",
        Duration::from_secs(10),
        || async { serves_reads(&router) },
    )
    .await;

    // An outage longer than the ban: every check fails for 4 s.
    proxy.cut();
    eventually(
        "the monitor to see the outage",
        Duration::from_secs(10),
        || async { !serves_reads(&router) },
    )
    .await;
    tokio::time::sleep(ban * 2).await;
    proxy.heal();
    let healed = Instant::now();
    eventually(
        "the replica to serve reads again",
        Duration::from_secs(20),
        || async { serves_reads(&router) },
    )
    .await;
    let back = healed.elapsed();
    assert!(
        back < ban * 3 / 5,
        "the replica served reads {back:?} after it was back: the ban of {ban:?} was renewed \
         by the failures after the first"
    );
    assert_eq!(router.stats().node("replica1").map(|n| n.bans), Some(1));

    // An outage shorter than the ban: reads wait for the ban to end.
    proxy.cut();
    let cut = Instant::now();
    eventually(
        "the monitor to see the outage",
        Duration::from_secs(10),
        || async { !serves_reads(&router) },
    )
    .await;
    proxy.heal();
    eventually(
        "the replica to serve reads again",
        Duration::from_secs(20),
        || async { serves_reads(&router) },
    )
    .await;
    let banned = cut.elapsed();
    assert!(
        banned >= ban,
        "a replica down briefly served reads {banned:?} after the outage began, before its \
         ban of {ban:?} ended"
    );
    assert_eq!(router.stats().node("replica1").map(|n| n.bans), Some(2));
}
