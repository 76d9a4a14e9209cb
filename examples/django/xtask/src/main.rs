//! This repository's `cargo xtask`: drr's stack commands on the spec below
//! (written by `drr init`). Edit the spec, then run `cargo xtask up`; see
//! `cargo xtask --help`.

use std::time::Duration;

use drr_stack::spec::{Node, Replica, Role, StackSpec, TestCommand};

/// The stack: a primary and `replica1`, 3000 ms behind it, with a login
/// role that may create databases (test helpers need it).
fn spec() -> StackSpec {
    StackSpec::new("django_shop", 15)
        .primary(Node::new("primary", 25432))
        .replica(Replica::new("replica1", 25433).delay(Duration::from_millis(3000)))
        .role(Role::login("drr_user", "pass").createdb())
        .database("drr", "drr_user")
        // Local processes only; remove this line and run `cargo xtask gen`
        // to run the stack under docker compose too.
        .without_compose()
        // What `cargo xtask test` runs, with DATABASE_URL, DRR_* and PG*
        // exported.
        .test_command(TestCommand::new(".venv/bin/python").args(["manage.py", "test", "--noinput"]))
}

fn main() -> std::process::ExitCode {
    let crate_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    drr_stack::cli::main(spec(), crate_dir.parent().unwrap_or(crate_dir))
}
