//! The peers part: drr against what a team would use instead, on one
//! throw-away stack (one replica 100 ms behind) with pgpool-II in front of
//! it. The measuring is drr-bench's `peers` benchmark (it needs drr-core),
//! run here with the stack's variables, `DRR_PGPOOL_URL`,
//! `DRR_PGPOOL_UNCHECKED_URL` and `DATABASE_URL`: pgpool-II's throughput, latency and stale reads next to
//! drr-core's router, and `#[sqlx::test]`'s per-test databases next to
//! drr's.

use std::path::Path;

use anyhow::Result;

use super::pgpool::{self, Running};
use super::report::Results;
use crate::project::Project;

/// The replica's delay: web requests follow each other faster than this.
const DELAY_MS: u64 = 100;

/// Runs the peers benchmark; without pgpool-II it says so and measures
/// nothing.
pub async fn figures(
    project: &Project,
    cache: &Path,
    quick: bool,
    out: &mut Results,
) -> Result<()> {
    if !pgpool::installed() {
        eprintln!(
            "bench: peers skipped: pgpool-II is not installed; {}",
            pgpool::INSTALL
        );
        return Ok(());
    }
    let stack = super::stack::up(&[DELAY_MS], cache).await?;
    let spec = stack.spec();
    let secrets = stack.secrets()?;
    // Its closest setting to read-your-writes (a replica any byte behind
    // at the last check gets no reads), and the same without the lag check.
    let checked = Running::start(spec, &secrets, 1).await?;
    let unchecked = Running::start(spec, &secrets, 0).await?;
    let mut vars = crate::env::vars(spec, Some(&secrets));
    vars.push(("DRR_PGPOOL_URL", checked.url(spec)?));
    vars.push(("DRR_PGPOOL_UNCHECKED_URL", unchecked.url(spec)?));
    super::cargo_bench(project, &["peers"], quick, vars, out)
}
