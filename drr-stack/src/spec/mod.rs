//! The typed stack spec: one primary, N delayed streaming replicas, roles and
//! databases, as a plain Rust value.
//!
//! A project declares its stack once (in this repository, `xtask/src/spec.rs`)
//! with the builder methods below; everything else — the generated `compose/`
//! files, the native runner, the lag commands — is derived from that value.
//! [`StackSpec::validate`] checks every rule up front so that no command ever
//! acts on a half-valid spec.

mod external;
mod net;
mod project;
mod validate;

pub use external::{Credentials, CredentialsError, EnvCredentials, External};
pub use net::{Link, LinkKind, Links};
pub use project::TestCommand;
pub use validate::{Problem, SpecError};

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

/// Postgres major versions drr knows how to configure (15 brought psql's
/// `\getenv`, which the generated bootstrap SQL uses).
pub const SUPPORTED_MAJORS: std::ops::RangeInclusive<u16> = 15..=18;

/// The largest replication delay a spec or `cargo xtask delay` accepts.
pub const MAX_DELAY: Duration = Duration::from_secs(24 * 60 * 60);

/// Extra `postgresql.conf` settings of one node, rendered in key order.
pub type Settings = BTreeMap<String, String>;

/// `max_connections` on every node unless the spec sets it.
pub const DEFAULT_MAX_CONNECTIONS: u64 = 200;

/// WAL senders and slots beyond one per replica, so that adding a replica
/// or running `pg_basebackup` never needs a primary restart.
const SENDER_HEADROOM: usize = 8;

/// Settings a hot standby needs at least as high as the primary's; in
/// Postgres 15 a standby that sees a higher value on the primary pauses
/// recovery. A replica may raise them; one that does not set them follows
/// the primary's values.
pub const STANDBY_MINIMUMS: [&str; 5] = [
    "max_connections",
    "max_worker_processes",
    "max_wal_senders",
    "max_prepared_transactions",
    "max_locks_per_transaction",
];

/// `key`'s value on `node` as a whole number (`Err` with the text when it is
/// not one), if the spec sets it.
fn setting_number(node: &Node, key: &str) -> Option<Result<u64, String>> {
    let value = node.settings.get(key)?;
    Some(value.trim().parse().map_err(|_| value.clone()))
}

/// The default [`StackSpec::slot_wal_limit_mb`]: 1 GB of WAL per down
/// replica, far more than a development stack writes while a replica
/// restarts, far less than fills a disk.
pub const DEFAULT_SLOT_WAL_LIMIT_MB: u64 = 1024;

/// Which runner brings the stack up by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Backend {
    /// Plain local processes: no daemon, no image (the default).
    #[default]
    Native,
    /// `docker compose` with the generated `compose/docker-compose.yaml`.
    Compose,
}

/// A whole stack: one primary, its replicas, and the roles and databases on it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct StackSpec {
    /// Stack name: the compose project name and the native state sub-directory.
    pub name: String,
    /// Postgres major version of every node.
    pub postgres_major: u16,
    /// Image the compose services run; any image with this major's server binaries works.
    pub image: String,
    /// Address every port is published on (native: listened on).
    pub listen: IpAddr,
    /// Accept host ports below 1024.
    pub allow_privileged_ports: bool,
    /// The read-write node.
    pub primary: Node,
    /// Streaming replicas, in the order URLs are printed.
    pub replicas: Vec<Replica>,
    /// Login roles created on the primary.
    pub roles: Vec<Role>,
    /// Databases created on the primary.
    pub databases: Vec<Database>,
    /// How much WAL a replication slot may hold on the primary, in MB, for a
    /// replica that is down; past it the slot is invalidated and `up`
    /// rebuilds the replica. `None`: no limit (a replica down for long can
    /// fill the disk).
    pub slot_wal_limit_mb: Option<u64>,
    /// `fsync = on` on every node (see [`StackSpec::durable`]).
    pub durable: bool,
    /// Role the replicas stream as; its password is generated per checkout.
    pub replication_role: String,
    /// Runner used when no `--backend` flag or `DRR_BACKEND` is given.
    pub backend: Backend,
    /// A cluster drr does not run (see [`StackSpec::external`]); `None` for
    /// a stack drr runs.
    pub external: Option<External>,
    /// Whether `cargo xtask gen` writes `compose/` (see
    /// [`StackSpec::without_compose`]).
    pub compose: bool,
    /// What `cargo xtask test` runs; `None`: the workspace's Rust tests.
    pub test_command: Option<TestCommand>,
    /// Port of the fault proxy's Toxiproxy-compatible HTTP API (see
    /// [`StackSpec::net_api`]); `None`: no API.
    pub net_api: Option<u16>,
}

/// A Postgres server of the stack.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Node {
    /// Node name: compose service name, replication slot name, log file name.
    pub name: String,
    /// Port on the listen address (and inside the container).
    pub port: u16,
    /// Extra `postgresql.conf` settings, appended after drr's own.
    pub settings: Settings,
    /// Where the node answers, for an external cluster's nodes (drr's own
    /// nodes answer on the spec's listen address).
    pub host: Option<String>,
    /// Which of the node's links go through the fault proxy (none unless
    /// the spec opts in; see [`Node::client_link`]).
    pub links: Links,
}

/// A node with its part in the stack.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Member<'a> {
    /// The read-write node.
    Primary(&'a Node),
    /// A streaming replica.
    Replica(&'a Replica),
}

impl<'a> Member<'a> {
    /// The node's server settings.
    pub fn node(self) -> &'a Node {
        match self {
            Member::Primary(node) => node,
            Member::Replica(replica) => &replica.node,
        }
    }

    /// `"primary"` or `"replica"`.
    pub fn role_name(self) -> &'static str {
        match self {
            Member::Primary(_) => "primary",
            Member::Replica(_) => "replica",
        }
    }
}

/// A streaming replica: a node plus how far behind the primary it stays.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Replica {
    /// The replica's server.
    pub node: Node,
    /// `recovery_min_apply_delay`: how long after a commit on the primary it
    /// becomes visible here.
    pub delay: Duration,
    /// How long a query here that conflicts with replay (say, with a
    /// vacuum's cleanup) may hold replay back before Postgres cancels it
    /// (see [`Replica::query_grace`]).
    pub query_grace: Duration,
}

/// A login role created on the primary (and so present on every replica).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Role {
    /// Role name.
    pub name: String,
    /// Password, stored by Postgres as a scram-sha-256 verifier.
    pub password: String,
    /// Extra role attributes such as `CREATEDB`.
    pub attributes: Vec<RoleAttribute>,
}

/// Role attributes a spec may grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum RoleAttribute {
    /// May create databases (test harnesses need it).
    CreateDb,
    /// May create other roles.
    CreateRole,
    /// Bypasses row-level security.
    BypassRls,
    /// Superuser.
    Superuser,
}

/// A database created on the primary.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Database {
    /// Database name.
    pub name: String,
    /// Owning role; must be one of the spec's roles.
    pub owner: String,
}

impl StackSpec {
    /// Where the nodes answer: the listen address, or loopback when the
    /// stack listens on every address.
    pub fn host(&self) -> IpAddr {
        match self.listen {
            IpAddr::V4(a) if a.is_unspecified() => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            IpAddr::V6(a) if a.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
            other => other,
        }
    }

    /// An empty stack named `name` on Postgres `major`, with drr's defaults:
    /// the official `postgres` image pinned to a minor version, listening on
    /// 127.0.0.1, a primary called `primary` on 5432 and no replicas.
    pub fn new(name: &str, major: u16) -> Self {
        StackSpec {
            name: name.to_owned(),
            postgres_major: major,
            image: default_image(major),
            listen: IpAddr::V4(Ipv4Addr::LOCALHOST),
            allow_privileged_ports: false,
            primary: Node::new("primary", 5432),
            replicas: Vec::new(),
            roles: Vec::new(),
            databases: Vec::new(),
            replication_role: "drr_replicator".to_owned(),
            backend: Backend::Native,
            slot_wal_limit_mb: Some(DEFAULT_SLOT_WAL_LIMIT_MB),
            durable: false,
            external: None,
            compose: true,
            test_command: None,
            net_api: None,
        }
    }

    /// Makes this the spec of a cluster drr does not run: its nodes (with
    /// [`Node::host`]) already stream, and drr reaches them with the
    /// credentials in the environment variables `external` names. `up` then
    /// only checks that they answer and stream, `down`, `destroy` and
    /// `failover` never touch them, and the other commands (and drr-core)
    /// work as for a stack drr runs.
    pub fn external(mut self, external: External) -> Self {
        self.external = Some(external);
        self
    }

    /// Whether drr runs this stack (else it is an [`External`] cluster).
    pub fn is_managed(&self) -> bool {
        self.external.is_none()
    }

    /// Where `node` answers: its host (external clusters), else
    /// [`StackSpec::host`].
    pub fn node_host(&self, node: &Node) -> String {
        node.host.clone().unwrap_or_else(|| self.host().to_string())
    }

    /// WAL senders (and replication slots) every node allows: one per
    /// replica plus headroom, at least 16.
    pub fn wal_senders(&self) -> u64 {
        (self.replicas.len() + SENDER_HEADROOM).max(16) as u64
    }

    /// The value a [`STANDBY_MINIMUMS`] setting has on `node`: the spec's,
    /// else drr's, else Postgres's default; `None` for another key or a
    /// value that is not a number.
    pub fn standby_minimum(&self, node: &Node, key: &str) -> Option<u64> {
        match setting_number(node, key) {
            Some(value) => value.ok(),
            None => match key {
                "max_connections" => Some(DEFAULT_MAX_CONNECTIONS),
                "max_wal_senders" => Some(self.wal_senders()),
                "max_worker_processes" => Some(8),
                "max_prepared_transactions" => Some(0),
                "max_locks_per_transaction" => Some(64),
                _ => None,
            },
        }
    }

    /// Sets how much WAL, in MB, a down replica's slot may hold on the
    /// primary (default [`DEFAULT_SLOT_WAL_LIMIT_MB`]).
    pub fn slot_wal_limit_mb(mut self, mb: u64) -> Self {
        self.slot_wal_limit_mb = Some(mb);
        self
    }

    /// Lets replication slots hold WAL without limit: a replica that stays
    /// down keeps all WAL on the primary, however much.
    pub fn unlimited_slot_wal(mut self) -> Self {
        self.slot_wal_limit_mb = None;
        self
    }

    /// Makes every node durable: `fsync = on`. By default drr runs with
    /// `fsync = off`, for fast commits and start-up; a crash of Postgres
    /// alone loses nothing then, but an operating-system crash or a power
    /// loss can corrupt the cluster.
    pub fn durable(mut self) -> Self {
        self.durable = true;
        self
    }

    /// Replaces the primary.
    pub fn primary(mut self, node: Node) -> Self {
        self.primary = node;
        self
    }

    /// Adds a replica (one line per replica).
    pub fn replica(mut self, replica: Replica) -> Self {
        self.replicas.push(replica);
        self
    }

    /// Adds a login role.
    pub fn role(mut self, role: Role) -> Self {
        self.roles.push(role);
        self
    }

    /// Adds a database owned by `owner`.
    pub fn database(mut self, name: &str, owner: &str) -> Self {
        self.databases.push(Database {
            name: name.to_owned(),
            owner: owner.to_owned(),
        });
        self
    }

    /// Sets the compose image.
    pub fn image(mut self, image: &str) -> Self {
        self.image = image.to_owned();
        self
    }

    /// Sets the listen address.
    pub fn listen(mut self, address: impl Into<IpAddr>) -> Self {
        self.listen = address.into();
        self
    }

    /// Allows host ports below 1024.
    pub fn allow_privileged_ports(mut self) -> Self {
        self.allow_privileged_ports = true;
        self
    }

    /// Sets the default backend.
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    /// Every node, primary first, then the replicas in spec order.
    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        std::iter::once(&self.primary).chain(self.replicas.iter().map(|r| &r.node))
    }

    /// Every node with its part in the stack, primary first.
    pub fn members(&self) -> impl Iterator<Item = Member<'_>> {
        std::iter::once(Member::Primary(&self.primary))
            .chain(self.replicas.iter().map(Member::Replica))
    }

    /// The stack with node `name` as its primary: how it runs after
    /// `cargo xtask failover --to name`. The spec's primary takes the
    /// promoted replica's place among the replicas, with its own (zero)
    /// delay: a delay belongs to its node. Every other field is unchanged.
    pub fn with_primary(&self, name: &str) -> Result<StackSpec, UnknownNode> {
        if self.primary.name == name {
            return Ok(self.clone());
        }
        let index = self
            .replicas
            .iter()
            .position(|r| r.node.name == name)
            .ok_or_else(|| self.unknown_node(name))?;
        let mut runtime = self.clone();
        let promoted = std::mem::replace(
            &mut runtime.replicas[index],
            Replica {
                node: self.primary.clone(),
                delay: Duration::ZERO,
                query_grace: self.replicas[index].query_grace,
            },
        );
        runtime.primary = promoted.node;
        Ok(runtime)
    }

    /// The node called `name`, or an error that lists the spec's nodes.
    pub fn node(&self, name: &str) -> Result<&Node, UnknownNode> {
        self.nodes()
            .find(|n| n.name == name)
            .ok_or_else(|| self.unknown_node(name))
    }

    fn unknown_node(&self, name: &str) -> UnknownNode {
        UnknownNode {
            name: name.to_owned(),
            known: self.nodes().map(|n| n.name.clone()).collect(),
        }
    }

    /// The login role's name, password and database (`postgres` when the
    /// spec declares none): the spec's login role, or for an external
    /// cluster what its variables hold in this process's environment.
    pub fn login_credentials(&self) -> Result<Credentials, CredentialsError> {
        self.login_credentials_from(&|var| std::env::var(var).ok())
    }

    /// [`StackSpec::login_credentials`], reading variables with `lookup`.
    pub fn login_credentials_from(
        &self,
        lookup: &impl Fn(&str) -> Option<String>,
    ) -> Result<Credentials, CredentialsError> {
        if let Some(external) = &self.external {
            let (user, password) = external.login.resolve(lookup, "the login role")?;
            return Ok(Credentials {
                user,
                password,
                database: external.database.clone(),
            });
        }
        let (role, db) = self.login().ok_or(CredentialsError::NoLoginRole)?;
        Ok(Credentials {
            user: role.name.clone(),
            password: role.password.clone(),
            database: db.map_or("postgres", |d| d.name.as_str()).to_owned(),
        })
    }

    /// The node called `name`.
    pub fn member(&self, name: &str) -> Option<Member<'_>> {
        self.members().find(|m| m.node().name == name)
    }

    /// The replica called `name`.
    pub fn find_replica(&self, name: &str) -> Option<&Replica> {
        self.replicas.iter().find(|r| r.node.name == name)
    }

    /// The role applications log in as: the owner of the first database, or
    /// else the first role.
    pub fn login(&self) -> Option<(&Role, Option<&Database>)> {
        let database = self.databases.first();
        let owner = database.map(|d| d.owner.as_str());
        let role = match owner {
            Some(owner) => self.roles.iter().find(|r| r.name == owner),
            None => self.roles.first(),
        }?;
        Some((role, database))
    }
}

impl Node {
    /// A node with no extra settings.
    pub fn new(name: &str, port: u16) -> Self {
        Node {
            name: name.to_owned(),
            port,
            settings: Settings::new(),
            host: None,
            links: Links::default(),
        }
    }

    /// Where an external cluster's node answers (a host name or address).
    pub fn host(mut self, host: &str) -> Self {
        self.host = Some(host.to_owned());
        self
    }

    /// Adds a `postgresql.conf` setting.
    pub fn setting(mut self, key: &str, value: &str) -> Self {
        self.settings.insert(key.to_owned(), value.to_owned());
        self
    }
}

impl Replica {
    /// A replica with no delay.
    pub fn new(name: &str, port: u16) -> Self {
        Replica {
            node: Node::new(name, port),
            delay: Duration::ZERO,
            query_grace: crate::render::postgres::QUERY_GRACE,
        }
    }

    /// Sets the replication delay.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Sets how long a replica query that conflicts with replay may hold
    /// it back before Postgres cancels the query (`canceling statement due
    /// to conflict with recovery`): 30 s by default, Postgres's own
    /// default; set production's value to meet its cancellations here.
    /// drr adds the delay to it for `max_standby_streaming_delay`, which
    /// Postgres counts from when the WAL arrived.
    pub fn query_grace(mut self, grace: Duration) -> Self {
        self.query_grace = grace;
        self
    }

    /// Adds a `postgresql.conf` setting.
    pub fn setting(mut self, key: &str, value: &str) -> Self {
        self.node = self.node.setting(key, value);
        self
    }

    /// Where an external cluster's replica answers (see [`Node::host`]).
    pub fn host(mut self, host: &str) -> Self {
        self.node = self.node.host(host);
        self
    }
}

impl Role {
    /// A login role with a password.
    pub fn login(name: &str, password: &str) -> Self {
        Role {
            name: name.to_owned(),
            password: password.to_owned(),
            attributes: Vec::new(),
        }
    }

    /// Grants `CREATEDB`.
    pub fn createdb(self) -> Self {
        self.attribute(RoleAttribute::CreateDb)
    }

    /// Grants any attribute.
    pub fn attribute(mut self, attribute: RoleAttribute) -> Self {
        if !self.attributes.contains(&attribute) {
            self.attributes.push(attribute);
            self.attributes.sort();
        }
        self
    }
}

impl RoleAttribute {
    /// The SQL keyword, as in `CREATE ROLE ... CREATEDB`.
    pub fn keyword(self) -> &'static str {
        match self {
            RoleAttribute::CreateDb => "CREATEDB",
            RoleAttribute::CreateRole => "CREATEROLE",
            RoleAttribute::BypassRls => "BYPASSRLS",
            RoleAttribute::Superuser => "SUPERUSER",
        }
    }
}

/// A node name the spec does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("there is no node `{name}`; the spec's nodes are: {}", known.join(", "))]
pub struct UnknownNode {
    /// The name asked for.
    pub name: String,
    /// The spec's node names.
    pub known: Vec<String>,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Native => "native",
            Backend::Compose => "compose",
        })
    }
}

impl std::str::FromStr for Backend {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "native" => Ok(Backend::Native),
            "compose" => Ok(Backend::Compose),
            other => Err(format!(
                "unknown backend `{other}`; use `native` (local processes) or `compose` (docker compose)"
            )),
        }
    }
}

/// The official image for `major`, pinned to a minor release so that two
/// machines never run different servers from the same spec.
pub fn default_image(major: u16) -> String {
    let minor = match major {
        15 => "15.15",
        16 => "16.11",
        17 => "17.7",
        18 => "18.1",
        _ => return format!("postgres:{major}"),
    };
    format!("postgres:{minor}-bookworm")
}

/// The spec this project started from: the original Django tool's stack.
///
/// Primary `primary` on 5432, replica `replica1` on 5433 with a 3000 ms
/// delay, login role `drr_user` / `pass` with `CREATEDB`, database `drr`.
pub fn default_spec() -> StackSpec {
    StackSpec::new("drr", 15)
        .primary(Node::new("primary", 5432))
        .replica(Replica::new("replica1", 5433).delay(Duration::from_millis(3000)))
        .role(Role::login("drr_user", "pass").createdb())
        .database("drr", "drr_user")
}

#[cfg(test)]
mod tests;
