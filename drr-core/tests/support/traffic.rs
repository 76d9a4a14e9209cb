//! Traffic through a router while its cluster changes its primary: a writer
//! that inserts ids into `w` through a read-your-writes session and reads
//! each acknowledged row back, and a reader, each until told to stop.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use drr_core::{Consistency, Router};

/// The table the writer fills.
pub const CREATE_TABLE: &str = "CREATE TABLE w (id bigint PRIMARY KEY)";

/// Waits until every node has the table `w` (a replica that has not
/// replayed its creation would fail the reader's first reads).
pub async fn wait_for_table(nodes: &[tokio_postgres::Client]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    for node in nodes {
        loop {
            let exists: bool = node
                .query_one("SELECT to_regclass('w') IS NOT NULL", &[])
                .await
                .expect("ask a node for the table")
                .get(0);
            if exists {
                break;
            }
            assert!(Instant::now() < deadline, "a replica never got the table w");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// What the writer saw.
#[derive(Debug, Default)]
pub struct Writes {
    /// Writes tried.
    pub attempts: u64,
    /// Ids whose INSERT was acknowledged.
    pub acked: Vec<i64>,
    /// Failed writes for which `is_failover()` holds.
    pub failover_errors: u64,
    /// Any other failure: there must be none.
    pub other_errors: Vec<String>,
    /// Reads of a just-acknowledged row that missed it.
    pub missed_own_write: Vec<i64>,
    /// How long writes were unavailable, each time they were: from the
    /// first failed write to the next acknowledged one.
    pub outages: Vec<Duration>,
}

/// Ids for the writer and for single writes, never used twice.
pub type Ids = Arc<AtomicU64>;

/// The next unused id.
pub fn next_id(ids: &AtomicU64) -> i64 {
    i64::try_from(ids.fetch_add(1, Relaxed)).unwrap_or(i64::MAX)
}

/// Inserts rows through a read-your-writes session until `stop`, reading
/// each acknowledged row back in the same session. A failed write is never
/// retried: the next attempt writes a new id.
pub async fn write_until(router: Router, stop: Arc<AtomicBool>, ids: Ids) -> Writes {
    let session = router.session_with(Consistency::ReadYourWrites);
    let mut writes = Writes::default();
    let mut failing_since: Option<Instant> = None;
    while !stop.load(Relaxed) {
        let id = next_id(&ids);
        writes.attempts += 1;
        match session
            .execute("INSERT INTO w (id) VALUES ($1)", &[&id])
            .await
        {
            Ok(_) => {
                writes.acked.push(id);
                if let Some(since) = failing_since.take() {
                    writes.outages.push(since.elapsed());
                }
                match session
                    .query_opt("SELECT id FROM w WHERE id = $1", &[&id])
                    .await
                {
                    Ok(Some(_)) => {}
                    Ok(None) => writes.missed_own_write.push(id),
                    // It needed the primary, which went away meanwhile.
                    Err(e) if e.is_failover() => {}
                    Err(e) => writes.other_errors.push(format!("read back: {e}")),
                }
            }
            Err(e) if e.is_failover() => {
                writes.failover_errors += 1;
                failing_since.get_or_insert_with(Instant::now);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(e) => {
                writes.other_errors.push(e.to_string());
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    writes
}

/// What the reader saw.
#[derive(Debug, Default)]
pub struct Reads {
    /// Reads that succeeded.
    pub ok: u64,
    /// Reads that failed, with why: there must be none.
    pub failures: Vec<String>,
}

/// Reads (eventually consistent, on the router itself) until `stop`.
pub async fn read_until(router: Router, stop: Arc<AtomicBool>) -> Reads {
    let mut reads = Reads::default();
    while !stop.load(Relaxed) {
        match router.query("SELECT count(*) FROM w", &[]).await {
            Ok(_) => reads.ok += 1,
            Err(e) => reads.failures.push(e.to_string()),
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    reads
}

/// A writer and a reader running on a router.
pub struct Traffic {
    stop: Arc<AtomicBool>,
    writer: tokio::task::JoinHandle<Writes>,
    reader: tokio::task::JoinHandle<Reads>,
}

impl Traffic {
    /// Starts a writer and a reader on `router`, the writer drawing from
    /// `ids`.
    pub fn start(router: &Router, ids: &Ids) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        Traffic {
            writer: tokio::spawn(write_until(router.clone(), stop.clone(), ids.clone())),
            reader: tokio::spawn(read_until(router.clone(), stop.clone())),
            stop,
        }
    }

    /// Stops both and returns what they saw.
    pub async fn stop(self) -> (Writes, Reads) {
        self.stop.store(true, Relaxed);
        let writes = self.writer.await.expect("the writer task");
        let reads = self.reader.await.expect("the reader task");
        (writes, reads)
    }
}

/// The acknowledged ids missing from `kept` (sorted).
pub fn lost(acked: &[i64], kept: &[i64]) -> Vec<i64> {
    acked
        .iter()
        .copied()
        .filter(|id| kept.binary_search(id).is_err())
        .collect()
}

/// The ids in `w`, sorted, as `client` sees them.
pub async fn kept(client: &tokio_postgres::Client) -> Vec<i64> {
    client
        .query("SELECT id FROM w ORDER BY id", &[])
        .await
        .expect("the ids in w")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The median of some durations (zero for none).
pub fn median(durations: &[Duration]) -> Duration {
    let mut sorted = durations.to_vec();
    sorted.sort();
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}
