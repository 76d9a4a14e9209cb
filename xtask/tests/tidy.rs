//! Conventions the whole workspace keeps, checked like any other test:
//! module docs on every Rust file, no trailing whitespace, no ignored or
//! `should_panic` tests, no leftover `dbg!`, the README's test command in
//! `.ci/run`, no test that passes where it cannot run (they go in
//! `requires_*` modules, which `cargo xtask test` reports as skipped), no
//! test that changes the shared stack, and drr-stack's layering (backends
//! never import each other; commands reach them only through the stack).

use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    xtask::workspace_root()
}

/// Every tracked-looking source file: `.rs` files outside `target/`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if path.is_dir() {
            if !matches!(name.as_ref(), "target" | ".git" | ".drr" | "snapshots") {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

fn sources() -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    rust_files(&workspace(), &mut files);
    files.sort();
    files
        .into_iter()
        .map(|f| {
            let text = std::fs::read_to_string(&f).unwrap_or_default();
            (f, text)
        })
        .collect()
}

#[test]
fn every_rust_file_starts_with_module_docs() {
    let missing: Vec<String> = sources()
        .iter()
        .filter(|(_, text)| !text.trim_start().starts_with("//!"))
        .map(|(f, _)| f.display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "add a `//!` line saying what each file is for:\n{}",
        missing.join("\n")
    );
}

#[test]
fn no_trailing_whitespace() {
    let mut offenders = Vec::new();
    for (file, text) in sources() {
        for (i, line) in text.lines().enumerate() {
            if line.ends_with(' ') || line.ends_with('\t') {
                offenders.push(format!("{}:{}", file.display(), i + 1));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "trailing whitespace at:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn no_ignored_tests_or_leftover_debugging() {
    // Spelled in pieces so this file does not match itself.
    let banned = [
        ["#[ig", "nore"].concat(),
        ["#[should", "_panic"].concat(),
        ["dbg", "!("].concat(),
    ];
    let mut offenders = Vec::new();
    for (file, text) in sources() {
        for (i, line) in text.lines().enumerate() {
            if let Some(word) = banned.iter().find(|b| line.contains(b.as_str())) {
                offenders.push(format!("{}:{}: {word}", file.display(), i + 1));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "a test must either run and assert, or not exist; remove:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn ci_runs_the_readme_test_command() {
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    let ci = std::fs::read_to_string(workspace().join(".ci/run")).unwrap();
    assert!(
        readme.contains("cargo xtask test"),
        "the README names the test command"
    );
    assert!(
        ci.contains("\ncargo xtask test"),
        ".ci/run runs `cargo xtask test`"
    );
}

/// Test sources: `.rs` files under a `tests/` directory.
fn test_sources() -> Vec<(PathBuf, String)> {
    sources()
        .into_iter()
        .filter(|(path, _)| path.components().any(|c| c.as_os_str() == "tests"))
        .collect()
}

#[test]
fn no_test_skips_itself_by_returning_early() {
    // A test that cannot run here lives in a `requires_*` module and calls
    // `Requirement::require` (see the next test); it never prints "skipped"
    // and passes.
    let mut offenders = Vec::new();
    for (file, text) in test_sources() {
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let prints = line.contains("println!(") || line.contains("print!(");
            let says_skip = lines[i..(i + 3).min(lines.len())]
                .iter()
                .any(|l| l.to_lowercase().contains("skip"));
            let returns = lines[i + 1..(i + 6).min(lines.len())]
                .iter()
                .any(|l| l.trim_start().starts_with("return"));
            if prints && says_skip && returns {
                offenders.push(format!("{}:{}", file.display(), i + 1));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "a test that cannot run here must not pass: put it in a `requires_*` module \
         (drr_stack::testing::Requirement) so `cargo xtask test` reports it as skipped:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn every_requires_module_names_a_known_requirement_and_checks_it() {
    let known: Vec<&str> = drr_stack::testing::REQUIREMENTS
        .iter()
        .map(|r| r.module)
        .collect();
    let mut offenders = Vec::new();
    for (file, text) in test_sources() {
        for line in text.lines() {
            let Some(name) = line.trim_start().strip_prefix("mod requires_") else {
                continue;
            };
            let module = format!("requires_{}", name.trim_end_matches([' ', '{', ';']));
            if !known.contains(&module.as_str()) {
                offenders.push(format!(
                    "{}: `{module}` is not in drr_stack::testing::REQUIREMENTS ({})",
                    file.display(),
                    known.join(", ")
                ));
            } else if !text.contains(".require(") {
                offenders.push(format!(
                    "{}: `{module}` never calls `Requirement::require`, so its tests would \
                     pass where the requirement is missing",
                    file.display()
                ));
            }
        }
    }
    assert!(offenders.is_empty(), "{}", offenders.join("\n"));
}

#[test]
fn tests_change_only_stacks_of_their_own() {
    // ARCHITECTURE.md, "Tests": the shared stack that `cargo xtask test`
    // brings up is read, never changed; a test that pauses replay, changes
    // a delay or promotes a node starts a stack of its own. Spelled in
    // pieces so this file does not match itself.
    let changes = [
        ["pg_wal_replay", "_pause"].concat(),
        ["ALTER ", "SYSTEM"].concat(),
        ["set_", "paused("].concat(),
        ["DelayChange", "::Set"].concat(),
        ["DelayChange", "::Reset"].concat(),
        ["pg_", "promote"].concat(),
        ["run_", "partition("].concat(),
        ["--", "latency"].concat(),
    ];
    // The types that start a stack of a test's own.
    let own_stacks = ["TempStack", "ComposeStack", "PatroniCluster"];
    let mut offenders = Vec::new();
    for (file, text) in test_sources() {
        if own_stacks.iter().any(|s| text.contains(s)) {
            continue;
        }
        for (i, line) in text.lines().enumerate() {
            if let Some(change) = changes.iter().find(|c| line.contains(c.as_str())) {
                offenders.push(format!("{}:{}: {change}", file.display(), i + 1));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "these tests change a stack without starting one of their own \
         (drr_stack::testing::TempStack):\n{}",
        offenders.join("\n")
    );
}

/// The `.rs` files under `drr-stack/src/<entry>` (a file or a directory).
fn stack_sources(entry: &str) -> Vec<(PathBuf, String)> {
    let path = workspace().join("drr-stack/src").join(entry);
    sources()
        .into_iter()
        .filter(|(file, _)| file.starts_with(&path))
        .collect()
}

#[test]
fn backends_are_siblings_and_commands_see_only_the_stack() {
    // ARCHITECTURE.md: the backends share `host/` and `readiness.rs` and
    // never import each other; a command reaches a backend only through
    // `stack::Stack`.
    let rules: [(&[&str], &[&str]); 3] = [
        (&["native"], &["crate::compose"]),
        (&["compose"], &["crate::native"]),
        (
            &[
                "cli.rs",
                "lag.rs",
                "probe.rs",
                "probe",
                "status.rs",
                "env.rs",
                "psql.rs",
                "test_command",
            ],
            &["crate::native", "crate::compose"],
        ),
    ];
    let mut offenders = Vec::new();
    for (entries, banned) in rules {
        let files: Vec<(PathBuf, String)> = entries.iter().flat_map(|e| stack_sources(e)).collect();
        assert!(!files.is_empty(), "no files for {entries:?}");
        for (file, text) in files {
            for (i, line) in text.lines().enumerate() {
                if let Some(word) = banned.iter().find(|b| line.contains(*b)) {
                    offenders.push(format!("{}:{}: {word}", file.display(), i + 1));
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "a backend imports the other, or a command a backend (use crate::stack::Stack, \
         crate::host or crate::readiness):\n{}",
        offenders.join("\n")
    );
}
