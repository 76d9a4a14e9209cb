//! This repository's `cargo xtask`: its own stack spec on top of drr-stack.

use std::path::PathBuf;

pub mod spec;

pub use spec::spec;

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(PathBuf::from)
        .unwrap_or(manifest_dir)
}
