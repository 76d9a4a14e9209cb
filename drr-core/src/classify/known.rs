//! Functions the classifier knows by name, whatever the server says about
//! them: those that need the primary (writers, locks, and the admin and
//! replica-only functions that must never reach a replica automatically),
//! those that leave state on the session that calls them, and the SQL
//! syntax that parses like a call but names no function.

use crate::classify::walk::Call;

/// Functions that write, take locks, or only work on a primary. A call to any
/// of these (schema-qualified or not) keeps a statement on the primary.
const PRIMARY_FUNCTIONS: &[&str] = &[
    "currval",
    "dblink",
    "dblink_exec",
    "lastval",
    "lo_create",
    "lo_creat",
    "lo_export",
    "lo_from_bytea",
    "lo_import",
    "lo_open",
    "lo_put",
    "lo_truncate",
    "lo_unlink",
    "lowrite",
    "nextval",
    "pg_backup_start",
    "pg_backup_stop",
    "pg_advisory_xact_lock",
    "pg_advisory_xact_lock_shared",
    "pg_cancel_backend",
    "pg_copy_logical_replication_slot",
    "pg_copy_physical_replication_slot",
    "pg_create_logical_replication_slot",
    "pg_create_physical_replication_slot",
    "pg_create_restore_point",
    "pg_current_wal_flush_lsn",
    "pg_current_wal_insert_lsn",
    "pg_current_wal_lsn",
    "pg_current_xact_id",
    "pg_drop_replication_slot",
    "pg_export_snapshot",
    "pg_file_rename",
    "pg_file_unlink",
    "pg_file_write",
    "pg_log_backend_memory_contexts",
    "pg_log_standby_snapshot",
    "pg_logical_emit_message",
    "pg_notify",
    "pg_promote",
    "pg_reload_conf",
    "pg_replication_slot_advance",
    "pg_rotate_logfile",
    "pg_start_backup",
    "pg_stop_backup",
    "pg_switch_wal",
    "pg_terminate_backend",
    "pg_try_advisory_xact_lock",
    "pg_try_advisory_xact_lock_shared",
    "pg_wal_replay_pause",
    "pg_wal_replay_resume",
    "set_config",
    "setval",
    "txid_current",
];

/// Functions whose effect outlives the statement on the session that runs
/// it: session-level advisory locks, and connections kept by dblink.
/// (`set_config` is one unless its third argument is `true`.)
const SESSION_FUNCTIONS: &[&str] = &[
    "dblink_connect",
    "dblink_connect_u",
    "pg_advisory_lock",
    "pg_advisory_lock_shared",
    "pg_advisory_unlock",
    "pg_advisory_unlock_all",
    "pg_advisory_unlock_shared",
    "pg_try_advisory_lock",
    "pg_try_advisory_lock_shared",
];

/// Names of `PRIMARY_FUNCTIONS` families: every function starting so.
const PRIMARY_PREFIXES: &[&str] = &["pg_replication_origin_", "pg_stat_reset"];

/// SQL constructs that the parser reads as calls but that name no function
/// in `pg_catalog` (PostgreSQL's grammar turns them into expressions of
/// their own), all immutable or stable: nothing to look up.
const SYNTAX: &[&str] = &[
    "array",
    "coalesce",
    "current_catalog",
    "current_date",
    "current_role",
    "current_time",
    "current_timestamp",
    "current_user",
    "greatest",
    "grouping",
    "least",
    "localtime",
    "localtimestamp",
    "nullif",
    "row",
    "session_user",
    "system_user",
    "user",
    "xmlconcat",
    "xmlelement",
    "xmlexists",
    "xmlforest",
    "xmlparse",
    "xmlpi",
    "xmlroot",
    "xmlserialize",
];

/// Whether `call` needs the primary whatever its volatility (and whatever
/// the configuration declares).
pub(crate) fn needs_primary(call: &Call) -> bool {
    let name = call.function.name();
    PRIMARY_FUNCTIONS.contains(&name) || PRIMARY_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Whether `call` leaves state on the session that runs it.
pub(crate) fn leaves_session_state(call: &Call) -> bool {
    let name = call.function.name();
    SESSION_FUNCTIONS.contains(&name) || (name == "set_config" && !call.third_argument_true)
}

/// Whether `call` is SQL syntax rather than a call of a function.
pub(crate) fn is_syntax(call: &Call) -> bool {
    call.function.schema().is_none() && SYNTAX.contains(&call.function.name())
}
