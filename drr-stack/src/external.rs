//! A cluster drr does not run (see [`crate::spec::External`]): drr only
//! talks to it over TCP. `up` checks that every node answers and that every
//! replica streams; nothing ever starts, stops, deletes or fails it over.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

use crate::pg::{self, Login};
use crate::progress::Progress;
use crate::project::Project;
use crate::secrets::Secrets;
use crate::spec::StackSpec;

/// How long `up` waits for a replica of an external cluster to stream.
const STREAM_TIMEOUT: Duration = Duration::from_secs(30);

/// A cluster drr does not run, reached with its admin credentials.
#[derive(Debug)]
pub struct External<'p> {
    project: &'p Project,
    secrets: Secrets,
}

impl<'p> External<'p> {
    /// Reads the admin credentials from the environment variables the spec
    /// names.
    pub fn open(project: &'p Project) -> Result<Self> {
        Ok(External {
            project,
            secrets: project.secrets()?,
        })
    }

    /// The project.
    pub fn project(&self) -> &'p Project {
        self.project
    }

    /// `up` on a cluster drr does not run: checks that every node answers
    /// and every replica (of the roles the nodes play now) streams.
    pub async fn up(&self, progress: &mut Progress) -> Result<()> {
        let spec = self.project.spec();
        for node in spec.nodes() {
            let started = Instant::now();
            pg::connect(spec, node, Login::admin(&self.secrets))
                .await
                .with_context(|| {
                    format!(
                        "`{}` of external cluster `{}` does not answer; drr does not start an \
                         external cluster: start it with its own tools",
                        node.name, spec.name
                    )
                })?;
            progress.record(&format!("{} answers", node.name), started.elapsed());
        }
        let runtime = crate::topology::discover(spec, &self.secrets).await?;
        let started = Instant::now();
        self.wait_replicas(&runtime).await?;
        progress.record("replicas stream", started.elapsed());
        Ok(())
    }

    /// Waits until every replica of `runtime` is in recovery and its WAL
    /// receiver streams (asked on the replica: an external cluster's slots
    /// may be named anyhow, or not exist).
    pub async fn wait_replicas(&self, runtime: &StackSpec) -> Result<()> {
        let deadline = Instant::now() + STREAM_TIMEOUT;
        for replica in &runtime.replicas {
            let name = &replica.node.name;
            let client = pg::connect(runtime, &replica.node, Login::admin(&self.secrets)).await?;
            loop {
                let row = client
                    .query_one(
                        "SELECT pg_is_in_recovery(), \
                         EXISTS (SELECT FROM pg_stat_wal_receiver WHERE status = 'streaming')",
                        &[],
                    )
                    .await
                    .with_context(|| format!("cannot ask `{name}` whether it streams"))?;
                let (in_recovery, streaming): (bool, bool) = (row.get(0), row.get(1));
                anyhow::ensure!(
                    in_recovery,
                    "`{name}` of external cluster `{}` is not a replica; its HA engine decides \
                     the roles, and `cargo xtask status` shows them",
                    runtime.name
                );
                if streaming {
                    break;
                }
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "`{name}` of external cluster `{}` does not stream from its primary; check \
                     the cluster with its own tools",
                    runtime.name
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Ok(())
    }

    /// The error for what drr never does to an external cluster.
    pub fn refuse(&self, what: &str) -> anyhow::Error {
        anyhow::anyhow!(
            "`{}` is an external cluster: drr never {what} it; use its own tools",
            self.project.spec().name
        )
    }
}
