//! A cached template cluster: `initdb` output with the spec's roles and
//! databases already created, keyed by Postgres version, initdb arguments,
//! bootstrap SQL and generated passwords. A cold `up` copies it for the
//! primary and for every replica (a stopped copy of a cluster is a valid
//! base for its standby), which is several times faster than `initdb`,
//! `CREATE DATABASE` and `pg_basebackup` in a row.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use super::bootstrap::Bootstrap;
use super::state::{StateDir, mkdir};
use crate::command::Command;
use crate::host::Binaries;
use crate::host::{ServerUser, give};
use crate::render::postgres::INITDB_ARGS;
use crate::secrets::Secrets;

/// Returns the template directory, building it on a cache miss.
pub fn ensure(
    bins: &Binaries,
    state: &StateDir,
    secrets: &Secrets,
    bootstrap: &Bootstrap,
    user: Option<&ServerUser>,
) -> Result<PathBuf> {
    let mut hasher = Sha256::new();
    hasher.update(bins.version.as_bytes());
    hasher.update(bins.dir().as_os_str().as_encoded_bytes());
    for arg in INITDB_ARGS {
        hasher.update(arg.as_bytes());
    }
    hasher.update(bootstrap.digest.as_bytes());
    let key: String = hasher.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let dir = state
        .cache()
        .join(format!("template-{}-{key}", bins.version));
    if dir.join("global").join("pg_control").is_file() {
        return Ok(dir);
    }
    state.claim_cache(user)?;
    // A private scratch directory per build: concurrent builds (of the same
    // or other stacks) never share a file.
    let scratch = tempfile::Builder::new()
        .prefix(&format!("building-{key}-"))
        .tempdir_in(state.cache())
        .with_context(|| format!("cannot create a directory in {}", state.cache().display()))?;
    give(user, scratch.path())?;
    let tmp = scratch.path().join("data");
    if let Err(e) = build(bins, scratch.path(), &tmp, secrets, bootstrap, user) {
        let _ = Command::new(bins.path("pg_ctl"))
            .args(["stop", "-m", "immediate", "-D"])
            .args([tmp.as_os_str()])
            .as_user(user)
            .read();
        return Err(e.context("cannot build the template cluster"));
    }
    if std::fs::rename(&tmp, &dir).is_err() {
        // Another command built the same template meanwhile; use theirs.
        anyhow::ensure!(
            dir.is_dir(),
            "cannot move the template into {}",
            dir.display()
        );
    }
    Ok(dir)
}

/// initdb, then a private start on a free loopback port to run the
/// bootstrap SQL, then a clean shutdown.
fn build(
    bins: &Binaries,
    scratch: &Path,
    tmp: &Path,
    secrets: &Secrets,
    bootstrap: &Bootstrap,
    user: Option<&ServerUser>,
) -> Result<()> {
    let pwfile = scratch.join("pwfile");
    let initdb = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&pwfile)
            .with_context(|| format!("cannot write {}", pwfile.display()))?;
        writeln!(file, "{}", secrets.superuser_password)?;
        give(user, &pwfile)?;
        Command::new(bins.path("initdb"))
            .args(INITDB_ARGS.iter().copied())
            .args(["--no-sync", "--no-instructions", "-D"])
            .args([tmp.as_os_str()])
            .args([format!("--pwfile={}", pwfile.display())])
            .dir(scratch)
            .as_user(user)
            .read()
    })();
    let _ = std::fs::remove_file(&pwfile);
    initdb?;

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("cannot find a free port to build the template on")?
        .port();
    let conf = tmp.join("postgresql.conf");
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&conf)
        .with_context(|| format!("cannot write {}", conf.display()))?;
    // Overwritten with the node's rendered file when the template is copied.
    writeln!(
        file,
        "listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = ''\nfsync = off"
    )?;
    let log = scratch.join("build.log");
    let pg_ctl = |args: &[&str]| {
        Command::new(bins.path("pg_ctl"))
            .args(args.iter().copied())
            .args([
                "-D".as_ref(),
                tmp.as_os_str(),
                "-l".as_ref(),
                log.as_os_str(),
            ])
            .dir(scratch)
            .as_user(user)
            .read()
    };
    pg_ctl(&["start", "--wait", "--silent", "--timeout=60"])?;
    bootstrap.run(bins, secrets, "127.0.0.1", port, scratch)?;
    pg_ctl(&["stop", "--wait", "--silent", "-m", "fast"])?;
    let wal = tmp.join("pg_wal");
    for entry in
        std::fs::read_dir(&wal).with_context(|| format!("cannot list {}", wal.display()))?
    {
        let path = entry?.path();
        if path.is_file() {
            sparsify(&path, user)?;
        }
    }
    Ok(())
}

/// Rewrites `path` with holes where it holds whole zero blocks (a fresh WAL
/// segment is mostly zeros), so every copy of the template writes less.
fn sparsify(path: &Path, user: Option<&ServerUser>) -> Result<()> {
    use std::io::{Seek as _, SeekFrom};
    use std::os::unix::fs::PermissionsExt as _;

    const BLOCK: usize = 8192;
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let tmp = path.with_extension("sparse");
    let mut out =
        std::fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    for (i, block) in bytes.chunks(BLOCK).enumerate() {
        if block.iter().any(|&b| b != 0) {
            out.seek(SeekFrom::Start((i * BLOCK) as u64))?;
            out.write_all(block)?;
        }
    }
    out.set_len(bytes.len() as u64)?;
    out.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    give(user, &tmp)?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))
}

/// Copies the template into `<node_dir>/data` (through a temporary
/// directory, so an interrupted copy never looks like a data directory).
/// WAL segments are mostly zeros: a sparse copy writes a fraction of them.
pub fn copy(template: &Path, node_dir: &Path, user: Option<&ServerUser>) -> Result<()> {
    mkdir(node_dir, user)?;
    let tmp = node_dir.join("data.tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    Command::new("cp")
        .args([
            "-a".as_ref(),
            "--sparse=always".as_ref(),
            template.as_os_str(),
            tmp.as_os_str(),
        ])
        .read()?;
    let data = node_dir.join("data");
    std::fs::rename(&tmp, &data)
        .with_context(|| format!("cannot move {} into place", tmp.display()))
}
