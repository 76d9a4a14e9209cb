//! Live lag control against real replicas: delay changes take effect on the
//! running stack, per replica, for commits already waiting; pause blocks
//! visibility until resume; bad input changes nothing.

mod support;

use std::time::{Duration, Instant};

use drr_stack::lag::{self, DelayChange};
use support::{TempStack, spec, time_until_visible, visible};

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
    primary
        .batch_execute("INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    let committed = Instant::now();
    let (t1, t2) = tokio::join!(
        time_until_visible(&c1, "t", 1, WAIT),
        time_until_visible(&c2, "t", 1, WAIT)
    );
    let (t1, t2) = (t1.expect("replica1 sees it"), t2.expect("replica2 sees it"));
    assert!(
        t1 >= Duration::from_millis(250) && t1 < Duration::from_millis(1200),
        "replica1 after {t1:?}"
    );
    assert!(t2 >= Duration::from_millis(1400), "replica2 after {t2:?}");
    assert!(committed.elapsed() < WAIT);

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
