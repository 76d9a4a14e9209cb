//! The application's schema for test databases: SQL texts, SQL files, or a
//! closure that migrates a database given its URL. Applied once per set of
//! migrations, to a template every test database is copied from.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use crate::testing::error::Error;
use crate::testing::sql::StableHash;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type BoxFuture = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;
type Apply = Arc<dyn Fn(String) -> BoxFuture + Send + Sync>;

#[derive(Clone)]
enum Step {
    Sql { name: String, text: String },
    Closure { key: String, apply: Apply },
}

/// The migrations every test database starts with, applied in order.
///
/// The template database is named after a hash of the steps (their names,
/// SQL texts and closure keys), so changing a migration builds a new
/// template, and processes running the same migrations share one.
///
/// ```
/// use drr_core::testing::Migrations;
///
/// let migrations = Migrations::new()
///     .sql("0001_notes", "CREATE TABLE notes (id bigserial PRIMARY KEY, body text)")
///     .with("seed v1", |url| async move {
///         // e.g. run your migration tool against `url`
///         let _ = url;
///         Ok::<(), std::io::Error>(())
///     });
/// ```
#[derive(Clone, Default)]
pub struct Migrations {
    steps: Vec<Step>,
}

impl Migrations {
    /// No migrations: test databases start empty.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds SQL text (several statements allowed), e.g. from
    /// `include_str!`.
    pub fn sql(mut self, name: &str, text: &str) -> Self {
        self.steps.push(Step::Sql {
            name: name.to_owned(),
            text: text.to_owned(),
        });
        self
    }

    /// Adds the `.sql` files of a directory, in file-name order (the usual
    /// `0001_init.sql`, `0002_...` layout).
    pub fn dir(mut self, dir: impl AsRef<Path>) -> Result<Self, Error> {
        let dir = dir.as_ref();
        let read_err = |detail: std::io::Error| Error::Migration {
            name: dir.display().to_string(),
            detail: format!("cannot read the directory: {detail}"),
        };
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(read_err)? {
            let path = entry.map_err(read_err)?.path();
            if path.extension().is_some_and(|e| e == "sql") {
                files.push(path);
            }
        }
        files.sort();
        for path in files {
            self = self.file(path)?;
        }
        Ok(self)
    }

    /// Adds one SQL file.
    pub fn file(self, path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let text = std::fs::read_to_string(path).map_err(|e| Error::Migration {
            name: path.display().to_string(),
            detail: format!("cannot read the file: {e}"),
        })?;
        Ok(self.sql(&name, &text))
    }

    /// Adds a closure that migrates the database at the URL it is given,
    /// e.g. by running a migration tool. `key` names this version of the
    /// closure: change it when what the closure does changes, since the
    /// template is reused for as long as the key stays the same.
    ///
    /// The closure must close its connections before it returns: a template
    /// cannot be copied while someone is connected to it.
    pub fn with<F, Fut, E>(mut self, key: &str, apply: F) -> Self
    where
        F: Fn(String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<BoxError>,
    {
        let apply: Apply = Arc::new(move |url| {
            let fut = apply(url);
            Box::pin(async move { fut.await.map_err(Into::into) })
        });
        self.steps.push(Step::Closure {
            key: key.to_owned(),
            apply,
        });
        self
    }

    /// The hash that names the template.
    pub(crate) fn hash(&self) -> u64 {
        let mut hash = StableHash::new();
        for step in &self.steps {
            match step {
                Step::Sql { name, text } => {
                    hash.write(b"sql");
                    hash.write(name.as_bytes());
                    hash.write(text.as_bytes());
                }
                Step::Closure { key, .. } => {
                    hash.write(b"closure");
                    hash.write(key.as_bytes());
                }
            }
        }
        hash.finish()
    }

    /// Applies every step to the database at `url`.
    pub(crate) async fn apply(&self, url: &str) -> Result<(), Error> {
        let sql_steps = self.steps.iter().any(|s| matches!(s, Step::Sql { .. }));
        let client = if sql_steps {
            Some(super::stack::connect(url, "primary").await?)
        } else {
            None
        };
        for step in &self.steps {
            match step {
                Step::Sql { name, text } => {
                    if let Some(client) = &client {
                        client
                            .batch_execute(text)
                            .await
                            .map_err(|e| Error::Migration {
                                name: name.clone(),
                                detail: crate::error::describe(&e),
                            })?;
                    }
                }
                Step::Closure { key, apply } => {
                    apply(url.to_owned()).await.map_err(|e| Error::Migration {
                        name: key.clone(),
                        detail: e.to_string(),
                    })?;
                }
            }
        }
        Ok(())
    }
}

impl std::fmt::Debug for Migrations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self
            .steps
            .iter()
            .map(|s| match s {
                Step::Sql { name, .. } => name.as_str(),
                Step::Closure { key, .. } => key.as_str(),
            })
            .collect();
        f.debug_struct("Migrations").field("steps", &names).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_follows_the_steps() {
        let a = Migrations::new().sql("1", "CREATE TABLE a ()");
        let b = Migrations::new().sql("1", "CREATE TABLE b ()");
        assert_eq!(a.hash(), a.clone().hash());
        assert_ne!(a.hash(), b.hash());
        let c = a
            .clone()
            .with("k1", |_| async { Ok::<(), std::io::Error>(()) });
        let d = a
            .clone()
            .with("k2", |_| async { Ok::<(), std::io::Error>(()) });
        assert_ne!(c.hash(), d.hash());
        assert_ne!(a.hash(), c.hash());
    }

    #[test]
    fn missing_directory_names_it() {
        let err = Migrations::new()
            .dir("/nonexistent/drr/migrations")
            .unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/drr/migrations"),
            "{err}"
        );
    }
}
