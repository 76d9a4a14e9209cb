//! Another workspace adopts drr: `examples/adopt` depends on drr-stack for
//! its own `cargo xtask` (its own spec: stack `adopt`, ports 15432-15434,
//! replicas `near` 200 ms and `far` 3000 ms behind) and on drr-core for its
//! app. This test builds that workspace and drives its stack against real
//! Postgres: `gen --check`, `up`, `status`, `env`, a lag check through
//! `psql`, `probe --json`, `delay`, `pause`/`resume`, `test` (the app's own
//! test against the stack), `down`, and always `destroy --yes` at the end so
//! no server outlives the test.
//!
//! The example's binaries go to `<target dir>/adopt`, and its compiled
//! dependencies are shared with this workspace's build (cargo's
//! `build.build-dir` points at this workspace's target directory), so only
//! units this workspace did not build compile again. Final binaries are
//! never shared: both workspaces have a package named `xtask`, and the test
//! checks that each `cargo xtask` still runs its own.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Delays of the example's replicas, as its `xtask/src/spec.rs` declares.
const NEAR_MS: u64 = 200;
const FAR_MS: u64 = 3000;

/// Environment the main stack's tooling reads, which must not leak into the
/// example's (its stack gets its own state and cache under its own root).
const SCRUBBED: [&str; 5] = [
    "DRR_STATE_DIR",
    "DRR_CACHE_DIR",
    "DRR_BACKEND",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_BUILD_DIR",
];

/// The example workspace, where its binaries go, and the build directory
/// it shares with this workspace.
struct Example {
    root: PathBuf,
    target: PathBuf,
    build_dir: PathBuf,
}

impl Example {
    fn new() -> Example {
        let main = xtask::workspace_root();
        let (main_target, build_dir) = drr_stack::testing::cargo_dirs(&main);
        Example {
            root: main.join("examples").join("adopt"),
            target: main_target.join("adopt"),
            build_dir,
        }
    }

    fn scrubbed(&self, program: impl Into<OsString>) -> Command {
        let mut command = Command::new(program.into());
        command.current_dir(&self.root);
        for key in SCRUBBED {
            command.env_remove(key);
        }
        command.env("CARGO_TARGET_DIR", &self.target);
        command.env("CARGO_BUILD_BUILD_DIR", &self.build_dir);
        command
    }

    /// `cargo xtask ARGS` in the example, through its own alias.
    fn cargo_xtask(&self, args: &[&str]) -> Command {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut command = self.scrubbed(cargo);
        command.arg("xtask").args(args);
        command
    }

    /// The example's built `xtask` binary with ARGS: what `cargo xtask ARGS`
    /// runs, without cargo's freshness check in timing-sensitive steps.
    fn xtask(&self, args: &[&str]) -> Command {
        let mut command = self.scrubbed(self.target.join("debug").join("xtask"));
        command.args(args);
        command
    }
}

/// Runs `command`, fails the test with its output unless it exits 0, and
/// returns its stdout.
fn ok(what: &str, command: &mut Command) -> String {
    let output = run(what, command);
    assert!(
        output.status.success(),
        "`{what}` failed ({}):\n{}",
        output.status,
        text(&output)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn run(what: &str, command: &mut Command) -> Output {
    eprintln!("adopt: {what}");
    command
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{what}`: {e}"))
}

fn text(output: &Output) -> String {
    format!(
        "--- stdout\n{}--- stderr\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// One SQL statement through `cargo xtask psql NODE`, unaligned, tuples only.
fn psql(example: &Example, node: &str, sql: &str) -> String {
    let what = format!("psql {node}: {sql}");
    ok(
        &what,
        &mut example.xtask(&[
            "psql",
            node,
            "--",
            "-XAtq",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ]),
    )
    .trim()
    .to_owned()
}

/// Polls `sql` on `node` until it prints `want`; returns when it did.
fn wait_for(example: &Example, node: &str, sql: &str, want: &str, within: Duration) -> Instant {
    let start = Instant::now();
    loop {
        let mut command = example.xtask(&["psql", node, "--", "-XAtq", "-c", sql]);
        let output = command.stderr(Stdio::null()).output();
        if let Ok(output) = output
            && String::from_utf8_lossy(&output.stdout).trim() == want
        {
            return Instant::now();
        }
        assert!(
            start.elapsed() < within,
            "`{sql}` on {node} did not print {want} within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Destroys the example's stack when the test ends, passed or failed.
struct Destroy<'a>(&'a Example);

impl Drop for Destroy<'_> {
    fn drop(&mut self) {
        let output = run("destroy --yes", &mut self.0.xtask(&["destroy", "--yes"]));
        if !output.status.success() {
            eprintln!(
                "adopt: cannot destroy the example's stack; run `cargo xtask destroy --yes` in examples/adopt\n{}",
                text(&output)
            );
        }
    }
}

#[test]
fn another_workspace_gets_the_stack_commands_from_drr_stack() {
    let started = Instant::now();
    let example = Example::new();
    eprintln!(
        "adopt: building examples/adopt's cargo xtask into {} (dependencies shared with {})",
        example.target.display(),
        example.build_dir.display()
    );
    let status = example
        .cargo_xtask(&["gen", "--check"])
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .status()
        .expect("cannot run cargo");
    assert!(
        status.success(),
        "`cargo xtask gen --check` in examples/adopt failed ({status}); \
         if compose/ drifted, run `cargo xtask gen` there"
    );
    eprintln!("adopt: built and checked in {:?}", started.elapsed());

    let _destroy = Destroy(&example);
    ok("cargo xtask up", &mut example.cargo_xtask(&["up"]));
    check_state_dir(&example);
    let status = ok("status", &mut example.xtask(&["status"]));
    for node in ["primary", "near", "far"] {
        assert!(status.contains(node), "status lists {node}:\n{status}");
    }
    let env = ok("env", &mut example.xtask(&["env"]));
    for expected in [
        "DRR_PRIMARY_URL='postgres://shop:shop-pass@127.0.0.1:15432/shop'",
        "127.0.0.1:15433/shop,postgres://shop:shop-pass@127.0.0.1:15434/shop'",
        "DRR_REPLICA_DELAYS_MS='200,3000'",
    ] {
        assert!(env.contains(expected), "env prints {expected}:\n{env}");
    }

    lag_is_real(&example);
    probe_measures_both_delays(&example);
    delay_pause_and_resume(&example);

    eprintln!(
        "adopt: cargo xtask test (builds the app on drr-core and runs its test against the stack)"
    );
    ok("cargo xtask test", &mut example.cargo_xtask(&["test"]));

    each_workspace_runs_its_own_xtask(&example);

    ok("down", &mut example.xtask(&["down"]));
    let after = run("status after down", &mut example.xtask(&["status"]));
    assert!(
        !after.status.success(),
        "status exits non-zero once the stack is down"
    );
    eprintln!("adopt: done in {:?}", started.elapsed());
}

/// After the example's builds, which share this workspace's build
/// directory, each workspace's `xtask` binary is still its own: this one's
/// prints this workspace's ports, the example's its own.
fn each_workspace_runs_its_own_xtask(example: &Example) {
    let ours = ok(
        "this workspace's xtask env",
        Command::new(env!("CARGO_BIN_EXE_xtask"))
            .arg("env")
            .current_dir(xtask::workspace_root()),
    );
    assert!(
        ours.contains("@127.0.0.1:5432/drr'"),
        "this workspace's xtask prints another stack:\n{ours}"
    );
    let theirs = ok("example's xtask env", &mut example.xtask(&["env"]));
    assert!(
        theirs.contains("@127.0.0.1:15432/shop'"),
        "the example's xtask prints another stack:\n{theirs}"
    );
}

/// The example's state lives under its own root (or its own /var/tmp
/// directory when the server user cannot reach it), never in the main
/// stack's `target/drr/drr`.
fn check_state_dir(example: &Example) {
    let own = example.root.join("target/drr/adopt/nodes/primary");
    if own.is_dir() {
        return;
    }
    let elsewhere = std::fs::read_dir("/var/tmp")
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| e.path().join("adopt/nodes/primary").is_dir());
    assert!(
        elsewhere,
        "the example's state is neither in {} nor in /var/tmp/drr-*/adopt",
        own.display()
    );
}

/// A row committed on the primary is invisible on `far` before its delay
/// and visible after it.
fn lag_is_real(example: &Example) {
    psql(
        example,
        "primary",
        "CREATE TABLE IF NOT EXISTS adopt_lag (marker bigint PRIMARY KEY)",
    );
    // DDL is delayed too: wait until `far` has the table.
    let exists = "SELECT count(*) FROM pg_tables WHERE tablename = 'adopt_lag'";
    wait_for(example, "far", exists, "1", Duration::from_secs(30));

    let marker = fresh_marker();
    let query = format!("SELECT count(*) FROM adopt_lag WHERE marker = {marker}");
    let written = Instant::now();
    psql(
        example,
        "primary",
        &format!("INSERT INTO adopt_lag VALUES ({marker})"),
    );
    let early = psql(example, "far", &query);
    let checked = written.elapsed();
    assert!(
        checked < Duration::from_millis(FAR_MS),
        "the check took {checked:?}, longer than far's delay: the machine is too slow to tell"
    );
    assert_eq!(early, "0", "far shows the row {checked:?} after the write");

    let near = wait_for(example, "near", &query, "1", Duration::from_secs(30)) - written;
    let far = wait_for(example, "far", &query, "1", Duration::from_secs(30)) - written;
    eprintln!("adopt: the row showed on near after {near:?}, on far after {far:?}");
    assert!(
        far >= Duration::from_millis(FAR_MS),
        "far showed the row after {far:?}, before its {FAR_MS} ms delay"
    );
    assert!(
        far < Duration::from_millis(FAR_MS + 10_000),
        "far took {far:?} to show the row"
    );
    assert!(near < far, "near ({near:?}) is ahead of far ({far:?})");
}

/// A marker no earlier run used: microseconds since the epoch.
fn fresh_marker() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_micros() as i64)
}

/// `probe --json` sees each replica's own delay.
fn probe_measures_both_delays(example: &Example) {
    let json = ok(
        "probe --duration 2s --json",
        &mut example.xtask(&["probe", "--duration", "2s", "--json", "--quiet"]),
    );
    let report: serde_json::Value =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("probe prints JSON ({e}):\n{json}"));
    let min_lag = |name: &str| {
        report["replicas"]
            .as_array()
            .and_then(|all| all.iter().find(|r| r["name"] == name))
            .and_then(|r| r["lag"]["min"].as_f64())
            .unwrap_or_else(|| panic!("probe reports a lag for {name}:\n{json}"))
    };
    let (near, far) = (min_lag("near"), min_lag("far"));
    eprintln!("adopt: probe: near at least {near:.0} ms, far at least {far:.0} ms behind");
    assert!(
        near >= NEAR_MS as f64 * 0.9,
        "near lags {near} ms, its delay is {NEAR_MS} ms"
    );
    assert!(
        far >= FAR_MS as f64 * 0.9,
        "far lags {far} ms, its delay is {FAR_MS} ms"
    );
}

/// `delay` changes and resets one replica; `pause` stops replay on `near`
/// until `resume`.
fn delay_pause_and_resume(example: &Example) {
    let changed = ok(
        "delay 1s --replica far",
        &mut example.xtask(&["delay", "1s", "--replica", "far"]),
    );
    assert!(changed.contains("far: 1000 ms"), "{changed}");
    let reset = ok("delay --reset", &mut example.xtask(&["delay", "--reset"]));
    assert!(reset.contains("far: 3000 ms"), "{reset}");
    assert!(reset.contains("near: 200 ms"), "{reset}");

    ok(
        "pause --replica near",
        &mut example.xtask(&["pause", "--replica", "near"]),
    );
    let marker = -fresh_marker();
    let query = format!("SELECT count(*) FROM adopt_lag WHERE marker = {marker}");
    psql(
        example,
        "primary",
        &format!("INSERT INTO adopt_lag VALUES ({marker})"),
    );
    std::thread::sleep(Duration::from_millis(NEAR_MS * 5));
    assert_eq!(
        psql(example, "near", &query),
        "0",
        "a paused replica replays nothing"
    );
    ok("resume", &mut example.xtask(&["resume"]));
    wait_for(example, "near", &query, "1", Duration::from_secs(30));
}
