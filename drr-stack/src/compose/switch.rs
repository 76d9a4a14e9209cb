//! What `failover` asks of a compose node: stopping and starting its
//! container, rewinding its data with `pg_rewind`, and making it a standby.
//! Data lives in the node's volume, so the last two run in a one-off
//! container of the stack's image with that volume, as `postgres`, with
//! every argument given as an argument (no shell).

use std::time::Duration;

use anyhow::{Context as _, Result};

use super::Compose;
use crate::command::Command;
use crate::readiness;
use crate::render::compose::{PGDATA, VOLUME_MOUNT};
use crate::render::{postgres, standby};
use crate::secrets::Secrets;
use crate::spec::{Node, StackSpec};

/// How long a container may take to stop (its fast shutdown included).
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

impl Compose<'_> {
    /// Stops `name`'s container (`stop_signal: SIGINT`: a fast shutdown,
    /// which sends the replicas all WAL first); its volume is kept.
    pub fn stop_node(&self, name: &str) -> Result<()> {
        let container = self.container(name)?;
        Command::new("docker")
            .args([
                "stop",
                "--time",
                &STOP_TIMEOUT.as_secs().to_string(),
                &container,
            ])
            .read()
            .with_context(|| format!("cannot stop the container of `{name}`"))?;
        Ok(())
    }

    /// Starts `name`'s stopped container and waits until it accepts logins.
    pub async fn start_node(&self, name: &str, spec: &StackSpec) -> Result<()> {
        let container = self.any_container(name)?;
        Command::new("docker")
            .args(["start", &container])
            .read()
            .with_context(|| format!("cannot start the container of `{name}`"))?;
        readiness::wait_logins(
            spec,
            &self.secrets,
            spec.node(name)?,
            self,
            super::READY_TIMEOUT,
        )
        .await
        .map(drop)
    }

    /// Waits until every replica of `runtime` streams from its primary,
    /// which `admin` is connected to.
    pub async fn wait_replicas(
        &self,
        runtime: &StackSpec,
        admin: &tokio_postgres::Client,
    ) -> Result<()> {
        readiness::wait_replicas(runtime, &self.secrets, admin, self, super::READY_TIMEOUT).await
    }

    /// Where a replica container reaches `node`: its service name.
    pub fn upstream(&self, node: &Node) -> standby::Upstream {
        standby::Upstream {
            host: node.name.clone(),
            port: node.port,
        }
    }

    /// Rewinds the stopped node `name`'s data onto the history of `after`'s
    /// running primary with `pg_rewind` (its configuration files are
    /// mounted from `compose/`, so the copies `pg_rewind` brings are never
    /// read).
    pub fn rewind(&self, name: &str, after: &StackSpec, secrets: &Secrets) -> Result<()> {
        let source = &after.primary;
        let source_container = self.container(&source.name)?;
        let network = Command::new("docker")
            .args(["inspect", "--format"])
            .args(["{{range $name, $_ := .NetworkSettings.Networks}}{{$name}} {{end}}"])
            .args([&source_container])
            .read()?;
        let network = network
            .split_whitespace()
            .next()
            .with_context(|| format!("the container of `{}` has no network", source.name))?
            .to_owned();
        let conninfo = format!(
            "host={} port={} user=postgres dbname=postgres",
            source.name, source.port
        );
        let pg_rewind = format!(
            "{}/pg_rewind",
            postgres::server_bindir(self.spec().postgres_major)
        );
        // `-e PGPASSWORD` passes the value from this process's environment.
        self.one_off(name, &["--network", &network, "-e", "PGPASSWORD"])?
            .args([
                pg_rewind.as_str(),
                "-D",
                PGDATA,
                "--source-server",
                &conninfo,
            ])
            .env("PGPASSWORD", &secrets.superuser_password)
            .read()
            .with_context(|| format!("cannot rewind `{name}` onto `{}`", source.name))?;
        Ok(())
    }

    /// Makes the stopped node `name` a standby of `upstream`: its
    /// `standby.signal` and `postgresql.auto.conf`, written into its volume.
    pub fn make_standby(&self, name: &str, upstream: &Node, secrets: &Secrets) -> Result<()> {
        let auto_conf = standby::auto_conf(
            self.spec(),
            &self.upstream(upstream),
            name,
            &secrets.replication_password,
        );
        let auto_path = format!("{PGDATA}/{}", standby::AUTO_CONF);
        let signal_path = format!("{PGDATA}/{}", standby::STANDBY_SIGNAL);
        // `tee` writes its standard input to the file (what it echoes is dropped).
        self.one_off(name, &["-i"])?
            .args(["tee", auto_path.as_str()])
            .stdin(auto_conf)
            .read()
            .and_then(|_| {
                self.one_off(name, &[])?
                    .args(["touch", signal_path.as_str()])
                    .read()
            })
            .with_context(|| format!("cannot make `{name}` a standby"))?;
        Ok(())
    }

    /// `docker run --rm FLAGS` of the image `name`'s container runs, with
    /// its volume mounted, as `postgres`; the program and its arguments
    /// follow.
    fn one_off(&self, name: &str, flags: &[&str]) -> Result<Command> {
        let container = self.any_container(name)?;
        let image = Command::new("docker")
            .args(["inspect", "--format", "{{.Config.Image}}", &container])
            .read()?;
        let mount = format!("{}:{VOLUME_MOUNT}", self.volume(name)?);
        Ok(Command::new("docker")
            .args(["run", "--rm", "--user", "postgres", "--volume", &mount])
            .args(flags)
            .args([image.trim()]))
    }
}
