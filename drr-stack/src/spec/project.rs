//! What a spec says about the project around its stack: whether it wants
//! the compose files at all, and which command `cargo xtask test` runs.

use super::StackSpec;

/// The command `cargo xtask test` runs against the stack instead of the
/// workspace's Rust tests: a Django project's `python manage.py test`, a
/// Node project's `npm test`. It runs in the workspace root with the
/// stack's environment (`DATABASE_URL`, `DRR_*`, and libpq's `PG*`
/// variables for [`TestCommand::libpq_node`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TestCommand {
    /// The program: a name found on `PATH`, or a path relative to the
    /// workspace root (`.venv/bin/python`).
    pub program: String,
    /// Its arguments; those given to `cargo xtask test` follow them.
    pub args: Vec<String>,
    /// The node `PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD` and
    /// `PGDATABASE` name; `None`: the primary.
    pub libpq_node: Option<String>,
}

impl TestCommand {
    /// `program` without arguments.
    pub fn new(program: &str) -> Self {
        TestCommand {
            program: program.to_owned(),
            args: Vec::new(),
            libpq_node: None,
        }
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Makes libpq's `PG*` variables name `node` instead of the primary.
    pub fn libpq_node(mut self, node: &str) -> Self {
        self.libpq_node = Some(node.to_owned());
        self
    }
}

impl StackSpec {
    /// Declares no compose output: `cargo xtask gen` writes nothing,
    /// `cargo xtask test` checks no `compose/`, and the stack runs only
    /// natively (for projects that never run it under Docker).
    pub fn without_compose(mut self) -> Self {
        self.compose = false;
        self
    }

    /// Makes `cargo xtask test` run `command` instead of the workspace's
    /// Rust tests.
    pub fn test_command(mut self, command: TestCommand) -> Self {
        self.test_command = Some(command);
        self
    }
}
