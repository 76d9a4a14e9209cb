//! `cargo xtask test`: the one command that checks generated files, brings
//! the stack to what the spec says, and runs the workspace's tests with the
//! stack's connection environment exported: its Rust tests, or the command
//! the spec names ([`crate::spec::TestCommand`], in any language).
//!
//! A known starting state: runtime overrides left by `cargo xtask delay` or
//! `pause` are undone first (each on one line), unless `--keep-overrides`
//! asks to test under them, and then the exported delays are the live ones.
//! Tests that need something this machine lacks ([`crate::testing::Requirement`])
//! are excluded with a line saying why, so the runner counts them as
//! skipped; under `CI=true` that is an error instead.

mod nextest;
mod project_command;
mod scratch;

pub use project_command::libpq_vars;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::command::Command;
use crate::env;
use crate::lag;
use crate::progress::Progress;
use crate::project::Project;
use crate::stack::Stack;
use crate::testing::{REQUIREMENTS, Requirement};

/// What `cargo xtask test` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct TestOptions {
    /// Stop the stack afterwards.
    pub down: bool,
    /// Keep `delay`/`pause` overrides and export the live delays.
    pub keep_overrides: bool,
    /// Run the selected tests this many times and tally failures per test.
    pub repeat: Option<u32>,
    /// Arguments for the test runner.
    pub runner_args: Vec<String>,
    /// Arguments for the tests (after `--`).
    pub test_args: Vec<String>,
    /// Print only errors and the runner's output.
    pub quiet: bool,
}

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
}

/// Runs `cargo xtask test` on `stack`; returns the runner's exit code (the
/// first failing invocation's).
pub async fn run(
    project: &Project,
    stack: &Stack<'_>,
    options: &TestOptions,
    progress: &mut Progress,
) -> Result<ExitCode> {
    if project.spec().is_managed() {
        crate::codegen::check(project)?;
    } else {
        anyhow::ensure!(
            !options.down,
            "`{}` is an external cluster: drr never stops it, so `--down` does not apply",
            project.spec().name
        );
    }
    stack.up(progress).await?;
    progress.done("stack is up");
    let result = run_tests(project, stack, options, progress).await;
    if options.down {
        stack.down(progress)?;
    }
    result
}

async fn run_tests(
    project: &Project,
    stack: &Stack<'_>,
    options: &TestOptions,
    progress: &mut Progress,
) -> Result<ExitCode> {
    let spec = project.spec();
    let secrets = project.secrets()?;
    let runtime = stack.runtime(&secrets).await?;
    // DRR_PRIMARY_URL names the spec's primary on a stack drr runs (the
    // original tool's contract), the primary of the moment on any other.
    let mut vars = env::vars(
        if spec.is_managed() { spec } else { &runtime },
        Some(&secrets),
    );
    if runtime.primary.name != spec.primary.name && spec.is_managed() {
        if options.keep_overrides {
            eprintln!(
                "note: `{}` is the primary (--keep-overrides); DRR_PRIMARY_URL still names the \
                 spec's `{}`, so tests that write there fail; DRR_WRITER_URL follows the primary",
                runtime.primary.name, spec.primary.name
            );
        } else {
            crate::failover::run(stack, &secrets, Some(&spec.primary.name), progress).await?;
            eprintln!(
                "failed back over to `{}`, the spec's primary (keep such changes with \
                 `--keep-overrides`)",
                spec.primary.name
            );
        }
    }
    if options.keep_overrides {
        let live = lag::runtime(spec, &secrets).await?;
        for replica in live
            .iter()
            .filter(|r| r.replay == crate::pg::Replay::Paused)
        {
            eprintln!(
                "note: replay on {} stays paused (--keep-overrides); tests that wait for it \
                 will time out",
                replica.replica
            );
        }
        let delays: Vec<u64> = live.iter().map(|r| r.delay_ms).collect();
        env::set_delays(&mut vars, &delays);
    } else if spec.is_managed() {
        for restored in lag::restore_spec(spec, &secrets).await? {
            eprintln!("{restored} (keep such changes with `--keep-overrides`)");
        }
    }

    if let Some(command) = &spec.test_command {
        vars.extend(libpq_vars(&runtime, command)?);
        let code = project_command::run(project.root(), command, options, &vars)?;
        return Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)));
    }
    let skipped = skipped_requirements(project.root())?;
    if let Some(dir) = scratch::tmpdir() {
        eprintln!(
            "the tests' temporary files go to {}, in memory (set TMPDIR to choose)",
            dir.display()
        );
        vars.push(("TMPDIR", dir.display().to_string()));
    }
    let runner = Runner::detect();
    let target = target_dir(project.root());
    let mut code = match runner {
        Runner::Nextest => nextest::run(project.root(), &target, options, &skipped, &vars)?,
        Runner::CargoTest => {
            anyhow::ensure!(
                options.repeat.is_none(),
                "`--repeat` needs cargo-nextest; install it with `cargo install cargo-nextest`"
            );
            let mut args = vec!["test".to_owned()];
            args.extend(options.runner_args.iter().cloned());
            args.extend(test_args(options, &skipped));
            invoke(project.root(), args, &vars, options.quiet)?
        }
    };
    if runner == Runner::Nextest {
        if code == 0 {
            code = doctests(project.root(), options, &skipped, &vars)?;
        } else {
            eprintln!("doctests not run: the tests above failed");
        }
    }
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

/// nextest does not run doctests: they run with `cargo test --doc` after
/// nextest passed, with the test arguments passed on, and otherwise a line
/// says why they did not (even under `--quiet`: a run never leaves tests
/// out silently).
fn doctests(
    root: &Path,
    options: &TestOptions,
    skipped: &[Requirement],
    vars: &[(&str, String)],
) -> Result<i32> {
    match doctest_plan(options, skipped) {
        Doctests::Run(args) => invoke(root, args, vars, options.quiet),
        Doctests::Skip(reason) => {
            eprintln!("doctests not run: {reason}; run them alone with `cargo test --doc`");
            Ok(0)
        }
    }
}

/// Whether the doctests run after nextest, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Doctests {
    /// `cargo ARGS`.
    Run(Vec<String>),
    /// Not run, for this reason.
    Skip(&'static str),
}

/// Runner arguments (`-p`, `-E`...) and `--repeat` are nextest's and
/// select nextest's tests; test arguments (a name filter, `--exact`...)
/// are libtest's, so the doctests run with them.
fn doctest_plan(options: &TestOptions, skipped: &[Requirement]) -> Doctests {
    if options.repeat.is_some() {
        return Doctests::Skip("`--repeat` repeats nextest's tests only");
    }
    if !options.runner_args.is_empty() {
        return Doctests::Skip("runner arguments select nextest's tests only");
    }
    let mut args = vec!["test".to_owned(), "--doc".to_owned()];
    args.extend(test_args(options, skipped));
    Doctests::Run(args)
}

/// `--` and the test arguments, plus a `--skip` per skipped requirement
/// (libtest's own filter, for `cargo test`).
fn test_args(options: &TestOptions, skipped: &[Requirement]) -> Vec<String> {
    let mut args: Vec<String> = options.test_args.clone();
    for requirement in skipped {
        args.extend(["--skip".to_owned(), format!("{}::", requirement.module)]);
    }
    if args.is_empty() {
        return args;
    }
    std::iter::once("--".to_owned()).chain(args).collect()
}

/// Checks every requirement the workspace's tests have; returns the
/// missing ones after saying which tests they exclude, or fails under
/// `CI=true`.
fn skipped_requirements(root: &Path) -> Result<Vec<Requirement>> {
    let missing: Vec<(Requirement, anyhow::Error)> = REQUIREMENTS
        .iter()
        .filter(|r| declares_module(root, r.module))
        .filter_map(|r| r.check(root).err().map(|e| (*r, e)))
        .collect();
    if missing.is_empty() {
        return Ok(Vec::new());
    }
    let lines: Vec<String> = missing
        .iter()
        .map(|(r, e)| {
            format!(
                "the tests in `{}` modules: they need {}, but {e:#}",
                r.module, r.what
            )
        })
        .collect();
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        anyhow::bail!(
            "CI=true, and tests cannot run here:\n  {}\ninstall what they need (CI must run every test), \
             or run without CI=true to skip them",
            lines.join("\n  ")
        );
    }
    for line in &lines {
        eprintln!("skipping {line}");
    }
    Ok(missing.into_iter().map(|(r, _)| r).collect())
}

/// Whether a Rust file under `root` declares `mod MODULE`: a workspace
/// with no tests in such a module (an adopter's, say) does not need what
/// the module's tests require. Build output, hidden directories and
/// `node_modules` are not searched.
fn declares_module(root: &Path, module: &str) -> bool {
    let declaration = format!("mod {module}");
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                if !name.starts_with('.') && name != "target" && name != "node_modules" {
                    dirs.push(entry.path());
                }
            } else if name.ends_with(".rs")
                && std::fs::read_to_string(entry.path()).is_ok_and(|s| s.contains(&declaration))
            {
                return true;
            }
        }
    }
    false
}

/// Runs `cargo ARGS` in `root` with `vars`; returns its exit code.
fn invoke(root: &Path, args: Vec<String>, vars: &[(&str, String)], quiet: bool) -> Result<i32> {
    let mut command = Command::new(cargo()).args(args).dir(root);
    for (key, value) in vars {
        command = command.env(*key, value);
    }
    if !quiet {
        eprintln!("running `{}` against the stack", command.display());
    }
    command.interactive().context("cannot run the test runner")
}

/// The workspace's target directory (`CARGO_TARGET_DIR`, else `target`).
fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from) {
        Some(dir) if dir.is_absolute() => dir,
        Some(dir) => root.join(dir),
        None => root.join("target"),
    }
}

fn cargo() -> std::ffi::OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::DOCKER;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn only_requirements_of_modules_the_workspace_declares_apply() {
        let root = tempfile::tempdir().unwrap();
        let tests = root.path().join("app/tests");
        std::fs::create_dir_all(&tests).unwrap();
        std::fs::write(tests.join("it.rs"), "mod requires_docker {\n}\n").unwrap();
        let build = root.path().join("target/debug");
        std::fs::create_dir_all(&build).unwrap();
        std::fs::write(build.join("copy.rs"), "mod requires_django {}").unwrap();
        assert!(declares_module(root.path(), "requires_docker"));
        assert!(
            !declares_module(root.path(), "requires_django"),
            "target/ is not searched"
        );
        assert!(!declares_module(root.path(), "requires_patroni"));
    }

    #[test]
    fn test_arguments_follow_the_separator_with_a_skip_per_missing_requirement() {
        let options = TestOptions {
            test_args: strings(&["--nocapture"]),
            ..TestOptions::default()
        };
        assert_eq!(test_args(&options, &[]), strings(&["--", "--nocapture"]));
        assert_eq!(
            test_args(&options, &[DOCKER]),
            strings(&["--", "--nocapture", "--skip", "requires_docker::"])
        );
        assert!(test_args(&TestOptions::default(), &[]).is_empty());
    }

    #[test]
    fn doctests_run_with_the_test_arguments_and_say_when_they_do_not() {
        let filtered = TestOptions {
            test_args: strings(&["lag", "--exact"]),
            ..TestOptions::default()
        };
        assert_eq!(
            doctest_plan(&filtered, &[]),
            Doctests::Run(strings(&["test", "--doc", "--", "lag", "--exact"]))
        );
        assert_eq!(
            doctest_plan(&TestOptions::default(), &[]),
            Doctests::Run(strings(&["test", "--doc"]))
        );
        let selected = TestOptions {
            runner_args: strings(&["-p", "drr-core"]),
            ..filtered.clone()
        };
        assert!(matches!(doctest_plan(&selected, &[]), Doctests::Skip(_)));
        let repeated = TestOptions {
            repeat: Some(3),
            ..filtered
        };
        assert!(matches!(doctest_plan(&repeated, &[]), Doctests::Skip(_)));
    }
}
