//! What PostgreSQL says about functions: whether a call may run on a
//! replica. pgpool-II's rule, when neither of its lists is set: a VOLATILE
//! function may write, so a statement that calls one goes to the primary;
//! only IMMUTABLE and STABLE ones may go to a replica.
//!
//! [`lookup`] asks a server, resolving each name as the server would (in
//! the schema the call names, or in every schema of the session's
//! `search_path`, `pg_catalog` included). The router keeps the answers per
//! node; these are plain functions on a
//! [`tokio_postgres::Client`], like [`wal`](crate::wal), for harnesses.

use std::collections::HashMap;
use std::fmt;
use std::sync::RwLock;

use tokio_postgres::Client;

/// A function as a statement names it: an optional schema and the name,
/// both as PostgreSQL stores them (unquoted identifiers folded to lower
/// case).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FunctionName {
    schema: Option<String>,
    name: String,
}

impl FunctionName {
    /// `name` in `schema`, or wherever the `search_path` finds it.
    pub fn new(schema: Option<&str>, name: &str) -> Self {
        FunctionName {
            schema: schema.map(str::to_owned),
            name: name.to_owned(),
        }
    }

    /// `schema.name` or `name`, as a configuration lists it.
    pub fn parse(text: &str) -> Self {
        match text.rsplit_once('.') {
            Some((schema, name)) => FunctionName::new(Some(schema), name),
            None => FunctionName::new(None, text),
        }
    }

    /// The schema, if the name has one.
    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    /// The function's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this entry of a list covers `call` for sure: a name without a
    /// schema covers the name in any schema; `schema.name` covers calls that
    /// name that schema.
    pub(crate) fn covers(&self, call: &FunctionName) -> bool {
        self.name == call.name && (self.schema.is_none() || self.schema == call.schema)
    }

    /// Whether `call` may be this entry: it covers it, or the call names no
    /// schema and may resolve to this entry's.
    pub(crate) fn may_be(&self, call: &FunctionName) -> bool {
        self.covers(call) || (self.name == call.name && call.schema.is_none())
    }
}

impl fmt::Display for FunctionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.schema {
            Some(schema) => write!(f, "{schema}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// Whether calls of a function may run on a replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Volatility {
    /// Every function the name may resolve to is IMMUTABLE or STABLE, or a
    /// VOLATILE one of `pg_catalog` known not to write ([`READ_ONLY_BUILTINS`]).
    ReadOnly,
    /// One of them is VOLATILE: it may write.
    Volatile,
}

/// VOLATILE functions of `pg_catalog` that write nothing: their results
/// change from call to call, which a replica serves as well as the primary.
pub const READ_ONLY_BUILTINS: &[&str] = &[
    "clock_timestamp",
    "gen_random_uuid",
    "pg_get_wal_replay_pause_state",
    "pg_is_in_recovery",
    "pg_is_wal_replay_paused",
    "pg_last_wal_receive_lsn",
    "pg_last_wal_replay_lsn",
    "pg_last_xact_replay_timestamp",
    "pg_sleep",
    "pg_sleep_for",
    "pg_sleep_until",
    "random",
    "timeofday",
];

/// For each name, the most volatile function it may resolve to: every
/// function of that name in the schema the name gives, or in the schemas of
/// the session's `search_path` (`current_schemas(true)`, with `pg_catalog`
/// and the temporary schema), overloads included. NULL if there is none.
const LOOKUP: &str = "
SELECT f.i, max(CASE
    WHEN p.oid IS NULL THEN NULL
    WHEN p.provolatile = 'v'
         AND NOT (n.nspname = 'pg_catalog' AND p.proname::text = ANY($3::text[])) THEN 2
    ELSE 1 END)
FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS f(schema, name, i)
LEFT JOIN pg_namespace n
    ON (f.schema IS NOT NULL AND n.nspname = f.schema)
    OR (f.schema IS NULL AND n.nspname = ANY(current_schemas(true)))
LEFT JOIN pg_proc p ON p.pronamespace = n.oid AND p.proname = f.name
GROUP BY f.i
ORDER BY f.i";

/// Asks the server `client` is connected to about `names`, in one round
/// trip: for each, its [`Volatility`], or `None` if no function of that
/// name is visible there.
pub async fn lookup(
    client: &Client,
    names: &[FunctionName],
) -> Result<Vec<Option<Volatility>>, tokio_postgres::Error> {
    let schemas: Vec<Option<&str>> = names.iter().map(FunctionName::schema).collect();
    let functions: Vec<&str> = names.iter().map(FunctionName::name).collect();
    let rows = client
        .query(LOOKUP, &[&schemas, &functions, &READ_ONLY_BUILTINS])
        .await?;
    rows.iter()
        .map(|row| {
            Ok(row.try_get::<_, Option<i32>>(1)?.map(|v| match v {
                1 => Volatility::ReadOnly,
                _ => Volatility::Volatile,
            }))
        })
        .collect()
}

/// What one node said about the functions looked up there. A name the node
/// did not know is not kept: it is asked again next time (it may be a new
/// function a replica has not replayed yet).
#[derive(Default)]
pub(crate) struct Verdicts(RwLock<HashMap<FunctionName, Volatility>>);

impl Verdicts {
    /// What is known of `name`.
    pub(crate) fn get(&self, name: &FunctionName) -> Option<Volatility> {
        self.0.read().ok().and_then(|map| map.get(name).copied())
    }

    /// Keeps `verdict` for `name`, or forgets it when the node did not know
    /// the name.
    pub(crate) fn record(&self, name: &FunctionName, verdict: Option<Volatility>) {
        if let Ok(mut map) = self.0.write() {
            match verdict {
                Some(verdict) => map.insert(name.clone(), verdict),
                None => map.remove(name),
            };
        }
    }
}

/// The configuration's overrides of what servers say: functions declared
/// read-only (they may go to a replica) and declared writing (they keep a
/// statement on the primary).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Overrides {
    pub(crate) read_only: Vec<FunctionName>,
    pub(crate) write: Vec<FunctionName>,
}

impl Overrides {
    pub(crate) fn is_read_only(&self, call: &FunctionName) -> bool {
        self.read_only.iter().any(|entry| entry.covers(call))
    }

    /// Whether `call` may be a declared write function: an unqualified call
    /// counts if any schema's function of that name is declared.
    pub(crate) fn is_write(&self, call: &FunctionName) -> bool {
        self.write.iter().any(|entry| entry.may_be(call))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_entries_without_a_schema_cover_every_schema() {
        let bare = FunctionName::parse("create_order");
        let qualified = FunctionName::parse("shop.create_order");
        assert_eq!(qualified.schema(), Some("shop"));
        assert_eq!(qualified.to_string(), "shop.create_order");
        assert!(bare.covers(&qualified) && bare.covers(&bare));
        assert!(qualified.covers(&qualified) && !qualified.covers(&bare));
        assert!(!bare.covers(&FunctionName::parse("other")));
        assert!(
            qualified.may_be(&bare) && !qualified.may_be(&FunctionName::parse("a.create_order"))
        );
    }

    #[test]
    fn unknown_names_are_not_kept() {
        let verdicts = Verdicts::default();
        let name = FunctionName::parse("f");
        verdicts.record(&name, Some(Volatility::ReadOnly));
        assert_eq!(verdicts.get(&name), Some(Volatility::ReadOnly));
        verdicts.record(&name, None);
        assert_eq!(verdicts.get(&name), None);
    }
}
