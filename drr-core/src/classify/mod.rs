//! Statement classification: may this SQL run on a replica?
//!
//! Only statements the PostgreSQL grammar proves read-only go to a replica.
//! Everything else goes to the primary, including whatever fails to parse,
//! except statements that control a transaction or leave state on their
//! connection: automatic routing refuses those.

mod known;
mod session;
mod walk;
mod words;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use sqlparser::ast::Statement;
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use crate::functions::{FunctionName, Overrides};
use words::{leading_words, table_shorthand};

/// The comment that sends a statement to the primary whatever it is.
pub const PRIMARY_HINT: &str = "/* drr:primary */";
/// The comment that asserts a statement is read-only: if the classifier
/// cannot prove it, the call fails instead of silently using the primary.
pub const REPLICA_HINT: &str = "/* drr:replica */";

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
    /// A query that may run on a replica if every function it calls is
    /// IMMUTABLE or STABLE on the server (or declared read-only in the
    /// configuration): the router asks the server, and sends it to the
    /// primary if one of them is VOLATILE.
    DependsOnFunctions,
    /// Controls a transaction or leaves state on its connection
    /// ([`Reason::TransactionControl`], [`Reason::SessionState`]): automatic
    /// routing refuses it, since each call may run on another pooled
    /// connection.
    Refused(Reason),
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
    /// It calls a function that writes or needs the primary (`nextval`,
    /// `pg_promote`, a VOLATILE function, one the configuration lists in
    /// `write_functions`, ...).
    WritingFunction,
    /// It wrote on a replica, which refused it (SQLSTATE 25006,
    /// `read_only_sql_transaction`): a function or view it uses writes.
    WroteOnReplica,
    /// It holds more than one statement, or none.
    NotOneStatement,
    /// The parser could not read it.
    Unparsable,
    /// It controls a transaction (`BEGIN`, `COMMIT`, `SAVEPOINT`, ...).
    TransactionControl,
    /// It leaves state on the session that runs it (`SET` without `LOCAL`,
    /// `LISTEN`, `PREPARE`, `DECLARE`, a temporary table, a session-level
    /// advisory lock, ...).
    SessionState,
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
            Reason::WroteOnReplica => "wrote on a replica, which refused it",
            Reason::NotOneStatement => "is not exactly one statement",
            Reason::Unparsable => "cannot be parsed",
            Reason::TransactionControl => "controls a transaction",
            Reason::SessionState => "leaves state on its connection",
        })
    }
}

/// Decides whether `sql` may run on a replica.
///
/// This parses every time; the router keeps results in a per-text cache.
/// Functions are judged by name only here; for a query whose only doubt is
/// the functions it calls, the answer is
/// [`Classification::DependsOnFunctions`], which the router settles by
/// asking the server ([`functions::lookup`](crate::functions::lookup)).
pub fn classify(sql: &str) -> Classification {
    analyze(sql, &Overrides::default()).classification
}

/// A statement's classification, with the functions the server must be
/// asked about when it is [`Classification::DependsOnFunctions`]. Cheap to
/// clone: without functions, no allocation and no reference count.
#[derive(Debug, Clone)]
pub(crate) struct Analysis {
    pub(crate) classification: Classification,
    pub(crate) functions: Option<Arc<[FunctionName]>>,
    /// It carries [`REPLICA_HINT`].
    pub(crate) replica_hint: bool,
}

/// Classifies `sql`, with the configuration's `overrides` of what servers
/// say about functions.
pub(crate) fn analyze(sql: &str, overrides: &Overrides) -> Analysis {
    let replica_hint = sql.contains(REPLICA_HINT);
    let words = leading_words::<5>(sql);
    let (classification, functions) = match session::refusal(words) {
        Some(reason) => (Classification::Refused(reason), Vec::new()),
        None => match check(sql, words[0], overrides) {
            Err(Reason::SessionState) => {
                (Classification::Refused(Reason::SessionState), Vec::new())
            }
            _ if sql.contains("drr:primary") => {
                (Classification::Primary(Reason::PrimaryHint), Vec::new())
            }
            Ok(functions) if functions.is_empty() => (Classification::ReadOnly, functions),
            Ok(functions) => (Classification::DependsOnFunctions, functions),
            Err(reason) if replica_hint => (Classification::HintRefused(reason), Vec::new()),
            Err(reason) => (Classification::Primary(reason), Vec::new()),
        },
    };
    Analysis {
        classification,
        functions: (!functions.is_empty()).then(|| functions.into()),
        replica_hint,
    }
}

/// Whether `sql`, starting with `keyword`, is one query that may run on a
/// replica, given what the server says about the functions returned; if
/// not, why.
fn check(sql: &str, keyword: &str, overrides: &Overrides) -> Result<Vec<FunctionName>, Reason> {
    // Only these can start a read: anything else goes to the primary
    // without the cost of a parse.
    let may_read = ["", "select", "with", "values", "table", "show"];
    if !may_read.iter().any(|k| keyword.eq_ignore_ascii_case(k)) {
        return Err(Reason::NotAQuery);
    }
    let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql)
        .or_else(|err| match table_shorthand(sql) {
            Some(expanded) => Parser::parse_sql(&PostgreSqlDialect {}, &expanded),
            None => Err(err),
        })
        .map_err(|_| Reason::Unparsable)?;
    let [statement] = statements.as_slice() else {
        return Err(Reason::NotOneStatement);
    };
    match statement {
        Statement::Query(_) => check_query(&walk::facts(statement), overrides),
        Statement::ShowVariable { .. } => Ok(Vec::new()),
        _ => Err(Reason::NotAQuery),
    }
}

/// Whether a query with `facts` may run on a replica; if not, why, session
/// state first (it is refused whatever else holds). On success, the
/// functions whose volatility decides it.
fn check_query(facts: &walk::Facts, overrides: &Overrides) -> Result<Vec<FunctionName>, Reason> {
    if facts.select_into == Some(true) || facts.calls.iter().any(known::leaves_session_state) {
        return Err(Reason::SessionState);
    }
    if facts.data_modifying {
        return Err(Reason::DataModifyingCte);
    }
    if facts.locking {
        return Err(Reason::Locking);
    }
    if facts.select_into.is_some() {
        return Err(Reason::SelectInto);
    }
    let writes =
        |call: &walk::Call| known::needs_primary(call) || overrides.is_write(&call.function);
    if facts.calls.iter().any(writes) {
        return Err(Reason::WritingFunction);
    }
    let mut functions: Vec<FunctionName> = facts
        .calls
        .iter()
        .filter(|call| !known::is_syntax(call) && !overrides.is_read_only(&call.function))
        .map(|call| call.function.clone())
        .collect();
    functions.sort();
    functions.dedup();
    Ok(functions)
}

/// Analyses by SQL text, so the hot path parses each text once.
///
/// Bounded: when full it starts over, so applications that build SQL with
/// inlined literals cannot grow it without limit.
pub(crate) struct Cache {
    map: RwLock<HashMap<Box<str>, Analysis>>,
    capacity: usize,
    overrides: Overrides,
}

impl Cache {
    pub(crate) fn new(capacity: usize, overrides: Overrides) -> Self {
        Cache {
            map: RwLock::new(HashMap::new()),
            capacity,
            overrides,
        }
    }

    pub(crate) fn analyze(&self, sql: &str) -> Analysis {
        if let Some(found) = self.map.read().ok().and_then(|map| map.get(sql).cloned()) {
            return found;
        }
        let analysis = analyze(sql, &self.overrides);
        self.keep(sql, analysis.clone());
        analysis
    }

    /// Sends `sql` to the primary from now on, for `reason` (a replica
    /// refused it as a write, or a function it calls is volatile).
    pub(crate) fn remember_primary(&self, sql: &str, reason: Reason) {
        let analysis = Analysis {
            classification: Classification::Primary(reason),
            functions: None,
            replica_hint: false,
        };
        self.keep(sql, analysis);
    }

    fn keep(&self, sql: &str, analysis: Analysis) {
        if self.capacity > 0
            && let Ok(mut map) = self.map.write()
        {
            if map.len() >= self.capacity {
                map.clear();
            }
            map.insert(sql.into(), analysis);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overrides(read_only: &[&str], write: &[&str]) -> Overrides {
        let names = |list: &[&str]| list.iter().map(|n| FunctionName::parse(n)).collect();
        Overrides {
            read_only: names(read_only),
            write: names(write),
        }
    }

    #[test]
    fn admin_and_replica_only_functions_never_go_to_a_replica() {
        for sql in [
            "SELECT pg_promote()",
            "SELECT pg_catalog.pg_wal_replay_pause()",
            "SELECT pg_wal_replay_resume()",
            "SELECT pg_log_standby_snapshot()",
            "SELECT pg_replication_origin_advance('o', '0/1')",
            "SELECT pg_backup_start('label')",
        ] {
            assert_eq!(
                classify(sql),
                Classification::Primary(Reason::WritingFunction),
                "{sql}"
            );
        }
    }

    #[test]
    fn the_configuration_decides_before_the_server() {
        let sql = "SELECT f(1), shop.g(2)";
        let plain = analyze(sql, &Overrides::default());
        assert_eq!(plain.classification, Classification::DependsOnFunctions);
        let names: Vec<String> = plain
            .functions
            .iter()
            .flat_map(|f| f.iter())
            .map(ToString::to_string)
            .collect();
        assert_eq!(names, ["f", "shop.g"]);
        let writes = analyze(sql, &overrides(&[], &["g"]));
        assert_eq!(
            writes.classification,
            Classification::Primary(Reason::WritingFunction)
        );
        let reads = analyze(sql, &overrides(&["f", "shop.g"], &[]));
        assert_eq!(reads.classification, Classification::ReadOnly);
        let partly = analyze(sql, &overrides(&["f"], &[]));
        assert_eq!(partly.functions.map(|f| f.len()), Some(1));
        // Admin functions stay on the primary, even declared read-only.
        let admin = analyze("SELECT pg_promote()", &overrides(&["pg_promote"], &[]));
        assert_eq!(
            admin.classification,
            Classification::Primary(Reason::WritingFunction)
        );
    }
}
