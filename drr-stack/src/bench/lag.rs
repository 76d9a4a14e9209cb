//! Lag figures: visibility lag minus the configured delay for 0, 100 ms,
//! 1 s and 3 s, measured by drr's probe, and the `psql`-polling loop users
//! write today, measured alternately with the probe on the same replica.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::report::{Comparison, Figure};
use super::stack::spec;
use crate::command::Command;
use crate::host::Binaries;
use crate::pg;
use crate::secrets::Secrets;
use crate::testing::TempStack;

const DELAYS_MS: [u64; 4] = [0, 100, 1000, 3000];

/// Runs the lag figures; `duration` is how long the probe writes markers.
pub async fn figures(
    cache: &Path,
    duration: Duration,
    baseline_rounds: usize,
    figures: &mut Vec<Figure>,
    comparisons: &mut Vec<Comparison>,
) -> Result<()> {
    let stack = TempStack::with_cache(spec(&DELAYS_MS)?, cache)?;
    stack.up().await?;
    let spec = stack.spec();
    let secrets = stack.secrets()?;
    let report =
        crate::probe::measure(spec, &secrets, duration, Duration::from_millis(200), |_| {}).await?;
    for replica in &report.replicas {
        let errors: Vec<f64> = replica.samples.iter().map(|s| s.error_ms).collect();
        figures.push(Figure {
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
    figures.push(Figure {
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
    comparisons.push(Comparison {
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
