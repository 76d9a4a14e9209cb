//! The native backend: the stack as plain local processes, no Docker.
//!
//! `up` is idempotent and heals: it creates what is missing (the primary
//! from a cached pristine `initdb` template, each replica by `pg_basebackup`
//! with its own slot), restarts what was killed, reloads or restarts nodes
//! whose rendered configuration changed, removes replicas that left the
//! spec, and returns only when the primary accepts logins and every replica
//! streams.

mod bootstrap;
mod node;
mod process;
mod repair;
mod spare;
mod state;
mod sweep;
mod template;

/// Whether `pid` is a live (not zombie) Postgres process.
pub(crate) use process::is_postgres as is_live_postgres;

use std::collections::BTreeMap;
use std::os::unix::ffi::{OsStrExt as _, OsStringExt as _};
use std::time::Duration;

use anyhow::{Context, Result};

pub use state::{CACHE_DIR_ENV, STATE_DIR_ENV, StateDir, StateLock};
pub use sweep::down_all;

/// Deletes the spare copies of every template in a cache (see [`spare`]).
pub(crate) use spare::discard_all as discard_spares;

use crate::host::{Binaries, ServerUser};
use crate::pg::{self, Login};
use crate::progress::Progress;
use crate::project::Project;
use crate::readiness;
use crate::render::{postgres, standby};
use crate::secrets::Secrets;
use crate::spec::{Member, StackSpec};
use crate::stack::UpOptions;

use bootstrap::Bootstrap;

/// File in the primary's directory holding the digest of the bootstrap it ran.
const BOOTSTRAP_MARKER: &str = "bootstrap.sha256";

/// File in the state directory naming the template the stack was copied
/// from, so `destroy` knows which template's spare copies to prepare.
const TEMPLATE_RECORD: &str = "template";

/// How long a server may take to accept logins or to start streaming.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a fast shutdown may take before drr escalates.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// A native stack: the project, where its state lives and who runs servers.
#[derive(Debug)]
pub struct Native<'p> {
    project: &'p Project,
    /// The stack as it runs: the spec, with another node as primary after a
    /// failover (whichever node's data holds no `standby.signal`).
    runtime: StackSpec,
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
        Ok(Native::new(project, state, user))
    }

    /// Like [`Native::open`], with explicit state and cache directories.
    pub fn with_state(project: &'p Project, state: StateDir) -> Result<Self> {
        let user = ServerUser::resolve()?;
        Ok(Native::new(project, state, user))
    }

    fn new(project: &'p Project, state: StateDir, user: Option<ServerUser>) -> Self {
        let spec = project.spec();
        let primaries = primaries(spec, &state);
        let runtime = match primaries.as_slice() {
            [only] => spec.with_primary(only).unwrap_or_else(|_| spec.clone()),
            _ => spec.clone(),
        };
        Native {
            project,
            runtime,
            state,
            user,
            log_offsets: Default::default(),
        }
    }

    /// The project this stack runs.
    pub fn project(&self) -> &'p Project {
        self.project
    }

    /// Holds the state directory's lock until dropped: no other drr command
    /// changes the stack meanwhile.
    pub fn lock(&self) -> Result<StateLock> {
        self.state.lock(self.user.as_ref())
    }

    /// The state directory.
    pub fn state(&self) -> &StateDir {
        &self.state
    }

    /// The stack as it runs now (see [`Native::runtime`]).
    fn spec(&self) -> &StackSpec {
        &self.runtime
    }

    /// The stack as it runs now: the spec, or after `failover` the spec with
    /// another node as its primary.
    pub fn runtime(&self) -> &StackSpec {
        &self.runtime
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
        let secrets = self.project.secrets()?;
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
        self.run_node(&bins, primary, restart, &secrets, progress)
            .await?;
        if spec.has_fault_links() {
            progress.step("fault proxy", || self.net_up())?;
        } else {
            crate::net::launch::stop(&self.net_dir())?;
        }
        let admin = pg::connect(spec, primary, Login::admin(&secrets)).await?;
        self.repair_replicas(&admin, &cold, progress).await?;
        self.bootstrap(&bins, &secrets, &bootstrap, progress)?;
        for stale in &left {
            pg::drop_slot(&admin, stale).await?;
        }
        self.base_backup_missing(&bins, &secrets, &admin, progress)
            .await?;
        // Every replica boots at once; then each is waited for.
        let mut launched = Vec::new();
        for replica in &spec.replicas {
            let restart = self.sync_config(Member::Replica(replica))?;
            if self
                .launch_node(&bins, &replica.node, restart, &secrets, progress)
                .await?
            {
                launched.push(&replica.node);
            }
        }
        for node in launched {
            self.wait_logins(node, &secrets, progress).await?;
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
                let node_dir = self.state.node_dir(name);
                if spare::take(&template, &node_dir, user)? {
                    return Ok(());
                }
                template::copy(&template, &node_dir, user)
            })?;
            let record = self.state.root().join(TEMPLATE_RECORD);
            std::fs::write(&record, template.as_os_str().as_bytes())
                .with_context(|| format!("cannot write {}", record.display()))?;
            for replica in &replicas {
                self.make_standby(replica, primary, secrets)?;
            }
            let marker = self.state.node_dir(&primary.name).join(BOOTSTRAP_MARKER);
            std::fs::write(&marker, &bootstrap.digest)
                .with_context(|| format!("cannot write {}", marker.display()))?;
            let conf = postgres::stack_id_conf(&node::new_stack_id()?);
            for name in &names {
                let file = self.state.data_dir(name).join(postgres::STACK_ID_FILE);
                std::fs::write(&file, &conf)
                    .with_context(|| format!("cannot write {}", file.display()))?;
                crate::host::give(self.user.as_ref(), &file)?;
            }
            Ok(())
        })?;
        Ok(replicas.into_iter().map(str::to_owned).collect())
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
        // The fault proxy goes first: a primary's fast shutdown waits for
        // its replicas to confirm the last WAL, which a cut replication
        // link would hold back until the stop timeout.
        crate::net::launch::stop(&self.net_dir())?;
        progress.step(&label, || process::stop(&dirs, STOP_TIMEOUT))
    }

    /// Stops every node and deletes the state directory (never anything
    /// outside it; the template cache stays, with one spare copy of the
    /// template per node for the next cold `up`).
    pub fn destroy(&self, progress: &mut Progress) -> Result<()> {
        self.down(progress)?;
        let root = self.state.root();
        if root.exists() {
            self.prepare_spares(progress);
            progress.step(&format!("delete {}", root.display()), || {
                std::fs::remove_dir_all(root)
                    .with_context(|| format!("cannot delete {}", root.display()))
            })?;
        }
        Ok(())
    }

    /// Prepares spare copies of the template this stack was copied from, one
    /// per node it has (see [`spare`]). A failure here never fails
    /// `destroy`: the next cold `up` then copies the template itself.
    fn prepare_spares(&self, progress: &mut Progress) {
        let root = self.state.root();
        let Ok(template) = std::fs::read(root.join(TEMPLATE_RECORD)) else {
            return;
        };
        let template = std::path::PathBuf::from(std::ffi::OsString::from_vec(template));
        let Ok(nodes) = self.state.existing_nodes() else {
            return;
        };
        if nodes.is_empty() {
            return;
        }
        let label = format!("prepare {} spare copies of the template", nodes.len());
        let prepared = progress.step(&label, || {
            spare::refill(&template, root, nodes.len(), self.user.as_ref())
        });
        if let Err(e) = prepared {
            progress.note(&format!("no spare copies prepared: {e:#}"));
        }
    }

    /// The fault proxy's directory (`net/` in the state directory).
    pub fn net_dir(&self) -> crate::net::NetDir {
        crate::net::NetDir::at(self.state.root().join("net"))
    }

    /// The user servers and the fault proxy run as (`None`: the caller).
    pub fn server_user(&self) -> Option<&ServerUser> {
        self.user.as_ref()
    }

    /// Runs the fault proxy with the links of the stack as it runs now
    /// (restarting it when they changed or it crashed).
    fn net_up(&self) -> Result<()> {
        self.net_follow(self.spec())
    }

    /// Runs the fault proxy with the links of `runtime`: after a failover,
    /// replication links forward to the new primary.
    pub fn net_follow(&self, runtime: &StackSpec) -> Result<()> {
        let config = crate::net::files::Config::of(runtime, None);
        crate::net::launch::ensure(&self.net_dir(), &config, self.user.as_ref())
    }

    /// The server log of `node`.
    pub fn log_file(&self, node: &str) -> std::path::PathBuf {
        self.state.log_file(node)
    }
}

/// The spec's nodes whose data is a primary's (it has no `standby.signal`),
/// in spec order.
fn primaries(spec: &StackSpec, state: &StateDir) -> Vec<String> {
    spec.nodes()
        .filter(|n| {
            let data = state.data_dir(&n.name);
            data.join("PG_VERSION").exists() && !data.join(standby::STANDBY_SIGNAL).exists()
        })
        .map(|n| n.name.clone())
        .collect()
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
