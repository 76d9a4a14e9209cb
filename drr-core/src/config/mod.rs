//! Router configuration: the nodes, pools, and routing policy. Every
//! option and its default are here; [`policy`] holds the policy types and
//! [`url`] checks connection URLs.

mod policy;
mod url;

use std::time::Duration;

use crate::error::{Error, Result};
use crate::functions::{FunctionName, Overrides};

pub use policy::{Balance, Consistency, Fallback, MaxLag};
use url::parse_url;

/// One database server: a name for errors, stats and traces, and how to
/// connect.
#[derive(Debug, Clone)]
pub(crate) struct NodeSpec {
    pub(crate) name: String,
    pub(crate) pg: tokio_postgres::Config,
}

/// Who the primary is: the node a configuration names, or whichever node
/// answers as one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Roles {
    /// The first node is the primary, always; the others are replicas
    /// ([`RouterConfig::new`]).
    Fixed,
    /// The router asks every node ([`RouterConfig::cluster`]).
    Discovered,
}

/// Everything a [`Router`](crate::Router) needs: the nodes, who among them is
/// the primary, and the routing policy. Built with chained setters; every
/// setting has a default.
///
/// Either the primary is fixed ([`new`](RouterConfig::new), then
/// [`replica`](RouterConfig::replica)), or the router discovers it
/// ([`cluster`](RouterConfig::cluster)) and follows a failover: it asks
/// every node whether it is in recovery, and asks again when a check fails
/// or a write meets a node that is not the primary any more.
///
/// ```
/// use std::time::Duration;
/// use drr_core::{Balance, Consistency, MaxLag, RouterConfig};
///
/// let config = RouterConfig::new("postgres://app:secret@db1/app")?
///     .replica("postgres://app:secret@db2/app")?
///     .replica("postgres://app:secret@db3/app")?
///     .balance(Balance::LeastOutstanding)
///     .consistency(Consistency::PinAfterWrite(Duration::from_secs(2)))
///     .max_lag(MaxLag::time(Duration::from_secs(5)));
/// # Ok::<(), drr_core::Error>(())
/// ```
///
/// A cluster whose primary may change (a failover, an HA engine's
/// switchover):
///
/// ```
/// use drr_core::RouterConfig;
///
/// let config = RouterConfig::cluster(&[
///     "postgres://app:secret@db1/app",
///     "postgres://app:secret@db2/app",
///     "postgres://app:secret@db3/app",
/// ])?;
/// assert_eq!(config.node_names().collect::<Vec<_>>(), ["node1", "node2", "node3"]);
/// # Ok::<(), drr_core::Error>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RouterConfig {
    /// Every node, in order; under [`Roles::Fixed`] the first is the
    /// primary.
    pub(crate) nodes: Vec<NodeSpec>,
    pub(crate) roles: Roles,
    pub(crate) pool_size: usize,
    pub(crate) pool_wait_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) read_timeout: Duration,
    pub(crate) balance: Balance,
    pub(crate) consistency: Consistency,
    pub(crate) max_lag: MaxLag,
    pub(crate) fallback: Fallback,
    pub(crate) check_interval: Duration,
    pub(crate) check_timeout: Duration,
    pub(crate) ban_duration: Duration,
    pub(crate) max_wait: Duration,
    pub(crate) poll_interval: Duration,
    pub(crate) classify_cache_size: usize,
    pub(crate) function_overrides: Overrides,
}

impl RouterConfig {
    /// A configuration with the given primary (a `postgres://` URL or a
    /// `key=value` connection string), no replicas yet, and defaults for the
    /// rest.
    pub fn new(primary_url: &str) -> Result<Self> {
        Ok(Self::with_nodes(
            vec![NodeSpec {
                name: "primary".to_owned(),
                pg: parse_url(primary_url, "the primary")?,
            }],
            Roles::Fixed,
        ))
    }

    /// A configuration over `urls`, nodes named `node1`, `node2`, ... in
    /// order, without saying which is the primary: the router discovers it
    /// (`pg_is_in_recovery()` and the timeline of every node) and follows it
    /// through a failover. Writes go to the one node that answers as
    /// primary (the newest timeline, if several do); while none does, they
    /// fail with an error for which [`Error::is_failover`] holds. Every
    /// other node in recovery serves reads.
    ///
    /// Fails on an empty list or a bad URL.
    pub fn cluster<S: AsRef<str>>(urls: &[S]) -> Result<Self> {
        let mut config = Self::with_nodes(Vec::new(), Roles::Discovered);
        for url in urls {
            config = config.node(url.as_ref())?;
        }
        if config.nodes.is_empty() {
            return Err(Error::config(
                "a cluster needs at least one node: give RouterConfig::cluster its nodes' URLs",
            ));
        }
        Ok(config)
    }

    /// An empty configuration with defaults for everything.
    fn with_nodes(nodes: Vec<NodeSpec>, roles: Roles) -> Self {
        RouterConfig {
            nodes,
            roles,
            pool_size: 16,
            pool_wait_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(3),
            read_timeout: Duration::from_secs(10),
            balance: Balance::default(),
            consistency: Consistency::default(),
            max_lag: MaxLag::none(),
            fallback: Fallback::default(),
            check_interval: Duration::from_millis(500),
            check_timeout: Duration::from_secs(2),
            ban_duration: Duration::from_secs(5),
            max_wait: Duration::from_secs(1),
            poll_interval: Duration::from_millis(10),
            classify_cache_size: 4096,
            function_overrides: Overrides::default(),
        }
    }

    /// Adds a replica named `replicaN` (N counting from 1). In a
    /// [`cluster`](RouterConfig::cluster), adds a node of that name whose
    /// role the router discovers.
    pub fn replica(self, url: &str) -> Result<Self> {
        let name = format!("replica{}", self.replica_names().count() + 1);
        self.named_replica(&name, url)
    }

    /// Adds a replica with a name of your choice. In a
    /// [`cluster`](RouterConfig::cluster), adds a node whose role the
    /// router discovers.
    pub fn named_replica(self, name: &str, url: &str) -> Result<Self> {
        self.named_node(name, url)
    }

    /// Adds a node named `nodeN` (N counting from 1 over every node). In a
    /// configuration with a fixed primary ([`new`](RouterConfig::new)), it
    /// is a replica.
    pub fn node(self, url: &str) -> Result<Self> {
        let name = format!("node{}", self.nodes.len() + 1);
        self.named_node(&name, url)
    }

    /// Adds a node with a name of your choice (see [`node`](RouterConfig::node)).
    pub fn named_node(mut self, name: &str, url: &str) -> Result<Self> {
        if name.is_empty() || self.nodes.iter().any(|n| n.name == name) {
            return Err(Error::config(format!(
                "node name {name:?} is empty or already taken"
            )));
        }
        let pg = parse_url(url, &format!("node {name}"))?;
        self.nodes.push(NodeSpec {
            name: name.to_owned(),
            pg,
        });
        Ok(self)
    }

    /// Connections per node (default 16).
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size.max(1);
        self
    }

    /// How long a call waits for a free pooled connection (default 5 s).
    pub fn pool_wait_timeout(mut self, timeout: Duration) -> Self {
        self.pool_wait_timeout = timeout;
        self
    }

    /// How long opening a connection may take (default 3 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a read on a replica may take, connecting included, before
    /// drr abandons it, bans the replica and retries the read elsewhere
    /// (default 10 s): a replica that stops answering without closing its
    /// connections (a network blackhole) costs a read at most this. Reads
    /// on the primary have no such deadline.
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = timeout;
        self
    }

    /// How reads choose among replicas (default round-robin).
    pub fn balance(mut self, balance: Balance) -> Self {
        self.balance = balance;
        self
    }

    /// The consistency of new sessions (default read-your-writes).
    pub fn consistency(mut self, consistency: Consistency) -> Self {
        self.consistency = consistency;
        self
    }

    /// How far behind a replica may be (default: no limit).
    pub fn max_lag(mut self, max_lag: MaxLag) -> Self {
        self.max_lag = max_lag;
        self
    }

    /// What reads do when no replica may serve them (default: the primary).
    pub fn fallback(mut self, fallback: Fallback) -> Self {
        self.fallback = fallback;
        self
    }

    /// How often the monitor checks every node (default 500 ms).
    pub fn check_interval(mut self, interval: Duration) -> Self {
        self.check_interval = interval.max(Duration::from_millis(10));
        self
    }

    /// How long one health check may take before the node counts as down
    /// (default 2 s).
    pub fn check_timeout(mut self, timeout: Duration) -> Self {
        self.check_timeout = timeout;
        self
    }

    /// How long a failed replica gets no reads, counted from the first
    /// failure of its outage (default 5 s): reads resume at the first
    /// successful check after that. Later failures of the same outage do
    /// not extend the ban.
    pub fn ban_duration(mut self, duration: Duration) -> Self {
        self.ban_duration = duration;
        self
    }

    /// How long a read-your-writes read waits for a replica to catch up
    /// before falling back (default 1 s; zero falls back at once). A read
    /// does not wait at all when the replica certainly needs longer: its
    /// `recovery_min_apply_delay` less the write's age, or the lag it
    /// certainly has.
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.max_wait = wait;
        self
    }

    /// How often a waiting read polls the replica's replay position
    /// (default 10 ms).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// How many SQL texts keep their classification (default 4096; zero
    /// parses every time).
    pub fn classify_cache_size(mut self, size: usize) -> Self {
        self.classify_cache_size = size;
        self
    }

    /// Functions that may go to a replica whatever the server says about
    /// them (default none), e.g. VOLATILE functions that only read. Each is
    /// `name` (any schema) or `schema.name` (calls that name that schema),
    /// as PostgreSQL stores it (lower case unless created with a quoted
    /// name). Functions that need
    /// the primary (`nextval`, `pg_promote`, `pg_wal_replay_pause`, ...)
    /// stay on it even if listed. A listed function that does write is
    /// refused by the replica and retried on the primary.
    pub fn read_only_functions(mut self, names: &[&str]) -> Self {
        self.function_overrides.read_only = names.iter().map(|n| FunctionName::parse(n)).collect();
        self
    }

    /// Functions that keep a statement on the primary whatever the server
    /// says about them (default none), e.g. STABLE functions with side
    /// effects outside the database. Named as for
    /// [`read_only_functions`](RouterConfig::read_only_functions), except
    /// that `schema.name` also covers calls that name no schema (they may
    /// resolve to it); a name in both lists is a write function.
    pub fn write_functions(mut self, names: &[&str]) -> Self {
        self.function_overrides.write = names.iter().map(|n| FunctionName::parse(n)).collect();
        self
    }

    /// The names of the nodes configured as replicas, in order: every node
    /// but a fixed primary (in a [`cluster`](RouterConfig::cluster), every
    /// node).
    pub fn replica_names(&self) -> impl Iterator<Item = &str> {
        let skip = usize::from(self.roles == Roles::Fixed);
        self.nodes.iter().skip(skip).map(|n| n.name.as_str())
    }

    /// The names of every node, in order (a fixed primary first).
    pub fn node_names(&self) -> impl Iterator<Item = &str> {
        self.nodes.iter().map(|n| n.name.as_str())
    }

    /// Whether the router discovers the primary
    /// ([`cluster`](RouterConfig::cluster)) rather than being told.
    pub fn discovers_roles(&self) -> bool {
        self.roles == Roles::Discovered
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_are_named_in_order_and_names_are_unique() {
        let config = RouterConfig::new("postgres://u@h/d")
            .and_then(|c| c.replica("postgres://u@h:1/d"))
            .and_then(|c| c.named_replica("eu", "postgres://u@h:2/d"))
            .unwrap();
        assert_eq!(
            config.replica_names().collect::<Vec<_>>(),
            ["replica1", "eu"]
        );
        assert!(
            config
                .clone()
                .named_replica("eu", "postgres://u@h:3/d")
                .unwrap_err()
                .is_config()
        );
        assert!(
            config
                .named_replica("primary", "postgres://u@h:3/d")
                .is_err()
        );
    }

    #[test]
    fn a_cluster_names_its_nodes_and_fixes_no_primary() {
        let config = RouterConfig::cluster(&["postgres://u@h:1/d", "postgres://u@h:2/d"])
            .and_then(|c| c.named_node("eu", "postgres://u@h:3/d"))
            .unwrap();
        assert!(config.discovers_roles());
        assert_eq!(
            config.node_names().collect::<Vec<_>>(),
            ["node1", "node2", "eu"]
        );
        assert_eq!(config.replica_names().count(), 3, "every node may be one");
        let fixed = RouterConfig::new("postgres://u@h/d").unwrap();
        assert!(!fixed.discovers_roles());
        let none: [&str; 0] = [];
        let err = RouterConfig::cluster(&none).unwrap_err();
        assert!(
            err.is_config() && err.to_string().contains("at least one node"),
            "{err}"
        );
    }

    /// Every default of the configuration, as the docs write it: a name and
    /// its value (`16`, `5 s`, `500 ms`, `RoundRobin`, `none`).
    fn documented_defaults() -> Vec<(&'static str, String)> {
        let c = RouterConfig::new("host=localhost user=u").unwrap();
        let time = |d: Duration| match d.as_millis() {
            ms if ms % 1000 == 0 => format!("{} s", ms / 1000),
            ms => format!("{ms} ms"),
        };
        let names = |list: &[FunctionName]| match list {
            [] => "none".to_owned(),
            names => names
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        };
        let max_lag = match c.max_lag {
            MaxLag {
                time: None,
                bytes: None,
            } => "none".to_owned(),
            other => format!("{other:?}"),
        };
        vec![
            ("pool_size", c.pool_size.to_string()),
            ("pool_wait_timeout", time(c.pool_wait_timeout)),
            ("connect_timeout", time(c.connect_timeout)),
            ("read_timeout", time(c.read_timeout)),
            ("balance", format!("{:?}", c.balance)),
            ("consistency", format!("{:?}", c.consistency)),
            ("max_lag", max_lag),
            ("fallback", format!("{:?}", c.fallback)),
            ("check_interval", time(c.check_interval)),
            ("check_timeout", time(c.check_timeout)),
            ("ban_duration", time(c.ban_duration)),
            ("max_wait", time(c.max_wait)),
            ("poll_interval", time(c.poll_interval)),
            ("classify_cache_size", c.classify_cache_size.to_string()),
            (
                "read_only_functions",
                names(&c.function_overrides.read_only),
            ),
            ("write_functions", names(&c.function_overrides.write)),
        ]
    }

    /// The defaults a Markdown table states: rows whose first cell names
    /// settings (`` `pool_size` ``, `` `pool_size(n)` ``, or several joined
    /// by ` / `) and whose second cell gives their defaults in the same
    /// order, normalized (`` `Balance::RoundRobin` `` is `RoundRobin`,
    /// `MaxLag::none()` is `none`).
    fn table_defaults(markdown: &str) -> Vec<(String, String)> {
        let clean = |cell: &str| {
            let cell = cell.trim().trim_matches('`');
            let cell = cell.split('(').next().unwrap_or(cell);
            let cell = cell.rsplit("::").next().unwrap_or(cell);
            cell.trim().to_owned()
        };
        let mut found = Vec::new();
        for line in markdown.lines() {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let [_, names, defaults, ..] = cells.as_slice() else {
                continue;
            };
            let names: Vec<String> = names.split(" / ").map(clean).collect();
            let defaults: Vec<String> = defaults.split(" / ").map(clean).collect();
            if names.len() == defaults.len() {
                found.extend(names.into_iter().zip(defaults));
            }
        }
        found
    }

    #[test]
    fn the_defaults_tables_match_the_code() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        for doc in ["README.md", "../docs/configuring.md"] {
            let text = std::fs::read_to_string(root.join(doc)).unwrap();
            let table = table_defaults(&text);
            for (name, value) in documented_defaults() {
                let stated = table.iter().find(|(n, _)| n == name).map(|(_, v)| v);
                assert_eq!(
                    stated.map(String::as_str),
                    Some(value.as_str()),
                    "{doc}: the default of `{name}` (the code says {value})"
                );
            }
        }
    }

    #[test]
    fn defaults_are_safe() {
        let config = RouterConfig::new("host=localhost user=u").unwrap();
        assert_eq!(config.consistency, Consistency::ReadYourWrites);
        assert_eq!(config.fallback, Fallback::Primary);
        assert_eq!(config.balance, Balance::RoundRobin);
        assert_eq!(config.max_lag, MaxLag::none());
        assert_eq!(
            MaxLag::time(Duration::from_secs(1)).and_bytes(10).bytes,
            Some(10)
        );
    }
}
