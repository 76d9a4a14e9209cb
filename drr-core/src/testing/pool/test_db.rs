//! The handle a test holds: its database's name and URLs, connections to
//! the primary and every replica, a router on demand, and the drop of the
//! database when the handle goes.

use std::time::Duration;

use tokio::sync::OnceCell;
use tokio_postgres::Client;

use crate::config::RouterConfig;
use crate::router::Router;
use crate::testing::error::Error;
use crate::testing::stack::connect;
use crate::testing::wait;

use super::coordination::drop_database_if_exists;

/// A database of its own for one test, on the primary and every replica,
/// with the migrations applied. Dropped (`DROP DATABASE ... WITH (FORCE)`)
/// when this value is, or by [`release`](TestDb::release).
pub struct TestDb {
    pub(super) name: String,
    pub(super) login_url: String,
    pub(super) primary_url: String,
    pub(super) setup: Duration,
    pub(super) conns: Option<Conns>,
}

pub(super) struct Conns {
    pub(super) router: OnceCell<Router>,
    /// Its backend marks the claim as live: a sweep drops the database
    /// once it is gone.
    pub(super) primary: Client,
    pub(super) replicas: Vec<ReplicaConn>,
}

pub(super) struct ReplicaConn {
    pub(super) name: String,
    pub(super) url: String,
    pub(super) client: Client,
}

impl TestDb {
    fn conns(&self) -> &Conns {
        // Only `release` and `drop` take them, and both consume the value.
        self.conns
            .as_ref()
            .expect("a TestDb's connections live as long as it does")
    }

    /// The database's name (`drr_t_...`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The primary's URL for this database.
    pub fn primary_url(&self) -> &str {
        &self.primary_url
    }

    /// The replicas' URLs for this database, in the stack's order.
    pub fn replica_urls(&self) -> Vec<&str> {
        self.conns()
            .replicas
            .iter()
            .map(|r| r.url.as_str())
            .collect()
    }

    /// How long the claim took, from the call to a usable database.
    pub fn setup_time(&self) -> Duration {
        self.setup
    }

    /// A client to this database on the primary.
    pub fn primary(&self) -> &Client {
        &self.conns().primary
    }

    /// A client to this database on the first replica.
    pub fn replica(&self) -> &Client {
        // `TestStack::from_env` requires at least one replica, and a stack
        // built in code without one has nothing to test here.
        &self
            .conns()
            .replicas
            .first()
            .expect("the test stack has at least one replica")
            .client
    }

    /// A client to this database on the replica named `name`.
    pub fn replica_named(&self, name: &str) -> Option<&Client> {
        self.conns()
            .replicas
            .iter()
            .find(|r| r.name == name)
            .map(|r| &r.client)
    }

    /// The replicas' names and clients, in the stack's order.
    pub fn replicas(&self) -> impl Iterator<Item = (&str, &Client)> {
        self.conns()
            .replicas
            .iter()
            .map(|r| (r.name.as_str(), &r.client))
    }

    /// A router configuration for this database (fast monitor, small pools).
    pub fn router_config(&self) -> Result<RouterConfig, Error> {
        let mut config = RouterConfig::new(&self.primary_url)?;
        for replica in &self.conns().replicas {
            config = config.named_replica(&replica.name, &replica.url)?;
        }
        Ok(config
            .check_interval(Duration::from_millis(100))
            .pool_size(4))
    }

    /// A [`Router`] for this database, built on first use with
    /// [`router_config`](TestDb::router_config).
    pub async fn router(&self) -> Result<&Router, Error> {
        self.conns()
            .router
            .get_or_try_init(|| async { Ok(Router::connect(self.router_config()?).await?) })
            .await
    }

    /// Waits until every replica has replayed everything committed on the
    /// primary so far; returns how long it waited. See
    /// [`wait_for_replicas`](crate::testing::wait_for_replicas).
    pub async fn wait_for_replicas(&self, timeout: Duration) -> Result<Duration, Error> {
        let refs: Vec<(&str, &Client)> = self.replicas().collect();
        wait::wait_for_replicas(self.primary(), &refs, timeout).await
    }

    /// Waits until the replica named `name` has replayed everything
    /// committed on the primary so far.
    pub async fn wait_for_replica(&self, name: &str, timeout: Duration) -> Result<Duration, Error> {
        let client = self
            .replica_named(name)
            .ok_or_else(|| Error::Config(format!("the stack has no replica named {name:?}")))?;
        wait::wait_for_replicas(self.primary(), &[(name, client)], timeout).await
    }

    /// Drops the database now, reporting failures (dropping the value does
    /// the same, best effort).
    pub async fn release(mut self) -> Result<(), Error> {
        drop(self.conns.take());
        drop_database(&self.login_url, &self.name).await
    }
}

impl std::fmt::Debug for TestDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestDb")
            .field("name", &self.name)
            .field("setup", &self.setup)
            .finish_non_exhaustive()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(conns) = self.conns.take() else {
            return;
        };
        drop(conns);
        // Drop cannot await, and the test's runtime may be shutting down: drop
        // the database from a thread with a runtime of its own, and wait for
        // it so that a test process does not exit first. If this fails, the
        // claim's backend is gone and a later sweep drops the database.
        let url = self.login_url.clone();
        let name = self.name.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(runtime) = runtime
                && let Err(err) = runtime.block_on(drop_database(&url, &name))
            {
                tracing::warn!(database = %name, "cannot drop test database: {err}");
            }
        });
        let _ = thread.join();
    }
}

/// Drops one pool database and its row.
pub(super) async fn drop_database(login_url: &str, name: &str) -> Result<(), Error> {
    let conn = connect(login_url, "primary").await?;
    let dropped = drop_database_if_exists(&conn, name).await;
    match dropped {
        Ok(()) => conn
            .execute("DELETE FROM drr_testing.pool WHERE name = $1", &[&name])
            .await
            .map(drop)
            .map_err(Error::postgres("primary", "unregistering a test database")),
        Err(err) => {
            // Leave it to a sweep.
            let _ = conn
                .execute(
                    "UPDATE drr_testing.pool SET state = 'done' WHERE name = $1",
                    &[&name],
                )
                .await;
            Err(Error::postgres("primary", "dropping a test database")(err))
        }
    }
}
