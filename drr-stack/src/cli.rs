//! The `cargo xtask` command line: every command and flag declared once,
//! each documented; `main` parses, dispatches and turns errors into a
//! non-zero exit with a message.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::{Args, CommandFactory as _, FromArgMatches as _, Parser, Subcommand};

use crate::lag::{self, DelayChange};
use crate::progress::Progress;
use crate::project::Project;
use crate::spec::{Backend, StackSpec};
use crate::stack::Stack;
use crate::{env, probe, status, test_command};

/// Stack commands for a PostgreSQL primary with delayed streaming replicas.
///
/// The stack is declared in Rust; `gen` writes the files derived from it,
/// `up` runs it. (`--help` says where this workspace declares it.)
#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    version,
    max_term_width = 100
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Runner: `native` (local processes, the default) or `compose`.
    #[arg(long, global = true, env = "DRR_BACKEND", value_name = "BACKEND")]
    backend: Option<Backend>,
    /// Act on this spec instead of the first: a cluster the workspace
    /// declares next to its stack (e.g. `staging`, an external cluster).
    #[arg(long, global = true, env = "DRR_CLUSTER", value_name = "NAME")]
    cluster: Option<String>,
    /// Print only errors and requested output.
    #[arg(short, long, global = true)]
    quiet: bool,
}

/// The specs a workspace's `cargo xtask` knows: the stack it runs (the
/// first), then clusters it attaches to, chosen with `--cluster NAME` by
/// their spec name.
#[derive(Debug, Clone)]
pub struct Specs {
    specs: Vec<StackSpec>,
}

impl Specs {
    /// Only `spec`.
    pub fn new(spec: StackSpec) -> Self {
        Specs { specs: vec![spec] }
    }

    /// Adds a cluster that `--cluster <its name>` selects.
    pub fn cluster(mut self, spec: StackSpec) -> Self {
        self.specs.push(spec);
        self
    }

    /// The spec `--cluster` names, or the first.
    fn select(self, name: Option<&str>) -> Result<StackSpec> {
        let Some(name) = name else {
            let mut specs = self.specs;
            return Ok(specs.swap_remove(0));
        };
        let names: Vec<String> = self.specs.iter().map(|s| format!("`{}`", s.name)).collect();
        self.specs
            .into_iter()
            .find(|s| s.name == name)
            .with_context(|| {
                format!(
                    "--cluster `{name}` is not a spec of this workspace; it knows {}",
                    names.join(", ")
                )
            })
    }
}

impl From<StackSpec> for Specs {
    fn from(spec: StackSpec) -> Self {
        Specs::new(spec)
    }
}

/// Replica selection shared by `delay`, `pause` and `resume`.
#[derive(Debug, Args)]
struct ReplicaArgs {
    /// Act on this replica only; repeat for several (default: all replicas).
    #[arg(long = "replica", value_name = "NAME")]
    names: Vec<String>,
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
    ///
    /// Repairs what it can and says so: a missing replication slot is
    /// recreated, a replica that cannot stream is rebuilt from the primary.
    Up {
        /// Also delete the data of a node that left the spec when it holds a
        /// primary's data (after renaming the primary in the spec).
        #[arg(long)]
        yes: bool,
    },
    /// Stop every node; data is kept.
    Down {
        /// Stop every drr stack of this workspace instead: each native
        /// stack under target/drr (and $DRR_STATE_DIR, and the /var/tmp
        /// fallback), whichever spec made it, and this spec's compose
        /// project when a Docker engine answers. Nothing outside the
        /// workspace is touched.
        #[arg(long)]
        all: bool,
    },
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
        #[arg(allow_negative_numbers = true, allow_hyphen_values = true)]
        value: Option<String>,
        /// Return to the spec's delay.
        #[arg(long, conflicts_with = "value")]
        reset: bool,
        #[command(flatten)]
        replicas: ReplicaArgs,
    },
    /// Promote a replica and make the old primary its replica: the cluster
    /// changing under your application, on demand.
    ///
    /// The old primary stops with a fast shutdown (its replicas receive all
    /// its WAL), the target is promoted, the other replicas follow it, and
    /// the old primary rejoins with pg_rewind. Each step is timed. The roles
    /// stay until the next failover (`--to primary` switches back); `up`
    /// keeps them and `destroy` forgets them.
    Failover {
        /// The node to promote (default: the replica that has received the
        /// most WAL).
        #[arg(long, value_name = "NODE")]
        to: Option<String>,
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
    /// Check generated files, bring the stack to the spec's state, run the
    /// workspace's tests against it.
    ///
    /// Runs the spec's test command when it names one (any language; its
    /// arguments, then these), else the Rust tests: `cargo nextest run` when
    /// installed (then doctests with `cargo test --doc`), else `cargo test`.
    /// Arguments go to the test runner; after `--` they go to the tests
    /// (doctests too; with runner arguments or `--repeat` doctests are not
    /// run, and a line says so). The environment holds DATABASE_URL and the
    /// DRR_* URLs, and for the spec's test command libpq's PG* variables.
    /// Delay
    /// overrides and replay pauses are reset first, one line each. Tests in
    /// a `requires_*` module whose requirement this machine lacks (e.g. a
    /// Docker engine) are skipped with the reason; under CI=true that fails.
    Test {
        /// Stop the stack afterwards.
        #[arg(long)]
        down: bool,
        /// Keep `delay` and `pause` overrides and export the live delays
        /// (to test under a custom delay).
        #[arg(long)]
        keep_overrides: bool,
        /// Run the selected tests N times and print a per-test failure
        /// tally: a hunt for flaky lag tests (needs cargo-nextest; the
        /// spec's test command runs N times with a tally of failed runs).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        repeat: Option<u32>,
        /// Arguments for the test runner, e.g. `-p drr-core`.
        #[arg(allow_hyphen_values = true)]
        args: Vec<String>,
        /// Arguments for the tests themselves (after `--`), e.g. `--nocapture`.
        #[arg(last = true)]
        test_args: Vec<String>,
    },
    /// Measure every performance figure and write target/drr/bench/report.md
    /// and report.json.
    ///
    /// Stack start-up, lag accuracy and comparisons with hand-written
    /// baselines run on throw-away stacks; the workspace's `cargo bench`
    /// results are collected too. Reports, never asserts, speed.
    Bench {
        /// A smoke run for CI: every part, fewer runs, short criterion
        /// measurements, and the benches built like the tests (the dev
        /// profile, no optimised build); its figures are not for comparison.
        #[arg(long)]
        quick: bool,
        /// Run only this part; repeat for several (default: all).
        #[arg(long, value_enum, value_name = "PART")]
        only: Vec<crate::bench::Part>,
    },
    /// Build a local Postgres image for the compose backend without any
    /// registry (cached).
    Image,
    /// Show or set network faults (latency, jitter, bandwidth) on the
    /// links the spec opts into the fault proxy.
    ///
    /// Without NODE, lists every link and its faults. Faults apply at once
    /// to new and open connections and stay (across `down`/`up`) until
    /// `heal`. Latency is added to each round trip (on the stream towards
    /// the client; for a replication link, the WAL). See
    /// docs/network-faults.md.
    ///
    /// Examples: `cargo xtask net replica1 --latency 80ms --jitter 10ms`
    /// (a replica in another region); `cargo xtask net replica1 --bandwidth
    /// 1mbit --link replication` (lag that grows under writes); `cargo
    /// xtask net replica1 --latency 5000ms` (the original tool's `delay.sh
    /// 5000`).
    Net(crate::net::NetArgs),
    /// Cut a node's links off: reads hang (blackhole) or fail (reset); a
    /// cut replication link stops the WAL stream, so lag grows. On the
    /// compose backend, without `--link`, the node's container leaves the
    /// engine's network (`docker network disconnect`).
    Partition(crate::net::PartitionArgs),
    /// Remove every network fault of a node's links (default: every link);
    /// on the compose backend, also put containers back on the network.
    Heal {
        /// The node to heal.
        node: Option<String>,
    },
    /// Run the fault proxy of a state directory (`up` starts it).
    #[command(hide = true)]
    NetProxy {
        /// The proxy's directory (`<state>/net`).
        #[arg(long)]
        dir: PathBuf,
    },
}

/// Parses the command line, runs the command for `spec`, and returns the
/// exit code. `root` is the workspace that holds `compose/`. `--help` names
/// the file that calls this (the workspace's `xtask/src/main.rs`): where
/// its spec is handed over.
#[track_caller]
pub fn main(specs: impl Into<Specs>, root: impl Into<PathBuf>) -> ExitCode {
    // This program runs the fault proxy itself (`net-proxy`, hidden).
    if let Ok(exe) = std::env::current_exe() {
        crate::net::launch::use_program(exe);
    }
    run_args(std::env::args_os().skip(1), specs, root)
}

/// [`main`] with the arguments given (without the program name): for tests
/// that run commands on a project of their own.
#[track_caller]
pub fn run_args<I, T>(args: I, specs: impl Into<Specs>, root: impl Into<PathBuf>) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let root = root.into();
    let caller = std::panic::Location::caller().file();
    let argv = std::iter::once(std::ffi::OsString::from("cargo xtask"))
        .chain(args.into_iter().map(Into::into));
    let cli = command(&spec_origin(&root, caller))
        .try_get_matches_from(argv)
        .and_then(|matches| Cli::from_arg_matches(&matches));
    let cli = match cli {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match run(cli, specs.into(), root) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli, specs: Specs, root: PathBuf) -> Result<ExitCode> {
    let project = Project::new(specs.select(cli.cluster.as_deref())?, root)?;
    if !project.spec().is_managed() {
        refuse_on_external(&cli.command, &project.spec().name)?;
    }
    let backend = cli.backend.unwrap_or(project.spec().backend);
    let mut progress = Progress::new(cli.quiet);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let spec = project.spec();
    let secrets = || project.secrets();
    let stack = || Stack::open(&project, backend);
    match cli.command {
        Command::Gen { check } => crate::codegen::run(&project, check),
        Command::Up { yes } => {
            let options = crate::stack::UpOptions { yes };
            runtime.block_on(stack()?.up_with(&mut progress, options))?;
            progress.done("stack is up");
            Ok(ExitCode::SUCCESS)
        }
        Command::Down { all: false } => stack()?.down(&mut progress).map(|()| ExitCode::SUCCESS),
        Command::Down { all: true } => {
            crate::stack::down_all(&project, &mut progress).map(|()| ExitCode::SUCCESS)
        }
        Command::Destroy { yes } => {
            let stack = stack()?;
            confirm_destroy(&stack, yes)?;
            stack.destroy(&mut progress).map(|()| ExitCode::SUCCESS)
        }
        Command::Status { json } => runtime.block_on(status::run(&project, backend, json)),
        Command::Env { admin } => {
            let secrets = if admin { Some(secrets()?) } else { None };
            let vars = if spec.is_managed() {
                env::vars(spec, secrets.as_ref())
            } else {
                // Whichever node the HA engine made primary now.
                let runtime = runtime.block_on(stack()?.runtime(&project.secrets()?))?;
                env::vars(&runtime, secrets.as_ref())
            };
            print!("{}", env::exports(&vars));
            Ok(ExitCode::SUCCESS)
        }
        Command::Psql { node, args } => crate::psql::run(spec, node.as_deref(), args),
        Command::Logs { node, follow } => {
            if let Some(name) = &node {
                spec.node(name)?;
            }
            let code = stack()?.logs(spec, node.as_deref(), follow)?;
            Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
        }
        Command::Delay {
            value,
            reset,
            replicas,
        } => {
            let change = match (value, reset) {
                (Some(v), _) => DelayChange::Set(lag::parse_delay(&v)?),
                (None, true) => DelayChange::Reset,
                (None, false) => DelayChange::Show,
            };
            runtime.block_on(lag::run_delay(spec, &secrets()?, &replicas.names, change))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Failover { to } => {
            let (stack, secrets) = (stack()?, secrets()?);
            let switch = crate::failover::run(&stack, &secrets, to.as_deref(), &mut progress);
            runtime.block_on(switch)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Pause { replicas } => {
            runtime.block_on(lag::run_pause(spec, &secrets()?, &replicas.names, true))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Resume { replicas } => {
            runtime.block_on(lag::run_pause(spec, &secrets()?, &replicas.names, false))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Test {
            down,
            keep_overrides,
            repeat,
            args,
            test_args,
        } => {
            let options = test_command::TestOptions {
                down,
                keep_overrides,
                repeat,
                runner_args: args,
                test_args,
                quiet: cli.quiet,
            };
            let stack = stack()?;
            runtime.block_on(test_command::run(&project, &stack, &options, &mut progress))
        }
        Command::Probe {
            duration,
            interval,
            json,
            svg,
        } => {
            let options = probe::ProbeOptions {
                duration: parse_duration("--duration", &duration)?,
                interval: parse_duration("--interval", &interval)?,
                json,
                svg,
                quiet: cli.quiet,
            };
            let report = runtime.block_on(probe::run(&project, &secrets()?, &options))?;
            Ok(if report.complete() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Bench { quick, only } => {
            let options = crate::bench::BenchOptions { quick, only };
            let path = runtime.block_on(crate::bench::run(&project, options))?;
            eprintln!("wrote {}", path.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Image => {
            crate::stack::build_image(spec, &mut progress).map(|()| ExitCode::SUCCESS)
        }
        Command::Net(args) => {
            crate::net::command::run_net(&stack()?, &args).map(|()| ExitCode::SUCCESS)
        }
        Command::Partition(args) => {
            crate::net::command::run_partition(&stack()?, &args).map(|()| ExitCode::SUCCESS)
        }
        Command::Heal { node } => {
            crate::net::command::run_heal(&stack()?, node.as_deref()).map(|()| ExitCode::SUCCESS)
        }
        Command::NetProxy { dir } => crate::net::daemon::run(&dir).map(|()| ExitCode::SUCCESS),
    }
}

/// Where this workspace's spec comes from, for `--help`: the file that
/// hands it to [`main`], as a path from the workspace root when it lies
/// inside it. The compiler names it from the root of the crate's own
/// workspace: `root` itself, or a directory in it (an `xtask/` that is a
/// workspace of its own), whichever holds the file.
fn spec_origin(root: &std::path::Path, caller: &str) -> String {
    let caller = std::path::Path::new(caller);
    let found = if caller.is_absolute() {
        caller.to_owned()
    } else {
        let below = std::fs::read_dir(root)
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.path().join(caller));
        std::iter::once(root.join(caller))
            .chain(below)
            .find(|path| path.is_file())
            .unwrap_or_else(|| root.join(caller))
    };
    let relative = found.strip_prefix(root).unwrap_or(caller);
    format!(
        "This workspace's stack is the `StackSpec` that `{}` hands to \
         `drr_stack::cli::main` (workspace: {}). After changing it, run \
         `cargo xtask gen` and `cargo xtask up`.",
        relative.display(),
        root.display()
    )
}

/// The command line, its long help ending with where the spec is.
fn command(origin: &str) -> clap::Command {
    let cli = Cli::command();
    let about = cli
        .get_long_about()
        .map(ToString::to_string)
        .unwrap_or_default();
    cli.long_about(format!("{about}\n\n{origin}"))
}

/// The commands that only make sense for a stack drr runs.
fn refuse_on_external(command: &Command, name: &str) -> Result<()> {
    let what = match command {
        Command::Gen { .. } => "generates no files for",
        Command::Down { .. } => "never stops",
        Command::Destroy { .. } => "never deletes",
        Command::Logs { .. } => "cannot read the logs of",
        Command::Image | Command::Bench { .. } => "builds and benchmarks nothing on",
        Command::Net(_) | Command::Partition(_) | Command::Heal { .. } => "runs no fault proxy for",
        _ => return Ok(()),
    };
    anyhow::bail!(
        "`{name}` is an external cluster: drr {what} it; use its own tools, or run the command \
         without `--cluster`"
    )
}

/// `destroy` deletes only what the user confirmed: `--yes`, or `y` on a
/// terminal; without a terminal to ask on, it refuses.
fn confirm_destroy(stack: &Stack<'_>, yes: bool) -> Result<()> {
    if yes {
        return Ok(());
    }
    let what = stack.describe_data();
    anyhow::ensure!(
        std::io::stdin().is_terminal(),
        "`destroy` deletes {what} and all the stack's data; there is no terminal to confirm on, \
         so pass `--yes`"
    );
    eprint!("delete {what} and all the stack's data? [y/N] ");
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    anyhow::ensure!(
        matches!(answer.trim(), "y" | "Y" | "yes"),
        "nothing deleted"
    );
    Ok(())
}

fn parse_duration(flag: &str, value: &str) -> Result<std::time::Duration> {
    let duration = humantime::parse_duration(value).with_context(|| {
        format!("{flag} `{value}` is not a duration; write e.g. `500ms`, `10s` or `1m`")
    })?;
    anyhow::ensure!(!duration.is_zero(), "{flag} must be longer than zero");
    Ok(duration)
}

/// Parses `args` (without the program name) as `cargo xtask` would, without
/// running anything: for tests that check the commands shown in the docs.
pub fn parse<I, T>(args: I) -> Result<(), clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let argv = std::iter::once(std::ffi::OsString::from("cargo xtask"))
        .chain(args.into_iter().map(Into::into));
    Cli::try_parse_from(argv).map(drop)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn help_names_the_file_that_hands_over_this_workspace_s_spec() {
        let root = std::path::Path::new("/work/shop");
        let origin = spec_origin(root, "xtask/src/main.rs");
        let help = command(&origin).render_long_help().to_string();
        assert!(help.contains("`xtask/src/main.rs` hands to"), "{help}");
        assert!(help.contains("/work/shop"), "{help}");
        assert!(!help.contains("xtask/src/spec.rs"), "{help}");
        let elsewhere = spec_origin(root, "/work/shop/tools/src/main.rs");
        assert!(elsewhere.contains("`tools/src/main.rs`"), "{elsewhere}");
        // An xtask that is a workspace of its own names its files from there.
        let repo = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(repo.path().join("xtask/src")).unwrap();
        std::fs::write(repo.path().join("xtask/src/main.rs"), "").unwrap();
        let own = spec_origin(repo.path(), "src/main.rs");
        assert!(own.contains("`xtask/src/main.rs`"), "{own}");
    }
}
