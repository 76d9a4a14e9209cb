//! A stack works for an ordinary user, on the root-less path: no server
//! user to switch to, servers running as the caller, and the caller's own
//! state directory and test cache.
//!
//! Run as root (as CI runs), the test re-runs its own binary as the
//! unprivileged `drr-test-user` (created when missing) with `runuser`, and
//! passes only when that run brought a stack up, saw a write stream to the
//! replica, and said so. Run as an ordinary user, it does that part itself.

mod support;

use std::os::unix::fs::MetadataExt as _;
use std::time::Duration;

use drr_stack::command::Command;
use support::{TempStack, spec, time_until_visible};

/// The user the test runs the stack as when it runs as root.
const USER: &str = "drr-test-user";

/// Set in the run as [`USER`]: that run must not be root.
const INNER_ENV: &str = "DRR_TEST_ORDINARY_USER_RUN";

/// What the run as an ordinary user prints once everything was checked.
const DONE: &str = "checked: an ordinary user's stack streams";

#[test]
fn a_stack_works_for_an_ordinary_user() {
    let root = nix::unistd::geteuid().is_root();
    if std::env::var_os(INNER_ENV).is_some() {
        assert!(!root, "the run as `{USER}` runs as root");
    }
    if root {
        let stdout = run_as_ordinary_user();
        assert!(
            stdout.contains(DONE) && stdout.contains("1 passed"),
            "the run as `{USER}` did not check the stack:\n{stdout}"
        );
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime")
            .block_on(check_a_stack());
    }
}

/// As the ordinary user this process runs as: a stack comes up, streams,
/// and everything it made belongs to this user.
async fn check_a_stack() {
    let me = nix::unistd::geteuid().as_raw();
    assert_eq!(
        drr_stack::host::ServerUser::resolve().expect("resolve"),
        None,
        "no server user to switch to"
    );
    let stack = TempStack::up(spec(&[0])).await;
    let pids = stack.native().pids();
    assert_eq!(pids.len(), 2, "{pids:?}");
    for (node, pid) in &pids {
        let owner = std::fs::metadata(format!("/proc/{pid}"))
            .expect("proc")
            .uid();
        assert_eq!(owner, me, "`{node}` runs as uid {owner}");
    }
    let cache = drr_stack::testing::shared_cache().expect("the shared cache");
    for dir in [stack.native().state().root(), cache.as_path()] {
        let meta = std::fs::metadata(dir).expect("stat");
        assert_eq!(meta.uid(), me, "{} is not mine", dir.display());
        assert!(dir.join(drr_stack::host::dirs::MARKER).is_file());
    }
    let primary = stack.connect("primary").await;
    primary
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)")
        .await
        .expect("write on the primary");
    let replica = stack.connect("replica1").await;
    time_until_visible(&replica, "t", 1, Duration::from_secs(20))
        .await
        .expect("the write reaches the replica");
    println!("{DONE} (uid {me})");
}

/// Runs this test as [`USER`] and returns what it printed.
fn run_as_ordinary_user() -> String {
    ensure_user();
    // A copy the user can read and run, wherever the build put this one.
    let dir = drr_stack::testing::scratch_dir("drr-user-test-").expect("a temp dir");
    let exe = dir.path().join("user-test");
    std::fs::copy(std::env::current_exe().expect("this test binary"), &exe)
        .expect("copy the test binary");
    Command::new("runuser")
        .args(["-u", USER, "--"])
        .args([exe.as_os_str()])
        .args([
            "--exact",
            "a_stack_works_for_an_ordinary_user",
            "--nocapture",
        ])
        .env(INNER_ENV, "1")
        .env("TMPDIR", "/tmp")
        .dir(dir.path())
        .read()
        .unwrap_or_else(|e| panic!("the run as `{USER}` failed: {e:#}"))
}

/// Creates [`USER`] (a system user without a home or a login shell) unless
/// it exists.
fn ensure_user() {
    let exists = || nix::unistd::User::from_name(USER).is_ok_and(|u| u.is_some());
    if exists() {
        return;
    }
    let created = Command::new("useradd")
        .args([
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
        ])
        .args([USER])
        .read();
    // Another test process may have created it meanwhile.
    if let Err(e) = created {
        assert!(exists(), "cannot create user `{USER}`: {e:#}");
    }
}
