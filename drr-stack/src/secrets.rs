//! Passwords generated once per checkout: the superuser's and the
//! replication role's. They live in `.drr/` (ignored by git) with 0600
//! permissions and are never rendered into a generated file.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use anyhow::{Context, Result};

/// The generated passwords of one checkout (for an external cluster, the
/// admin role's credentials from the environment).
#[derive(Clone, PartialEq, Eq)]
pub struct Secrets {
    /// The role drr's own commands log in as: `postgres`, or an external
    /// cluster's admin role.
    pub superuser: String,
    /// Its password (TCP logins by drr's own commands).
    pub superuser_password: String,
    /// Password of the replication role.
    pub replication_password: String,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets { .. }")
    }
}

impl Secrets {
    /// Reads the secrets from `dir`, generating each missing one.
    pub fn load_or_create(dir: &Path) -> Result<Secrets> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create the secrets directory {}", dir.display()))?;
        ignore(dir)?;
        Ok(Secrets {
            superuser: "postgres".to_owned(),
            superuser_password: secret(&dir.join("superuser-password"))?,
            replication_password: secret(&dir.join("replication-password"))?,
        })
    }

    /// The environment the bootstrap SQL reads the passwords from.
    pub fn env(&self) -> [(&'static str, &str); 2] {
        [
            ("DRR_SUPERUSER_PASSWORD", &self.superuser_password),
            ("DRR_REPLICATION_PASSWORD", &self.replication_password),
        ]
    }
}

/// What `.drr/.gitignore` holds: git ignores the directory, whatever the
/// repository's own `.gitignore` says.
const IGNORE_ALL: &str =
    "# Written by drr: this directory holds generated passwords; git ignores it.\n*\n";

/// Makes git ignore `dir` with a `.gitignore` of its own (written once,
/// never overwritten), so no adopter commits the passwords by accident.
fn ignore(dir: &Path) -> Result<()> {
    let path = dir.join(".gitignore");
    match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
    {
        Ok(mut file) => file
            .write_all(IGNORE_ALL.as_bytes())
            .with_context(|| format!("cannot write {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot create {}", path.display())),
    }
}

fn secret(path: &Path) -> Result<String> {
    match fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => return Ok(text.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    let value = random_password()?;
    // Write a private temporary file, then link it into place: when another
    // process created the secret meanwhile, the link fails and theirs wins.
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot create a file in {}", dir.display()))?;
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )?;
    writeln!(tmp, "{value}").with_context(|| format!("cannot write {}", tmp.path().display()))?;
    match fs::hard_link(tmp.path(), path) {
        Ok(()) => Ok(value),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => secret(path),
        Err(e) => Err(e).with_context(|| format!("cannot create {}", path.display())),
    }
}

/// A fresh random password: 48 hex digits (192 bits).
pub fn random_password() -> Result<String> {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).context("cannot get random bytes for a password")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn generated_once_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let first = Secrets::load_or_create(dir.path()).unwrap();
        let again = Secrets::load_or_create(dir.path()).unwrap();
        assert_eq!(first, again);
        assert_ne!(first.superuser_password, first.replication_password);
        assert_eq!(first.replication_password.len(), 48);
        let mode = fs::metadata(dir.path().join("replication-password"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(format!("{first:?}"), "Secrets { .. }");
    }

    #[test]
    fn git_ignores_the_secrets_directory() {
        let root = tempfile::tempdir().unwrap();
        let git = |args: &[&str]| {
            let out = std::process::Command::new("git")
                .args(args)
                .current_dir(root.path())
                .output()
                .expect("git runs");
            assert!(out.status.success(), "git {args:?}: {out:?}");
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        git(&["init", "-q"]);
        Secrets::load_or_create(&root.path().join(".drr")).unwrap();
        assert_eq!(git(&["status", "--porcelain", "--untracked-files=all"]), "");
        // An adopter's own .gitignore there is theirs: never overwritten.
        fs::write(root.path().join(".drr/.gitignore"), "mine\n").unwrap();
        Secrets::load_or_create(&root.path().join(".drr")).unwrap();
        let kept = fs::read_to_string(root.path().join(".drr/.gitignore")).unwrap();
        assert_eq!(kept, "mine\n");
    }
}
