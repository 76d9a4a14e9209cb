//! Starting and stopping one Postgres server process.
//!
//! drr signals a process only when it serves the data directory in question:
//! the pid recorded in `postmaster.pid` must be a live process named
//! `postgres` whose working directory is that data directory (the
//! postmaster changes into it before it writes the file). After a reboot,
//! or once a killed server's pid is reused, the file names someone else's
//! process: that pid file is stale, and `start` removes it.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::command::Command;
use crate::host::Binaries;
use crate::host::ServerUser;

/// The pid of the postmaster that serves `data_dir`, if one is running.
pub fn running_pid(data_dir: &Path) -> Option<i32> {
    recorded_pid(data_dir).filter(|&pid| serves(pid, data_dir))
}

/// The pid in `postmaster.pid` when no postmaster of `data_dir` runs under
/// it: the server was killed, or the pid now belongs to another process.
pub fn stale_pid(data_dir: &Path) -> Option<i32> {
    recorded_pid(data_dir).filter(|&pid| !serves(pid, data_dir))
}

fn recorded_pid(data_dir: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    text.lines().next()?.trim().parse().ok()
}

/// Whether `pid` is a live Postgres process working in `data_dir`.
fn serves(pid: i32, data_dir: &Path) -> bool {
    let Ok(dir) = std::fs::canonicalize(data_dir) else {
        return false;
    };
    is_postgres(pid) && std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == dir)
}

/// Whether log text shows the server itself giving up (see
/// [`Failure::of_server`](crate::server_log::Failure::of_server)): a
/// session's FATAL ("the database system is starting up") or the WAL
/// receiver's ("database system identifier differs", which `up` repairs)
/// does not count.
pub fn server_failed(log: &str) -> bool {
    crate::server_log::failures(log).any(|f| f.of_server())
}

/// Whether `pid` is a live (not zombie) Postgres process.
pub(crate) fn is_postgres(pid: i32) -> bool {
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
/// without waiting; readiness is checked over TCP by the caller). A stale
/// `postmaster.pid` is removed first: Postgres would refuse to start while
/// the pid it names is alive, even when that process is not a server.
pub fn start(
    bins: &Binaries,
    data_dir: &Path,
    log: &Path,
    user: Option<&ServerUser>,
) -> Result<()> {
    let pid_file = data_dir.join("postmaster.pid");
    if stale_pid(data_dir).is_some() {
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

/// Fast shutdown (SIGINT) of the servers of `data_dirs` that run, waiting
/// until all have exited; after `timeout` an immediate shutdown (SIGQUIT)
/// finishes the job. Only processes that serve one of these directories are
/// ever signalled.
pub fn stop(data_dirs: &[&Path], timeout: Duration) -> Result<()> {
    let servers: Vec<(i32, &Path)> = data_dirs
        .iter()
        .filter_map(|&dir| running_pid(dir).map(|pid| (pid, dir)))
        .collect();
    let running = || {
        servers
            .iter()
            .filter(|(pid, dir)| serves(*pid, dir))
            .map(|(pid, _)| *pid)
            .collect::<Vec<i32>>()
    };
    for &(pid, _) in &servers {
        let _ = kill(Pid::from_raw(pid), Signal::SIGINT);
    }
    // After `timeout`, SIGQUIT; after a little longer, give up.
    let quit_at = Instant::now() + timeout;
    let give_up_at = quit_at + Duration::from_secs(2);
    let mut quit = false;
    loop {
        let left = running();
        if left.is_empty() {
            return Ok(());
        }
        if !quit && Instant::now() > quit_at {
            for &pid in &left {
                let _ = kill(Pid::from_raw(pid), Signal::SIGQUIT);
            }
            quit = true;
        }
        anyhow::ensure!(
            Instant::now() < give_up_at,
            "servers {left:?} did not stop; kill them and retry"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
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
        let session = "2026-11-26 03:17:07.349 UTC [11595] client backend postgres@postgres FATAL:  the database system is starting up";
        let receiver = "2026-11-26 23:21:54.751 UTC [25304] walreceiver FATAL:  database system identifier differs between the primary and standby";
        assert!(!server_failed(receiver));
        let server = "2026-11-26 03:38:23.781 UTC [2429] FATAL:  recovery aborted because of insufficient parameter settings";
        assert!(!server_failed(session));
        assert!(server_failed(server));
        assert!(!server_failed(
            "2026-11-26 03:17:07.335 UTC [11587] LOG:  starting PostgreSQL 15.18"
        ));
    }

    #[test]
    fn this_test_process_serves_no_data_directory() {
        let here = std::env::current_dir().unwrap();
        assert!(!is_postgres(std::process::id() as i32));
        assert!(!serves(std::process::id() as i32, &here));
        assert!(!serves(i32::MAX, &here));
    }
}
