//! Spare copies of the template cluster, prepared by `destroy` so that the
//! next cold `up` on the same template only renames them into place.
//!
//! Copying the template creates one file per file of the cluster (about
//! 1300); on a slow disk those creations are most of a cold `up`, while a
//! rename is one operation. Spares live next to the template in the cache
//! (`<template>.spares/`). Each is copied inside the destroyed stack's state
//! directory and renamed in only when complete, so the cache never holds a
//! partial copy; taking one is a rename, so two stacks never get the same
//! copy. A spare is byte for byte a stopped copy of the template, exactly
//! what a cold `up` would otherwise copy, so a replica made from it is a
//! valid standby of a primary made from the template or from another spare.
//! A spare whose cluster is not the template's (the template was rebuilt
//! under the same key) is deleted when met, never used: all nodes of a
//! stack must descend from one cluster.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::state::mkdir;
use super::template;
use crate::host::ServerUser;

/// The spares directory of `template`.
fn dir(template: &Path) -> PathBuf {
    let mut name = template.as_os_str().to_owned();
    name.push(".spares");
    PathBuf::from(name)
}

/// The cluster's system identifier: the first eight bytes of
/// `global/pg_control` (`ControlFileData.system_identifier`).
fn system_id(data: &Path) -> Result<[u8; 8]> {
    use std::io::Read as _;
    let control = data.join("global").join("pg_control");
    let mut id = [0u8; 8];
    std::fs::File::open(&control)
        .and_then(|mut f| f.read_exact(&mut id))
        .with_context(|| format!("cannot read {}", control.display()))?;
    Ok(id)
}

/// Moves a spare copy of `template` into `<node_dir>/data`; `false` when
/// none is ready (or the cache is on another filesystem), and the caller
/// copies the template instead.
pub fn take(template: &Path, node_dir: &Path, user: Option<&ServerUser>) -> Result<bool> {
    let Ok(entries) = std::fs::read_dir(dir(template)) else {
        return Ok(false);
    };
    let wanted = system_id(template)?;
    mkdir(node_dir, user)?;
    let data = node_dir.join("data");
    for entry in entries.flatten() {
        match std::fs::rename(entry.path(), &data) {
            Ok(()) => {}
            // Another stack took it meanwhile.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) if e.kind() == std::io::ErrorKind::CrossesDevices => return Ok(false),
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot move {} into place", entry.path().display()));
            }
        }
        if system_id(&data).ok() == Some(wanted) {
            return Ok(true);
        }
        std::fs::remove_dir_all(&data)
            .with_context(|| format!("cannot remove {}", data.display()))?;
    }
    Ok(false)
}

/// Prepares spare copies of `template` until `count` are ready, copying
/// them in parallel inside `state_root` (the state directory of the stack
/// being destroyed). Does nothing when the template is gone or on another
/// filesystem than the state (a spare could not be renamed into place).
pub fn refill(
    template: &Path,
    state_root: &Path,
    count: usize,
    user: Option<&ServerUser>,
) -> Result<()> {
    use std::os::unix::fs::MetadataExt as _;
    let device = |path: &Path| std::fs::metadata(path).map(|m| m.dev()).ok();
    if !template.join("global").join("pg_control").is_file()
        || device(template) != device(state_root)
    {
        return Ok(());
    }
    let spares = dir(template);
    mkdir(&spares, user)?;
    let ready = std::fs::read_dir(&spares)
        .with_context(|| format!("cannot list {}", spares.display()))?
        .count();
    let names: Vec<String> = (ready..count).map(|i| format!("spare{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    super::parallel(&names, |name| {
        let copy = state_root.join("spares").join(name);
        template::copy(template, &copy, user)?;
        let spare = spares.join(super::node::new_stack_id()?);
        std::fs::rename(copy.join("data"), &spare)
            .with_context(|| format!("cannot move {} into place", copy.display()))
    })
}

/// Deletes every spare copy of the templates in `cache` (for the benchmark
/// that measures a cold `up` without them).
pub fn discard_all(cache: &Path) -> Result<()> {
    let entries =
        std::fs::read_dir(cache).with_context(|| format!("cannot list {}", cache.display()))?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|x| x == "spares") {
            std::fs::remove_dir_all(&path)
                .with_context(|| format!("cannot remove {}", path.display()))?;
        }
    }
    Ok(())
}
