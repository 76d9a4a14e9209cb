//! Finding the Docker engine and the compose tool at run time: `docker
//! compose` (v2 plugin) when present, else the standalone `docker-compose`
//! (v1 or v2). Both read the same generated file.

use std::ffi::OsString;

use anyhow::{Context as _, Result};

use crate::command::Command;

/// What to say when Docker is missing: the backend that needs nothing.
const USE_NATIVE: &str = "or run the stack as local processes with the native backend \
                          (`--backend native`, the default)";

/// Fails with a clear message when the Docker engine cannot be reached.
pub fn check() -> Result<()> {
    Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .read()
        .map(drop)
        .with_context(|| {
            format!("the Docker engine is not reachable; install or start Docker, {USE_NATIVE}")
        })
}

/// An installed compose command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tool {
    program: OsString,
    prefix: Vec<&'static str>,
    version: String,
}

impl Tool {
    /// `docker compose` if the plugin is installed, else `docker-compose`.
    pub fn detect() -> Result<Tool> {
        if let Ok(version) = Command::new("docker")
            .args(["compose", "version", "--short"])
            .read()
        {
            return Ok(Tool {
                program: "docker".into(),
                prefix: vec!["compose"],
                version: version.trim().to_owned(),
            });
        }
        if let Ok(version) = Command::new("docker-compose")
            .args(["version", "--short"])
            .read()
        {
            return Ok(Tool {
                program: "docker-compose".into(),
                prefix: Vec::new(),
                version: version.trim().to_owned(),
            });
        }
        anyhow::bail!(
            "neither `docker compose` nor `docker-compose` is installed; install Docker Compose, {USE_NATIVE}"
        )
    }

    /// The tool's command with no arguments yet.
    pub fn command(&self) -> Command {
        Command::new(&self.program).args(&self.prefix)
    }

    /// How the tool is invoked, e.g. `docker-compose 1.29.2`.
    pub fn describe(&self) -> String {
        let mut name = self.program.to_string_lossy().into_owned();
        for word in &self.prefix {
            name.push(' ');
            name.push_str(word);
        }
        format!("{name} {}", self.version)
    }
}
