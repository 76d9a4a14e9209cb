//! How each balancing policy spreads reads over real replicas, with all
//! three eligible and with one excluded. Each test runs on a stack of its
//! own with three replicas: excluding one means pausing its replay.

mod support;

use std::time::Duration;

use drr_core::testing::TestStack;
use drr_core::{Balance, MaxLag, Router, Stats};
use drr_stack::testing::TempStack;
use support::eventually;

/// Reads a replica may be behind and still serve them.
const MAX_LAG_BYTES: u64 = 256 * 1024;

/// A stack of three replicas without delay, and a router with `policy`.
async fn three_replicas(policy: Balance) -> anyhow::Result<(TempStack, Router)> {
    let own = TempStack::start(drr_stack::testing::spec(&[Duration::ZERO; 3])?).await?;
    let stack = TestStack::from_vars(own.vars()?)?;
    let config = stack
        .router_config()?
        .balance(policy)
        .max_lag(MaxLag::bytes(MAX_LAG_BYTES));
    let router = Router::connect(config).await?;
    eventually(
        "every replica to be measured within max_lag",
        Duration::from_secs(20),
        || async { eligible(&router.stats()) == 3 },
    )
    .await;
    Ok((own, router))
}

fn eligible(stats: &Stats) -> usize {
    stats
        .nodes
        .iter()
        .filter(|n| n.name != "primary")
        .filter(|n| n.health.reachable && !n.health.banned)
        .filter(|n| n.health.lag_bytes.is_some_and(|b| b <= MAX_LAG_BYTES))
        .count()
}

/// Pauses replica2's replay and writes a megabyte of WAL, so that it falls
/// beyond max_lag and the other two do not.
async fn exclude_replica2(own: &TempStack, router: &Router) -> anyhow::Result<()> {
    own.admin("replica2")
        .await?
        .execute("SELECT pg_wal_replay_pause()", &[])
        .await?;
    own.admin("primary")
        .await?
        .execute(
            "SELECT pg_logical_emit_message(false, 'drr', repeat('x', 1048576))",
            &[],
        )
        .await?;
    eventually(
        "replica2 to fall beyond max_lag, the others not",
        Duration::from_secs(20),
        || async {
            router.check_now().await;
            let stats = router.stats();
            let behind = stats
                .node("replica2")
                .and_then(|n| n.health.lag_bytes)
                .is_some_and(|b| b > MAX_LAG_BYTES);
            behind && eligible(&stats) == 2
        },
    )
    .await;
    Ok(())
}

/// Reads per replica after `n` sequential reads, from a baseline of stats.
async fn spread(router: &Router, n: usize) -> [u64; 3] {
    let before = router.stats();
    for _ in 0..n {
        router.query("SELECT 1", &[]).await.expect("a read");
    }
    let after = router.stats();
    let reads = |name: &str| {
        let count = |s: &Stats| s.node(name).map_or(0, |node| node.reads);
        count(&after) - count(&before)
    };
    [reads("replica1"), reads("replica2"), reads("replica3")]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_takes_turns_among_the_eligible() -> anyhow::Result<()> {
    let (own, router) = three_replicas(Balance::RoundRobin).await?;
    assert_eq!(spread(&router, 300).await, [100, 100, 100]);
    exclude_replica2(&own, &router).await?;
    assert_eq!(
        spread(&router, 300).await,
        [150, 0, 150],
        "with replica2 excluded, its turns must not all go to its successor"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_spreads_evenly_among_the_eligible() -> anyhow::Result<()> {
    let (own, router) = three_replicas(Balance::Random).await?;
    // 600 reads: about 200 each, with a standard deviation of about 12.
    let counts = spread(&router, 600).await;
    assert!(
        counts.iter().all(|&n| (130..=270).contains(&n)),
        "{counts:?}"
    );
    exclude_replica2(&own, &router).await?;
    let counts = spread(&router, 600).await;
    assert_eq!(counts[1], 0, "{counts:?}");
    assert!(
        [counts[0], counts[2]]
            .iter()
            .all(|&n| (225..=375).contains(&n)),
        "{counts:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_outstanding_prefers_idle_replicas_and_spreads_ties() -> anyhow::Result<()> {
    let (own, router) = three_replicas(Balance::LeastOutstanding).await?;
    // Idle replicas tie: reads take turns.
    assert_eq!(spread(&router, 300).await, [100, 100, 100]);
    // Two held connections make two replicas busy: every read goes to the
    // third.
    let first = router.replica().await?;
    let second = router.replica().await?;
    let busy = [first.node().to_owned(), second.node().to_owned()];
    assert_ne!(
        busy[0], busy[1],
        "the second connection went to an idle replica"
    );
    let counts = spread(&router, 60).await;
    let idle = ["replica1", "replica2", "replica3"]
        .iter()
        .position(|name| !busy.iter().any(|b| b == name))
        .expect("one replica is idle");
    assert_eq!(counts[idle], 60, "{counts:?} with {busy:?} busy");
    drop((first, second));

    exclude_replica2(&own, &router).await?;
    assert_eq!(
        spread(&router, 300).await,
        [150, 0, 150],
        "ties among the eligible take turns"
    );
    Ok(())
}
