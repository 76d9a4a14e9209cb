//! pgpool-II's configuration for a stack: `pgpool.conf`, `pool_hba.conf`
//! and `pool_passwd`, for `cargo xtask bench`'s peer comparison (the
//! read/write-splitting middleware drr-core is measured against).
//!
//! Streaming-replication mode with load balancing on, every statement
//! balanced on its own (`statement_level_load_balance`), a session's reads
//! kept on the primary after its first write
//! (`disable_load_balance_on_write = 'always'`), and a replica excluded
//! while it lags by [`Pgpool::delay_threshold_bytes`] or more at the last
//! streaming check: pgpool-II's closest settings to read-your-writes.
//! Clients authenticate with scram-sha-256 (`pool_hba.conf`); pgpool-II
//! logs in to the servers with the same method, from the passwords in
//! `pool_passwd`.

use std::fmt::Write as _;

use super::PREAMBLE;
use crate::spec::StackSpec;

/// Where and how one pgpool-II instance runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pgpool {
    /// The client port (on the stack's listen address).
    pub port: u16,
    /// The PCP port (on the stack's listen address).
    pub pcp_port: u16,
    /// The directory for its sockets, pid file and status file.
    pub run_dir: String,
    /// Lag in WAL bytes from which a replica gets no reads
    /// (`delay_threshold`; 0 turns the check off).
    pub delay_threshold_bytes: u64,
    /// Seconds between streaming checks (`sr_check_period`, at least 1).
    pub sr_check_period_s: u64,
    /// Client processes, hence the most concurrent client connections
    /// (`num_init_children`).
    pub children: u32,
}

/// A string value of pgpool-II's configuration syntax (PostgreSQL's): in
/// single quotes, quotes doubled, backslashes escaped.
fn conf_string(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

/// `pgpool.conf` for `spec`'s primary (backend 0, no balanced reads) and
/// replicas (backends 1.., equal weights), checking streaming as
/// `check_user` with the password `pool_passwd` gives it.
pub fn pgpool_conf(spec: &StackSpec, pgpool: &Pgpool, check_user: &str) -> String {
    let host = spec.host().to_string();
    let run = conf_string(&pgpool.run_dir);
    let mut out = format!("# {PREAMBLE}\n");
    let settings: [(&str, String); 29] = [
        (
            "backend_clustering_mode",
            conf_string("streaming_replication"),
        ),
        ("listen_addresses", conf_string(&host)),
        ("port", pgpool.port.to_string()),
        ("unix_socket_directories", run.clone()),
        ("pcp_listen_addresses", conf_string(&host)),
        ("pcp_port", pgpool.pcp_port.to_string()),
        ("pcp_socket_dir", run.clone()),
        ("wd_ipc_socket_dir", run.clone()),
        (
            "pid_file_name",
            conf_string(&format!("{}/pgpool.pid", pgpool.run_dir)),
        ),
        ("logdir", run),
        ("log_destination", conf_string("stderr")),
        ("num_init_children", pgpool.children.to_string()),
        ("max_pool", "1".into()),
        ("enable_pool_hba", "on".into()),
        ("pool_passwd", conf_string("pool_passwd")),
        ("allow_clear_text_frontend_auth", "off".into()),
        ("load_balance_mode", "on".into()),
        ("statement_level_load_balance", "on".into()),
        ("disable_load_balance_on_write", conf_string("always")),
        (
            "sr_check_period",
            pgpool.sr_check_period_s.max(1).to_string(),
        ),
        ("sr_check_user", conf_string(check_user)),
        ("sr_check_password", conf_string("")),
        ("sr_check_database", conf_string("postgres")),
        ("delay_threshold", pgpool.delay_threshold_bytes.to_string()),
        ("health_check_period", "0".into()),
        ("failover_on_backend_error", "off".into()),
        ("failover_command", conf_string("")),
        ("use_watchdog", "off".into()),
        ("memory_cache_enabled", "off".into()),
    ];
    for (key, value) in settings {
        let _ = writeln!(out, "{key} = {value}");
    }
    let nodes = std::iter::once((&spec.primary, 0))
        .chain(spec.replicas.iter().map(|r| (&r.node, 1)))
        .enumerate();
    for (i, (node, weight)) in nodes {
        let _ = writeln!(
            out,
            "backend_hostname{i} = {}\nbackend_port{i} = {}\nbackend_weight{i} = {weight}\n\
             backend_application_name{i} = {}\nbackend_flag{i} = 'DISALLOW_TO_FAILOVER'",
            conf_string(&spec.node_host(node)),
            node.port,
            conf_string(&node.name),
        );
    }
    out
}

/// `pool_hba.conf`: scram-sha-256 for every user and database on TCP, and
/// on the socket.
pub fn pool_hba_conf() -> String {
    format!(
        "# {PREAMBLE}\n\
         local all all scram-sha-256\n\
         host all all 127.0.0.1/32 scram-sha-256\n\
         host all all ::1/128 scram-sha-256\n"
    )
}

/// `pool_passwd`: each user's password in pgpool-II's plain-text form
/// (`user:TEXTpassword`), which scram-sha-256 to the servers needs. The
/// file holds secrets: its writer makes it 0600.
pub fn pool_passwd(users: &[(&str, &str)]) -> String {
    users
        .iter()
        .map(|(user, password)| format!("{user}:TEXT{password}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Node, Replica};

    fn pgpool() -> Pgpool {
        Pgpool {
            port: 7000,
            pcp_port: 7001,
            run_dir: "/tmp/it's".into(),
            delay_threshold_bytes: 1,
            sr_check_period_s: 0,
            children: 16,
        }
    }

    #[test]
    fn primary_takes_no_balanced_reads_and_replicas_share_them() {
        let spec = StackSpec::new("t", 15)
            .primary(Node::new("primary", 6000))
            .replica(Replica::new("replica1", 6001))
            .replica(Replica::new("replica2", 6002));
        let conf = pgpool_conf(&spec, &pgpool(), "postgres");
        for line in [
            "backend_port0 = 6000\nbackend_weight0 = 0",
            "backend_port1 = 6001\nbackend_weight1 = 1",
            "backend_port2 = 6002\nbackend_weight2 = 1",
            "backend_clustering_mode = 'streaming_replication'",
            "statement_level_load_balance = on",
            "disable_load_balance_on_write = 'always'",
            "delay_threshold = 1",
            "port = 7000",
        ] {
            assert!(conf.contains(line), "{line:?} missing from\n{conf}");
        }
        assert!(conf.contains("sr_check_period = 1\n"), "{conf}");
        assert!(conf.contains("'/tmp/it''s/pgpool.pid'"), "{conf}");
        assert!(!conf.contains("backend_port3"), "{conf}");
    }

    #[test]
    fn auth_is_scram_with_plain_text_passwords_for_the_servers() {
        assert!(!pool_hba_conf().contains("trust"));
        assert!(pool_hba_conf().contains("host all all 127.0.0.1/32 scram-sha-256"));
        assert_eq!(
            pool_passwd(&[("app", "secret pass"), ("postgres", "x")]),
            "app:TEXTsecret pass\npostgres:TEXTx\n"
        );
    }
}
