//! The command line on a project of the test's own (a temporary workspace
//! with a spec on free ports), as a user runs it: `destroy` deletes only what
//! was confirmed.

use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::time::Duration;

use drr_stack::cli::run_args;
use drr_stack::testing::{scratch_dir, spec};

#[test]
fn destroy_without_a_terminal_asks_for_yes_and_deletes_nothing() {
    if std::io::stdin().is_terminal() {
        // Run by hand in a terminal: run this test again without one.
        let status = std::process::Command::new(std::env::current_exe().expect("this test"))
            .args([
                "--exact",
                "destroy_without_a_terminal_asks_for_yes_and_deletes_nothing",
            ])
            .stdin(std::process::Stdio::null())
            .status()
            .expect("run this test without a terminal");
        assert!(status.success(), "{status}");
        return;
    }
    let root = scratch_dir("drr-cli-").expect("a temporary workspace");
    let spec = spec(&[Duration::ZERO]).expect("a spec");
    let run = |args: &[&str]| run_args(args.iter().copied(), spec.clone(), root.path());
    assert_eq!(run(&["up", "--quiet"]), ExitCode::SUCCESS);
    let state = root.path().join("target/drr/t");
    assert!(
        state.join("nodes/primary/data").is_dir(),
        "up made the stack"
    );

    // The test runner's stdin is not a terminal: no one to ask.
    assert_eq!(run(&["destroy"]), ExitCode::FAILURE);
    assert!(
        state.join("nodes/primary/data").is_dir(),
        "an unconfirmed destroy deleted data"
    );
    assert_eq!(run(&["status", "--quiet"]), ExitCode::SUCCESS, "still up");

    assert_eq!(run(&["destroy", "--yes", "--quiet"]), ExitCode::SUCCESS);
    assert!(!state.exists(), "destroy --yes deletes the stack's state");
}
