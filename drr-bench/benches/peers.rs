//! drr against its peers, on a stack `cargo xtask bench --only peers` starts
//! (one replica 100 ms behind, pgpool-II in front of it):
//!
//! - "8. peers: throughput and latency": `SELECT 1` and a 1-row indexed
//!   select at 1 and 8 tasks, through a raw deadpool of tokio-postgres
//!   clients on the replica, through drr-core's router, and through the same
//!   raw pool of clients connected to pgpool-II; rounds rotate which side
//!   goes first; queries/s and per-query latency.
//! - "8. peers: stale reads": web-shaped requests: request 1 writes a row,
//!   request 2 (a new connection or session) reads it at once. Stale reads
//!   and reads served by the primary, per 1000, for pgpool-II and for
//!   drr-core's `Eventual`, `PinAfterWrite(2 s)` and `ReadYourWrites` (the
//!   token handed from request 1 to request 2).
//! - "8. peers: per-test databases": a suite of 20 tests, each with a
//!   database of its own with the migrations applied: `#[sqlx::test]`'s
//!   machinery (what the attribute expands to: create a database on the
//!   primary, migrate, run, drop) against drr's pooled per-test databases
//!   (which exist on every replica too).
//!
//! Needs `DRR_PGPOOL_URL` and `DRR_PGPOOL_UNCHECKED_URL` (the login role's
//! URLs of pgpool-II with and without its lag check),
//! `DATABASE_URL` (sqlx's, a role that may create databases) and the
//! stack's variables; without them it says so and exits successfully.
//! `DRR_BENCH_QUICK=1` runs fewer rounds.

use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use drr_core::testing::{DbPool, Migrations, TestStack};
use drr_core::{Consistency, Router};
use tokio_postgres::NoTls;
use tokio_postgres::types::ToSql;

use drr_bench::report::{Figure, compare};

const SPEED: &str = "8. peers: throughput and latency (pgpool-II)";
const STALE: &str = "8. peers: stale reads across requests (pgpool-II)";
const PER_TEST: &str = "8. peers: per-test databases (#[sqlx::test])";
const ROWS: i32 = 10_000;
const TABLE_SQL: &str = "CREATE TABLE IF NOT EXISTS drr_peers_items (id int PRIMARY KEY, name text NOT NULL); \
     INSERT INTO drr_peers_items SELECT i, 'item ' || i FROM generate_series(1, 10000) i ON CONFLICT DO NOTHING; \
     CREATE TABLE IF NOT EXISTS drr_peers_writes (id bigint PRIMARY KEY, body text NOT NULL)";
const INDEXED_SELECT: &str = "SELECT id, name FROM drr_peers_items WHERE id = $1";
/// Request 2's read: the row (NULL when the node has not replayed it yet)
/// and the port of the node that served it (`current_setting` is STABLE,
/// so every side may send it to a replica).
const READ_BACK: &str = "SELECT current_setting('port')::int, \
     (SELECT body FROM drr_peers_writes WHERE id = $1)";
const WRITE: &str = "INSERT INTO drr_peers_writes (id, body) VALUES ($1, 'written')";

type BoxError = Box<dyn std::error::Error + Send + Sync>;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("benches/peers-migrations");

struct Env {
    stack: TestStack,
    /// pgpool-II with its lag check (`delay_threshold` 1 byte).
    pgpool_url: String,
    /// pgpool-II without it (`delay_threshold` 0), the control.
    pgpool_unchecked_url: String,
    primary_port: i32,
}

fn env() -> Result<Env, String> {
    let pgpool_url = std::env::var("DRR_PGPOOL_URL").map_err(|_| "DRR_PGPOOL_URL is not set")?;
    let pgpool_unchecked_url = std::env::var("DRR_PGPOOL_UNCHECKED_URL")
        .map_err(|_| "DRR_PGPOOL_UNCHECKED_URL is not set")?;
    std::env::var("DATABASE_URL").map_err(|_| "DATABASE_URL is not set")?;
    let stack = TestStack::from_env().map_err(|e| e.to_string())?;
    let primary: tokio_postgres::Config =
        stack.primary_url().parse().map_err(|e| format!("{e}"))?;
    let primary_port = primary.get_ports().first().copied().unwrap_or(5432);
    Ok(Env {
        stack,
        pgpool_url,
        pgpool_unchecked_url,
        primary_port: i32::from(primary_port),
    })
}

fn main() {
    let env = match env() {
        Ok(env) => env,
        Err(why) => {
            println!("peers bench skipped: {why} (`cargo xtask bench --only peers` provides them)");
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
            eprintln!("peers bench: cannot start a runtime: {err}");
            std::process::exit(1);
        }
    };
    let result = runtime
        .block_on(async {
            speed(&env, quick).await?;
            stale_reads(&env, quick).await
        })
        .and_then(|()| per_test_databases(&runtime, &env, quick));
    if let Err(err) = result {
        eprintln!("peers bench failed: {err}");
        std::process::exit(1);
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn pool(url: &str, size: usize) -> Result<Pool, BoxError> {
    let config: tokio_postgres::Config = url.parse()?;
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Ok(Pool::builder(manager).max_size(size).build()?)
}

async fn connect(url: &str) -> Result<tokio_postgres::Client, BoxError> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// Where the throughput queries go.
#[derive(Clone)]
enum Side {
    Raw(Pool),
    Router(Router),
}

impl Side {
    async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<(), BoxError> {
        match self {
            Side::Raw(pool) => {
                pool.get().await?.query(sql, params).await?;
            }
            Side::Router(router) => {
                router.query(sql, params).await?;
            }
        }
        Ok(())
    }
}

/// One round: `queries` statements over `tasks` tasks; queries/s and each
/// query's latency in µs.
async fn round(
    side: &Side,
    indexed: bool,
    tasks: usize,
    queries: usize,
) -> Result<(f64, Vec<f64>), BoxError> {
    let started = Instant::now();
    let workers: Vec<_> = (0..tasks)
        .map(|task| {
            let side = side.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(queries / tasks);
                for i in 0..queries / tasks {
                    let at = Instant::now();
                    if indexed {
                        let id = ((task * 7919 + i * 104_729) as i32).rem_euclid(ROWS) + 1;
                        side.query(INDEXED_SELECT, &[&id]).await?;
                    } else {
                        side.query("SELECT 1", &[]).await?;
                    }
                    latencies.push(at.elapsed().as_secs_f64() * 1e6);
                }
                Ok::<_, BoxError>(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(queries);
    for worker in workers {
        latencies.extend(worker.await??);
    }
    let rate = latencies.len() as f64 / started.elapsed().as_secs_f64();
    Ok((rate, latencies))
}

fn median(samples: &[f64]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Throughput and latency of the raw pool on the replica, the router and
/// pgpool-II, rounds rotating which goes first.
async fn speed(env: &Env, quick: bool) -> Result<(), BoxError> {
    let (rounds, queries) = if quick { (3, 300) } else { (20, 800) };
    let replica_url = env
        .stack
        .replicas()
        .first()
        .ok_or("the stack has no replica")?
        .url
        .clone();
    let primary = connect(env.stack.primary_url()).await?;
    primary.batch_execute(TABLE_SQL).await?;
    env.stack.wait_for_replicas(Duration::from_secs(60)).await?;
    let config = env
        .stack
        .router_config()?
        .consistency(Consistency::Eventual)
        .pool_size(8);
    let sides = [
        ("raw pool on the replica", Side::Raw(pool(&replica_url, 8)?)),
        (
            "drr-core router",
            Side::Router(Router::connect(config).await?),
        ),
        (
            "tokio-postgres through pgpool-II",
            Side::Raw(pool(&env.pgpool_url, 8)?),
        ),
    ];
    for (name, side) in &sides {
        // Warm: connections, classification and function caches.
        round(side, true, 8, 64)
            .await
            .map_err(|e| format!("{name}: {e}"))?;
    }
    for indexed in [false, true] {
        for tasks in [1, 8] {
            let what = format!(
                "{}, {tasks} task{}",
                if indexed {
                    "1-row indexed select"
                } else {
                    "SELECT 1"
                },
                if tasks == 1 { "" } else { "s" }
            );
            let mut rates = vec![Vec::new(); sides.len()];
            let mut p50s = vec![Vec::new(); sides.len()];
            let mut all = vec![Vec::new(); sides.len()];
            for r in 0..rounds {
                for k in 0..sides.len() {
                    let i = (r + k) % sides.len();
                    let (rate, latencies) = round(&sides[i].1, indexed, tasks, queries).await?;
                    rates[i].push(rate);
                    p50s[i].push(median(&latencies));
                    all[i].extend(latencies);
                }
            }
            let rate_figures: Vec<Figure> = sides
                .iter()
                .zip(rates)
                .map(|((name, _), r)| Figure::new(SPEED, format!("{what}, {name}"), "queries/s", r))
                .collect();
            let p50_figures: Vec<Figure> = sides
                .iter()
                .zip(p50s)
                .map(|((name, _), r)| {
                    Figure::new(SPEED, format!("{what}, {name}, round p50"), "µs", r)
                })
                .collect();
            for ((name, _), latencies) in sides.iter().zip(all) {
                Figure::new(SPEED, format!("{what}, {name}, latency"), "µs", latencies).print();
            }
            for f in &rate_figures {
                f.print();
            }
            for (b, label) in [(1, "router"), (2, "pgpool-II")] {
                compare(
                    SPEED,
                    &format!("{what}: throughput, {label} / raw pool"),
                    &rate_figures[0],
                    &rate_figures[b],
                );
                compare(
                    SPEED,
                    &format!("{what}: per-round p50 latency, {label} / raw pool"),
                    &p50_figures[0],
                    &p50_figures[b],
                );
            }
            compare(
                SPEED,
                &format!("{what}: throughput, pgpool-II / router"),
                &rate_figures[1],
                &rate_figures[2],
            );
        }
    }
    // Where pgpool-II sent the reads (its own count), to show they were
    // balanced to the replica.
    let pgpool = connect(&env.pgpool_url).await?;
    for message in pgpool.simple_query("SHOW pool_nodes").await? {
        if let tokio_postgres::SimpleQueryMessage::Row(row) = message {
            eprintln!(
                "  pgpool-II node {} ({}): select_cnt {}",
                row.get("node_id").unwrap_or("?"),
                row.get("role").unwrap_or("?"),
                row.get("select_cnt").unwrap_or("?")
            );
        }
    }
    Ok(())
}

/// How request 2 reaches the database.
#[derive(Clone, Copy)]
enum Reader {
    /// pgpool-II with (`true`) or without its lag check.
    Pgpool(bool),
    Drr(Consistency),
}

impl Reader {
    fn name(self) -> String {
        match self {
            Reader::Pgpool(true) => "pgpool-II, delay_threshold 1 byte (its best setting)".into(),
            Reader::Pgpool(false) => "pgpool-II, delay_threshold 0 (no lag check)".into(),
            Reader::Drr(Consistency::Eventual) => "drr-core Eventual".into(),
            Reader::Drr(Consistency::PinAfterWrite(d)) => {
                format!("drr-core PinAfterWrite({d:?}), new session per request")
            }
            Reader::Drr(_) => "drr-core ReadYourWrites, token from request 1".into(),
        }
    }
}

/// Counts of one round of request pairs.
#[derive(Default)]
struct Tally {
    stale: usize,
    on_primary: usize,
    read_ms: Vec<f64>,
}

/// One pair: request 1 writes `id`, request 2 reads it back.
async fn request_pair(
    env: &Env,
    router: &Router,
    reader: Reader,
    id: i64,
    tally: &mut Tally,
) -> Result<(), BoxError> {
    let (row, took) = match reader {
        Reader::Pgpool(checked) => {
            let url = if checked {
                &env.pgpool_url
            } else {
                &env.pgpool_unchecked_url
            };
            let writer = connect(url).await?;
            writer.execute(WRITE, &[&id]).await?;
            drop(writer);
            let at = Instant::now();
            let reader = connect(url).await?;
            let row = reader.query_one(READ_BACK, &[&id]).await?;
            (row, at.elapsed())
        }
        Reader::Drr(consistency) => {
            let writer = router.session_with(consistency);
            writer.execute(WRITE, &[&id]).await?;
            let token = writer.token();
            drop(writer);
            let at = Instant::now();
            let mut session = router.session_with(consistency);
            if let Some(token) = token {
                session = session.with_token(token);
            }
            let row = session.query_one(READ_BACK, &[&id]).await?;
            (row, at.elapsed())
        }
    };
    let port: i32 = row.get(0);
    let body: Option<String> = row.get(1);
    tally.stale += usize::from(body.is_none());
    tally.on_primary += usize::from(port == env.primary_port);
    tally.read_ms.push(ms(took));
    Ok(())
}

/// Stale reads and primary reads per 1000 request pairs, per side, in
/// rounds that rotate which side goes first.
async fn stale_reads(env: &Env, quick: bool) -> Result<(), BoxError> {
    let (rounds, pairs) = if quick { (2, 25) } else { (10, 100) };
    let router = Router::connect(env.stack.router_config()?.pool_size(4)).await?;
    let readers = [
        Reader::Pgpool(true),
        Reader::Pgpool(false),
        Reader::Drr(Consistency::Eventual),
        Reader::Drr(Consistency::PinAfterWrite(Duration::from_secs(2))),
        Reader::Drr(Consistency::ReadYourWrites),
    ];
    let primary = connect(env.stack.primary_url()).await?;
    let mut id: i64 = primary
        .query_one("SELECT coalesce(max(id), 0) FROM drr_peers_writes", &[])
        .await?
        .get(0);
    // Warm: the router's health checks and function cache, pgpool-II's
    // first streaming check.
    for reader in readers {
        id += 1;
        request_pair(env, &router, reader, id, &mut Tally::default()).await?;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut tallies: Vec<Vec<Tally>> = readers.iter().map(|_| Vec::new()).collect();
    for r in 0..rounds {
        for k in 0..readers.len() {
            let i = (r + k) % readers.len();
            let mut tally = Tally::default();
            for _ in 0..pairs {
                id += 1;
                request_pair(env, &router, readers[i], id, &mut tally).await?;
            }
            tallies[i].push(tally);
        }
    }
    let per_1000 = |n: usize| n as f64 * 1000.0 / pairs as f64;
    for (reader, rounds) in readers.iter().zip(tallies) {
        let name = reader.name();
        Figure::new(
            STALE,
            format!("stale reads per 1000 requests, {name}"),
            "per 1000",
            rounds.iter().map(|t| per_1000(t.stale)).collect(),
        )
        .print();
        Figure::new(
            STALE,
            format!("reads served by the primary per 1000 requests, {name}"),
            "per 1000",
            rounds.iter().map(|t| per_1000(t.on_primary)).collect(),
        )
        .print();
        Figure::new(
            STALE,
            format!("request 2 time (connect or session + read), {name}"),
            "ms",
            rounds
                .iter()
                .flat_map(|t| t.read_ms.iter().copied())
                .collect(),
        )
        .print();
    }
    Ok(())
}

/// The same suite of `tests` tests through `#[sqlx::test]`'s machinery and through
/// drr's pooled per-test databases, alternating, one suite each per round;
/// wall time of each suite. The test body is one insert and one select on
/// the primary.
fn per_test_databases(
    runtime: &tokio::runtime::Runtime,
    env: &Env,
    quick: bool,
) -> Result<(), BoxError> {
    // `--quick` runs 5 tests, once: sqlx takes most of a second per test here.
    let (rounds, tests) = if quick { (1, 5) } else { (3, 20) };
    let pool = DbPool::new(
        env.stack.clone(),
        Migrations::new().sql(
            "0001_items.sql",
            include_str!("peers-migrations/0001_items.sql"),
        ),
    )
    .batch_size(24);
    // The first claim builds the template and the pool; then let the
    // background refill reach the replicas, as in a suite's steady state.
    runtime.block_on(async {
        pool.claim().await?.release().await?;
        tokio::time::sleep(env.stack.max_delay() + Duration::from_secs(2)).await;
        Ok::<_, BoxError>(())
    })?;
    let (mut sqlx_suite, mut drr_suite) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        let sqlx_first = r % 2 == 0;
        if sqlx_first {
            sqlx_suite.push(sqlx_suite_ms(tests));
        }
        drr_suite.push(runtime.block_on(drr_suite_ms(&pool, tests))?);
        if !sqlx_first {
            sqlx_suite.push(sqlx_suite_ms(tests));
        }
        let settle = env.stack.max_delay() + Duration::from_secs(1);
        runtime.block_on(async { tokio::time::sleep(settle).await });
    }
    let drr = Figure::new(
        PER_TEST,
        format!(
            "{tests} tests, each with a database of its own: drr pooled per-test databases (wall time)"
        ),
        "ms",
        drr_suite,
    );
    let sqlx = Figure::new(
        PER_TEST,
        format!(
            "{tests} tests, each with a database of its own: #[sqlx::test] \
             (create database + migrate, primary only; wall time)"
        ),
        "ms",
        sqlx_suite,
    );
    drr.print();
    sqlx.print();
    compare(
        PER_TEST,
        &format!("{tests}-test suite: #[sqlx::test] / drr"),
        &drr,
        &sqlx,
    );
    Ok(())
}

/// The suite through `sqlx::testing::TestFn::run_test`, what
/// `#[sqlx::test(migrator = ...)] async fn t(pool: PgPool)` runs: each test
/// on a runtime of its own, as the attribute does.
fn sqlx_suite_ms(tests: usize) -> f64 {
    use sqlx::testing::{TestArgs, TestFn};
    let started = Instant::now();
    for i in 0..tests {
        let mut args = TestArgs::new(Box::leak(format!("peers::sqlx_test_{i}").into_boxed_str()));
        args.migrator(&MIGRATOR);
        // What the attribute does with the test function.
        let test: fn(sqlx::PgPool) -> _ = sqlx_test_body;
        TestFn::run_test(test, args);
    }
    ms(started.elapsed())
}

/// The test body on `#[sqlx::test]`'s database.
async fn sqlx_test_body(pool: sqlx::PgPool) {
    sqlx::query("INSERT INTO items (owner) VALUES ('t')")
        .execute(&pool)
        .await
        .expect("insert");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM items")
        .fetch_one(&pool)
        .await
        .expect("select");
    assert_eq!(n, 1, "a fresh per-test database held {n} rows");
}

/// The suite on drr's pool: claim, the same body on the primary, release.
async fn drr_suite_ms(pool: &DbPool, tests: usize) -> Result<f64, BoxError> {
    let started = Instant::now();
    for _ in 0..tests {
        let db = pool.claim().await?;
        drr_bench::per_test::insert_and_count(db.primary()).await?;
        db.release().await?;
    }
    Ok(ms(started.elapsed()))
}
