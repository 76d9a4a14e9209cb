//! The measurement itself: one writer task inserting markers on the primary
//! on a fixed schedule, one poller task per replica on its own connection
//! (both in `tasks`), and a collector that pairs each commit with the first
//! poll that saw it (`collect`).
//!
//! Every timestamp is an [`Instant`] from this process's monotonic clock.
//! A marker's lag runs from its INSERT returning to the end of the first
//! replica query that saw it, so it is an upper bound of the true lag; the
//! previous query (which did not see it) started at most one poll period
//! plus one round trip earlier, and each sample records that window.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_postgres::{Client, Statement};

use super::collect::{Collector, Event};
use super::report::{ProbeReport, Sample};
use super::tasks::{Poller, Writer};
use crate::pg::{self, Login};
use crate::secrets::Secrets;
use crate::spec::{Node, StackSpec};

/// The marker table, in the `postgres` database of the primary.
const CREATE_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS drr_probe (run bigint, marker int, PRIMARY KEY (run, marker))";
const INSERT: &str = "INSERT INTO drr_probe (run, marker) VALUES ($1, $2)";
const DELETE: &str = "DELETE FROM drr_probe WHERE run = $1";

/// Extra wait after the last marker's expected visibility (plus a tenth of
/// the delay) before a replica's missing markers count as unseen.
const MARGIN: Duration = Duration::from_secs(2);

/// Probes `spec`'s running stack for `duration`, writing a marker every
/// `interval`, and calls `on_sample` as each marker becomes visible on each
/// replica. Prints nothing.
///
/// Connects as the superuser to the `postgres` database of every node, so
/// it works the same for native and compose stacks and for custom specs
/// (benchmarks). The run's marker rows are deleted at the end.
pub async fn measure(
    spec: &StackSpec,
    secrets: &Secrets,
    duration: Duration,
    interval: Duration,
    mut on_sample: impl FnMut(&Sample),
) -> Result<ProbeReport> {
    if interval.is_zero() {
        bail!("the probe interval must be above zero; pass e.g. `--interval 500ms`");
    }
    if spec.replicas.is_empty() {
        bail!(
            "stack `{}` has no replicas, so there is nothing to probe; add one to the spec",
            spec.name
        );
    }
    let login = Login::admin(secrets);
    let primary = connect(spec, &spec.primary, login).await?;
    let mut replicas = Vec::new();
    for replica in &spec.replicas {
        let client = connect(spec, &replica.node, login).await?;
        let state = pg::replay_state(&client)
            .await
            .with_context(|| format!("cannot read the replay state of `{}`", replica.node.name))?;
        replicas.push((client, state));
    }
    primary
        .batch_execute(CREATE_TABLE)
        .await
        .context("cannot create the marker table `drr_probe` on the primary")?;
    let insert = primary
        .prepare(INSERT)
        .await
        .context("cannot prepare the marker insert on the primary")?;
    let run = random_run_id()?;
    let primary = Arc::new(primary);
    let probe = Probe {
        spec,
        run,
        duration,
        interval,
        markers: marker_count(duration, interval),
    };
    let result = probe
        .run(Arc::clone(&primary), insert, replicas, &mut on_sample)
        .await;
    let cleanup = primary
        .execute(DELETE, &[&run])
        .await
        .context("cannot delete this probe's marker rows from `drr_probe` on the primary");
    let report = result?;
    cleanup?;
    Ok(report)
}

/// How many markers a probe writes: one at every multiple of `interval`
/// below `duration`, and at least one.
pub fn marker_count(duration: Duration, interval: Duration) -> u32 {
    let n = duration.as_nanos().div_ceil(interval.as_nanos().max(1));
    u32::try_from(n.max(1))
        .unwrap_or(u32::MAX)
        .min(i32::MAX as u32)
}

async fn connect(spec: &StackSpec, node: &Node, login: Login<'_>) -> Result<Client> {
    pg::connect(spec, node, login).await.with_context(|| {
        format!(
            "node `{}` of stack `{}` is not reachable; start the stack with `cargo xtask up`",
            node.name, spec.name
        )
    })
}

fn random_run_id() -> Result<i64> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).context("cannot get random bytes for the probe's run id")?;
    Ok(i64::from_le_bytes(bytes) & i64::MAX)
}

struct Probe<'a> {
    spec: &'a StackSpec,
    run: i64,
    duration: Duration,
    interval: Duration,
    markers: u32,
}

impl Probe<'_> {
    /// Starts the writer and a poller per replica that is not paused, and
    /// feeds their events to the collector until every task has ended.
    async fn run(
        &self,
        primary: Arc<Client>,
        insert: Statement,
        replicas: Vec<(Client, pg::ReplayState)>,
        on_sample: &mut impl FnMut(&Sample),
    ) -> Result<ProbeReport> {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut tasks = JoinSet::new();
        // Give every poller time to start before the first marker is due.
        let t0 = Instant::now() + Duration::from_millis(20);
        let states: Vec<(pg::Replay, Duration)> = replicas
            .iter()
            .map(|(_, state)| (state.replay, Duration::from_millis(state.delay_ms)))
            .collect();
        let mut collector = Collector::new(self.spec, t0, self.markers, states);
        let mut running = 1;
        for (i, (client, state)) in replicas.into_iter().enumerate() {
            if state.replay == pg::Replay::Paused {
                continue;
            }
            let delay = Duration::from_millis(state.delay_ms);
            let poller = Poller {
                replica: i,
                name: self.spec.replicas[i].node.name.clone(),
                client,
                run: self.run,
                t0,
                interval: self.interval,
                markers: self.markers,
                delay,
                deadline: t0 + self.interval * (self.markers - 1) + delay + MARGIN + delay / 10,
            };
            let tx = tx.clone();
            tasks.spawn(async move {
                let tx2 = tx.clone();
                if let Err(e) = poller.run(tx).await {
                    let _ = tx2.send(Event::Failed(e));
                }
            });
            running += 1;
        }
        let writer = Writer {
            primary,
            insert,
            run: self.run,
            t0,
            interval: self.interval,
            markers: self.markers,
        };
        tasks.spawn(async move {
            match writer.run(&tx).await {
                Ok(()) => tx.send(Event::WriterDone),
                Err(e) => tx.send(Event::Failed(e)),
            }
            .ok();
        });
        while running > 0 {
            let Some(event) = rx.recv().await else {
                bail!("a probe task stopped without reporting; run the probe again");
            };
            if collector.take(event, on_sample)? {
                running -= 1;
            }
        }
        Ok(collector.report(self.run, self.duration, self.interval))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_counts() {
        let ms = Duration::from_millis;
        assert_eq!(marker_count(ms(10_000), ms(500)), 20);
        assert_eq!(marker_count(ms(10_001), ms(500)), 21);
        assert_eq!(marker_count(ms(100), ms(500)), 1);
        assert_eq!(marker_count(Duration::ZERO, ms(500)), 1);
    }
}
