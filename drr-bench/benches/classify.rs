//! Classification without a database: how long one statement takes to parse
//! and check, uncached. Target: under 20 µs for a typical statement.
//!
//! Measured twice: in wall time, and in the thread's CPU time, which stays
//! meaningful when other work shares the machine (wall time only under
//! `DRR_BENCH_QUICK=1`).

use std::hint::black_box;

use criterion::measurement::Measurement;
use criterion::{Criterion, criterion_group, criterion_main};
use drr_core::classify;

use drr_bench::cpu_time::CpuTime;

const STATEMENTS: &[(&str, &str)] = &[
    (
        "select_by_id",
        "SELECT id, name, email FROM users WHERE id = $1",
    ),
    (
        "join_order_limit",
        "SELECT o.id, o.total, c.name FROM orders o JOIN customers c ON c.id = o.customer_id \
         WHERE o.created_at > $1 AND c.region = $2 ORDER BY o.created_at DESC LIMIT 50",
    ),
    (
        "insert",
        "INSERT INTO events (kind, payload) VALUES ($1, $2)",
    ),
    (
        "cte_insert_returning",
        "WITH ins AS (INSERT INTO t (a) VALUES ($1) RETURNING id) SELECT id FROM ins",
    ),
    (
        "select_for_update",
        "SELECT * FROM jobs WHERE state = 'ready' LIMIT 1 FOR UPDATE SKIP LOCKED",
    ),
];

fn group<M: Measurement>(c: &mut Criterion<M>, name: &str) {
    let mut group = c.benchmark_group(name);
    for (name, sql) in STATEMENTS {
        group.bench_function(*name, |b| b.iter(|| classify(black_box(sql))));
    }
    group.finish();
}

fn wall(c: &mut Criterion) {
    group(c, "classify_uncached");
}

fn cpu(c: &mut Criterion<CpuTime>) {
    // `cargo xtask bench --quick` keeps to wall time.
    let quick = std::env::var("DRR_BENCH_QUICK").is_ok_and(|v| v == "1");
    if CpuTime::available() && !quick {
        group(c, "classify_uncached_cpu");
    }
}

criterion_group!(wall_time, wall);
criterion_group! {
    name = cpu_time;
    config = Criterion::default().with_measurement(CpuTime);
    targets = cpu
}
criterion_main!(wall_time, cpu_time);
