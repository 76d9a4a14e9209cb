//! The roles and databases of the spec, applied to a primary with `psql`
//! and the rendered idempotent bootstrap SQL.

use std::path::Path;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use crate::command::Command;
use crate::host::Binaries;
use crate::render::postgres;
use crate::secrets::Secrets;
use crate::spec::StackSpec;

/// The bootstrap SQL of a spec and a digest of it and the secrets it sets:
/// when the digest matches what a primary last ran, there is nothing to do.
#[derive(Debug, Clone)]
pub struct Bootstrap {
    sql: String,
    /// Hex SHA-256 of the SQL and the generated passwords.
    pub digest: String,
}

impl Bootstrap {
    /// Renders the SQL for `spec`.
    pub fn new(spec: &StackSpec, secrets: &Secrets) -> Self {
        let sql = postgres::bootstrap_sql(spec);
        let mut hasher = Sha256::new();
        hasher.update(sql.as_bytes());
        hasher.update(secrets.superuser_password.as_bytes());
        hasher.update(secrets.replication_password.as_bytes());
        let digest = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Bootstrap { sql, digest }
    }

    /// Runs the SQL as the superuser on `host:port`, keeping the file in `dir`.
    pub fn run(
        &self,
        bins: &Binaries,
        secrets: &Secrets,
        host: &str,
        port: u16,
        dir: &Path,
    ) -> Result<()> {
        let file = dir.join("bootstrap.sql");
        std::fs::write(&file, &self.sql)
            .with_context(|| format!("cannot write {}", file.display()))?;
        let mut psql = Command::new(bins.path("psql"))
            .args([
                "-X",
                "-q",
                "-h",
                host,
                "-p",
                &port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-f",
            ])
            .args([file.as_os_str()])
            .env("PGPASSWORD", &secrets.superuser_password)
            .env("PGCONNECT_TIMEOUT", "10");
        for (key, value) in secrets.env() {
            psql = psql.env(key, value);
        }
        psql.read().map(drop)
    }
}
