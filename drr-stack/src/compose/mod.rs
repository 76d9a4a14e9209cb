//! The compose backend: the stack as containers of the generated
//! `compose/docker-compose.yaml`, run by `docker compose` or `docker-compose`.
//!
//! `up` refuses a stale `compose/` (see [`codegen::check`]), makes sure the
//! image is on the machine, runs `compose up -d` with the generated
//! passwords in the environment, and returns only when the primary accepts
//! logins and every replica streams from its slot, checked over TCP on the
//! published ports exactly as the native backend checks its processes. The
//! containers bootstrap themselves (see [`crate::render::entrypoint`]), so
//! data lives in named volumes and survives `down`; `destroy` removes them.
//!
//! **Architecture Invariant:** this module and [`image`] are the only code
//! that runs Docker.

pub mod choice;
mod engine;
pub mod image;
mod net;
mod switch;
mod volumes;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

pub use engine::{Tool, check as check_engine};

use crate::codegen;
use crate::command::Command;
use crate::progress::Progress;
use crate::project::Project;
use crate::readiness::{self, Servers};
use crate::render::compose::IMAGE_ENV;
use crate::render::entrypoint::NODE_CONFIG_DIR;
use crate::render::postgres;
use crate::secrets::Secrets;
use crate::spec::{Backend, Replica, StackSpec};
use crate::stack::UpOptions;

/// How long a node may take to accept logins or a replica to stream; the
/// first start includes `initdb` and base backups inside the containers.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// A compose stack: the project, its compose tool and its passwords.
#[derive(Debug)]
pub struct Compose<'p> {
    project: &'p Project,
    tool: Tool,
    secrets: Secrets,
}

impl<'p> Compose<'p> {
    /// Finds the compose tool and checks that the engine answers.
    pub fn open(project: &'p Project) -> Result<Self> {
        let tool = Tool::detect()?;
        engine::check()?;
        let secrets = project.secrets()?;
        Ok(Compose {
            project,
            tool,
            secrets,
        })
    }

    fn spec(&self) -> &StackSpec {
        self.project.spec()
    }

    /// The project this stack runs.
    pub fn project(&self) -> &'p Project {
        self.project
    }

    /// The compose tool in use.
    pub fn tool(&self) -> &Tool {
        &self.tool
    }

    /// The image the services run (see [`choice`]).
    pub fn image(&self) -> Result<choice::ImageChoice> {
        choice::for_spec(self.spec())
    }

    /// The engine filter for this stack's containers and volumes.
    fn project_filter(&self) -> String {
        format!("label=com.docker.compose.project={}", self.spec().name)
    }

    /// `compose -f <root>/compose/docker-compose.yaml -p <name> ARGS` with
    /// the passwords the file interpolates.
    fn compose<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: Into<std::ffi::OsString>,
    {
        let file = compose_file(self.project);
        let mut command = self
            .tool
            .command()
            .args(["-f".into(), file.into_os_string()])
            .args(["-p", &self.spec().name])
            .args(args)
            .dir(self.project.root());
        for (key, value) in self.secrets.env() {
            command = command.env(key, value);
        }
        command
    }

    /// Brings the stack up; see the module docs.
    pub async fn up(&self, progress: &mut Progress) -> Result<()> {
        self.up_with(progress, UpOptions::default()).await
    }

    /// [`Compose::up`], allowed to do what `options` allow.
    pub async fn up_with(&self, progress: &mut Progress, options: UpOptions) -> Result<()> {
        progress.step("compose/ matches the spec", || {
            codegen::check(self.project).map_err(anyhow::Error::from)
        })?;
        let dropped = self.dropped_volumes()?;
        if !options.yes
            && let Some(left) = dropped.iter().find(|v| v.role == "primary")
        {
            anyhow::bail!(
                "node `{}` left the spec, and volume {} holds a primary's data (was the \
                     primary renamed?); `up` would start an empty primary and delete it. Give \
                     the primary its old name back, or run `cargo xtask up --backend compose \
                     --yes` to delete that data",
                left.node,
                left.volume
            );
        }
        let choice::ImageChoice {
            image,
            here,
            warning,
        } = self.image()?;
        if let Some(warning) = warning {
            eprintln!("warning: {warning}");
        }
        if !here {
            progress.step(&format!("pull {image}"), || {
                self.compose(["pull", "--quiet"]).env(IMAGE_ENV, &image).read().map(drop).with_context(|| {
                    format!(
                        "image {image} is not on this machine and cannot be pulled; build a local one \
                         with `cargo xtask image`, which `up` then uses (or name an image that is here \
                         with `{IMAGE_ENV}=...` or `.image(...)` in the spec)"
                    )
                })
            })?;
        }
        // A network partition ends here: `compose up` would leave the
        // container off the network, and no login could reach it.
        for node in self.reconnect(None)? {
            progress.note(&format!("`{node}` is back on the network"));
        }
        readiness::check_ports(self.spec(), self)?;
        // Before the containers: a new replica's base backup goes through
        // its replication link.
        if self.spec().has_fault_links() {
            progress.step("fault proxy", || {
                self.net_follow_with(self.spec(), Some(&image))
            })?;
        } else {
            crate::net::launch::stop(&self.net_dir())?;
        }
        progress.step(
            &format!("{} up ({image})", self.tool.describe()),
            || {
                self.compose(["up", "-d", "--remove-orphans"])
                    .env(IMAGE_ENV, &image)
                    .read()
                    .map(drop)
                    .with_context(|| {
                        format!(
                            "the containers did not start; see `cargo xtask logs --backend compose`\n{}",
                            self.log_tails()
                        )
                    })
            },
        )?;
        let started = Instant::now();
        let admin = self.wait_logins().await?;
        progress.record("nodes accept logins", started.elapsed());
        progress.step("roles and databases", || self.bootstrap())?;
        self.remove_dropped(&admin, &dropped, progress).await?;
        self.wait_streaming(&admin, &image, progress).await
    }

    /// Waits until every replica streams, rebuilding one that cannot
    /// ([`readiness::wait_streaming`]): it loses its container and volume
    /// and comes back from a fresh base backup (its entrypoint takes one).
    async fn wait_streaming(
        &self,
        admin: &tokio_postgres::Client,
        image: &str,
        progress: &mut Progress,
    ) -> Result<()> {
        let rebuild = Rebuilder {
            compose: self,
            image,
        };
        // A replica whose replication link a partition cuts cannot stream
        // until `heal`; `up` waits for the others.
        let expected = crate::net::command::streaming(self.spec(), &self.net_dir(), progress);
        readiness::wait_streaming(&expected, &self.secrets, admin, self, &rebuild, progress).await
    }

    /// Runs the spec's idempotent bootstrap SQL in the primary's container,
    /// so roles and databases added to the spec reach a volume made
    /// earlier. The entrypoint ran it already when the volume is new; a
    /// second run changes nothing. (`docker exec`, not `compose exec`: the
    /// same, without compose v1's second of start-up.)
    fn bootstrap(&self) -> Result<()> {
        let spec = self.spec();
        let primary = &spec.primary;
        let container = self.container(&primary.name)?;
        let psql = format!("{}/psql", postgres::server_bindir(spec.postgres_major));
        let script = format!("{NODE_CONFIG_DIR}/bootstrap.sql");
        let port = primary.port.to_string();
        // `-e PGPASSWORD` passes the value from this process's environment,
        // so it never shows on a command line.
        Command::new("docker")
            .args(["exec", "-e", "PGPASSWORD", &container, &psql])
            .args([
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-p",
                &port,
            ])
            .args(["-U", "postgres", "-d", "postgres", "-f", &script])
            .env("PGPASSWORD", &self.secrets.superuser_password)
            .read()
            .map(drop)
            .with_context(|| format!("the bootstrap SQL failed on `{}`", primary.name))
    }

    /// The id of `node`'s running container.
    fn container(&self, node: &str) -> Result<String> {
        self.find_container(node, false)?
            .with_context(|| format!("the container of node `{node}` is not running"))
    }

    /// The id of `node`'s container, running or stopped.
    fn any_container(&self, node: &str) -> Result<String> {
        self.find_container(node, true)?
            .with_context(|| format!("node `{node}` has no container; run `cargo xtask up`"))
    }

    fn find_container(&self, node: &str, stopped_too: bool) -> Result<Option<String>> {
        let service = format!("label=com.docker.compose.service={node}");
        let out = Command::new("docker")
            .args(["ps", "--quiet", "--filter", &self.project_filter()])
            .args(["--filter", &service])
            .args(stopped_too.then_some("--all"))
            .read()?;
        Ok(out.lines().next().map(str::to_owned))
    }

    /// Waits until every node accepts the superuser over TCP; returns the
    /// primary's client.
    async fn wait_logins(&self) -> Result<tokio_postgres::Client> {
        let spec = self.spec();
        let admin =
            readiness::wait_logins(spec, &self.secrets, &spec.primary, self, READY_TIMEOUT).await?;
        for replica in &spec.replicas {
            readiness::wait_logins(spec, &self.secrets, &replica.node, self, READY_TIMEOUT).await?;
        }
        Ok(admin)
    }

    /// Stops and removes the containers and the network; volumes are kept.
    pub fn down(&self, progress: &mut Progress) -> Result<()> {
        // The fault proxy goes first, as on the native backend: a primary's
        // shutdown would wait for a replica behind a cut link.
        crate::net::launch::stop(&self.net_dir())?;
        progress.step("remove containers (volumes kept)", || {
            self.compose(["down", "--remove-orphans"]).read().map(drop)
        })
    }

    /// `down` for `cargo xtask down --all`: stops the spec's compose
    /// project when there is a compose file and a Docker engine answers;
    /// otherwise says why there is nothing to stop.
    pub fn down_if_reachable(project: &Project, progress: &mut Progress) -> Result<()> {
        if !project.spec().compose || !compose_file(project).is_file() {
            progress.note("no compose stack: the workspace has no compose/docker-compose.yaml");
            return Ok(());
        }
        match Compose::open(project) {
            Ok(compose) => compose.down(progress),
            Err(e) => {
                progress.note(&format!("no compose stack stopped: {e:#}"));
                Ok(())
            }
        }
    }

    /// Removes the containers, the network and the volumes: all the data,
    /// that of nodes which left the spec included (`down --volumes` knows
    /// only the volumes the compose file declares).
    pub fn destroy(&self, progress: &mut Progress) -> Result<()> {
        progress.step("remove containers and volumes", || {
            self.compose(["down", "--volumes", "--remove-orphans"])
                .read()?;
            for left in self.volumes()? {
                Command::new("docker")
                    .args(["volume", "rm", &left.volume])
                    .read()?;
            }
            let net = self.net_dir();
            crate::net::launch::stop(&net)?;
            // `compose-<stack>/`, the proxy's directory and its parent.
            let dir = net.root().parent().unwrap_or(net.root());
            match std::fs::remove_dir_all(dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(e).with_context(|| format!("cannot delete {}", dir.display()))
                }
                _ => Ok(()),
            }
        })
    }

    /// What `destroy` deletes, for its confirmation question.
    pub fn describe(&self) -> String {
        format!(
            "the containers and volumes of compose project `{}`",
            self.spec().name
        )
    }

    /// Each container's state as the engine words it (e.g. `Up 5 seconds
    /// (healthy)`), by service; empty when the engine cannot be asked.
    pub fn states(&self) -> BTreeMap<String, String> {
        let Ok(out) = Command::new("docker")
            .args([
                "ps",
                "--all",
                "--filter",
                &self.project_filter(),
                "--format",
            ])
            .args(["{{.Label \"com.docker.compose.service\"}}\t{{.Status}}"])
            .read()
        else {
            return BTreeMap::new();
        };
        out.lines()
            .filter_map(|l| l.split_once('\t'))
            .map(|(service, status)| (service.to_owned(), status.to_owned()))
            .collect()
    }

    /// Prints the containers' logs (`node` or all); returns the exit code.
    pub fn logs(&self, node: Option<&str>, follow: bool) -> Result<i32> {
        let mut command = self.compose(["logs", "--no-color", "--tail", "200"]);
        if follow {
            command = command.args(["--follow"]);
        }
        command.args(node).interactive()
    }

    /// [`Servers::log_tail`] of every node that has a container.
    fn log_tails(&self) -> String {
        let states = self.states();
        self.spec()
            .nodes()
            .filter(|n| states.contains_key(&n.name))
            .map(|n| self.log_tail(&n.name))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// The generated compose file of `project`.
fn compose_file(project: &Project) -> std::path::PathBuf {
    project.compose_dir().join("docker-compose.yaml")
}

/// How the compose backend rebuilds a replica: a new volume, whose
/// entrypoint takes a fresh base backup.
struct Rebuilder<'a, 'p> {
    compose: &'a Compose<'p>,
    image: &'a str,
}

impl readiness::Rebuild for Rebuilder<'_, '_> {
    fn remove(&self, replica: &str) -> Result<()> {
        self.compose
            .compose(["rm", "--stop", "--force", replica])
            .read()?;
        Command::new("docker")
            .args(["volume", "rm", &self.compose.volume(replica)?])
            .read()
            .map(drop)
    }

    async fn restart(&self, replica: &Replica, progress: &mut Progress) -> Result<()> {
        let name = replica.node.name.as_str();
        progress.step(&format!("start {name} from a new base backup"), || {
            self.compose
                .compose(["up", "-d", name])
                .env(IMAGE_ENV, self.image)
                .read()
                .map(drop)
        })?;
        let compose = self.compose;
        readiness::wait_logins(
            compose.spec(),
            &compose.secrets,
            &replica.node,
            compose,
            READY_TIMEOUT,
        )
        .await
        .map(drop)
    }
}

impl Servers for Compose<'_> {
    fn backend(&self) -> Backend {
        Backend::Compose
    }

    fn ready_timeout(&self) -> Duration {
        READY_TIMEOUT
    }

    fn runs(&self, node: &str) -> bool {
        self.states().get(node).is_some_and(|s| s.starts_with("Up"))
    }

    /// A container that exited or keeps restarting gave up.
    fn check_alive(&self, node: &str) -> Result<()> {
        let states = self.states();
        match states.get(node).map(String::as_str) {
            Some(state) if state.starts_with("Restarting") || state.starts_with("Exited") => {
                anyhow::bail!(
                    "the container of node `{node}` stopped ({state}); {}",
                    self.log_tail(node)
                )
            }
            _ => Ok(()),
        }
    }

    /// The last lines of `node`'s container log.
    fn recent_log(&self, node: &str) -> String {
        self.compose(["logs", "--no-color", "--tail", "30", node])
            .read()
            .unwrap_or_default()
    }

    /// The last lines of `node`'s container log, for error messages.
    fn log_tail(&self, node: &str) -> String {
        match self
            .compose(["logs", "--no-color", "--tail", "20", node])
            .read()
        {
            Ok(log) if !log.trim().is_empty() => {
                format!("the end of the log of `{node}`:\n{}", log.trim_end())
            }
            Ok(_) => format!("the container of `{node}` has logged nothing"),
            Err(e) => format!("cannot read the log of `{node}`: {e:#}"),
        }
    }
}
