//! Routing against the real stack: replicas with a real replication delay.
//! Run through `cargo xtask test` (see `support::stack`).

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use drr_core::testing::TestStack;
use drr_core::{Consistency, Fallback, LsnToken, MaxLag, Role, Router};
use support::proxy::{Proxy, with_port};
use support::{delay_at_least, direct, eventually, stack, unique_name};
use tokio::net::TcpListener;

/// A table of our own, visible on every replica before the test uses it.
struct Table {
    name: String,
    primary_url: String,
}

impl Table {
    async fn create(stack: &TestStack) -> Table {
        let name = unique_name("drr_core_t");
        let primary = direct(stack.primary_url()).await;
        primary
            .batch_execute(&format!(
                "CREATE TABLE \"{name}\" (id bigint PRIMARY KEY, note text)"
            ))
            .await
            .expect("create table");
        for node in stack.replicas() {
            let replica = direct(&node.url).await;
            let delay = stack.max_delay();
            eventually(
                "the table to reach the replica",
                delay + Duration::from_secs(20),
                || async {
                    let row = replica
                        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&name])
                        .await;
                    row.is_ok_and(|row| row.get::<_, bool>(0))
                },
            )
            .await;
        }
        Table {
            name,
            primary_url: stack.primary_url().to_owned(),
        }
    }

    fn sql(&self, template: &str) -> String {
        template.replace("{t}", &format!("\"{}\"", self.name))
    }

    async fn drop(self) {
        let primary = direct(&self.primary_url).await;
        primary
            .batch_execute(&format!("DROP TABLE IF EXISTS \"{}\"", self.name))
            .await
            .expect("drop table");
    }
}

async fn router(config: drr_core::RouterConfig) -> Router {
    Router::connect(config).await.expect("router")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eventual_reads_miss_a_fresh_write() {
    let stack = stack();
    let delay = delay_at_least(&stack, Duration::from_millis(500));
    let table = Table::create(&stack).await;
    let router = router(
        stack
            .router_config()
            .expect("the stack's URLs are valid")
            .consistency(Consistency::Eventual),
    )
    .await;
    let session = router.session();

    session
        .execute(
            &table.sql("INSERT INTO {t} VALUES ($1, 'fresh')"),
            &[&1_i64],
        )
        .await
        .expect("insert");
    let select = table.sql("SELECT note FROM {t} WHERE id = $1");
    let seen = session.query_opt(&select, &[&1_i64]).await.expect("read");
    assert!(
        seen.is_none(),
        "an eventual read saw a write {delay:?} before the replica could have applied it"
    );
    assert!(
        router.stats().replica_reads() >= 1,
        "the read should have gone to a replica"
    );

    eventually(
        "the write to reach the replicas",
        delay + Duration::from_secs(20),
        || async {
            session
                .query_opt(&select, &[&1_i64])
                .await
                .expect("read")
                .is_some()
        },
    )
    .await;
    table.drop().await;
}

/// Many sessions write and immediately read their own row back: not one
/// read may miss it.
async fn no_stale_reads(consistency: Consistency) {
    let stack = stack();
    delay_at_least(&stack, Duration::from_millis(500));
    let table = Table::create(&stack).await;
    let router = router(
        stack
            .router_config()
            .expect("the stack\'s URLs are valid")
            .consistency(consistency)
            .max_wait(Duration::from_millis(100)),
    )
    .await;
    let insert = table.sql("INSERT INTO {t} VALUES ($1, 'mine')");
    let select = table.sql("SELECT note FROM {t} WHERE id = $1");
    let stale = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for s in 0..16_i64 {
        let (router, insert, select, stale) = (
            router.clone(),
            insert.clone(),
            select.clone(),
            stale.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let session = router.session();
            for i in 0..5_i64 {
                let id = s * 100 + i;
                session.execute(&insert, &[&id]).await.expect("insert");
                if session
                    .query_opt(&select, &[&id])
                    .await
                    .expect("read")
                    .is_none()
                {
                    stale.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("session task");
    }
    assert_eq!(
        stale.load(Ordering::Relaxed),
        0,
        "{consistency:?} served stale reads"
    );
    table.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_your_writes_never_reads_stale() {
    no_stale_reads(Consistency::ReadYourWrites).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pin_after_write_never_reads_stale() {
    let stack = stack();
    let delay = stack.max_delay();
    no_stale_reads(Consistency::PinAfterWrite(delay + Duration::from_secs(2))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_your_writes_waits_for_a_replica_and_the_token_travels() {
    let stack = stack();
    let delay = delay_at_least(&stack, Duration::from_millis(500));
    let table = Table::create(&stack).await;
    let router = router(
        stack
            .router_config()
            .expect("the stack's URLs are valid")
            .max_wait(delay * 2 + Duration::from_secs(5)),
    )
    .await;
    let writer = router.session_with(Consistency::ReadYourWrites);
    writer
        .execute(&table.sql("INSERT INTO {t} VALUES (7, 'waited')"), &[])
        .await
        .expect("insert");
    let token = writer
        .token()
        .expect("a read-your-writes write yields a token");

    // As if in another request: the token arrives as text.
    let text = token.to_string();
    assert!(text.starts_with("v2:"), "{text}");
    let parsed: LsnToken = text.parse().expect("token round-trips");
    assert_eq!(parsed, token);
    let reader = router
        .session_with(Consistency::ReadYourWrites)
        .with_token(parsed);

    let client = reader.replica().await.expect("a replica that caught up");
    assert_eq!(
        client.role(),
        Role::Replica,
        "with a long enough wait, a replica serves the read"
    );
    let row = client
        .query_opt(&table.sql("SELECT note FROM {t} WHERE id = 7"), &[])
        .await
        .expect("read");
    assert_eq!(
        row.map(|r| r.get::<_, String>(0)).as_deref(),
        Some("waited")
    );
    drop(client);
    let stats = router.stats();
    let waits: u64 = stats.nodes.iter().map(|n| n.waits).sum();
    assert!(
        waits >= 1,
        "the read should have waited for a replica: {stats:?}"
    );
    table.drop().await;
}

/// A replica whose apply delay is longer than `max_wait` cannot replay a
/// write made just now within `max_wait`: the read falls back to the
/// primary at once instead of waiting `max_wait` first. (It used to wait
/// the whole `max_wait` whenever the monitor had measured no lag, as on an
/// idle primary.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_your_writes_does_not_wait_for_a_delay_it_cannot_wait_out() {
    let stack = stack();
    let delay = delay_at_least(&stack, Duration::from_millis(1500));
    let table = Table::create(&stack).await;
    let max_wait = delay / 3;
    let router = router(
        stack
            .router_config()
            .expect("the stack's URLs are valid")
            .max_wait(max_wait),
    )
    .await;
    let session = router.session_with(Consistency::ReadYourWrites);
    for id in 0..5_i64 {
        session
            .execute(&table.sql("INSERT INTO {t} VALUES ($1, 'now')"), &[&id])
            .await
            .expect("insert");
        let started = std::time::Instant::now();
        let row = session
            .query_opt(&table.sql("SELECT note FROM {t} WHERE id = $1"), &[&id])
            .await
            .expect("read");
        let took = started.elapsed();
        assert!(row.is_some(), "read-your-writes missed the session's write");
        assert!(
            took < max_wait / 2,
            "the read took {took:?}: it waited for a replica {delay:?} behind with max_wait \
             {max_wait:?}"
        );
    }
    let stats = router.stats();
    let waits: u64 = stats.nodes.iter().map(|n| n.waits).sum();
    assert_eq!(waits, 0, "{stats:?}");
    assert_eq!(
        stats.primary().map(|p| p.fallbacks.catch_up_timeout),
        Some(5),
        "{stats:?}"
    );
    table.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_replicas_down_falls_back_to_the_primary() {
    let stack = stack();
    let dead = dead_url(&stack.replicas()[0].url).await;
    let config = drr_core::RouterConfig::new(stack.primary_url())
        .and_then(|c| c.replica(&dead))
        .and_then(|c| c.replica(&dead))
        .expect("config")
        .connect_timeout(Duration::from_millis(500))
        .pool_size(4);
    let router = router(config.clone()).await;
    for _ in 0..10 {
        let row = router
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await
            .expect("read falls back");
        assert!(
            !row.get::<_, bool>(0),
            "the fallback read must run on the primary"
        );
    }
    let stats = router.stats();
    let primary = stats.primary().expect("primary stats");
    assert_eq!(primary.reads, 10);
    assert_eq!(primary.fallbacks.no_eligible_replica, 10, "{stats:?}");

    let strict = self::router(config.fallback(Fallback::Error)).await;
    let err = strict
        .query("SELECT 1", &[])
        .await
        .expect_err("no replica and no fallback");
    assert!(err.is_no_healthy_node(), "{err}");
    assert!(
        strict
            .execute("SELECT pg_current_wal_lsn()", &[])
            .await
            .is_ok(),
        "writes still work"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replica_causes_no_failed_reads() {
    let stack = stack();
    let target = &stack.replicas()[0].url;
    let proxy = Proxy::start(target).await;
    // Two nodes in front of the same real replica: one through the proxy
    // that dies mid-run, one direct.
    let config = drr_core::RouterConfig::new(stack.primary_url())
        .and_then(|c| c.named_replica("proxied", &proxy.url))
        .and_then(|c| c.named_replica("direct", target))
        .expect("config")
        .check_interval(Duration::from_millis(100))
        .connect_timeout(Duration::from_millis(500))
        .pool_size(4);
    let router = router(config).await;

    let failures = Arc::new(AtomicU64::new(0));
    let reads = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (router, failures, reads) = (router.clone(), failures.clone(), reads.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..150 {
                match router
                    .query_one("SELECT pg_is_in_recovery(), pg_sleep(0.002)", &[])
                    .await
                {
                    Ok(_) => reads.fetch_add(1, Ordering::Relaxed),
                    Err(err) => {
                        eprintln!("read failed: {err}");
                        failures.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }
    eventually(
        "some reads before the kill",
        Duration::from_secs(20),
        || async { reads.load(Ordering::Relaxed) >= 200 },
    )
    .await;
    proxy.cut();
    for task in tasks {
        task.await.expect("reader task");
    }
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "reads failed after the replica died"
    );
    let stats = router.stats();
    let proxied = stats.node("proxied").expect("proxied stats");
    assert!(
        proxied.reads > 0,
        "the proxied replica served reads before it died"
    );
    assert!(proxied.bans >= 1, "the dead replica was banned: {stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_replica_is_excluded_by_max_lag() {
    let stack = stack();
    let delay = delay_at_least(&stack, Duration::from_millis(500));
    let table = Table::create(&stack).await;
    let strict = router(
        stack
            .router_config()
            .expect("the stack's URLs are valid")
            .max_lag(MaxLag::time(delay / 3)),
    )
    .await;
    let lenient = router(
        stack
            .router_config()
            .expect("the stack\'s URLs are valid")
            .max_lag(MaxLag::time(delay * 3 + Duration::from_secs(2))),
    )
    .await;

    // Keep the primary writing, so the delayed replicas stay behind.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (router, stop, insert) = (
            strict.clone(),
            stop.clone(),
            table.sql("INSERT INTO {t} VALUES ($1, 'tick')"),
        );
        tokio::spawn(async move {
            let mut id = 0_i64;
            while !stop.load(Ordering::Relaxed) {
                id += 1;
                router.execute(&insert, &[&id]).await.expect("insert");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    // A replica's lag is known once the history of the primary's positions
    // reaches back to what it has replayed: about its delay after the
    // writes start. Until then max_lag excludes it too.
    let measured_beyond = |router: &Router, limit: Duration| {
        router
            .stats()
            .nodes
            .iter()
            .filter(|n| n.role == Role::Replica)
            .all(|n| n.health.lag.is_some_and(|lag| lag > limit))
    };
    eventually(
        "the strict router to measure every replica beyond its limit",
        delay * 3 + Duration::from_secs(10),
        || async { measured_beyond(&strict, delay / 3) },
    )
    .await;
    assert_eq!(strict.route("SELECT 1").role, Role::Primary);
    let row = strict
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .expect("read");
    assert!(
        !row.get::<_, bool>(0),
        "a read under max_lag went to a lagging replica"
    );
    assert!(
        strict
            .stats()
            .primary()
            .is_some_and(|p| p.fallbacks.no_eligible_replica >= 1)
    );
    // The same replicas, with a limit above their delay, serve reads.
    eventually(
        "the lenient router to read from a replica",
        delay * 3 + Duration::from_secs(10),
        || async { lenient.route("SELECT 1").role == Role::Replica },
    )
    .await;

    stop.store(true, Ordering::Relaxed);
    writer.await.expect("writer");
    table.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_go_where_their_classification_says() {
    let stack = stack();
    let router = router(stack.router_config().expect("the stack's URLs are valid")).await;
    let on_replica = router
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .expect("read");
    assert!(
        on_replica.get::<_, bool>(0),
        "a plain read goes to a replica"
    );
    let hinted = router
        .query_one("/* drr:primary */ SELECT pg_is_in_recovery()", &[])
        .await
        .expect("hinted");
    assert!(
        !hinted.get::<_, bool>(0),
        "the primary hint goes to the primary"
    );
    let err = router
        .execute("/* drr:replica */ CREATE TABLE drr_core_never (a int)", &[])
        .await
        .expect_err("a refused hint");
    assert!(err.is_hint_refused(), "{err}");
    let err = router
        .query("SELECT * FROM drr_core_no_such_table", &[])
        .await
        .expect_err("undefined table");
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE)
    );
    assert!(err.node().is_some_and(|n| n != "primary"), "{err}");
    assert!(err.to_string().contains("drr_core_no_such_table"), "{err}");

    let tx = router.read_transaction().await.expect("read transaction");
    assert_eq!(tx.role(), Role::Replica);
    let a: String = tx
        .query_one("SELECT current_setting('transaction_isolation')", &[])
        .await
        .expect("q")
        .get(0);
    assert_eq!(a, "repeatable read");
    tx.commit().await.expect("commit");

    // A read-only transaction is no write: no token, no pinning.
    let session = router.session();
    let tx = session
        .read_transaction()
        .await
        .expect("session read transaction");
    tx.commit().await.expect("commit");
    assert_eq!(session.token(), None);
    let tx = session.transaction().await.expect("read-write transaction");
    assert_eq!(tx.role(), Role::Primary);
    tx.commit().await.expect("commit");
    assert!(
        session.token().is_some(),
        "a committed read-write transaction yields a token"
    );
}

/// A URL like `url` but on a port where nothing listens.
async fn dead_url(url: &str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    with_port(url, port)
}
