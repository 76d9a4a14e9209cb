//! Free loopback ports for stacks of their own, reserved across processes.
//!
//! A port found free is only free until a server binds it, and stacks of
//! tests and benchmarks start many servers at once, from several
//! processes. Binding port 0 would hand out ports from the kernel's
//! ephemeral range, where outgoing connections take their local ports and
//! another process's `bind(0)` may get the same one before our server binds
//! it (seen once: a replica's port answered as another stack's primary).
//! So ports come from below that range, and each is reserved for
//! [`HOLD`] in a per-user directory: a file per port, claimed under an
//! exclusive lock, which no other process on this host hands out again
//! until the reservation expires.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result};

/// The ports handed out: below Linux's default ephemeral range
/// (32768–60999), above the ports drr's examples use.
const RANGE: std::ops::Range<u16> = 27000..32700;

/// How long a reservation keeps a port from being handed out again: longer
/// than any test or benchmark needs to start its servers.
const HOLD: Duration = Duration::from_secs(600);

/// `n` distinct free loopback ports, reserved for this process.
pub fn free_ports(n: usize) -> Result<Vec<u16>> {
    let dir = reservations_dir()?;
    let mut offset = [0u8; 2];
    getrandom::fill(&mut offset).context("cannot get random bytes to pick ports")?;
    let len = RANGE.end - RANGE.start;
    let start = u16::from_le_bytes(offset) % len;
    let mut ports = Vec::with_capacity(n);
    for i in 0..len {
        if ports.len() == n {
            break;
        }
        let port = RANGE.start + (start + i) % len;
        if reserve(&dir, port)? {
            ports.push(port);
        }
    }
    anyhow::ensure!(
        ports.len() == n,
        "cannot find {n} free loopback ports in {}..{} (reservations in {}); stop stacks \
         left running by earlier tests with `cargo xtask down --all`",
        RANGE.start,
        RANGE.end,
        dir.display()
    );
    Ok(ports)
}

fn reservations_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("drr-ports-{}", nix::unistd::getuid()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

/// Claims `port` when nobody holds a live reservation on it and it can be
/// bound now; `Ok(false)` when it is taken.
fn reserve(dir: &Path, port: u16) -> Result<bool> {
    let path = dir.join(port.to_string());
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    if file.try_lock().is_err() {
        return Ok(false);
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    if reserved_at(&mut file).is_some_and(|at| now.saturating_sub(at) < HOLD.as_secs()) {
        return Ok(false);
    }
    if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
        return Ok(false);
    }
    file.set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| write!(file, "{now}"))
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(true)
}

fn reserved_at(file: &mut File) -> Option<u64> {
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_in_range_and_not_handed_out_twice() {
        let first = free_ports(20).unwrap();
        let second = free_ports(20).unwrap();
        let mut all: Vec<u16> = first.iter().chain(&second).copied().collect();
        assert!(all.iter().all(|p| RANGE.contains(p)), "{all:?}");
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 40, "a reserved port was handed out again");
    }
}
