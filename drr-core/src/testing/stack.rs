//! Finding the stack a test runs against: the variables `cargo xtask test`
//! exports, and connection URLs for a test's own database.

use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls};

use crate::config::RouterConfig;
use drr_env::Var;

use crate::env::{PRIMARY_URL, REPLICA_NAMES, REPLICA_URLS};
use crate::testing::error::Error;
use crate::testing::wait;

/// The replicas' delays in milliseconds, comma-separated, in the same order
/// ([`Var::ReplicaDelaysMs`]).
pub const REPLICA_DELAYS_MS: &str = Var::ReplicaDelaysMs.name();
/// The superuser URL of the primary ([`Var::AdminPrimaryUrl`]).
pub const ADMIN_PRIMARY_URL: &str = Var::AdminPrimaryUrl.name();
/// The superuser URLs of the replicas, comma-separated, in the same order
/// ([`Var::AdminReplicaUrls`]).
pub const ADMIN_REPLICA_URLS: &str = Var::AdminReplicaUrls.name();

/// One replica of the stack.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ReplicaNode {
    /// Its name (`replica1`, ...), used in errors.
    pub name: String,
    /// The login role's URL.
    pub url: String,
    /// Its configured replication delay, if known.
    pub delay: Option<Duration>,
    /// The superuser's URL, if known (for `pg_wal_replay_pause()`).
    pub admin_url: Option<String>,
}

/// The stack a test runs against: a primary and its replicas, as URLs of
/// the login role's database.
#[derive(Debug, Clone)]
pub struct TestStack {
    primary_url: String,
    admin_primary_url: Option<String>,
    replicas: Vec<ReplicaNode>,
}

impl TestStack {
    /// The stack from the variables `cargo xtask test` exports
    /// (`DRR_PRIMARY_URL`, `DRR_REPLICA_URLS`, and when set
    /// `DRR_REPLICA_NAMES`, `DRR_REPLICA_DELAYS_MS`, `DRR_ADMIN_*`).
    ///
    /// Fails with [`Error::NoStack`], whose message says to run the tests
    /// with `cargo xtask test`, when the primary or the replicas are missing:
    /// a test that needs replicas must never pass without them.
    pub fn from_env() -> Result<Self, Error> {
        Self::from_lookup(|key| std::env::var(key).ok())
    }

    /// The stack from `vars`, name and value pairs of the variables
    /// [`from_env`](TestStack::from_env) reads: for a stack a test started
    /// itself (drr-stack's `TempStack::vars`).
    pub fn from_vars<K, V>(vars: impl IntoIterator<Item = (K, V)>) -> Result<Self, Error>
    where
        K: AsRef<str>,
        V: Into<String>,
    {
        let vars: Vec<(String, String)> = vars
            .into_iter()
            .map(|(k, v)| (k.as_ref().to_owned(), v.into()))
            .collect();
        Self::from_lookup(|key| vars.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()))
    }

    /// [`from_env`](TestStack::from_env), panicking with its message: for
    /// tests that do not return a `Result`.
    #[track_caller]
    pub fn require() -> Self {
        match Self::from_env() {
            Ok(stack) => stack,
            Err(err) => panic!("{err}"),
        }
    }

    fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let var = |name: &'static str| {
            lookup(name)
                .filter(|v| !v.trim().is_empty())
                .ok_or(Error::NoStack { var: name })
        };
        let list = |value: Option<String>| -> Vec<String> {
            drr_env::split(&value.unwrap_or_default())
                .map(str::to_owned)
                .collect()
        };
        let primary_url = var(PRIMARY_URL)?;
        let urls = list(Some(var(REPLICA_URLS)?));
        let names = list(lookup(REPLICA_NAMES));
        let delays = list(lookup(REPLICA_DELAYS_MS));
        let admins = list(lookup(ADMIN_REPLICA_URLS));
        for (var, len) in [
            (REPLICA_NAMES, names.len()),
            (REPLICA_DELAYS_MS, delays.len()),
            (ADMIN_REPLICA_URLS, admins.len()),
        ] {
            if len != 0 && len != urls.len() {
                return Err(Error::Config(format!(
                    "{var} has {len} entries but {REPLICA_URLS} has {}",
                    urls.len()
                )));
            }
        }
        let mut stack = TestStack::new(&primary_url);
        stack.admin_primary_url = lookup(ADMIN_PRIMARY_URL).filter(|v| !v.trim().is_empty());
        for (i, url) in urls.iter().enumerate() {
            let delay = match delays.get(i) {
                Some(ms) => Some(Duration::from_millis(ms.parse().map_err(|_| {
                    Error::Config(format!("{REPLICA_DELAYS_MS} has a bad entry {ms:?}"))
                })?)),
                None => None,
            };
            stack.replicas.push(ReplicaNode {
                name: names
                    .get(i)
                    .cloned()
                    .unwrap_or_else(|| format!("replica{}", i + 1)),
                url: url.clone(),
                delay,
                admin_url: admins.get(i).cloned(),
            });
        }
        Ok(stack)
    }

    /// A stack with just a primary; add replicas with
    /// [`replica`](TestStack::replica).
    pub fn new(primary_url: &str) -> Self {
        TestStack {
            primary_url: primary_url.to_owned(),
            admin_primary_url: None,
            replicas: Vec::new(),
        }
    }

    /// Adds a replica.
    pub fn replica(mut self, name: &str, url: &str, delay: Option<Duration>) -> Self {
        self.replicas.push(ReplicaNode {
            name: name.to_owned(),
            url: url.to_owned(),
            delay,
            admin_url: None,
        });
        self
    }

    /// The primary's URL (the login role's database).
    pub fn primary_url(&self) -> &str {
        &self.primary_url
    }

    /// The superuser's URL of the primary, if known.
    pub fn admin_primary_url(&self) -> Option<&str> {
        self.admin_primary_url.as_deref()
    }

    /// The replicas, in the stack's order.
    pub fn replicas(&self) -> &[ReplicaNode] {
        &self.replicas
    }

    /// The largest configured replica delay (zero if none is known).
    pub fn max_delay(&self) -> Duration {
        self.replicas
            .iter()
            .filter_map(|r| r.delay)
            .max()
            .unwrap_or_default()
    }

    /// The smallest configured replica delay (zero if none is known).
    pub fn min_delay(&self) -> Duration {
        self.replicas
            .iter()
            .filter_map(|r| r.delay)
            .min()
            .unwrap_or_default()
    }

    /// A router configuration for the stack's login database, with a fast
    /// monitor and small pools (test binaries share the servers).
    pub fn router_config(&self) -> Result<RouterConfig, Error> {
        let mut config = RouterConfig::new(&self.primary_url)?;
        for replica in &self.replicas {
            config = config.named_replica(&replica.name, &replica.url)?;
        }
        Ok(config
            .check_interval(Duration::from_millis(100))
            .pool_size(4))
    }

    /// Waits until every replica has replayed everything committed on the
    /// primary so far, for at most `timeout`; returns how long it waited.
    /// See [`wait_for_replicas`](crate::testing::wait_for_replicas).
    pub async fn wait_for_replicas(&self, timeout: Duration) -> Result<Duration, Error> {
        let started = Instant::now();
        let primary = connect(&self.primary_url, "primary").await?;
        let mut replicas = Vec::with_capacity(self.replicas.len());
        for replica in &self.replicas {
            replicas.push((
                replica.name.clone(),
                connect(&replica.url, &replica.name).await?,
            ));
        }
        let refs: Vec<(&str, &Client)> = replicas.iter().map(|(n, c)| (n.as_str(), c)).collect();
        let remaining = timeout.saturating_sub(started.elapsed());
        wait::wait_for_replicas(&primary, &refs, remaining).await
    }
}

/// Connects one client, driving its connection on the current runtime.
pub(crate) async fn connect(url: &str, node: &str) -> Result<Client, Error> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .map_err(Error::postgres(node, "connecting"))?;
    tokio::spawn(async move {
        // The connection ends when the client is dropped or the server
        // closes it; either way the client reports it.
        let _ = connection.await;
    });
    Ok(client)
}

/// `url` with its database replaced by `dbname`. Only URLs
/// (`postgres://...`) are supported, as `cargo xtask env` prints them.
pub(crate) fn with_dbname(url: &str, dbname: &str) -> Result<String, Error> {
    let Some(scheme_end) = url.find("://") else {
        return Err(Error::Config(
            "the stack's URLs must have the form postgres://user:password@host:port/database"
                .into(),
        ));
    };
    let rest_start = scheme_end + 3;
    let rest = &url[rest_start..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let after_authority = &rest[authority_end..];
    let query = after_authority
        .find('?')
        .map_or("", |q| &after_authority[q..]);
    Ok(format!(
        "{}/{}{}",
        &url[..rest_start + authority_end],
        encode_path(dbname),
        query
    ))
}

fn encode_path(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(vars: &[(&str, &str)]) -> Result<TestStack, Error> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        TestStack::from_lookup(|key| vars.get(key).cloned())
    }

    #[test]
    fn missing_environment_fails_and_names_xtask_test() {
        let err = from(&[]).unwrap_err();
        assert!(err.is_no_stack());
        assert!(err.to_string().contains("cargo xtask test"), "{err}");
        let err = from(&[(PRIMARY_URL, "postgres://u@h/d")]).unwrap_err();
        assert!(err.to_string().starts_with(REPLICA_URLS), "{err}");
    }

    #[test]
    fn reads_names_delays_and_admin_urls() {
        let stack = from(&[
            (PRIMARY_URL, "postgres://u:p@h:5432/drr"),
            (
                REPLICA_URLS,
                "postgres://u:p@h:5433/drr,postgres://u:p@h:5434/drr",
            ),
            (REPLICA_NAMES, "a,b"),
            (REPLICA_DELAYS_MS, "3000,100"),
            (
                ADMIN_REPLICA_URLS,
                "postgres://s@h:5433/postgres,postgres://s@h:5434/postgres",
            ),
        ])
        .unwrap();
        assert_eq!(stack.replicas()[1].name, "b");
        assert_eq!(stack.max_delay(), Duration::from_millis(3000));
        assert_eq!(
            stack.replicas()[0].admin_url.as_deref(),
            Some("postgres://s@h:5433/postgres")
        );
        let err = from(&[
            (PRIMARY_URL, "postgres://u@h/d"),
            (REPLICA_URLS, "postgres://u@h:1/d"),
            (REPLICA_DELAYS_MS, "1,2"),
        ])
        .unwrap_err();
        assert!(err.to_string().contains("2 entries"), "{err}");
    }

    /// The environment contract (`drr_env`): every variable drr-core and
    /// its test helpers read, drr-stack prints, for a stack with replicas
    /// and with the superuser's URLs (as `cargo xtask test` exports them).
    #[test]
    fn everything_read_here_drr_stack_prints() {
        let spec = drr_stack::testing::spec(&[Duration::ZERO, Duration::from_millis(5)])
            .expect("a spec on free ports");
        let secrets = drr_stack::secrets::Secrets {
            superuser: "postgres".into(),
            superuser_password: "s".into(),
            replication_password: "r".into(),
        };
        let printed = drr_stack::env::vars(&spec, Some(&secrets));
        let read = std::cell::RefCell::new(Vec::new());
        let lookup = |key: &str| {
            read.borrow_mut().push(key.to_owned());
            printed
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.clone())
        };
        let config = RouterConfig::from_lookup(lookup).expect("drr-core reads what it prints");
        assert!(config.discovers_roles(), "DRR_WRITER_URL is printed");
        let stack = TestStack::from_lookup(lookup).expect("the test helpers read it too");
        assert_eq!(stack.replicas().len(), 2);
        let read = read.into_inner();
        assert!(read.len() >= 7, "{read:?}");
        for key in read {
            assert!(
                Var::from_name(&key).is_some(),
                "drr-core reads {key}, which is not in drr_env::Var"
            );
            assert!(
                printed.iter().any(|(k, _)| *k == key),
                "drr-core reads {key}, which drr-stack does not print: {printed:?}"
            );
        }
    }

    #[test]
    fn replaces_the_database_of_a_url() {
        assert_eq!(
            with_dbname("postgres://u:p@127.0.0.1:5432/drr", "drr_t_1").unwrap(),
            "postgres://u:p@127.0.0.1:5432/drr_t_1"
        );
        assert_eq!(
            with_dbname("postgres://u@h?sslmode=disable", "x y").unwrap(),
            "postgres://u@h/x%20y?sslmode=disable"
        );
        assert_eq!(
            with_dbname("postgresql://u@h:1/d?a=b", "t").unwrap(),
            "postgresql://u@h:1/t?a=b"
        );
        assert!(with_dbname("host=h dbname=d", "t").is_err());
    }
}
