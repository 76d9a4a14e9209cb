//! The native backend: the stack as plain local processes, no Docker.
//!
//! `up` is idempotent and heals: it creates what is missing (the primary
//! from a cached pristine `initdb` template, each replica by `pg_basebackup`
//! with its own slot), restarts what was killed, reloads or restarts nodes
//! whose rendered configuration changed, removes replicas that left the
//! spec, and returns only when the primary accepts logins and every replica
//! streams.

mod bootstrap;
mod process;
mod state;
mod sweep;
mod template;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result};

pub use state::{CACHE_DIR_ENV, STATE_DIR_ENV, StateDir};
pub use sweep::down_all;

use crate::command::Command;
use crate::host::{Binaries, ServerUser};
use crate::pg::{self, Login};
use crate::progress::Progress;
use crate::project::Project;
use crate::readiness::{self, CannotStream, Servers};
use crate::render::{postgres, standby};
use crate::secrets::Secrets;
use crate::spec::{Backend, Member, StackSpec};
use crate::stack::UpOptions;

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
    /// Each node's log size when `up` last started it: what it logged since.
    log_offsets: std::sync::Mutex<BTreeMap<String, u64>>,
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
            log_offsets: Default::default(),
        })
    }

    /// Like [`Native::open`], with explicit state and cache directories.
    pub fn with_state(project: &'p Project, state: StateDir) -> Result<Self> {
        let user = ServerUser::resolve()?;
        Ok(Native {
            project,
            state,
            user,
            log_offsets: Default::default(),
        })
    }

    /// The project this stack runs.
    pub fn project(&self) -> &'p Project {
        self.project
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
        self.up_with(progress, UpOptions::default()).await
    }

    /// [`Native::up`], allowed to do what `options` allow.
    pub async fn up_with(&self, progress: &mut Progress, options: UpOptions) -> Result<()> {
        let _lock = self.state.lock(self.user.as_ref())?;
        let spec = self.spec();
        let secrets = Secrets::load_or_create(&self.project.secrets_dir())?;
        let bins = Binaries::find(spec.postgres_major)?;
        self.check_data_dirs()?;
        let left = self.left_nodes(options)?;
        for stale in &left {
            progress.step(&format!("remove {stale}"), || self.remove_node(stale))?;
        }
        readiness::check_ports(spec, self)?;

        let bootstrap = Bootstrap::new(spec, &secrets);
        let cold = self.copy_template(&bins, &secrets, &bootstrap, progress)?;
        let primary = &spec.primary;
        let restart = self.sync_config(Member::Primary(primary))?;
        self.run_node(&bins, Member::Primary(primary), restart, &secrets, progress)
            .await?;
        let admin = pg::connect(spec, primary, Login::admin(&secrets)).await?;
        self.repair_replicas(&admin, &cold, progress).await?;
        self.bootstrap(&bins, &secrets, &bootstrap, progress)?;
        for stale in &left {
            pg::drop_slot(&admin, stale).await?;
        }
        self.base_backup_missing(&bins, &secrets, &admin, progress)
            .await?;
        for replica in &spec.replicas {
            let restart = self.sync_config(Member::Replica(replica))?;
            self.run_node(&bins, Member::Replica(replica), restart, &secrets, progress)
                .await?;
        }
        self.wait_streaming(&bins, &secrets, &admin, progress).await
    }

    /// Copies the template cluster for a new primary and every replica
    /// without data, turning the replicas' copies into standbys; returns
    /// those replicas' names (none when the primary has data already).
    fn copy_template(
        &self,
        bins: &Binaries,
        secrets: &Secrets,
        bootstrap: &Bootstrap,
        progress: &mut Progress,
    ) -> Result<Vec<String>> {
        let spec = self.spec();
        let primary = &spec.primary;
        if self.state.data_dir(&primary.name).exists() {
            return Ok(Vec::new());
        }
        let user = self.user.as_ref();
        let template = progress.step("template cluster", || {
            template::ensure(bins, &self.state, secrets, bootstrap, user)
        })?;
        let replicas: Vec<&str> = spec
            .replicas
            .iter()
            .map(|r| r.node.name.as_str())
            .filter(|name| !self.state.data_dir(name).exists())
            .collect();
        let names: Vec<&str> = std::iter::once(primary.name.as_str())
            .chain(replicas.iter().copied())
            .collect();
        progress.step(&format!("copy template to {}", names.join(", ")), || {
            parallel(&names, |name| {
                template::copy(&template, &self.state.node_dir(name), user)
            })?;
            for replica in &replicas {
                self.configure_standby(replica, secrets)?;
            }
            let marker = self.state.node_dir(&primary.name).join(BOOTSTRAP_MARKER);
            std::fs::write(&marker, &bootstrap.digest)
                .with_context(|| format!("cannot write {}", marker.display()))?;
            let lineage = new_lineage()?;
            for name in &names {
                let file = self.state.lineage_file(name);
                std::fs::write(&file, &lineage)
                    .with_context(|| format!("cannot write {}", file.display()))?;
            }
            Ok(())
        })?;
        Ok(replicas.into_iter().map(str::to_owned).collect())
    }

    /// Before the replicas start: a replica whose data descends from another
    /// primary than this one (a primary made anew) loses it, to be rebuilt
    /// from the primary; every other replica with data gets a usable slot
    /// on the primary (so the primary keeps the WAL it needs): a missing
    /// slot is created (silently for replicas just copied from the
    /// template; a failed earlier `up` can leave others without one), and a
    /// replica whose slot was invalidated loses its data, to be rebuilt.
    async fn repair_replicas(
        &self,
        admin: &tokio_postgres::Client,
        cold: &[String],
        progress: &mut Progress,
    ) -> Result<()> {
        let slots = pg::streaming(admin).await?;
        let lineage = |node: &str| std::fs::read_to_string(self.state.lineage_file(node)).ok();
        let primary = lineage(&self.spec().primary.name);
        for replica in &self.spec().replicas {
            let name = replica.node.name.as_str();
            if !self.state.data_dir(name).exists() {
                continue;
            }
            let own = lineage(name);
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

    /// Creates every replica without data by a base backup of the primary.
    async fn base_backup_missing(
        &self,
        bins: &Binaries,
        secrets: &Secrets,
        admin: &tokio_postgres::Client,
        progress: &mut Progress,
    ) -> Result<()> {
        let missing: Vec<&str> = self
            .spec()
            .replicas
            .iter()
            .map(|r| r.node.name.as_str())
            .filter(|name| !self.state.data_dir(name).exists())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        for name in &missing {
            pg::drop_slot(admin, name).await?;
        }
        progress.step(&format!("base backup {}", missing.join(", ")), || {
            parallel(&missing, |name| self.base_backup(bins, secrets, name))
        })
    }

    /// Waits until every replica streams. A replica whose log says it can
    /// never stream as it is (its data no longer fits the primary's) is
    /// rebuilt from the primary, once, and said so.
    async fn wait_streaming(
        &self,
        bins: &Binaries,
        secrets: &Secrets,
        admin: &tokio_postgres::Client,
        progress: &mut Progress,
    ) -> Result<()> {
        let spec = self.spec();
        let mut rebuilt = Vec::new();
        loop {
            let started = std::time::Instant::now();
            let error =
                match readiness::wait_replicas(spec, secrets, admin, self, READY_TIMEOUT).await {
                    Ok(()) => {
                        progress.record("replicas stream", started.elapsed());
                        return Ok(());
                    }
                    Err(error) => error,
                };
            let Some(cannot) = error.downcast_ref::<CannotStream>() else {
                return Err(error);
            };
            let name = cannot.replica.clone();
            let Some(replica) = spec
                .find_replica(&name)
                .filter(|_| !rebuilt.contains(&name))
            else {
                return Err(error);
            };
            progress.step(
                &format!("remove {name} to rebuild it: {}", cannot.reason),
                || self.remove_node(&name),
            )?;
            rebuilt.push(name.clone());
            pg::drop_slot(admin, &name).await?;
            progress.step(&format!("base backup {name}"), || {
                self.base_backup(bins, secrets, &name)
            })?;
            self.sync_config(Member::Replica(replica))?;
            self.run_node(bins, Member::Replica(replica), false, secrets, progress)
                .await?;
        }
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
            crate::host::give(self.user.as_ref(), &tmp)?;
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
        if process::running_pid(&data).is_some() {
            if !config_changed {
                return Ok(());
            }
            let client = pg::connect(spec, node, Login::admin(secrets)).await?;
            if !needs_restart(&client).await? {
                return progress.step(&format!("reload {}", node.name), || Ok(()));
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
        let started = std::time::Instant::now();
        readiness::wait_logins(spec, secrets, node, self, READY_TIMEOUT).await?;
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
        let host = spec.host().to_string();
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
        let auto_conf =
            standby::auto_conf(spec, &spec.primary, name, &secrets.replication_password);
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
        std::fs::rename(&tmp, self.state.data_dir(name))
            .with_context(|| format!("cannot move {} into place", tmp.display()))?;
        let primary = self.state.lineage_file(&spec.primary.name);
        if primary.exists() {
            let replica = self.state.lineage_file(name);
            std::fs::copy(&primary, &replica)
                .with_context(|| format!("cannot write {}", replica.display()))?;
        }
        Ok(())
    }

    /// Nodes with data that the spec no longer declares, for `up` to
    /// remove. A replica's data is a copy of the primary's, so removing it
    /// loses nothing; a node whose data is a primary's (no `standby.signal`:
    /// the spec's primary was renamed) is removed only with
    /// [`UpOptions::yes`], and otherwise nothing changes.
    fn left_nodes(&self, options: UpOptions) -> Result<Vec<String>> {
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

    /// Stops a node and deletes its directory.
    fn remove_node(&self, name: &str) -> Result<()> {
        process::stop(&[&self.state.data_dir(name)], STOP_TIMEOUT)?;
        let dir = self.state.node_dir(name);
        std::fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))
    }

    /// Fast shutdown of every node; data is kept.
    pub fn down(&self, progress: &mut Progress) -> Result<()> {
        let _lock = self.state.lock(self.user.as_ref())?;
        let running: Vec<std::path::PathBuf> = self
            .state
            .existing_nodes()?
            .iter()
            .map(|name| self.state.data_dir(name))
            .filter(|data| process::running_pid(data).is_some())
            .collect();
        let dirs: Vec<&std::path::Path> = running.iter().map(|d| d.as_path()).collect();
        let label = format!(
            "stop {} node(s) in {}",
            dirs.len(),
            self.state.root().display()
        );
        progress.step(&label, || process::stop(&dirs, STOP_TIMEOUT))
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

/// A fresh id for a primary made now (see [`StateDir::lineage_file`]).
fn new_lineage() -> Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).context("cannot get random bytes for a lineage id")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
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

impl Servers for Native<'_> {
    fn backend(&self) -> Backend {
        Backend::Native
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
