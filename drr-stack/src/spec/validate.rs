//! Every rule a spec must satisfy, checked at once, each broken rule reported
//! with the field it concerns and how to fix it.

use std::collections::BTreeMap;
use std::fmt;

use super::{MAX_DELAY, STANDBY_MINIMUMS, SUPPORTED_MAJORS, StackSpec, setting_number};

/// Settings drr manages itself; a spec that sets them would fight the runner.
const MANAGED_SETTINGS: &[(&str, &str)] = &[
    ("port", "set the node's port in the spec instead"),
    ("listen_addresses", "set the spec's listen address instead"),
    (
        "recovery_min_apply_delay",
        "set the replica's delay in the spec, or use `cargo xtask delay`",
    ),
    ("fsync", "call `.durable()` on the spec for `fsync = on`"),
    (
        "wal_log_hints",
        "`cargo xtask failover` needs it on to rejoin the old primary with pg_rewind",
    ),
    (
        "wal_keep_size",
        "drr keeps 64 MB so that concurrent base backups never lose their start",
    ),
    (
        "max_slot_wal_keep_size",
        "call `.slot_wal_limit_mb(...)` or `.unlimited_slot_wal()` on the spec",
    ),
    (
        "max_standby_streaming_delay",
        "it is each replica's delay plus its query grace: call `.query_grace(...)` on the replica",
    ),
    (
        "primary_conninfo",
        "drr writes it when it creates the replica",
    ),
    (
        "primary_slot_name",
        "drr names each replica's slot after the replica",
    ),
    ("hba_file", "drr generates pg_hba.conf from the spec"),
    ("config_file", "drr generates postgresql.conf from the spec"),
    ("data_directory", "drr owns the data directory"),
    (
        "unix_socket_directories",
        "drr talks to every node over TCP",
    ),
];

/// One broken rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where in the spec, e.g. `replicas[0].port`.
    pub field: String,
    /// What is wrong.
    pub message: String,
    /// What to change.
    pub fix: String,
}

/// A spec that breaks one or more rules; `Display` lists them all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SpecError {
    problems: Vec<Problem>,
}

impl SpecError {
    /// The broken rules, in spec order.
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the stack spec is invalid:")?;
        for p in &self.problems {
            write!(f, "\n  - {}: {}; {}", p.field, p.message, p.fix)?;
        }
        Ok(())
    }
}

impl StackSpec {
    /// Checks every rule; `Err` lists all broken ones.
    pub fn validate(&self) -> Result<(), SpecError> {
        let mut v = Validator::default();
        v.spec(self);
        if v.problems.is_empty() {
            Ok(())
        } else {
            Err(SpecError {
                problems: v.problems,
            })
        }
    }
}

#[derive(Default)]
struct Validator {
    problems: Vec<Problem>,
}

impl Validator {
    fn report(
        &mut self,
        field: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.problems.push(Problem {
            field: field.into(),
            message: message.into(),
            fix: fix.into(),
        });
    }

    fn spec(&mut self, spec: &StackSpec) {
        if !SUPPORTED_MAJORS.contains(&spec.postgres_major) {
            self.report(
                "postgres_major",
                format!(
                    "Postgres {} is not a version drr knows",
                    spec.postgres_major
                ),
                format!(
                    "use one of {}..={}",
                    SUPPORTED_MAJORS.start(),
                    SUPPORTED_MAJORS.end()
                ),
            );
        }
        if !is_project_name(&spec.name) {
            self.report(
                "name",
                format!("`{}` is not a valid stack name", spec.name),
                "use lowercase letters, digits, `-` and `_`, starting with a letter",
            );
        }
        if spec.image.trim().is_empty() || spec.image.chars().any(char::is_whitespace) {
            self.report(
                "image",
                format!("`{}` is not an image reference", spec.image),
                "use a reference such as `postgres:15.15-bookworm` or `drr/postgres:15`",
            );
        }
        self.names(spec);
        self.ports(spec);
        self.external(spec);
        self.settings(spec);
        self.standby_minimums(spec);
        self.delays(spec);
        if spec
            .slot_wal_limit_mb
            .is_some_and(|mb| mb < MIN_SLOT_WAL_LIMIT_MB)
        {
            self.report(
                "slot_wal_limit_mb",
                format!(
                    "{} MB is less than one WAL segment",
                    spec.slot_wal_limit_mb.unwrap_or_default()
                ),
                format!("use at least {MIN_SLOT_WAL_LIMIT_MB} MB, or `.unlimited_slot_wal()`"),
            );
        }
        self.roles(spec);
        self.databases(spec);
        self.problems.extend(super::net::problems(spec));
        self.project(spec);
    }

    fn project(&mut self, spec: &StackSpec) {
        if !spec.compose && spec.backend == super::Backend::Compose {
            self.report(
                "backend",
                "the compose backend needs the compose files the spec opts out of",
                "remove `.without_compose()`, or the `.backend(Backend::Compose)` call",
            );
        }
        let Some(command) = &spec.test_command else {
            return;
        };
        if command.program.trim().is_empty() {
            self.report(
                "test_command.program",
                "the test command names no program",
                "name one, e.g. `TestCommand::new(\"python\").args([\"manage.py\", \"test\"])`",
            );
        }
        if let Some(node) = &command.libpq_node
            && spec.node(node).is_err()
        {
            self.report(
                "test_command.libpq_node",
                format!("`{node}` is not a node of the spec"),
                "name the primary or one of the replicas",
            );
        }
    }

    fn names(&mut self, spec: &StackSpec) {
        let mut seen: BTreeMap<&str, String> = BTreeMap::new();
        let nodes = std::iter::once(("primary.name".to_owned(), &spec.primary)).chain(
            spec.replicas
                .iter()
                .enumerate()
                .map(|(i, r)| (format!("replicas[{i}].name"), &r.node)),
        );
        for (field, node) in nodes {
            self.identifier(&field, &node.name, "node");
            if let Some(first) = seen.insert(&node.name, field.clone()) {
                self.report(
                    field,
                    format!("node name `{}` is already used by {first}", node.name),
                    "give every node its own name",
                );
            }
        }
        self.identifier("replication_role", &spec.replication_role, "role");
    }

    fn identifier(&mut self, field: &str, name: &str, what: &str) {
        if !is_identifier(name) {
            self.report(
                field,
                format!("`{name}` is not a valid {what} name"),
                "use 1 to 63 lowercase letters, digits and `_`, starting with a letter \
                 (a name that is both a compose service name and a plain Postgres identifier)",
            );
        } else if name.starts_with("pg_") {
            self.report(
                field,
                format!("`{name}` starts with `pg_`, which Postgres reserves"),
                "choose a name without the `pg_` prefix",
            );
        }
    }

    fn ports(&mut self, spec: &StackSpec) {
        let mut seen: BTreeMap<u16, &str> = BTreeMap::new();
        let fields = std::iter::once("primary.port".to_owned())
            .chain((0..spec.replicas.len()).map(|i| format!("replicas[{i}].port")));
        for (field, node) in fields.zip(spec.nodes()) {
            if node.port == 0 {
                self.report(
                    field,
                    "port 0 is not a fixed port",
                    "choose a port from 1024 to 65535",
                );
                continue;
            }
            if node.port < 1024 && !spec.allow_privileged_ports {
                self.report(
                    &field,
                    format!("port {} is privileged (below 1024)", node.port),
                    "choose a port from 1024 to 65535, or call `.allow_privileged_ports()` on the spec",
                );
            }
            // An external cluster's nodes on different hosts may share a port.
            if node.host.is_some() {
                continue;
            }
            if let Some(first) = seen.insert(node.port, &node.name) {
                self.report(
                    field,
                    format!("port {} is already used by node `{first}`", node.port),
                    "give every node its own port",
                );
            }
        }
    }

    /// An external cluster's spec names variables and hosts, and none of
    /// what drr creates; a stack drr runs has no hosts.
    fn external(&mut self, spec: &StackSpec) {
        let Some(external) = &spec.external else {
            for node in spec.nodes().filter(|n| n.host.is_some()) {
                self.report(
                    format!("{}.host", node.name),
                    "only an external cluster's nodes have a host",
                    "remove `.host(...)`: drr runs its own nodes on the spec's listen address, \
                     or describe the cluster with `.external(...)`",
                );
            }
            return;
        };
        if !spec.roles.is_empty() || !spec.databases.is_empty() {
            self.report(
                "external",
                "an external cluster's roles and databases are its own: drr creates none",
                "remove `.role(...)` and `.database(...)`; name the login role's variables and \
                 database in `External::new`",
            );
        }
        let vars = [
            ("external.login.user_var", &external.login.user_var),
            ("external.login.password_var", &external.login.password_var),
            ("external.admin.user_var", &external.admin.user_var),
            ("external.admin.password_var", &external.admin.password_var),
        ];
        for (field, var) in vars {
            let valid = var
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_uppercase() || c == '_')
                && var
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            if !valid {
                self.report(
                    field,
                    format!("`{var}` is not an environment variable name"),
                    "use uppercase letters, digits and `_`, e.g. `STAGING_PG_PASSWORD`",
                );
            }
        }
        for node in spec.nodes() {
            if node.host.as_deref().is_some_and(|h| h.trim().is_empty()) {
                self.report(
                    format!("{}.host", node.name),
                    "the host is empty",
                    "give the node's host name or address",
                );
            }
        }
    }

    fn settings(&mut self, spec: &StackSpec) {
        for node in spec.nodes() {
            for (key, value) in &node.settings {
                let field = format!("{}.settings.{key}", node.name);
                if let Some((_, fix)) = MANAGED_SETTINGS.iter().find(|(k, _)| k == key) {
                    self.report(field, format!("`{key}` is managed by drr"), *fix);
                } else if !is_setting_name(key) {
                    self.report(
                        field,
                        format!("`{key}` is not a setting name"),
                        "use the name as `SHOW` prints it, e.g. `work_mem`",
                    );
                } else if value.contains(['\n', '\r', '\0']) {
                    self.report(field, "the value spans lines", "put the value on one line");
                }
            }
        }
    }

    /// Settings a hot standby needs at least as high as its primary's: a
    /// replica may raise them, never lower them (a replica that does not
    /// set one follows the primary's value; see `render::postgres`).
    fn standby_minimums(&mut self, spec: &StackSpec) {
        for key in STANDBY_MINIMUMS {
            for node in spec.nodes() {
                if let Some(Err(value)) = setting_number(node, key) {
                    self.report(
                        format!("{}.settings.{key}", node.name),
                        format!("`{key}` = `{value}` is not a whole number"),
                        "give a whole number",
                    );
                }
            }
            let Some(theirs) = spec.standby_minimum(&spec.primary, key) else {
                continue;
            };
            for replica in &spec.replicas {
                let field = format!("{}.settings.{key}", replica.node.name);
                match setting_number(&replica.node, key) {
                    Some(Ok(own)) if own < theirs => self.report(
                        field,
                        format!(
                            "`{key}` = {own} is below the primary's {theirs}, which a hot standby \
                             refuses (it stops replaying)"
                        ),
                        "raise it to the primary's value or more, or leave it out: a replica \
                         that does not set it follows the primary",
                    ),
                    _ => {}
                }
            }
        }
    }

    fn delays(&mut self, spec: &StackSpec) {
        for (i, replica) in spec.replicas.iter().enumerate() {
            for (field, value) in [
                ("delay", replica.delay),
                ("query_grace", replica.query_grace),
            ] {
                if value.subsec_nanos() % 1_000_000 != 0 {
                    self.report(
                        format!("replicas[{i}].{field}"),
                        format!(
                            "{value:?} is finer than a millisecond, the unit Postgres takes it in"
                        ),
                        "round it to whole milliseconds",
                    );
                }
            }
            if replica.delay > MAX_DELAY {
                self.report(
                    format!("replicas[{i}].delay"),
                    format!(
                        "{} ms is longer than the 24 h maximum",
                        replica.delay.as_millis()
                    ),
                    "use a delay from 0 to 24 h; use `cargo xtask pause` for an unbounded lag",
                );
            }
            if replica.query_grace > MAX_DELAY {
                self.report(
                    format!("replicas[{i}].query_grace"),
                    format!(
                        "{} ms is longer than the 24 h maximum",
                        replica.query_grace.as_millis()
                    ),
                    "use a grace from 0 to 24 h",
                );
            }
        }
    }

    fn roles(&mut self, spec: &StackSpec) {
        let mut seen = BTreeMap::new();
        for (i, role) in spec.roles.iter().enumerate() {
            let field = format!("roles[{i}].name");
            self.identifier(&field, &role.name, "role");
            if role.name == "postgres" || role.name == spec.replication_role {
                self.report(
                    &field,
                    format!("role `{}` is reserved by drr", role.name),
                    "choose another name: drr creates `postgres` and the replication role itself",
                );
            }
            if seen.insert(role.name.as_str(), i).is_some() {
                self.report(
                    &field,
                    format!("role `{}` is declared twice", role.name),
                    "declare each role once",
                );
            }
            if role.password.is_empty() {
                self.report(
                    format!("roles[{i}].password"),
                    "the password is empty",
                    "give the role a password: drr requires password logins over TCP",
                );
            }
        }
    }

    fn databases(&mut self, spec: &StackSpec) {
        let mut seen = BTreeMap::new();
        for (i, db) in spec.databases.iter().enumerate() {
            let field = format!("databases[{i}].name");
            self.identifier(&field, &db.name, "database");
            if matches!(db.name.as_str(), "postgres" | "template0" | "template1") {
                self.report(
                    &field,
                    format!("database `{}` already exists in every cluster", db.name),
                    "choose another name",
                );
            }
            if seen.insert(db.name.as_str(), i).is_some() {
                self.report(
                    &field,
                    format!("database `{}` is declared twice", db.name),
                    "declare each database once",
                );
            }
            if !spec.roles.iter().any(|r| r.name == db.owner) {
                self.report(
                    format!("databases[{i}].owner"),
                    format!("owner `{}` is not a declared role", db.owner),
                    format!(
                        "add `.role(Role::login(\"{}\", \"...\"))` to the spec or name a declared role",
                        db.owner
                    ),
                );
            }
        }
    }
}

/// The smallest slot WAL limit: one 16 MB WAL segment.
const MIN_SLOT_WAL_LIMIT_MB: u64 = 16;

/// A compose service name that is also a plain, unquoted Postgres identifier.
fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 63
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// A compose project name.
fn is_project_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

fn is_setting_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.')
}
