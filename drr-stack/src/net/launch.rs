//! Starting, finding, signalling and stopping the fault proxy process of a
//! stack, from the backend's side.
//!
//! The proxy is a program of its own that outlives the command that starts
//! it: `cargo xtask` runs its own binary with the hidden `net-proxy`
//! subcommand ([`use_program`]); other programs (tests) run `drr-netproxy`,
//! drr-stack's binary, found next to them or named by `DRR_NET_PROXY_EXE`.
//! As for Postgres, drr signals only a process that serves this very
//! directory.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::files::{Config, NetDir};
use crate::host::ServerUser;

/// Environment variable naming the program that serves `net-proxy`.
pub const PROXY_EXE_ENV: &str = "DRR_NET_PROXY_EXE";
/// drr-stack's proxy binary.
pub const PROXY_BIN: &str = "drr-netproxy";
/// The subcommand that runs the proxy.
pub const SUBCOMMAND: &str = "net-proxy";

/// How long the proxy may take to listen, or to stop.
const TIMEOUT: Duration = Duration::from_secs(10);

static PROGRAM: OnceLock<PathBuf> = OnceLock::new();

/// Runs the proxy with `program net-proxy --dir DIR` from now on: `cargo
/// xtask` names itself, a test the xtask binary it runs commands of.
pub fn use_program(program: PathBuf) {
    let _ = PROGRAM.set(program);
}

/// The program that runs the proxy.
fn program() -> Result<PathBuf> {
    if let Some(program) = PROGRAM.get() {
        return Ok(program.clone());
    }
    if let Some(exe) = std::env::var_os(PROXY_EXE_ENV).filter(|v| !v.is_empty()) {
        return Ok(exe.into());
    }
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    exe.ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join(PROXY_BIN))
        .find(|candidate| candidate.is_file())
        .with_context(|| {
            format!(
                "cannot find the fault proxy program `{PROXY_BIN}` next to {}; build it with \
                 `cargo build -p drr-stack --bin {PROXY_BIN}` or set {PROXY_EXE_ENV} to its path",
                exe.display()
            )
        })
}

/// The pid of the proxy serving `net`, if it runs.
pub fn running_pid(net: &NetDir) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(net.pid_file())
        .ok()?
        .trim()
        .parse()
        .ok()?;
    serves(pid, net.root()).then_some(pid)
}

/// Whether `pid` is a live proxy process of directory `dir` (a zombie has
/// no command line).
fn serves(pid: i32, dir: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let dir = dir.as_os_str().as_encoded_bytes();
    args.contains(&SUBCOMMAND.as_bytes()) && args.contains(&dir)
}

/// Makes the proxy of `net` run with `config`: starts it, or restarts it
/// when the configuration changed (or a crash left a stale pid).
pub fn ensure(net: &NetDir, config: &Config, user: Option<&ServerUser>) -> Result<()> {
    net.create(user)?;
    let changed = net.config().ok().flatten().as_ref() != Some(config);
    if changed {
        net.write_config(config, user)?;
    }
    if running_pid(net).is_some() {
        if !changed {
            return Ok(());
        }
        stop(net)?;
    }
    start(net, user)
}

/// Starts the proxy of `net` and waits until it listens.
fn start(net: &NetDir, user: Option<&ServerUser>) -> Result<()> {
    let program = program()?;
    if let Some(user) = user {
        anyhow::ensure!(
            user.can_reach(&program),
            "the fault proxy runs as user `{}`, who cannot reach {}; make its directories \
             searchable (`chmod o+x` on each) or set {PROXY_EXE_ENV} to a copy it can run",
            user.name,
            program.display()
        );
    }
    let ready = net.ready_file();
    let _ = std::fs::remove_file(&ready);
    let log_path = net.log_file();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    crate::host::give(user, &log_path)?;
    let mut command = std::process::Command::new(&program);
    command
        .args([
            SUBCOMMAND.as_ref(),
            "--dir".as_ref(),
            net.root().as_os_str(),
        ])
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().context("cannot share the proxy's log")?)
        .stderr(log);
    {
        use std::os::unix::process::CommandExt as _;
        command.process_group(0);
        if let Some(user) = user {
            command.uid(user.uid).gid(user.gid);
        }
    }
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start the fault proxy {}", program.display()))?;
    let pid = child.id();
    std::fs::write(net.pid_file(), pid.to_string())
        .with_context(|| format!("cannot write {}", net.pid_file().display()))?;
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if std::fs::read_to_string(&ready).is_ok_and(|p| p.trim() == pid.to_string()) {
            // Reap it when it ends, so no zombie outlives it here.
            std::thread::spawn(move || child.wait());
            return Ok(());
        }
        let exited = child.try_wait().ok().flatten();
        if exited.is_some() || Instant::now() > deadline {
            if exited.is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
            anyhow::bail!(
                "the fault proxy did not start; the end of {} says:\n{}",
                log_path.display(),
                tail(&log_path)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The last lines of the proxy's log.
fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

/// Tells the running proxy of `net` to re-read its toxics and waits until
/// they are in force; `false` when none runs (the toxics apply when `up`
/// starts it).
pub fn reload(net: &NetDir) -> Result<bool> {
    let Some(pid) = running_pid(net) else {
        return Ok(false);
    };
    let wanted = net.toxics()?;
    kill(Pid::from_raw(pid), Signal::SIGHUP)
        .with_context(|| format!("cannot signal the fault proxy (pid {pid})"))?;
    let deadline = Instant::now() + TIMEOUT;
    while net.applied().ok().as_ref() != Some(&wanted) {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the fault proxy (pid {pid}) did not apply the new faults within {TIMEOUT:?}; its log \
             ({}) may say why",
            net.log_file().display()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(true)
}

/// Stops the proxy of `net` if it runs (SIGTERM, then SIGKILL).
pub fn stop(net: &NetDir) -> Result<()> {
    let Some(pid) = running_pid(net) else {
        return Ok(());
    };
    let pid = Pid::from_raw(pid);
    let _ = kill(pid, Signal::SIGTERM);
    let deadline = Instant::now() + TIMEOUT;
    while running_pid(net).is_some() {
        if Instant::now() > deadline {
            let _ = kill(pid, Signal::SIGKILL);
            anyhow::ensure!(
                Instant::now() < deadline + Duration::from_secs(2),
                "the fault proxy (pid {pid}) did not stop; kill it and retry"
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = std::fs::remove_file(net.pid_file());
    Ok(())
}
