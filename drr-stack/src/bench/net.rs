//! The fault proxy's own cost, without faults: round trips and bulk reads
//! through a replica's client link against the same replica directly,
//! alternating in one run on a throw-away stack.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context as _, Result};
use tokio_postgres::{Client, NoTls};

use super::{Comparison, Figure, Results};
use crate::testing::TempStack;

/// Bytes one bulk read fetches.
const BULK: i32 = 8 * 1024 * 1024;

fn figure(name: &str, unit: &str, samples: Vec<f64>) -> Figure {
    Figure {
        group: String::new(),
        name: name.into(),
        unit: unit.into(),
        samples,
    }
}

async fn connect(url: &str) -> Result<Client> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .context("cannot connect for the proxy benchmark")?;
    tokio::spawn(connection);
    Ok(client)
}

/// `rounds` rounds, each `per_round` round trips and one bulk read on
/// either connection, alternating which goes first.
pub async fn figures(cache: &Path, rounds: usize, out: &mut Results) -> Result<()> {
    let stack = TempStack::with_cache(
        crate::testing::net_spec(&[std::time::Duration::ZERO])?,
        cache,
    )?;
    stack.up().await?;
    let vars = stack.vars()?;
    let url = |key: &str| vars.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone());
    let proxied = connect(&url("DRR_REPLICA_URLS").context("no replica URL")?).await?;
    let direct = stack.connect("replica1").await?;
    let per_round = 200;
    let (mut trips, mut bulks) = ([Vec::new(), Vec::new()], [Vec::new(), Vec::new()]);
    for round in 0..rounds {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for which in order {
            let client = if which == 0 { &proxied } else { &direct };
            for _ in 0..per_round {
                let started = Instant::now();
                client.simple_query("SELECT 1").await?;
                trips[which].push(started.elapsed().as_secs_f64() * 1e6);
            }
            let started = Instant::now();
            client.query_one("SELECT repeat('x', $1)", &[&BULK]).await?;
            bulks[which].push(f64::from(BULK) / 1e6 / started.elapsed().as_secs_f64());
        }
    }
    let [trip_proxy, trip_direct] = trips;
    let [bulk_proxy, bulk_direct] = bulks;
    out.comparisons.push(Comparison {
        group: "7. network faults".into(),
        name: "round trip of SELECT 1, no faults: client link vs direct".into(),
        a: figure("through the fault proxy", "µs", trip_proxy),
        b: figure("direct", "µs", trip_direct),
    });
    out.comparisons.push(Comparison {
        group: "7. network faults".into(),
        name: "bulk read of 8 MB, no faults: client link vs direct".into(),
        a: figure("through the fault proxy", "MB/s", bulk_proxy),
        b: figure("direct", "MB/s", bulk_direct),
    });
    Ok(())
}
