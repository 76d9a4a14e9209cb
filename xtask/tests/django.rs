//! The Django example (`examples/django`, set up with `drr init -- .venv/bin/python
//! manage.py test --noinput`): its own `cargo xtask test` brings its stack
//! up and runs Django's test runner against drr's real replica, where its
//! lag test passes with `wait_for_replicas` and fails without it
//! (`SHOP_WITHOUT_FIX=1`), as docs/adopting.md says. Its xtask builds into
//! `<target>/django` with dependencies shared, like `examples/adopt`'s.

mod requires_django {
    use std::path::PathBuf;
    use std::process::{Command, Output};

    use drr_stack::testing::DJANGO;

    /// The example, where its xtask goes, and the shared build directory.
    fn dirs() -> (PathBuf, PathBuf, PathBuf) {
        let main = xtask::workspace_root();
        let (target, build) = drr_stack::testing::cargo_dirs(&main);
        (main.join("examples/django"), target.join("django"), build)
    }

    /// `program` in the example without the stack environment this test
    /// runs under.
    fn command(program: impl AsRef<std::ffi::OsStr>) -> Command {
        let (root, target, build) = dirs();
        let mut command = Command::new(program);
        command.current_dir(root);
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if key.starts_with("DRR_") || key.starts_with("PG") || key == "DATABASE_URL" {
                command.env_remove(&*key);
            }
        }
        command.env("CARGO_TARGET_DIR", target);
        command.env("CARGO_BUILD_BUILD_DIR", build);
        command.env(
            "DRR_CACHE_DIR",
            drr_stack::testing::shared_cache().expect("the shared template cache"),
        );
        command
    }

    fn xtask(args: &[&str]) -> Command {
        let mut command = command(dirs().1.join("debug").join("xtask"));
        command.args(args);
        command
    }

    fn text(output: &Output) -> String {
        format!(
            "--- stdout\n{}--- stderr\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    }

    /// Destroys the example's stack however the test ends.
    struct Destroy;

    impl Drop for Destroy {
        fn drop(&mut self) {
            let _ = xtask(&["destroy", "--yes"]).output();
        }
    }

    #[test]
    fn the_django_example_s_lag_test_fails_without_the_fix_and_passes_with_it() {
        DJANGO.require(&xtask::workspace_root());
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let _destroy = Destroy;
        let fixed = command(cargo)
            .args(["xtask", "test"])
            .output()
            .expect("cargo runs");
        let said = text(&fixed);
        assert!(fixed.status.success(), "cargo xtask test failed:\n{said}");
        assert!(
            said.contains("Ran 2 tests") && said.contains("\nOK"),
            "{said}"
        );

        let unfixed = xtask(&["test"])
            .env("SHOP_WITHOUT_FIX", "1")
            .output()
            .expect("the example's xtask runs");
        let said = text(&unfixed);
        assert!(
            !unfixed.status.success(),
            "the stale read went unnoticed:\n{said}"
        );
        assert!(
            said.contains("FAIL: test_reading_after_wait_for_replicas_finds_the_row"),
            "{said}"
        );
        assert!(
            said.contains("FAILED (failures=1)"),
            "only the read misses:\n{said}"
        );
    }
}
