//! Write load on a stack's primary with pgbench, for the growth curves that
//! ask whether a figure holds while replay is busy, and the curve of one
//! figure against the pgbench rate.

use anyhow::{Context, Result};

use super::chart::Chart;
use super::report::stats;
use crate::command::{Background, Command};
use crate::host::Binaries;
use crate::secrets::Secrets;
use crate::spec::StackSpec;

/// pgbench's target rates for the load curves (0 is no load).
pub const RATES_TPS: [u32; 3] = [0, 500, 2000];

/// Runs `pgbench` against the spec's primary as the superuser.
fn pgbench(bins: &Binaries, spec: &StackSpec, secrets: &Secrets, args: &[&str]) -> Command {
    Command::new(bins.path("pgbench"))
        .args([
            "-h",
            &spec.host().to_string(),
            "-p",
            &spec.primary.port.to_string(),
            "-U",
            &secrets.superuser,
        ])
        .args(args)
        .args(["postgres"])
        .env("PGPASSWORD", &secrets.superuser_password)
}

/// Creates pgbench's tables (scale 1) on the primary.
pub fn init(bins: &Binaries, spec: &StackSpec, secrets: &Secrets) -> Result<()> {
    pgbench(bins, spec, secrets, &["-i", "-q", "-s", "1"])
        .read()
        .map(drop)
}

/// pgbench's TPC-B-like writes at a target rate on the primary (4 clients,
/// 2 threads), until stopped; none at rate 0.
pub struct Load(Option<Background>);

impl Load {
    /// Starts writing at `tps` transactions a second (after [`init`]); at
    /// most 30 minutes, should the caller never stop it.
    pub fn start(bins: &Binaries, spec: &StackSpec, secrets: &Secrets, tps: u32) -> Result<Load> {
        if tps == 0 {
            return Ok(Load(None));
        }
        let rate = tps.to_string();
        let args = ["-n", "-c", "4", "-j", "2", "-R", &rate, "-T", "1800"];
        let running = pgbench(bins, spec, secrets, &args)
            .start()
            .with_context(|| format!("cannot start pgbench at {tps} TPS"))?;
        Ok(Load(Some(running)))
    }

    /// Stops the load; an error if pgbench had failed meanwhile.
    pub fn stop(self) -> Result<()> {
        match self.0 {
            Some(running) => running.stop(),
            None => Ok(()),
        }
    }
}

/// Samples of one figure per pgbench rate, drawn as p50 and p99 lines.
#[derive(Default)]
pub struct LoadCurve {
    samples: Vec<(f64, Vec<f64>)>,
}

impl LoadCurve {
    /// Adds samples measured at `tps`.
    pub fn add(&mut self, tps: u32, samples: &[f64]) {
        let tps = f64::from(tps);
        match self.samples.iter_mut().find(|(t, _)| *t == tps) {
            Some((_, all)) => all.extend_from_slice(samples),
            None => self.samples.push((tps, samples.to_vec())),
        }
    }

    /// The chart: `file`, `title`, and what y is.
    pub fn chart(&self, file: &str, title: String, y_desc: &str) -> Chart {
        let series = |name: &str, pick: fn((f64, f64, f64, f64)) -> f64| {
            let points = self
                .samples
                .iter()
                .filter_map(|(tps, samples)| Some((*tps, pick(stats(samples)?))))
                .collect();
            (name.to_owned(), points)
        };
        Chart {
            file: file.into(),
            title,
            x_desc: "pgbench target rate on the primary (transactions/s)".into(),
            y_desc: y_desc.into(),
            series: vec![series("p50", |s| s.0), series("p99", |s| s.1)],
        }
    }
}
