//! The fault proxy's files in the stack's state directory (`net/`): its
//! configuration (which links it serves), the toxics of every link (which
//! survive `down`/`up` until healed), its pid, readiness mark and log.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};

use super::toxic::Toxic;
use crate::host::ServerUser;

/// Every link's toxics, by link name (`replica1-client`).
pub type LinkToxics = BTreeMap<String, Vec<Toxic>>;

/// What the proxy serves: written by `up`, read by the proxy at start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// Address every link and the API listen on.
    pub host: std::net::IpAddr,
    /// Port of the Toxiproxy API, if the spec names one.
    pub api: Option<u16>,
    /// The links.
    pub links: Vec<LinkConfig>,
}

/// One link of [`Config`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkConfig {
    /// `NODE-KIND`, the name the API knows it by.
    pub name: String,
    /// The proxy's port.
    pub listen: u16,
    /// The port it forwards to on the same host.
    pub upstream: u16,
    /// Where the link listens when not on [`Config::host`]: a compose
    /// replica's replication link, on the address containers reach the
    /// host by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind: Option<std::net::IpAddr>,
}

impl Config {
    /// What the proxy of `spec` serves: every link on the spec's address,
    /// forwarding to the node's port (client) or the primary's
    /// (replication; `spec` says who is primary now), except that
    /// replication links listen on `replication_bind` when given.
    pub fn of(spec: &crate::spec::StackSpec, replication_bind: Option<std::net::IpAddr>) -> Config {
        let links = spec
            .fault_links()
            .iter()
            .map(|l| LinkConfig {
                name: l.name(),
                listen: l.listen,
                upstream: l.upstream,
                bind: replication_bind.filter(|_| l.kind == crate::spec::LinkKind::Replication),
            })
            .collect();
        Config {
            host: spec.host(),
            api: spec.net_api,
            links,
        }
    }
}

impl LinkConfig {
    /// The address the link listens on, with `config`'s host as default.
    pub fn listen_addr(&self, config: &Config) -> std::net::SocketAddr {
        std::net::SocketAddr::new(self.bind.unwrap_or(config.host), self.listen)
    }

    /// Who may connect: a link bound beyond the spec's address (Docker's
    /// bridge) admits only this host and its containers.
    pub fn admit(&self) -> super::admit::Admit {
        match self.bind {
            Some(_) => super::admit::Admit::DockerBridges,
            None => super::admit::Admit::Any,
        }
    }
}

/// The proxy's directory, `<state>/net`.
#[derive(Debug, Clone)]
pub struct NetDir {
    root: PathBuf,
}

impl NetDir {
    /// The directory at `root` (created by [`NetDir::create`]).
    pub fn at(root: impl Into<PathBuf>) -> NetDir {
        NetDir { root: root.into() }
    }

    /// Creates the directory, owned by the user the proxy runs as.
    pub fn create(&self, user: Option<&ServerUser>) -> Result<()> {
        std::fs::create_dir_all(&self.root)
            .with_context(|| format!("cannot create {}", self.root.display()))?;
        crate::host::give(user, &self.root)
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The proxy's configuration file.
    pub fn config_file(&self) -> PathBuf {
        self.root.join("links.json")
    }

    /// The toxics file.
    pub fn toxics_file(&self) -> PathBuf {
        self.root.join("toxics.json")
    }

    /// What the running proxy applies now: it writes the toxics there
    /// once they are in force.
    pub fn applied_file(&self) -> PathBuf {
        self.root.join("toxics.applied.json")
    }

    /// Where `up` records the proxy's pid.
    pub fn pid_file(&self) -> PathBuf {
        self.root.join("proxy.pid")
    }

    /// Written by the proxy once every port listens: its pid.
    pub fn ready_file(&self) -> PathBuf {
        self.root.join("proxy.ready")
    }

    /// The proxy's log.
    pub fn log_file(&self) -> PathBuf {
        self.root.join("proxy.log")
    }

    /// The configuration `up` last wrote, if any.
    pub fn config(&self) -> Result<Option<Config>> {
        read_json(&self.config_file())
    }

    /// Every link's toxics (none when no file was written yet).
    pub fn toxics(&self) -> Result<LinkToxics> {
        Ok(read_json(&self.toxics_file())?.unwrap_or_default())
    }

    /// The toxics the running proxy last put in force (none before it did).
    pub fn applied(&self) -> Result<LinkToxics> {
        Ok(read_json(&self.applied_file())?.unwrap_or_default())
    }

    /// Records `toxics` as in force (the proxy does, after applying them).
    pub fn write_applied(&self, toxics: &LinkToxics) -> Result<()> {
        write_json(&self.applied_file(), toxics, None)
    }

    /// Replaces the configuration.
    pub fn write_config(&self, config: &Config, user: Option<&ServerUser>) -> Result<()> {
        write_json(&self.config_file(), config, user)
    }

    /// Replaces every link's toxics (atomically: the proxy never reads
    /// half a file).
    pub fn write_toxics(&self, toxics: &LinkToxics, user: Option<&ServerUser>) -> Result<()> {
        write_json(&self.toxics_file(), toxics, user)
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).map(Some).with_context(|| {
            format!(
                "{} is damaged; delete it (`cargo xtask heal` writes a new one)",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn write_json<T: Serialize>(path: &Path, value: &T, user: Option<&ServerUser>) -> Result<()> {
    let text = serde_json::to_string_pretty(value).context("cannot serialize the proxy's state")?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text + "\n").with_context(|| format!("cannot write {}", tmp.display()))?;
    crate::host::give(user, &tmp)?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::toxic::{Kind, Stream};

    #[test]
    fn toxics_round_trip_and_start_empty() {
        let dir = tempfile::tempdir().unwrap();
        let net = NetDir::at(dir.path());
        assert!(net.toxics().unwrap().is_empty());
        assert_eq!(net.config().unwrap(), None);
        let toxics = LinkToxics::from([(
            "replica1-client".to_owned(),
            vec![Toxic::new(
                "latency",
                Kind::Latency {
                    latency: 80,
                    jitter: 0,
                },
                Stream::Downstream,
            )],
        )]);
        net.write_toxics(&toxics, None).unwrap();
        assert_eq!(net.toxics().unwrap(), toxics);
        std::fs::write(net.toxics_file(), "{").unwrap();
        let err = net.toxics().unwrap_err().to_string();
        assert!(err.contains("is damaged"), "{err}");
    }
}
