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

mod engine;
pub mod image;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

pub use engine::{Tool, check as check_engine};

use crate::codegen;
use crate::command::Command;
use crate::pg::{self, Login};
use crate::progress::Progress;
use crate::project::Project;
use crate::render::compose::{IMAGE_ENV, node_of_volume};
use crate::secrets::Secrets;
use crate::spec::StackSpec;

/// How long a node may take to accept logins or a replica to stream; the
/// first start includes `initdb` and base backups inside the containers.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// How often a wait asks the engine whether a container gave up.
const STATE_POLL: Duration = Duration::from_millis(500);

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
        let secrets = Secrets::load_or_create(&project.secrets_dir())?;
        Ok(Compose {
            project,
            tool,
            secrets,
        })
    }

    fn spec(&self) -> &StackSpec {
        self.project.spec()
    }

    /// The compose tool in use.
    pub fn tool(&self) -> &Tool {
        &self.tool
    }

    /// The image the services run, and whether it is on this machine:
    /// `DRR_IMAGE` when set; else the spec's when it is here; else the one
    /// `cargo xtask image` builds, when that is (no registry can be reached
    /// from many machines drr runs on); else the spec's, for `up` to pull.
    fn image(&self) -> Result<(String, bool)> {
        if let Some(image) = std::env::var(IMAGE_ENV)
            .ok()
            .filter(|i| !i.trim().is_empty())
        {
            let here = image::exists(&image)?;
            return Ok((image, here));
        }
        let spec = self.spec();
        if image::exists(&spec.image)? {
            return Ok((spec.image.clone(), true));
        }
        let local = image::local_tag(spec.postgres_major);
        if image::exists(&local)? {
            return Ok((local, true));
        }
        Ok((spec.image.clone(), false))
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
        let file = self.project.compose_dir().join("docker-compose.yaml");
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
        progress.step("compose/ matches the spec", || {
            codegen::check(self.project).map_err(anyhow::Error::from)
        })?;
        let (image, here) = self.image()?;
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
        self.check_ports()?;
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
        self.remove_dropped_replicas(&admin, progress).await?;
        let started = Instant::now();
        self.wait_streaming(&admin).await?;
        progress.record("replicas stream", started.elapsed());
        Ok(())
    }

    /// Runs the spec's idempotent bootstrap SQL in the primary's container,
    /// so roles and databases added to the spec reach a volume made
    /// earlier. The entrypoint ran it already when the volume is new; a
    /// second run changes nothing. (`docker exec`, not `compose exec`: the
    /// same, without compose v1's second of start-up.)
    fn bootstrap(&self) -> Result<()> {
        let script = "PGPASSWORD=\"$DRR_SUPERUSER_PASSWORD\" exec \
            /usr/lib/postgresql/\"$DRR_PG_MAJOR\"/bin/psql -X -q -v ON_ERROR_STOP=1 \
            -h 127.0.0.1 -p \"$DRR_PORT\" -U postgres -d postgres -f /etc/drr/node/bootstrap.sql";
        let primary = self.spec().primary.name.as_str();
        let container = self.container(primary)?;
        Command::new("docker")
            .args(["exec", &container, "sh", "-c", script])
            .read()
            .map(drop)
            .with_context(|| format!("the bootstrap SQL failed on `{primary}`"))
    }

    /// The id of `node`'s running container.
    fn container(&self, node: &str) -> Result<String> {
        let service = format!("label=com.docker.compose.service={node}");
        let out = Command::new("docker")
            .args(["ps", "--quiet", "--filter", &self.project_filter()])
            .args(["--filter", &service])
            .read()?;
        out.lines()
            .next()
            .map(str::to_owned)
            .with_context(|| format!("the container of node `{node}` is not running"))
    }

    /// Replicas that left the spec: their containers went with
    /// `--remove-orphans`; this drops their slots, which would otherwise
    /// keep WAL on the primary forever, and removes their volumes.
    async fn remove_dropped_replicas(
        &self,
        admin: &tokio_postgres::Client,
        progress: &mut Progress,
    ) -> Result<()> {
        for (node, volume) in self.dropped_volumes()? {
            pg::drop_slot(admin, &node).await?;
            progress.step(&format!("remove {node} (slot and volume {volume})"), || {
                Command::new("docker")
                    .args(["volume", "rm", &volume])
                    .read()
                    .map(drop)
            })?;
        }
        Ok(())
    }

    /// `(node, volume)` for every node volume of this compose project whose
    /// node is not in the spec.
    fn dropped_volumes(&self) -> Result<Vec<(String, String)>> {
        let spec = self.spec();
        let out = Command::new("docker")
            .args([
                "volume",
                "ls",
                "--filter",
                &self.project_filter(),
                "--format",
            ])
            .args(["{{.Name}}\t{{.Label \"com.docker.compose.volume\"}}"])
            .read()
            .context("cannot list the stack's volumes")?;
        Ok(out
            .lines()
            .filter_map(|line| line.split_once('\t'))
            .filter_map(|(volume, key)| {
                let node = node_of_volume(key)?;
                let in_spec = spec.nodes().any(|n| n.name == node);
                (!in_spec).then(|| (node.to_owned(), volume.to_owned()))
            })
            .collect())
    }

    /// Fails before anything starts when a port of a node without a running
    /// container is taken (e.g. by the native stack of the same spec).
    fn check_ports(&self) -> Result<()> {
        let spec = self.spec();
        let states = self.states();
        for node in spec.nodes() {
            let running = states.get(&node.name).is_some_and(|s| s.starts_with("Up"));
            if running {
                continue;
            }
            if let Some(holder) = crate::native::ports::holder(spec.listen, node.port) {
                anyhow::bail!(
                    "port {} on {} (node `{}`) is already in use by {holder}; stop it (a native stack \
                     of this spec: `cargo xtask down --backend native`), or give `{}` another port in the spec",
                    node.port,
                    spec.listen,
                    node.name,
                    node.name
                );
            }
        }
        Ok(())
    }

    /// Waits until every node accepts the superuser over TCP (and the login
    /// role on the primary); fails early when a container stopped or keeps
    /// restarting, with the end of its log. Returns the primary's client.
    async fn wait_logins(&self) -> Result<tokio_postgres::Client> {
        let spec = self.spec();
        let admin = Login::admin(&self.secrets);
        let mut primary = None;
        for node in spec.nodes() {
            let mut last_poll = Instant::now();
            let client = pg::connect_retrying(spec, node, admin, READY_TIMEOUT, || {
                if last_poll.elapsed() < STATE_POLL {
                    return Ok(());
                }
                last_poll = Instant::now();
                self.check_container(&node.name)
            })
            .await
            .with_context(|| self.log_tail(&node.name))?;
            if primary.is_none() {
                primary = Some(client);
            }
        }
        if let Some((role, db)) = spec.login() {
            let login = Login {
                user: &role.name,
                password: &role.password,
                database: db.map_or("postgres", |d| d.name.as_str()),
            };
            pg::connect(spec, &spec.primary, login).await.context(
                "the login role cannot log in: the primary's volume was made from another spec; \
                 run `cargo xtask destroy --backend compose` and `up` to rebuild it",
            )?;
        }
        primary.context("a spec always has a primary")
    }

    /// Fails when `node`'s container exited or restarts.
    fn check_container(&self, node: &str) -> Result<()> {
        let states = self.states();
        match states.get(node).map(String::as_str) {
            Some(state) if state.starts_with("Restarting") || state.starts_with("Exited") => {
                anyhow::bail!("the container of node `{node}` stopped ({state})")
            }
            _ => Ok(()),
        }
    }

    /// Waits until every replica is in recovery and streams from its slot.
    async fn wait_streaming(&self, admin: &tokio_postgres::Client) -> Result<()> {
        let spec = self.spec();
        for replica in &spec.replicas {
            let client = pg::connect(spec, &replica.node, Login::admin(&self.secrets)).await?;
            let state = pg::replay_state(&client).await?;
            anyhow::ensure!(
                state.in_recovery,
                "node `{}` is not in recovery: it is not a replica any more; run \
                 `cargo xtask destroy --backend compose` and `up` to rebuild the stack",
                replica.node.name
            );
        }
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let rows = pg::streaming(admin).await?;
            let lagging = spec
                .replicas
                .iter()
                .map(|r| r.node.name.as_str())
                .find(|name| !rows.iter().any(|row| row.slot == *name && row.streaming));
            let Some(first) = lagging else {
                return Ok(());
            };
            if Instant::now() > deadline {
                anyhow::bail!(
                    "replica `{first}` does not stream from the primary\n{}",
                    self.log_tail(first)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops and removes the containers and the network; volumes are kept.
    pub fn down(&self, progress: &mut Progress) -> Result<()> {
        progress.step("remove containers (volumes kept)", || {
            self.compose(["down", "--remove-orphans"]).read().map(drop)
        })
    }

    /// Removes the containers, the network and the volumes: all the data.
    pub fn destroy(&self, progress: &mut Progress) -> Result<()> {
        progress.step("remove containers and volumes", || {
            self.compose(["down", "--volumes", "--remove-orphans"])
                .read()
                .map(drop)
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

    /// [`Self::log_tail`] of every node that has a container.
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
