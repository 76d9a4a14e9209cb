//! The volumes of a compose stack: listing them by node and role, and
//! removing those of nodes that left the spec (with their replication
//! slots).

use anyhow::{Context as _, Result};

use super::Compose;
use crate::command::Command;
use crate::pg;
use crate::progress::Progress;
use crate::render::compose::{ROLE_LABEL, node_of_volume};

/// A node's data volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct NodeVolume {
    pub(super) node: String,
    pub(super) volume: String,
    /// `primary` or `replica` ([`ROLE_LABEL`]); empty on volumes made
    /// before drr labelled them.
    pub(super) role: String,
}

impl Compose<'_> {
    /// Nodes that left the spec: their containers went with
    /// `--remove-orphans`; this drops their slots, which would otherwise
    /// keep WAL on the primary forever, and removes their volumes.
    pub(super) async fn remove_dropped(
        &self,
        admin: &tokio_postgres::Client,
        dropped: &[NodeVolume],
        progress: &mut Progress,
    ) -> Result<()> {
        for left in dropped {
            pg::drop_slot(admin, &left.node).await?;
            progress.step(
                &format!("remove {} (slot and volume {})", left.node, left.volume),
                || {
                    Command::new("docker")
                        .args(["volume", "rm", &left.volume])
                        .read()
                        .map(drop)
                },
            )?;
        }
        Ok(())
    }

    /// Every node volume of this compose project.
    pub(super) fn volumes(&self) -> Result<Vec<NodeVolume>> {
        let out = Command::new("docker")
            .args([
                "volume",
                "ls",
                "--filter",
                &self.project_filter(),
                "--format",
            ])
            .args([format!(
                "{{{{.Name}}}}\t{{{{.Label \"com.docker.compose.volume\"}}}}\t{{{{.Label \"{ROLE_LABEL}\"}}}}"
            )])
            .read()
            .context("cannot list the stack's volumes")?;
        Ok(out
            .lines()
            .filter_map(|line| {
                let mut fields = line.split('\t');
                let volume = fields.next()?;
                let node = node_of_volume(fields.next()?)?;
                Some(NodeVolume {
                    node: node.to_owned(),
                    volume: volume.to_owned(),
                    role: fields.next().unwrap_or_default().to_owned(),
                })
            })
            .collect())
    }

    /// The volumes of nodes that are not in the spec.
    pub(super) fn dropped_volumes(&self) -> Result<Vec<NodeVolume>> {
        let spec = self.spec();
        Ok(self
            .volumes()?
            .into_iter()
            .filter(|v| spec.nodes().all(|n| n.name != v.node))
            .collect())
    }

    /// The name of `node`'s volume.
    pub(super) fn volume(&self, node: &str) -> Result<String> {
        self.volumes()?
            .into_iter()
            .find(|v| v.node == node)
            .map(|v| v.volume)
            .with_context(|| format!("node `{node}` has no volume"))
    }
}
