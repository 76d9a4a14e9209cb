//! Functions the classifier knows by name, whatever the server says about
//! them: those that need the primary, and those that leave state on the
//! session that calls them.

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
    "pg_advisory_xact_lock",
    "pg_advisory_xact_lock_shared",
    "pg_cancel_backend",
    "pg_create_logical_replication_slot",
    "pg_create_physical_replication_slot",
    "pg_create_restore_point",
    "pg_current_wal_flush_lsn",
    "pg_current_wal_insert_lsn",
    "pg_current_wal_lsn",
    "pg_current_xact_id",
    "pg_drop_replication_slot",
    "pg_export_snapshot",
    "pg_logical_emit_message",
    "pg_notify",
    "pg_reload_conf",
    "pg_replication_origin_create",
    "pg_replication_origin_drop",
    "pg_rotate_logfile",
    "pg_switch_wal",
    "pg_terminate_backend",
    "pg_try_advisory_xact_lock",
    "pg_try_advisory_xact_lock_shared",
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

/// Whether `call` needs the primary whatever its volatility.
pub(crate) fn needs_primary(call: &Call) -> bool {
    PRIMARY_FUNCTIONS.contains(&call.name.as_str()) || call.name.starts_with("pg_stat_reset")
}

/// Whether `call` leaves state on the session that runs it.
pub(crate) fn leaves_session_state(call: &Call) -> bool {
    SESSION_FUNCTIONS.contains(&call.name.as_str())
        || (call.name == "set_config" && !call.third_argument_true)
}
