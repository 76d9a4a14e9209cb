//! Network faults against real replicas, each test on a stack of its own
//! whose replicas opt their client and replication links into the fault
//! proxy: latency on the client link adds to every round trip, live; a cut
//! replication link stops the WAL stream (status sees it, `up` keeps the
//! cut) and heal lets the replica catch up; after a failover, a replica
//! keeps streaming through its replication link, now to the new primary;
//! bad input changes nothing.

mod support;

use std::time::{Duration, Instant};

use drr_stack::net::command::{run_heal, run_net, run_partition};
use drr_stack::net::faults::Mode;
use drr_stack::net::{NetArgs, PartitionArgs};
use drr_stack::spec::LinkKind;
use drr_stack::testing::{self, TempStack};
use tokio_postgres::{Client, NoTls};

const WAIT: Duration = Duration::from_secs(60);

async fn stack(delays_ms: &[u64]) -> TempStack {
    let delays: Vec<Duration> = delays_ms
        .iter()
        .map(|d| Duration::from_millis(*d))
        .collect();
    TempStack::start(testing::net_spec(&delays).expect("a spec on free ports"))
        .await
        .expect("stack comes up")
}

/// A connection to `replica1` as applications make it: through its client link.
async fn through_client_link(stack: &TempStack) -> Client {
    let vars = stack.vars().unwrap();
    let urls = &vars
        .iter()
        .find(|(k, _)| *k == "DRR_REPLICA_URLS")
        .unwrap()
        .1;
    let port = stack.spec().replicas[0].node.links.client.unwrap();
    assert!(urls.contains(&format!(":{port}/")), "{urls}");
    let first = urls.split(',').next().unwrap();
    let (client, connection) = tokio_postgres::connect(first, NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

fn net(node: &str, link: LinkKind, latency: Option<u64>, jitter: Option<u64>) -> NetArgs {
    NetArgs {
        node: Some(node.to_owned()),
        latency: latency.map(Duration::from_millis),
        jitter: jitter.map(Duration::from_millis),
        bandwidth: None,
        link: Some(link),
    }
}

/// One round trip of a one-message query on `client`.
async fn round_trip(client: &Client) -> Duration {
    let started = Instant::now();
    client.simple_query("SELECT 1").await.unwrap();
    started.elapsed()
}

/// The median round trip of a one-message query on `client`, over `n` tries.
async fn median_round_trip(client: &Client, n: usize) -> Duration {
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        samples.push(round_trip(client).await);
    }
    samples.sort();
    samples[n / 2]
}

/// The median of `n` paired differences of round trips on `slow` and on
/// `fast`, taken alternately so that the machine's load cancels out.
async fn median_added(slow: &Client, fast: &Client, n: usize) -> f64 {
    let mut added = Vec::with_capacity(n);
    for _ in 0..n {
        let a = round_trip(slow).await.as_secs_f64();
        let b = round_trip(fast).await.as_secs_f64();
        added.push((a - b) * 1000.0);
    }
    added.sort_by(f64::total_cmp);
    added[n / 2]
}

/// A connection to `replica` through its client link.
async fn client_link_of(stack: &TempStack, replica: usize) -> Client {
    let port = stack.spec().replicas[replica].node.links.client.unwrap();
    let (user, password) = testing::LOGIN;
    let url = format!("host=127.0.0.1 port={port} user={user} password='{password}' dbname=app");
    let (client, connection) = tokio_postgres::connect(&url, NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_link_latency_adds_to_each_round_trip_live() {
    // replica2's client link, through the same proxy without faults, is
    // the baseline each round trip on replica1's is compared with.
    let stack = stack(&[0, 0]).await;
    // The proxy runs as the servers do: never as root.
    let proxy = drr_stack::net::launch::running_pid(&stack.native().unwrap().net_dir())
        .expect("the fault proxy runs");
    assert_eq!(support::process_uid(proxy), support::server_uid());
    let open = through_client_link(&stack).await;
    let (baseline, baseline_too) = (
        client_link_of(&stack, 1).await,
        client_link_of(&stack, 1).await,
    );
    run_net(
        &stack.stack().unwrap(),
        &net("replica1", LinkKind::Client, Some(80), Some(10)),
    )
    .unwrap();
    // Live on the connection opened before the change, and on a new one,
    // measured side by side (each against a baseline connection of its
    // own), which halves the time this test runs alone.
    let fresh = client_link_of(&stack, 0).await;
    let (added_open, added_new) = tokio::join!(
        median_added(&open, &baseline, 250),
        median_added(&fresh, &baseline_too, 250)
    );
    println!("80 ms ± 10 ms: added {added_open:.2} ms (open), {added_new:.2} ms (new)");
    for (which, added) in [("open", added_open), ("new", added_new)] {
        assert!(
            (added - 80.0).abs() <= 2.0,
            "an {which} connection's median round trip grew by {added:.2} ms, not 80 ± 2 ms"
        );
    }
    run_heal(&stack.stack().unwrap(), Some("replica1")).unwrap();
    let healed = median_added(&open, &baseline, 21).await;
    assert!(
        healed < 20.0,
        "{healed:.2} ms more than the baseline after heal"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_replication_link_stops_wal_until_healed_across_down_and_up() {
    let stack = stack(&[0]).await;
    let primary = stack.admin("primary").await.unwrap();
    let replica = stack.admin("replica1").await.unwrap();
    primary
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
        .await
        .unwrap();
    let partition = PartitionArgs {
        node: "replica1".into(),
        link: Some(LinkKind::Replication),
        mode: Mode::Blackhole,
    };
    run_partition(&stack.stack().unwrap(), &partition).unwrap();
    primary
        .batch_execute("INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    // Time is what is tested: for 3 s, nothing arrives.
    let cut_at = Instant::now();
    while cut_at.elapsed() < Duration::from_secs(3) {
        assert!(
            !support::visible(&replica, "t", 1).await,
            "WAL crossed a cut link"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let nodes = status(&stack).await;
    let r1 = nodes.iter().find(|n| n.node == "replica1").unwrap();
    assert_eq!(r1.streaming, Some(false), "{r1:?}");
    assert_eq!(r1.faults.as_deref(), Some("replication: blackhole"));
    assert!(r1.replay_lag_bytes.unwrap_or(0) > 0, "{r1:?}");

    // The cut survives down and up: `up` does not wait for the replica.
    stack
        .native()
        .unwrap()
        .down(&mut drr_stack::progress::Progress::new(true))
        .unwrap();
    stack.up().await.unwrap();
    let replica = stack.admin("replica1").await.unwrap();
    assert!(!support::visible(&replica, "t", 1).await);
    let nodes = status(&stack).await;
    assert_eq!(
        nodes
            .iter()
            .find(|n| n.node == "replica1")
            .unwrap()
            .faults
            .as_deref(),
        Some("replication: blackhole")
    );

    run_heal(&stack.stack().unwrap(), None).unwrap();
    let caught_up = support::time_until_visible(&replica, "t", 1, WAIT).await;
    assert!(
        caught_up.is_some(),
        "the replica did not catch up after heal"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_failover_replication_links_lead_to_the_new_primary() {
    let stack = stack(&[0, 0]).await;
    let mut progress = drr_stack::progress::Progress::new(true);
    drr_stack::failover::run(
        &stack.stack().unwrap(),
        &stack.secrets().unwrap(),
        Some("replica1"),
        &mut progress,
    )
    .await
    .expect("failover to replica1");
    stack
        .admin("replica1")
        .await
        .unwrap()
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    let replica2 = stack.admin("replica2").await.unwrap();
    let conninfo: String = replica2
        .query_one("SHOW primary_conninfo", &[])
        .await
        .unwrap()
        .get(0);
    let link = stack.spec().replicas[1].node.links.replication.unwrap();
    assert!(
        conninfo.contains(&format!("port={link}")),
        "replica2 streams around its replication link: {conninfo}"
    );
    // And the link leads to the new primary: cut, nothing arrives.
    assert!(
        support::time_until_visible(&replica2, "t", 1, WAIT)
            .await
            .is_some()
    );
    let partition = PartitionArgs {
        node: "replica2".into(),
        link: Some(LinkKind::Replication),
        mode: Mode::Blackhole,
    };
    run_partition(&stack.stack().unwrap(), &partition).unwrap();
    stack
        .admin("replica1")
        .await
        .unwrap()
        .batch_execute("INSERT INTO t VALUES (2)")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !support::visible(&replica2, "t", 2).await,
        "WAL crossed a cut link"
    );
    run_heal(&stack.stack().unwrap(), None).unwrap();
    assert!(
        support::time_until_visible(&replica2, "t", 2, WAIT)
            .await
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_and_changes_nothing() {
    let stack = stack(&[0]).await;
    let handle = stack.stack().unwrap();
    let refusals = [
        run_net(&handle, &net("nope", LinkKind::Client, Some(80), None)),
        run_net(&handle, &net("primary", LinkKind::Client, Some(80), None)),
        run_net(&handle, &net("replica1", LinkKind::Client, None, Some(5))),
        run_net(
            &handle,
            &net("replica1", LinkKind::Client, Some(3_600_000), None),
        ),
        run_net(
            &handle,
            &NetArgs {
                bandwidth: Some("fast".into()),
                ..net("replica1", LinkKind::Client, None, None)
            },
        ),
    ];
    let messages: Vec<String> = refusals
        .into_iter()
        .map(|r| format!("{:#}", r.unwrap_err()))
        .collect();
    for (message, expected) in messages.iter().zip([
        "there is no node `nope`",
        "node `primary` has no link through the fault proxy",
        "--jitter needs --latency",
        "more than drr allows",
        "is not a bandwidth",
    ]) {
        assert!(message.contains(expected), "{message}");
    }
    let toxics = stack.native().unwrap().net_dir().toxics().unwrap();
    assert!(toxics.is_empty(), "{toxics:?}");
}

async fn status(stack: &TempStack) -> Vec<drr_stack::status::NodeStatus> {
    let secrets = stack.secrets().unwrap();
    let mut nodes = drr_stack::status::gather(stack.spec(), &secrets, &Default::default()).await;
    stack.stack().unwrap().annotate(&mut nodes);
    nodes
}

mod requires_toxiproxy_python {
    use super::*;

    /// Runs `script` with toxiproxy-python pointed at the stack's API.
    fn python(stack: &TempStack, script: &str) -> String {
        let api = stack.spec().net_api.unwrap();
        let prelude = format!(
            "from toxiproxy import Toxiproxy\nfrom toxiproxy.api import APIConsumer\n\
             APIConsumer.host = '127.0.0.1'\nAPIConsumer.port = {api}\n\
             proxy = Toxiproxy().get_proxy('replica1-client')\n"
        );
        let out = std::process::Command::new(testing::toxiproxy_python())
            .args(["-c", &(prelude + script)])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_toxiproxy_client_sets_and_removes_a_latency_toxic() {
        testing::TOXIPROXY_PYTHON.require(&xtask_root());
        let stack = stack(&[0]).await;
        let client = through_client_link(&stack).await;
        let listed = python(
            &stack,
            "proxy.add_toxic(name='lag', type='latency', attributes={'latency': 100})\n\
             print(sorted(Toxiproxy().proxies()), sorted(proxy.toxics()))",
        );
        assert_eq!(
            listed.trim(),
            "['replica1-client', 'replica1-replication'] ['lag']"
        );
        let slow = median_round_trip(&client, 9).await;
        assert!(slow >= Duration::from_millis(100), "{slow:?}");
        // The API's change is the stack's: the toxics file holds it.
        let toxics = stack.native().unwrap().net_dir().toxics().unwrap();
        assert_eq!(toxics["replica1-client"][0].name, "lag");

        python(&stack, "proxy.destroy_toxic('lag')\nToxiproxy().reset()");
        let fast = median_round_trip(&client, 9).await;
        assert!(fast < Duration::from_millis(50), "{fast:?}");
        assert!(
            stack
                .native()
                .unwrap()
                .net_dir()
                .toxics()
                .unwrap()
                .is_empty()
        );
    }

    fn xtask_root() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
    }
}

/// The replica's visibility lag of one insert, read directly (not through
/// the client link), after `latency` on the replication link: bounds from
/// before the insert was sent (lower) and after it returned (upper).
async fn visibility_lag(stack: &TempStack, latency_ms: u64, id: i32) -> (Duration, Duration) {
    run_net(
        &stack.stack().unwrap(),
        &net("replica1", LinkKind::Replication, Some(latency_ms), None),
    )
    .unwrap();
    let primary = stack.admin("primary").await.unwrap();
    let replica = stack.admin("replica1").await.unwrap();
    // Let the stream settle under the new latency: WAL already under way
    // arrives at the old pace.
    primary.batch_execute("SELECT 1").await.unwrap();
    tokio::time::sleep(Duration::from_millis(latency_ms + 500)).await;
    let sent = Instant::now();
    primary
        .execute("INSERT INTO t VALUES ($1)", &[&id])
        .await
        .unwrap();
    let returned = Instant::now();
    let seen = support::visible_at(&replica, "t", id, WAIT)
        .await
        .expect("the row becomes visible");
    (seen - sent, seen - returned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visibility_lag_is_the_larger_of_apply_delay_and_link_latency() {
    let stack = stack(&[2000]).await;
    let primary = stack.admin("primary").await.unwrap();
    primary
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
        .await
        .unwrap();
    support::wait_for_table(&stack.admin("replica1").await.unwrap(), "t", WAIT).await;
    // Postgres counts the apply delay from the commit's timestamp, so WAL
    // that arrives sooner waits for it, and WAL that arrives later is
    // applied at once: max(delay, latency), not their sum.
    for (id, latency_ms, expected_ms) in [(1, 500, 2000), (2, 3500, 3500)] {
        let (lower, upper) = visibility_lag(&stack, latency_ms, id).await;
        println!(
            "apply delay 2000 ms, replication latency {latency_ms} ms: visible after \
             {lower:?} from sending, {upper:?} from the commit's return"
        );
        assert!(
            lower >= Duration::from_millis(expected_ms - 10)
                && upper < Duration::from_millis(expected_ms + 400),
            "{lower:?}..{upper:?}: not max(2000, {latency_ms}) = {expected_ms} ms"
        );
    }
}
