//! Directories drr keeps stacks in, and the proof that drr made them.
//!
//! `destroy` deletes a stack's state directory, and as root drr hands what
//! it creates there to the server user. The root-only fallback
//! `/var/tmp/drr-<hash>` and the test stacks' shared cache are predictable
//! paths in world-writable directories, where another user could create
//! them first; and `DRR_STATE_DIR` could name a directory of the user's own.
//! So drr uses such a directory only when it made it: [`claim`] creates a
//! missing one with a marker file ([`MARKER`]) inside, and accepts an
//! existing one only when it is a real directory (no symlink), owned by the
//! user drr runs as or by the server user, writable by no one else, and
//! marked.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{
    DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _,
};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use sha2::{Digest as _, Sha256};

use super::ServerUser;

/// The file drr writes into every state or cache directory it creates.
pub const MARKER: &str = ".drr-dir";

/// What the marker says to someone who finds it.
const MARKER_TEXT: &str = "drr created this directory; it refuses a state or cache \
                           directory without this file.\n";

/// Makes sure drr may use `dir`: creates it (and any missing parent) with
/// the marker when it does not exist, and otherwise checks that drr made
/// it and that no other user controls it. `server` is the user servers run
/// as when drr runs as root: directories it owns count as drr's.
pub fn claim(dir: &Path, server: Option<&ServerUser>) -> Result<()> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
        check_parent(parent, dir)?;
    }
    // Only the server user needs to pass through it, when there is one.
    let mode = if server.is_some() { 0o755 } else { 0o700 };
    match fs::DirBuilder::new().mode(mode).create(dir) {
        Ok(()) => {
            fs::set_permissions(dir, fs::Permissions::from_mode(mode))
                .with_context(|| format!("cannot set the permissions of {}", dir.display()))?;
            mark(dir)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => check(dir, server),
        Err(e) => Err(e).with_context(|| format!("cannot create {}", dir.display())),
    }
}

/// Writes the marker into `dir`, a directory drr has just created by other
/// means (e.g. a fresh temporary directory).
pub fn mark(dir: &Path) -> Result<()> {
    let path = dir.join(MARKER);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(MARKER_TEXT.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Fails, naming the path and the fix, unless drr made `dir` and no other
/// user controls it.
fn check(dir: &Path, server: Option<&ServerUser>) -> Result<()> {
    let shown = dir.display();
    let meta =
        fs::symlink_metadata(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    anyhow::ensure!(
        meta.is_dir(),
        "{shown} is not a directory (a symlink or a file); drr uses only a directory it \
         created there: remove it, or choose another path"
    );
    let me = nix::unistd::geteuid().as_raw();
    let owner = meta.uid();
    if owner != me && server.is_none_or(|s| s.uid != owner) {
        anyhow::bail!(
            "{shown} belongs to {}, not to {}; drr refuses a directory another user owns: \
             remove it (as its owner or root), or choose another path",
            user_name(owner),
            user_name(me)
        );
    }
    anyhow::ensure!(
        meta.mode() & 0o022 == 0,
        "{shown} is writable by other users (mode {:o}); drr refuses a directory others can \
         change: `chmod go-w {shown}` if it is yours, or choose another path",
        meta.mode() & 0o7777
    );
    let marker = dir.join(MARKER);
    let marked = fs::symlink_metadata(&marker).is_ok_and(|m| m.is_file());
    anyhow::ensure!(
        marked,
        "{shown} was not created by drr (it has no {MARKER} file), so drr leaves it alone; \
         if an older drr made it, `touch {}` and retry; otherwise move it away, or choose \
         another path",
        marker.display()
    );
    Ok(())
}

/// A directory anyone may write to and that lacks the sticky bit lets
/// anyone swap `dir` for their own.
fn check_parent(parent: &Path, dir: &Path) -> Result<()> {
    let meta = fs::metadata(parent).with_context(|| format!("cannot read {}", parent.display()))?;
    let open = meta.mode() & 0o002 != 0 && meta.mode() & 0o1000 == 0;
    anyhow::ensure!(
        !open,
        "{} is writable by every user and not sticky, so anyone could replace {}; choose a \
         path under a directory only you can write to (or a sticky one such as /tmp)",
        parent.display(),
        dir.display()
    );
    Ok(())
}

/// Where a workspace's stacks live, native and compose alike: its
/// `target/drr`, or, when drr runs as root and the server user cannot
/// reach that (a checkout under a private home directory),
/// `/var/tmp/drr-<hash of the workspace path>` ([`shared_home`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    /// The directory.
    pub path: PathBuf,
    /// Whether it is the `/var/tmp` fallback, which drr must [`claim`]
    /// before making anything inside.
    pub shared: bool,
}

impl Home {
    /// The home of the workspace at `workspace` for servers run by `server`.
    pub fn of(workspace: &Path, server: Option<&ServerUser>) -> Home {
        let preferred = preferred_home(workspace);
        match server {
            Some(user) if !user.can_reach(&preferred.join("x")) => Home {
                path: shared_home(workspace),
                shared: true,
            },
            _ => Home {
                path: preferred,
                shared: false,
            },
        }
    }

    /// Claims `dir`, a directory in this home, and the home first when it
    /// is the shared fallback.
    pub fn claim(&self, dir: &Path, server: Option<&ServerUser>) -> Result<()> {
        if self.shared && dir.starts_with(&self.path) {
            claim(&self.path, server)?;
        }
        claim(dir, server)
    }
}

/// `<workspace>/target/drr`.
pub fn preferred_home(workspace: &Path) -> PathBuf {
    workspace.join("target").join("drr")
}

/// `/var/tmp/drr-<hash of the workspace path>`: the home of a root-run
/// workspace the server user cannot reach.
pub fn shared_home(workspace: &Path) -> PathBuf {
    let digest = Sha256::digest(workspace.as_os_str().as_encoded_bytes());
    let tag: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    PathBuf::from(format!("/var/tmp/drr-{tag}"))
}

/// `user `name`` (or the bare uid when it has no name).
fn user_name(uid: u32) -> String {
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(user)) => format!("user `{}`", user.name),
        _ => format!("uid {uid}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claimed_directory_is_marked_and_claimed_again() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("a").join("state");
        claim(&dir, None).unwrap();
        assert!(dir.join(MARKER).is_file());
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        claim(&dir, None).unwrap();
    }

    #[test]
    fn an_unmarked_group_writable_or_linked_directory_is_refused() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("state");
        fs::create_dir(&dir).unwrap();
        let err = format!("{:#}", claim(&dir, None).unwrap_err());
        assert!(
            err.contains("was not created by drr") && err.contains("touch"),
            "{err}"
        );

        mark(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o775)).unwrap();
        let err = format!("{:#}", claim(&dir, None).unwrap_err());
        assert!(err.contains("writable by other users (mode 775)"), "{err}");

        let link = base.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        let err = format!("{:#}", claim(&link, None).unwrap_err());
        assert!(err.contains("is not a directory (a symlink"), "{err}");
    }

    #[test]
    fn a_directory_another_user_owns_is_refused() {
        let base = tempfile::tempdir().unwrap();
        // As root, a marked directory handed to `nobody`; otherwise `/`,
        // which root owns.
        let (dir, owner) = if nix::unistd::geteuid().is_root() {
            let dir = base.path().join("state");
            claim(&dir, None).unwrap();
            std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
            (dir, user_name(65534))
        } else {
            (Path::new("/").to_owned(), "user `root`".to_owned())
        };
        let err = format!("{:#}", claim(&dir, None).unwrap_err());
        assert!(
            err.contains(&format!("belongs to {owner}")) && err.contains("another user owns"),
            "{err}"
        );
        let server = ServerUser {
            name: "server".into(),
            uid: fs::metadata(&dir).unwrap().uid(),
            gid: 0,
        };
        if dir != Path::new("/") {
            claim(&dir, Some(&server)).expect("the server user's directory is drr's");
        }
    }

    #[test]
    fn a_directory_under_a_world_writable_non_sticky_parent_is_refused() {
        let base = tempfile::tempdir().unwrap();
        fs::set_permissions(base.path(), fs::Permissions::from_mode(0o777)).unwrap();
        let dir = base.path().join("state");
        let err = format!("{:#}", claim(&dir, None).unwrap_err());
        assert!(err.contains("not sticky"), "{err}");
        assert!(!dir.exists(), "nothing created");
        fs::set_permissions(base.path(), fs::Permissions::from_mode(0o1777)).unwrap();
        claim(&dir, None).unwrap();
    }
}
