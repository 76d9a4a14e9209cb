//! The files `drr init` writes, as pure functions of its choices.

use std::fmt::Write as _;
use std::path::PathBuf;

/// Where the new `xtask` crate gets drr-stack from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A git repository (drr's own by default).
    Git(String),
    /// A local checkout: the `drr-stack` crate's directory.
    Path(PathBuf),
}

/// What the new spec declares besides drr's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choices {
    /// Where drr-stack comes from.
    pub source: Source,
    /// The stack's name.
    pub name: String,
    /// The primary's port; `replica1` listens on the next.
    pub port: u16,
    /// The project's own test command, as words; empty: its Rust tests.
    pub test_command: Vec<String>,
}

/// The `cargo xtask` alias line (in `[alias]`): the xtask crate is a
/// workspace of its own, whatever the repository around it is.
pub const ALIAS: &str = "xtask = \"run --manifest-path xtask/Cargo.toml --\"";

/// `.gitignore` entries: drr's passwords, the stack's state, the xtask
/// build.
pub const IGNORED: [&str; 3] = ["/.drr/", "/target/", "/xtask/target/"];

/// A TOML or Rust string literal (both escape `\` and `"` alike).
fn quoted(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// `xtask/Cargo.toml`.
pub fn cargo_toml(choices: &Choices) -> String {
    let dependency = match &choices.source {
        Source::Git(url) => format!("{{ git = {} }}", quoted(url)),
        Source::Path(dir) => format!("{{ path = {} }}", quoted(&dir.display().to_string())),
    };
    format!(
        r#"# This repository's `cargo xtask` (written by `drr init`): a workspace of
# its own, so it needs nothing from the rest of the repository.
[workspace]

# Named after the stack: two such crates (this one and another
# repository's) never share compiled units in a shared build directory.
[package]
name = "{name}-xtask"
version = "0.1.0"
edition = "2024"
publish = false

[[bin]]
name = "xtask"
path = "src/main.rs"

[dependencies]
drr-stack = {dependency}

# Dependencies with optimizations: drr's tooling stays quick in debug builds.
[profile.dev.package."*"]
opt-level = 1
"#,
        name = choices.name
    )
}

/// `xtask/src/main.rs`: the spec with drr's defaults, and `main`.
pub fn main_rs(choices: &Choices) -> String {
    let mut imports = String::from("Node, Replica, Role, StackSpec");
    let mut test = String::new();
    if let Some((program, args)) = choices.test_command.split_first() {
        imports.push_str(", TestCommand");
        let args: Vec<String> = args.iter().map(|a| quoted(a)).collect();
        let _ = write!(
            test,
            "\n        // What `cargo xtask test` runs, with DATABASE_URL, DRR_* and PG*\n        \
             // exported.\n        .test_command(TestCommand::new({}).args([{}]))",
            quoted(program),
            args.join(", ")
        );
    }
    format!(
        r#"//! This repository's `cargo xtask`: drr's stack commands on the spec below
//! (written by `drr init`). Edit the spec, then run `cargo xtask up`; see
//! `cargo xtask --help`.

use std::time::Duration;

use drr_stack::spec::{{{imports}}};

/// The stack: a primary and `replica1`, 3000 ms behind it, with a login
/// role that may create databases (test helpers need it).
fn spec() -> StackSpec {{
    StackSpec::new({name}, 15)
        .primary(Node::new("primary", {port}))
        .replica(Replica::new("replica1", {replica_port}).delay(Duration::from_millis(3000)))
        .role(Role::login("drr_user", "pass").createdb())
        .database("drr", "drr_user")
        // Local processes only; remove this line and run `cargo xtask gen`
        // to run the stack under docker compose too.
        .without_compose(){test}
}}

fn main() -> std::process::ExitCode {{
    let crate_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    drr_stack::cli::main(spec(), crate_dir.parent().unwrap_or(crate_dir))
}}
"#,
        name = quoted(&choices.name),
        port = choices.port,
        replica_port = u32::from(choices.port) + 1,
    )
}

/// `.cargo/config.toml` when there is none.
pub fn cargo_config() -> String {
    format!("[alias]\n{ALIAS}\n")
}
