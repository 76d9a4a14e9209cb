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

    /// The credentials drr's own commands use: the passwords generated into
    /// [`Project::secrets_dir`], or for an external cluster its admin role,
    /// read from the environment variables the spec names.
    pub fn secrets(&self) -> anyhow::Result<crate::secrets::Secrets> {
        let Some(external) = &self.spec.external else {
            return crate::secrets::Secrets::load_or_create(&self.secrets_dir());
        };
        let (superuser, superuser_password) = external
            .admin
            .resolve(&|var| std::env::var(var).ok(), "drr's admin role")?;
        Ok(crate::secrets::Secrets {
            superuser,
            superuser_password,
            replication_password: String::new(),
        })
    }

    /// Per-checkout secrets, outside git: `<root>/.drr`.
    pub fn secrets_dir(&self) -> PathBuf {
        self.root.join(".drr")
    }
}
