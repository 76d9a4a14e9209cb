//! Lag figures: visibility lag minus the configured delay for 0, 100 ms,
//! 1 s and 3 s, measured by drr's probe, and the `psql`-polling loop users
//! write today, measured alternately with the probe on the same replica;
//! with `load`, the same error while pgbench writes on the primary at
//! several rates (a growth curve: does the delay hold when replay is busy).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::load::{self, Load, LoadCurve, RATES_TPS};
use super::report::{Comparison, Figure, Results};
use crate::command::Command;
use crate::host::Binaries;
use crate::pg;
use crate::secrets::Secrets;

const DELAYS_MS: [u64; 4] = [0, 100, 1000, 3000];

/// Runs the lag figures; `duration` is how long the probe writes markers.
/// With `load`, also measures the error under pgbench load and charts it.
pub async fn figures(
    cache: &Path,
    duration: Duration,
    baseline_rounds: usize,
    load: bool,
    out: &mut Results,
) -> Result<()> {
    let stack = super::stack::up(&DELAYS_MS, cache).await?;
    let spec = stack.spec();
    let secrets = stack.secrets()?;
    let report =
        crate::probe::measure(spec, &secrets, duration, Duration::from_millis(200), |_| {}).await?;
    let mut curve = LoadCurve::default();
    for replica in &report.replicas {
        let errors: Vec<f64> = replica.samples.iter().map(|s| s.error_ms).collect();
        curve.add(0, &errors);
        out.figures.push(Figure {
            group: "2. lag accuracy".into(),
            name: format!("visibility lag − configured, delay {} ms", replica.delay_ms),
            unit: "ms".into(),
            samples: errors,
        });
    }
    let windows: Vec<f64> = report
        .replicas
        .iter()
        .flat_map(|r| r.samples.iter().map(|s| s.window_ms))
        .collect();
    out.figures.push(Figure {
        group: "2. lag accuracy".into(),
        name: "probe's own measuring error (poll window)".into(),
        unit: "ms".into(),
        samples: windows,
    });

    // Side by side on the 1 s replica: one probe marker, then one psql loop sample.
    let mut one = spec.clone();
    one.replicas
        .retain(|r| r.delay == Duration::from_millis(1000));
    let bins = Binaries::find(spec.postgres_major)?;
    let (mut probe_errors, mut psql_errors) = (Vec::new(), Vec::new());
    let admin = pg::connect(spec, &spec.primary, pg::Login::admin(&secrets)).await?;
    admin
        .batch_execute("CREATE TABLE IF NOT EXISTS bench_psql (id int PRIMARY KEY)")
        .await?;
    for round in 0..baseline_rounds {
        let single = crate::probe::measure(
            &one,
            &secrets,
            Duration::from_millis(200),
            Duration::from_millis(200),
            |_| {},
        )
        .await?;
        probe_errors.extend(
            single
                .replicas
                .iter()
                .flat_map(|r| r.samples.iter().map(|s| s.error_ms)),
        );
        psql_errors.push(psql_loop_sample(&bins, &one, &secrets, round as i32)? - 1000.0);
    }
    if load {
        load::init(&bins, spec, &secrets)?;
        // Rate 0 is the probe's own run above.
        for tps in RATES_TPS.into_iter().filter(|&tps| tps > 0) {
            let loaded = under_load(&bins, spec, &secrets, tps, duration).await?;
            for replica in &loaded.replicas {
                let errors: Vec<f64> = replica.samples.iter().map(|s| s.error_ms).collect();
                curve.add(tps, &errors);
                out.figures.push(Figure {
                    group: "9. growth: lag error vs write load".into(),
                    name: format!(
                        "visibility lag − configured, delay {} ms, pgbench -R {tps}",
                        replica.delay_ms
                    ),
                    unit: "ms".into(),
                    samples: errors,
                });
            }
        }
        out.charts.push(curve.chart(
            "growth-lag-vs-load.svg",
            format!(
                "visibility lag − configured delay vs pgbench rate ({} s probes, all replicas)",
                duration.as_secs()
            ),
            "error (ms)",
        ));
    }
    out.comparisons.push(Comparison {
        group: "6. against what users have today".into(),
        name: "measuring a 1000 ms lag: error (measured − configured)".into(),
        a: Figure {
            group: String::new(),
            name: "drr probe".into(),
            unit: "ms".into(),
            samples: probe_errors,
        },
        b: Figure {
            group: String::new(),
            name: "psql polling loop".into(),
            unit: "ms".into(),
            samples: psql_errors,
        },
    });
    Ok(())
}

/// The probe for `duration` while pgbench writes at `tps` on the primary.
async fn under_load(
    bins: &Binaries,
    spec: &crate::spec::StackSpec,
    secrets: &Secrets,
    tps: u32,
    duration: Duration,
) -> Result<crate::probe::ProbeReport> {
    let load = Load::start(bins, spec, secrets, tps)?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let probe =
        crate::probe::measure(spec, secrets, duration, Duration::from_millis(200), |_| {}).await;
    load.stop()
        .with_context(|| format!("pgbench at {tps} TPS failed"))?;
    probe
}

/// The loop of the original tool's `time-test.sh`: insert with psql, then
/// run psql against the replica until the row shows. Returns the lag in ms.
fn psql_loop_sample(
    bins: &Binaries,
    spec: &crate::spec::StackSpec,
    secrets: &Secrets,
    id: i32,
) -> Result<f64> {
    let psql = |port: u16, sql: String| {
        Command::new(bins.path("psql"))
            .args([
                "-X",
                "-tA",
                "-h",
                &spec.host().to_string(),
                "-p",
                &port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-c",
                &sql,
            ])
            .env("PGPASSWORD", &secrets.superuser_password)
            .read()
    };
    psql(
        spec.primary.port,
        format!("INSERT INTO bench_psql VALUES ({id})"),
    )?;
    let start = Instant::now();
    let replica = spec.replicas.first().context("no replica to poll")?;
    loop {
        let out = psql(
            replica.node.port,
            format!("SELECT count(*) FROM bench_psql WHERE id = {id}"),
        )
        .unwrap_or_default();
        if out.trim() == "1" {
            return Ok(start.elapsed().as_secs_f64() * 1000.0);
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(30),
            "the psql loop never saw row {id}"
        );
    }
}
