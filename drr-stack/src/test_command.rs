//! `cargo xtask test`: the one command that checks generated files, brings
//! the stack up, and runs the workspace's tests with the stack's connection
//! environment exported.

use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::command::Command;
use crate::env;
use crate::project::Project;
use crate::secrets::Secrets;

/// Which test runner runs the tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runner {
    /// `cargo nextest run` (each test in its own process), then doctests.
    Nextest,
    /// `cargo test`.
    CargoTest,
}

impl Runner {
    /// nextest when `cargo nextest` is installed, else `cargo test`.
    pub fn detect() -> Runner {
        let nextest = Command::new(cargo())
            .args(["nextest", "--version"])
            .read()
            .is_ok();
        if nextest {
            Runner::Nextest
        } else {
            Runner::CargoTest
        }
    }

    /// The cargo invocations for `runner_args` and `test_args` (after `--`).
    pub fn invocations(self, runner_args: &[String], test_args: &[String]) -> Vec<Vec<String>> {
        let mut main: Vec<String> = match self {
            Runner::Nextest => vec!["nextest".into(), "run".into()],
            Runner::CargoTest => vec!["test".into()],
        };
        main.extend(runner_args.iter().cloned());
        if !test_args.is_empty() {
            main.push("--".into());
            main.extend(test_args.iter().cloned());
        }
        let mut all = vec![main];
        // nextest does not run doctests; add them for a plain full run.
        if self == Runner::Nextest && runner_args.is_empty() && test_args.is_empty() {
            all.push(vec!["test".into(), "--doc".into()]);
        }
        all
    }
}

/// Runs the tests of `project`'s workspace against its running stack and
/// returns the runner's exit code (the first failing invocation's).
pub fn run(
    project: &Project,
    runner_args: &[String],
    test_args: &[String],
    quiet: bool,
) -> Result<ExitCode> {
    let secrets = Secrets::load_or_create(&project.secrets_dir())?;
    let vars = env::vars(project.spec(), Some(&secrets));
    let runner = Runner::detect();
    for invocation in runner.invocations(runner_args, test_args) {
        let mut command = Command::new(cargo()).args(invocation).dir(project.root());
        for (key, value) in &vars {
            command = command.env(*key, value);
        }
        if !quiet {
            eprintln!("running `{}` against the stack", command.display());
        }
        let code = command
            .interactive()
            .context("cannot run the test runner")?;
        if code != 0 {
            return Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn cargo() -> std::ffi::OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn arguments_pass_through_with_the_separator() {
        let calls = Runner::CargoTest
            .invocations(&strings(&["-p", "drr-core"]), &strings(&["--nocapture"]));
        assert_eq!(
            calls,
            [strings(&["test", "-p", "drr-core", "--", "--nocapture"])]
        );
    }

    #[test]
    fn a_full_nextest_run_adds_doctests() {
        let calls = Runner::Nextest.invocations(&[], &[]);
        assert_eq!(
            calls,
            [strings(&["nextest", "run"]), strings(&["test", "--doc"])]
        );
        assert_eq!(
            Runner::Nextest
                .invocations(&strings(&["-p", "x"]), &[])
                .len(),
            1
        );
    }
}
