//! `cargo xtask failover` on native stacks of their own: a replica takes
//! over and back while a client writes through `DRR_WRITER_URL`, no
//! acknowledged write is lost, the roles are state that `up` keeps, delays
//! stay with their nodes, and bad input changes nothing.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use drr_stack::progress::Progress;
use drr_stack::status;
use drr_stack::testing::TempStack;
use tokio_postgres::NoTls;

const WAIT: Duration = Duration::from_secs(30);

async fn start(delays_ms: &[u64]) -> TempStack {
    let delays: Vec<Duration> = delays_ms
        .iter()
        .copied()
        .map(Duration::from_millis)
        .collect();
    let spec = drr_stack::testing::spec(&delays).expect("a spec");
    TempStack::start(spec)
        .await
        .expect("a stack of the test's own")
}

/// Fails over to `to` (or the default target) and returns the step labels.
async fn failover(stack: &TempStack, to: Option<&str>) -> anyhow::Result<Vec<String>> {
    let mut progress = Progress::new(true);
    drr_stack::failover::run(&stack.stack()?, &stack.secrets()?, to, &mut progress).await?;
    Ok(progress
        .steps()
        .iter()
        .map(|(l, took)| format!("{l} ({} ms)", took.as_millis()))
        .collect())
}

/// Each node's (name, role, timeline, current delay) as `status` sees it.
async fn roles(stack: &TempStack) -> Vec<(String, &'static str, Option<i32>, Option<u64>)> {
    let secrets = stack.secrets().expect("secrets");
    let runtime = drr_stack::topology::discover(stack.spec(), &secrets)
        .await
        .expect("one primary");
    status::gather(&runtime, &secrets, &Default::default())
        .await
        .into_iter()
        .map(|n| (n.node, n.role, n.timeline, n.current_delay_ms))
        .collect()
}

/// Writes rows through `DRR_WRITER_URL` until told to stop, reconnecting
/// after failures (the primary changes under it); returns every id whose
/// INSERT was acknowledged.
fn writer(url: String, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Vec<i64>> {
    tokio::spawn(async move {
        let mut acked = Vec::new();
        let mut next = 0i64;
        while !stop.load(Ordering::Relaxed) {
            let Ok((client, connection)) = tokio_postgres::connect(&url, NoTls).await else {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            tokio::spawn(connection);
            while !stop.load(Ordering::Relaxed) {
                next += 1;
                match client
                    .execute("INSERT INTO w (id) VALUES ($1)", &[&next])
                    .await
                {
                    Ok(_) => acked.push(next),
                    Err(_) => break,
                }
            }
        }
        acked
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_takes_over_and_back_and_no_acknowledged_write_is_lost() {
    let stack = start(&[200, 1000]).await;
    let vars = stack.vars().expect("vars");
    let writer_url = vars
        .iter()
        .find(|(k, _)| *k == "DRR_WRITER_URL")
        .map(|(_, v)| v.clone())
        .expect("DRR_WRITER_URL");
    let primary = stack.connect("primary").await.expect("connect");
    primary
        .batch_execute("CREATE TABLE w (id bigint PRIMARY KEY)")
        .await
        .expect("create");
    let stop = Arc::new(AtomicBool::new(false));
    let writes = writer(writer_url.clone(), stop.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = Instant::now();
    let steps = failover(&stack, Some("replica1")).await.expect("failover");
    eprintln!("failover in {:?}: {steps:#?}", started.elapsed());
    let after = roles(&stack).await;
    assert_eq!(after[0].0, "replica1");
    assert_eq!(after[0].1, "primary");
    assert_eq!(after[0].2, Some(2), "a new timeline: {after:?}");
    for (name, role, _, delay) in &after[1..] {
        assert_eq!(*role, "replica", "{after:?}");
        let expected = if name == "primary" { 0 } else { 1000 };
        assert_eq!(*delay, Some(expected), "{name}'s own delay: {after:?}");
    }
    // Every replica follows the new timeline, the delayed one within its delay.
    let deadline = Instant::now() + WAIT;
    while !roles(&stack).await.iter().all(|n| n.2 == Some(2)) {
        assert!(Instant::now() < deadline, "{:?}", roles(&stack).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // `up` keeps the roles.
    stack.up().await.expect("up after a failover");
    assert_eq!(roles(&stack).await[0].0, "replica1");

    // And back: the spec's roles, on timeline 3.
    if let Err(e) = failover(&stack, Some("primary")).await {
        let log = stack.native().unwrap().state().log_file("replica1");
        eprintln!(
            "LOG:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        let log = stack.native().unwrap().state().log_file("primary");
        eprintln!(
            "PRIMARY LOG:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        panic!("failover back: {e:#}");
    }
    let back = roles(&stack).await;
    assert_eq!(
        back.iter()
            .map(|(n, r, _, _)| (n.as_str(), *r))
            .collect::<Vec<_>>(),
        [
            ("primary", "primary"),
            ("replica1", "replica"),
            ("replica2", "replica")
        ]
    );
    let deadline = Instant::now() + WAIT;
    while !roles(&stack).await.iter().all(|n| n.2 == Some(3)) {
        assert!(Instant::now() < deadline, "{:?}", roles(&stack).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(back[1].3, Some(200), "replica1's delay is its spec's again");

    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let acked = writes.await.expect("writer task");
    assert!(acked.len() > 10, "the writer wrote: {}", acked.len());
    let primary = stack.connect("primary").await.expect("connect");
    let kept: Vec<i64> = primary
        .query("SELECT id FROM w ORDER BY id", &[])
        .await
        .expect("read")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let lost: Vec<&i64> = acked
        .iter()
        .filter(|id| kept.binary_search(id).is_err())
        .collect();
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    // Every replica has them too.
    for replica in ["replica1", "replica2"] {
        let client = stack.connect(replica).await.expect("connect");
        let deadline = Instant::now() + WAIT;
        loop {
            let count: i64 = client
                .query_one("SELECT count(*) FROM w", &[])
                .await
                .expect("count")
                .get(0);
            if count == kept.len() as i64 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{replica} has {count} of {}",
                kept.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_changes_no_role() {
    let stack = start(&[0, 0]).await;
    let before = roles(&stack).await;
    for (to, says) in [
        (Some("nope"), "there is no node `nope`"),
        (Some("primary"), "`primary` is the primary already"),
    ] {
        let err = failover(&stack, to).await.expect_err("refused");
        assert!(format!("{err:#}").contains(says), "{err:#}");
    }
    // A target that is down.
    stack
        .stack()
        .unwrap()
        .stop_node("replica2")
        .expect("stop replica2");
    let err = failover(&stack, Some("replica2"))
        .await
        .expect_err("refused");
    assert!(format!("{err:#}").contains("`replica2` is down"), "{err:#}");
    stack.up().await.expect("up");
    assert_eq!(roles(&stack).await, before);

    let lonely = start(&[]).await;
    let err = failover(&lonely, None).await.expect_err("refused");
    assert!(format!("{err:#}").contains("no replicas"), "{err:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_the_replica_with_the_most_wal_takes_over() {
    let stack = start(&[0, 0]).await;
    // replica1 stops receiving; the primary writes on.
    let replica1 = stack.admin("replica1").await.expect("connect");
    replica1
        .batch_execute("ALTER SYSTEM SET primary_conninfo = ''")
        .await
        .expect("cut replica1 off");
    replica1
        .batch_execute("SELECT pg_reload_conf()")
        .await
        .expect("reload");
    let primary = stack.connect("primary").await.expect("connect");
    let deadline = Instant::now() + WAIT;
    loop {
        primary
            .batch_execute("CREATE TABLE IF NOT EXISTS m (n int); INSERT INTO m VALUES (1)")
            .await
            .expect("write");
        let receiving: bool = replica1
            .query_one("SELECT EXISTS (SELECT FROM pg_stat_wal_receiver)", &[])
            .await
            .expect("wal receiver")
            .get(0);
        if !receiving {
            break;
        }
        assert!(Instant::now() < deadline, "replica1 kept receiving");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    primary
        .batch_execute("INSERT INTO m VALUES (2)")
        .await
        .expect("write");
    failover(&stack, None).await.expect("failover");
    assert_eq!(
        roles(&stack).await[0].0,
        "replica2",
        "the replica with the most WAL"
    );
}
