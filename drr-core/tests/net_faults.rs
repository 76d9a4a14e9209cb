//! drr-core under network faults from drr's fault proxy, each test on a
//! stack of its own whose replicas' client links go through the proxy: a
//! blackholed replica costs reads at most the read timeout and fails none;
//! least-outstanding sends most concurrent reads to the near replica when
//! the other is 80 ms away; a replica cut off from the primary is
//! excluded by `MaxLag` within one check interval of its lag passing the
//! limit, and serves reads again once healed.
//!
//! The proxy is drr-stack's `drr-netproxy` binary, which a workspace build
//! (`cargo xtask test`, `cargo build`) puts next to this test.

mod support;

use std::time::{Duration, Instant};

use drr_core::testing::TestStack;
use drr_core::{Balance, MaxLag, Role, Router};
use drr_stack::net::NetArgs;
use drr_stack::net::command::{run_heal, run_net, run_partition};
use drr_stack::net::faults::Mode;
use drr_stack::spec::LinkKind;
use drr_stack::testing::TempStack;
use support::eventually;

/// Two undelayed replicas whose client links go through the fault proxy.
async fn two_replicas() -> anyhow::Result<TempStack> {
    let spec = drr_stack::testing::net_spec(&[Duration::ZERO; 2])?;
    TempStack::start(spec).await
}

async fn router(
    own: &TempStack,
    configure: impl Fn(drr_core::RouterConfig) -> drr_core::RouterConfig,
) -> anyhow::Result<Router> {
    let stack = TestStack::from_vars(own.vars()?)?;
    let router = Router::connect(configure(stack.router_config()?)).await?;
    eventually(
        "both replicas to answer checks",
        Duration::from_secs(20),
        || async {
            router
                .stats()
                .nodes
                .iter()
                .filter(|n| n.name != "primary")
                .all(|n| n.health.reachable && !n.health.banned)
        },
    )
    .await;
    Ok(router)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackholed_replica_fails_no_read_and_costs_at_most_the_read_timeout()
-> anyhow::Result<()> {
    let own = two_replicas().await?;
    let read_timeout = Duration::from_millis(500);
    // Health checks wait long, so that the read deadline, not the monitor,
    // is what saves the reads.
    let router = router(&own, |c| {
        c.balance(Balance::RoundRobin)
            .read_timeout(read_timeout)
            .check_timeout(Duration::from_secs(60))
            .ban_duration(Duration::from_secs(60))
    })
    .await?;
    let partition = drr_stack::net::PartitionArgs {
        node: "replica1".into(),
        link: Some(LinkKind::Client),
        mode: Mode::Blackhole,
    };
    run_partition(&own.stack()?, &partition)?;
    let mut slowest = Duration::ZERO;
    for _ in 0..40 {
        let started = Instant::now();
        let row = router.query_one("SELECT 1", &[]).await?;
        assert_eq!(row.get::<_, i32>(0), 1);
        slowest = slowest.max(started.elapsed());
    }
    let stats = router.stats();
    let replica1 = stats.node("replica1").unwrap();
    assert!(replica1.health.banned, "{replica1:?}");
    assert!(replica1.retries >= 1, "{replica1:?}");
    assert_eq!(stats.node("replica2").unwrap().reads, 40);
    // A hang would never end; a loaded machine may add a little.
    assert!(
        slowest < read_timeout + Duration::from_secs(5),
        "the slowest read took {slowest:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_outstanding_sends_most_concurrent_reads_to_the_near_replica() -> anyhow::Result<()> {
    let own = two_replicas().await?;
    let router = router(&own, |c| c.balance(Balance::LeastOutstanding)).await?;
    let far = NetArgs {
        node: Some("replica1".into()),
        latency: Some(Duration::from_millis(80)),
        jitter: None,
        bandwidth: None,
        link: Some(LinkKind::Client),
    };
    run_net(&own.stack()?, &far)?;
    let before = router.stats();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let router = router.clone();
            tokio::spawn(async move {
                for _ in 0..40 {
                    router.query_one("SELECT 1", &[]).await.expect("a read");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await?;
    }
    let after = router.stats();
    let reads = |name: &str| {
        let count = |s: &drr_core::Stats| s.node(name).map_or(0, |n| n.reads);
        count(&after) - count(&before)
    };
    let (far, near) = (reads("replica1"), reads("replica2"));
    println!("320 concurrent reads: replica1 (80 ms away) {far}, replica2 (near) {near}");
    assert_eq!(far + near, 320);
    assert!(near >= 3 * far, "near {near}, far {far}");
    Ok(())
}

/// A replica whose replication link is blackholed while the primary takes
/// a write every 20 ms: its lag grows from the partition on, and
/// `MaxLag::time(1 s)` (an upper-bound measure, checked every 250 ms)
/// excludes it before its lag can have passed 1 s by more than one check
/// interval. Healed, it catches up and serves reads again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_cut_off_from_the_primary_is_excluded_as_its_lag_grows() -> anyhow::Result<()> {
    let own = TempStack::start(drr_stack::testing::net_spec(&[Duration::ZERO])?).await?;
    let primary = own.connect("primary").await?;
    primary
        .batch_execute("CREATE TABLE ticks (id bigint PRIMARY KEY)")
        .await?;
    let writer = tokio::spawn(async move {
        for id in 0_i64.. {
            if primary
                .execute("INSERT INTO ticks VALUES ($1)", &[&id])
                .await
                .is_err()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let (limit, interval) = (Duration::from_secs(1), Duration::from_millis(250));
    let router = router(&own, |c| {
        c.check_interval(interval).max_lag(MaxLag::time(limit))
    })
    .await?;
    eventually(
        "the replica to serve reads",
        Duration::from_secs(20),
        || async { router.route("SELECT 1").role == Role::Replica },
    )
    .await;

    // The replica lacks nothing written before this instant, so its lag
    // is at most the time since: it cannot pass the limit by more than
    // one interval before `cut + limit + interval`, and must not be
    // eligible after that.
    let cut = Instant::now();
    let partition = drr_stack::net::PartitionArgs {
        node: "replica1".into(),
        link: Some(LinkKind::Replication),
        mode: Mode::Blackhole,
    };
    run_partition(&own.stack()?, &partition)?;
    // Each question counts from before it is asked: a stalled loop asks
    // late, and then the answer must already be no.
    loop {
        let asked = cut.elapsed();
        if router.route("SELECT 1").role != Role::Replica {
            break;
        }
        assert!(
            asked <= limit + interval,
            "still eligible {asked:?} after the partition (limit {limit:?}, check interval \
             {interval:?}): {:?}",
            router.stats().node("replica1")
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let excluded = cut.elapsed();
    let lag = router.stats().node("replica1").and_then(|n| n.health.lag);
    println!("excluded by {excluded:?} after the partition; measured lag {lag:?}");
    // Excluded for its lag, not for being unreachable or unmeasured.
    assert!(lag.is_some_and(|lag| lag > limit), "measured lag {lag:?}");

    run_heal(&own.stack()?, Some("replica1"))?;
    eventually(
        "the healed replica to serve reads",
        Duration::from_secs(30),
        || async { router.route("SELECT 1").role == Role::Replica },
    )
    .await;
    writer.abort();
    Ok(())
}
