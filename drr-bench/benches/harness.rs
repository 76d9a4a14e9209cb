//! The test harness (`drr_core::testing`) on the live stack, against the
//! sleep-based pattern of the tool drr descends from:
//!
//! - "5. test harness": a suite of 20 lag tests (each claims a database,
//!   writes, asserts the row is absent on the replica, waits, asserts it is
//!   present) as 20 concurrent tasks, cold and warm pool, next to the
//!   sequential write/sleep(delay + 1 s)/check pattern; the per-test
//!   database setup, first claim (cold pool) and amortized (warm pool).
//! - "3. wait_for_replicas": overshoot, the time `wait_for_replicas` returns
//!   minus the moment a tight poll on the replica first saw the row.
//! - With `DRR_BENCH_LOAD_TPS=N` (`cargo xtask bench --only harness` sets
//!   it while pgbench writes N transactions a second on the primary), only
//!   the overshoot, with more samples, for "9. growth: wait_for_replicas
//!   overshoot vs write load".
//!
//! Prints `DRR-BENCH` and `DRR-BENCH-COMPARISON` lines for `cargo xtask
//! bench`. `DRR_BENCH_QUICK=1` runs only 3 sleep-based tests and
//! extrapolates to 20 (the figure says so), and fewer samples elsewhere.
//! Needs the stack's variables (`cargo xtask env`); without them it says so
//! and exits successfully.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use drr_core::testing::{
    self, DbPool, Migrations, TestStack, assert_not_visible, assert_visible_within,
};
use tokio_postgres::NoTls;

use drr_bench::report::{Figure, compare};

const HARNESS: &str = "5. test harness";
const WAIT: &str = "3. wait_for_replicas";
const WAIT_LOADED: &str = "9. growth: wait_for_replicas overshoot vs write load";
const SUITE: usize = 20;
/// How much longer than the delay a wait may take before the bench fails:
/// a replica replaying a batch of `CREATE DATABASE`s on a busy disk can be
/// seconds behind, and the bench measures, it does not judge.
const WAIT_SLACK: Duration = Duration::from_secs(30);
const CHECK: &str = "SELECT 1 FROM items WHERE owner = $1";

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Migrations unique to this run, so the first claim really is cold.
fn migrations(tag: &str) -> Migrations {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    Migrations::new()
        .sql(
            "0001_items.sql",
            "CREATE TABLE items (id bigserial PRIMARY KEY, owner text NOT NULL);",
        )
        .sql(
            "bench run",
            &format!("-- {tag} {} {nanos}", std::process::id()),
        )
}

fn main() {
    let stack = match TestStack::from_env() {
        Ok(stack) => stack,
        Err(err) => {
            println!("harness bench skipped: {err}");
            return;
        }
    };
    let quick = std::env::var("DRR_BENCH_QUICK").is_ok_and(|v| v == "1");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("harness bench: cannot start a runtime: {err}");
            std::process::exit(1);
        }
    };
    let load = match std::env::var("DRR_BENCH_LOAD_TPS").map(|v| v.parse::<u32>()) {
        Ok(Ok(tps)) => Some(tps),
        Ok(Err(err)) => {
            eprintln!("harness bench: DRR_BENCH_LOAD_TPS is not a rate: {err}");
            std::process::exit(1);
        }
        Err(_) => None,
    };
    let result = match load {
        Some(tps) => runtime.block_on(overshoot_under_load(stack, tps)),
        None => runtime.block_on(run(stack, quick)),
    };
    if let Err(err) = result {
        eprintln!("harness bench failed: {err}");
        std::process::exit(1);
    }
}

async fn run(stack: TestStack, quick: bool) -> Result<(), BoxError> {
    let delay = stack.max_delay();
    // Pauses that let the pool's background refill reach the replicas
    // between figures.
    let settle = Duration::from_secs(if quick { 1 } else { 3 });
    eprintln!(
        "harness bench: replica delay {delay:?}{}",
        if quick { ", quick mode" } else { "" }
    );

    // (c) First claim on a cold pool: template, first database, replicas.
    let mut cold = Vec::new();
    for i in 0..if quick { 1 } else { 3 } {
        let pool = DbPool::new(stack.clone(), migrations(&format!("cold{i}")));
        let started = Instant::now();
        let db = pool.claim().await?;
        cold.push(ms(started.elapsed()));
        db.release().await?;
        pool.cleanup_leftovers().await?;
    }
    Figure::new(
        HARNESS,
        "per-test database setup, first claim (cold pool)",
        "ms",
        cold,
    )
    .print();

    // (a) The 20-test lag suite with the harness: cold pool, then warm.
    let pool = DbPool::new(stack.clone(), migrations("suite")).batch_size(24);
    let suite_cold = Figure::new(
        HARNESS,
        "20-test lag suite with the harness, cold pool (wall time)",
        "ms",
        vec![suite(&pool, delay).await?],
    );
    suite_cold.print();
    // Let the background refill finish and reach the replicas.
    tokio::time::sleep(delay + settle).await;
    let suite_warm = Figure::new(
        HARNESS,
        "20-test lag suite with the harness, warm pool (wall time)",
        "ms",
        vec![suite(&pool, delay).await?],
    );
    suite_warm.print();

    // (c) Amortized setup on a warm pool.
    tokio::time::sleep(delay + settle).await;
    let mut warm = Vec::new();
    let mut dbs = Vec::new();
    for _ in 0..SUITE {
        let started = Instant::now();
        dbs.push(pool.claim().await?);
        warm.push(ms(started.elapsed()));
    }
    for db in dbs {
        db.release().await?;
    }
    Figure::new(
        HARNESS,
        "per-test database setup, amortized (warm pool)",
        "ms",
        warm,
    )
    .print();

    // (b) wait_for_replicas overshoot.
    tokio::time::sleep(delay + settle).await;
    Figure::new(
        WAIT,
        "overshoot: return minus first visible on the replica",
        "ms",
        overshoot(&pool, delay, if quick { 8 } else { 20 }).await?,
    )
    .print();

    // (a) The sleep-based pattern, sequential.
    let runs = if quick { 3 } else { SUITE };
    let db = pool.claim().await?;
    let started = Instant::now();
    for i in 0..runs {
        let owner = format!("sleep{i}");
        db.primary()
            .execute("INSERT INTO items (owner) VALUES ($1)", &[&owner])
            .await?;
        tokio::time::sleep(delay + Duration::from_secs(1)).await;
        let rows = db.replica().query(CHECK, &[&owner]).await?;
        if rows.is_empty() {
            return Err(format!("sleep baseline: {owner} not visible after delay + 1 s").into());
        }
    }
    let total = ms(started.elapsed()) * SUITE as f64 / runs as f64;
    db.release().await?;
    let sleep_name = if quick {
        "20-test lag suite, sequential sleep(delay + 1 s) pattern (3 run, extrapolated x20/3)"
    } else {
        "20-test lag suite, sequential sleep(delay + 1 s) pattern"
    };
    let sleep = Figure::new(HARNESS, sleep_name, "ms", vec![total]);
    sleep.print();
    compare(
        HARNESS,
        "20-test lag suite: harness (cold pool) vs sleep-based",
        &suite_cold,
        &sleep,
    );
    compare(
        HARNESS,
        "20-test lag suite: harness (warm pool) vs sleep-based",
        &suite_warm,
        &sleep,
    );
    eprintln!(
        "  target: suite under 2 x delay + 3 s = {:.0} ms",
        ms(delay * 2 + Duration::from_secs(3))
    );
    Ok(())
}

/// Runs the 20 lag tests as concurrent tasks; returns the wall time in ms.
async fn suite(pool: &DbPool, delay: Duration) -> Result<f64, BoxError> {
    let started = Instant::now();
    let tests: Vec<_> = (0..SUITE)
        .map(|i| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let db = pool.claim().await?;
                let owner = format!("t{i}");
                db.primary()
                    .execute("INSERT INTO items (owner) VALUES ($1)", &[&owner])
                    .await
                    .map_err(|e| testing::Error::Config(e.to_string()))?;
                assert_not_visible(db.replica(), CHECK, &[&owner]).await?;
                db.wait_for_replicas(delay + WAIT_SLACK).await?;
                assert_visible_within(db.replica(), CHECK, &[&owner], Duration::from_secs(1))
                    .await?;
                db.release().await
            })
        })
        .collect();
    for test in tests {
        test.await??;
    }
    Ok(ms(started.elapsed()))
}

/// `n` overshoot samples, one after another.
async fn overshoot(pool: &DbPool, delay: Duration, n: usize) -> Result<Vec<f64>, BoxError> {
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        samples.push(overshoot_sample(pool, delay).await?);
    }
    Ok(samples)
}

/// The overshoot alone, 20 samples, while something else (pgbench, at
/// `tps`) writes on the primary.
async fn overshoot_under_load(stack: TestStack, tps: u32) -> Result<(), BoxError> {
    let delay = stack.max_delay();
    let pool = DbPool::new(stack, migrations("loaded")).batch_size(8);
    // The template and the first batch, on every replica before measuring.
    pool.claim().await?.release().await?;
    tokio::time::sleep(delay + Duration::from_secs(2)).await;
    let load = if tps == 0 {
        "no load".to_owned()
    } else {
        format!("pgbench -R {tps}")
    };
    Figure::new(
        WAIT_LOADED,
        format!("overshoot, replica {} ms behind, {load}", delay.as_millis()),
        "ms",
        overshoot(&pool, delay, 20).await?,
    )
    .print();
    Ok(())
}

/// One write; returns when `wait_for_replicas` returned minus when a tight
/// poll first saw the row (ms, negative if the wait returned first).
async fn overshoot_sample(pool: &DbPool, delay: Duration) -> Result<f64, BoxError> {
    let db = pool.claim().await?;
    let (watcher, connection) = tokio_postgres::connect(db.replica_urls()[0], NoTls).await?;
    tokio::spawn(connection);
    db.primary()
        .execute("INSERT INTO items (owner) VALUES ('o')", &[])
        .await?;
    let watch = tokio::spawn(async move {
        let deadline = Instant::now() + delay + WAIT_SLACK;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = watcher
                .query_opt("SELECT 1 FROM items WHERE owner = 'o'", &[])
                .await
            {
                return Some(Instant::now());
            }
        }
        None
    });
    db.wait_for_replicas(delay + WAIT_SLACK).await?;
    let returned = Instant::now();
    let visible = watch.await?.ok_or("the row never became visible")?;
    db.release().await?;
    Ok(if returned >= visible {
        ms(returned - visible)
    } else {
        -ms(visible - returned)
    })
}
