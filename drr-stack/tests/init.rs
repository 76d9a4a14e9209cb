//! `drr init` in a fresh repository of another language (a shell script
//! stands in for a Django or Node test suite): one command sets drr up,
//! `--check` first changes nothing, and then the repository's own `cargo
//! xtask test` brings the stack up and runs the project's test command with
//! the stack's environment (DATABASE_URL, DRR_*, libpq's PG*), and git sees
//! only the files drr init wrote.
//!
//! The new `xtask` crate is built like `examples/adopt` (see
//! `xtask/tests/adopt.rs`): into `<target>/init`, with compiled
//! dependencies shared through cargo's `build.build-dir` and this
//! workspace's `Cargo.lock`, so only the small crate itself compiles once
//! `.ci/run` (or an earlier run) built the dependencies.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The project's tests: what a test suite in another language reads.
const CHECK_SH: &str = r#"# The project's test suite: it reads only the environment.
set -eu
primary=$(psql -XAtc 'SELECT pg_is_in_recovery()')
replica=$(psql "${DRR_REPLICA_URLS%%,*}" -XAtc 'SELECT pg_is_in_recovery()')
writer=$(psql "$DRR_WRITER_URL" -XAtc 'SELECT pg_is_in_recovery()')
user=$(psql "$DATABASE_URL" -XAtc 'SELECT current_user')
echo "$primary $replica $writer $user $PGPORT $*" > ran
"#;

/// The drr workspace, its target directory and the build directory the
/// new repository's build shares.
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("drr-stack lives in the workspace")
        .to_owned()
}

fn target_dirs() -> (PathBuf, PathBuf) {
    let (target, build) = drr_stack::testing::cargo_dirs(&workspace());
    (target.join("init"), build)
}

/// A primary port whose successor (replica1's) is free too.
fn two_free_ports() -> u16 {
    for _ in 0..100 {
        let port = drr_stack::testing::free_ports(1).expect("a free port")[0];
        if port < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
    panic!("no two consecutive free ports");
}

/// A command in `root` without the environment of the stack this test
/// runs under (`cargo xtask test` exported it) or of drr's own build.
fn command(root: &Path, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut command = Command::new(program);
    command.current_dir(root);
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("DRR_") || key.starts_with("PG") || key == "DATABASE_URL" {
            command.env_remove(&*key);
        }
    }
    let (target, build) = target_dirs();
    command.env("CARGO_TARGET_DIR", target);
    command.env("CARGO_BUILD_BUILD_DIR", build);
    command.env(
        "DRR_CACHE_DIR",
        drr_stack::testing::shared_cache().expect("the shared template cache"),
    );
    command
}

fn ok(what: &str, command: &mut Command) -> String {
    eprintln!("init: {what}");
    let output: Output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{what}`: {e}"));
    assert!(
        output.status.success(),
        "`{what}` failed ({}):\n--- stdout\n{}--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Destroys the new repository's stack however the test ends.
struct Destroy<'a>(&'a Path);

impl Drop for Destroy<'_> {
    fn drop(&mut self) {
        let xtask = target_dirs().0.join("debug").join("xtask");
        let _ = command(self.0, xtask).args(["destroy", "--yes"]).output();
    }
}

#[test]
fn one_command_sets_up_a_repository_of_another_language() {
    let dir = drr_stack::testing::scratch_dir("drr-init-").expect("a repository");
    let root = dir.path();
    std::fs::remove_file(root.join(drr_stack::host::dirs::MARKER)).expect("an unmarked repo");
    std::fs::write(root.join("check.sh"), CHECK_SH).unwrap();
    ok("git init", command(root, "git").args(["init", "-q"]));
    let port = two_free_ports().to_string();
    let drr = env!("CARGO_BIN_EXE_drr");
    let init = |check: bool| {
        let mut command = command(root, drr);
        command.arg("init");
        if check {
            command.arg("--check");
        }
        command
            .arg("--path")
            .arg(workspace())
            .args(["--port", &port]);
        command.args(["--", "sh", "check.sh"]);
        command
    };

    let plan = ok("drr init --check", &mut init(true));
    assert!(plan.contains("would create xtask/src/main.rs"), "{plan}");
    assert!(!root.join("xtask").exists(), "--check wrote files:\n{plan}");
    ok("drr init", &mut init(false));
    let again = ok("drr init again", &mut init(false));
    assert!(
        !again.contains("create") && !again.contains("append"),
        "{again}"
    );
    // This workspace's versions: the dependencies built for it are reused.
    std::fs::copy(
        workspace().join("Cargo.lock"),
        root.join("xtask/Cargo.lock"),
    )
    .unwrap();

    let _destroy = Destroy(root);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let started = std::time::Instant::now();
    let help = ok(
        "cargo xtask --help",
        command(root, &cargo).args(["xtask", "--help"]),
    );
    eprintln!("init: built the new xtask in {:?}", started.elapsed());
    assert!(help.contains("`xtask/src/main.rs` hands to"), "{help}");
    ok(
        "cargo xtask test -- extra",
        command(root, &cargo).args(["xtask", "test", "--", "extra"]),
    );
    let ran = std::fs::read_to_string(root.join("ran")).expect("the test command ran");
    assert_eq!(ran.trim(), format!("f t f drr_user {port} extra"));

    let status = ok(
        "git status",
        command(root, "git").args(["status", "--porcelain", "--untracked-files=all"]),
    );
    let mut listed: Vec<&str> = status
        .lines()
        .map(|l| l.trim_start_matches("?? "))
        .collect();
    listed.sort_unstable();
    assert_eq!(
        listed,
        [
            ".cargo/config.toml",
            ".gitignore",
            "check.sh",
            "ran",
            "xtask/Cargo.lock",
            "xtask/Cargo.toml",
            "xtask/src/main.rs",
        ],
        "git sees drr's passwords or state:\n{status}"
    );
}
