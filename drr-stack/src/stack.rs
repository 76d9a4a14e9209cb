//! The backend a stack command runs on: native processes or compose
//! containers, behind one small set of operations.
//!
//! Commands that only talk SQL to the published ports (`delay`, `pause`,
//! `resume`, `env`, `probe`) need no backend at all; the rest go through
//! [`Stack`].

use std::collections::BTreeMap;

use anyhow::{Context as _, Result};

use crate::command::Command;
use crate::compose::Compose;
use crate::external::External;
use crate::native::Native;
use crate::progress::Progress;
use crate::project::Project;
use crate::render::standby;
use crate::secrets::Secrets;
use crate::spec::{Backend, Node, StackSpec};
use crate::status::NodeStatus;

/// `cargo xtask image`: builds (or finds cached) the local image the
/// compose backend runs when no registry can be reached.
pub fn build_image(spec: &StackSpec, progress: &mut Progress) -> Result<()> {
    use crate::compose::{choice, image};
    let tag = image::ensure(spec.postgres_major, progress)?;
    let package = image::package_version(&tag)?;
    let pin = package
        .as_deref()
        .map_or(tag.clone(), |p| image::version_tag(spec.postgres_major, p));
    progress.done(&format!(
        "image {tag} is ready (postgresql-{} {}, also tagged {pin})",
        spec.postgres_major,
        package.as_deref().unwrap_or("of unknown version")
    ));
    // What `up` would say about the image it would run (which names the
    // way to pin it), else how to pin it.
    if let Some(warning) = choice::for_spec(spec)?.warning {
        eprintln!("warning: {warning}");
    } else if spec.image != tag && spec.image != pin {
        eprintln!(
            "`cargo xtask up --backend compose` runs it while {} is not on this machine; \
             to choose it always, set `.image(\"{pin}\")` in the spec (or `{}={pin}`)",
            spec.image,
            crate::render::compose::IMAGE_ENV
        );
    }
    Ok(())
}

/// What `up` may do beyond creating, starting and repairing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpOptions {
    /// Delete the data of a node that left the spec even when it holds a
    /// primary's data (`cargo xtask up --yes`, after renaming the primary).
    pub yes: bool,
}

/// `cargo xtask down --all`: stops every native stack of the workspace,
/// whichever spec made it ([`crate::native::down_all`]), and the spec's
/// compose project when a Docker engine answers; data is kept. Nothing
/// outside the workspace is touched.
pub fn down_all(project: &Project, progress: &mut Progress) -> Result<()> {
    let native = crate::native::down_all(project, progress);
    let compose = Compose::down_if_reachable(project, progress);
    match (native, compose) {
        (Err(native), Err(compose)) => Err(native.context(format!(
            "the compose stack was not stopped either: {compose:#}"
        ))),
        (native, compose) => native.and(compose),
    }
}

/// A stack on the backend that runs it.
#[derive(Debug)]
#[non_exhaustive]
pub enum Stack<'p> {
    /// Local processes.
    Native(Box<Native<'p>>),
    /// `docker compose` containers.
    Compose(Compose<'p>),
    /// A cluster drr does not run: only talked to over TCP.
    External(External<'p>),
}

impl<'p> Stack<'p> {
    /// Opens `project`'s stack on `backend` (creating nothing).
    pub fn open(project: &'p Project, backend: Backend) -> Result<Self> {
        if !project.spec().is_managed() {
            return External::open(project).map(Stack::External);
        }
        match backend {
            Backend::Native => Native::open(project).map(|n| Stack::Native(Box::new(n))),
            Backend::Compose if !project.spec().compose => anyhow::bail!(
                "`{}` declares no compose output (`.without_compose()` in its spec), so it runs \
                 only natively; drop `--backend compose` (and DRR_BACKEND), or remove \
                 `.without_compose()` and run `cargo xtask gen`",
                project.spec().name
            ),
            Backend::Compose => Compose::open(project).map(Stack::Compose),
        }
    }

    /// Brings the stack up, waits until every replica streams, and says
    /// which Postgres version each node runs.
    pub async fn up(&self, progress: &mut Progress) -> Result<()> {
        self.up_with(progress, UpOptions::default()).await
    }

    /// [`Stack::up`], allowed to do what `options` allow.
    pub async fn up_with(&self, progress: &mut Progress, options: UpOptions) -> Result<()> {
        let project = match self {
            Stack::Native(native) => {
                native.up_with(progress, options).await?;
                native.project()
            }
            Stack::Compose(compose) => {
                compose.up_with(progress, options).await?;
                compose.project()
            }
            Stack::External(external) => {
                external.up(progress).await?;
                external.project()
            }
        };
        let secrets = project.secrets()?;
        crate::readiness::report_versions(project.spec(), &secrets, progress).await
    }

    /// The spec as written (see [`Stack::runtime`] for the roles it runs with).
    pub fn spec(&self) -> &StackSpec {
        match self {
            Stack::Native(native) => native.project().spec(),
            Stack::Compose(compose) => compose.project().spec(),
            Stack::External(external) => external.project().spec(),
        }
    }

    /// Holds the stack's lock (native) until dropped, so that no other drr
    /// command changes the stack meanwhile.
    pub fn lock(&self) -> Result<Option<crate::native::StateLock>> {
        match self {
            Stack::Native(native) => native.lock().map(Some),
            Stack::Compose(_) | Stack::External(_) => Ok(None),
        }
    }

    /// The stack as it runs: the spec, with another node as primary after a
    /// failover (native: from the data; compose: asked over TCP).
    pub async fn runtime(&self, secrets: &Secrets) -> Result<StackSpec> {
        match self {
            Stack::Native(native) => Ok(native.runtime().clone()),
            Stack::Compose(compose) => {
                crate::topology::discover(compose.project().spec(), secrets).await
            }
            Stack::External(external) => {
                crate::topology::discover(external.project().spec(), secrets).await
            }
        }
    }

    /// Stops one node's server; its data is kept.
    pub fn stop_node(&self, name: &str) -> Result<()> {
        match self {
            Stack::Native(native) => native.stop_node(name),
            Stack::Compose(compose) => compose.stop_node(name),
            Stack::External(external) => Err(external.refuse("stops a node of")),
        }
    }

    /// Starts one node's server and waits until it accepts logins.
    pub async fn start_node(&self, name: &str, secrets: &Secrets) -> Result<()> {
        match self {
            Stack::Native(native) => native.start_node(name, secrets).await,
            Stack::Compose(compose) => compose.start_node(name, compose.project().spec()).await,
            Stack::External(external) => Err(external.refuse("starts a node of")),
        }
    }

    /// How a replica of this backend reaches `node`.
    pub fn upstream(&self, node: &Node) -> standby::Upstream {
        match self {
            Stack::Native(native) => native.upstream(node),
            Stack::Compose(compose) => compose.upstream(node),
            Stack::External(external) => standby::Upstream {
                host: external.project().spec().node_host(node),
                port: node.port,
            },
        }
    }

    /// How replica `name` of `runtime` reaches `runtime`'s primary: through
    /// the fault proxy when it opts a replication link in (on the host, as
    /// a container reaches it for compose), else directly.
    pub fn stream_upstream(&self, runtime: &StackSpec, name: &str) -> standby::Upstream {
        let direct = self.upstream(&runtime.primary);
        match runtime.node(name).ok().and_then(|n| n.links.replication) {
            Some(port) => standby::Upstream {
                host: match self {
                    Stack::Compose(_) => crate::render::compose::HOST_GATEWAY.to_owned(),
                    Stack::Native(_) | Stack::External(_) => direct.host,
                },
                port,
            },
            None => direct,
        }
    }

    /// Makes the fault proxy serve the links of `runtime` (after a
    /// failover: replication links forward to the new primary).
    pub fn net_follow(&self, runtime: &StackSpec) -> Result<()> {
        match self {
            Stack::Native(native) => native.net_follow(runtime),
            Stack::Compose(compose) => compose.net_follow(runtime),
            Stack::External(_) => Ok(()),
        }
    }

    /// Rewinds the stopped node `name` onto `after`'s running primary
    /// (`pg_rewind`), keeping its own configuration.
    pub fn rewind(&self, name: &str, after: &StackSpec, secrets: &Secrets) -> Result<()> {
        match self {
            Stack::Native(native) => native.rewind(name, after, secrets),
            Stack::Compose(compose) => compose.rewind(name, after, secrets),
            Stack::External(external) => Err(external.refuse("rewinds a node of")),
        }
    }

    /// Makes the stopped node `name` a standby of `upstream`.
    pub fn make_standby(&self, name: &str, upstream: &Node, secrets: &Secrets) -> Result<()> {
        match self {
            Stack::Native(native) => native.make_standby(name, upstream, secrets),
            Stack::Compose(compose) => compose.make_standby(name, upstream, secrets),
            Stack::External(external) => Err(external.refuse("reconfigures a node of")),
        }
    }

    /// Waits until every replica of `runtime` streams from its primary,
    /// which `admin` is connected to.
    pub async fn wait_replicas(
        &self,
        runtime: &StackSpec,
        secrets: &Secrets,
        admin: &tokio_postgres::Client,
    ) -> Result<()> {
        match self {
            Stack::Native(native) => native.wait_replicas(runtime, secrets, admin).await,
            Stack::Compose(compose) => compose.wait_replicas(runtime, admin).await,
            Stack::External(external) => external.wait_replicas(runtime).await,
        }
    }

    /// Stops every node; data is kept.
    pub fn down(&self, progress: &mut Progress) -> Result<()> {
        match self {
            Stack::Native(native) => native.down(progress),
            Stack::Compose(compose) => compose.down(progress),
            Stack::External(external) => Err(external.refuse("stops")),
        }
    }

    /// Stops every node and deletes the stack's data.
    pub fn destroy(&self, progress: &mut Progress) -> Result<()> {
        match self {
            Stack::Native(native) => native.destroy(progress),
            Stack::Compose(compose) => compose.destroy(progress),
            Stack::External(external) => Err(external.refuse("deletes")),
        }
    }

    /// What [`Stack::destroy`] deletes, for a confirmation question.
    pub fn describe_data(&self) -> String {
        match self {
            Stack::Native(native) => native.state().root().display().to_string(),
            Stack::Compose(compose) => compose.describe(),
            Stack::External(external) => {
                format!("external cluster `{}`", external.project().spec().name)
            }
        }
    }

    /// Each node's server pid (native only; containers have none worth showing).
    pub fn pids(&self) -> BTreeMap<String, i32> {
        match self {
            Stack::Native(native) => native.pids(),
            Stack::Compose(_) | Stack::External(_) => BTreeMap::new(),
        }
    }

    /// Adds what the backend knows about each node's process to `nodes`:
    /// the network faults (a replica whose replication link is cut, or on
    /// compose whose container is off the network, does not stream,
    /// whatever the primary has yet to notice); for compose, the container
    /// state.
    pub fn annotate(&self, nodes: &mut [NodeStatus]) {
        let net = match self {
            Stack::Native(native) => Some(native.net_dir()),
            Stack::Compose(compose) => Some(compose.net_dir()),
            Stack::External(_) => None,
        };
        if let Some(net) = net {
            let mut faults = crate::net::command::summaries(self.spec(), &net);
            let mut cut = crate::net::command::cut_replicas(self.spec(), &net);
            if let Stack::Compose(compose) = self {
                for node in compose.disconnected().unwrap_or_default() {
                    let entry = faults.entry(node.clone()).or_default();
                    if !entry.is_empty() {
                        entry.push_str("; ");
                    }
                    entry.push_str("off the network");
                    cut.push(node);
                }
            }
            for node in nodes.iter_mut() {
                node.faults = faults.get(&node.node).cloned();
                if cut.contains(&node.node) && node.streaming.is_some() {
                    node.streaming = Some(false);
                }
            }
        }
        if let Stack::Compose(compose) = self {
            let states = compose.states();
            for node in nodes {
                node.container = Some(
                    states
                        .get(&node.node)
                        .cloned()
                        .unwrap_or_else(|| "no container".to_owned()),
                );
            }
        }
    }

    /// Prints the Postgres log of `node` (or of every node), following it
    /// with `follow`; returns the exit code.
    pub fn logs(&self, spec: &StackSpec, node: Option<&str>, follow: bool) -> Result<i32> {
        let native = match self {
            Stack::Compose(compose) => return compose.logs(node, follow),
            Stack::External(external) => return Err(external.refuse("reads the logs of")),
            Stack::Native(native) => native,
        };
        let names: Vec<&str> = match node {
            Some(name) => vec![name],
            None => spec.nodes().map(|n| n.name.as_str()).collect(),
        };
        let files: Vec<_> = names
            .iter()
            .map(|n| native.log_file(n))
            .filter(|f| f.exists())
            .collect();
        anyhow::ensure!(
            !files.is_empty(),
            "no logs yet; start the stack with `cargo xtask up`"
        );
        let follow_flag = if follow { "-F" } else { "-q" };
        Command::new("tail")
            .args(["-n", "200", follow_flag])
            .args(files)
            .interactive()
            .context("cannot print the logs")
    }
}
