//! Statement classification: may this SQL run on a replica?
//!
//! Only statements the PostgreSQL grammar proves read-only go to a replica.
//! Everything else goes to the primary, including whatever fails to parse.

use std::collections::HashMap;
use std::fmt;
use std::ops::ControlFlow;
use std::sync::RwLock;

use sqlparser::ast::{Expr, ObjectName, Query, Select, Statement, TableFactor, Visit, Visitor};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

/// The comment that sends a statement to the primary whatever it is.
pub const PRIMARY_HINT: &str = "/* drr:primary */";
/// The comment that asserts a statement is read-only: if the classifier
/// cannot prove it, the call fails instead of silently using the primary.
pub const REPLICA_HINT: &str = "/* drr:replica */";

/// Functions that write, take locks, or only work on a primary. A call to any
/// of these (schema-qualified or not, any case) keeps a statement on the
/// primary.
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
    "pg_advisory_lock",
    "pg_advisory_lock_shared",
    "pg_advisory_unlock",
    "pg_advisory_unlock_all",
    "pg_advisory_unlock_shared",
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
    "pg_try_advisory_lock",
    "pg_try_advisory_lock_shared",
    "pg_try_advisory_xact_lock",
    "pg_try_advisory_xact_lock_shared",
    "set_config",
    "setval",
    "txid_current",
];

/// Where a statement may run, as decided by [`classify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Classification {
    /// Proven read-only: a replica may serve it.
    ReadOnly,
    /// Must run on the primary, for the given reason.
    Primary(Reason),
    /// Carries [`REPLICA_HINT`] but is not provably read-only: running it is
    /// refused.
    HintRefused(Reason),
}

impl Classification {
    /// Whether a replica may serve the statement.
    pub const fn is_read_only(self) -> bool {
        matches!(self, Classification::ReadOnly)
    }
}

/// Why a statement is not sent to a replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// It carries [`PRIMARY_HINT`].
    PrimaryHint,
    /// It is not a query (`INSERT`, `CREATE`, `SET`, `BEGIN`, ...).
    NotAQuery,
    /// It locks rows (`FOR UPDATE`, `FOR SHARE`, ...).
    Locking,
    /// It contains a data-modifying statement, e.g. in a `WITH` clause.
    DataModifyingCte,
    /// It creates a table (`SELECT ... INTO`).
    SelectInto,
    /// It calls a function that writes or needs the primary (`nextval`, ...).
    WritingFunction,
    /// It holds more than one statement, or none.
    NotOneStatement,
    /// The parser could not read it.
    Unparsable,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reason::PrimaryHint => "carries the /* drr:primary */ hint",
            Reason::NotAQuery => "is not a query",
            Reason::Locking => "locks rows",
            Reason::DataModifyingCte => "contains a data-modifying statement",
            Reason::SelectInto => "creates a table with SELECT INTO",
            Reason::WritingFunction => "calls a function that writes or needs the primary",
            Reason::NotOneStatement => "is not exactly one statement",
            Reason::Unparsable => "cannot be parsed",
        })
    }
}

/// Decides whether `sql` may run on a replica.
///
/// This parses every time; the router keeps results in a per-text cache.
pub fn classify(sql: &str) -> Classification {
    if sql.contains("drr:primary") {
        return Classification::Primary(Reason::PrimaryHint);
    }
    match parse_and_check(sql) {
        Ok(()) => Classification::ReadOnly,
        Err(reason) if sql.contains(REPLICA_HINT) => Classification::HintRefused(reason),
        Err(reason) => Classification::Primary(reason),
    }
}

fn parse_and_check(sql: &str) -> Result<(), Reason> {
    // Only these can start a read: anything else goes to the primary
    // without the cost of a parse.
    let keyword = first_keyword(sql);
    let may_read = ["", "select", "with", "values", "table", "show"];
    if !may_read.iter().any(|k| keyword.eq_ignore_ascii_case(k)) {
        return Err(Reason::NotAQuery);
    }
    let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql)
        .or_else(|err| match table_shorthand(sql) {
            // The parser lacks `TABLE name`, PostgreSQL's `SELECT * FROM name`.
            Some(expanded) => Parser::parse_sql(&PostgreSqlDialect {}, &expanded),
            None => Err(err),
        })
        .map_err(|_| Reason::Unparsable)?;
    let [statement] = statements.as_slice() else {
        return Err(Reason::NotOneStatement);
    };
    match statement {
        Statement::Query(_) => match statement.visit(&mut ReadOnlyCheck) {
            ControlFlow::Continue(()) => Ok(()),
            ControlFlow::Break(reason) => Err(reason),
        },
        Statement::ShowVariable { .. } => Ok(()),
        _ => Err(Reason::NotAQuery),
    }
}

/// The first word of `sql` after whitespace and comments; empty if it does
/// not start with a letter (a parenthesis, say), which leaves the decision to
/// the parser.
fn first_keyword(sql: &str) -> &str {
    let mut rest = sql.trim_start();
    loop {
        if let Some(comment) = rest.strip_prefix("--") {
            rest = comment
                .split_once('\n')
                .map_or("", |(_, after)| after)
                .trim_start();
        } else if rest.starts_with("/*") {
            rest = after_block_comment(rest).trim_start();
        } else {
            break;
        }
    }
    let end = rest
        .find(|c: char| !c.is_ascii_alphabetic())
        .unwrap_or(rest.len());
    &rest[..end]
}

/// The text after the block comment `sql` starts with, counting nested
/// comments as PostgreSQL does; empty if it never ends.
fn after_block_comment(sql: &str) -> &str {
    let bytes = sql.as_bytes();
    let (mut depth, mut i) = (0_usize, 0);
    while i + 1 < bytes.len() {
        match (bytes[i], bytes[i + 1]) {
            (b'/', b'*') => {
                depth += 1;
                i += 2;
            }
            (b'*', b'/') => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return &sql[i..];
                }
            }
            _ => i += 1,
        }
    }
    ""
}

/// `TABLE name` spelled as `SELECT * FROM name`.
fn table_shorthand(sql: &str) -> Option<String> {
    let trimmed = sql.trim_start();
    let keyword = trimmed.get(..6)?;
    let rest = &trimmed[6..];
    (keyword.eq_ignore_ascii_case("TABLE ") || keyword.eq_ignore_ascii_case("TABLE\n"))
        .then(|| format!("SELECT * FROM {rest}"))
}

/// Walks a query and stops at the first thing that needs the primary.
struct ReadOnlyCheck;

impl Visitor for ReadOnlyCheck {
    type Break = Reason;

    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<Reason> {
        // Nested statements other than queries are data-modifying CTEs and
        // their kin (`WITH x AS (INSERT ...) SELECT ...`).
        match statement {
            Statement::Query(_) => ControlFlow::Continue(()),
            _ => ControlFlow::Break(Reason::DataModifyingCte),
        }
    }

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<Reason> {
        if query.locks.is_empty() && query.for_clause.is_none() {
            ControlFlow::Continue(())
        } else {
            ControlFlow::Break(Reason::Locking)
        }
    }

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<Reason> {
        if select.into.is_some() {
            ControlFlow::Break(Reason::SelectInto)
        } else {
            ControlFlow::Continue(())
        }
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<Reason> {
        match expr {
            Expr::Function(function) => check_function(&function.name),
            _ => ControlFlow::Continue(()),
        }
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<Reason> {
        // `FROM nextval('s')` parses as a table with arguments.
        match factor {
            TableFactor::Table { name, .. } | TableFactor::Function { name, .. } => {
                check_function(name)
            }
            _ => ControlFlow::Continue(()),
        }
    }
}

fn check_function(name: &ObjectName) -> ControlFlow<Reason> {
    let last = name.0.last().and_then(|part| part.as_ident());
    match last {
        Some(ident) if is_primary_function(&ident.value) => {
            ControlFlow::Break(Reason::WritingFunction)
        }
        _ => ControlFlow::Continue(()),
    }
}

fn is_primary_function(name: &str) -> bool {
    PRIMARY_FUNCTIONS
        .iter()
        .any(|f| f.eq_ignore_ascii_case(name))
        || name.to_ascii_lowercase().starts_with("pg_stat_reset")
}

/// Classifications by SQL text, so the hot path parses each text once.
///
/// Bounded: when full it starts over, so applications that build SQL with
/// inlined literals cannot grow it without limit.
pub(crate) struct Cache {
    map: RwLock<HashMap<Box<str>, Classification>>,
    capacity: usize,
}

impl Cache {
    pub(crate) fn new(capacity: usize) -> Self {
        Cache {
            map: RwLock::new(HashMap::new()),
            capacity,
        }
    }

    pub(crate) fn classify(&self, sql: &str) -> Classification {
        if let Some(found) = self.map.read().ok().and_then(|map| map.get(sql).copied()) {
            return found;
        }
        let classification = classify(sql);
        if self.capacity > 0
            && let Ok(mut map) = self.map.write()
        {
            if map.len() >= self.capacity {
                map.clear();
            }
            map.insert(sql.into(), classification);
        }
        classification
    }
}
