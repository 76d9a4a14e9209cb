//! Where a native stack keeps its state, and the lock that serialises
//! commands on it.
//!
//! ```text
//! <state>/lock                      held by up/down/destroy/delay/...
//! <state>/nodes/<node>/data/        the node's data directory
//! <state>/nodes/<node>/postgres.log the node's server log
//! <cache>/template-<key>/           a pristine initdb output, copied by up
//! ```
//!
//! The state directory is `$DRR_STATE_DIR`, else `<workspace>/target/drr/<stack>`.
//! When drr runs as root and the server user cannot reach the workspace
//! (a checkout under a private home directory), it is
//! `/var/tmp/drr-<hash of the workspace path>/<stack>` instead.
//!
//! drr uses the state and cache directories (and that `/var/tmp` home) only
//! when it created them: see [`crate::host::dirs`].

use std::fs;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::host::dirs::{self, Home};
use crate::host::{ServerUser, give};
use crate::project::Project;

/// Overrides the state directory of the stack.
pub const STATE_DIR_ENV: &str = "DRR_STATE_DIR";
/// Overrides the directory of cached initdb templates.
pub const CACHE_DIR_ENV: &str = "DRR_CACHE_DIR";

/// The state and cache directories of one stack.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
    cache: PathBuf,
    /// The workspace's home the directories are in (unless overridden).
    home: Home,
}

impl StateDir {
    /// Resolves (but does not create) the directories for `project`.
    pub fn resolve(project: &Project, user: Option<&ServerUser>) -> Result<StateDir> {
        let home = Home::of(project.root(), user);
        let root = env_path(STATE_DIR_ENV).unwrap_or_else(|| home.path.join(&project.spec().name));
        let cache = env_path(CACHE_DIR_ENV).unwrap_or_else(|| home.path.join("cache"));
        if let Some(user) = user {
            for dir in [&root, &cache] {
                if !user.can_reach(&dir.join("x")) {
                    anyhow::bail!(
                        "user `{}` (who runs the servers, since Postgres refuses root) cannot reach {}; \
                         point {STATE_DIR_ENV} / {CACHE_DIR_ENV} at a directory it can reach, e.g. under /var/tmp",
                        user.name,
                        dir.display()
                    );
                }
            }
        }
        Ok(StateDir { root, cache, home })
    }

    /// Every native state directory of `project`'s workspace, whichever
    /// stack it belongs to: each one under `<workspace>/target/drr` and under
    /// its `/var/tmp` fallback home, and `$DRR_STATE_DIR`. A directory counts
    /// when it holds `nodes/` or a `lock` file, so the cache does not.
    pub fn all_roots(project: &Project) -> Result<Vec<PathBuf>> {
        let homes = [
            dirs::preferred_home(project.root()),
            dirs::shared_home(project.root()),
        ];
        state_roots(&homes, env_path(STATE_DIR_ENV))
    }

    /// Explicit directories (tests, benchmarks, embedding tools).
    pub fn at(root: impl Into<PathBuf>, cache: impl Into<PathBuf>) -> StateDir {
        let root = root.into();
        let home = Home {
            path: root.clone(),
            shared: false,
        };
        StateDir {
            root,
            cache: cache.into(),
            home,
        }
    }

    /// The stack's state directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The template cache.
    pub fn cache(&self) -> &Path {
        &self.cache
    }

    /// Directory of one node: its data directory and log.
    pub fn node_dir(&self, node: &str) -> PathBuf {
        self.root.join("nodes").join(node)
    }

    /// A node's data directory.
    pub fn data_dir(&self, node: &str) -> PathBuf {
        self.node_dir(node).join("data")
    }

    /// The stack instance a node's data belongs to: an id drr writes when
    /// it makes a primary (`drr.stack_id`, see
    /// [`crate::render::postgres::STACK_ID_FILE`]), which base backups and
    /// rewinds copy to the replicas.
    pub fn stack_id(&self, node: &str) -> Option<String> {
        let text = fs::read_to_string(
            self.data_dir(node)
                .join(crate::render::postgres::STACK_ID_FILE),
        )
        .ok()?;
        crate::render::postgres::parse_stack_id(&text).map(str::to_owned)
    }

    /// A node's server log.
    pub fn log_file(&self, node: &str) -> PathBuf {
        self.node_dir(node).join("postgres.log")
    }

    /// Names of the nodes that have a directory, in name order.
    pub fn existing_nodes(&self) -> Result<Vec<String>> {
        let dir = self.root.join("nodes");
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
            if entry.path().is_dir() {
                names.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    /// Creates the state directory, or checks that drr made it (see
    /// [`dirs::claim`]); `user` runs the servers.
    pub fn claim_root(&self, user: Option<&ServerUser>) -> Result<()> {
        self.claim(&self.root, user).with_context(|| {
            format!(
                "cannot use {} as the stack's state directory (set {STATE_DIR_ENV} to choose another)",
                self.root.display()
            )
        })
    }

    /// Creates the template cache, or checks that drr made it.
    pub fn claim_cache(&self, user: Option<&ServerUser>) -> Result<()> {
        self.claim(&self.cache, user).with_context(|| {
            format!(
                "cannot use {} as the template cache (set {CACHE_DIR_ENV} to choose another)",
                self.cache.display()
            )
        })
    }

    fn claim(&self, dir: &Path, user: Option<&ServerUser>) -> Result<()> {
        self.home.claim(dir, user)
    }

    /// Takes the stack's lock (claiming the state directory first), waiting
    /// for a concurrent command to finish.
    pub fn lock(&self, user: Option<&ServerUser>) -> Result<StateLock> {
        self.claim_root(user)?;
        let path = self.root.join("lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open the lock file {}", path.display()))?;
        let file = match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
        {
            Ok(lock) => return Ok(StateLock { _lock: lock }),
            Err((file, nix::errno::Errno::EWOULDBLOCK)) => file,
            Err((_, e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", path.display()));
            }
        };
        eprintln!(
            "waiting for another drr command on {} to finish...",
            self.root.display()
        );
        nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
            .map(|lock| StateLock { _lock: lock })
            .map_err(|(_, e)| e)
            .with_context(|| format!("cannot lock {}", path.display()))
    }
}

/// Held while a command changes the stack; released on drop.
#[derive(Debug)]
pub struct StateLock {
    _lock: nix::fcntl::Flock<fs::File>,
}

/// Creates `dir` (0700 for a new leaf) and hands it to the server user.
pub fn mkdir(dir: &Path, user: Option<&ServerUser>) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    give(user, dir)
}

/// The state directories among the entries of `homes`, and `extra` when
/// it exists; each once, in name order.
fn state_roots(homes: &[PathBuf], extra: Option<PathBuf>) -> Result<Vec<PathBuf>> {
    let mut roots = Vec::new();
    for home in homes {
        let entries = match fs::read_dir(home) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot list {}", home.display())),
        };
        for entry in entries {
            let path = entry
                .with_context(|| format!("cannot list {}", home.display()))?
                .path();
            let is_state = path.join("nodes").is_dir() || path.join("lock").is_file();
            if is_state && !path.is_symlink() {
                roots.push(path);
            }
        }
    }
    roots.extend(extra.filter(|dir| dir.is_dir()));
    let mut seen = std::collections::BTreeSet::new();
    roots.retain(|dir| seen.insert(fs::canonicalize(dir).unwrap_or_else(|_| dir.clone())));
    roots.sort();
    Ok(roots)
}

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_roots_are_the_stacks_not_the_cache_nor_files() {
        let base = tempfile::tempdir().unwrap();
        let home = base.path().join("target/drr");
        for dir in ["a/nodes", "b", "cache/template-x", "bench"] {
            fs::create_dir_all(home.join(dir)).unwrap();
        }
        fs::write(home.join("b/lock"), "").unwrap();
        fs::write(home.join("nextest.toml"), "").unwrap();
        let elsewhere = base.path().join("elsewhere");
        fs::create_dir(&elsewhere).unwrap();
        let missing = base.path().join("missing");
        let roots = state_roots(&[home.clone(), missing.clone()], Some(elsewhere.clone())).unwrap();
        assert_eq!(roots, [elsewhere, home.join("a"), home.join("b")]);
        // $DRR_STATE_DIR inside a home counts once; a missing one not at all.
        let roots = state_roots(std::slice::from_ref(&home), Some(home.join("a"))).unwrap();
        assert_eq!(roots, [home.join("a"), home.join("b")]);
        let none = state_roots(std::slice::from_ref(&missing), Some(missing.clone())).unwrap();
        assert!(none.is_empty(), "{none:?}");
    }
}
