//! `cargo xtask gen`: writes every generated file through one function.
//!
//! [`render::compose_dir`] says what `compose/` must hold; [`sync`] compares
//! the directory with it and, unless checking, makes it so: changed and
//! missing files are written atomically (temporary file, then rename), files
//! no longer produced are removed, and so are emptied directories.
//!
//! **Architecture Invariant:** this is the only module that writes generated
//! files. `compose/` is owned by drr: any file in it that the renderer does
//! not produce is stale.

use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::project::Project;
use crate::render::{self, GeneratedFile};

/// The command that brings `compose/` back in line with the spec.
pub const FIX_COMMAND: &str = "cargo xtask gen";

/// Whether [`sync`] may change the directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Only report drift.
    Check,
    /// Write, rename and remove until the directory matches.
    Write,
}

/// A file of `compose/` that does not match the spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    /// Path relative to `compose/`, `/`-separated.
    pub path: String,
    /// How it differs.
    pub kind: DriftKind,
}

/// How a file differs from its rendering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriftKind {
    /// The spec produces the file but it does not exist.
    Missing,
    /// The file exists with other contents.
    Differs {
        /// First differing line, counted from 1.
        line: usize,
        /// That line as rendered, `None` past the end.
        expected: Option<String>,
        /// That line as found, `None` past the end.
        found: Option<String>,
    },
    /// The file exists but the spec does not produce it.
    Stale,
}

impl fmt::Display for Drift {
    /// One line: `compose/<path>: differs (line N: ...)`, `missing` or `stale`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "compose/{}: ", self.path)?;
        match &self.kind {
            DriftKind::Missing => f.write_str("missing"),
            DriftKind::Stale => f.write_str("stale, not in the spec"),
            DriftKind::Differs {
                line,
                expected,
                found,
            } => write!(
                f,
                "differs (line {line}: expected {}, found {})",
                excerpt(expected.as_deref()),
                excerpt(found.as_deref())
            ),
        }
    }
}

/// Writes `compose/` from the spec, or with `check` only reports drift and
/// returns a failing exit code when there is any.
pub fn run(project: &Project, check: bool) -> Result<ExitCode> {
    if !project.spec().compose {
        println!(
            "the stack spec declares no compose output (`.without_compose()`): nothing to generate"
        );
        return Ok(ExitCode::SUCCESS);
    }
    if check {
        return Ok(match self::check(project) {
            Ok(()) => {
                println!("compose/ is up to date with the stack spec");
                ExitCode::SUCCESS
            }
            Err(report) => {
                eprintln!("{report}");
                ExitCode::FAILURE
            }
        });
    }
    let files = render::compose_dir(project.spec());
    let changes = sync(&project.compose_dir(), &files, Mode::Write)?;
    if changes.is_empty() {
        println!("compose/ is up to date with the stack spec");
    }
    for change in &changes {
        let action = match change.kind {
            DriftKind::Missing => "created",
            DriftKind::Differs { .. } => "updated",
            DriftKind::Stale => "removed",
        };
        println!("{action} compose/{}", change.path);
    }
    Ok(ExitCode::SUCCESS)
}

/// Checks `compose/` without changing it. `Err` is the report `gen --check`
/// prints: one line per drifted, missing or stale file and the command that
/// fixes them; reading errors are reported the same way.
///
/// Commands that use `compose/` (and a `#[test]` of the workspace) call this
/// so that drift is caught before it misleads anyone. A spec that declares
/// no compose output ([`crate::spec::StackSpec::without_compose`]) passes
/// without a look at the directory.
pub fn check(project: &Project) -> Result<(), CheckError> {
    if !project.spec().compose {
        // No compose output: `compose/`, if any, is not drr's.
        return Ok(());
    }
    let files = render::compose_dir(project.spec());
    let drifts = sync(&project.compose_dir(), &files, Mode::Check)
        .map_err(|e| CheckError(format!("cannot check compose/: {e:#}")))?;
    if drifts.is_empty() {
        return Ok(());
    }
    let mut report = String::from("compose/ does not match the stack spec:");
    for drift in &drifts {
        report.push_str(&format!("\n  {drift}"));
    }
    report.push_str(&format!("\nrun `{FIX_COMMAND}` to update it"));
    Err(CheckError(report))
}

/// Why `compose/` failed [`check`]: `Display` is the full report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CheckError(String);

/// Compares `dir` with `files` and, in [`Mode::Write`], makes it match.
/// Returns every difference found (in `Write` mode: every change made),
/// rendered files first in path order, then stale files in path order.
pub fn sync(dir: &Path, files: &[GeneratedFile], mode: Mode) -> Result<Vec<Drift>> {
    let mut drifts = Vec::new();
    for file in files {
        let path = dir.join(&file.path);
        let kind = match fs::read(&path) {
            Ok(found) if found == file.contents.as_bytes() => continue,
            Ok(found) => first_difference(&file.contents, &String::from_utf8_lossy(&found)),
            Err(e) if e.kind() == ErrorKind::NotFound => DriftKind::Missing,
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        if mode == Mode::Write {
            write_atomically(&path, &file.contents)?;
        }
        drifts.push(Drift {
            path: file.path.clone(),
            kind,
        });
    }
    let wanted: BTreeSet<&str> = files.iter().map(|f| f.path.as_str()).collect();
    let mut present = Vec::new();
    list_files(dir, "", &mut present)?;
    for path in present {
        if wanted.contains(path.as_str()) {
            continue;
        }
        if mode == Mode::Write {
            let full = dir.join(&path);
            fs::remove_file(&full).with_context(|| format!("cannot remove {}", full.display()))?;
        }
        drifts.push(Drift {
            path,
            kind: DriftKind::Stale,
        });
    }
    if mode == Mode::Write {
        remove_empty_dirs(dir)?;
    }
    Ok(drifts)
}

/// Where two renderings first differ, line by line.
fn first_difference(expected: &str, found: &str) -> DriftKind {
    let mut expected_lines = expected.split('\n');
    let mut found_lines = found.split('\n');
    let mut line = 1;
    loop {
        let (e, f) = (expected_lines.next(), found_lines.next());
        if e != f || (e.is_none() && f.is_none()) {
            return DriftKind::Differs {
                line,
                expected: e.map(str::to_owned),
                found: f.map(str::to_owned),
            };
        }
        line += 1;
    }
}

/// A line quoted and shortened for a one-line summary.
fn excerpt(line: Option<&str>) -> String {
    const MAX: usize = 60;
    let Some(line) = line else {
        return "end of file".to_owned();
    };
    if line.chars().count() <= MAX {
        return format!("{line:?}");
    }
    let short: String = line.chars().take(MAX).collect();
    format!("{short:?}...")
}

/// Writes `contents` to a temporary file next to `path`, then renames it
/// over `path`, so readers see the old file or the new one, never a part.
pub(crate) fn write_atomically(path: &Path, contents: &str) -> Result<()> {
    let parent = path.parent().context("a generated file has no parent")?;
    fs::create_dir_all(parent)
        .with_context(|| format!("cannot create the directory {}", parent.display()))?;
    let name = path.file_name().context("a generated file has no name")?;
    let tmp = parent.join(format!(".{}.drr-tmp", name.to_string_lossy()));
    fs::write(&tmp, contents).with_context(|| format!("cannot write {}", tmp.display()))?;
    // Containers read the files as another user: readable whatever the umask.
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644))
        .with_context(|| format!("cannot set the permissions of {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))
}

/// Every non-directory entry under `dir`, as `/`-separated paths relative to
/// the top directory, in sorted order. A missing `dir` has no files.
fn list_files(dir: &Path, prefix: &str, out: &mut Vec<String>) -> Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
    };
    let mut entries = entries
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("cannot list {}", dir.display()))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let path = format!("{prefix}{}", name.to_string_lossy());
        let kind = entry
            .file_type()
            .with_context(|| format!("cannot stat {}", entry.path().display()))?;
        if kind.is_dir() {
            list_files(&entry.path(), &format!("{path}/"), out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// Removes every empty directory below `dir` (not `dir` itself).
fn remove_empty_dirs(dir: &Path) -> Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_empty_dirs(&path)?;
            let is_empty = fs::read_dir(&path)
                .with_context(|| format!("cannot list {}", path.display()))?
                .next()
                .is_none();
            if is_empty {
                fs::remove_dir(&path)
                    .with_context(|| format!("cannot remove {}", path.display()))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_difference_names_the_line() {
        let kind = first_difference("a\nb\nc\n", "a\nB\nc\n");
        assert_eq!(
            kind,
            DriftKind::Differs {
                line: 2,
                expected: Some("b".to_owned()),
                found: Some("B".to_owned()),
            }
        );
        let drift = Drift {
            path: "replica1/postgresql.conf".to_owned(),
            kind,
        };
        assert_eq!(
            drift.to_string(),
            r#"compose/replica1/postgresql.conf: differs (line 2: expected "b", found "B")"#
        );
    }

    #[test]
    fn a_missing_trailing_newline_is_a_difference_past_the_end() {
        let drift = Drift {
            path: "x".to_owned(),
            kind: first_difference("a\n", "a"),
        };
        assert_eq!(
            drift.to_string(),
            r#"compose/x: differs (line 2: expected "", found end of file)"#
        );
    }

    #[test]
    fn long_lines_are_shortened() {
        let long = "x".repeat(100);
        assert_eq!(excerpt(Some(&long)), format!("{:?}...", "x".repeat(60)));
    }
}
