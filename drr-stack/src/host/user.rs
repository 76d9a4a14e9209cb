//! Who the servers run as. Postgres refuses to run as root, so when drr runs
//! as root the servers run as an unprivileged user instead.

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use anyhow::{Context, Result};

/// Environment variable naming the user servers run as when drr runs as root.
pub const SERVER_USER_ENV: &str = "DRR_SERVER_USER";

/// The unprivileged user Postgres runs as when drr itself runs as root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUser {
    /// Login name.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
}

impl ServerUser {
    /// `None` when drr does not run as root (servers run as the caller);
    /// otherwise `$DRR_SERVER_USER`, else the `postgres` system user.
    pub fn resolve() -> Result<Option<ServerUser>> {
        if !nix::unistd::geteuid().is_root() {
            return Ok(None);
        }
        let (name, from_env) = match std::env::var(SERVER_USER_ENV) {
            Ok(name) if !name.is_empty() => (name, true),
            _ => ("postgres".to_owned(), false),
        };
        let user = nix::unistd::User::from_name(&name)
            .with_context(|| format!("cannot look up user `{name}`"))?;
        let Some(user) = user else {
            anyhow::bail!(if from_env {
                format!(
                    "{SERVER_USER_ENV} names user `{name}`, which does not exist; create it or name another unprivileged user"
                )
            } else {
                format!(
                    "Postgres refuses to run as root and there is no `postgres` user; install the server \
                     package (`apt-get install postgresql-15` creates it) or set {SERVER_USER_ENV} to an unprivileged user"
                )
            });
        };
        if user.uid.is_root() {
            anyhow::bail!(
                "{SERVER_USER_ENV}={name} is root; Postgres refuses to run as root, name an unprivileged user"
            );
        }
        Ok(Some(ServerUser {
            name,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
        }))
    }

    /// Whether this user can reach `path`: every existing directory above it
    /// must be searchable by them.
    pub fn can_reach(&self, path: &Path) -> bool {
        path.ancestors()
            .skip(1)
            .all(|dir| match std::fs::metadata(dir) {
                Ok(meta) => {
                    let mode = meta.mode();
                    if meta.uid() == self.uid {
                        mode & 0o100 != 0
                    } else if meta.gid() == self.gid {
                        mode & 0o010 != 0
                    } else {
                        mode & 0o001 != 0
                    }
                }
                Err(_) => true,
            })
    }

    /// Hands `path` to this user.
    pub fn chown(&self, path: &Path) -> Result<()> {
        std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid))
            .with_context(|| format!("cannot hand {} to user `{}`", path.display(), self.name))
    }
}

/// Hands `path` to the server user, if there is one.
pub fn give(user: Option<&ServerUser>, path: &Path) -> Result<()> {
    user.map_or(Ok(()), |u| u.chown(path))
}
