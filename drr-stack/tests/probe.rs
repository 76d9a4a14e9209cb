//! `probe` against the running default stack (`cargo xtask up`): every
//! replica's median visibility lag lies between its configured delay and
//! 100 ms more.
//!
//! Fails, never skips, when the stack is not running. `DRR_PROBE_DURATION`
//! and `DRR_PROBE_INTERVAL` (humantime, e.g. `20s`, `500ms`) lengthen the run
//! for accuracy measurements; `DRR_PROBE_SVG` also writes the chart there.

use std::path::{Path, PathBuf};
use std::time::Duration;

use drr_stack::probe::{self, summary_table};
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
    println!("{}", summary_table(&report));
    if let Ok(path) = std::env::var("DRR_PROBE_SVG") {
        std::fs::write(&path, probe::render_svg(&report).unwrap()).unwrap();
    }

    assert_eq!(report.replicas.len(), spec.replicas.len());
    for replica in &report.replicas {
        assert!(
            !replica.paused(),
            "replay on {} is {}; run `cargo xtask resume`",
            replica.name,
            replica.pause_state
        );
        assert!(
            replica.unseen.is_empty(),
            "{} never showed markers {:?}",
            replica.name,
            replica.unseen
        );
        assert_eq!(replica.samples.len() as u32, report.markers);
        let lag = replica.lag.expect("every marker was seen");
        assert!(
            lag.p50 >= replica.delay_ms && lag.p50 <= replica.delay_ms + 100.0,
            "{}: p50 lag {:.1} ms is not within [{}, {}] ms",
            replica.name,
            lag.p50,
            replica.delay_ms,
            replica.delay_ms + 100.0
        );
    }
}
