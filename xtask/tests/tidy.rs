//! Conventions the whole workspace keeps, checked like any other test:
//! module docs on every Rust file, no trailing whitespace, no ignored or
//! `should_panic` tests, no leftover `dbg!`, and the README's test command
//! in `.ci/run`.

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
