//! Stack figures: cold `up` (template cached and not; spare copies of it
//! ready, alternating with copying it), warm `up`, `down`, `destroy`, each
//! split by step, and the hand-written `pg_ctl`/`pg_basebackup` script
//! users have today, measured alternately with drr's cold `up`.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::chart::Chart;
use super::report::{Comparison, Figure, Results, stats};
use crate::command::Command;
use crate::host::{Binaries, ServerUser};
use crate::native::Native;
use crate::progress::Progress;
use crate::spec::StackSpec;
use crate::testing::{TempStack, free_ports, scratch_dir};

const BASELINE_SCRIPT: &str = include_str!("baseline-up.sh");

/// A throw-away stack in `cache`, one replica per delay (in
/// milliseconds), up.
pub async fn up(delays_ms: &[u64], cache: &Path) -> Result<TempStack> {
    let stack = TempStack::with_cache(spec(delays_ms)?, cache)?;
    stack.up().await?;
    Ok(stack)
}

/// A spec with one replica per delay (in milliseconds), on free ports.
pub fn spec(delays_ms: &[u64]) -> Result<StackSpec> {
    let delays: Vec<Duration> = delays_ms
        .iter()
        .copied()
        .map(Duration::from_millis)
        .collect();
    crate::testing::spec(&delays)
}

/// Which part of `up` a progress step belongs to.
fn step_kind(label: &str) -> &'static str {
    if label.starts_with("template") {
        "template (initdb + roles, cache miss only)"
    } else if label.starts_with("copy template") || label.starts_with("base backup") {
        "copy template (or take spare copies) / base backup"
    } else if label.starts_with("start ") {
        "start servers"
    } else {
        "readiness (logins, streaming)"
    }
}

/// Times one `up` and returns its total and per-kind step times.
async fn timed_up(native: &Native<'_>) -> Result<(f64, Vec<(&'static str, f64)>)> {
    let mut progress = Progress::new(true);
    let start = Instant::now();
    native.up(&mut progress).await?;
    let total = ms(start.elapsed());
    let mut kinds: Vec<(&'static str, f64)> = Vec::new();
    for (label, took) in progress.steps() {
        let kind = step_kind(label);
        match kinds.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, sum)) => *sum += ms(*took),
            None => kinds.push((kind, ms(*took))),
        }
    }
    Ok((total, kinds))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn figure(name: String, unit: &str, samples: Vec<f64>) -> Figure {
    Figure {
        group: "1. stack".into(),
        name,
        unit: unit.into(),
        samples,
    }
}

/// Runs the stack figures with `runs` repetitions each, for each replica
/// count of `sizes`, and charts how cold `up` and its steps grow with it.
pub async fn figures(runs: usize, sizes: &[usize], out: &mut Results) -> Result<()> {
    let bins = Binaries::find(15)?;
    let user = ServerUser::resolve()?;
    let mut growth: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    let mut grow = |series: &str, replicas: usize, samples: &[f64]| {
        let Some((median, ..)) = stats(samples) else {
            return;
        };
        let point = (replicas as f64, median);
        match growth.iter_mut().find(|(name, _)| name == series) {
            Some((_, points)) => points.push(point),
            None => growth.push((series.to_owned(), vec![point])),
        }
    };
    for &replicas in sizes {
        let what = format!(
            "primary + {replicas} replica{}",
            if replicas > 1 { "s" } else { "" }
        );
        let delays = vec![3000; replicas];
        // First up on an empty cache: builds the template.
        let cold_cache = scratch_dir("drr-bench-cache-")?;
        let first = TempStack::with_cache(spec(&delays)?, cold_cache.path())?;
        let (first_total, _) = timed_up(&first.native()?).await?;
        drop(first);
        out.figures.push(figure(
            format!("first up, empty template cache, {what}"),
            "ms",
            vec![first_total],
        ));

        let (mut cold, mut warm, mut down, mut destroy, mut baseline) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut copying = Vec::new();
        let mut steps: Vec<(&'static str, Vec<f64>)> = Vec::new();
        for round in 0..runs {
            // Alternately first: a cold up taking the spare copies the
            // previous destroy prepared, and one copying the template.
            let order = if round % 2 == 0 {
                [true, false]
            } else {
                [false, true]
            };
            for spares in order {
                if !spares {
                    crate::native::discard_spares(cold_cache.path())?;
                }
                let stack = TempStack::with_cache(spec(&delays)?, cold_cache.path())?;
                let native = stack.native()?;
                let (total, kinds) = timed_up(&native).await?;
                if spares {
                    cold.push(total);
                    for (kind, took) in kinds {
                        match steps.iter_mut().find(|(k, _)| *k == kind) {
                            Some((_, v)) => v.push(took),
                            None => steps.push((kind, vec![took])),
                        }
                    }
                    warm.push(timed_up(&native).await?.0);
                    let start = Instant::now();
                    native.down(&mut Progress::new(true))?;
                    down.push(ms(start.elapsed()));
                } else {
                    copying.push(total);
                }
                let start = Instant::now();
                native.destroy(&mut Progress::new(true))?;
                destroy.push(ms(start.elapsed()));
                drop(native);
                drop(stack);
                if replicas == 1 && spares {
                    baseline.push(baseline_up(&bins, user.as_ref())?);
                }
            }
        }
        grow("cold up", replicas, &cold);
        out.figures.push(figure(
            format!("cold up (spare copies ready), {what}"),
            "ms",
            cold.clone(),
        ));
        for (kind, samples) in steps {
            grow(kind, replicas, &samples);
            out.figures.push(figure(
                format!("  cold up step: {kind}, {what}"),
                "ms",
                samples,
            ));
        }
        out.figures.push(figure(
            format!("warm up (already running), {what}"),
            "ms",
            warm,
        ));
        out.figures
            .push(figure(format!("down, {what}"), "ms", down));
        out.figures.push(figure(
            format!("destroy (prepares the next up's spare copies), {what}"),
            "ms",
            destroy,
        ));
        out.comparisons.push(Comparison {
            group: "1. stack".into(),
            name: format!("cold up, {what}"),
            a: figure("spare copies ready".into(), "ms", cold.clone()),
            b: figure("copying the template".into(), "ms", copying),
        });
        if replicas == 1 {
            out.comparisons.push(Comparison {
                group: "6. against what users have today".into(),
                name: "start primary + 1 delayed replica".into(),
                a: figure("drr cold up".into(), "ms", cold),
                b: figure("pg_ctl/pg_basebackup script".into(), "ms", baseline),
            });
        }
    }
    out.charts.push(Chart {
        file: "growth-cold-up.svg".into(),
        title: format!("cold up (template cached) vs replica count, median of {runs} runs"),
        x_desc: "replicas".into(),
        y_desc: "ms".into(),
        series: growth,
    });
    Ok(())
}

/// Runs the baseline script once in a fresh directory; returns its time.
fn baseline_up(bins: &Binaries, user: Option<&ServerUser>) -> Result<f64> {
    let dir = scratch_dir("drr-bench-baseline-")?;
    if let Some(user) = user {
        user.chown(dir.path())?;
    }
    let script = dir.path().join("baseline-up.sh");
    std::fs::write(&script, BASELINE_SCRIPT)?;
    let ports = free_ports(2)?;
    let start = Instant::now();
    let result = Command::new("bash")
        .args([
            script.as_os_str(),
            bins.dir().as_os_str(),
            dir.path().as_os_str(),
        ])
        .args([ports[0].to_string(), ports[1].to_string()])
        .dir(dir.path())
        .as_user(user)
        .read();
    let took = ms(start.elapsed());
    for node in ["replica", "primary"] {
        let data = dir.path().join(node);
        if data.exists() {
            let _ = Command::new(bins.path("pg_ctl"))
                .args(["stop", "-m", "immediate", "-D"])
                .args([data.as_os_str()])
                .as_user(user)
                .read();
        }
    }
    result.context("the baseline script failed")?;
    Ok(took)
}
