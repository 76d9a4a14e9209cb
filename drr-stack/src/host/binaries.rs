//! Finding the Postgres server binaries of the spec's major version.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::command::Command;

/// Names a directory holding `postgres`, `initdb`, `pg_ctl`, ... to use.
pub const BINDIR_ENV: &str = "DRR_PG_BINDIR";

/// The server binaries of one Postgres major version.
#[derive(Debug, Clone)]
pub struct Binaries {
    dir: PathBuf,
    /// `postgres --version`'s version, e.g. `15.14`.
    pub version: String,
}

impl Binaries {
    /// Looks in `$DRR_PG_BINDIR`, then `pg_config --bindir`, then every
    /// `PATH` entry, then `/usr/lib/postgresql/<major>/bin`; the first
    /// directory whose `postgres` reports `major` wins.
    pub fn find(major: u16) -> Result<Binaries> {
        let mut tried = Vec::new();
        for dir in candidates(major) {
            if !dir.join("postgres").is_file() || !dir.join("initdb").is_file() {
                continue;
            }
            let version = Command::new(dir.join("postgres"))
                .args(["--version"])
                .read();
            let Ok(version) = version else { continue };
            // "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)" -> "15.18"
            let version = version
                .split_whitespace()
                .find(|word| word.starts_with(|c: char| c.is_ascii_digit()))
                .unwrap_or_default()
                .to_owned();
            if version.split('.').next() == Some(&major.to_string()) {
                return Ok(Binaries { dir, version });
            }
            tried.push(format!("{} has Postgres {version}", dir.display()));
        }
        let found = if tried.is_empty() {
            "no Postgres server binaries were found".to_owned()
        } else {
            format!("only other versions were found ({})", tried.join("; "))
        };
        anyhow::bail!(
            "the stack needs Postgres {major} server binaries, but {found}; install them \
             (Debian/Ubuntu: `apt-get install postgresql-{major}`, Fedora: `dnf install postgresql{major}-server`, \
             macOS: `brew install postgresql@{major}`) or point {BINDIR_ENV} at their bin directory"
        )
    }

    /// The path of one binary, e.g. `pg_ctl`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The directory holding the binaries.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn candidates(major: u16) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(dir) = std::env::var_os(BINDIR_ENV).filter(|d| !d.is_empty()) {
        dirs.push(PathBuf::from(dir));
    }
    if let Ok(out) = Command::new("pg_config").args(["--bindir"]).read() {
        dirs.push(PathBuf::from(out.trim()));
    }
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs.push(PathBuf::from(crate::render::postgres::server_bindir(major)));
    dirs.push(PathBuf::from(format!("/usr/pgsql-{major}/bin")));
    dirs
}
