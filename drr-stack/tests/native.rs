//! The native backend against real Postgres: creation, idempotence, healing,
//! spec changes, persistence, and the faults a user can cause.

mod support;

use std::time::{Duration, Instant};

use drr_stack::spec::Replica;
use support::{TempStack, spec, time_until_visible, visible, visible_at};

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_the_primary_shows_on_the_replica_after_its_delay() {
    let stack = TempStack::up(spec(&[500])).await;
    let primary = stack.connect("primary").await;
    let replica = stack.connect("replica1").await;
    let in_recovery: bool = replica
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .unwrap()
        .get(0);
    assert!(in_recovery);
    // The lower bound counts from before the write was sent (see
    // `visible_at`), so load cannot make it fail.
    let sent = Instant::now();
    primary
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    let took = visible_at(&replica, "t", 1, WAIT)
        .await
        .expect("visible after the delay")
        - sent;
    assert!(
        took >= Duration::from_millis(500),
        "visible after only {took:?}"
    );
    // The replica refuses writes.
    let err = replica
        .batch_execute("INSERT INTO t VALUES (2)")
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::READ_ONLY_SQL_TRANSACTION)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_on_a_running_stack_changes_nothing() {
    let stack = TempStack::up(spec(&[0])).await;
    let before = stack.native().pids();
    stack.try_up().await.unwrap();
    assert_eq!(stack.native().pids(), before);
    assert_eq!(before.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_nodes_come_back_with_their_data() {
    let stack = TempStack::up(spec(&[0])).await;
    let primary = stack.connect("primary").await;
    primary
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    let replica = stack.connect("replica1").await;
    time_until_visible(&replica, "t", 1, WAIT)
        .await
        .expect("replicated");
    for pid in stack.native().pids().values() {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
    }
    stack.try_up().await.expect("up heals killed nodes");
    assert_eq!(stack.native().pids().len(), 2);
    let primary = stack.connect("primary").await;
    assert!(visible(&primary, "t", 1).await, "the primary kept its data");
    primary
        .batch_execute("INSERT INTO t VALUES (2)")
        .await
        .unwrap();
    let replica = stack.connect("replica1").await;
    time_until_visible(&replica, "t", 2, WAIT)
        .await
        .expect("the replica streams again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_added_to_and_removed_from_the_spec() {
    let mut stack = TempStack::up(spec(&[0])).await;
    let pids = stack.native().pids();
    let port = support::free_ports(1)[0];
    let grown = stack.spec().clone().replica(Replica::new("replica2", port));
    stack.respec(grown);
    stack.try_up().await.unwrap();
    let after = stack.native().pids();
    assert_eq!(after.len(), 3);
    assert_eq!(
        after["primary"], pids["primary"],
        "the primary was not restarted"
    );
    assert_eq!(
        after["replica1"], pids["replica1"],
        "replica1 was not restarted"
    );
    let replica2 = stack.connect("replica2").await;
    let slots: i64 = stack
        .admin("primary")
        .await
        .query_one("SELECT count(*) FROM pg_replication_slots", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(slots, 2);
    drop(replica2);

    let mut shrunk = stack.spec().clone();
    shrunk.replicas.pop();
    stack.respec(shrunk);
    stack.try_up().await.unwrap();
    assert_eq!(stack.native().pids().len(), 2);
    let admin = stack.admin("primary").await;
    let slots: Vec<String> = admin
        .query("SELECT slot_name::text FROM pg_replication_slots", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(slots, ["replica1"]);
    assert!(!stack.native().state().node_dir("replica2").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_then_up_keeps_data() {
    let stack = TempStack::up(spec(&[0])).await;
    stack
        .connect("primary")
        .await
        .batch_execute("CREATE TABLE t (id int); INSERT INTO t VALUES (7)")
        .await
        .unwrap();
    stack
        .native()
        .down(&mut drr_stack::progress::Progress::new(true))
        .unwrap();
    assert!(stack.native().pids().is_empty());
    stack.try_up().await.unwrap();
    assert!(visible(&stack.connect("primary").await, "t", 7).await);
    let replica = stack.connect("replica1").await;
    time_until_visible(&replica, "t", 7, WAIT)
        .await
        .expect("on the replica too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_port_is_named_and_nothing_is_created() {
    let stack = TempStack::new(spec(&[0]));
    let port = stack.spec().replicas[0].node.port;
    let _squatter = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let err = stack.try_up().await.unwrap_err().to_string();
    assert!(err.contains(&format!("port {port}")), "{err}");
    assert!(
        err.contains(&format!("pid {}", std::process::id())),
        "names the holder: {err}"
    );
    assert!(
        !stack.native().state().node_dir("primary").exists(),
        "nothing half-done"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_data_directory_is_refused_and_kept() {
    let stack = TempStack::new(spec(&[0]));
    let state = stack.native().state().clone();
    let server = drr_stack::host::ServerUser::resolve().unwrap();
    state.claim_root(server.as_ref()).unwrap();
    let data = state.data_dir("primary");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("precious.txt"), "mine").unwrap();
    let err = stack.try_up().await.unwrap_err().to_string();
    assert!(
        err.contains("not a complete Postgres data directory") && err.contains("destroy"),
        "{err}"
    );
    assert!(data.join("precious.txt").exists());

    std::fs::write(data.join("PG_VERSION"), "14\n").unwrap();
    std::fs::create_dir_all(data.join("global")).unwrap();
    std::fs::write(data.join("global/pg_control"), "").unwrap();
    let err = stack.try_up().await.unwrap_err().to_string();
    assert!(
        err.contains("Postgres 14 data directory but the spec says Postgres 15"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_never_run_as_root() {
    let stack = TempStack::up(spec(&[])).await;
    let pid = stack.native().pids()["primary"];
    let uid = support::process_uid(pid);
    assert_ne!(uid, 0, "postgres runs as root");
    assert_eq!(uid, support::server_uid());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_setting_reloads_only_that_node() {
    let mut stack = TempStack::up(spec(&[0])).await;
    let pids = stack.native().pids();
    let mut changed = stack.spec().clone();
    changed.replicas[0].node = changed.replicas[0].node.clone().setting("work_mem", "7MB");
    stack.respec(changed);
    stack.try_up().await.unwrap();
    assert_eq!(
        stack.native().pids(),
        pids,
        "a reloadable setting restarts nothing"
    );
    let work_mem: String = stack
        .admin("replica1")
        .await
        .query_one("SHOW work_mem", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(work_mem, "7MB");

    let mut restart = stack.spec().clone();
    restart.replicas[0].node = restart.replicas[0]
        .node
        .clone()
        .setting("max_connections", "250");
    stack.respec(restart);
    stack.try_up().await.unwrap();
    let after = stack.native().pids();
    assert_eq!(after["primary"], pids["primary"]);
    assert_ne!(
        after["replica1"], pids["replica1"],
        "a restart-only setting restarts the node"
    );
}

/// A process that is not a server of the stack, killed when the test ends.
struct Bystander(std::process::Child);

impl Bystander {
    /// A copy of `sleep` named `postgres`, working in `dir`: what a reused
    /// pid in a stale `postmaster.pid` can look like after a reboot.
    fn named_postgres(dir: &std::path::Path) -> Bystander {
        let program = dir.join("postgres");
        std::fs::copy("/bin/sleep", &program).expect("copy /bin/sleep");
        let child = std::process::Command::new(&program)
            .arg("600")
            .current_dir(dir)
            .spawn()
            .expect("start the bystander");
        Bystander(child)
    }

    fn alive(&mut self) -> bool {
        self.0.try_wait().expect("wait on the bystander").is_none()
    }
}

impl Drop for Bystander {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pid_file_naming_another_process_is_stale_and_never_signalled() {
    let stack = TempStack::up(spec(&[0])).await;
    let other = TempStack::up(spec(&[])).await;
    let other_pid = other.native().pids()["primary"];
    let native = stack.native();
    let mut progress = drr_stack::progress::Progress::new(true);
    native.down(&mut progress).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut bystander = Bystander::named_postgres(dir.path());

    // The primary's pid file names a process called `postgres` that serves
    // nothing; the replica's names another stack's running primary.
    for (node, pid) in [
        ("primary", bystander.0.id() as i32),
        ("replica1", other_pid),
    ] {
        let data = native.state().data_dir(node);
        std::fs::write(
            data.join("postmaster.pid"),
            format!("{pid}\n{}\n", data.display()),
        )
        .unwrap();
    }
    assert_eq!(
        native.pids(),
        Default::default(),
        "foreign pids counted as servers"
    );
    native.down(&mut progress).unwrap();
    assert!(
        bystander.alive(),
        "`down` signalled a process it did not start"
    );
    assert_eq!(other.native().pids()["primary"], other_pid);

    stack
        .try_up()
        .await
        .expect("up starts over stale pid files");
    let pids = native.pids();
    assert_eq!(pids.len(), 2, "{pids:?}");
    assert!(
        !pids
            .values()
            .any(|&p| p == other_pid || p == bystander.0.id() as i32)
    );
    assert!(
        bystander.alive(),
        "`up` signalled a process it did not start"
    );
    let count: i64 = other
        .admin("primary")
        .await
        .query_one("SELECT 1::bigint", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 1, "the other stack's primary still serves");
    assert_eq!(other.native().pids()["primary"], other_pid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_directory_drr_did_not_make_is_refused_and_left_alone() {
    let stack = TempStack::new(spec(&[0]));
    let root = stack.native().state().root().to_owned();
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("precious.txt"), "mine").unwrap();
    let err = format!("{:#}", stack.try_up().await.unwrap_err());
    assert!(
        err.contains(&root.display().to_string())
            && err.contains("was not created by drr")
            && err.contains("DRR_STATE_DIR"),
        "{err}"
    );
    let left: Vec<_> = std::fs::read_dir(&root).unwrap().flatten().collect();
    assert_eq!(left.len(), 1, "nothing added: {left:?}");

    if nix::unistd::geteuid().is_root() {
        // Marked, but another user's.
        drr_stack::host::dirs::mark(&root).unwrap();
        std::os::unix::fs::chown(&root, Some(65534), Some(65534)).unwrap();
        let err = format!("{:#}", stack.try_up().await.unwrap_err());
        assert!(err.contains("belongs to user `nobody`"), "{err}");
        assert!(!root.join("nodes").exists(), "nothing created");
    }
}

/// Removes a directory when the test ends.
struct RemoveDir(std::path::PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn the_shared_fallback_home_is_refused_when_someone_else_made_it() {
    // A workspace the server user cannot reach: drr falls back to
    // /var/tmp/drr-<hash>, a predictable path anyone could create first.
    let private = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        private.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let project =
        drr_stack::project::Project::new(spec(&[]), private.path().join("workspace")).unwrap();
    let server = drr_stack::host::ServerUser {
        name: "nobody".into(),
        uid: 65534,
        gid: 65534,
    };
    let state = drr_stack::native::StateDir::resolve(&project, Some(&server)).unwrap();
    let home = state.root().parent().unwrap().to_owned();
    assert!(
        home.to_string_lossy().starts_with("/var/tmp/drr-"),
        "{}",
        home.display()
    );
    std::fs::create_dir(&home).unwrap();
    let _cleanup = RemoveDir(home.clone());

    let err = format!("{:#}", state.lock(Some(&server)).unwrap_err());
    assert!(
        err.contains(&format!("{} was not created by drr", home.display())),
        "{err}"
    );
    assert!(!state.root().exists(), "nothing created inside");

    drr_stack::host::dirs::mark(&home).unwrap();
    let _lock = state.lock(Some(&server)).expect("a home drr made is used");
    assert!(state.root().join(drr_stack::host::dirs::MARKER).is_file());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_and_status_name_the_postgres_version_each_node_runs() {
    let stack = TempStack::new(spec(&[0]));
    let version = drr_stack::host::Binaries::find(15).unwrap().version;
    let mut progress = drr_stack::progress::Progress::new(true);
    drr_stack::stack::Stack::Native(Box::new(stack.native()))
        .up(&mut progress)
        .await
        .expect("up");
    let (said, _) = progress.steps().last().expect("a step").clone();
    assert_eq!(said, format!("Postgres {version} on primary, replica1"));

    let pids = stack.native().pids();
    let nodes = drr_stack::status::gather(stack.spec(), &stack.secrets(), &pids).await;
    for node in &nodes {
        assert_eq!(
            node.server_version.as_deref(),
            Some(version.as_str()),
            "{node:?}"
        );
    }
    let json = serde_json::to_value(&nodes).unwrap();
    assert_eq!(json[1]["server_version"], version.as_str(), "{json}");
    status_shows_the_lag_of_a_paused_replica(&stack, &pids).await;
}

/// With replay paused and a write on the primary, `status` shows the
/// replica's lag in bytes in its table and JSON, and none once it resumed.
async fn status_shows_the_lag_of_a_paused_replica(
    stack: &TempStack,
    pids: &std::collections::BTreeMap<String, i32>,
) {
    let replica = stack.admin("replica1").await;
    replica
        .batch_execute("SELECT pg_wal_replay_pause()")
        .await
        .unwrap();
    stack
        .connect("primary")
        .await
        .batch_execute("CREATE TABLE lag_shown (filler text); INSERT INTO lag_shown SELECT repeat('x', 1000) FROM generate_series(1, 100)")
        .await
        .unwrap();
    let status = async || drr_stack::status::gather(stack.spec(), &stack.secrets(), pids).await;
    let behind = wait_until(async || {
        let nodes = status().await;
        nodes[1]
            .replay_lag_bytes
            .is_some_and(|b| b > 0)
            .then_some(nodes)
    })
    .await
    .expect("status shows the paused replica's lag in bytes");
    let (lag_bytes, lag_ms) = (behind[1].replay_lag_bytes.unwrap(), behind[1].replay_lag_ms);
    assert_eq!(
        behind[1].replay,
        Some(drr_stack::pg::Replay::Paused),
        "{behind:?}"
    );
    assert!(
        lag_ms.is_some(),
        "a streaming replica has a lag in ms: {behind:?}"
    );
    let table = drr_stack::status::table(&behind);
    let row = table.lines().find(|l| l.starts_with("replica1")).unwrap();
    let cells: Vec<&str> = row
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert!(
        cells.contains(&lag_bytes.to_string().as_str()),
        "LAG BYTES:\n{table}"
    );
    assert!(
        cells
            .iter()
            .any(|c| c.ends_with(" ms") && c.trim_end_matches(" ms").parse::<f64>().is_ok()),
        "LAG:\n{table}"
    );
    assert!(cells.contains(&"paused"), "REPLAY:\n{table}");
    let json = serde_json::to_value(&behind).unwrap();
    assert_eq!(json[1]["replay_lag_bytes"], lag_bytes, "{json}");
    assert!(json[1]["replay_lag_ms"].is_number(), "{json}");
    assert_eq!(json[1]["replay"], "paused", "{json}");

    replica
        .batch_execute("SELECT pg_wal_replay_resume()")
        .await
        .unwrap();
    wait_until(async || {
        let nodes = status().await;
        (nodes[1].replay_lag_bytes == Some(0)).then_some(())
    })
    .await
    .expect("the lag is gone once replay resumed");
}

/// Polls `check` until it returns `Some`, for at most [`WAIT`].
async fn wait_until<T>(check: impl AsyncFn() -> Option<T>) -> Option<T> {
    let start = std::time::Instant::now();
    while start.elapsed() < WAIT {
        if let Some(found) = check().await {
            return Some(found);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stack_instance_has_its_own_id_which_its_replicas_share() {
    // Both stacks are copies of one template cluster (one system
    // identifier): `drr.stack_id` tells them apart, for drr-core's tokens.
    let id = async |stack: &TempStack, node: &str| -> String {
        stack
            .connect(node)
            .await
            .query_one("SELECT current_setting('drr.stack_id')", &[])
            .await
            .expect("drr.stack_id is set")
            .get(0)
    };
    let a = TempStack::up(spec(&[0])).await;
    let b = TempStack::up(spec(&[])).await;
    let a_id = id(&a, "primary").await;
    assert_eq!(a_id.len(), 32, "{a_id}");
    assert_eq!(id(&a, "replica1").await, a_id);
    assert_ne!(id(&b, "primary").await, a_id);
    // A replica made later by a base backup carries the primary's.
    let mut a = a;
    let port = support::free_ports(1)[0];
    let grown = a.spec().clone().replica(Replica::new("replica2", port));
    a.respec(grown);
    a.try_up().await.expect("up adds replica2");
    assert_eq!(id(&a, "replica2").await, a_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destroy_leaves_spare_copies_the_next_cold_up_takes() {
    let cache = drr_stack::testing::scratch_dir("drr-spares-test-").unwrap();
    let spares = || -> Vec<std::path::PathBuf> {
        let dirs: Vec<_> = std::fs::read_dir(cache.path())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "spares"))
            .collect();
        assert!(
            dirs.len() <= 1,
            "one template, one spares directory: {dirs:?}"
        );
        dirs.iter()
            .flat_map(|d| std::fs::read_dir(d).unwrap().flatten().map(|e| e.path()))
            .collect()
    };
    let first = TempStack::with_cache(spec(&[0]), cache.path());
    first.try_up().await.expect("first stack comes up");
    assert!(spares().is_empty());
    first
        .native()
        .destroy(&mut drr_stack::progress::Progress::new(true))
        .expect("destroy");
    let ready = spares();
    assert_eq!(ready.len(), 2, "one spare per node: {ready:?}");
    // A spare of another cluster (here: a copy whose system identifier was
    // overwritten) must never become a node: it is deleted, and that node
    // gets a fresh copy of the template.
    let control = ready[0].join("global").join("pg_control");
    let mut bytes = std::fs::read(&control).unwrap();
    bytes[..8].copy_from_slice(&[0xff; 8]);
    std::fs::write(&control, bytes).unwrap();
    drop(first);

    let second = TempStack::with_cache(spec(&[0]), cache.path());
    second.try_up().await.expect("a stack of spares comes up");
    assert!(spares().is_empty(), "both spares were taken or deleted");
    // The replica is a standby of this primary: it streams what it writes.
    let primary = second.connect("primary").await;
    let replica = second.connect("replica1").await;
    primary
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    assert!(
        visible_at(&replica, "t", 1, WAIT).await.is_some(),
        "the replica made from a spare replays the primary's writes"
    );
    drop(second);
}
