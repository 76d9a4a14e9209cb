//! The harness part: how drr's test harness behaves at scale, on one
//! throw-away stack with one replica 1 s behind (a suite that drains the
//! pool pays about a delay per test, so the spec's 3 s would make this part
//! take three times as long):
//!
//! - per-test database cost vs suite size and vs concurrent test processes:
//!   drr-bench's `suite` bench, one process per test as nextest runs them;
//! - `wait_for_replicas` overshoot while pgbench writes on the primary at
//!   each of [`RATES_TPS`] (not with `quick`): drr-bench's `harness` bench
//!   with `DRR_BENCH_LOAD_TPS`, charted against the rate.

use std::path::Path;

use anyhow::{Context, Result};

use super::load::{self, Load, LoadCurve, RATES_TPS};
use super::report::Results;
use crate::host::Binaries;
use crate::project::Project;
use crate::testing::TempStack;

/// The replica's delay.
const DELAY_MS: u64 = 1000;

/// Runs the harness part: the overshoot first (not with `quick`), then the
/// suites.
pub async fn figures(
    project: &Project,
    cache: &Path,
    quick: bool,
    out: &mut Results,
) -> Result<()> {
    let stack = super::stack::up(&[DELAY_MS], cache).await?;
    let secrets = stack.secrets()?;
    let vars = crate::env::vars(stack.spec(), Some(&secrets));
    if !quick {
        overshoot_under_load(project, &stack, out)?;
    }
    let mut suite_vars = vars.clone();
    suite_vars.push(("DRR_BENCH_SUITE", "1".into()));
    super::cargo_bench(project, &["suite"], quick, suite_vars, out)?;
    Ok(())
}

/// `wait_for_replicas` overshoot at each pgbench rate, charted.
fn overshoot_under_load(project: &Project, stack: &TempStack, out: &mut Results) -> Result<()> {
    let spec = stack.spec();
    let secrets = stack.secrets()?;
    let vars = crate::env::vars(spec, Some(&secrets));
    let bins = Binaries::find(spec.postgres_major)?;
    load::init(&bins, spec, &secrets)?;
    let mut curve = LoadCurve::default();
    for tps in RATES_TPS {
        let running = Load::start(&bins, spec, &secrets, tps)?;
        let mut load_vars = vars.clone();
        load_vars.push(("DRR_BENCH_LOAD_TPS", tps.to_string()));
        let before = out.figures.len();
        super::cargo_bench(project, &["harness"], false, load_vars, out)?;
        running
            .stop()
            .with_context(|| format!("pgbench at {tps} TPS failed"))?;
        for figure in &out.figures[before..] {
            curve.add(tps, &figure.samples);
        }
    }
    out.charts.push(curve.chart(
        "growth-overshoot-vs-load.svg",
        format!("wait_for_replicas overshoot vs pgbench rate (replica {DELAY_MS} ms behind)"),
        "return − first visible on the replica (ms)",
    ));
    Ok(())
}
