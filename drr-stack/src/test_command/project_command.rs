//! The spec's own test command ([`TestCommand`]): another ecosystem's test
//! runner (`python manage.py test`, `npm test`), run in the workspace root
//! with the stack's environment plus libpq's `PG*` variables, which psql,
//! psycopg, node-postgres and most other clients read.

use std::path::Path;

use anyhow::{Context, Result};

use super::TestOptions;
use crate::command::Command;
use crate::spec::{StackSpec, TestCommand};

/// libpq's variables for the command's [`TestCommand::libpq_node`] (the
/// primary by default), logging in as the spec's login role.
pub fn libpq_vars(spec: &StackSpec, command: &TestCommand) -> Result<Vec<(&'static str, String)>> {
    let node = match &command.libpq_node {
        Some(name) => spec.node(name)?,
        None => &spec.primary,
    };
    let login = spec
        .login_credentials()
        .context("cannot export PGUSER and PGPASSWORD for the test command")?;
    Ok(vec![
        ("PGHOST", spec.node_host(node)),
        ("PGPORT", node.port.to_string()),
        ("PGUSER", login.user),
        ("PGPASSWORD", login.password),
        ("PGDATABASE", login.database),
    ])
}

/// The command line: the spec's program and arguments, then `cargo xtask
/// test`'s own (runner arguments, then those after `--`). A program path
/// with a `/` is relative to the workspace root.
fn command_line(root: &Path, command: &TestCommand, options: &TestOptions) -> Command {
    let program = if command.program.contains('/') {
        root.join(&command.program)
    } else {
        command.program.clone().into()
    };
    Command::new(program)
        .args(&command.args)
        .args(&options.runner_args)
        .args(&options.test_args)
        .dir(root)
}

/// Runs the command (`--repeat N`: N times, then a tally); returns the
/// first failing run's exit code.
pub(super) fn run(
    root: &Path,
    command: &TestCommand,
    options: &TestOptions,
    vars: &[(&str, String)],
) -> Result<i32> {
    let mut line = command_line(root, command, options);
    for (key, value) in vars {
        line = line.env(*key, value);
    }
    if !options.quiet {
        eprintln!(
            "running the spec's test command `{}` against the stack",
            line.display()
        );
    }
    let times = options.repeat.unwrap_or(1);
    let (mut code, mut failed) = (0, 0);
    for run in 1..=times {
        if times > 1 {
            eprintln!("run {run} of {times}");
        }
        let run_code = line.interactive().with_context(|| {
            format!(
                "cannot run the spec's test command `{}`; install it, or fix the spec's \
                 `TestCommand` (a path with `/` is relative to the workspace root)",
                command.program
            )
        })?;
        if run_code != 0 {
            failed += 1;
            if code == 0 {
                code = run_code;
            }
        }
    }
    if times > 1 {
        eprintln!("the test command failed in {failed} of {times} runs");
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::default_spec;

    #[test]
    fn the_command_line_is_the_spec_s_then_the_caller_s_arguments() {
        let command = TestCommand::new("python").args(["manage.py", "test"]);
        let options = TestOptions {
            runner_args: vec!["shop".into()],
            test_args: vec!["--keepdb".into()],
            ..TestOptions::default()
        };
        let line = command_line(Path::new("/w"), &command, &options).display();
        assert_eq!(line, "python manage.py test shop --keepdb");
        let venv = TestCommand::new(".venv/bin/python");
        let line = command_line(Path::new("/w"), &venv, &TestOptions::default()).display();
        assert_eq!(line, "/w/.venv/bin/python");
    }

    #[test]
    fn libpq_variables_name_the_chosen_node_as_the_login_role() {
        let spec = default_spec();
        let vars = libpq_vars(&spec, &TestCommand::new("npm").libpq_node("replica1")).unwrap();
        assert_eq!(
            vars,
            [
                ("PGHOST", "127.0.0.1".to_owned()),
                ("PGPORT", "5433".to_owned()),
                ("PGUSER", "drr_user".to_owned()),
                ("PGPASSWORD", "pass".to_owned()),
                ("PGDATABASE", "drr".to_owned()),
            ]
        );
        let primary = libpq_vars(&spec, &TestCommand::new("npm")).unwrap();
        assert_eq!(primary[1], ("PGPORT", "5432".to_owned()));
    }
}
