//! `drr init`: adds drr to an existing repository of any language: an
//! `xtask/` crate whose spec holds drr's defaults, the `cargo xtask` alias
//! in `.cargo/config.toml`, and `.gitignore` entries for drr's passwords
//! and state.
//!
//! It plans first and writes only when the whole plan holds: it creates
//! missing files and appends missing lines, never overwrites or edits what
//! is there, and refuses (writing nothing) when something in the way is
//! not drr's. `--check` prints the plan and changes nothing.

mod templates;

use std::fs;
use std::io::{ErrorKind, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

pub use templates::{Choices, Source};

/// One step of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write a new file.
    Create {
        /// Path from the repository root.
        path: String,
        /// Its contents.
        contents: String,
    },
    /// Append to an existing file (or create it).
    Append {
        /// Path from the repository root.
        path: String,
        /// The text appended.
        text: String,
    },
    /// Leave a file as it is: it already does its part.
    Keep {
        /// Path from the repository root.
        path: String,
        /// Why nothing changes.
        why: &'static str,
    },
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::Create { path, .. } => write!(f, "create {path}"),
            Action::Append { path, text } => {
                let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
                write!(f, "append to {path}: {}", lines.join(" "))
            }
            Action::Keep { path, why } => write!(f, "keep {path}: {why}"),
        }
    }
}

/// What to set up where.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// The repository's root.
    pub root: PathBuf,
    /// The spec's and the dependency's choices.
    pub choices: Choices,
}

/// The plan for `options`, from what the repository holds; `Err` names
/// what is in the way (nothing is written then).
pub fn plan(options: &InitOptions) -> Result<Vec<Action>> {
    let root = &options.root;
    let choices = &options.choices;
    anyhow::ensure!(
        root.is_dir(),
        "{} is not a directory; run `drr init` in the repository to set up, or pass `--dir`",
        root.display()
    );
    anyhow::ensure!(
        choices.port < u16::MAX,
        "--port {} leaves no port for replica1 (the next one); choose a lower port",
        choices.port
    );
    anyhow::ensure!(
        !choices.test_command.is_empty() || root.join("Cargo.toml").is_file(),
        "{} has no Cargo.toml, so `cargo xtask test` has no Rust tests to run; name the \
         project's test command after `--`, e.g. `drr init -- python manage.py test`",
        root.display()
    );
    let mut actions = Vec::new();
    actions.extend(xtask_crate(root, choices)?);
    actions.push(alias(root)?);
    actions.push(ignore(root)?);
    Ok(actions)
}

/// `xtask/Cargo.toml` and `xtask/src/main.rs`, unless an xtask that
/// depends on drr-stack is there.
fn xtask_crate(root: &Path, choices: &Choices) -> Result<Vec<Action>> {
    let manifest = root.join("xtask/Cargo.toml");
    match read(&manifest)? {
        Some(text) if text.contains("drr-stack") => Ok(vec![Action::Keep {
            path: "xtask/".into(),
            why: "its Cargo.toml already depends on drr-stack",
        }]),
        Some(_) => anyhow::bail!(
            "{} exists and does not depend on drr-stack; drr init never overwrites it: add \
             `drr-stack` to its dependencies and hand your spec to `drr_stack::cli::main` \
             (see docs/adopting.md)",
            manifest.display()
        ),
        None if root.join("xtask").exists() => anyhow::bail!(
            "{} exists without a Cargo.toml; drr init never writes into it: move it away, or \
             set up the xtask crate by hand (see docs/adopting.md)",
            root.join("xtask").display()
        ),
        None => Ok(vec![
            Action::Create {
                path: "xtask/Cargo.toml".into(),
                contents: templates::cargo_toml(choices),
            },
            Action::Create {
                path: "xtask/src/main.rs".into(),
                contents: templates::main_rs(choices),
            },
        ]),
    }
}

/// The `cargo xtask` alias in `.cargo/config.toml`.
fn alias(root: &Path) -> Result<Action> {
    let path = ".cargo/config.toml".to_owned();
    let Some(text) = read(&root.join(&path))? else {
        return Ok(Action::Create {
            path,
            contents: templates::cargo_config(),
        });
    };
    let has_alias = text.lines().any(|l| {
        let l = l.trim_start();
        l.starts_with("xtask ") || l.starts_with("xtask=") || l.starts_with("alias.xtask")
    });
    if has_alias {
        return Ok(Action::Keep {
            path,
            why: "it already has an `xtask` alias",
        });
    }
    anyhow::ensure!(
        !text.lines().any(|l| l.trim() == "[alias]"),
        "{} has an [alias] table without `xtask`; drr init does not edit it: add the line \
         `{}` under [alias]",
        root.join(&path).display(),
        templates::ALIAS
    );
    Ok(Action::Append {
        path,
        text: format!("\n{}", templates::cargo_config()),
    })
}

/// The `.gitignore` entries drr needs, appended when missing.
fn ignore(root: &Path) -> Result<Action> {
    let path = ".gitignore".to_owned();
    let existing = read(&root.join(&path))?;
    let text = existing.clone().unwrap_or_default();
    let entry = |line: &str| {
        line.trim()
            .trim_start_matches('/')
            .trim_end_matches('/')
            .to_owned()
    };
    let present: Vec<String> = text.lines().map(entry).collect();
    let missing: Vec<&str> = templates::IGNORED
        .into_iter()
        .filter(|wanted| !present.contains(&entry(wanted)))
        .collect();
    if missing.is_empty() {
        return Ok(Action::Keep {
            path,
            why: "it already ignores drr's passwords, state and build",
        });
    }
    let mut block = String::new();
    if !text.is_empty() && !text.ends_with('\n') {
        block.push('\n');
    }
    block.push_str("# drr: generated passwords, stack state, the xtask build\n");
    for line in missing {
        block.push_str(line);
        block.push('\n');
    }
    Ok(match existing {
        Some(_) => Action::Append { path, text: block },
        None => Action::Create {
            path,
            contents: block,
        },
    })
}

/// A file's text, `None` when it does not exist.
fn read(path: &Path) -> Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Carries out `actions` in `root`.
pub fn apply(root: &Path, actions: &[Action]) -> Result<()> {
    for action in actions {
        match action {
            Action::Create { path, contents } => {
                let full = root.join(path);
                if let Some(dir) = full.parent() {
                    fs::create_dir_all(dir)
                        .with_context(|| format!("cannot create {}", dir.display()))?;
                }
                let mut file = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&full)
                    .with_context(|| format!("cannot create {}", full.display()))?;
                file.write_all(contents.as_bytes())
                    .with_context(|| format!("cannot write {}", full.display()))?;
            }
            Action::Append { path, text } => {
                let full = root.join(path);
                if let Some(dir) = full.parent() {
                    fs::create_dir_all(dir)
                        .with_context(|| format!("cannot create {}", dir.display()))?;
                }
                fs::OpenOptions::new()
                    .append(true)
                    .create(true)
                    .open(&full)
                    .and_then(|mut f| f.write_all(text.as_bytes()))
                    .with_context(|| format!("cannot append to {}", full.display()))?;
            }
            Action::Keep { .. } => {}
        }
    }
    Ok(())
}

/// `drr init [--check]`: prints the plan, and without `check` carries it
/// out and says what comes next.
pub fn run(options: &InitOptions, check: bool) -> Result<()> {
    let actions = plan(options)?;
    for action in &actions {
        if check {
            println!("would {action}");
        } else {
            println!("{action}");
        }
    }
    if check {
        println!("nothing changed (--check)");
        return Ok(());
    }
    apply(&options.root, &actions)?;
    println!(
        "drr is set up: `cargo xtask up` starts the stack (primary on {}, replica1 on {}), \
         `cargo xtask test` runs the tests against it",
        options.choices.port,
        u32::from(options.choices.port) + 1
    );
    Ok(())
}

/// A stack name from a directory name: lowercase letters, digits, `-` and
/// `_`, starting with a letter; `drr` when nothing is left.
pub fn stack_name(dir: &Path) -> String {
    let raw = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let name: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .skip_while(|c| !c.is_ascii_lowercase())
        .take(40)
        .collect();
    if name.is_empty() {
        "drr".to_owned()
    } else {
        name
    }
}

#[cfg(test)]
mod tests;
