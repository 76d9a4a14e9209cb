//! `probe` against real replicas: every replica's median visibility lag
//! lies between its configured delay and 100 ms more, on the running
//! default stack (`cargo xtask up`) and on a test stack of its own with
//! 100 ms, 1 s and 3 s delays.
//!
//! Fails, never skips, when the default stack is not running.
//! `DRR_PROBE_DURATION` and `DRR_PROBE_INTERVAL` (humantime, e.g. `20s`,
//! `500ms`) lengthen the runs for accuracy measurements; with
//! `DRR_PROBE_OUT=DIR` each test also writes its report as `DIR/NAME.json`
//! and its chart as `DIR/NAME.svg`.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use drr_stack::probe::{self, ProbeReport, summary_table};
use drr_stack::secrets::Secrets;
use drr_stack::spec::default_spec;

const HOW_TO_RUN: &str = "this test needs the local Postgres stack: \
    run the tests with `cargo xtask test`, or start the stack with `cargo xtask up`";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// The checkout's secrets, read without generating missing ones (a missing
/// file means the stack was never brought up here).
fn secrets() -> Secrets {
    let dir = workspace_root().join(".drr");
    if !dir.join("superuser-password").exists() {
        panic!("{} has no superuser-password; {HOW_TO_RUN}", dir.display());
    }
    Secrets::load_or_create(&dir).unwrap_or_else(|e| panic!("{e:#}; {HOW_TO_RUN}"))
}

fn env_duration(name: &str, default: Duration) -> Duration {
    match std::env::var(name) {
        Ok(text) => humantime::parse_duration(&text)
            .unwrap_or_else(|e| panic!("{name}={text:?} is not a duration (e.g. `20s`): {e}")),
        Err(_) => default,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn median_lag_is_the_configured_delay() {
    let spec = default_spec();
    let secrets = secrets();
    let duration = env_duration("DRR_PROBE_DURATION", Duration::from_secs(3));
    let interval = env_duration("DRR_PROBE_INTERVAL", Duration::from_millis(200));
    let report = probe::measure(&spec, &secrets, duration, interval, |_| {})
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{HOW_TO_RUN}"));
    check(&report, "default-stack");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn median_lag_is_the_configured_delay_for_short_and_long_delays() {
    let stack = support::TempStack::up(support::spec(&[100, 1000, 3000])).await;
    let duration = env_duration("DRR_PROBE_DURATION", Duration::from_secs(4));
    let interval = env_duration("DRR_PROBE_INTERVAL", Duration::from_millis(250));
    let report = probe::measure(stack.spec(), &stack.secrets(), duration, interval, |_| {})
        .await
        .expect("probe of the test stack");
    assert_eq!(report.replicas.len(), 3);
    check(&report, "three-delays");
}

/// Prints the summary, saves the report when asked, and checks every
/// replica saw every marker with a median lag in [delay, delay + 100 ms].
fn check(report: &ProbeReport, name: &str) {
    println!("{}", summary_table(report));
    if let Ok(dir) = std::env::var("DRR_PROBE_OUT") {
        let dir = Path::new(&dir);
        std::fs::write(
            dir.join(format!("{name}.svg")),
            probe::render_svg(report).unwrap(),
        )
        .unwrap();
        let json = serde_json::to_string_pretty(report).unwrap();
        std::fs::write(dir.join(format!("{name}.json")), json).unwrap();
    }
    for replica in &report.replicas {
        assert!(
            !replica.paused(),
            "replay on {} is paused; run `cargo xtask resume`",
            replica.name
        );
        assert!(
            replica.unseen.is_empty(),
            "{} never showed markers {:?}",
            replica.name,
            replica.unseen
        );
        assert_eq!(replica.samples.len() as u32, report.markers);
        // The lower bound counts from before each write was sent (the
        // commit comes after it), the upper one from its return: under load
        // a write can return long after its commit, and only these bounds
        // hold whatever the load.
        let from_sent: Vec<f64> = replica
            .samples
            .iter()
            .map(|s| s.lag_ms + s.write_ms)
            .collect();
        let from_sent = probe::Summary::of(&from_sent).expect("samples");
        let lag = replica.lag.expect("every marker was seen");
        assert!(
            from_sent.p50 >= replica.delay_ms && lag.p50 <= replica.delay_ms + 100.0,
            "{}: p50 lag {:.1} ms from sending ({:.1} ms from the return) is not within [{}, {}] ms",
            replica.name,
            from_sent.p50,
            lag.p50,
            replica.delay_ms,
            replica.delay_ms + 100.0
        );
    }
}

#[tokio::test]
async fn a_stack_that_is_down_is_named_with_the_next_step() {
    // Free ports with nothing listening: the stack is not running.
    let spec = support::spec(&[100]);
    let secrets = Secrets {
        superuser: "postgres".to_owned(),
        superuser_password: "unused".to_owned(),
        replication_password: "unused".to_owned(),
    };
    let err = probe::measure(
        &spec,
        &secrets,
        Duration::from_secs(1),
        Duration::from_millis(100),
        |_| {},
    )
    .await
    .expect_err("nothing listens on the spec's ports");
    let message = format!("{err:#}");
    assert!(message.contains("node `primary`"), "{message}");
    assert!(message.contains("cargo xtask up"), "{message}");
}
