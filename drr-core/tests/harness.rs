//! The test harness (`drr_core::testing`) on the real stack: per-test
//! databases across tasks and processes, `wait_for_replicas` precision and
//! its timeout under a replay pause (on a stack of its own), the lag
//! assertions, and the cleanup of leftovers. Run through `cargo xtask test` (nextest runs every test in its
//! own process, which is the cross-process case).

use std::time::{Duration, Instant};

use drr_core::testing::{
    self, DbPool, Error, Migrations, TestDb, TestStack, assert_not_visible, assert_visible_within,
    measure_visibility_lag,
};
use drr_stack::testing::TempStack;
use tokio_postgres::{Client, NoTls};

fn migrations() -> Migrations {
    Migrations::new()
        .sql(
            "0001_items.sql",
            "CREATE TABLE items (id bigserial PRIMARY KEY, owner text NOT NULL);",
        )
        .with("seed v1", |url| async move {
            let (client, connection) = tokio_postgres::connect(&url, NoTls).await?;
            let task = tokio::spawn(connection);
            client
                .batch_execute("CREATE TABLE seed (n int); INSERT INTO seed VALUES (42);")
                .await?;
            // Close the connection before returning: the template is copied next.
            drop(client);
            let _ = task.await;
            Ok::<(), tokio_postgres::Error>(())
        })
}

fn pool() -> DbPool {
    DbPool::new(TestStack::require(), migrations()).batch_size(8)
}

/// The stack's delay, which these tests need to be visible.
fn delay() -> Duration {
    let delay = TestStack::require().max_delay();
    assert!(
        delay >= Duration::from_millis(500),
        "these tests need replicas delayed by at least 500 ms (DRR_REPLICA_DELAYS_MS); \
         the stack's spec sets 3000 ms"
    );
    delay
}

/// How long a wait for the replica may take before the test calls it
/// broken: the delay, plus 30 s for replay that the machine holds up (a
/// replica replays a pool database's creation by copying its template's
/// files, which a loaded disk can stall for seconds). Waits end as soon as
/// their condition holds; what they took is asserted where it matters.
fn patience(delay: Duration) -> Duration {
    delay + Duration::from_secs(30)
}

async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to a stack node: {e}"));
    tokio::spawn(connection);
    client
}

async fn database_exists(name: &str) -> bool {
    let primary = connect(TestStack::require().primary_url()).await;
    primary
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .expect("query pg_database")
        .is_some()
}

/// Checks that a fresh database has the migrations, exists on every replica,
/// and holds no rows but its own.
async fn use_alone(db: &TestDb, owner: &str) -> Result<(), Error> {
    let seed: i32 = db
        .replica()
        .query_one("SELECT n FROM seed", &[])
        .await
        .expect("the closure's migration is on the replica")
        .get(0);
    assert_eq!(seed, 42);
    let rows = db
        .replica()
        .query("SELECT owner FROM items", &[])
        .await
        .expect("the migrations are on the replica");
    assert!(rows.is_empty(), "{} starts empty on the replica", db.name());
    db.primary()
        .execute("INSERT INTO items (owner) VALUES ($1)", &[&owner])
        .await
        .expect("insert");
    db.wait_for_replicas(patience(delay())).await?;
    for client in [db.primary(), db.replica()] {
        let owners: Vec<String> = client
            .query("SELECT owner FROM items", &[])
            .await
            .expect("select")
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(owners, [owner], "{} holds only its own rows", db.name());
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claims_in_one_process_get_distinct_databases() -> Result<(), Error> {
    let pool = pool();
    let claims = (0..6).map(|_| {
        let pool = pool.clone();
        tokio::spawn(async move { pool.claim().await })
    });
    let mut dbs = Vec::new();
    for claim in claims {
        dbs.push(claim.await.expect("claim task")?);
    }
    let mut names: Vec<&str> = dbs.iter().map(TestDb::name).collect();
    names.sort();
    names.dedup();
    assert_eq!(
        names.len(),
        6,
        "every claim got its own database: {names:?}"
    );
    let checks = dbs
        .iter()
        .enumerate()
        .map(|(i, db)| use_alone(db, Box::leak(format!("task{i}").into_boxed_str())));
    for check in checks {
        check.await?;
    }
    Ok(())
}

// nextest runs each of these in its own process, at the same time as the
// rest: the claims meet only in the primary's pool table.
macro_rules! process_claim {
    ($($name:ident),*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() -> Result<(), Error> {
            let db = testing::test_db(&migrations()).await?;
            use_alone(&db, stringify!($name)).await
        }
    )*};
}
process_claim!(process_claim_a, process_claim_b, process_claim_c);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn released_and_dropped_databases_are_gone() -> Result<(), Error> {
    let pool = pool();
    let db = pool.claim().await?;
    let name = db.name().to_owned();
    assert!(database_exists(&name).await);
    db.release().await?;
    assert!(!database_exists(&name).await, "{name} was released");

    let db = pool.claim().await?;
    let name = db.name().to_owned();
    drop(db);
    assert!(!database_exists(&name).await, "{name} was dropped");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_replicas_returns_right_after_the_data_is_visible() -> Result<(), Error> {
    let delay = delay();
    let db = pool().claim().await?;
    let watcher = connect(db.replica_urls()[0]).await;
    db.primary()
        .execute("INSERT INTO items (owner) VALUES ('w')", &[])
        .await
        .expect("insert");
    let written = Instant::now();
    // Watch for the row in a tight loop, next to the wait.
    let watch = tokio::spawn(async move {
        let deadline = Instant::now() + patience(delay);
        while Instant::now() < deadline {
            let seen = watcher
                .query_opt("SELECT 1 FROM items WHERE owner = 'w'", &[])
                .await
                .expect("poll");
            if seen.is_some() {
                return Some(Instant::now());
            }
        }
        None
    });
    let waited = db.wait_for_replicas(patience(delay)).await?;
    let returned = Instant::now();
    let visible = watch
        .await
        .expect("watch task")
        .expect("the row became visible");
    assert!(
        waited >= delay / 2,
        "the wait covered the delay: {waited:?} for a {delay:?} delay"
    );
    let overshoot = returned.saturating_duration_since(visible);
    assert!(
        overshoot < Duration::from_millis(100),
        "wait_for_replicas returned {overshoot:?} after the row became visible \
         ({:?} after the write)",
        visible - written
    );
    let rows = db
        .replica()
        .query("SELECT 1 FROM items WHERE owner = 'w'", &[])
        .await
        .expect("select");
    assert_eq!(rows.len(), 1, "visible once wait_for_replicas returned");
    Ok(())
}

/// A stack of the test's own: for tests that pause replay (which other
/// tests must not see), with the delays `delays_ms`.
async fn own_stack(delays_ms: &[u64]) -> anyhow::Result<(TempStack, TestStack)> {
    let delays: Vec<Duration> = delays_ms
        .iter()
        .copied()
        .map(Duration::from_millis)
        .collect();
    let own = TempStack::start(drr_stack::testing::spec(&delays)?).await?;
    let stack = TestStack::from_vars(own.vars()?)?;
    Ok((own, stack))
}

/// `wait_for_replicas` under a replay pause: it times out after its limit
/// and says replay is held, whether Postgres reports `paused` or (while a
/// commit waits out the apply delay) `pause requested`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_replicas_times_out_while_replay_is_held_and_says_so() -> anyhow::Result<()> {
    let (_own, stack) = own_stack(&[500]).await?;
    let db = DbPool::new(stack.clone(), migrations()).claim().await?;
    let replica = &stack.replicas()[0];
    let admin = connect(
        replica
            .admin_url
            .as_deref()
            .expect("TempStack exports admin URLs"),
    )
    .await;
    admin.execute("SELECT pg_wal_replay_pause()", &[]).await?;
    db.primary()
        .execute("INSERT INTO items (owner) VALUES ('p')", &[])
        .await?;
    let started = Instant::now();
    let result = db.wait_for_replicas(Duration::from_millis(600)).await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(600),
        "the wait ended before its timeout: {took:?}"
    );
    let error = result.expect_err("replay is held: the wait times out");
    assert!(error.is_replica_timeout(), "{error}");
    let text = error.to_string();
    assert!(
        text.starts_with(&format!("{} did not replay", replica.name)),
        "{text}"
    );
    assert!(text.contains("bytes behind"), "{text}");
    assert!(
        text.contains("replay is held there by a pause") && text.contains("cargo xtask resume"),
        "{text}"
    );
    // Resumed: the same wait now succeeds.
    admin.execute("SELECT pg_wal_replay_resume()", &[]).await?;
    db.wait_for_replicas(Duration::from_secs(30)).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_assertions_see_the_delay() -> Result<(), Error> {
    let delay = delay();
    let db = pool().claim().await?;
    let check = "SELECT 1 FROM items WHERE owner = $1";
    db.primary()
        .execute("INSERT INTO items (owner) VALUES ('a')", &[])
        .await
        .expect("insert");
    assert_not_visible(db.replica(), check, &[&"a"]).await?;
    let took = assert_visible_within(db.replica(), check, &[&"a"], patience(delay)).await?;
    assert!(took >= delay / 2, "{took:?} for a {delay:?} delay");

    let err = assert_not_visible(db.replica(), check, &[&"a"])
        .await
        .expect_err("the row is visible now");
    assert!(
        matches!(err, Error::AlreadyVisible { rows: 1, .. }),
        "{err}"
    );
    let err = assert_visible_within(db.replica(), check, &[&"nobody"], Duration::from_millis(50))
        .await
        .expect_err("no such row");
    assert!(matches!(err, Error::NotVisible { .. }), "{err}");
    assert!(err.to_string().contains("within 50ms"), "{err}");

    let lag = measure_visibility_lag(
        db.primary(),
        "INSERT INTO items (owner) VALUES ($1)",
        &[&"m"],
        db.replica(),
        check,
        &[&"m"],
        patience(delay),
    )
    .await?;
    assert!(
        lag >= delay / 2 && lag < delay * 2,
        "measured {lag:?} for a {delay:?} delay"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leftovers_of_crashed_runs_are_swept() -> Result<(), Error> {
    let pool = pool();
    // Make sure the pool table exists.
    drop(pool.claim().await?);
    let stack = TestStack::require();
    let primary = connect(stack.primary_url()).await;
    let pid = std::process::id();
    let orphan = format!("{}leftover_{pid}", pool.database_prefix());
    let dead = format!("{}dead_{pid}", pool.database_prefix());

    // A database by the prefix with no row: a crash between unregistering
    // and dropping.
    primary
        .batch_execute(&format!(
            "CREATE DATABASE {}",
            testing::quote_ident(&orphan)
        ))
        .await
        .expect("create orphan");
    // A claimed database whose claimer's backend is gone.
    let crashed = connect(stack.primary_url()).await;
    let crashed_pid: i32 = crashed
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("pid")
        .get(0);
    drop(crashed);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let alive = primary
            .query_opt(
                "SELECT 1 FROM pg_stat_activity WHERE pid = $1",
                &[&crashed_pid],
            )
            .await
            .expect("pg_stat_activity");
        if alive.is_none() {
            break;
        }
        assert!(Instant::now() < deadline, "the closed backend did not exit");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    primary
        .batch_execute(&format!("CREATE DATABASE {}", testing::quote_ident(&dead)))
        .await
        .expect("create dead");
    primary
        .execute(
            "INSERT INTO drr_testing.pool (name, template, state, owner_pid) \
             VALUES ($1, $2, 'claimed', $3)",
            &[&dead, &pool.template_name(), &crashed_pid],
        )
        .await
        .expect("register dead");

    let dropped = pool.sweep().await?;
    // A concurrent sweep (another test's refill) may have dropped them first.
    for name in [&orphan, &dead] {
        assert!(
            !database_exists(name).await,
            "{name} is swept (this sweep dropped {dropped:?})"
        );
    }
    let row = primary
        .query_opt("SELECT 1 FROM drr_testing.pool WHERE name = $1", &[&dead])
        .await
        .expect("pool row");
    assert!(row.is_none(), "the dead claim's row is gone");
    Ok(())
}

/// Another login database on the same server with its own pool (another
/// project sharing the role): its sweeps, even `cleanup_leftovers`, never
/// drop our claimed database or our template.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_of_another_login_database_never_sweeps_ours() -> Result<(), Error> {
    let stack = TestStack::require();
    let ours = pool();
    let db = ours.claim().await?;
    assert!(db.name().starts_with(ours.database_prefix()));

    let other = format!("drr_home_{}", std::process::id());
    let primary = connect(stack.primary_url()).await;
    let create = format!("CREATE DATABASE {}", testing::quote_ident(&other));
    primary
        .batch_execute(&create)
        .await
        .expect("create the other login database");
    let (base, _) = stack
        .primary_url()
        .rsplit_once('/')
        .expect("the primary URL names a database");
    let theirs = DbPool::new(TestStack::new(&format!("{base}/{other}")), migrations());
    assert_ne!(theirs.database_prefix(), ours.database_prefix());
    let swept = theirs.cleanup_leftovers().await;

    let drop_other = format!(
        "DROP DATABASE {} WITH (FORCE)",
        testing::quote_ident(&other)
    );
    primary
        .batch_execute(&drop_other)
        .await
        .expect("drop the other login database");
    let swept = swept?;
    assert!(
        database_exists(db.name()).await,
        "the other pool dropped our claimed database (it dropped {swept:?})"
    );
    assert!(
        database_exists(ours.template_name()).await,
        "the other pool dropped our template (it dropped {swept:?})"
    );
    db.release().await
}
