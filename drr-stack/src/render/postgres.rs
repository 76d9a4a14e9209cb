//! `postgresql.conf`, `pg_hba.conf` and the bootstrap SQL of a stack.
//!
//! Both backends use these same renderings: compose mounts them from
//! `compose/`, the native runner writes them into each data directory.

use std::fmt::Write as _;
use std::time::Duration;

use super::{PREAMBLE, sql};
use crate::spec::{DEFAULT_MAX_CONNECTIONS, Member, STANDBY_MINIMUMS, StackSpec};

/// Where Debian's packages (and the official `postgres` image, and the
/// image `cargo xtask image` builds) install a major's server binaries: the
/// compose entrypoint and `docker exec` use it, and the native backend looks
/// there last.
pub fn server_bindir(major: u16) -> String {
    format!("/usr/lib/postgresql/{major}/bin")
}

/// `initdb` arguments both backends use (the native template and the compose
/// entrypoint): UTF-8 with the portable `C` locale, the `postgres`
/// superuser, peer auth on the socket and scram-sha-256 on TCP. The
/// superuser's password comes from `--pwfile`.
pub const INITDB_ARGS: &[&str] = &[
    "--username=postgres",
    "--encoding=UTF8",
    "--locale=C",
    "--auth-local=peer",
    "--auth-host=scram-sha-256",
];

/// The default [`Replica::query_grace`](crate::spec::Replica::query_grace):
/// how long a replica query that conflicts with replay (say, with a vacuum's
/// cleanup) may hold replay back before Postgres cancels it, Postgres's own
/// default.
pub const QUERY_GRACE: Duration = Duration::from_secs(30);

/// The file in a node's data directory that names its stack instance
/// (`drr.stack_id`, which drr-core reads to tell stacks apart; see
/// [`stack_id_conf`]). Data copied from a node (a base backup, a rewind)
/// carries it along.
pub const STACK_ID_FILE: &str = "drr_stack_id.conf";

/// The contents of [`STACK_ID_FILE`] for stack instance `id`.
pub fn stack_id_conf(id: &str) -> String {
    format!(
        "# The stack instance this data belongs to, written by drr when it made the primary.\n\
         drr.stack_id = {}\n",
        sql::literal(id)
    )
}

/// The stack instance id [`stack_id_conf`] holds, if `text` is one.
pub fn parse_stack_id(text: &str) -> Option<&str> {
    text.lines()
        .find_map(|line| line.strip_prefix("drr.stack_id = '"))
        .and_then(|rest| rest.strip_suffix('\''))
}

/// `wal_keep_size` on every node.
pub const WAL_KEEP_SIZE: &str = "64MB";

/// `max_standby_streaming_delay` for a replica delayed by `delay` whose
/// queries get `grace` to conflict with replay.
///
/// Postgres counts that grace from when the WAL was *received*, but a
/// delayed replica applies WAL `delay` after receiving it: with a delay of
/// the grace or more, a conflicting query would be cancelled the moment
/// replay reaches its conflict. Adding the delay gives such a query the
/// same grace an undelayed replica gives it.
pub fn standby_streaming_delay(delay: Duration, grace: Duration) -> Duration {
    delay + grace
}

/// The complete `postgresql.conf` of one node.
pub fn postgresql_conf(spec: &StackSpec, member: Member<'_>) -> String {
    let node = member.node();
    let senders = spec.wal_senders();
    let mut out = String::new();
    let _ = writeln!(out, "# {PREAMBLE}");
    let _ = writeln!(
        out,
        "# Node `{}`: {} of stack `{}`.",
        node.name,
        member.role_name(),
        spec.name
    );
    out.push('\n');
    let mut set = |key: &str, value: &str| {
        let _ = writeln!(out, "{key} = {}", sql::literal(value));
    };
    set("listen_addresses", &spec.listen.to_string());
    set("port", &node.port.to_string());
    set("unix_socket_directories", "");
    set("password_encryption", "scram-sha-256");
    set("max_connections", &DEFAULT_MAX_CONNECTIONS.to_string());
    set("shared_buffers", "32MB");
    set("wal_level", "replica");
    set("max_wal_senders", &senders.to_string());
    set("max_replication_slots", &senders.to_string());
    set("hot_standby", "on");
    // Recent WAL stays whatever the slots say: a base backup's start point
    // survives the checkpoint of another backup taken at the same time
    // (`pg_basebackup -C` creates its slot only after its own checkpoint).
    set("wal_keep_size", WAL_KEEP_SIZE);
    // pg_rewind needs it to rejoin an old primary after `cargo xtask failover`.
    set("wal_log_hints", "on");
    set("hot_standby_feedback", "off");
    set("wal_receiver_status_interval", "1s");
    // Replicas reconnect within 100 ms after the primary restarts, not 5 s.
    set("wal_retrieve_retry_interval", "100ms");
    set("cluster_name", &node.name);
    // A development stack by default: fast commits and fast start-up. A
    // crash of Postgres alone loses nothing; an operating-system crash or a
    // power loss can corrupt the cluster. `.durable()` in the spec is for
    // data worth keeping.
    set("fsync", if spec.durable { "on" } else { "off" });
    set(
        "max_slot_wal_keep_size",
        &spec
            .slot_wal_limit_mb
            .map_or("-1".to_owned(), |mb| format!("{mb}MB")),
    );
    set("log_line_prefix", "%m [%p] %b %q%u@%d ");
    set("log_timezone", "UTC");
    set("timezone", "UTC");
    if let Member::Replica(replica) = member {
        set(
            "recovery_min_apply_delay",
            &format!("{}ms", replica.delay.as_millis()),
        );
        set(
            "max_standby_streaming_delay",
            &format!(
                "{}ms",
                standby_streaming_delay(replica.delay, replica.query_grace).as_millis()
            ),
        );
    }
    if let Member::Replica(replica) = member {
        let inherited: Vec<(&str, &String)> = STANDBY_MINIMUMS
            .iter()
            .filter(|key| !replica.node.settings.contains_key(**key))
            .filter_map(|key| spec.primary.settings.get(*key).map(|v| (*key, v)))
            .collect();
        if !inherited.is_empty() {
            out.push_str("\n# The primary's settings that a hot standby needs at least as high.\n");
            for (key, value) in inherited {
                let _ = writeln!(out, "{key} = {}", sql::literal(value));
            }
        }
    }
    if !node.settings.is_empty() {
        out.push_str("\n# Settings from the spec.\n");
        for (key, value) in &node.settings {
            let _ = writeln!(out, "{key} = {}", sql::literal(value));
        }
    }
    let _ = writeln!(
        out,
        "\n# Which stack instance the data belongs to (native: in the data directory).\n\
         include_if_exists = {}",
        sql::literal(STACK_ID_FILE)
    );
    out
}

/// The `pg_hba.conf` every node uses: scram-sha-256 on every TCP entry, the
/// replication role limited to the replication pseudo-database, and the
/// local socket (used only inside containers) open to the `postgres` OS user.
pub fn pg_hba_conf(spec: &StackSpec) -> String {
    let repl = &spec.replication_role;
    let rows = [
        ["local", "all", "postgres", "", "peer"],
        ["host", "replication", repl, "all", "scram-sha-256"],
        ["host", "all", repl, "all", "reject"],
        ["host", "all", "all", "all", "scram-sha-256"],
    ];
    let mut out =
        format!("# {PREAMBLE}\n# TYPE  DATABASE     USER                ADDRESS  METHOD\n");
    for [kind, db, user, address, method] in rows {
        let line = format!("{kind:<7} {db:<12} {user:<19} {address:<8} {method}");
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

/// Idempotent SQL, run with `psql` on the primary, that creates or updates
/// the spec's roles and databases and the replication role.
///
/// Passwords of the superuser and the replication role are generated per
/// checkout and never rendered: psql reads them from the environment
/// (`DRR_SUPERUSER_PASSWORD`, `DRR_REPLICATION_PASSWORD`) with `\getenv`.
pub fn bootstrap_sql(spec: &StackSpec) -> String {
    let mut out = format!(
        "-- {PREAMBLE}\n-- Creates or updates the roles and databases of stack `{}`.\n",
        spec.name
    );
    out.push_str("\\set ON_ERROR_STOP on\n");
    out.push_str("\\getenv superuser_password DRR_SUPERUSER_PASSWORD\n");
    out.push_str("\\getenv replication_password DRR_REPLICATION_PASSWORD\n");
    out.push_str("ALTER ROLE postgres WITH PASSWORD :'superuser_password';\n");
    create_role(&mut out, &spec.replication_role);
    let _ = writeln!(
        out,
        "ALTER ROLE {} WITH LOGIN REPLICATION PASSWORD :'replication_password';",
        sql::ident(&spec.replication_role)
    );
    for role in &spec.roles {
        create_role(&mut out, &role.name);
        let attributes: String = role
            .attributes
            .iter()
            .map(|a| format!(" {}", a.keyword()))
            .collect();
        let _ = writeln!(
            out,
            "ALTER ROLE {} WITH LOGIN{attributes} PASSWORD {};",
            sql::ident(&role.name),
            sql::literal(&role.password)
        );
    }
    for db in &spec.databases {
        let _ = writeln!(
            out,
            "SELECT 'CREATE DATABASE {} OWNER {}' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = {}) \\gexec",
            sql::ident(&db.name).replace('\'', "''"),
            sql::ident(&db.owner).replace('\'', "''"),
            sql::literal(&db.name)
        );
        let _ = writeln!(
            out,
            "ALTER DATABASE {} OWNER TO {};",
            sql::ident(&db.name),
            sql::ident(&db.owner)
        );
    }
    out
}

fn create_role(out: &mut String, name: &str) {
    let _ = writeln!(
        out,
        "SELECT 'CREATE ROLE {}' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {}) \\gexec",
        sql::ident(name).replace('\'', "''"),
        sql::literal(name)
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::default_spec;

    #[test]
    fn replica_conf_carries_its_delay_and_port() {
        let spec = default_spec();
        let conf = postgresql_conf(&spec, spec.member("replica1").unwrap());
        assert!(conf.starts_with("# Generated by `cargo xtask gen`"));
        assert!(conf.contains("\nport = '5433'\n"));
        assert!(conf.contains("\nrecovery_min_apply_delay = '3000ms'\n"));
        assert!(conf.contains("\nlisten_addresses = '127.0.0.1'\n"));
        let primary = postgresql_conf(&spec, spec.member("primary").unwrap());
        assert!(!primary.contains("recovery_min_apply_delay"));
    }

    #[test]
    fn replicas_follow_the_primarys_standby_minimums_and_long_delays() {
        let spec = default_spec().primary(
            crate::spec::Node::new("primary", 5432)
                .setting("max_connections", "300")
                .setting("work_mem", "8MB"),
        );
        let replica = postgresql_conf(&spec, spec.member("replica1").unwrap());
        assert!(
            replica.contains("hot standby needs at least as high.\nmax_connections = '300'\n"),
            "{replica}"
        );
        assert!(!replica.contains("work_mem"), "{replica}");
        assert!(replica.contains("\nmax_standby_streaming_delay = '33000ms'\n"));
        let mut graced = spec.clone();
        graced.replicas[0].query_grace = Duration::from_secs(5);
        let replica1 = postgresql_conf(&graced, graced.member("replica1").unwrap());
        assert!(replica1.contains("\nmax_standby_streaming_delay = '8000ms'\n"));
        assert!(replica.contains("\nfsync = 'off'\n"));
        assert!(replica.contains("\nmax_slot_wal_keep_size = '1024MB'\n"));
        let durable = spec.clone().durable().unlimited_slot_wal();
        let primary = postgresql_conf(&durable, durable.member("primary").unwrap());
        assert!(primary.contains("\nfsync = 'on'\n"));
        assert!(primary.contains("\nmax_slot_wal_keep_size = '-1'\n"));
    }

    #[test]
    fn the_stack_id_file_is_included_and_reads_back() {
        let spec = default_spec();
        let conf = postgresql_conf(&spec, spec.member("primary").unwrap());
        assert!(
            conf.ends_with("include_if_exists = 'drr_stack_id.conf'\n"),
            "{conf}"
        );
        let id = stack_id_conf("0123abcd");
        assert_eq!(parse_stack_id(&id), Some("0123abcd"));
        assert_eq!(parse_stack_id("garbage"), None);
    }

    #[test]
    fn spec_settings_are_appended_quoted() {
        let spec = default_spec()
            .primary(crate::spec::Node::new("primary", 5432).setting("work_mem", "it's"));
        let conf = postgresql_conf(&spec, spec.member("primary").unwrap());
        assert!(
            conf.contains("# Settings from the spec.\nwork_mem = 'it''s'\n"),
            "{conf}"
        );
    }

    #[test]
    fn hba_has_no_trust_over_tcp_and_fences_the_replication_role() {
        let hba = pg_hba_conf(&default_spec());
        let tcp: Vec<&str> = hba.lines().filter(|l| l.starts_with("host")).collect();
        assert_eq!(tcp.len(), 3);
        assert!(
            tcp.iter()
                .all(|l| l.ends_with("scram-sha-256") || l.ends_with("reject"))
        );
        assert!(tcp[0].contains("replication") && tcp[0].contains("drr_replicator"));
        assert!(tcp[1].contains("drr_replicator") && tcp[1].ends_with("reject"));
    }

    #[test]
    fn bootstrap_never_renders_generated_passwords() {
        let sql = bootstrap_sql(&default_spec());
        assert!(sql.contains("PASSWORD :'replication_password'"));
        assert!(sql.contains("ALTER ROLE \"drr_user\" WITH LOGIN CREATEDB PASSWORD 'pass';"));
        assert!(
            sql.contains("SELECT 'CREATE DATABASE \"drr\" OWNER \"drr_user\"' WHERE NOT EXISTS")
        );
    }
}
