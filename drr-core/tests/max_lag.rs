//! `MaxLag` against real replication lag, each test on a stack of its own
//! (they pause replay or need a delay of their own): a replica is not
//! eligible until it has been measured, the measure is an upper bound, and
//! the limit in bytes holds.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use drr_core::testing::TestStack;
use drr_core::{MaxLag, Role, Router};
use drr_stack::testing::TempStack;
use support::eventually;

/// A stack of the test's own with one replica per delay, and a table
/// `ticks (id bigint)` that every replica has.
async fn own_stack(delays: &[Duration]) -> anyhow::Result<(TempStack, TestStack)> {
    let own = TempStack::start(drr_stack::testing::spec(delays)?).await?;
    let stack = TestStack::from_vars(own.vars()?)?;
    own.connect("primary")
        .await?
        .batch_execute("CREATE TABLE ticks (id bigint PRIMARY KEY)")
        .await?;
    stack
        .wait_for_replicas(Duration::from_secs(30) + stack.max_delay())
        .await?;
    Ok((own, stack))
}

/// A 4 s pause, then a fresh router with `MaxLag::time(1 s)`: its first
/// reads must not go to the paused replica, which it has never seen catch
/// up. (A router used to start with the lag of its first check, about
/// zero, and read stale rows there.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_router_reads_no_replica_it_has_not_measured() -> anyhow::Result<()> {
    let (own, stack) = own_stack(&[Duration::ZERO]).await?;
    own.admin("replica1")
        .await?
        .execute("SELECT pg_wal_replay_pause()", &[])
        .await?;
    own.connect("primary")
        .await?
        .execute("INSERT INTO ticks VALUES (1)", &[])
        .await?;
    // The lag this test is about: the replica stays 4 s behind.
    tokio::time::sleep(Duration::from_secs(4)).await;

    let router = Router::connect(
        stack
            .router_config()?
            .max_lag(MaxLag::time(Duration::from_secs(1))),
    )
    .await?;
    let mut stale = 0;
    for _ in 0..55 {
        let rows = router.query("SELECT id FROM ticks", &[]).await?;
        stale += usize::from(rows.is_empty());
    }
    let stats = router.stats();
    assert_eq!(stale, 0, "reads missed the row: {stats:?}");
    assert_eq!(stats.replica_reads(), 0, "{stats:?}");
    Ok(())
}

/// A replica 2000 ms behind a busy primary, and `MaxLag::time(1.8 s)` with
/// the default check interval: once the router has measured it, it must
/// never serve a read. (The lag used to be measured up to one check
/// interval low, about 1.5 s.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_lag_time_excludes_a_replica_behind_by_more() -> anyhow::Result<()> {
    let delay = Duration::from_millis(2000);
    let (own, stack) = own_stack(&[delay]).await?;
    let primary = own.connect("primary").await?;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut id = 1_i64;
            while !stop.load(Ordering::Relaxed) {
                id += 1;
                primary
                    .execute("INSERT INTO ticks VALUES ($1)", &[&id])
                    .await
                    .expect("insert");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    // Let the replica settle at its delay behind the writes.
    tokio::time::sleep(delay + Duration::from_secs(1)).await;

    let config = stack
        .router_config()?
        .check_interval(Duration::from_millis(500))
        .max_lag(MaxLag::time(Duration::from_millis(1800)));
    let router = Router::connect(config).await?;
    // Long enough for the history of the primary's positions to reach
    // back past what the replica shows.
    tokio::time::sleep(delay + Duration::from_secs(1)).await;
    let until = Instant::now() + Duration::from_secs(6);
    let mut routes = 0;
    while Instant::now() < until {
        assert_eq!(
            router.route("SELECT 1").role,
            Role::Primary,
            "a replica {delay:?} behind was eligible under max_lag 1.8 s: {:?}",
            router.stats()
        );
        routes += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let lag = router.stats().node("replica1").and_then(|n| n.health.lag);
    assert!(
        lag.is_some_and(|lag| lag >= Duration::from_millis(1900)),
        "the replica's lag was measured as {lag:?} ({routes} routes checked)"
    );
    stop.store(true, Ordering::Relaxed);
    writer.await?;
    Ok(())
}

/// `MaxLag::bytes`: a replica whose replay is paused while the primary
/// writes a megabyte is excluded, and serves reads again once it replays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_lag_bytes_excludes_a_replica_behind_by_more() -> anyhow::Result<()> {
    let (own, stack) = own_stack(&[Duration::ZERO]).await?;
    let router = Router::connect(stack.router_config()?.max_lag(MaxLag::bytes(256 * 1024))).await?;
    eventually(
        "the replica to serve reads",
        Duration::from_secs(20),
        || async { router.route("SELECT 1").role == Role::Replica },
    )
    .await;

    let replica = own.admin("replica1").await?;
    replica.execute("SELECT pg_wal_replay_pause()", &[]).await?;
    own.admin("primary")
        .await?
        .execute(
            "SELECT pg_logical_emit_message(false, 'drr', repeat('x', 1048576))",
            &[],
        )
        .await?;
    eventually(
        "the replica to be excluded",
        Duration::from_secs(20),
        || async { router.route("SELECT 1").role == Role::Primary },
    )
    .await;
    let lag = router
        .stats()
        .node("replica1")
        .and_then(|n| n.health.lag_bytes);
    assert!(lag.is_some_and(|b| b > 256 * 1024), "{lag:?}");
    let row = router.query_one("SELECT pg_is_in_recovery()", &[]).await?;
    assert!(
        !row.get::<_, bool>(0),
        "a read went to the excluded replica"
    );

    replica
        .execute("SELECT pg_wal_replay_resume()", &[])
        .await?;
    eventually(
        "the replica to serve reads again",
        Duration::from_secs(20),
        || async { router.route("SELECT 1").role == Role::Replica },
    )
    .await;
    Ok(())
}
