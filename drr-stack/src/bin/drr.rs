//! `drr`: sets drr up in a repository of any language (`drr init`). Run it
//! from a checkout (`cargo run --manifest-path drr/drr-stack/Cargo.toml
//! --bin drr -- init`) or install it (`cargo install --git
//! https://github.com/drr-rs/drr drr-stack`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};
use drr_stack::scaffold::{self, Choices, InitOptions, Source};

/// drr's setup command; the stack commands themselves are `cargo xtask`'s.
#[derive(Debug, Parser)]
#[command(name = "drr", version, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Add drr to this repository: an `xtask/` crate with a stack spec of
    /// drr's defaults, the `cargo xtask` alias in `.cargo/config.toml`, and
    /// `.gitignore` entries. Creates missing files and appends missing
    /// lines; never overwrites anything.
    Init {
        /// Print what would be done; change nothing.
        #[arg(long)]
        check: bool,
        /// The repository's root (default: the current directory).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Depend on drr-stack in this local checkout of drr (its root or
        /// its drr-stack directory) instead of drr's git repository.
        #[arg(long, value_name = "DIR", conflicts_with = "git")]
        path: Option<PathBuf>,
        /// Depend on drr-stack from this git repository.
        #[arg(long, value_name = "URL", default_value = env!("CARGO_PKG_REPOSITORY"))]
        git: String,
        /// The stack's name (default: from the directory's name).
        #[arg(long)]
        name: Option<String>,
        /// The primary's port; replica1 listens on the next one.
        #[arg(long, default_value_t = 5432)]
        port: u16,
        /// The project's test command, after `--` (e.g. `-- python manage.py
        /// test`); default: the workspace's Rust tests.
        #[arg(last = true, value_name = "TEST COMMAND")]
        test_command: Vec<String>,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let Command::Init {
        check,
        dir,
        path,
        git,
        name,
        port,
        test_command,
    } = cli.command;
    let root = match dir {
        Some(dir) => dir,
        None => std::env::current_dir().context("cannot read the current directory")?,
    };
    let root =
        std::path::absolute(&root).with_context(|| format!("cannot resolve {}", root.display()))?;
    let source = match path {
        Some(dir) => Source::Path(drr_stack_dir(&dir)?),
        None => Source::Git(git),
    };
    let options = InitOptions {
        choices: Choices {
            source,
            name: name.unwrap_or_else(|| scaffold::stack_name(&root)),
            port,
            test_command,
        },
        root,
    };
    scaffold::run(&options, check)
}

/// The drr-stack crate in a checkout: `dir` itself or its `drr-stack/`,
/// as an absolute path (the xtask crate's manifest is elsewhere).
fn drr_stack_dir(dir: &std::path::Path) -> Result<PathBuf> {
    let dir = dir
        .canonicalize()
        .with_context(|| format!("--path {}: no such directory", dir.display()))?;
    [dir.join("drr-stack"), dir.clone()]
        .into_iter()
        .find(|d| {
            std::fs::read_to_string(d.join("Cargo.toml"))
                .is_ok_and(|t| t.contains("name = \"drr-stack\""))
        })
        .with_context(|| {
            format!(
                "--path {}: neither it nor its drr-stack/ is the drr-stack crate; pass a drr \
                 checkout",
                dir.display()
            )
        })
}
