//! Starting and stopping one Postgres server process.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::command::Command;
use crate::host::Binaries;
use crate::host::ServerUser;

/// The pid of the postmaster that owns `data_dir`, if one is running.
pub fn running_pid(data_dir: &Path) -> Option<i32> {
    recorded_pid(data_dir).filter(|&pid| is_postgres(pid))
}

/// The pid in `postmaster.pid` when that process is gone (a killed server).
pub fn dead_pid(data_dir: &Path) -> Option<i32> {
    recorded_pid(data_dir).filter(|&pid| !is_postgres(pid))
}

fn recorded_pid(data_dir: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    text.lines().next()?.trim().parse().ok()
}

/// Whether log text shows the server itself giving up: a FATAL or PANIC
/// from the postmaster or startup process. Sessions' FATALs (`user@db` in
/// drr's `log_line_prefix`, e.g. "the database system is starting up") do
/// not count.
pub fn server_failed(log: &str) -> bool {
    log.lines().any(|line| {
        let Some((_, rest)) = line.split_once("] ") else {
            return false;
        };
        // Session lines carry `user@db ` before the level.
        rest.starts_with("FATAL:") || rest.starts_with("PANIC:")
    })
}

/// Whether `pid` is a live (not zombie) Postgres process.
fn is_postgres(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // "pid (comm) state ...": the state follows the last ')'.
    let state = stat
        .rsplit(')')
        .next()
        .and_then(|s| s.split_whitespace().next());
    let comm = stat
        .split_once('(')
        .and_then(|(_, rest)| rest.rsplit_once(')'))
        .map_or("", |(comm, _)| comm);
    state != Some("Z") && state != Some("X") && comm.starts_with("postgres")
}

/// Starts the server of `data_dir` in the background (`pg_ctl start`
/// without waiting; readiness is checked over TCP by the caller). A
/// `postmaster.pid` left by a killed server is removed first.
pub fn start(
    bins: &Binaries,
    data_dir: &Path,
    log: &Path,
    user: Option<&ServerUser>,
) -> Result<()> {
    let pid_file = data_dir.join("postmaster.pid");
    if dead_pid(data_dir).is_some() {
        std::fs::remove_file(&pid_file)
            .with_context(|| format!("cannot remove the stale {}", pid_file.display()))?;
    }
    let dir = data_dir.parent().unwrap_or(data_dir);
    Command::new(bins.path("pg_ctl"))
        .args(["start", "--no-wait", "--silent", "-D"])
        .args([data_dir.as_os_str(), "-l".as_ref(), log.as_os_str()])
        .dir(dir)
        .as_user(user)
        .read()?;
    Ok(())
}

/// Fast shutdown (SIGINT) of `pids`, waiting until all have exited; after
/// `timeout` an immediate shutdown (SIGQUIT) finishes the job.
pub fn stop(pids: &[i32], timeout: Duration) -> Result<()> {
    for &pid in pids {
        let _ = kill(Pid::from_raw(pid), Signal::SIGINT);
    }
    let deadline = Instant::now() + timeout;
    while pids.iter().any(|&pid| is_postgres(pid)) {
        if Instant::now() > deadline {
            for &pid in pids.iter().filter(|&&pid| is_postgres(pid)) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGQUIT);
            }
            std::thread::sleep(Duration::from_millis(200));
            let left: Vec<i32> = pids
                .iter()
                .copied()
                .filter(|&pid| is_postgres(pid))
                .collect();
            anyhow::ensure!(
                left.is_empty(),
                "servers {left:?} did not stop; kill them and retry"
            );
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

/// What a log file gained after byte `offset`.
pub fn log_since(log: &Path, offset: u64) -> String {
    let bytes = std::fs::read(log).unwrap_or_default();
    let start = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

/// The last `lines` lines of a log file, for error messages.
pub fn log_tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_server_failing_counts() {
        let session = "2026-11-26 03:17:07.349 UTC [11595] postgres@postgres FATAL:  the database system is starting up";
        let server = "2026-11-26 03:38:23.781 UTC [2429] FATAL:  recovery aborted because of insufficient parameter settings";
        assert!(!server_failed(session));
        assert!(server_failed(server));
        assert!(!server_failed(
            "2026-11-26 03:17:07.335 UTC [11587] LOG:  starting PostgreSQL 15.18"
        ));
    }

    #[test]
    fn this_test_process_is_not_postgres() {
        assert!(!is_postgres(std::process::id() as i32));
        assert!(!is_postgres(i32::MAX));
    }
}
