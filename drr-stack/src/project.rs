//! A validated spec together with the workspace it belongs to: where the
//! generated files, the secrets and the stack state live.

use std::path::{Path, PathBuf};

use crate::spec::{SpecError, StackSpec};

/// A validated spec and its workspace root.
#[derive(Debug, Clone)]
pub struct Project {
    spec: StackSpec,
    root: PathBuf,
}

impl Project {
    /// Validates `spec`; `root` is the workspace that holds `compose/`.
    pub fn new(spec: StackSpec, root: impl Into<PathBuf>) -> Result<Self, SpecError> {
        spec.validate()?;
        Ok(Project {
            spec,
            root: root.into(),
        })
    }

    /// The stack spec.
    pub fn spec(&self) -> &StackSpec {
        &self.spec
    }

    /// The workspace root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where `cargo xtask gen` writes: `<root>/compose`.
    pub fn compose_dir(&self) -> PathBuf {
        self.root.join("compose")
    }

    /// Per-checkout secrets, outside git: `<root>/.drr`.
    pub fn secrets_dir(&self) -> PathBuf {
        self.root.join(".drr")
    }
}
