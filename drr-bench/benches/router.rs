//! The router on the live stack:
//!
//! - criterion: the routing decision with a cached classification, and one
//!   `SELECT 1` through the router and through a raw pooled client;
//! - "4. router vs raw pool": throughput of `SELECT 1` and of a 1-row
//!   indexed select through the router and through a raw deadpool of
//!   tokio-postgres clients to the same replica, with 1 and 8 concurrent
//!   tasks, measured in alternating rounds (printed as `DRR-BENCH` lines
//!   for `cargo xtask bench`). `DRR_BENCH_QUICK=1` runs fewer rounds.
//!
//! Needs the stack's variables (`cargo xtask env`); without them it says so
//! and exits successfully, so `cargo bench` works anywhere.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use drr_core::{Consistency, Router, RouterConfig};
use tokio::runtime::Runtime;
use tokio_postgres::types::ToSql;

use drr_bench::cpu_time::CpuTime;
use drr_bench::report::{Figure, compare};

const THROUGHPUT: &str = "4. router vs raw pool";
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
    let raw = raw_pool(&urls.replica, 4);

    let sql = "SELECT id, name FROM users WHERE id = $1";
    router.route(sql); // warm the classification cache
    c.bench_function("route_cached", |b| {
        b.iter(|| router.route(black_box(sql)).role)
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
}

fn raw_pool(url: &str, size: usize) -> Pool {
    let pg: tokio_postgres::Config = url.parse().expect("replica URL");
    let manager = Manager::from_config(
        pg,
        tokio_postgres::NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .build()
        .expect("raw pool")
}

/// Where a query goes: through the router, or a raw pooled client.
#[derive(Clone)]
enum Target {
    Router(Router),
    Raw(Pool),
}

impl Target {
    async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) {
        match self {
            Target::Router(router) => {
                router.query(sql, params).await.expect("routed query");
            }
            Target::Raw(pool) => {
                let client = pool.get().await.expect("raw client");
                client.query(sql, params).await.expect("raw query");
            }
        }
    }
}

/// Queries per second of `queries` statements split over `tasks` tasks.
async fn throughput(target: &Target, indexed: bool, tasks: usize, queries: usize) -> f64 {
    let started = Instant::now();
    let workers: Vec<_> = (0..tasks)
        .map(|task| {
            let target = target.clone();
            tokio::spawn(async move {
                for i in 0..queries / tasks {
                    if indexed {
                        let id = ((task * 7919 + i * 104_729) as i32).rem_euclid(ROWS) + 1;
                        target.query(INDEXED_SELECT, &[&id]).await;
                    } else {
                        target.query("SELECT 1", &[]).await;
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("query task");
    }
    (queries / tasks * tasks) as f64 / started.elapsed().as_secs_f64()
}

/// Router and raw pool side by side: rounds alternate which goes first,
/// so drift in the machine's load hits both alike.
fn throughput_comparisons(urls: &Urls, quick: bool) {
    let (rounds, queries) = if quick { (6, 400) } else { (30, 800) };
    let rt = Runtime::new().expect("tokio runtime");
    rt.block_on(async {
        let config = RouterConfig::new(&urls.primary)
            .and_then(|c| c.replica(&urls.replica))
            .expect("valid DRR_* URLs")
            .consistency(Consistency::Eventual)
            .pool_size(8);
        let router = Target::Router(Router::connect(config).await.expect("router"));
        let pool = raw_pool(&urls.replica, 8);
        prepare_table(urls, &pool).await;
        let raw = Target::Raw(pool);
        for (indexed, statement) in [(false, "SELECT 1"), (true, "1-row indexed select")] {
            for tasks in [1, 8] {
                let (mut via_router, mut via_raw) = (Vec::new(), Vec::new());
                for round in 0..rounds {
                    if round % 2 == 0 {
                        via_raw.push(throughput(&raw, indexed, tasks, queries).await);
                        via_router.push(throughput(&router, indexed, tasks, queries).await);
                    } else {
                        via_router.push(throughput(&router, indexed, tasks, queries).await);
                        via_raw.push(throughput(&raw, indexed, tasks, queries).await);
                    }
                }
                let what = format!(
                    "{statement}, {tasks} task{}",
                    if tasks == 1 { "" } else { "s" }
                );
                let raw_figure = Figure::new(
                    THROUGHPUT,
                    format!("{what}, raw pool"),
                    "queries/s",
                    via_raw,
                );
                let router_figure = Figure::new(
                    THROUGHPUT,
                    format!("{what}, router"),
                    "queries/s",
                    via_router,
                );
                raw_figure.print();
                router_figure.print();
                compare(
                    THROUGHPUT,
                    &format!("{what} (B / A: router's share of raw throughput)"),
                    &raw_figure,
                    &router_figure,
                );
            }
        }
    });
}

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
    }
}
