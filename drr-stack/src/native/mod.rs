//! The native backend: the stack as plain local processes, no Docker.
//!
//! `up` is idempotent and heals: it creates what is missing (the primary
//! from a cached pristine `initdb` template, each replica by `pg_basebackup`
//! with its own slot), restarts what was killed, reloads or restarts nodes
//! whose rendered configuration changed, removes replicas that left the
//! spec, and returns only when the primary accepts logins and every replica
//! streams.

mod binaries;
mod bootstrap;
pub mod ports;
mod process;
mod state;
mod template;
mod user;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result};

pub use binaries::{BINDIR_ENV, Binaries};
pub use state::{CACHE_DIR_ENV, STATE_DIR_ENV, StateDir};
pub use user::{SERVER_USER_ENV, ServerUser};

use crate::command::Command;
use crate::pg::{self, Login};
use crate::progress::Progress;
use crate::project::Project;
use crate::render::{postgres, sql};
use crate::secrets::Secrets;
use crate::spec::{Member, Replica, StackSpec};

use bootstrap::Bootstrap;

/// File in the primary's directory holding the digest of the bootstrap it ran.
const BOOTSTRAP_MARKER: &str = "bootstrap.sha256";

/// How long a server may take to accept logins or to start streaming.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a fast shutdown may take before drr escalates.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// A native stack: the project, where its state lives and who runs servers.
#[derive(Debug)]
pub struct Native<'p> {
    project: &'p Project,
    state: StateDir,
    user: Option<ServerUser>,
}

impl<'p> Native<'p> {
    /// Resolves the server user and the state directory (creating nothing).
    pub fn open(project: &'p Project) -> Result<Self> {
        let user = ServerUser::resolve()?;
        let state = StateDir::resolve(project, user.as_ref())?;
        Ok(Native {
            project,
            state,
            user,
        })
    }

    /// Like [`Native::open`], with explicit state and cache directories.
    pub fn with_state(project: &'p Project, state: StateDir) -> Result<Self> {
        let user = ServerUser::resolve()?;
        Ok(Native {
            project,
            state,
            user,
        })
    }

    /// The state directory.
    pub fn state(&self) -> &StateDir {
        &self.state
    }

    fn spec(&self) -> &StackSpec {
        self.project.spec()
    }

    /// The pid of every spec node that runs.
    pub fn pids(&self) -> BTreeMap<String, i32> {
        self.spec()
            .nodes()
            .filter_map(|n| {
                process::running_pid(&self.state.data_dir(&n.name)).map(|pid| (n.name.clone(), pid))
            })
            .collect()
    }

    /// Brings the stack up; see the module docs.
    pub async fn up(&self, progress: &mut Progress) -> Result<()> {
        let _lock = self.state.lock()?;
        let spec = self.spec();
        let secrets = Secrets::load_or_create(&self.project.secrets_dir())?;
        let bins = Binaries::find(spec.postgres_major)?;
        self.check_data_dirs()?;
        self.check_ports()?;
        let user = self.user.as_ref();

        let bootstrap = Bootstrap::new(spec, &secrets);
        let primary = &spec.primary;
        let cold: Vec<&Replica> = if self.state.data_dir(&primary.name).exists() {
            Vec::new()
        } else {
            let template = progress.step("template cluster", || {
                template::ensure(&bins, &self.state, &secrets, &bootstrap, user)
            })?;
            let replicas: Vec<&Replica> = spec
                .replicas
                .iter()
                .filter(|r| !self.state.data_dir(&r.node.name).exists())
                .collect();
            let names: Vec<&str> = std::iter::once(primary.name.as_str())
                .chain(replicas.iter().map(|r| r.node.name.as_str()))
                .collect();
            progress.step(&format!("copy template to {}", names.join(", ")), || {
                parallel(&names, |name| {
                    template::copy(&template, &self.state.node_dir(name), user)
                })?;
                for replica in &replicas {
                    self.configure_standby(&replica.node.name, &secrets)?;
                }
                let marker = self.state.node_dir(&primary.name).join(BOOTSTRAP_MARKER);
                std::fs::write(&marker, &bootstrap.digest)
                    .with_context(|| format!("cannot write {}", marker.display()))
            })?;
            replicas
        };
        let restart = self.sync_config(Member::Primary(primary))?;
        self.run_node(&bins, Member::Primary(primary), restart, &secrets, progress)
            .await?;
        let admin = pg::connect(spec, primary, Login::admin(&secrets)).await?;
        for replica in &cold {
            // Before the replica starts, so the primary keeps its WAL.
            admin
                .execute(
                    "SELECT pg_create_physical_replication_slot($1, true)",
                    &[&replica.node.name],
                )
                .await
                .with_context(|| {
                    format!(
                        "cannot create the replication slot of `{}`",
                        replica.node.name
                    )
                })?;
        }
        self.bootstrap(&bins, &secrets, &bootstrap, progress)?;

        for stale in self.removed_replicas()? {
            progress.step(&format!("remove {stale}"), || self.remove_node(&stale))?;
            pg::drop_slot(&admin, &stale).await?;
        }

        let missing: Vec<_> = spec
            .replicas
            .iter()
            .filter(|r| !self.state.data_dir(&r.node.name).exists())
            .collect();
        if !missing.is_empty() {
            for replica in &missing {
                pg::drop_slot(&admin, &replica.node.name).await?;
            }
            let names: Vec<&str> = missing.iter().map(|r| r.node.name.as_str()).collect();
            progress.step(&format!("base backup {}", names.join(", ")), || {
                parallel(&names, |name| self.base_backup(&bins, &secrets, name))
            })?;
        }
        for replica in &spec.replicas {
            let restart = self.sync_config(Member::Replica(replica))?;
            self.run_node(&bins, Member::Replica(replica), restart, &secrets, progress)
                .await?;
        }
        let started = std::time::Instant::now();
        self.wait_streaming(&admin, &secrets).await?;
        progress.record("replicas stream", started.elapsed());
        Ok(())
    }

    /// Fails before anything changes when a data directory is foreign,
    /// corrupted or of another major version.
    fn check_data_dirs(&self) -> Result<()> {
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

    /// Fails before anything starts when a stopped node's port is taken.
    fn check_ports(&self) -> Result<()> {
        let spec = self.spec();
        for node in spec.nodes() {
            if process::running_pid(&self.state.data_dir(&node.name)).is_some() {
                continue;
            }
            if let Some(holder) = ports::holder(spec.listen, node.port) {
                anyhow::bail!(
                    "port {} on {} (node `{}`) is already in use by {holder}; stop it, or give `{}` another port in the spec",
                    node.port,
                    spec.listen,
                    node.name,
                    node.name
                );
            }
        }
        Ok(())
    }

    /// Writes the node's rendered configuration into its data directory;
    /// `true` when it changed.
    fn sync_config(&self, member: Member<'_>) -> Result<bool> {
        let data = self.state.data_dir(&member.node().name);
        let files = [
            (
                "postgresql.conf",
                postgres::postgresql_conf(self.spec(), member),
            ),
            ("pg_hba.conf", postgres::pg_hba_conf(self.spec())),
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
            user::give(self.user.as_ref(), &tmp)?;
            std::fs::rename(&tmp, &path)
                .with_context(|| format!("cannot write {}", path.display()))?;
            changed = true;
        }
        Ok(changed)
    }

    /// Starts a stopped node, or reloads (and if needed restarts) a running
    /// one whose configuration changed, then waits until it accepts logins.
    async fn run_node(
        &self,
        bins: &Binaries,
        member: Member<'_>,
        config_changed: bool,
        secrets: &Secrets,
        progress: &mut Progress,
    ) -> Result<()> {
        let spec = self.spec();
        let node = member.node();
        let data = self.state.data_dir(&node.name);
        let log = self.state.log_file(&node.name);
        if let Some(pid) = process::running_pid(&data) {
            if !config_changed {
                return Ok(());
            }
            let client = pg::connect(spec, node, Login::admin(secrets)).await?;
            if !needs_restart(&client).await? {
                return progress.step(&format!("reload {}", node.name), || Ok(()));
            }
            progress.step(&format!("stop {} to restart it", node.name), || {
                process::stop(&[pid], STOP_TIMEOUT)
            })?;
        }
        let log_offset = std::fs::metadata(&log).map_or(0, |m| m.len());
        progress.step(&format!("start {}", node.name), || {
            process::start(bins, &data, &log, self.user.as_ref())
        })?;
        let exited = || {
            let said = process::log_since(&log, log_offset);
            if process::server_failed(&said) || process::dead_pid(&data).is_some() {
                anyhow::bail!(
                    "node `{}` failed to start; its log ({}) says:\n{}",
                    node.name,
                    log.display(),
                    said.trim_end()
                );
            }
            Ok(())
        };
        let started = std::time::Instant::now();
        pg::connect_retrying(spec, node, Login::admin(secrets), READY_TIMEOUT, exited).await?;
        progress.record(&format!("{} accepts logins", node.name), started.elapsed());
        Ok(())
    }

    /// Runs the idempotent bootstrap SQL when it (or a secret) changed
    /// since the primary last ran it.
    fn bootstrap(
        &self,
        bins: &Binaries,
        secrets: &Secrets,
        bootstrap: &Bootstrap,
        progress: &mut Progress,
    ) -> Result<()> {
        let spec = self.spec();
        let node_dir = self.state.node_dir(&spec.primary.name);
        let marker = node_dir.join(BOOTSTRAP_MARKER);
        if std::fs::read_to_string(&marker).ok().as_deref() == Some(bootstrap.digest.as_str()) {
            return Ok(());
        }
        let host = pg::host(spec).to_string();
        progress.step("roles and databases", || {
            bootstrap.run(bins, secrets, &host, spec.primary.port, &node_dir)
        })?;
        std::fs::write(&marker, &bootstrap.digest)
            .with_context(|| format!("cannot write {}", marker.display()))
    }

    /// Turns a copy of the template into a standby of the primary: the
    /// same settings `pg_basebackup -R -S <name>` writes.
    fn configure_standby(&self, name: &str, secrets: &Secrets) -> Result<()> {
        let spec = self.spec();
        let data = self.state.data_dir(name);
        let conninfo = format!(
            "host={} port={} user={} password={} application_name={name}",
            pg::host(spec),
            spec.primary.port,
            spec.replication_role,
            secrets.replication_password
        );
        let auto_conf = format!(
            "# Do not edit this file manually!\n# It will be overwritten by the ALTER SYSTEM command.\n\
             primary_conninfo = {}\nprimary_slot_name = {}\n",
            sql::literal(&conninfo),
            sql::literal(name)
        );
        for (file, contents) in [
            ("postgresql.auto.conf", auto_conf.as_str()),
            ("standby.signal", ""),
        ] {
            let path = data.join(file);
            std::fs::write(&path, contents)
                .with_context(|| format!("cannot write {}", path.display()))?;
            user::give(self.user.as_ref(), &path)?;
        }
        Ok(())
    }

    /// `pg_basebackup -R` with a fresh slot into a temporary directory that
    /// becomes the data directory only when complete.
    fn base_backup(&self, bins: &Binaries, secrets: &Secrets, name: &str) -> Result<()> {
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
                pg::host(spec).to_string(),
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
        std::fs::rename(&tmp, self.state.data_dir(name))
            .with_context(|| format!("cannot move {} into place", tmp.display()))
    }

    /// Replica directories of nodes the spec no longer declares.
    fn removed_replicas(&self) -> Result<Vec<String>> {
        let spec = self.spec();
        Ok(self
            .state
            .existing_nodes()?
            .into_iter()
            .filter(|name| spec.nodes().all(|n| &n.name != name))
            .collect())
    }

    /// Stops a node and deletes its directory.
    fn remove_node(&self, name: &str) -> Result<()> {
        let data = self.state.data_dir(name);
        if let Some(pid) = process::running_pid(&data) {
            process::stop(&[pid], STOP_TIMEOUT)?;
        }
        let dir = self.state.node_dir(name);
        std::fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))
    }

    /// Waits until the login role can log in and every replica is in
    /// recovery and streams from its slot.
    async fn wait_streaming(
        &self,
        admin: &tokio_postgres::Client,
        secrets: &Secrets,
    ) -> Result<()> {
        let spec = self.spec();
        if let Some((role, db)) = spec.login() {
            let login = Login {
                user: &role.name,
                password: &role.password,
                database: db.map_or("postgres", |d| d.name.as_str()),
            };
            pg::connect(spec, &spec.primary, login).await?;
        }
        for replica in &spec.replicas {
            let client = pg::connect(spec, &replica.node, Login::admin(secrets)).await?;
            let state = pg::replay_state(&client).await?;
            anyhow::ensure!(
                state.in_recovery,
                "node `{}` is not in recovery: it is not a replica any more; run `cargo xtask destroy` and `up` to rebuild the stack",
                replica.node.name
            );
        }
        let deadline = std::time::Instant::now() + READY_TIMEOUT;
        loop {
            let rows = pg::streaming(admin).await?;
            let lagging: Vec<&str> = spec
                .replicas
                .iter()
                .map(|r| r.node.name.as_str())
                .filter(|name| !rows.iter().any(|row| row.slot == *name && row.streaming))
                .collect();
            let Some(first) = lagging.first() else {
                return Ok(());
            };
            if std::time::Instant::now() > deadline {
                let log = self.state.log_file(first);
                anyhow::bail!(
                    "replica `{first}` does not stream from the primary; the end of {}:\n{}",
                    log.display(),
                    process::log_tail(&log, 15)
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Fast shutdown of every node; data is kept.
    pub fn down(&self, progress: &mut Progress) -> Result<()> {
        let _lock = self.state.lock()?;
        let pids: Vec<i32> = self
            .state
            .existing_nodes()?
            .iter()
            .filter_map(|name| process::running_pid(&self.state.data_dir(name)))
            .collect();
        progress.step(&format!("stop {} node(s)", pids.len()), || {
            process::stop(&pids, STOP_TIMEOUT)
        })
    }

    /// Stops every node and deletes the state directory (never anything
    /// outside it; the template cache stays).
    pub fn destroy(&self, progress: &mut Progress) -> Result<()> {
        self.down(progress)?;
        let root = self.state.root();
        if root.exists() {
            progress.step(&format!("delete {}", root.display()), || {
                std::fs::remove_dir_all(root)
                    .with_context(|| format!("cannot delete {}", root.display()))
            })?;
        }
        Ok(())
    }

    /// The server log of `node`.
    pub fn log_file(&self, node: &str) -> std::path::PathBuf {
        self.state.log_file(node)
    }
}

/// Runs `job` for every name on its own thread; the first error wins.
fn parallel(names: &[&str], job: impl Fn(&str) -> Result<()> + Sync) -> Result<()> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = names.iter().map(|name| scope.spawn(|| job(name))).collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a worker thread panicked")))
            })
            .collect::<Result<Vec<()>>>()
            .map(drop)
    })
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
