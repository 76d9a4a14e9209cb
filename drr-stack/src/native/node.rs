//! One node of a native stack: its rendered configuration files, starting,
//! reloading or restarting its server, making a replica (standby settings
//! on a template copy, or a base backup), removing it, and what the
//! readiness checks ask of its server.

use anyhow::{Context, Result};

use std::time::Duration;

use super::{Native, READY_TIMEOUT, STOP_TIMEOUT, process, state};
use crate::command::Command;
use crate::host::Binaries;
use crate::pg::{self, Login};
use crate::progress::Progress;
use crate::readiness::{self, Servers};
use crate::render::{postgres, standby};
use crate::secrets::Secrets;
use crate::spec::{Backend, Member, Node, StackSpec};

impl Native<'_> {
    /// Writes the node's rendered configuration into its data directory;
    /// `true` when it changed.
    pub(super) fn sync_config(&self, member: Member<'_>) -> Result<bool> {
        let changed = self.write_config(self.spec(), member)?;
        let Member::Replica(replica) = member else {
            return Ok(changed);
        };
        Ok(self.sync_stream(&replica.node.name)? || changed)
    }

    /// Points replica `name`'s `primary_conninfo` at the port it streams
    /// from now (its replication link's, or the primary's); `true` when it
    /// changed.
    fn sync_stream(&self, name: &str) -> Result<bool> {
        let path = self.state.data_dir(name).join(standby::AUTO_CONF);
        let Ok(current) = std::fs::read_to_string(&path) else {
            return Ok(false);
        };
        let port = self.stream_upstream(name, &self.spec().primary).port;
        let Some(moved) = standby::repoint_port(&current, port) else {
            return Ok(false);
        };
        std::fs::write(&path, moved).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(true)
    }

    /// Where replica `name` reaches `upstream`: through its replication
    /// link when `upstream` is the primary and the replica opts one in.
    fn stream_upstream(&self, name: &str, upstream: &Node) -> standby::Upstream {
        let spec = self.spec();
        let mut address = self.upstream(upstream);
        if upstream.name == spec.primary.name
            && let Ok(node) = spec.node(name)
        {
            address.port = spec.replication_port(node);
        }
        address
    }

    /// Writes `member`'s configuration as `runtime` renders it; `true`
    /// when it changed.
    fn write_config(&self, runtime: &StackSpec, member: Member<'_>) -> Result<bool> {
        let data = self.state.data_dir(&member.node().name);
        let files = [
            (
                "postgresql.conf",
                postgres::postgresql_conf(runtime, member),
            ),
            ("pg_hba.conf", postgres::pg_hba_conf(runtime)),
        ];
        let mut changed = false;
        for (name, contents) in files {
            let path = data.join(name);
            if std::fs::read_to_string(&path).ok().as_deref() == Some(contents.as_str()) {
                continue;
            }
            let tmp = data.join(format!("{name}.drr-tmp"));
            std::fs::write(&tmp, &contents)
                .with_context(|| format!("cannot write {}", tmp.display()))?;
            crate::host::give(self.user.as_ref(), &tmp)?;
            std::fs::rename(&tmp, &path)
                .with_context(|| format!("cannot write {}", path.display()))?;
            changed = true;
        }
        Ok(changed)
    }

    /// Starts a stopped node, or reloads (and if needed restarts) a running
    /// one whose configuration changed, then waits until it accepts logins.
    pub(super) async fn run_node(
        &self,
        bins: &Binaries,
        node: &Node,
        config_changed: bool,
        secrets: &Secrets,
        progress: &mut Progress,
    ) -> Result<()> {
        if self
            .launch_node(bins, node, config_changed, secrets, progress)
            .await?
        {
            self.wait_logins(node, secrets, progress).await?;
        }
        Ok(())
    }

    /// [`Native::run_node`] without the wait: `true` when it started the
    /// server, which the caller then waits for ([`Native::wait_logins`]),
    /// so that several nodes boot at once.
    pub(super) async fn launch_node(
        &self,
        bins: &Binaries,
        node: &Node,
        config_changed: bool,
        secrets: &Secrets,
        progress: &mut Progress,
    ) -> Result<bool> {
        let spec = self.spec();
        let data = self.state.data_dir(&node.name);
        let log = self.state.log_file(&node.name);
        if process::running_pid(&data).is_some() {
            if !config_changed {
                return Ok(false);
            }
            let client = pg::connect(spec, node, Login::admin(secrets)).await?;
            if !needs_restart(&client).await? {
                progress.step(&format!("reload {}", node.name), || Ok(()))?;
                return Ok(false);
            }
            progress.step(&format!("stop {} to restart it", node.name), || {
                process::stop(&[&data], STOP_TIMEOUT)
            })?;
        }
        let offset = std::fs::metadata(&log).map_or(0, |m| m.len());
        if let Ok(mut offsets) = self.log_offsets.lock() {
            offsets.insert(node.name.clone(), offset);
        }
        progress.step(&format!("start {}", node.name), || {
            process::start(bins, &data, &log, self.user.as_ref())
        })?;
        Ok(true)
    }

    /// Waits until the node just started accepts logins.
    pub(super) async fn wait_logins(
        &self,
        node: &Node,
        secrets: &Secrets,
        progress: &mut Progress,
    ) -> Result<()> {
        let started = std::time::Instant::now();
        readiness::wait_logins(self.spec(), secrets, node, self, READY_TIMEOUT).await?;
        progress.record(&format!("{} accepts logins", node.name), started.elapsed());
        Ok(())
    }

    /// Waits until every replica of `runtime` streams from its primary,
    /// which `admin` is connected to.
    pub async fn wait_replicas(
        &self,
        runtime: &StackSpec,
        secrets: &Secrets,
        admin: &tokio_postgres::Client,
    ) -> Result<()> {
        readiness::wait_replicas(runtime, secrets, admin, self, READY_TIMEOUT).await
    }

    /// Stops `name`'s server with a fast shutdown (its WAL reaches the
    /// replicas first); its data is kept.
    pub fn stop_node(&self, name: &str) -> Result<()> {
        process::stop(&[&self.state.data_dir(name)], STOP_TIMEOUT)
    }

    /// Starts `name`'s server if it is stopped, and waits until it accepts
    /// logins.
    pub async fn start_node(&self, name: &str, secrets: &Secrets) -> Result<()> {
        let bins = Binaries::find(self.spec().postgres_major)?;
        let node = self.spec().node(name)?;
        self.run_node(&bins, node, false, secrets, &mut Progress::new(true))
            .await
    }

    /// Rewinds the stopped node `name` onto the history of `after`'s
    /// running primary with `pg_rewind`, so that it can follow it as a
    /// standby (an old primary after a failover), and gives it back its own
    /// configuration, as its role in `after` renders it (`pg_rewind` copies
    /// the source's). Needs `wal_log_hints = on`, which drr sets on every
    /// node.
    pub fn rewind(&self, name: &str, after: &StackSpec, secrets: &Secrets) -> Result<()> {
        let spec = self.spec();
        let source = &after.primary;
        let bins = Binaries::find(spec.postgres_major)?;
        let conninfo = format!(
            "host={} port={} user=postgres dbname=postgres",
            spec.host(),
            source.port
        );
        Command::new(bins.path("pg_rewind"))
            .args(["-D".as_ref(), self.state.data_dir(name).as_os_str()])
            .args(["--source-server", &conninfo])
            .env("PGPASSWORD", &secrets.superuser_password)
            .dir(self.state.node_dir(name))
            .as_user(self.user.as_ref())
            .read()
            .with_context(|| format!("cannot rewind `{name}` onto `{}`", source.name))?;
        let replica = after
            .find_replica(name)
            .with_context(|| format!("`{name}` is no replica of `{}`", source.name))?;
        self.write_config(after, Member::Replica(replica))?;
        Ok(())
    }

    /// Where a native replica reaches `node`: the stack's host and the
    /// node's port.
    pub fn upstream(&self, node: &Node) -> standby::Upstream {
        standby::Upstream {
            host: self.spec().host().to_string(),
            port: node.port,
        }
    }

    /// Makes the stopped node `name` a standby of `upstream`: the same
    /// settings `pg_basebackup -R -S <name>` writes (for a copy of the
    /// template, and for an old primary after `pg_rewind`).
    pub fn make_standby(&self, name: &str, upstream: &Node, secrets: &Secrets) -> Result<()> {
        let spec = self.spec();
        let data = self.state.data_dir(name);
        let auto_conf = standby::auto_conf(
            spec,
            &self.stream_upstream(name, upstream),
            name,
            &secrets.replication_password,
        );
        for (file, contents) in [
            (standby::AUTO_CONF, auto_conf.as_str()),
            (standby::STANDBY_SIGNAL, ""),
        ] {
            let path = data.join(file);
            std::fs::write(&path, contents)
                .with_context(|| format!("cannot write {}", path.display()))?;
            crate::host::give(self.user.as_ref(), &path)?;
        }
        Ok(())
    }

    /// `pg_basebackup -R` with a fresh slot into a temporary directory that
    /// becomes the data directory only when complete.
    pub(super) fn base_backup(&self, bins: &Binaries, secrets: &Secrets, name: &str) -> Result<()> {
        let spec = self.spec();
        let node_dir = self.state.node_dir(name);
        state::mkdir(&node_dir, self.user.as_ref())?;
        let tmp = node_dir.join("data.tmp");
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp)
                .with_context(|| format!("cannot remove {}", tmp.display()))?;
        }
        let result = Command::new(bins.path("pg_basebackup"))
            .args(["-h"])
            .args([
                spec.host().to_string(),
                "-p".into(),
                spec.primary.port.to_string(),
            ])
            .args(["-U", &spec.replication_role, "-D"])
            .args([tmp.as_os_str()])
            .args([
                "-R",
                "-C",
                "-S",
                name,
                "-X",
                "stream",
                "--checkpoint=fast",
                "--no-sync",
            ])
            .env("PGPASSWORD", &secrets.replication_password)
            .env("PGAPPNAME", name)
            .dir(&node_dir)
            .as_user(self.user.as_ref())
            .read();
        if let Err(e) = result {
            let _ = std::fs::remove_dir_all(&tmp);
            let _ = std::fs::remove_dir(&node_dir);
            return Err(e.context(format!("cannot create replica `{name}`; nothing of it was kept, fix the cause and run `cargo xtask up` again")));
        }
        // The backup carries the primary's stack id along.
        std::fs::rename(&tmp, self.state.data_dir(name))
            .with_context(|| format!("cannot move {} into place", tmp.display()))
    }

    /// Stops a node and deletes its directory.
    pub(super) fn remove_node(&self, name: &str) -> Result<()> {
        process::stop(&[&self.state.data_dir(name)], STOP_TIMEOUT)?;
        let dir = self.state.node_dir(name);
        std::fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))
    }
}

/// A fresh id for a stack instance made now (see [`super::StateDir::stack_id`]).
pub(super) fn new_stack_id() -> Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).context("cannot get random bytes for a stack id")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Reloads the server's configuration; `true` when a changed setting only
/// takes effect after a restart.
async fn needs_restart(client: &tokio_postgres::Client) -> Result<bool> {
    const LOAD_TIME: &str = "SELECT pg_conf_load_time()::text, count(*) FILTER (WHERE pending_restart) FROM pg_settings";
    let before: String = client.query_one(LOAD_TIME, &[]).await?.get(0);
    client.execute("SELECT pg_reload_conf()", &[]).await?;
    // The reload is asynchronous: wait until this session has re-read the files.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let row = client.query_one(LOAD_TIME, &[]).await?;
        if row.get::<_, String>(0) != before || std::time::Instant::now() > deadline {
            return Ok(row.get::<_, i64>(1) > 0);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

impl Servers for Native<'_> {
    fn backend(&self) -> Backend {
        Backend::Native
    }

    fn ready_timeout(&self) -> Duration {
        READY_TIMEOUT
    }

    fn runs(&self, node: &str) -> bool {
        process::running_pid(&self.state.data_dir(node)).is_some()
    }

    /// A server that logged a FATAL or PANIC of its own since it was
    /// started, or whose process is gone, gave up.
    fn check_alive(&self, node: &str) -> Result<()> {
        let data = self.state.data_dir(node);
        let log = self.state.log_file(node);
        let said = self.recent_log(node);
        if process::server_failed(&said) || process::stale_pid(&data).is_some() {
            anyhow::bail!(
                "node `{node}` failed to start; its log ({}) says:\n{}",
                log.display(),
                said.trim_end()
            );
        }
        Ok(())
    }

    /// The log since `up` last started `node` (all of it when `up` did not).
    fn recent_log(&self, node: &str) -> String {
        let offset = self
            .log_offsets
            .lock()
            .map_or(0, |o| o.get(node).copied().unwrap_or(0));
        process::log_since(&self.state.log_file(node), offset)
    }

    fn log_tail(&self, node: &str) -> String {
        let log = self.state.log_file(node);
        format!(
            "the end of {}:\n{}",
            log.display(),
            process::log_tail(&log, 15)
        )
    }
}
