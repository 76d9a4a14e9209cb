//! The classifier, statement by statement, and a property test: nothing the
//! parser cannot prove read-only is ever routed to a replica. Needs no
//! database.

use drr_core::{Classification, Reason, classify};
use proptest::prelude::*;

use Classification::{DependsOnFunctions, HintRefused, Primary, ReadOnly, Refused};

const TABLE: &[(&str, Classification)] = &[
    // Plain reads.
    ("SELECT 1", ReadOnly),
    ("select * from users where id = $1", ReadOnly),
    (
        "SELECT a, b FROM t JOIN u ON t.id = u.t_id WHERE u.x > 3 ORDER BY a LIMIT 10 OFFSET 5",
        ReadOnly,
    ),
    // Calls whose volatility the server decides.
    (
        "SELECT count(*) FROM t GROUP BY x HAVING count(*) > 1",
        DependsOnFunctions,
    ),
    ("SELECT * FROM (SELECT 1 AS x) AS s", ReadOnly),
    ("SELECT EXISTS (SELECT 1 FROM t WHERE id = $1)", ReadOnly),
    ("SELECT 1 UNION ALL SELECT 2", ReadOnly),
    ("SELECT 1 INTERSECT SELECT 1 EXCEPT SELECT 2", ReadOnly),
    ("WITH x AS (SELECT 1 AS a) SELECT a FROM x", ReadOnly),
    (
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT * FROM r",
        ReadOnly,
    ),
    ("VALUES (1, 'a'), (2, 'b')", ReadOnly),
    ("TABLE users", ReadOnly),
    ("table app.users", ReadOnly),
    (
        "TABLE users; DELETE FROM users",
        Primary(Reason::NotOneStatement),
    ),
    ("SHOW search_path", ReadOnly),
    ("SHOW transaction_isolation", ReadOnly),
    (
        "SELECT now(), lower('A'), coalesce(NULL, 1)",
        DependsOnFunctions,
    ),
    ("SELECT create_order($1)", DependsOnFunctions),
    ("SELECT shop.create_order($1)", DependsOnFunctions),
    ("SELECT * FROM create_order($1)", DependsOnFunctions),
    // SQL syntax that parses like a call names no function.
    (
        "SELECT coalesce(a, 1), nullif(b, 2), greatest(1, 2), CURRENT_TIMESTAMP FROM t",
        ReadOnly,
    ),
    (
        "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()",
        DependsOnFunctions,
    ),
    ("SELECT * FROM generate_series(1, 10)", DependsOnFunctions),
    ("SELECT id FROM t WHERE name ILIKE $1", ReadOnly),
    (
        "SELECT row_number() OVER (PARTITION BY a ORDER BY b) FROM t",
        DependsOnFunctions,
    ),
    ("SELECT DISTINCT ON (a) a, b FROM t ORDER BY a, b", ReadOnly),
    (
        "SELECT data->>'k' FROM docs WHERE data @> '{\"a\": 1}'",
        ReadOnly,
    ),
    ("SELECT $1::int + 1", ReadOnly),
    ("SELECT * FROM t WHERE id = ANY($1)", ReadOnly),
    ("  select 1  ;", ReadOnly),
    ("-- a comment\nSELECT 1", ReadOnly),
    ("/* a block comment */ SELECT 1", ReadOnly),
    ("SELECT 'nextval(''s'')' AS text_not_call", ReadOnly),
    ("SELECT \"nextval\" FROM t", ReadOnly),
    ("/* drr:replica */ SELECT * FROM t", ReadOnly),
    ("SELECT * FROM t LIMIT 1 /* drr:replica */", ReadOnly),
    // Writes and other statements that are not queries.
    ("INSERT INTO t VALUES (1)", Primary(Reason::NotAQuery)),
    ("INSERT INTO t SELECT * FROM u", Primary(Reason::NotAQuery)),
    (
        "UPDATE t SET a = 1 WHERE id = $1",
        Primary(Reason::NotAQuery),
    ),
    (
        "DELETE FROM t WHERE id = $1 RETURNING *",
        Primary(Reason::NotAQuery),
    ),
    (
        "MERGE INTO t USING u ON t.id = u.id WHEN MATCHED THEN DELETE",
        Primary(Reason::NotAQuery),
    ),
    ("CREATE TABLE t (id int)", Primary(Reason::NotAQuery)),
    (
        "CREATE TABLE t2 AS SELECT * FROM t",
        Primary(Reason::NotAQuery),
    ),
    ("DROP TABLE t", Primary(Reason::NotAQuery)),
    ("ALTER TABLE t ADD COLUMN b int", Primary(Reason::NotAQuery)),
    ("TRUNCATE t", Primary(Reason::NotAQuery)),
    // Transaction control and session state: refused.
    ("BEGIN", Refused(Reason::TransactionControl)),
    ("COMMIT", Refused(Reason::TransactionControl)),
    ("COMMIT PREPARED 'x'", Primary(Reason::NotAQuery)),
    ("SET search_path = app", Refused(Reason::SessionState)),
    ("SET LOCAL search_path = app", Primary(Reason::NotAQuery)),
    ("SET TRANSACTION READ ONLY", Primary(Reason::NotAQuery)),
    ("LISTEN c", Refused(Reason::SessionState)),
    ("CREATE TEMP TABLE t (a int)", Refused(Reason::SessionState)),
    (
        "CREATE OR REPLACE TEMPORARY VIEW v AS SELECT 1",
        Refused(Reason::SessionState),
    ),
    ("CREATE TABLE temp (a int)", Primary(Reason::NotAQuery)),
    ("SELECT * INTO TEMP t FROM u", Refused(Reason::SessionState)),
    (
        "/* drr:primary */ SELECT pg_advisory_lock(1)",
        Refused(Reason::SessionState),
    ),
    (
        "/* drr:replica */ DISCARD ALL",
        Refused(Reason::SessionState),
    ),
    (
        "LOCK TABLE t IN ACCESS EXCLUSIVE MODE",
        Primary(Reason::NotAQuery),
    ),
    ("COPY t FROM STDIN", Primary(Reason::NotAQuery)),
    ("EXPLAIN ANALYZE DELETE FROM t", Primary(Reason::NotAQuery)),
    ("GRANT SELECT ON t TO bob", Primary(Reason::NotAQuery)),
    ("VACUUM t", Primary(Reason::NotAQuery)),
    // Data-modifying CTEs.
    (
        "WITH ins AS (INSERT INTO t VALUES (1) RETURNING id) SELECT id FROM ins",
        Primary(Reason::DataModifyingCte),
    ),
    (
        "WITH d AS (DELETE FROM t RETURNING *) SELECT count(*) FROM d",
        Primary(Reason::DataModifyingCte),
    ),
    (
        "WITH u AS (UPDATE t SET a = 2 RETURNING *) SELECT * FROM u",
        Primary(Reason::DataModifyingCte),
    ),
    (
        "WITH a AS (SELECT 1), b AS (INSERT INTO t VALUES (1) RETURNING 1) SELECT * FROM a",
        Primary(Reason::DataModifyingCte),
    ),
    // Locking reads.
    (
        "SELECT * FROM t WHERE id = 1 FOR UPDATE",
        Primary(Reason::Locking),
    ),
    ("SELECT * FROM t FOR SHARE", Primary(Reason::Locking)),
    (
        "SELECT * FROM t FOR UPDATE SKIP LOCKED",
        Primary(Reason::Locking),
    ),
    (
        "SELECT * FROM t FOR UPDATE NOWAIT",
        Primary(Reason::Locking),
    ),
    (
        "SELECT * FROM (SELECT * FROM t FOR UPDATE) s",
        Primary(Reason::Locking),
    ),
    (
        "WITH l AS (SELECT * FROM t FOR UPDATE) SELECT * FROM l",
        Primary(Reason::Locking),
    ),
    // SELECT INTO creates a table.
    ("SELECT * INTO new_t FROM t", Primary(Reason::SelectInto)),
    // Functions that write or need the primary.
    ("SELECT nextval('seq')", Primary(Reason::WritingFunction)),
    ("SELECT NEXTVAL('seq')", Primary(Reason::WritingFunction)),
    (
        "SELECT pg_catalog.nextval('seq')",
        Primary(Reason::WritingFunction),
    ),
    ("SELECT setval('seq', 10)", Primary(Reason::WritingFunction)),
    ("SELECT currval('seq')", Primary(Reason::WritingFunction)),
    (
        "SELECT * FROM nextval('seq')",
        Primary(Reason::WritingFunction),
    ),
    (
        "SELECT id, nextval('s') FROM t",
        Primary(Reason::WritingFunction),
    ),
    (
        "SELECT * FROM t WHERE id = (SELECT nextval('s'))",
        Primary(Reason::WritingFunction),
    ),
    ("SELECT pg_advisory_lock(42)", Refused(Reason::SessionState)),
    (
        "SELECT pg_advisory_xact_lock(42)",
        Primary(Reason::WritingFunction),
    ),
    (
        "SELECT pg_try_advisory_xact_lock(1, 2)",
        Primary(Reason::WritingFunction),
    ),
    (
        "SELECT pg_notify('chan', 'msg')",
        Primary(Reason::WritingFunction),
    ),
    (
        "SELECT set_config('search_path', 'x', false)",
        Refused(Reason::SessionState),
    ),
    (
        "SELECT set_config('search_path', 'x', true)",
        Primary(Reason::WritingFunction),
    ),
    (
        "SELECT set_config('search_path', 'x', $1)",
        Refused(Reason::SessionState),
    ),
    ("SELECT txid_current()", Primary(Reason::WritingFunction)),
    (
        "SELECT pg_current_wal_lsn()",
        Primary(Reason::WritingFunction),
    ),
    (
        "SELECT pg_stat_reset_shared('bgwriter')",
        Primary(Reason::WritingFunction),
    ),
    ("SELECT lo_create(0)", Primary(Reason::WritingFunction)),
    // Admin and replica-only functions never go to a replica (more in
    // the unit tests of classify/mod.rs).
    (
        "SELECT pg_terminate_backend(1)",
        Primary(Reason::WritingFunction),
    ),
    ("SELECT pg_reload_conf()", Primary(Reason::WritingFunction)),
    (
        "SELECT CASE WHEN $1 THEN nextval('s') ELSE 0 END",
        Primary(Reason::WritingFunction),
    ),
    ("VALUES (nextval('s'))", Primary(Reason::WritingFunction)),
    // Hints.
    ("/* drr:primary */ SELECT 1", Primary(Reason::PrimaryHint)),
    (
        "SELECT * FROM t /* drr:primary */",
        Primary(Reason::PrimaryHint),
    ),
    (
        "/* drr:primary */ /* drr:replica */ SELECT 1",
        Primary(Reason::PrimaryHint),
    ),
    (
        "/* drr:replica */ INSERT INTO t VALUES (1)",
        HintRefused(Reason::NotAQuery),
    ),
    (
        "/* drr:replica */ SELECT nextval('s')",
        HintRefused(Reason::WritingFunction),
    ),
    ("/* drr:replica */ SELEC 1", HintRefused(Reason::NotAQuery)),
    (
        "/* drr:replica */ SELECT (1",
        HintRefused(Reason::Unparsable),
    ),
    ("(SELECT 1)", ReadOnly),
    ("/* outer /* nested */ still comment */ SELECT 1", ReadOnly),
    (
        "-- note\n/* another */ INSERT INTO t VALUES (1)",
        Primary(Reason::NotAQuery),
    ),
    // Several statements, none, or nonsense.
    ("SELECT 1; SELECT 2", Primary(Reason::NotOneStatement)),
    ("SELECT 1; DELETE FROM t", Primary(Reason::NotOneStatement)),
    ("", Primary(Reason::NotOneStatement)),
    ("-- only a comment", Primary(Reason::NotOneStatement)),
    ("SELEC 1", Primary(Reason::NotAQuery)),
    ("SELECT * FROM", Primary(Reason::Unparsable)),
    ("SELECT (1", Primary(Reason::Unparsable)),
    ("SELECT 'unterminated", Primary(Reason::Unparsable)),
    ("'unterminated", Primary(Reason::Unparsable)),
];

#[test]
fn classification_table() {
    assert!(
        TABLE.len() >= 60,
        "the table should cover at least 60 statements"
    );
    let wrong: Vec<String> = TABLE
        .iter()
        .filter_map(|&(sql, expected)| {
            let got = classify(sql);
            (got != expected).then(|| format!("{sql:?}: expected {expected:?}, got {got:?}"))
        })
        .collect();
    assert!(wrong.is_empty(), "misclassified:\n{}", wrong.join("\n"));
}

/// Statements that must never reach a replica, as templates for the
/// property tests.
const WRITES: &[&str] = &[
    "INSERT INTO t VALUES (1)",
    "UPDATE t SET a = 1",
    "DELETE FROM t",
    "SELECT nextval('s')",
    "SELECT * FROM t FOR UPDATE",
    "WITH x AS (INSERT INTO t VALUES (1) RETURNING 1) SELECT * FROM x",
    "SELECT * INTO n FROM t",
    "CREATE TABLE t (a int)",
];

proptest! {
    /// Arbitrary text: whatever it is, if it is routed to a replica then the
    /// parser accepted it as exactly one statement that is a query or SHOW.
    #[test]
    fn arbitrary_text_reaches_a_replica_only_if_it_parses_as_one_query(sql in ".{0,80}") {
        if classify(&sql).is_read_only() {
            let parsed = sqlparser::parser::Parser::parse_sql(&sqlparser::dialect::PostgreSqlDialect {}, &sql);
            let statements = parsed.expect("read-only text must parse");
            prop_assert_eq!(statements.len(), 1);
            let is_query = matches!(
                statements[0],
                sqlparser::ast::Statement::Query(_) | sqlparser::ast::Statement::ShowVariable { .. }
            );
            prop_assert!(is_query, "{:?} routed to a replica", sql);
        }
    }

    /// SQL-shaped noise built from keywords and fragments.
    #[test]
    fn fragment_soup_reaches_a_replica_only_without_write_constructs(
        parts in proptest::collection::vec(prop_oneof![
            Just("SELECT"), Just("INSERT"), Just("INTO"), Just("t"), Just("("), Just(")"), Just(","),
            Just("1"), Just("FROM"), Just("WITH"), Just("x"), Just("AS"), Just("UPDATE"), Just("SET"),
            Just("a"), Just("="), Just("DELETE"), Just("FOR"), Just("SHARE"), Just("RETURNING"),
            Just("nextval('s')"), Just(";"), Just("VALUES"), Just("WHERE"), Just("--"), Just("/*"), Just("*/"),
        ], 1..14)
    ) {
        let sql = parts.join(" ");
        if classify(&sql).is_read_only() {
            // Then the parser read one query, and printing it back shows no
            // write construct. Keywords alone are just names (`SELECT
            // insert`, `SELECT delete FROM values`), and a query holds a
            // data-modifying statement only as a parenthesized CTE body.
            let parsed = sqlparser::parser::Parser::parse_sql(&sqlparser::dialect::PostgreSqlDialect {}, &sql);
            let printed = parsed.expect("read-only text must parse")[0].to_string().to_uppercase();
            for construct in ["(INSERT INTO", "(DELETE FROM", "(UPDATE ", "FOR UPDATE", "FOR SHARE", "NEXTVAL(", " INTO "] {
                prop_assert!(!printed.contains(construct), "{} was routed to a replica", sql);
            }
        }
    }

    /// A write stays on the primary whatever comments, whitespace or
    /// (non-hint) prefixes surround it.
    #[test]
    fn writes_stay_on_the_primary_under_any_decoration(
        write in proptest::sample::select(WRITES),
        before in "[ \t\n]{0,3}(/\\* [a-z ]{0,10} \\*/)?[ \t\n]{0,3}",
        after in "[ \t\n]{0,3}(;)?[ \t\n]{0,3}(-- [a-z ]{0,10})?",
    ) {
        let sql = format!("{before}{write}{after}");
        prop_assert!(!classify(&sql).is_read_only(), "{:?} was routed to a replica", sql);
    }

    /// Appending any statement to a read makes it not one statement, so it
    /// stays on the primary.
    #[test]
    fn a_read_followed_by_anything_stays_on_the_primary(write in proptest::sample::select(WRITES)) {
        let sql = format!("SELECT 1; {write}");
        prop_assert!(!classify(&sql).is_read_only());
    }
}
