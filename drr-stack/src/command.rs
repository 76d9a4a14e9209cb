//! Running external programs: always through `duct` with explicit
//! arguments, and every failure names the command line and its stderr.

use std::ffi::OsString;
use std::path::Path;

use anyhow::{Context, Result};

/// A program with its arguments, run as a child process.
#[derive(Debug, Clone)]
pub struct Command {
    program: OsString,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    dir: Option<std::path::PathBuf>,
    identity: Option<crate::host::ServerUser>,
    stdin: Option<Vec<u8>>,
}

impl Command {
    /// `program` with no arguments yet.
    pub fn new(program: impl AsRef<Path>) -> Self {
        Command {
            program: program.as_ref().as_os_str().to_owned(),
            args: Vec::new(),
            env: Vec::new(),
            dir: None,
            identity: None,
            stdin: None,
        }
    }

    /// Appends arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Runs in `dir`.
    pub fn dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// Runs as the given unprivileged user (needed for Postgres when drr runs
    /// as root), in a process group of its own so that Ctrl-C on the calling
    /// terminal does not reach servers it starts.
    pub fn as_user(mut self, user: Option<&crate::host::ServerUser>) -> Self {
        self.identity = user.cloned();
        self
    }

    /// Feeds `bytes` to the program's standard input (else it reads none).
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self
    }

    /// The command line as a user would type it, for messages.
    pub fn display(&self) -> String {
        std::iter::once(&self.program)
            .chain(&self.args)
            .map(|a| {
                let a = a.to_string_lossy();
                if a.contains(' ') || a.is_empty() {
                    format!("'{a}'")
                } else {
                    a.into_owned()
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn expression(&self) -> duct::Expression {
        let mut expr = duct::cmd(&self.program, &self.args);
        for (k, v) in &self.env {
            expr = expr.env(k, v);
        }
        if let Some(dir) = &self.dir {
            expr = expr.dir(dir);
        }
        let identity = self.identity.clone();
        expr.before_spawn(move |command| {
            use std::os::unix::process::CommandExt as _;
            command.process_group(0);
            if let Some(user) = &identity {
                command.uid(user.uid).gid(user.gid);
            }
            Ok(())
        })
    }

    /// Runs to completion and returns stdout; a non-zero exit is an error
    /// that quotes the command line and its stderr.
    pub fn read(&self) -> Result<String> {
        let expression = match &self.stdin {
            Some(bytes) => self.expression().stdin_bytes(bytes.clone()),
            None => self.expression().stdin_null(),
        };
        let output = expression
            .stdout_capture()
            .stderr_capture()
            .unchecked()
            .run()
            .with_context(|| format!("cannot run `{}`", self.display()))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let stdout = String::from_utf8_lossy(&output.stdout);
            let detail = if stderr.trim().is_empty() {
                stdout
            } else {
                stderr
            };
            anyhow::bail!(
                "`{}` failed ({}):\n{}",
                self.display(),
                output.status,
                detail.trim_end()
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Runs to completion with stderr shown as it comes (for long commands
    /// such as `cargo bench`) and returns stdout; a non-zero exit is an
    /// error that quotes the command line.
    pub fn read_stdout(&self) -> Result<String> {
        let output = self
            .expression()
            .stdin_null()
            .stdout_capture()
            .unchecked()
            .run()
            .with_context(|| format!("cannot run `{}`", self.display()))?;
        anyhow::ensure!(
            output.status.success(),
            "`{}` failed ({}); its errors are above",
            self.display(),
            output.status
        );
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Starts the program in the background, output captured, to run until
    /// [`Background::stop`] (or the drop) kills it.
    pub fn start(&self) -> Result<Background> {
        let handle = self
            .expression()
            .stdin_null()
            .stdout_capture()
            .stderr_capture()
            .unchecked()
            .start()
            .with_context(|| format!("cannot start `{}`", self.display()))?;
        Ok(Background {
            handle,
            line: self.display(),
        })
    }

    /// Runs with the terminal attached and returns the exit code.
    pub fn interactive(&self) -> Result<i32> {
        let mut expr = duct::cmd(&self.program, &self.args).unchecked();
        for (k, v) in &self.env {
            expr = expr.env(k, v);
        }
        if let Some(dir) = &self.dir {
            expr = expr.dir(dir);
        }
        let output = expr
            .run()
            .with_context(|| format!("cannot run `{}`", self.display()))?;
        Ok(output.status.code().unwrap_or(1))
    }
}

/// A program [`Command::start`] runs in the background, meant to run until
/// stopped; killed when dropped.
#[derive(Debug)]
pub struct Background {
    handle: duct::Handle,
    line: String,
}

impl Background {
    /// Kills the program. An error, quoting its stderr, if it had already
    /// exited: it was meant to run until now.
    pub fn stop(self) -> Result<()> {
        if let Some(output) = self
            .handle
            .try_wait()
            .with_context(|| format!("cannot check on `{}`", self.line))?
        {
            anyhow::bail!(
                "`{}` exited early ({}):\n{}",
                self.line,
                output.status,
                String::from_utf8_lossy(&output.stderr).trim_end()
            );
        }
        Ok(())
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.handle.kill();
        let _ = self.handle.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_background_program_runs_until_stopped() {
        let running = Command::new("sleep").args(["30"]).start().expect("started");
        let started = std::time::Instant::now();
        running
            .stop()
            .expect("still running, so stopping it is no error");
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }

    #[test]
    fn a_background_program_that_exits_early_is_an_error_with_its_stderr() {
        let running = Command::new("sh")
            .args(["-c", "echo broken >&2; exit 3"])
            .start()
            .expect("started");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        // Wait (with a timeout) until it has exited.
        while running.handle.try_wait().ok().flatten().is_none() {
            assert!(std::time::Instant::now() < deadline, "sh never exited");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let err = running.stop().expect_err("it exited early").to_string();
        assert!(
            err.contains("exited early") && err.contains("broken"),
            "{err}"
        );
    }
}
