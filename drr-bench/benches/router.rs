//! The router on the live stack:
//!
//! - criterion: the routing decision with a cached classification (with and
//!   without a function call to settle), one `SELECT 1` through the router
//!   and through a raw pooled client, and the function lookup: uncached (one
//!   `drr_core::functions::lookup` round trip, what a node's first sight of
//!   a function costs) and cached (`SELECT lower($1)` through the router,
//!   next to `SELECT $1::text`);
//! - "4. router vs raw pool": throughput of `SELECT 1` and of a 1-row
//!   indexed select through the router and through a raw deadpool of
//!   tokio-postgres clients to the same replica, with 1 and 8 concurrent
//!   tasks, measured in alternating rounds (printed as `DRR-BENCH` lines
//!   for `cargo xtask bench`); the same for a call of a STABLE function
//!   (cached), for an explicit `router.replica()` client (checked when it
//!   goes back to the pool), and deadpool's `RecyclingMethod::Clean`
//!   against `Fast` on the raw pool (what resetting every checkout costs);
//! - "4. lag measurement error": the router's lag of the replica (an upper
//!   bound) minus the true lag of a steady stream of inserts, sampled every
//!   100 ms, with the default check interval.
//!
//! `DRR_BENCH_QUICK=1` runs fewer rounds and samples.
//!
//! Needs the stack's variables (`cargo xtask env`); without them it says so
//! and exits successfully, so `cargo bench` works anywhere.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use drr_core::functions::{self, FunctionName};
use drr_core::{Consistency, Router, RouterConfig};
use tokio::runtime::Runtime;
use tokio_postgres::types::ToSql;

use drr_bench::cpu_time::CpuTime;
use drr_bench::report::{Figure, compare};

const THROUGHPUT: &str = "4. router vs raw pool";
const LAG: &str = "4. lag measurement error";
/// A call of a STABLE function, which the router settles from its cache
/// once it has looked the function up.
const FUNCTION_SELECT: &str = "SELECT lower($1)";
/// The table the indexed select reads: `ROWS` rows, primary key `id`.
const TABLE_SQL: &str = "CREATE TABLE IF NOT EXISTS drr_bench_items (id int PRIMARY KEY, name text NOT NULL); \
     INSERT INTO drr_bench_items SELECT i, 'item ' || i FROM generate_series(1, 10000) i ON CONFLICT DO NOTHING";
const ROWS: i32 = 10_000;
const INDEXED_SELECT: &str = "SELECT id, name FROM drr_bench_items WHERE id = $1";

struct Urls {
    primary: String,
    replica: String,
}

fn urls() -> Option<Urls> {
    let primary = std::env::var("DRR_PRIMARY_URL").ok()?;
    let replicas = std::env::var("DRR_REPLICA_URLS").ok()?;
    let replica = replicas
        .split(',')
        .map(str::trim)
        .find(|s| !s.is_empty())?
        .to_owned();
    Some(Urls { primary, replica })
}

fn bench_router(c: &mut Criterion) {
    let Some(urls) = urls() else { return };
    let rt = Runtime::new().expect("tokio runtime");
    let router = rt.block_on(async {
        let config = RouterConfig::new(&urls.primary)
            .and_then(|c| c.replica(&urls.replica))
            .expect("valid DRR_* URLs")
            .consistency(Consistency::Eventual)
            .pool_size(4);
        Router::connect(config).await.expect("router")
    });
    let raw = raw_pool(&urls.replica, 4, RecyclingMethod::Fast);

    let sql = "SELECT id, name FROM users WHERE id = $1";
    router.route(sql); // warm the classification cache
    c.bench_function("route_cached", |b| {
        b.iter(|| router.route(black_box(sql)).role)
    });
    // A call to settle from the replica's cache of function verdicts.
    rt.block_on(router.query(FUNCTION_SELECT, &[&"X"]))
        .expect("a function call");
    c.bench_function("route_cached_function", |b| {
        b.iter(|| router.route(black_box(FUNCTION_SELECT)).role)
    });
    if CpuTime::available() {
        let mut cpu = Criterion::default()
            .with_measurement(CpuTime)
            .configure_from_args();
        cpu.bench_function("route_cached_cpu", |b| {
            b.iter(|| router.route(black_box(sql)).role)
        });
    }

    let mut group = c.benchmark_group("select_1");
    group.bench_function("raw_pool", |b| {
        b.to_async(&rt).iter(|| async {
            let client = raw.get().await.expect("raw client");
            client.query("SELECT 1", &[]).await.expect("raw select")
        })
    });
    group.bench_function("router", |b| {
        b.to_async(&rt)
            .iter(|| async { router.query("SELECT 1", &[]).await.expect("routed select") })
    });
    group.finish();

    let mut group = c.benchmark_group("function_lookup");
    let names = [FunctionName::parse("lower")];
    group.bench_function("uncached", |b| {
        b.to_async(&rt).iter(|| async {
            let client = raw.get().await.expect("raw client");
            functions::lookup(&client, black_box(&names))
                .await
                .expect("lookup")
        })
    });
    group.bench_function("cached", |b| {
        b.to_async(&rt).iter(|| async {
            router
                .query(FUNCTION_SELECT, &[&"X"])
                .await
                .expect("routed call")
        })
    });
    group.bench_function("no_function", |b| {
        b.to_async(&rt).iter(|| async {
            router
                .query("SELECT $1::text", &[&"X"])
                .await
                .expect("routed select")
        })
    });
    group.finish();
}

fn raw_pool(url: &str, size: usize, recycling_method: RecyclingMethod) -> Pool {
    let pg: tokio_postgres::Config = url.parse().expect("replica URL");
    let manager = Manager::from_config(
        pg,
        tokio_postgres::NoTls,
        ManagerConfig { recycling_method },
    );
    Pool::builder(manager)
        .max_size(size)
        .build()
        .expect("raw pool")
}

/// Where a query goes: through the router (a plain call, or an explicit
/// replica client that is checked when it goes back), or a raw pooled
/// client.
#[derive(Clone)]
enum Target {
    Router(Router),
    RouterClient(Router),
    Raw(Pool),
}

impl Target {
    async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) {
        match self {
            Target::Router(router) => {
                router.query(sql, params).await.expect("routed query");
            }
            Target::RouterClient(router) => {
                let client = router.replica().await.expect("a replica client");
                client.query(sql, params).await.expect("client query");
            }
            Target::Raw(pool) => {
                let client = pool.get().await.expect("raw client");
                client.query(sql, params).await.expect("raw query");
            }
        }
    }
}

/// What each query of a throughput run is.
#[derive(Clone, Copy)]
enum Statement {
    Select1,
    Indexed,
    Function,
}

impl Statement {
    fn name(self) -> &'static str {
        match self {
            Statement::Select1 => "SELECT 1",
            Statement::Indexed => "1-row indexed select",
            Statement::Function => "SELECT lower($1) (a STABLE function, cached)",
        }
    }

    async fn run(self, target: &Target, task: usize, i: usize) {
        match self {
            Statement::Select1 => target.query("SELECT 1", &[]).await,
            Statement::Indexed => {
                let id = ((task * 7919 + i * 104_729) as i32).rem_euclid(ROWS) + 1;
                target.query(INDEXED_SELECT, &[&id]).await;
            }
            Statement::Function => target.query(FUNCTION_SELECT, &[&"X"]).await,
        }
    }
}

/// Queries per second of `queries` statements split over `tasks` tasks.
async fn throughput(target: &Target, statement: Statement, tasks: usize, queries: usize) -> f64 {
    let started = Instant::now();
    let workers: Vec<_> = (0..tasks)
        .map(|task| {
            let target = target.clone();
            tokio::spawn(async move {
                for i in 0..queries / tasks {
                    statement.run(&target, task, i).await;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("query task");
    }
    (queries / tasks * tasks) as f64 / started.elapsed().as_secs_f64()
}

/// Two ways to run the same statements, side by side.
struct Comparison<'a> {
    baseline: (&'a str, &'a Target),
    measured: (&'a str, &'a Target),
    statement: Statement,
    tasks: usize,
}

impl Comparison<'_> {
    /// Rounds alternate which side goes first, so drift in the machine's
    /// load hits both alike.
    async fn run(&self, rounds: usize, queries: usize) {
        let (mut baseline, mut measured) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            let a = self.baseline.1;
            let b = self.measured.1;
            if round % 2 == 0 {
                baseline.push(throughput(a, self.statement, self.tasks, queries).await);
                measured.push(throughput(b, self.statement, self.tasks, queries).await);
            } else {
                measured.push(throughput(b, self.statement, self.tasks, queries).await);
                baseline.push(throughput(a, self.statement, self.tasks, queries).await);
            }
        }
        let what = format!(
            "{}, {} task{}",
            self.statement.name(),
            self.tasks,
            if self.tasks == 1 { "" } else { "s" }
        );
        let figure = |side: &str, samples| {
            Figure::new(THROUGHPUT, format!("{what}, {side}"), "queries/s", samples)
        };
        let a = figure(self.baseline.0, baseline);
        let b = figure(self.measured.0, measured);
        a.print();
        b.print();
        compare(
            THROUGHPUT,
            &format!(
                "{what} (B / A: {}'s share of {} throughput)",
                self.measured.0, self.baseline.0
            ),
            &a,
            &b,
        );
    }
}

/// The router, its explicit clients, and deadpool's `Clean` recycling,
/// each against a raw `Fast` pool.
fn throughput_comparisons(urls: &Urls, quick: bool) {
    let (rounds, queries) = if quick { (6, 400) } else { (30, 800) };
    let rt = Runtime::new().expect("tokio runtime");
    rt.block_on(async {
        let config = RouterConfig::new(&urls.primary)
            .and_then(|c| c.replica(&urls.replica))
            .expect("valid DRR_* URLs")
            .consistency(Consistency::Eventual)
            .pool_size(8);
        let router = Router::connect(config).await.expect("router");
        let pool = raw_pool(&urls.replica, 8, RecyclingMethod::Fast);
        prepare_table(urls, &pool).await;
        let raw = ("raw pool", &Target::Raw(pool));
        let clean = (
            "raw pool with RecyclingMethod::Clean",
            &Target::Raw(raw_pool(&urls.replica, 8, RecyclingMethod::Clean)),
        );
        let routed = ("router", &Target::Router(router.clone()));
        let client = (
            "router.replica() client",
            &Target::RouterClient(router.clone()),
        );
        let mut comparisons = Vec::new();
        for statement in [Statement::Select1, Statement::Indexed] {
            for tasks in [1, 8] {
                comparisons.push(Comparison {
                    baseline: raw,
                    measured: routed,
                    statement,
                    tasks,
                });
            }
        }
        for tasks in [1, 8] {
            comparisons.push(Comparison {
                baseline: raw,
                measured: routed,
                statement: Statement::Function,
                tasks,
            });
            comparisons.push(Comparison {
                baseline: raw,
                measured: client,
                statement: Statement::Select1,
                tasks,
            });
            comparisons.push(Comparison {
                baseline: raw,
                measured: clean,
                statement: Statement::Select1,
                tasks,
            });
        }
        for comparison in comparisons {
            comparison.run(rounds, queries).await;
        }
    });
}

/// The router's lag of the replica minus the true lag of a stream of
/// inserts (one every 20 ms), sampled every 100 ms once the replica is
/// steadily behind. The true lag is the age of the oldest insert the replica
/// does not show yet (zero when it shows them all), to within the 20 ms
/// between inserts.
fn lag_measurement_error(urls: &Urls, quick: bool) {
    let sampling = if quick {
        Duration::from_secs(2)
    } else {
        Duration::from_secs(20)
    };
    let rt = Runtime::new().expect("tokio runtime");
    rt.block_on(async {
        let connect = |url: String| async move {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .expect("connect to the stack");
            tokio::spawn(connection);
            client
        };
        let primary = connect(urls.primary.clone()).await;
        let replica = connect(urls.replica.clone()).await;
        primary
            .batch_execute(LAG_TABLE_SQL)
            .await
            .expect("the lag table");
        let first: i64 = primary
            .query_one("SELECT coalesce(max(id), 0) + 1 FROM drr_bench_lag", &[])
            .await
            .expect("the next id")
            .get(0);
        let written: Arc<Mutex<Vec<Instant>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (written, stop) = (written.clone(), stop.clone());
            tokio::spawn(async move {
                let mut id = first;
                while !stop.load(Ordering::Relaxed) {
                    let at = Instant::now();
                    primary
                        .execute("INSERT INTO drr_bench_lag VALUES ($1)", &[&id])
                        .await
                        .expect("insert");
                    written.lock().expect("writes").push(at);
                    id += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        let config = RouterConfig::new(&urls.primary)
            .and_then(|c| c.replica(&urls.replica))
            .expect("valid DRR_* URLs");
        let router = Router::connect(config).await.expect("router");
        // Until the history reaches back past the replica, its lag is
        // unknown: wait until it is measured.
        let delay = std::env::var("DRR_REPLICA_DELAYS_MS")
            .ok()
            .and_then(|d| d.split(',').next()?.trim().parse().ok())
            .map_or(Duration::from_secs(3), Duration::from_millis);
        tokio::time::sleep(delay + Duration::from_secs(2)).await;
        let mut errors = Vec::new();
        let until = Instant::now() + sampling;
        while Instant::now() < until {
            let shown: i64 = replica
                .query_one("SELECT coalesce(max(id), 0) FROM drr_bench_lag", &[])
                .await
                .expect("the replica's rows")
                .get(0);
            let now = Instant::now();
            let measured = router
                .stats()
                .nodes
                .iter()
                .find(|n| n.name == "replica1")
                .and_then(|n| n.health.lag);
            let oldest_missing = usize::try_from((shown + 1 - first).max(0)).unwrap_or(0);
            let truth = written
                .lock()
                .expect("writes")
                .get(oldest_missing)
                .map_or(Duration::ZERO, |at| now - *at);
            if let Some(measured) = measured {
                errors.push((measured.as_secs_f64() - truth.as_secs_f64()) * 1000.0);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        stop.store(true, Ordering::Relaxed);
        writer.await.expect("writer");
        Figure::new(
            LAG,
            format!(
                "router's lag of replica1 minus the true lag, inserts every 20 ms, \
                 check_interval 500 ms ({delay:?} delay)"
            ),
            "ms",
            errors,
        )
        .print();
    });
}

const LAG_TABLE_SQL: &str = "CREATE TABLE IF NOT EXISTS drr_bench_lag (id bigint PRIMARY KEY)";

/// Creates the indexed select's table on the primary and waits until the
/// replica has every row.
async fn prepare_table(urls: &Urls, replica: &Pool) {
    let (primary, connection) = tokio_postgres::connect(&urls.primary, tokio_postgres::NoTls)
        .await
        .expect("connect to the primary");
    tokio::spawn(connection);
    primary.batch_execute(TABLE_SQL).await.expect("bench table");
    let client = replica.get().await.expect("raw client");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let count = client
            .query_one("SELECT count(*) FROM drr_bench_items", &[])
            .await
            .map(|row| row.get::<_, i64>(0));
        if count.is_ok_and(|n| n == i64::from(ROWS)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the bench table did not reach the replica within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

criterion_group!(benches, bench_router);

fn main() {
    if urls().is_none() {
        eprintln!(
            "router bench skipped: DRR_PRIMARY_URL and DRR_REPLICA_URLS are not set. \
             Start the stack with `cargo xtask up` and export the variables from `cargo xtask env`."
        );
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
    let quick = std::env::var("DRR_BENCH_QUICK").is_ok_and(|v| v == "1");
    if let Some(urls) = urls() {
        throughput_comparisons(&urls, quick);
        lag_measurement_error(&urls, quick);
    }
}
