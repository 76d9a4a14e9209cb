//! Live lag control against real replicas: delay changes take effect on the
//! running stack, per replica, for commits already waiting; pause blocks
//! visibility until resume; bad input changes nothing.

mod support;

use std::time::{Duration, Instant};

use drr_stack::lag::{self, DelayChange};
use support::{TempStack, spec, time_until_visible, visible, visible_at};

const WAIT: Duration = Duration::from_secs(20);

async fn current_delays(stack: &TempStack) -> Vec<u64> {
    let targets = lag::select(stack.spec(), &[]).unwrap();
    lag::delay(stack.spec(), &stack.secrets(), &targets, DelayChange::Show)
        .await
        .unwrap()
        .iter()
        .map(|s| s.current_ms)
        .collect()
}

/// A stack with one undelayed replica and a table `t` created on the primary.
async fn one_replica_with_table() -> (TempStack, tokio_postgres::Client, tokio_postgres::Client) {
    let stack = TempStack::up(spec(&[0])).await;
    let primary = stack.connect("primary").await;
    let replica = stack.connect("replica1").await;
    primary
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
        .await
        .unwrap();
    (stack, primary, replica)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delay_change_takes_effect_live_per_replica() {
    let stack = TempStack::up(spec(&[0, 0])).await;
    let spec = stack.spec();
    let secrets = stack.secrets();
    let r1 = lag::select(spec, &["replica1".into()]).unwrap();
    let r2 = lag::select(spec, &["replica2".into()]).unwrap();
    lag::delay(
        spec,
        &secrets,
        &r1,
        DelayChange::Set(Duration::from_millis(300)),
    )
    .await
    .unwrap();
    lag::delay(
        spec,
        &secrets,
        &r2,
        DelayChange::Set(Duration::from_millis(1500)),
    )
    .await
    .unwrap();
    assert_eq!(current_delays(&stack).await, [300, 1500]);

    let primary = stack.connect("primary").await;
    let (c1, c2) = (
        stack.connect("replica1").await,
        stack.connect("replica2").await,
    );
    primary
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
        .await
        .unwrap();
    // Wait for the table itself before timing rows.
    support::wait_for_table(&c2, "t", WAIT).await;
    // A replica applies a commit no sooner than its commit timestamp plus
    // the delay, and that timestamp comes after `sent`: lower bounds count
    // from `sent`, upper bounds from `committed`, whatever the load.
    let sent = Instant::now();
    primary
        .batch_execute("INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    let committed = Instant::now();
    let (v1, v2) = tokio::join!(visible_at(&c1, "t", 1, WAIT), visible_at(&c2, "t", 1, WAIT));
    let (v1, v2) = (v1.expect("replica1 sees it"), v2.expect("replica2 sees it"));
    assert!(
        v1 - sent >= Duration::from_millis(300) && v1 - committed < Duration::from_millis(1200),
        "replica1 after {:?} from sending, {:?} from the commit's return",
        v1 - sent,
        v1 - committed
    );
    assert!(
        v2 - sent >= Duration::from_millis(1500),
        "replica2 after {:?}",
        v2 - sent
    );

    // The runtime delay survives a restart; --reset returns to the spec's.
    stack
        .native()
        .down(&mut drr_stack::progress::Progress::new(true))
        .unwrap();
    stack.try_up().await.unwrap();
    assert_eq!(current_delays(&stack).await, [300, 1500]);
    let all = lag::select(spec, &[]).unwrap();
    lag::delay(spec, &secrets, &all, DelayChange::Reset)
        .await
        .unwrap();
    assert_eq!(current_delays(&stack).await, [0, 0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lowering_the_delay_releases_a_waiting_commit() {
    let (stack, primary, replica) = one_replica_with_table().await;
    support::wait_for_table(&replica, "t", WAIT).await;
    let targets = lag::select(stack.spec(), &[]).unwrap();
    lag::delay(
        stack.spec(),
        &stack.secrets(),
        &targets,
        DelayChange::Set(Duration::from_secs(60)),
    )
    .await
    .unwrap();
    primary
        .batch_execute("INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await; // time itself is what is tested
    assert!(
        !visible(&replica, "t", 1).await,
        "held back by the 60 s delay"
    );
    let lowered = Instant::now();
    lag::delay(
        stack.spec(),
        &stack.secrets(),
        &targets,
        DelayChange::Set(Duration::ZERO),
    )
    .await
    .unwrap();
    let took = time_until_visible(&replica, "t", 1, WAIT)
        .await
        .expect("released");
    assert!(
        lowered.elapsed() < Duration::from_secs(5),
        "released {took:?} after lowering, not after 60 s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_blocks_visibility_until_resume() {
    let (stack, primary, replica) = one_replica_with_table().await;
    let targets = lag::select(stack.spec(), &[]).unwrap();
    let states = lag::set_paused(stack.spec(), &stack.secrets(), &targets, true)
        .await
        .unwrap();
    assert_eq!(states[0].1, drr_stack::pg::Replay::Paused);
    primary
        .batch_execute("INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    assert_eq!(
        time_until_visible(&replica, "t", 1, Duration::from_millis(1500)).await,
        None,
        "paused replay shows nothing new"
    );
    lag::set_paused(stack.spec(), &stack.secrets(), &targets, false)
        .await
        .unwrap();
    time_until_visible(&replica, "t", 1, WAIT)
        .await
        .expect("visible after resume");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_changes_no_replica() {
    let stack = TempStack::up(spec(&[200, 400])).await;
    let before = current_delays(&stack).await;
    assert_eq!(before, [200, 400]);
    for bad in ["abc", "-5", "1e99", "25h"] {
        assert!(lag::parse_delay(bad).is_err(), "{bad}");
    }
    assert!(lag::select(stack.spec(), &["replica1".into(), "nope".into()]).is_err());
    // One target down: nothing may change on the one that is up.
    let secrets = stack.secrets();
    let replica2_pid = stack.native().pids()["replica2"];
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(replica2_pid),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let start = Instant::now();
    while stack.native().pids().contains_key("replica2") {
        assert!(start.elapsed() < WAIT);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let all = lag::select(stack.spec(), &[]).unwrap();
    let err = lag::delay(
        stack.spec(),
        &secrets,
        &all,
        DelayChange::Set(Duration::from_secs(9)),
    )
    .await
    .unwrap_err();
    assert!(format!("{err:#}").contains("cargo xtask up"), "{err:#}");
    let only_r1 = lag::select(stack.spec(), &["replica1".into()]).unwrap();
    let state = lag::delay(stack.spec(), &secrets, &only_r1, DelayChange::Show)
        .await
        .unwrap();
    assert_eq!(state[0].current_ms, 200, "replica1 unchanged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_that_fails_on_one_replica_is_reported_replica_by_replica() {
    let stack = TempStack::up(spec(&[200, 400])).await;
    // ALTER SYSTEM on replica2 cannot parse its postgresql.auto.conf.
    let auto_conf = stack
        .native()
        .state()
        .data_dir("replica2")
        .join("postgresql.auto.conf");
    let original = std::fs::read_to_string(&auto_conf).unwrap();
    std::fs::write(&auto_conf, format!("{original}this is not a setting\n")).unwrap();
    let all = lag::select(stack.spec(), &[]).unwrap();
    let err = lag::delay(
        stack.spec(),
        &stack.secrets(),
        &all,
        DelayChange::Set(Duration::from_millis(1000)),
    )
    .await
    .unwrap_err();
    std::fs::write(&auto_conf, original).unwrap();
    let text = format!("{err:#}");
    assert!(
        text.contains("did not change on every replica")
            && text.contains("replica1: 1000 ms")
            && text.contains("replica2: failed"),
        "{text}"
    );
    assert_eq!(current_delays(&stack).await, [1000, 400]);
}

/// With a delay longer than the query grace, a replica transaction that
/// conflicts with a vacuum the primary ran keeps its grace: Postgres counts
/// the grace (`max_standby_streaming_delay`) from when the WAL arrived,
/// which a delayed replica applies a delay later, so without the delay
/// added to it the transaction would be cancelled the moment replay reached
/// the vacuum. (Postgres restarts that count when replay reads the newest
/// WAL the replica has, so it shows on a primary that keeps writing, as
/// real ones do.) A 3 s grace and a 5 s delay (set live, as `cargo xtask
/// delay` does) show it in seconds; the default 30 s grace behaves the same
/// with delays over 30 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_delay_keeps_replica_queries_usable_while_the_primary_vacuums() {
    let mut spec = spec(&[0]);
    spec.replicas[0] = spec.replicas[0].clone().query_grace(Duration::from_secs(3));
    let stack = TempStack::up(spec).await;
    let primary = stack.connect("primary").await;
    primary
        .batch_execute(
            "CREATE TABLE v (id int PRIMARY KEY); INSERT INTO v SELECT generate_series(1, 100); \
             CREATE TABLE busy (id serial)",
        )
        .await
        .unwrap();
    let replica = stack.connect("replica1").await;
    let count = "SELECT count(*) FROM v";
    time_until_visible(&replica, "v", 100, WAIT)
        .await
        .expect("the rows reach the replica");
    let targets = lag::select(stack.spec(), &[]).unwrap();
    lag::delay(
        stack.spec(),
        &stack.secrets(),
        &targets,
        DelayChange::Set(Duration::from_secs(5)),
    )
    .await
    .unwrap();

    // Hold a snapshot that needs the rows, then delete and vacuum them
    // away on the primary.
    replica
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        .await
        .unwrap();
    let before: i64 = replica.query_one(count, &[]).await.unwrap().get(0);
    assert_eq!(before, 100, "the snapshot holds the rows");
    primary.batch_execute("DELETE FROM v").await.unwrap();
    let deleted: String = primary
        .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    primary.batch_execute("VACUUM v").await.unwrap();
    let writer = stack.connect("primary").await;
    let busy = tokio::spawn(async move {
        while writer
            .batch_execute("INSERT INTO busy DEFAULT VALUES")
            .await
            .is_ok()
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });

    // Replay holds at the vacuum's cleanup, right after the delete, while
    // the transaction lives: wait until it has replayed the delete.
    let deadline = Instant::now() + WAIT;
    loop {
        let replayed = replica
            .query_one(
                "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn",
                &[&deleted],
            )
            .await;
        match replayed {
            Ok(row) if row.get::<_, bool>(0) => break,
            Ok(_) => {}
            Err(e) => panic!("the replica transaction was cancelled by the vacuum's replay: {e}"),
        }
        assert!(
            Instant::now() < deadline,
            "the delete never replayed on the replica"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Time itself is what is tested: a second into the grace, the
    // transaction still reads the deleted rows.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = replica.query_one(count, &[]).await;
    let commit = replica.batch_execute("COMMIT").await;
    busy.abort();
    assert!(
        after.as_ref().is_ok_and(|r| r.get::<_, i64>(0) == 100) && commit.is_ok(),
        "the replica transaction was cancelled by the vacuum's replay: {after:?} {commit:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_nodes_fsync_and_the_default_does_not() {
    let fsync = async |stack: &TempStack| -> Vec<String> {
        let mut out = Vec::new();
        for node in ["primary", "replica1"] {
            let row = stack.connect(node).await.query_one("SHOW fsync", &[]).await;
            out.push(row.unwrap().get(0));
        }
        out
    };
    let default = TempStack::up(spec(&[0])).await;
    assert_eq!(fsync(&default).await, ["off", "off"]);
    drop(default);
    let durable = TempStack::up(spec(&[0]).durable()).await;
    assert_eq!(fsync(&durable).await, ["on", "on"]);
}
