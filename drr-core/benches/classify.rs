//! Classification without a database: how long one statement takes to parse
//! and check, uncached. Target: under 20 µs for a typical statement.

use criterion::{Criterion, criterion_group, criterion_main};
use drr_core::classify;
use std::hint::black_box;

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

fn bench_classify(c: &mut Criterion) {
    let mut group = c.benchmark_group("classify_uncached");
    for (name, sql) in STATEMENTS {
        group.bench_function(*name, |b| b.iter(|| classify(black_box(sql))));
    }
    group.finish();
}

criterion_group!(benches, bench_classify);
criterion_main!(benches);
