//! What `up` repairs and what it refuses: data directories it must not
//! touch, nodes that left the spec (a primary's data only with `--yes`),
//! replicas whose data descends from another primary or whose slot is
//! missing or invalidated, and replicas that cannot stream.

use anyhow::Result;

use super::Native;
use crate::host::Binaries;
use crate::pg;
use crate::progress::Progress;
use crate::readiness;
use crate::render::standby;
use crate::secrets::Secrets;
use crate::spec::{Member, Replica};
use crate::stack::UpOptions;

impl Native<'_> {
    /// Fails before anything changes when a data directory is foreign,
    /// corrupted or of another major version.
    pub(super) fn check_data_dirs(&self) -> Result<()> {
        for node in self.spec().nodes() {
            let data = self.state.data_dir(&node.name);
            if !data.exists() {
                continue;
            }
            let version = std::fs::read_to_string(data.join("PG_VERSION")).ok();
            let complete = data.join("global").join("pg_control").is_file();
            match version {
                Some(v) if complete && v.trim() == self.spec().postgres_major.to_string() => {}
                Some(v) if complete => anyhow::bail!(
                    "{} holds a Postgres {} data directory but the spec says Postgres {}; set the spec back, \
                     or run `cargo xtask destroy` to start over (this deletes the stack's data)",
                    data.display(),
                    v.trim(),
                    self.spec().postgres_major
                ),
                _ => anyhow::bail!(
                    "{} is not a complete Postgres data directory (no PG_VERSION or global/pg_control); \
                     drr leaves it untouched: inspect it, then run `cargo xtask destroy` to start over",
                    data.display()
                ),
            }
        }
        Ok(())
    }

    /// Nodes with data that the spec no longer declares, for `up` to
    /// remove. A replica's data is a copy of the primary's, so removing it
    /// loses nothing; a node whose data is a primary's (no `standby.signal`:
    /// the spec's primary was renamed) is removed only with
    /// [`UpOptions::yes`], and otherwise nothing changes.
    pub(super) fn left_nodes(&self, options: UpOptions) -> Result<Vec<String>> {
        let spec = self.spec();
        let left: Vec<String> = self
            .state
            .existing_nodes()?
            .into_iter()
            .filter(|name| spec.nodes().all(|n| &n.name != name))
            .collect();
        if !options.yes {
            for name in &left {
                let data = self.state.data_dir(name);
                if data.join("PG_VERSION").exists() && !data.join(standby::STANDBY_SIGNAL).exists()
                {
                    anyhow::bail!(
                        "node `{name}` left the spec, and {} holds a primary's data (was the \
                         primary renamed?); `up` would start an empty primary and delete it. \
                         Give the primary its old name back, or run `cargo xtask up --yes` to \
                         delete that data",
                        data.display()
                    );
                }
            }
        }
        Ok(left)
    }

    /// Before the replicas start: a replica whose data descends from another
    /// primary than this one (a primary made anew) loses it, to be rebuilt
    /// from the primary; every other replica with data gets a usable slot
    /// on the primary (so the primary keeps the WAL it needs): a missing
    /// slot is created (silently for replicas just copied from the
    /// template; a failed earlier `up` can leave others without one), and a
    /// replica whose slot was invalidated loses its data, to be rebuilt.
    pub(super) async fn repair_replicas(
        &self,
        admin: &tokio_postgres::Client,
        cold: &[String],
        progress: &mut Progress,
    ) -> Result<()> {
        let slots = pg::streaming(admin).await?;
        let primary = self.state.stack_id(&self.spec().primary.name);
        for replica in &self.spec().replicas {
            let name = replica.node.name.as_str();
            if !self.state.data_dir(name).exists() {
                continue;
            }
            let own = self.state.stack_id(name);
            if primary.is_some() && own.is_some() && own != primary {
                progress.step(
                    &format!(
                        "remove {name} to rebuild it: its data is a copy of an earlier primary, \
                         not of this one"
                    ),
                    || self.remove_node(name),
                )?;
                continue;
            }
            match slots.iter().find(|s| s.slot == name) {
                None if cold.iter().any(|c| c == name) => pg::create_slot(admin, name).await?,
                None => {
                    let started = std::time::Instant::now();
                    pg::create_slot(admin, name).await?;
                    progress.record(
                        &format!("recreate the missing replication slot of {name}"),
                        started.elapsed(),
                    );
                }
                Some(slot) if slot.is_lost() => {
                    progress.step(
                        &format!(
                            "remove {name} to rebuild it: its replication slot was invalidated, \
                             having held more WAL than the spec's slot_wal_limit_mb allows"
                        ),
                        || self.remove_node(name),
                    )?;
                    pg::drop_slot(admin, name).await?;
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// Waits until every replica streams, rebuilding one that cannot
    /// ([`readiness::wait_streaming`]).
    pub(super) async fn wait_streaming(
        &self,
        bins: &Binaries,
        secrets: &Secrets,
        admin: &tokio_postgres::Client,
        progress: &mut Progress,
    ) -> Result<()> {
        let rebuild = Rebuilder {
            native: self,
            bins,
            secrets,
        };
        // A replica whose replication link a partition cuts cannot stream
        // until `heal`; `up` waits for the others.
        let expected = crate::net::command::streaming(self.spec(), &self.net_dir(), progress);
        readiness::wait_streaming(&expected, secrets, admin, self, &rebuild, progress).await
    }
}

/// How the native backend rebuilds a replica: a new base backup into its
/// data directory.
struct Rebuilder<'a, 'p> {
    native: &'a Native<'p>,
    bins: &'a Binaries,
    secrets: &'a Secrets,
}

impl readiness::Rebuild for Rebuilder<'_, '_> {
    fn remove(&self, replica: &str) -> Result<()> {
        self.native.remove_node(replica)
    }

    async fn restart(&self, replica: &Replica, progress: &mut Progress) -> Result<()> {
        let name = &replica.node.name;
        progress.step(&format!("base backup {name}"), || {
            self.native.base_backup(self.bins, self.secrets, name)
        })?;
        self.native.sync_config(Member::Replica(replica))?;
        self.native
            .run_node(self.bins, &replica.node, false, self.secrets, progress)
            .await
    }
}
