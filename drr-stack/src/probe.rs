//! `cargo xtask probe`: measures how long a write on the primary takes to
//! become visible on each replica, the successor of the original tool's
//! `time-test.sh`.
//!
//! The probe writes numbered marker rows into `drr_probe` (database
//! `postgres` on the primary, one random run id per probe so that
//! concurrent probes never collide) at a fixed interval, and polls every
//! replica on its own connection, every millisecond or two while a marker is
//! due, for the highest visible marker. All timestamps come from this
//! process's monotonic clock; see [`MeasuringError`] for how precise a
//! sample is. It talks to the nodes' published ports over TCP, so it works
//! the same for the native and the compose backend.
//!
//! [`run`] is the command (live lines, summary, `--json`, `--svg`);
//! [`measure`] is the same measurement without output, for benchmarks and
//! tests with their own spec. Summaries, formatting and the chart are pure
//! functions of a [`ProbeReport`].

mod collect;
mod measure;
mod report;
mod svg;
mod tasks;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};

pub use measure::{marker_count, measure};
pub use report::{
    MeasuringError, ProbeReport, ReplicaReport, Sample, Summary, live_line, percentile,
    summary_table,
};
pub use svg::render as render_svg;

use crate::project::Project;
use crate::secrets::Secrets;

/// What `cargo xtask probe` was asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeOptions {
    /// How long to write markers.
    pub duration: Duration,
    /// Time between marker writes.
    pub interval: Duration,
    /// Print the report as JSON on stdout instead of lines and a table.
    pub json: bool,
    /// Also draw lag over time per replica into this SVG file.
    pub svg: Option<PathBuf>,
    /// No live lines (the summary or JSON is still printed).
    pub quiet: bool,
}

impl Default for ProbeOptions {
    /// The command line's defaults: 10 s, a marker every 500 ms.
    fn default() -> Self {
        ProbeOptions {
            duration: Duration::from_secs(10),
            interval: Duration::from_millis(500),
            json: false,
            svg: None,
            quiet: false,
        }
    }
}

/// Probes the project's running stack: prints a live line per sample
/// (unless `json` or `quiet`), then the summary table, or the report as
/// JSON with `json`; writes the SVG when asked; returns the report.
pub async fn run(
    project: &Project,
    secrets: &Secrets,
    options: &ProbeOptions,
) -> Result<ProbeReport> {
    // The roles the nodes play now: after a failover, another node writes.
    let runtime = crate::topology::discover(project.spec(), secrets).await?;
    let spec = &runtime;
    let live = !options.json && !options.quiet;
    let width = spec
        .replicas
        .iter()
        .map(|r| r.node.name.len())
        .max()
        .unwrap_or(0);
    if live {
        eprintln!(
            "probing stack `{}` for {}: a marker every {} on `{}`, polled on {}",
            spec.name,
            humantime::format_duration(options.duration),
            humantime::format_duration(options.interval),
            spec.primary.name,
            spec.replicas
                .iter()
                .map(|r| format!("`{}`", r.node.name))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let report = measure(
        spec,
        secrets,
        options.duration,
        options.interval,
        |sample| {
            if live {
                println!("{}", live_line(sample, width));
            }
        },
    )
    .await?;
    if options.json {
        let json =
            serde_json::to_string_pretty(&report).context("cannot serialize the probe report")?;
        println!("{json}");
    } else {
        print!("{}", summary_table(&report));
    }
    if let Some(path) = &options.svg {
        let svg = render_svg(&report)?;
        std::fs::write(path, svg)
            .with_context(|| format!("cannot write the lag chart to {}", path.display()))?;
        if !options.quiet && !options.json {
            eprintln!("wrote {}", path.display());
        }
    }
    Ok(report)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fixed report: two replicas, 3 s and 100 ms delays, one unseen
    /// marker on the second.
    pub(crate) fn report() -> ProbeReport {
        let replica = |name: &str, delay: f64, lags: &[f64]| {
            let samples: Vec<Sample> = lags
                .iter()
                .enumerate()
                .map(|(i, &lag)| Sample {
                    replica: name.to_owned(),
                    marker: i as u32,
                    written_s: i as f64 * 0.5 + 0.001,
                    lag_ms: lag,
                    error_ms: lag - delay,
                    write_ms: 0.8,
                    window_ms: 1.0 + i as f64 * 0.25,
                })
                .collect();
            let all: Vec<f64> = lags.to_vec();
            let lag = Summary::of(&all);
            ReplicaReport {
                name: name.to_owned(),
                delay_ms: delay,
                spec_delay_ms: delay,
                replay: crate::pg::Replay::Running,
                error: lag.map(|l| l.shifted(delay)),
                lag,
                unseen: Vec::new(),
                polls: 40,
                samples,
            }
        };
        let mut fast = replica("replica2", 100.0, &[101.5, 102.0, 103.5]);
        fast.unseen = vec![3];
        fast.spec_delay_ms = 250.0;
        ProbeReport {
            stack: "drr".to_owned(),
            run: 42,
            duration_ms: 2000.0,
            interval_ms: 500.0,
            markers: 4,
            replicas: vec![
                replica("replica1", 3000.0, &[3001.0, 3002.5, 3004.0, 3001.5]),
                fast,
            ],
            measuring_error: MeasuringError {
                window: Summary::of(&[1.0, 1.25, 1.5, 1.75]),
                poll_round_trip: Summary::of(&[0.2, 0.3, 0.25]),
                write_round_trip: Summary::of(&[1.1, 1.3]),
            },
        }
    }

    #[test]
    fn json_shape() {
        let json = serde_json::to_value(report()).unwrap();
        let keys = |v: &serde_json::Value| -> Vec<String> {
            {
                let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
                k.sort();
                k
            }
        };
        assert_eq!(
            keys(&json),
            [
                "duration_ms",
                "interval_ms",
                "markers",
                "measuring_error",
                "replicas",
                "run",
                "stack"
            ]
        );
        let replica = &json["replicas"][0];
        assert_eq!(
            keys(replica),
            [
                "delay_ms",
                "error",
                "lag",
                "name",
                "polls",
                "replay",
                "samples",
                "spec_delay_ms",
                "unseen"
            ]
        );
        assert_eq!(
            keys(&replica["lag"]),
            ["max", "min", "p50", "p95", "p99", "samples"]
        );
        assert_eq!(
            keys(&replica["samples"][0]),
            [
                "error_ms",
                "lag_ms",
                "marker",
                "replica",
                "window_ms",
                "write_ms",
                "written_s"
            ]
        );
        assert_eq!(
            keys(&json["measuring_error"]),
            ["poll_round_trip", "window", "write_round_trip"]
        );
        assert_eq!(replica["error"]["p50"], 1.5);
        assert_eq!(json["replicas"][1]["unseen"], serde_json::json!([3]));
    }
}
