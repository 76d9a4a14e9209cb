//! Per-test database cost as a suite grows, for "9. growth: per-test
//! databases": a suite of N tests run by K concurrent test processes, one
//! process per test, as `cargo nextest run -j K` runs a suite. Each test
//! process is this binary again: it claims a database the way
//! `drr_core::testing::test_db` does (a pool of its own over the stack's one
//! `drr_testing.pool` table, the default batch size), runs a one-insert body,
//! releases the database and exits.
//!
//! Sizes 10, 100 and 500 tests at `-j 2` (nextest's default on 2 cores: one
//! per core), and `-j` 1, 2, 4 and 8 at 100 tests, once each (a suite at
//! `-j 1` pays about a replica delay per test: minutes). `DRR_BENCH_QUICK=1`:
//! 5 tests at `-j 2` and `-j 4`. Each suite starts on a warm pool: after the first claim
//! (which builds the template) and after every suite, the pool gets the
//! replica's delay plus 2 s to refill and reach the replica, as a suite run
//! after another would find it.
//!
//! Per point: the suite's wall time, each test process's wall time (start
//! to exit) and its claim as the test saw it (`TestDb::setup_time`); and
//! two charts of the per-test figures, against the suite size and against
//! `-j`. Runs only with `DRR_BENCH_SUITE=1` (`cargo xtask bench --only
//! harness` sets it, with the stack's variables): it takes minutes, and the
//! other parts start no stack for it.

use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use drr_core::testing::{self, DbPool, Migrations, TestStack};

use drr_bench::report::{Figure, chart};

const GROUP: &str = "9. growth: per-test databases";
/// Set in a test process: the tag of the suite's migrations.
const CHILD: &str = "DRR_BENCH_SUITE_CHILD";

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The suite's migrations: one table, and the run's tag, so that the first
/// claim of a run builds a fresh template.
fn migrations(tag: &str) -> Migrations {
    Migrations::new()
        .sql(
            "0001_items.sql",
            "CREATE TABLE items (id bigserial PRIMARY KEY, owner text NOT NULL);",
        )
        .sql("bench run", &format!("-- suite {tag}"))
}

fn main() {
    if let Ok(tag) = std::env::var(CHILD) {
        match one_test(&tag) {
            Ok(claim_ms) => println!("{claim_ms:.3}"),
            Err(err) => {
                eprintln!("suite bench: a test process failed: {err}");
                std::process::exit(1);
            }
        }
        return;
    }
    if std::env::var("DRR_BENCH_SUITE").is_err() {
        println!(
            "suite bench skipped: DRR_BENCH_SUITE is not set (`cargo xtask bench --only harness` sets it)"
        );
        return;
    }
    let stack = match TestStack::from_env() {
        Ok(stack) => stack,
        Err(err) => {
            println!("suite bench skipped: {err}");
            return;
        }
    };
    let quick = std::env::var("DRR_BENCH_QUICK").is_ok_and(|v| v == "1");
    if let Err(err) = run(stack, quick) {
        eprintln!("suite bench failed: {err}");
        std::process::exit(1);
    }
}

/// One test process: claim, body, release, as a `#[tokio::test]` would on
/// its own runtime. Returns the claim's time in ms.
fn one_test(tag: &str) -> Result<f64, BoxError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let db = testing::test_db(&migrations(tag)).await?;
        drr_bench::per_test::insert_and_count(db.primary()).await?;
        let claim = db.setup_time();
        db.release().await?;
        Ok(claim.as_secs_f64() * 1000.0)
    })
}

/// What one suite measured.
#[derive(Default)]
struct Suite {
    wall_ms: Vec<f64>,
    process_ms: Vec<f64>,
    claim_ms: Vec<f64>,
    /// Test processes that failed, per suite (a nextest run would fail).
    failed: Vec<f64>,
}

/// Runs `tests` test processes, at most `jobs` at once; adds to `into`. A
/// test that fails is counted, and the first failure's message shown.
fn suite(tag: &str, tests: usize, jobs: usize, into: &mut Suite) -> Result<(), BoxError> {
    let exe = std::env::current_exe()?;
    let next = AtomicUsize::new(0);
    let measured = Mutex::new(Vec::with_capacity(tests));
    let started = Instant::now();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..jobs)
            .map(|_| {
                scope.spawn(|| -> Result<(), BoxError> {
                    while next.fetch_add(1, Ordering::Relaxed) < tests {
                        let began = Instant::now();
                        let output = Command::new(&exe)
                            .env(CHILD, tag)
                            .stdin(Stdio::null())
                            .output()?;
                        let process = began.elapsed().as_secs_f64() * 1000.0;
                        let result = if output.status.success() {
                            Ok((
                                process,
                                String::from_utf8_lossy(&output.stdout).trim().parse()?,
                            ))
                        } else {
                            Err(String::from_utf8_lossy(&output.stderr)
                                .trim_end()
                                .to_owned())
                        };
                        measured
                            .lock()
                            .map_err(|_| "a worker panicked")?
                            .push(result);
                    }
                    Ok(())
                })
            })
            .collect();
        workers
            .into_iter()
            .try_for_each(|w| w.join().map_err(|_| "a worker panicked")?)
    })?;
    into.wall_ms.push(started.elapsed().as_secs_f64() * 1000.0);
    let mut failed = 0;
    for result in measured.into_inner().map_err(|_| "a worker panicked")? {
        match result {
            Ok((process, claim)) => {
                into.process_ms.push(process);
                into.claim_ms.push(claim);
            }
            Err(stderr) => {
                if failed == 0 {
                    eprintln!("  {tests} tests, -j {jobs}: a test failed: {stderr}");
                }
                failed += 1;
            }
        }
    }
    into.failed.push(f64::from(failed));
    Ok(())
}

fn median(samples: &[f64]) -> f64 {
    percentile(samples, 0.5)
}

/// Nearest-rank percentile (`q` in 0..=1).
fn percentile(samples: &[f64], q: f64) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted.get(i).copied().unwrap_or(f64::NAN)
}

fn run(stack: TestStack, quick: bool) -> Result<(), BoxError> {
    let (sizes, jobs, at_jobs, at_size, rounds): (&[usize], &[usize], usize, usize, usize) =
        if quick {
            (&[5], &[2, 4], 2, 5, 1)
        } else {
            (&[10, 100, 500], &[1, 2, 4, 8], 2, 100, 1)
        };
    let mut points: Vec<(usize, usize)> = sizes.iter().map(|&n| (n, at_jobs)).collect();
    points.extend(
        jobs.iter()
            .filter(|&&j| j != at_jobs)
            .map(|&j| (at_size, j)),
    );
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let tag = format!("{} {nanos}", std::process::id());
    let settle = stack.max_delay() + Duration::from_secs(2);
    eprintln!(
        "suite bench: replica delay {:?}, points (tests, -j) {points:?}, {rounds} round(s)",
        stack.max_delay()
    );

    // The first claim builds the template and the first batch.
    suite(&tag, 1, 1, &mut Suite::default())?;
    std::thread::sleep(settle);
    let mut results: Vec<Suite> = points.iter().map(|_| Suite::default()).collect();
    for round in 0..rounds {
        let mut order: Vec<usize> = (0..points.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            let (tests, jobs) = points[i];
            suite(&tag, tests, jobs, &mut results[i])?;
            eprintln!(
                "  {tests} tests, -j {jobs}: {:.1} s",
                results[i].wall_ms.last().copied().unwrap_or_default() / 1000.0
            );
            std::thread::sleep(settle);
        }
    }

    for (&(tests, jobs), result) in points.iter().zip(&results) {
        let name = |what: &str| format!("{tests} tests, -j {jobs}: {what}");
        Figure::new(
            GROUP,
            name("tests that failed"),
            "tests",
            result.failed.clone(),
        )
        .print();
        Figure::new(GROUP, name("suite wall time"), "ms", result.wall_ms.clone()).print();
        Figure::new(
            GROUP,
            name("each test process, start to exit"),
            "ms",
            result.process_ms.clone(),
        )
        .print();
        Figure::new(
            GROUP,
            name("claim, as the test saw it"),
            "ms",
            result.claim_ms.clone(),
        )
        .print();
    }
    let curve = |pick: &dyn Fn(usize, usize) -> bool, x: &dyn Fn(usize, usize) -> f64| {
        let mut lines: Vec<(String, Vec<(f64, f64)>)> = [
            "suite wall time ÷ tests",
            "test process p50",
            "claim p50",
            "claim p99",
        ]
        .iter()
        .map(|name| ((*name).to_owned(), Vec::new()))
        .collect();
        for (&(tests, jobs), r) in points.iter().zip(&results) {
            if !pick(tests, jobs) {
                continue;
            }
            let x = x(tests, jobs);
            let ys = [
                median(&r.wall_ms) / tests as f64,
                median(&r.process_ms),
                median(&r.claim_ms),
                percentile(&r.claim_ms, 0.99),
            ];
            for (line, y) in lines.iter_mut().zip(ys) {
                line.1.push((x, y));
            }
        }
        for line in &mut lines {
            line.1.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
        lines
    };
    chart(
        "growth-per-test-vs-suite-size.svg",
        &format!("per-test database cost vs suite size (-j {at_jobs}, one process per test)"),
        "tests in the suite",
        "ms per test",
        &curve(&|_, j| j == at_jobs, &|n, _| n as f64),
    );
    chart(
        "growth-per-test-vs-jobs.svg",
        &format!("per-test database cost vs concurrent test processes ({at_size} tests)"),
        "concurrent test processes (nextest -j)",
        "ms per test",
        &curve(&|n, _| n == at_size, &|_, j| j as f64),
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(DbPool::new(stack, migrations(&tag)).cleanup_leftovers())?;
    Ok(())
}
