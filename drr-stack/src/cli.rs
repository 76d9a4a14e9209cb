//! The `cargo xtask` command line: every command and flag declared once,
//! each documented; `main` parses, dispatches and turns errors into a
//! non-zero exit with a message.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

use crate::native::Native;
use crate::progress::Progress;
use crate::project::Project;
use crate::spec::{Backend, StackSpec};

/// Stack commands for a PostgreSQL primary with delayed streaming replicas.
///
/// The stack is declared in Rust (in this workspace: `xtask/src/spec.rs`);
/// `gen` writes the files derived from it, `up` runs it.
#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    version,
    max_term_width = 100
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Runner: `native` (local processes, the default) or `compose`.
    #[arg(long, global = true, env = "DRR_BACKEND", value_name = "BACKEND")]
    backend: Option<Backend>,
    /// Print only errors and requested output.
    #[arg(short, long, global = true)]
    quiet: bool,
}

/// Replica selection shared by `delay`, `pause` and `resume`.
#[derive(Debug, Args)]
pub struct ReplicaArgs {
    /// Act on this replica only; repeat for several (default: all replicas).
    #[arg(long = "replica", value_name = "NAME")]
    pub names: Vec<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write `compose/` (docker-compose.yaml and each node's Postgres files)
    /// from the spec.
    Gen {
        /// Change nothing; exit non-zero and list every drifted or missing file.
        #[arg(long)]
        check: bool,
    },
    /// Start the stack and wait until every replica streams (idempotent).
    Up,
    /// Stop every node; data is kept.
    Down,
    /// Stop every node and delete the stack's state.
    Destroy {
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Show each node: role, port, pid, state, delay, replay lag, pause.
    ///
    /// Exits non-zero when a node the spec declares is down.
    Status {
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Print `export` lines with the connection URLs (eval "$(cargo xtask env)").
    Env {
        /// Also print the superuser URLs (DRR_ADMIN_PRIMARY_URL, DRR_ADMIN_REPLICA_URLS).
        #[arg(long)]
        admin: bool,
    },
    /// Open psql on a node as the spec's login role.
    Psql {
        /// Node name (default: the primary).
        node: Option<String>,
        /// Extra psql arguments, after `--`.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Print a node's Postgres log.
    Logs {
        /// Node name (default: every node).
        node: Option<String>,
        /// Keep printing as the log grows.
        #[arg(short, long)]
        follow: bool,
    },
    /// Show or change the replication delay, live.
    ///
    /// VALUE is milliseconds (`5000`) or a duration (`250ms`, `5s`, `1m`).
    /// Without VALUE, prints each replica's current and configured delay.
    Delay {
        /// The new delay.
        value: Option<String>,
        /// Return to the spec's delay.
        #[arg(long, conflicts_with = "value")]
        reset: bool,
        #[command(flatten)]
        replicas: ReplicaArgs,
    },
    /// Stop WAL replay on replicas: an unbounded lag until `resume`.
    Pause {
        #[command(flatten)]
        replicas: ReplicaArgs,
    },
    /// Restart WAL replay on replicas.
    Resume {
        #[command(flatten)]
        replicas: ReplicaArgs,
    },
    /// Measure how long writes on the primary take to become visible on
    /// each replica.
    Probe {
        /// How long to probe (e.g. `10s`).
        #[arg(long, default_value = "10s")]
        duration: String,
        /// Time between marker writes (e.g. `500ms`).
        #[arg(long, default_value = "500ms")]
        interval: String,
        /// Print the samples and summary as JSON.
        #[arg(long)]
        json: bool,
        /// Draw lag over time per replica into this SVG file.
        #[arg(long, value_name = "FILE")]
        svg: Option<PathBuf>,
    },
    /// Check generated files, bring the stack up, run the workspace's tests
    /// against it.
    ///
    /// Uses `cargo nextest run` when installed, else `cargo test`. Arguments
    /// go to the test runner; after `--` they go to the tests.
    Test {
        /// Stop the stack afterwards.
        #[arg(long)]
        down: bool,
        /// Arguments for the test runner.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build a local Postgres image for the compose backend without any
    /// registry (cached).
    Image,
}

/// Parses the command line, runs the command for `spec`, and returns the
/// exit code. `root` is the workspace that holds `compose/`.
pub fn main(spec: StackSpec, root: impl Into<PathBuf>) -> ExitCode {
    let cli = Cli::parse();
    match run(cli, spec, root.into()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli, spec: StackSpec, root: PathBuf) -> Result<ExitCode> {
    let project = Project::new(spec, root)?;
    let _backend = cli.backend.unwrap_or(project.spec().backend);
    let mut progress = Progress::new(cli.quiet);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    match cli.command {
        Command::Gen { check } => crate::codegen::run(&project, check),
        Command::Up => {
            let native = Native::open(&project)?;
            runtime.block_on(native.up(&mut progress))?;
            progress.done("stack is up");
            Ok(ExitCode::SUCCESS)
        }
        Command::Down => {
            Native::open(&project)?.down(&mut progress)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Destroy { yes } => {
            let native = Native::open(&project)?;
            if !yes
                && std::io::stdin().is_terminal()
                && !confirm(&format!(
                    "delete {} and all the stack's data?",
                    native.state().root().display()
                ))?
            {
                anyhow::bail!("nothing deleted");
            }
            native.destroy(&mut progress)?;
            Ok(ExitCode::SUCCESS)
        }
        other => anyhow::bail!("`{other:?}` is not implemented yet"),
    }
}

/// Asks a yes/no question on the terminal.
fn confirm(question: &str) -> Result<bool> {
    eprint!("{question} [y/N] ");
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }
}
