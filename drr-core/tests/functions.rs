//! Statements that call functions go where PostgreSQL's own word on the
//! functions allows: a VOLATILE function (which may write) keeps a read on
//! the primary, admin functions never reach a replica, and a read that
//! still writes on a replica (through a view, say) is retried on the
//! primary, never on another replica. With one, two and three replicas,
//! each test on a stack of its own.

mod support;

use std::time::Duration;

use drr_core::testing::TestStack;
use drr_core::{Role, Router, RouterConfig};
use drr_stack::testing::TempStack;
use support::eventually;

const SCHEMA: &str = "
CREATE TABLE orders (id bigserial PRIMARY KEY, item text NOT NULL);
CREATE FUNCTION create_order(item text) RETURNS bigint LANGUAGE sql VOLATILE
    AS 'INSERT INTO orders (item) VALUES (item) RETURNING id';
CREATE FUNCTION order_count() RETURNS bigint LANGUAGE sql STABLE
    AS 'SELECT count(*) FROM orders';
CREATE SCHEMA shop;
CREATE FUNCTION shop.order_count() RETURNS bigint LANGUAGE sql VOLATILE
    AS 'SELECT count(*) FROM orders';
CREATE VIEW new_order AS SELECT create_order('from a view') AS id;
";

/// A stack of `replicas` replicas without delay, with [`SCHEMA`] on every
/// one of them.
async fn stack_with_functions(replicas: usize) -> anyhow::Result<(TempStack, TestStack)> {
    let own = TempStack::start(drr_stack::testing::spec(&vec![Duration::ZERO; replicas])?).await?;
    let stack = TestStack::from_vars(own.vars()?)?;
    own.connect("primary").await?.batch_execute(SCHEMA).await?;
    stack.wait_for_replicas(Duration::from_secs(30)).await?;
    Ok((own, stack))
}

async fn router(stack: &TestStack) -> anyhow::Result<Router> {
    let router = Router::connect(stack.router_config()?).await?;
    eventually(
        "every replica to serve reads",
        Duration::from_secs(20),
        || async {
            let stats = router.stats();
            stats
                .nodes
                .iter()
                .filter(|n| n.role == Role::Replica)
                .all(|n| n.health.reachable && n.health.in_recovery)
        },
    )
    .await;
    Ok(router)
}

fn replica_stat(router: &Router, stat: impl Fn(&drr_core::NodeStats) -> u64) -> u64 {
    router
        .stats()
        .nodes
        .iter()
        .filter(|n| n.role == Role::Replica)
        .map(stat)
        .sum()
}

/// `SELECT create_order($1)` inserts: it goes to the primary at once,
/// counts as a write, and gives a read-your-writes session a token. A
/// STABLE function goes to a replica; so does a VOLATILE one of the same
/// name in another schema only when the call names that schema.
async fn writing_functions_go_to_the_primary(replicas: usize) -> anyhow::Result<()> {
    let (_own, stack) = stack_with_functions(replicas).await?;
    let router = router(&stack).await?;
    let session = router.session();
    for i in 0..(3 * replicas as i64) {
        let item = format!("item {i}");
        let id: i64 = session
            .query_one("SELECT create_order($1)", &[&item])
            .await?
            .get(0);
        assert!(id > 0);
        assert!(
            session.token().is_some(),
            "the call was a write: it gives a token"
        );
    }
    assert_eq!(
        replica_stat(&router, |n| n.reads + n.retries),
        0,
        "a writing function reached a replica: {:?}",
        router.stats()
    );
    assert_eq!(
        router.stats().primary().map(|p| p.writes),
        Some(3 * replicas as u64)
    );

    let count: i64 = router.query_one("SELECT order_count()", &[]).await?.get(0);
    assert!(count >= 0);
    let read: i64 = router
        .query_one("SELECT count(*) FROM orders", &[])
        .await?
        .get(0);
    assert!(read >= 0);
    assert_eq!(
        replica_stat(&router, |n| n.reads),
        2,
        "{:?}",
        router.stats()
    );
    router.query_one("SELECT shop.order_count()", &[]).await?;
    assert_eq!(
        replica_stat(&router, |n| n.reads),
        2,
        "{:?}",
        router.stats()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writing_functions_go_to_the_primary_with_one_replica() -> anyhow::Result<()> {
    writing_functions_go_to_the_primary(1).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writing_functions_go_to_the_primary_with_two_replicas() -> anyhow::Result<()> {
    writing_functions_go_to_the_primary(2).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writing_functions_go_to_the_primary_with_three_replicas() -> anyhow::Result<()> {
    writing_functions_go_to_the_primary(3).await
}

/// A view hides its function: the read reaches a replica, which refuses the
/// write (SQLSTATE 25006). It is retried on the primary, never on another
/// replica, counted, and the text goes to the primary from then on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_violation_is_retried_on_the_primary_and_remembered() -> anyhow::Result<()> {
    let (_own, stack) = stack_with_functions(3).await?;
    let router = router(&stack).await?;
    let id: i64 = router
        .query_one("SELECT id FROM new_order", &[])
        .await?
        .get(0);
    assert!(id > 0);
    let stats = router.stats();
    assert_eq!(
        replica_stat(&router, |n| n.read_only_errors),
        1,
        "{stats:?}"
    );
    assert_eq!(replica_stat(&router, |n| n.retries), 1, "{stats:?}");
    assert_eq!(stats.primary().map(|p| p.writes), Some(1), "{stats:?}");
    router.query_one("SELECT id FROM new_order", &[]).await?;
    assert_eq!(
        replica_stat(&router, |n| n.read_only_errors),
        1,
        "the second time, the text went to the primary at once: {:?}",
        router.stats()
    );
    Ok(())
}

/// `read_only_functions` and `write_functions` override what the server
/// says; admin functions never reach a replica, even declared read-only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_lists_override_and_admin_functions_stay_off_replicas() -> anyhow::Result<()> {
    let (own, stack) = stack_with_functions(2).await?;
    let config: RouterConfig = stack
        .router_config()?
        .write_functions(&["public.order_count"])
        .read_only_functions(&["create_order", "pg_promote"]);
    let router = Router::connect(config).await?;
    eventually(
        "the replicas to serve reads",
        Duration::from_secs(20),
        || async { router.route("SELECT 1").role == Role::Replica },
    )
    .await;
    router.query_one("SELECT order_count()", &[]).await?;
    assert_eq!(
        replica_stat(&router, |n| n.reads),
        0,
        "write_functions: primary"
    );
    // Declared read-only, create_order goes to a replica, which refuses it:
    // the primary runs it after all.
    router.query_one("SELECT create_order('x')", &[]).await?;
    assert_eq!(replica_stat(&router, |n| n.read_only_errors), 1);

    // An admin function with a privileged role: it runs on the primary,
    // where there is nothing to promote, and no replica is promoted.
    let admin = RouterConfig::new(stack.admin_primary_url().expect("admin URLs"))?
        .replica(
            stack.replicas()[0]
                .admin_url
                .as_deref()
                .expect("admin URLs"),
        )?
        .read_only_functions(&["pg_promote"]);
    let admin = Router::connect(admin).await?;
    let err = admin
        .query_one("SELECT pg_promote()", &[])
        .await
        .expect_err("the primary is not in recovery");
    assert_eq!(err.node(), Some("primary"), "{err}");
    let replica = own.admin("replica1").await?;
    let in_recovery: bool = replica
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await?
        .get(0);
    assert!(in_recovery, "replica1 was promoted");
    Ok(())
}
