//! A router over a cluster (`RouterConfig::cluster`) follows `cargo xtask
//! failover` and `failover --to primary` on a stack of its own, while a
//! writer and a reader keep working: reads never fail, failed writes are
//! failover errors and never retried, every acknowledged write survives,
//! read-your-writes holds across the timeline switch, and the old primary
//! gets no write while it is a replica.

mod support;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use drr_core::{Role, Router, RouterConfig};
use drr_stack::progress::Progress;
use drr_stack::testing::TempStack;
use support::traffic::{self, Traffic};

const CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// The stack's nodes as the router names them: `RouterConfig::cluster`
/// calls them node1 (the spec's primary), node2 (replica1) and node3.
const OLD_PRIMARY: &str = "node1";
const NEW_PRIMARY: &str = "node2";
const BYSTANDER: &str = "node3";

/// The login URLs of the spec's primary and replicas, in spec order.
fn node_urls(own: &TempStack) -> anyhow::Result<Vec<String>> {
    let vars = own.vars()?;
    let var = |key: &str| {
        vars.iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| anyhow::anyhow!("{key} is not among the stack's variables"))
    };
    let mut urls = vec![var(drr_core::env::PRIMARY_URL)?];
    urls.extend(drr_env::split(&var(drr_core::env::REPLICA_URLS)?).map(str::to_owned));
    Ok(urls)
}

async fn failover(own: &TempStack, to: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut progress = Progress::new(true);
    drr_stack::failover::run(&own.stack()?, &own.secrets()?, Some(to), &mut progress).await?;
    eprintln!("failover to {to} took {:?}", started.elapsed());
    Ok(())
}

/// The writes counted on `node` so far.
fn writes_on(router: &Router, node: &str) -> u64 {
    router.stats().node(node).map_or(0, |n| n.writes)
}

/// Checks once, then writes once: after a promotion, a write must go to the
/// new primary within one check and one retry.
async fn one_check_and_one_write(router: &Router, ids: &AtomicU64) -> drr_core::Result<u64> {
    router.check_now().await;
    let id = traffic::next_id(ids);
    router
        .execute("INSERT INTO w (id) VALUES ($1)", &[&id])
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_follows_a_failover_and_back() -> anyhow::Result<()> {
    let own = TempStack::start(drr_stack::testing::spec(&[Duration::ZERO; 2])?).await?;
    own.connect("primary")
        .await?
        .batch_execute(traffic::CREATE_TABLE)
        .await?;
    let mut nodes = Vec::new();
    for node in ["primary", "replica1", "replica2"] {
        nodes.push(own.connect(node).await?);
    }
    traffic::wait_for_table(&nodes).await;
    let config = RouterConfig::cluster(&node_urls(&own)?)?
        .check_interval(CHECK_INTERVAL)
        .ban_duration(Duration::from_secs(1))
        .pool_size(4);
    let router = Router::connect(config).await?;
    assert_eq!(router.route("INSERT INTO w VALUES (0)").node, OLD_PRIMARY);

    let ids = Arc::new(AtomicU64::new(1));
    let traffic = Traffic::start(&router, &ids);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // replica1 takes over.
    failover(&own, "replica1").await?;
    let write = one_check_and_one_write(&router, &ids).await;
    assert!(write.is_ok(), "a write after one check failed: {write:?}");
    let stats = router.stats();
    assert_eq!(
        stats.primary().map(|p| p.name.as_str()),
        Some(NEW_PRIMARY),
        "{stats:#?}"
    );
    assert_eq!(stats.node(OLD_PRIMARY).map(|n| n.role), Some(Role::Replica));
    let old_primary_writes = writes_on(&router, OLD_PRIMARY);

    // The writer writes on while the old primary is a replica.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        writes_on(&router, OLD_PRIMARY),
        old_primary_writes,
        "a write went to the old primary while it was a replica"
    );

    // And back.
    failover(&own, "primary").await?;
    let write = one_check_and_one_write(&router, &ids).await;
    assert!(write.is_ok(), "a write after one check failed: {write:?}");
    assert_eq!(
        router.stats().primary().map(|p| p.name.clone()),
        Some(OLD_PRIMARY.to_owned())
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (writes, reads) = traffic.stop().await;

    eprintln!(
        "drr failover and back: {} writes tried, {} acknowledged, {} failover errors; writes \
         unavailable for {:?} (median {:?}); {} reads",
        writes.attempts,
        writes.acked.len(),
        writes.failover_errors,
        writes.outages,
        traffic::median(&writes.outages),
        reads.ok
    );
    assert!(
        reads.failures.is_empty(),
        "reads failed: {:?}",
        reads.failures
    );
    assert!(
        writes.other_errors.is_empty(),
        "writes failed with other errors than failover ones: {:?}",
        writes.other_errors
    );
    assert!(
        writes.missed_own_write.is_empty(),
        "read-your-writes missed acknowledged rows: {:?}",
        writes.missed_own_write
    );
    assert!(writes.acked.len() > 10, "the writer wrote: {writes:?}");

    let stats = router.stats();
    let role_changes = |name: &str| stats.node(name).map_or(0, |n| n.role_changes);
    assert!(
        role_changes(OLD_PRIMARY) >= 2 && role_changes(NEW_PRIMARY) >= 2,
        "each failover changes two roles: {stats:#?}"
    );
    assert_eq!(role_changes(BYSTANDER), 0, "{stats:#?}");
    // Writes are never retried: each attempt is counted on one node at most.
    let counted: u64 = stats.nodes.iter().map(|n| n.writes).sum();
    assert!(
        counted <= writes.attempts + 2,
        "{counted} writes counted for {} attempts (and two single writes): a write was retried",
        writes.attempts
    );

    let kept = traffic::kept(&own.connect("primary").await?).await;
    let lost = traffic::lost(&writes.acked, &kept);
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    Ok(())
}
