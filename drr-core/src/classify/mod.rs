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
use std::sync::RwLock;

use sqlparser::ast::Statement;
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

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
    /// It calls a function that writes or needs the primary (`nextval`, ...).
    WritingFunction,
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
pub fn classify(sql: &str) -> Classification {
    let words = leading_words::<5>(sql);
    if let Some(reason) = session::refusal(words) {
        return Classification::Refused(reason);
    }
    match check(sql, words[0]) {
        Err(Reason::SessionState) => Classification::Refused(Reason::SessionState),
        _ if sql.contains("drr:primary") => Classification::Primary(Reason::PrimaryHint),
        Ok(()) => Classification::ReadOnly,
        Err(reason) if sql.contains(REPLICA_HINT) => Classification::HintRefused(reason),
        Err(reason) => Classification::Primary(reason),
    }
}

/// Whether `sql`, starting with `keyword`, is one query that may run on a
/// replica; if not, why.
fn check(sql: &str, keyword: &str) -> Result<(), Reason> {
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
        Statement::Query(_) => check_query(&walk::facts(statement)),
        Statement::ShowVariable { .. } => Ok(()),
        _ => Err(Reason::NotAQuery),
    }
}

/// Whether a query with `facts` may run on a replica; if not, why, session
/// state first (it is refused whatever else holds).
fn check_query(facts: &walk::Facts) -> Result<(), Reason> {
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
    if facts.calls.iter().any(known::needs_primary) {
        return Err(Reason::WritingFunction);
    }
    Ok(())
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
