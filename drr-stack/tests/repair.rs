//! `up` repairs what it can and says what it did, and refuses what it must
//! not do: each test breaks one thing on a native stack of its own (a
//! failed first `up`, a replica whose data no longer fits the primary, an
//! invalidated replication slot, a renamed primary) and checks the repair
//! or the clear error.

mod support;

use std::path::Path;
use std::time::Duration;

use drr_stack::stack::UpOptions;
use support::{TempStack, spec, time_until_visible, visible, wait_for_table};

const WAIT: Duration = Duration::from_secs(30);

/// Whether `steps` has one that starts with `prefix`.
fn has_step(steps: &[String], prefix: &str) -> bool {
    steps.iter().any(|s| s.starts_with(prefix))
}

/// A row written on the primary reaches replica1.
async fn replica_streams(stack: &TempStack, id: i32) {
    let primary = stack.connect(&stack.spec().primary.name).await;
    primary
        .batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS r (id int PRIMARY KEY); INSERT INTO r VALUES ({id})"
        ))
        .await
        .expect("write on the primary");
    let replica = stack.connect("replica1").await;
    wait_for_table(&replica, "r", WAIT).await;
    assert!(
        time_until_visible(&replica, "r", id, WAIT).await.is_some(),
        "row {id} never reached replica1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_first_up_is_repaired_by_the_next_one() {
    let good = spec(&[0]);
    let mut bad = good.clone();
    bad.primary = bad.primary.setting("shared_buffers", "not a size");
    let mut stack = TempStack::new(bad);
    let err = stack
        .try_up()
        .await
        .expect_err("the primary cannot start with that setting");
    assert!(format!("{err:#}").contains("failed to start"), "{err:#}");
    // The replica's data was made before the primary failed, its slot never.
    stack.respec(good);
    let steps = stack
        .up_steps(UpOptions::default())
        .await
        .expect("the next up repairs what the failed one left");
    assert!(
        has_step(&steps, "recreate the missing replication slot of replica1"),
        "{steps:#?}"
    );
    replica_streams(&stack, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_data_does_not_fit_the_primary_is_rebuilt() {
    let stack = TempStack::up(spec(&[0])).await;
    replica_streams(&stack, 1).await;
    // Another stack's primary: a cluster with another system identifier
    // (another login role, so another template cluster).
    let mut other_spec = spec(&[]);
    other_spec.roles[0].name = "someone_else".into();
    other_spec.databases[0].owner = "someone_else".into();
    let other = TempStack::up(other_spec).await;
    other
        .native()
        .down(&mut drr_stack::progress::Progress::new(true))
        .expect("down");
    stack
        .native()
        .down(&mut drr_stack::progress::Progress::new(true))
        .expect("down");

    // Put the other cluster where replica1's data was, keeping replica1's
    // standby settings.
    let replica_data = stack.native().state().data_dir("replica1");
    let keep = |name: &str| std::fs::read(replica_data.join(name)).expect("read a standby file");
    let (auto_conf, signal) = (keep("postgresql.auto.conf"), keep("standby.signal"));
    std::fs::remove_dir_all(&replica_data).expect("remove replica1's data");
    copy_dir(&other.native().state().data_dir("primary"), &replica_data);
    std::fs::write(replica_data.join("postgresql.auto.conf"), auto_conf).expect("write");
    std::fs::write(replica_data.join("standby.signal"), signal).expect("write");
    // Without the other stack's id: data drr cannot tell by its files, only
    // by what the replica logs when it tries to stream.
    std::fs::remove_file(replica_data.join("drr_stack_id.conf")).expect("remove the id");

    let steps = stack
        .up_steps(UpOptions::default())
        .await
        .expect("up rebuilds the replica");
    assert!(
        steps
            .iter()
            .any(|s| s.starts_with("remove replica1 to rebuild it")
                && s.contains("system identifier")),
        "{steps:#?}"
    );
    let replica = stack.connect("replica1").await;
    assert!(
        visible(&replica, "r", 1).await,
        "the rebuilt replica has the primary's data"
    );
    replica_streams(&stack, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidated_slot_gets_its_replica_rebuilt() {
    let stack = TempStack::up(spec(&[0]).slot_wal_limit_mb(16)).await;
    replica_streams(&stack, 1).await;
    let replica_pid = stack.native().pids()["replica1"];
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(replica_pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill replica1");
    // More WAL than the slot may hold, then checkpoints that remove it.
    let admin = stack.admin("primary").await;
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        admin
            .batch_execute(
                "SELECT pg_logical_emit_message(false, 'drr', repeat('x', 1048576)) \
                 FROM generate_series(1, 40); SELECT pg_switch_wal(); CHECKPOINT;",
            )
            .await
            .expect("write WAL");
        let status: Option<String> = admin
            .query_one(
                "SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'replica1'",
                &[],
            )
            .await
            .expect("slot")
            .get(0);
        if status.as_deref() == Some("lost") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the slot was not invalidated (wal_status {status:?})"
        );
    }
    let report =
        drr_stack::status::gather(stack.spec(), &stack.secrets(), &Default::default()).await;
    let replica = report
        .iter()
        .find(|n| n.node == "replica1")
        .expect("replica1");
    assert_eq!(replica.slot_status.as_deref(), Some("lost"), "{replica:?}");

    let steps = stack
        .up_steps(UpOptions::default())
        .await
        .expect("up rebuilds the replica");
    assert!(
        steps
            .iter()
            .any(|s| s.starts_with("remove replica1 to rebuild it") && s.contains("invalidated")),
        "{steps:#?}"
    );
    replica_streams(&stack, 2).await;
    let report =
        drr_stack::status::gather(stack.spec(), &stack.secrets(), &Default::default()).await;
    let replica = report
        .iter()
        .find(|n| n.node == "replica1")
        .expect("replica1");
    assert_ne!(replica.slot_status.as_deref(), Some("lost"), "{replica:?}");
    assert!(replica.slot_wal_bytes.is_some(), "{replica:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renaming_the_primary_deletes_its_data_only_with_yes() {
    let mut stack = TempStack::up(spec(&[0])).await;
    let old = stack.native().state().data_dir("primary");
    let mut renamed = stack.spec().clone();
    renamed.primary.name = "main".into();
    stack.respec(renamed);
    let err = stack
        .up_steps(UpOptions::default())
        .await
        .expect_err("up refuses to delete the old primary's data");
    let text = format!("{err:#}");
    assert!(
        text.contains("node `primary` left the spec") && text.contains("--yes"),
        "{text}"
    );
    assert!(
        old.join("PG_VERSION").exists(),
        "the old primary's data is kept"
    );

    let steps = stack
        .up_steps(UpOptions { yes: true })
        .await
        .expect("with --yes, up starts the renamed primary");
    assert!(!old.exists(), "the old primary's data is gone");
    // The replica's data was a copy of the old primary: rebuilt from the new.
    assert!(
        has_step(
            &steps,
            "remove replica1 to rebuild it: its data is a copy of an earlier primary"
        ),
        "{steps:#?}"
    );
    replica_streams(&stack, 1).await;
}

/// `cp -a`: a copy with owners and modes (the server user's files).
fn copy_dir(from: &Path, to: &Path) {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("run cp");
    assert!(
        status.success(),
        "cp -a {} {}",
        from.display(),
        to.display()
    );
}
