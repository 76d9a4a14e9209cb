//! `cargo xtask psql`: psql on a node as the spec's login role, over TCP
//! (so it serves both backends).

use std::process::ExitCode;

use anyhow::Result;

use crate::command::Command;
use crate::host::Binaries;
use crate::spec::StackSpec;

/// Runs psql on `node` (default: the primary) with `args`; returns its exit
/// code. Uses the spec major's psql when it is installed, else `psql` from
/// `PATH`.
pub fn run(spec: &StackSpec, node: Option<&str>, args: Vec<String>) -> Result<ExitCode> {
    let node = match node {
        Some(name) => spec.node(name)?,
        None => &spec.primary,
    };
    let login = spec.login_credentials()?;
    let psql =
        Binaries::find(spec.postgres_major).map_or_else(|_| "psql".into(), |b| b.path("psql"));
    let code = Command::new(psql)
        .args(["-h".to_owned(), spec.node_host(node)])
        .args(["-p".to_owned(), node.port.to_string()])
        .args(["-U", &login.user, "-d", &login.database])
        .args(args)
        .env("PGPASSWORD", &login.password)
        .interactive()?;
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}
