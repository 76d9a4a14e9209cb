//! drr-core's modules form layers: each imports only modules beneath it,
//! so there is no import circle and the façade (`router`, `session`) sits on
//! top of the parts it is made of. Needs no database.
//!
//! The order, bottom first, is [`LAYERS`]; a module's submodules (say
//! `route/read.rs`) belong to its layer and may import each other. `lib.rs`
//! only declares and re-exports, so it is outside the rule.

use std::path::{Path, PathBuf};

/// drr-core's top-level modules, bottom first: each may import only the
/// ones before it.
const LAYERS: &[&str] = &[
    // Values and pure functions: WAL positions, SQL classification, errors.
    "lsn",
    "token",
    "functions",
    "classify",
    "error",
    "wal",
    "config",
    "env",
    // One node's parts: balancing, role, health, counters, the node itself.
    "balance",
    "role",
    "lag",
    "health",
    "stats",
    "node",
    // The state every part of a router shares.
    "cluster",
    "recycle",
    "session_state",
    // Connections handed out, routing, the monitor.
    "client",
    "route",
    "monitor",
    // The façade.
    "session",
    "router",
    // Test helpers, built on the router.
    "testing",
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src").flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to: `route/read.rs` → `route`.
fn module_of(path: &Path) -> String {
    let relative = path.strip_prefix(src()).expect("under src");
    let first = relative
        .components()
        .next()
        .expect("a path")
        .as_os_str()
        .to_string_lossy()
        .into_owned();
    first.trim_end_matches(".rs").to_owned()
}

/// The top-level modules a source text names after `crate::`, outside
/// comments: `crate::node::Node` and `use crate::{node::Node, stats}` both
/// name `node` (and the second `stats`).
fn imported(source: &str) -> Vec<String> {
    let code: String = source
        .lines()
        .map(|line| match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut names = Vec::new();
    let mut rest = code.as_str();
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a::b, c}`: the first segment of each item.
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                names.push(first_segment(item.trim()));
            }
        } else {
            names.push(first_segment(rest));
        }
    }
    names.retain(|n| !n.is_empty());
    names
}

fn first_segment(path: &str) -> String {
    path.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

#[test]
fn every_module_is_in_the_layer_list() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let unknown: Vec<String> = files
        .iter()
        .map(|f| module_of(f))
        .filter(|m| m != "lib" && !LAYERS.contains(&m.as_str()))
        .collect();
    assert!(
        unknown.is_empty(),
        "add these modules to LAYERS in drr-core/tests/layers.rs, above everything they \
         import and below everything that imports them: {unknown:?}"
    );
}

#[test]
fn modules_import_only_modules_beneath_them() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    files.sort();
    let rank = |m: &str| LAYERS.iter().position(|l| *l == m);
    let mut offenders = Vec::new();
    for file in files {
        let module = module_of(&file);
        let Some(own) = rank(&module) else { continue };
        let text = std::fs::read_to_string(&file).expect("read a source file");
        for name in imported(&text) {
            if name == module {
                continue;
            }
            match rank(&name) {
                Some(theirs) if theirs < own => {}
                Some(_) => offenders.push(format!(
                    "{}: imports `{name}`, which is not beneath `{module}`",
                    file.display()
                )),
                // A name re-exported by lib.rs (`crate::Error`): import it
                // from its module instead, so the layer is visible.
                None => offenders.push(format!(
                    "{}: imports `crate::{name}` through lib.rs; name its module",
                    file.display()
                )),
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "drr-core's modules must import only modules beneath them (LAYERS in \
         drr-core/tests/layers.rs):\n{}",
        offenders.join("\n")
    );
}

#[test]
fn the_import_scanner_reads_grouped_and_plain_paths() {
    let text = "use crate::{node::Node, stats};\n// crate::router in a comment\n\
                let x = crate::lsn::Lsn::from(1);";
    assert_eq!(imported(text), ["node", "stats", "lsn"]);
}
