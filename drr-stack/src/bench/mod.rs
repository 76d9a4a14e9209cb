//! `cargo xtask bench`: every performance figure of drr, measured on this
//! machine and written to `target/drr/bench/report.md` and `report.json`.
//!
//! Stack and lag figures are measured here, on throw-away stacks. Figures of
//! the workspace's own benchmarks are collected from `cargo bench`: criterion
//! medians, and any line a benchmark binary prints as
//! `DRR-BENCH {figure as JSON}`, `DRR-BENCH-COMPARISON {comparison}` or
//! `DRR-BENCH-CHART {chart}`.
//! Nothing here asserts a speed; it reports.

mod chart;
mod harness;
mod lag;
mod load;
mod net;
mod peers;
mod pgpool;
mod report;
mod stack;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

pub use report::{
    CHART_LINE, COMPARISON_LINE, Comparison, FIGURE_LINE, Figure, Machine, Report, Results,
};

use crate::command::Command;
use crate::project::Project;

/// A part of the benchmark suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    /// Stack start-up and shutdown, and the hand-written script baseline.
    Stack,
    /// Lag accuracy, and the psql-polling baseline.
    Lag,
    /// The workspace's own `cargo bench` benchmarks.
    Cargo,
    /// The fault proxy's overhead: round trips and throughput through a
    /// client link against direct, alternating.
    Net,
    /// drr against its peers: pgpool-II (throughput, latency, stale reads)
    /// and `#[sqlx::test]` (per-test databases).
    Peers,
    /// The test harness at scale: per-test database cost vs suite size and
    /// vs concurrent test processes, and `wait_for_replicas` overshoot
    /// under pgbench write load.
    Harness,
}

/// How much to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// A smoke run: fewer repetitions, one stack size, short criterion
    /// runs, and `cargo bench` in the dev profile the tests were built in
    /// (no optimised build of the workspace), so CI spends minutes, not a
    /// quarter of an hour; its figures prove the benchmarks run and are not
    /// for comparison.
    pub quick: bool,
    /// Only these parts (all when empty).
    pub only: Vec<Part>,
}

/// Runs every benchmark and writes the report; returns the report's path.
pub async fn run(project: &Project, options: BenchOptions) -> Result<std::path::PathBuf> {
    // Two runs still alternate the sides of each comparison once each way.
    let (runs, probe_for, rounds) = if options.quick {
        (2, Duration::from_secs(3), 3)
    } else {
        (9, Duration::from_secs(20), 10)
    };
    let mut out = Results::default();
    let wanted = |part| options.only.is_empty() || options.only.contains(&part);
    let (run_started, load_at_start) = (Instant::now(), load_average());
    let mut took = Vec::new();
    // The lag and cargo parts' stacks share one template cluster.
    let cache = crate::testing::scratch_dir("drr-bench-cache-")?;
    if wanted(Part::Stack) {
        let started = part_started(&format!("stack start-up ({runs} runs each)"));
        // One replica: the size with the hand-written script to compare.
        let sizes: &[usize] = if options.quick { &[1] } else { &[1, 2, 4, 8] };
        stack::figures(runs, sizes, &mut out).await?;
        took.push(part_done("stack", started));
    }
    if wanted(Part::Lag) {
        let started = part_started("lag accuracy");
        lag::figures(cache.path(), probe_for, rounds, !options.quick, &mut out).await?;
        took.push(part_done("lag", started));
    }
    if wanted(Part::Net) {
        let started = part_started("the fault proxy's overhead");
        net::figures(cache.path(), rounds, &mut out).await?;
        took.push(part_done("net", started));
    }
    if wanted(Part::Cargo) {
        let started = part_started("the workspace's benchmarks (cargo bench)");
        workspace_benches(project, cache.path(), options.quick, &mut out).await?;
        took.push(part_done("cargo", started));
    }
    if wanted(Part::Peers) {
        let started = part_started("peers: pgpool-II and #[sqlx::test]");
        peers::figures(project, cache.path(), options.quick, &mut out).await?;
        took.push(part_done("peers", started));
    }
    if wanted(Part::Harness) {
        let started = part_started("the test harness at scale");
        harness::figures(project, cache.path(), options.quick, &mut out).await?;
        took.push(part_done("harness", started));
    }
    took.push(("total".to_owned(), run_started.elapsed().as_secs_f64()));
    let report = Report {
        machine: Machine {
            quick: options.quick,
            load: format!(
                "{load_at_start} at the start, {} at the end",
                load_average()
            ),
            ..machine(project)?
        },
        figures: out.figures,
        comparisons: out.comparisons,
        charts: out.charts,
        took,
    };
    let dir = project.root().join("target").join("drr").join("bench");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::write(
        dir.join("report.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    for chart in &report.charts {
        std::fs::write(dir.join(&chart.file), chart.svg()?)?;
    }
    let markdown = report.markdown();
    std::fs::write(dir.join("report.md"), &markdown)?;
    print!("{markdown}");
    Ok(dir.join("report.md"))
}

fn part_started(what: &str) -> Instant {
    eprintln!("bench: {what}");
    Instant::now()
}

/// Says how long a part took, and returns its name and seconds.
fn part_done(part: &str, started: Instant) -> (String, f64) {
    let seconds = started.elapsed().as_secs_f64();
    eprintln!("bench: done in {seconds:.1} s");
    (part.to_owned(), seconds)
}

/// The load average over 1, 5 and 15 minutes, as `/proc/loadavg` says.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or_else(
        |_| "unknown".to_owned(),
        |text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        },
    )
}

/// Runs `cargo bench` for the workspace against a throw-away stack (one
/// replica, 3 s behind like the spec's default; 0.5 s with `quick`) and
/// collects what it reports.
async fn workspace_benches(
    project: &Project,
    cache: &Path,
    quick: bool,
    out: &mut Results,
) -> Result<()> {
    let delay_ms = if quick { 500 } else { 3000 };
    let bench_stack = stack::up(&[delay_ms], cache).await?;
    let secrets = bench_stack.secrets()?;
    let vars = crate::env::vars(bench_stack.spec(), Some(&secrets));
    cargo_bench(project, &["*"], quick, vars, out)?;
    criterion_figures(
        &project.root().join("target").join("criterion"),
        &mut out.figures,
    );
    Ok(())
}

/// Runs `cargo bench` for the workspace's `benches` (names or `*`) with
/// `vars` set and collects the `DRR-BENCH` lines they print.
fn cargo_bench(
    project: &Project,
    benches: &[&str],
    quick: bool,
    vars: Vec<(&'static str, String)>,
    out: &mut Results,
) -> Result<()> {
    let mut args = vec!["bench", "--workspace"];
    if quick {
        // Reuses what `cargo build --tests` compiled: minutes less in CI.
        args.extend(["--profile", "dev"]);
    }
    for bench in benches {
        args.extend(["--bench", bench]);
    }
    args.extend(["--", "--noplot"]);
    if quick {
        args.extend([
            "--warm-up-time",
            "0.1",
            "--measurement-time",
            "0.4",
            "--nresamples",
            "1000",
        ]);
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo).args(args).dir(project.root());
    for (key, value) in vars {
        command = command.env(key, value);
    }
    if quick {
        command = command.env("DRR_BENCH_QUICK", "1");
    }
    let output = command.read_stdout()?;
    for line in output.lines() {
        if let Some(json) = line.strip_prefix(FIGURE_LINE) {
            out.figures.push(
                serde_json::from_str(json).with_context(|| format!("bad figure line: {line}"))?,
            );
        } else if let Some(json) = line.strip_prefix(COMPARISON_LINE) {
            out.comparisons.push(
                serde_json::from_str(json)
                    .with_context(|| format!("bad comparison line: {line}"))?,
            );
        } else if let Some(json) = line.strip_prefix(CHART_LINE) {
            out.charts.push(
                serde_json::from_str(json).with_context(|| format!("bad chart line: {line}"))?,
            );
        }
    }
    Ok(())
}

/// Criterion's per-benchmark medians (`new/estimates.json`), in ns.
fn criterion_figures(dir: &Path, figures: &mut Vec<Figure>) {
    let mut found = Vec::new();
    collect_estimates(dir, dir, &mut found);
    found.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, median_ns, samples) in found {
        let samples = if samples.is_empty() {
            vec![median_ns]
        } else {
            samples
        };
        figures.push(Figure {
            group: "4. router and classifier (criterion)".into(),
            name,
            unit: "ns".into(),
            samples,
        });
    }
}

fn collect_estimates(root: &Path, dir: &Path, out: &mut Vec<(String, f64, Vec<f64>)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        let estimates = path.join("new").join("estimates.json");
        if let Ok(text) = std::fs::read_to_string(&estimates) {
            let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            if let Some(median) = value["median"]["point_estimate"].as_f64() {
                let name = path
                    .strip_prefix(root)
                    .unwrap_or(&path)
                    .display()
                    .to_string();
                let samples = std::fs::read_to_string(path.join("new").join("sample.json"))
                    .ok()
                    .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                    .map(|v| per_iteration(&v))
                    .unwrap_or_default();
                out.push((name, median, samples));
            }
        } else {
            collect_estimates(root, &path, out);
        }
    }
}

/// Criterion's `sample.json`: total times and iteration counts per sample.
fn per_iteration(sample: &serde_json::Value) -> Vec<f64> {
    let (Some(iters), Some(times)) = (sample["iters"].as_array(), sample["times"].as_array())
    else {
        return Vec::new();
    };
    iters
        .iter()
        .zip(times)
        .filter_map(|(i, t)| Some(t.as_f64()? / i.as_f64()?))
        .collect()
}

fn machine(project: &Project) -> Result<Machine> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|r| r.split(':').nth(1))
        })
        .map_or_else(|| "unknown CPU".to_owned(), |s| s.trim().to_owned());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kib: f64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .dir(project.root())
        .read()
        .map_or_else(|_| "unknown".to_owned(), |s| s.trim().to_owned());
    Ok(Machine {
        cpu,
        cores: std::thread::available_parallelism().map_or(1, usize::from),
        memory_gib: kib / 1024.0 / 1024.0,
        postgres: crate::host::Binaries::find(project.spec().postgres_major)?.version,
        commit,
        quick: false,
        load: String::new(),
    })
}
