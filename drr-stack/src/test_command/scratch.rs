//! Where the tests' throwaway files go. Test stacks create and delete
//! thousands of small files (a data directory per node, per test); on a
//! disk that is most of their cost, while in memory it is cheap, and their
//! data is worth nothing after the run. So, unless `TMPDIR` already says
//! where, the tests get a directory of their own on a memory-backed
//! filesystem with room to spare (`/dev/shm` on Linux).

use std::path::{Path, PathBuf};

use nix::sys::statfs::{TMPFS_MAGIC, statfs};
use nix::sys::statvfs::statvfs;

use crate::host::ServerUser;

/// Where a memory-backed filesystem usually is.
const MEMORY_FS: &str = "/dev/shm";

/// How much room it must have: a suite's concurrent stacks and the
/// template cache, with plenty to spare for everything else that uses it.
const MIN_FREE_BYTES: u64 = 2 << 30;

/// The `TMPDIR` the tests get: `None` keeps the environment's (`TMPDIR` is
/// set, or no memory-backed filesystem has room, or drr may not use the
/// directory there, which a line then says).
pub(super) fn tmpdir() -> Option<PathBuf> {
    if std::env::var_os("TMPDIR").is_some_and(|v| !v.is_empty()) {
        return None;
    }
    let root = Path::new(MEMORY_FS);
    if !has_room_in_memory(root) {
        return None;
    }
    let dir = root.join(format!("drr-tmp-{}", nix::unistd::getuid()));
    let claimed =
        ServerUser::resolve().and_then(|server| crate::host::dirs::claim(&dir, server.as_ref()));
    match claimed {
        Ok(()) => Some(dir),
        Err(e) => {
            eprintln!("note: the tests' files stay in the default temporary directory: {e:#}");
            None
        }
    }
}

/// Whether `path` is on a tmpfs with at least [`MIN_FREE_BYTES`] free.
fn has_room_in_memory(path: &Path) -> bool {
    let is_tmpfs = statfs(path).is_ok_and(|fs| fs.filesystem_type() == TMPFS_MAGIC);
    let free = statvfs(path).map_or(0, |fs| {
        fs.blocks_available().saturating_mul(fs.fragment_size())
    });
    is_tmpfs && free >= MIN_FREE_BYTES
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disk_directory_is_not_memory() {
        assert!(!has_room_in_memory(Path::new(env!("CARGO_MANIFEST_DIR"))));
    }
}
