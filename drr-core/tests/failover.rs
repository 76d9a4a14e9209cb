//! A router over a cluster (`RouterConfig::cluster`) follows `cargo xtask
//! failover` and `failover --to primary` on a stack of its own, while a
//! writer and a reader keep working: reads never fail, failed writes are
//! failover errors and never retried, every acknowledged write survives,
//! read-your-writes holds across the timeline switch, and the old primary
//! gets no write while it is a replica.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use drr_core::{Consistency, Role, Router, RouterConfig};
use drr_stack::progress::Progress;
use drr_stack::testing::TempStack;

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
    let mut urls = vec![var("DRR_PRIMARY_URL")?];
    urls.extend(var("DRR_REPLICA_URLS")?.split(',').map(str::to_owned));
    Ok(urls)
}

async fn failover(own: &TempStack, to: &str) -> anyhow::Result<()> {
    let mut progress = Progress::new(true);
    drr_stack::failover::run(&own.stack()?, &own.secrets()?, Some(to), &mut progress).await?;
    Ok(())
}

/// What the writer saw.
#[derive(Debug, Default)]
struct Writes {
    attempts: u64,
    acked: Vec<i64>,
    /// Failed writes for which `is_failover()` holds.
    failover_errors: u64,
    /// Any other failure: there must be none.
    other_errors: Vec<String>,
    /// Reads of a just-acknowledged row that missed it.
    missed_own_write: Vec<i64>,
    /// How long writes were unavailable, each time they were.
    outages: Vec<Duration>,
}

/// Inserts rows through a read-your-writes session until `stop`, reading
/// each acknowledged row back in the same session.
async fn write_until(router: Router, stop: Arc<AtomicBool>, ids: Arc<AtomicU64>) -> Writes {
    let session = router.session_with(Consistency::ReadYourWrites);
    let mut writes = Writes::default();
    let mut failing_since: Option<Instant> = None;
    while !stop.load(Relaxed) {
        let id = i64::try_from(ids.fetch_add(1, Relaxed)).unwrap_or(i64::MAX);
        writes.attempts += 1;
        match session
            .execute("INSERT INTO w (id) VALUES ($1)", &[&id])
            .await
        {
            Ok(_) => {
                writes.acked.push(id);
                if let Some(since) = failing_since.take() {
                    writes.outages.push(since.elapsed());
                }
                match session
                    .query_opt("SELECT id FROM w WHERE id = $1", &[&id])
                    .await
                {
                    Ok(Some(_)) => {}
                    Ok(None) => writes.missed_own_write.push(id),
                    Err(e) if e.is_failover() => {}
                    Err(e) => writes.other_errors.push(format!("read back: {e}")),
                }
            }
            Err(e) if e.is_failover() => {
                writes.failover_errors += 1;
                failing_since.get_or_insert_with(Instant::now);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(e) => {
                writes.other_errors.push(e.to_string());
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    writes
}

/// Reads until `stop`; returns (reads, failures).
async fn read_until(router: Router, stop: Arc<AtomicBool>) -> (u64, Vec<String>) {
    let (mut reads, mut failures) = (0, Vec::new());
    while !stop.load(Relaxed) {
        match router.query("SELECT count(*) FROM w", &[]).await {
            Ok(_) => reads += 1,
            Err(e) => failures.push(e.to_string()),
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    (reads, failures)
}

/// The writes counted on `node` so far.
fn writes_on(router: &Router, node: &str) -> u64 {
    router.stats().node(node).map_or(0, |n| n.writes)
}

/// Checks once, then writes once: after a promotion, a write must go to the
/// new primary within one check and one retry.
async fn one_check_and_one_write(router: &Router, ids: &AtomicU64) -> drr_core::Result<u64> {
    router.check_now().await;
    let id = i64::try_from(ids.fetch_add(1, Relaxed)).unwrap_or(i64::MAX);
    router
        .execute("INSERT INTO w (id) VALUES ($1)", &[&id])
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_follows_a_failover_and_back() -> anyhow::Result<()> {
    let own = TempStack::start(drr_stack::testing::spec(&[Duration::ZERO; 2])?).await?;
    own.connect("primary")
        .await?
        .batch_execute("CREATE TABLE w (id bigint PRIMARY KEY)")
        .await?;
    let config = RouterConfig::cluster(&node_urls(&own)?)?
        .check_interval(CHECK_INTERVAL)
        .ban_duration(Duration::from_secs(1))
        .pool_size(4);
    let router = Router::connect(config).await?;
    assert_eq!(router.route("INSERT INTO w VALUES (0)").node, OLD_PRIMARY);

    let stop = Arc::new(AtomicBool::new(false));
    let ids = Arc::new(AtomicU64::new(1));
    let writer = tokio::spawn(write_until(router.clone(), stop.clone(), ids.clone()));
    let reader = tokio::spawn(read_until(router.clone(), stop.clone()));
    tokio::time::sleep(Duration::from_millis(300)).await;

    // replica1 takes over.
    let started = Instant::now();
    failover(&own, "replica1").await?;
    eprintln!("failover to replica1 took {:?}", started.elapsed());
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
    let started = Instant::now();
    failover(&own, "primary").await?;
    eprintln!("failover back took {:?}", started.elapsed());
    let write = one_check_and_one_write(&router, &ids).await;
    assert!(write.is_ok(), "a write after one check failed: {write:?}");
    assert_eq!(
        router.stats().primary().map(|p| p.name.clone()),
        Some(OLD_PRIMARY.to_owned())
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Relaxed);
    let writes = writer.await?;
    let (reads, read_failures) = reader.await?;

    eprintln!(
        "writes: {} attempts, {} acknowledged, {} failover errors; writes unavailable for {:?}; \
         {reads} reads",
        writes.attempts,
        writes.acked.len(),
        writes.failover_errors,
        writes.outages
    );
    assert!(read_failures.is_empty(), "reads failed: {read_failures:?}");
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

    // Every acknowledged write is on the primary.
    let kept: Vec<i64> = own
        .connect("primary")
        .await?
        .query("SELECT id FROM w ORDER BY id", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let lost: Vec<&i64> = writes
        .acked
        .iter()
        .filter(|id| kept.binary_search(id).is_err())
        .collect();
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    Ok(())
}
