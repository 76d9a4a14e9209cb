//! The router on the live stack: the routing decision with a cached
//! classification (target: under 1 µs), and a `SELECT 1` loop through the
//! router next to the same loop on a raw pooled client to the same replica
//! (target: within 5 %).
//!
//! Needs the stack's variables (`cargo xtask env`); without them it says so
//! and exits successfully, so `cargo bench` works anywhere.

#[path = "support/cpu_time.rs"]
mod cpu_time;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use drr_core::{Consistency, Router, RouterConfig};
use tokio::runtime::Runtime;

use cpu_time::CpuTime;

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
    let raw = {
        let pg: tokio_postgres::Config = urls.replica.parse().expect("replica URL");
        let manager = Manager::from_config(
            pg,
            tokio_postgres::NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        Pool::builder(manager)
            .max_size(4)
            .build()
            .expect("raw pool")
    };

    let sql = "SELECT id, name FROM users WHERE id = $1";
    router.route(sql); // warm the classification cache
    c.bench_function("route_cached", |b| {
        b.iter(|| router.route(black_box(sql)).role)
    });
    if CpuTime::available() {
        let mut cpu = Criterion::default().with_measurement(CpuTime);
        cpu.bench_function("route_cached_cpu", |b| {
            b.iter(|| router.route(black_box(sql)).role)
        });
    }

    let mut group = c.benchmark_group("select_1");
    group.measurement_time(Duration::from_secs(8));
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

    alternating_select_1(&rt, &router, &raw);
}

/// The same comparison, robust to a machine whose load drifts: rounds of
/// `SELECT 1` alternate between the raw pool and the router, and the median
/// of the per-round ratios is reported.
fn alternating_select_1(rt: &Runtime, router: &Router, raw: &Pool) {
    const ROUNDS: usize = 30;
    const QUERIES: usize = 200;
    let mut ratios = Vec::with_capacity(ROUNDS);
    rt.block_on(async {
        for _ in 0..ROUNDS {
            let started = Instant::now();
            for _ in 0..QUERIES {
                let client = raw.get().await.expect("raw client");
                client.query("SELECT 1", &[]).await.expect("raw select");
            }
            let raw_time = started.elapsed();
            let started = Instant::now();
            for _ in 0..QUERIES {
                router.query("SELECT 1", &[]).await.expect("routed select");
            }
            ratios.push(started.elapsed().as_secs_f64() / raw_time.as_secs_f64());
        }
    });
    ratios.sort_by(f64::total_cmp);
    let median = ratios[ROUNDS / 2];
    println!(
        "select_1 alternating: router/raw median ratio {median:.3} ({:+.1} %) over {ROUNDS} rounds of {QUERIES} queries",
        (median - 1.0) * 100.0
    );
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
}
