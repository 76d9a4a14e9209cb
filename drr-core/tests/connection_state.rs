//! Pooled connections carry no transaction and no session state from one
//! user to the next: automatic routing refuses statements that would leave
//! either behind, and a connection handed out explicitly is checked and
//! reset when it comes back, and closed if it is in a transaction. Against
//! the shared stack.
//! Run through `cargo xtask test` (see `support::stack`).

mod support;

use drr_core::testing::TestStack;
use drr_core::{Router, RouterConfig};
use support::{direct, stack, unique_name};

/// A table on the primary only: these tests never read it from a replica.
struct Table {
    name: String,
    primary_url: String,
}

impl Table {
    async fn create(stack: &TestStack) -> Table {
        let name = unique_name("drr_core_state");
        direct(stack.primary_url())
            .await
            .batch_execute(&format!("CREATE TABLE \"{name}\" (id bigint PRIMARY KEY)"))
            .await
            .expect("create table");
        Table {
            name,
            primary_url: stack.primary_url().to_owned(),
        }
    }

    fn insert(&self, id: i64) -> String {
        format!("INSERT INTO \"{}\" VALUES ({id})", self.name)
    }

    /// The ids committed, as another connection sees them.
    async fn committed(&self) -> Vec<i64> {
        direct(&self.primary_url)
            .await
            .query(
                &format!("SELECT id FROM \"{}\" ORDER BY id", self.name),
                &[],
            )
            .await
            .expect("select")
            .iter()
            .map(|row| row.get(0))
            .collect()
    }

    async fn drop(self) {
        direct(&self.primary_url)
            .await
            .batch_execute(&format!("DROP TABLE IF EXISTS \"{}\"", self.name))
            .await
            .expect("drop table");
    }
}

/// A router whose every node has a single pooled connection, so that each
/// call reuses the connection of the last.
async fn one_connection_router(stack: &TestStack) -> Router {
    let config: RouterConfig = stack
        .router_config()
        .expect("the stack's URLs are valid")
        .pool_size(1);
    Router::connect(config).await.expect("router")
}

/// The search_path of a fresh connection to `url`.
async fn default_search_path(url: &str) -> String {
    direct(url)
        .await
        .query_one("SHOW search_path", &[])
        .await
        .expect("show")
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn begin_through_automatic_routing_loses_no_write() {
    let stack = stack();
    let table = Table::create(&stack).await;
    let router = one_connection_router(&stack).await;

    let begin = router.execute("BEGIN", &[]).await;
    router
        .execute(&table.insert(1), &[])
        .await
        .expect("a write after BEGIN");
    assert_eq!(
        table.committed().await,
        [1],
        "the write after BEGIN was not committed (BEGIN gave {begin:?})"
    );
    let err = begin.expect_err("BEGIN through automatic routing ran");
    assert!(err.is_session_statement(), "{err}");
    assert!(err.to_string().contains("`transaction()`"), "{err}");
    table.drop().await;
}

/// Statements that control a transaction or leave state on their
/// connection are refused through every automatic-routing call, on the
/// router and on a session, before anything reaches a server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_and_session_statements_are_refused() {
    let stack = stack();
    let router = one_connection_router(&stack).await;
    let session = router.session();
    let refused = [
        "BEGIN",
        "begin isolation level serializable",
        "START TRANSACTION",
        "COMMIT",
        "END",
        "ROLLBACK",
        "ABORT",
        "SAVEPOINT s",
        "RELEASE SAVEPOINT s",
        "ROLLBACK TO SAVEPOINT s",
        "PREPARE TRANSACTION 'x'",
        "SET search_path = app",
        "/* drr:primary */ SET search_path = app",
        "SET SESSION statement_timeout = 1000",
        "SET ROLE postgres",
        "SET SESSION AUTHORIZATION DEFAULT",
        "RESET ALL",
        "DISCARD ALL",
        "LISTEN channel",
        "UNLISTEN *",
        "PREPARE p AS SELECT 1",
        "EXECUTE p",
        "DEALLOCATE p",
        "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
        "FETCH c",
        "CLOSE c",
        "CREATE TEMP TABLE t (a int)",
        "create temporary table t (a int)",
        "CREATE GLOBAL TEMPORARY TABLE t (a int)",
        "CREATE OR REPLACE TEMP VIEW v AS SELECT 1",
        "SELECT 1 AS a INTO TEMP t",
        "SELECT pg_advisory_lock(1)",
        "SELECT pg_try_advisory_lock(1, 2)",
        "SELECT set_config('search_path', 'app', false)",
    ];
    for sql in refused {
        for result in [
            router.execute(sql, &[]).await.map(drop),
            router.query(sql, &[]).await.map(drop),
            session.execute(sql, &[]).await.map(drop),
            session.query_opt(sql, &[]).await.map(drop),
        ] {
            let err = result.expect_err(sql);
            assert!(err.is_session_statement(), "{sql}: {err}");
        }
    }
    let stats = router.stats();
    assert!(
        stats.nodes.iter().all(|n| n.reads == 0 && n.writes == 0),
        "refused statements reached a node: {stats:?}"
    );
    // What ends with its own statement is not refused.
    for sql in [
        "SET LOCAL statement_timeout = 1000",
        "SELECT set_config('application_name', 'drr', true)",
        "SELECT pg_advisory_xact_lock(1)",
    ] {
        router.execute(sql, &[]).await.expect(sql);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_explicit_client_left_in_a_transaction_is_not_reused() {
    let stack = stack();
    let table = Table::create(&stack).await;
    let router = one_connection_router(&stack).await;

    let client = router.primary().await.expect("a primary client");
    client
        .batch_execute(&format!("BEGIN; {}", table.insert(1)))
        .await
        .expect("begin and insert");
    drop(client); // Neither committed nor rolled back.
    router
        .execute(&table.insert(2), &[])
        .await
        .expect("the next write");
    assert_eq!(
        table.committed().await,
        [2],
        "the next write must commit on its own, and the abandoned one not at all"
    );
    table.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_search_path_never_leaks_to_other_users_of_the_pool() {
    let stack = stack();
    let router = one_connection_router(&stack).await;
    let primary_default = default_search_path(stack.primary_url()).await;
    let replica_default = default_search_path(&stack.replicas()[0].url).await;
    let show_primary = "/* drr:primary */ SHOW search_path";

    let set = router.execute("SET search_path = drr_nowhere", &[]).await;
    let seen: String = router
        .query_one(show_primary, &[])
        .await
        .expect("show")
        .get(0);
    assert_eq!(seen, primary_default, "SET leaked (it gave {set:?})");

    // Explicit clients may SET; the next user of the connection does not
    // see it, on the primary or on a replica.
    let client = router.primary().await.expect("a primary client");
    client
        .batch_execute("SET search_path = drr_nowhere")
        .await
        .expect("set");
    drop(client);
    let seen: String = router
        .query_one(show_primary, &[])
        .await
        .expect("show")
        .get(0);
    assert_eq!(seen, primary_default, "an explicit client's SET leaked");

    let client = router.replica().await.expect("a replica client");
    client
        .batch_execute("SET search_path = drr_nowhere")
        .await
        .expect("set");
    drop(client);
    let seen: String = router
        .query_one("SHOW search_path", &[])
        .await
        .expect("show")
        .get(0);
    assert_eq!(
        seen, replica_default,
        "an explicit replica client's SET leaked"
    );

    // A transaction may SET too (without LOCAL, it outlives the commit).
    let tx = router.transaction().await.expect("a transaction");
    tx.batch_execute("SET search_path = drr_nowhere")
        .await
        .expect("set");
    tx.commit().await.expect("commit");
    let seen: String = router
        .query_one(show_primary, &[])
        .await
        .expect("show")
        .get(0);
    assert_eq!(seen, primary_default, "a transaction's SET leaked");
}

/// A clean connection goes back to its pool: the check has no false
/// alarms, for explicit clients, transactions committed, rolled back or
/// dropped, and read-only transactions on a replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_connections_go_back_to_their_pool() {
    let stack = stack();
    let router = one_connection_router(&stack).await;
    let pid = async |client: &tokio_postgres::Client| -> i32 {
        client
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .expect("pid")
            .get(0)
    };
    let client = router.primary().await.expect("a primary client");
    let first = pid(&client).await;
    client.query("SELECT 1; ", &[]).await.expect("a statement");
    drop(client);
    let tx = router.transaction().await.expect("a transaction");
    assert_eq!(pid(&tx).await, first, "the connection came back");
    tx.commit().await.expect("commit");
    let tx = router.transaction().await.expect("a transaction");
    assert_eq!(pid(&tx).await, first);
    tx.rollback().await.expect("rollback");
    let tx = router.transaction().await.expect("a transaction");
    assert_eq!(pid(&tx).await, first);
    drop(tx); // rolled back in the background
    let client = router.primary().await.expect("a primary client");
    assert_eq!(pid(&client).await, first);
    drop(client);

    let tx = router.read_transaction().await.expect("a read transaction");
    let replica = pid(&tx).await;
    tx.commit().await.expect("commit");
    let client = router.replica().await.expect("a replica client");
    assert_eq!(pid(&client).await, replica);
    drop(client);
    let discarded: u64 = router.stats().nodes.iter().map(|n| n.discarded).sum();
    assert_eq!(discarded, 0, "{:?}", router.stats());
}

/// Whatever session state an explicit client leaves, the next user of its
/// connection does not see it: a transaction (open or failed) or an SQL
/// prepared statement closes the connection; settings, temporary tables,
/// `LISTEN`, cursors and advisory locks are reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_session_state_reaches_the_next_user() {
    let stack = stack();
    let router = one_connection_router(&stack).await;
    let leftovers = "SELECT array_remove(ARRAY[ \
        CASE WHEN now() <> statement_timestamp() THEN 'transaction' END, \
        CASE WHEN current_setting('statement_timeout') = '12345ms' THEN 'setting' END, \
        CASE WHEN pg_my_temp_schema() <> 0 AND to_regclass('pg_temp.drr_core_temp') IS NOT NULL \
             THEN 'temporary table' END, \
        CASE WHEN EXISTS (SELECT FROM pg_listening_channels()) THEN 'listen' END, \
        CASE WHEN EXISTS (SELECT FROM pg_cursors WHERE is_holdable) THEN 'cursor' END, \
        CASE WHEN EXISTS (SELECT FROM pg_prepared_statements WHERE from_sql) THEN 'prepared' END, \
        CASE WHEN EXISTS (SELECT FROM pg_locks WHERE pid = pg_backend_pid() \
                          AND locktype = 'advisory') THEN 'advisory lock' END \
        ], NULL)::text";
    let states = [
        ("BEGIN", true),
        ("BEGIN; SELECT 1/0", true),
        ("PREPARE drr_core_statement AS SELECT 1", true),
        ("SET statement_timeout = 12345", false),
        ("CREATE TEMP TABLE drr_core_temp (a int)", false),
        ("LISTEN drr_core_channel", false),
        (
            "DECLARE drr_core_cursor CURSOR WITH HOLD FOR SELECT 1",
            false,
        ),
        ("SELECT pg_advisory_lock(424242)", false),
    ];
    let mut closed = 0;
    for (state, closes) in states {
        let client = router.primary().await.expect("a primary client");
        // The division by zero fails on purpose, leaving the transaction
        // aborted: what matters is what is left on the connection.
        let _ = client.batch_execute(state).await;
        drop(client);
        let next = router.primary().await.expect("the next client");
        // A simple query: one message, so `now()` is its own start outside
        // a transaction.
        let left = next
            .simple_query(leftovers)
            .await
            .expect("leftovers")
            .into_iter()
            .find_map(|message| match message {
                tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
                _ => None,
            });
        assert_eq!(
            left.as_deref(),
            Some("{}"),
            "after {state:?}, the next user saw it"
        );
        drop(next);
        closed += u64::from(closes);
        let discarded: u64 = router.stats().nodes.iter().map(|n| n.discarded).sum();
        assert_eq!(discarded, closed, "{state}");
    }
}
