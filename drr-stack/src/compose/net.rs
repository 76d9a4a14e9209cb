//! Network faults on a compose stack. Latency, jitter, bandwidth and
//! single-link partitions come from the same fault proxy as on the native
//! backend, a process on the host: client links in front of the published
//! ports, replication links on the host's address on Docker's default
//! bridge, which replica containers reach as
//! [`HOST_GATEWAY`](crate::render::compose::HOST_GATEWAY). A partition of a
//! whole node uses the engine's own network: `docker network disconnect`
//! takes the node's container off the project network, `heal` (or `up`)
//! connects it again.
//!
//! Why a host process rather than a proxy container for the replication
//! link: one proxy serves both kinds of link, with the same files, signals
//! and Toxiproxy API as on the native backend, and the image needs no
//! extra binary (the host's may not even run in it).

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{Context as _, Result};

use super::Compose;
use crate::command::Command;
use crate::host::ServerUser;
use crate::host::dirs::Home;
use crate::net::NetDir;
use crate::net::files::Config;
use crate::spec::StackSpec;

impl Compose<'_> {
    /// The fault proxy's directory: `compose-<stack>/net` in the
    /// workspace's home (`target/drr`, or the native backend's `/var/tmp`
    /// fallback when the server user cannot reach the workspace).
    pub fn net_dir(&self) -> NetDir {
        let user = ServerUser::resolve().ok().flatten();
        NetDir::at(self.proxy_dir(&self.home(user.as_ref())).join("net"))
    }

    /// The fault proxy's directory, created (or checked) for the user it
    /// runs as: the server user when drr runs as root, as on the native
    /// backend.
    pub fn claim_net_dir(&self) -> Result<(NetDir, Option<ServerUser>)> {
        let user = ServerUser::resolve()?;
        let home = self.home(user.as_ref());
        let dir = self.proxy_dir(&home);
        home.claim(&dir, user.as_ref())
            .with_context(|| format!("cannot use {} for the fault proxy's files", dir.display()))?;
        let net = NetDir::at(dir.join("net"));
        net.create(user.as_ref())?;
        Ok((net, user))
    }

    fn home(&self, user: Option<&ServerUser>) -> Home {
        Home::of(self.project.root(), user)
    }

    fn proxy_dir(&self, home: &Home) -> PathBuf {
        home.path.join(format!("compose-{}", self.spec().name))
    }

    /// Runs the fault proxy with the links of `runtime` (restarting it when
    /// they changed or it crashed), or stops it when no link is opted in.
    pub fn net_follow(&self, runtime: &StackSpec) -> Result<()> {
        self.net_follow_with(runtime, None)
    }

    /// [`Compose::net_follow`]; `image` can tell the host's address on the
    /// default bridge when it is not known yet.
    pub(super) fn net_follow_with(&self, runtime: &StackSpec, image: Option<&str>) -> Result<()> {
        if !runtime.has_fault_links() {
            return crate::net::launch::stop(&self.net_dir());
        }
        let (net, user) = self.claim_net_dir()?;
        let replicated = runtime
            .replicas
            .iter()
            .any(|r| r.node.links.replication.is_some());
        let bind = if replicated {
            Some(self.host_gateway(&net, image)?)
        } else {
            None
        };
        crate::net::launch::ensure(&net, &Config::of(runtime, bind), user.as_ref())
    }

    /// The host's address as containers reach it (`host-gateway`): the one
    /// the proxy's configuration has while the host still has it, else the
    /// engine's answer, from a throw-away container of `image`.
    fn host_gateway(&self, net: &NetDir, image: Option<&str>) -> Result<IpAddr> {
        let known = net
            .config()
            .ok()
            .flatten()
            .and_then(|c| c.links.into_iter().find_map(|l| l.bind))
            // The daemon's bridge can change (a new `bip`, a restart).
            .filter(|address| crate::net::admit::is_own_address(*address));
        if let Some(address) = known {
            return Ok(address);
        }
        let image = image.context(
            "the fault proxy does not know the host's address on Docker's bridge yet; run \
             `cargo xtask up`",
        )?;
        let out = Command::new("docker")
            .args(["run", "--rm", "--add-host", "drr-host:host-gateway"])
            .args(["--entrypoint", "getent", image, "hosts", "drr-host"])
            .read()
            .context("cannot ask the engine for the host's address (`host-gateway`)")?;
        out.split_whitespace()
            .next()
            .and_then(|a| a.parse().ok())
            .with_context(|| {
                format!(
                    "the engine maps `host-gateway` to no address (`getent` said `{}`); a \
                     replication link on the compose backend needs Docker 20.10 or later with \
                     its default bridge",
                    out.trim()
                )
            })
    }

    /// The project's network (compose's `default`).
    fn network(&self) -> Result<String> {
        let filter = format!("label=com.docker.compose.project={}", self.spec().name);
        let out = Command::new("docker")
            .args(["network", "ls", "--quiet", "--filter", &filter])
            .args(["--filter", "label=com.docker.compose.network=default"])
            .args(["--format", "{{.Name}}"])
            .read()?;
        out.lines().next().map(str::to_owned).with_context(|| {
            format!(
                "compose project `{}` has no network; run `cargo xtask up`",
                self.spec().name
            )
        })
    }

    /// Whether `node`'s container is on no network: a partition took it off.
    fn is_disconnected(&self, container: &str) -> Result<bool> {
        let count = Command::new("docker")
            .args(["inspect", "--format", "{{len .NetworkSettings.Networks}}"])
            .args([container])
            .read()?;
        Ok(count.trim() == "0")
    }

    /// Takes `node`'s container off the project network: every link of the
    /// node is cut (its WAL stream, its published port, the proxy's links
    /// to it), open connections get no answers.
    pub fn disconnect(&self, node: &str) -> Result<()> {
        let container = self.container(node)?;
        if self.is_disconnected(&container)? {
            return Ok(());
        }
        Command::new("docker")
            .args(["network", "disconnect", &self.network()?, &container])
            .read()
            .map(drop)
            .with_context(|| format!("cannot take `{node}` off the network"))
    }

    /// Puts the containers a partition took off the network back on it
    /// (`node`'s, or every node's); returns the nodes it reconnected.
    pub fn reconnect(&self, node: Option<&str>) -> Result<Vec<String>> {
        let mut back = Vec::new();
        for name in self.disconnected()? {
            if node.is_some_and(|n| n != name) {
                continue;
            }
            let container = self.container(&name)?;
            // The service name is the alias replicas resolve the primary by.
            Command::new("docker")
                .args(["network", "connect", "--alias", &name])
                .args([self.network()?.as_str(), container.as_str()])
                .read()
                .with_context(|| format!("cannot put `{name}` back on the network"))?;
            back.push(name);
        }
        Ok(back)
    }

    /// The nodes whose running container a partition took off the network
    /// (two engine calls, whatever the number of nodes: `up` asks too).
    pub fn disconnected(&self) -> Result<Vec<String>> {
        let ids = Command::new("docker")
            .args(["ps", "--quiet", "--filter", &self.project_filter()])
            .read()?;
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let out = Command::new("docker")
            .args(["inspect", "--format"])
            .args([
                "{{index .Config.Labels \"com.docker.compose.service\"}} {{len .NetworkSettings.Networks}}",
            ])
            .args(ids)
            .read()?;
        Ok(out
            .lines()
            .filter_map(|line| line.rsplit_once(' '))
            .filter(|(_, networks)| *networks == "0")
            .map(|(service, _)| service.to_owned())
            .collect())
    }
}
