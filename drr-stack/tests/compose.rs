//! The compose backend on a real Docker engine, with the local image that
//! `cargo xtask image` builds: the server version it records (label and
//! tag) and the warning when a spec pins another, a clean start, each
//! node's version in `status` and `up`, the same locale as a native
//! cluster, each replica's delay, a live
//! delay change, pause and resume, network faults (latency on a client
//! link, a replication link cut through the fault proxy, a node taken off
//! the engine's network, each healed), a failover that keeps replication
//! links through the proxy, data kept across `down` and `up`, and a spec
//! change on existing volumes (a replica removed, a database added).
//!
//! The test needs a Docker engine, a compose tool and the image (or
//! mmdebstrap to build it): [`DOCKER`]. Where they are missing it fails;
//! `cargo xtask test` reports it as skipped there, with the reason, and
//! fails under `CI=true`. It uses its own stack name, free ports and a
//! temporary workspace, and removes its containers and volumes even when it
//! fails.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use drr_stack::codegen::{self, Mode};
use drr_stack::command::Command;
use drr_stack::compose::{Compose, choice, image};
use drr_stack::lag::{self, DelayChange};
use drr_stack::net::command::{run_heal, run_net, run_partition};
use drr_stack::net::faults::Mode as FaultMode;
use drr_stack::net::{NetArgs, PartitionArgs};
use drr_stack::progress::Progress;
use drr_stack::project::Project;
use drr_stack::render;
use drr_stack::secrets::Secrets;
use drr_stack::spec::{LinkKind, StackSpec};
use drr_stack::stack::Stack;
use drr_stack::status;
use drr_stack::testing::DOCKER;
use support::{time_until_visible, visible, visible_at};
use tokio_postgres::Client;

const WAIT: Duration = Duration::from_secs(30);

/// A compose stack in a temporary workspace; its containers and volumes
/// are removed on drop, whatever happened.
struct ComposeStack {
    project: Project,
    _dir: tempfile::TempDir,
}

impl ComposeStack {
    /// Writes `compose/` for `spec` into a fresh temporary workspace.
    fn new(spec: StackSpec) -> ComposeStack {
        let dir = tempfile::Builder::new()
            .prefix("drr-compose-test-")
            .tempdir()
            .expect("temp dir");
        let project = write_compose(spec, dir.path());
        ComposeStack { project, _dir: dir }
    }

    /// Replaces the spec, as a user editing it and running `cargo xtask gen`.
    fn respec(&mut self, spec: StackSpec) {
        self.project = write_compose(spec, self._dir.path());
    }

    fn compose(&self) -> Compose<'_> {
        Compose::open(&self.project).expect("compose backend")
    }

    async fn up(&self) -> Duration {
        let started = Instant::now();
        self.compose()
            .up(&mut Progress::new(false))
            .await
            .expect("the stack comes up");
        started.elapsed()
    }

    fn secrets(&self) -> Secrets {
        Secrets::load_or_create(&self.project.secrets_dir()).expect("secrets")
    }

    /// A connection as the login role.
    async fn connect(&self, node: &str) -> Client {
        self.try_connect(self.project.spec(), node)
            .await
            .expect("connect")
    }

    /// A connection as the login role to `node` of `spec` (the project's,
    /// or as applications reach it: through client links).
    async fn try_connect(&self, spec: &StackSpec, node: &str) -> anyhow::Result<Client> {
        let node = spec.nodes().find(|n| n.name == node).expect("node in spec");
        let login = drr_stack::pg::Login {
            user: "app",
            password: "secret pass",
            database: "app",
        };
        drr_stack::pg::connect(spec, node, login).await
    }

    /// Names of the engine's volumes that carry this stack's label.
    fn volumes(&self) -> Vec<String> {
        let filter = format!(
            "label={}={}",
            render::compose::STACK_LABEL,
            self.project.spec().name
        );
        Command::new("docker")
            .args(["volume", "ls", "--quiet", "--filter", &filter])
            .read()
            .expect("docker volume ls")
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// A project for `spec` in `root`, with `compose/` written from it.
fn write_compose(spec: StackSpec, root: &std::path::Path) -> Project {
    let project = Project::new(spec, root).expect("valid spec");
    codegen::sync(
        &project.compose_dir(),
        &render::compose_dir(project.spec()),
        Mode::Write,
    )
    .expect("write compose/");
    project
}

impl Drop for ComposeStack {
    fn drop(&mut self) {
        if let Ok(compose) = Compose::open(&self.project)
            && let Err(e) = compose.destroy(&mut Progress::new(true))
        {
            eprintln!(
                "cannot remove the test stack `{}`: {e:#}",
                self.project.spec().name
            );
        }
    }
}

mod requires_docker {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_compose_stack_lags_like_a_native_one_and_keeps_its_data() {
        DOCKER.require(Path::new(env!("CARGO_MANIFEST_DIR")));
        let started = Instant::now();
        let tag = image::ensure(15, &mut Progress::new(false)).expect("the local image");
        eprintln!("image {tag} ready in {:?}", started.elapsed());

        // The image records the server package it holds, and a tag names it.
        let package = image::package_version(&tag)
            .unwrap()
            .expect("the image records its server package version");
        let server = image::upstream(&package)
            .expect("a package version")
            .to_owned();
        let versioned = format!("drr/postgres:{server}");
        assert!(image::exists(&versioned).unwrap(), "{versioned} is tagged");
        let said = Command::new("docker")
            .args([
                "run",
                "--rm",
                "--entrypoint",
                "postgres",
                &versioned,
                "--version",
            ])
            .read()
            .unwrap();
        assert!(said.contains(&format!(" {server} ")), "{said}");
        // A spec pinning a minor this machine lacks falls back to it, and says so.
        let pinned = support::spec(&[]).image("drr/postgres:15.0");
        let choice = choice::choose(&pinned, None, &choice::Engine).unwrap();
        assert_eq!(choice.image, tag);
        let warning = choice.warning.expect("a warning about the version");
        assert!(
            warning.contains("pins Postgres 15.0") && warning.contains(&format!("holds {server}")),
            "{warning}"
        );

        // Every replica opts both links into the fault proxy.
        let delays = [Duration::from_millis(1000), Duration::ZERO];
        let mut spec = drr_stack::testing::net_spec(&delays)
            .expect("a spec on free ports")
            .image(&tag);
        spec.name = format!("drr-compose-test-{}", std::process::id());
        let mut stack = ComposeStack::new(spec);
        let cold = stack.up().await;
        eprintln!("cold up in {cold:?}");

        // Every node has a healthy container.
        let backend = Stack::Compose(stack.compose());
        let secrets = stack.secrets();
        let mut nodes = status::gather(stack.project.spec(), &secrets, &Default::default()).await;
        backend.annotate(&mut nodes);
        for node in &nodes {
            assert!(node.is_up(), "{node:?}");
            let container = node.container.as_deref().unwrap_or_default();
            assert!(container.starts_with("Up"), "{node:?}");
            assert_eq!(
                node.server_version.as_deref(),
                Some(server.as_str()),
                "{node:?}"
            );
        }

        // Both backends make their clusters alike (one set of initdb
        // arguments): the same encoding and locale.
        let primary = stack.connect("primary").await;
        let native = support::TempStack::up(support::spec(&[])).await;
        let locale = "SELECT datcollate, datctype, pg_encoding_to_char(encoding) \
                      FROM pg_database WHERE datname = 'template1'";
        let read = |row: tokio_postgres::Row| -> (String, String, String) {
            (row.get(0), row.get(1), row.get(2))
        };
        let in_containers = read(primary.query_one(locale, &[]).await.unwrap());
        let native_locale = read(
            native
                .connect("primary")
                .await
                .query_one(locale, &[])
                .await
                .unwrap(),
        );
        assert_eq!(
            in_containers, native_locale,
            "compose vs native: collate, ctype, encoding"
        );
        assert_eq!(in_containers, ("C".into(), "C".into(), "UTF8".into()));
        drop(native);

        // A write shows on each replica after that replica's delay.
        let delayed = stack.connect("replica1").await;
        let prompt = stack.connect("replica2").await;
        // Lower bounds count from before the write was sent (see
        // `visible_at`), upper bounds from its return.
        let sent = Instant::now();
        primary
            .batch_execute("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)")
            .await
            .unwrap();
        let committed = Instant::now();
        let took = visible_at(&prompt, "t", 1, WAIT)
            .await
            .map(|at| at - committed);
        assert!(
            took.is_some_and(|t| t < Duration::from_millis(900)),
            "replica2: {took:?}"
        );
        let took = visible_at(&delayed, "t", 1, WAIT).await.map(|at| at - sent);
        assert!(
            took.is_some_and(|t| t >= Duration::from_millis(1000)),
            "replica1 (1000 ms): {took:?}"
        );

        // `delay` changes it live.
        let spec = stack.project.spec();
        let replica1 = lag::select(spec, &["replica1".to_owned()]).unwrap();
        let states = lag::delay(spec, &secrets, &replica1, DelayChange::Set(Duration::ZERO))
            .await
            .unwrap();
        assert_eq!(states[0].current_ms, 0);
        primary
            .batch_execute("INSERT INTO t VALUES (2)")
            .await
            .unwrap();
        let took = time_until_visible(&delayed, "t", 2, WAIT).await;
        assert!(
            took.is_some_and(|t| t < Duration::from_millis(800)),
            "after delay 0: {took:?}"
        );

        // Pause holds replay back until resume.
        lag::set_paused(spec, &secrets, &replica1, true)
            .await
            .unwrap();
        primary
            .batch_execute("INSERT INTO t VALUES (3)")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!visible(&delayed, "t", 3).await, "visible while paused");
        lag::set_paused(spec, &secrets, &replica1, false)
            .await
            .unwrap();
        assert!(time_until_visible(&delayed, "t", 3, WAIT).await.is_some());
        drop(delayed);

        // Network faults, on replica2 (undelayed). Latency on its client link:
        // a round trip through the proxy takes at least that long.
        let faults_started = Instant::now();
        let backend = Stack::Compose(stack.compose());
        proxy_is_the_server_users_and_admits_this_host(&stack.compose()).await;
        let net = |latency| NetArgs {
            node: Some("replica2".into()),
            latency: Some(Duration::from_millis(latency)),
            jitter: None,
            bandwidth: None,
            link: Some(LinkKind::Client),
        };
        run_net(&backend, &net(200)).expect("latency on replica2's client link");
        let apps = stack.project.spec().with_client_ports();
        let far = stack.try_connect(&apps, "replica2").await.unwrap();
        let sent = Instant::now();
        far.simple_query("SELECT 1").await.unwrap();
        let took = sent.elapsed();
        assert!(took >= Duration::from_millis(200), "round trip {took:?}");
        run_net(&backend, &net(0)).unwrap();
        drop(far);

        // Its replication link cut in the proxy: no WAL arrives, `status`
        // says it does not stream; healed, it catches up.
        let cut = |link| PartitionArgs {
            node: "replica2".into(),
            link,
            mode: FaultMode::Blackhole,
        };
        run_partition(&backend, &cut(Some(LinkKind::Replication))).unwrap();
        primary
            .batch_execute("INSERT INTO t VALUES (10)")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!visible(&prompt, "t", 10).await, "WAL through a cut link");
        let mut nodes = status::gather(spec, &secrets, &Default::default()).await;
        backend.annotate(&mut nodes);
        let replica2 = nodes.iter().find(|n| n.node == "replica2").unwrap();
        assert_eq!(replica2.streaming, Some(false), "{replica2:?}");
        assert!(
            replica2
                .faults
                .as_deref()
                .unwrap_or_default()
                .contains("replication"),
            "{replica2:?}"
        );
        run_heal(&backend, Some("replica2")).unwrap();
        assert!(time_until_visible(&prompt, "t", 10, WAIT).await.is_some());

        // A partition of the whole node takes its container off the
        // engine's network: nothing reaches it; healed, it catches up.
        run_partition(&backend, &cut(None)).unwrap();
        let compose = stack.compose();
        assert_eq!(compose.disconnected().unwrap(), ["replica2"]);
        primary
            .batch_execute("INSERT INTO t VALUES (11)")
            .await
            .unwrap();
        let reached = tokio::time::timeout(
            Duration::from_secs(3),
            stack.try_connect(stack.project.spec(), "replica2"),
        )
        .await;
        assert!(
            !matches!(reached, Ok(Ok(_))),
            "a connection reached replica2 off the network"
        );
        run_heal(&backend, Some("replica2")).unwrap();
        assert!(compose.disconnected().unwrap().is_empty());
        let back = stack.connect("replica2").await;
        assert!(time_until_visible(&back, "t", 11, WAIT).await.is_some());
        eprintln!("network faults in {:?}", faults_started.elapsed());
        drop((primary, prompt, back, compose, backend));

        // `down` removes the containers but keeps the volumes; `up` brings the data back.
        stack.compose().down(&mut Progress::new(false)).unwrap();
        assert!(
            stack.compose().states().is_empty(),
            "containers left after down"
        );
        assert_eq!(stack.volumes().len(), 3, "volumes after down");
        // Through the command's path, which names each node's version.
        let started = Instant::now();
        let mut progress = Progress::new(false);
        Stack::Compose(stack.compose())
            .up(&mut progress)
            .await
            .expect("the stack comes up again");
        eprintln!("warm up in {:?}", started.elapsed());
        let (said, _) = progress.steps().last().expect("a step").clone();
        assert_eq!(
            said,
            format!("Postgres {server} on primary, replica1, replica2")
        );
        for node in ["primary", "replica1", "replica2"] {
            let client = stack.connect(node).await;
            let count: i64 = client
                .query_one("SELECT count(*) FROM t", &[])
                .await
                .unwrap()
                .get(0);
            assert_eq!(count, 5, "rows on {node} after down and up");
        }

        // A failover and back, in containers: replica1 takes over, the old
        // primary follows it, replica2 keeps streaming through its
        // replication link (now to replica1), and the spec's roles come back.
        let secrets = stack.secrets();
        let compose = Stack::Compose(stack.compose());
        let mut progress = Progress::new(true);
        drr_stack::failover::run(&compose, &secrets, Some("replica1"), &mut progress)
            .await
            .expect("failover to replica1");
        let runtime = drr_stack::topology::discover(stack.project.spec(), &secrets)
            .await
            .expect("one primary");
        assert_eq!(runtime.primary.name, "replica1");
        let new_primary = stack.connect("replica1").await;
        new_primary
            .batch_execute("INSERT INTO t VALUES (4)")
            .await
            .expect("the new primary takes writes");
        let old_primary = stack.connect("primary").await;
        assert!(
            time_until_visible(&old_primary, "t", 4, WAIT)
                .await
                .is_some(),
            "the old primary follows the new one"
        );
        let follower = stack.connect("replica2").await;
        assert!(
            time_until_visible(&follower, "t", 4, WAIT).await.is_some(),
            "replica2 follows the new primary"
        );
        let link = stack.project.spec().replicas[1].node.links.replication;
        let spec = stack.project.spec();
        let admin = drr_stack::pg::connect(
            spec,
            spec.node("replica2").unwrap(),
            drr_stack::pg::Login::admin(&secrets),
        )
        .await
        .unwrap();
        let conninfo: String = admin
            .query_one("SHOW primary_conninfo", &[])
            .await
            .unwrap()
            .get(0);
        let port = format!(
            "port={}",
            link.expect("replica2 opts its replication link in")
        );
        assert!(
            conninfo.contains(render::compose::HOST_GATEWAY) && conninfo.contains(&port),
            "replica2 streams around the proxy after the failover: {conninfo}"
        );
        drop(admin);
        drop(follower);
        drr_stack::failover::run(&compose, &secrets, Some("primary"), &mut progress)
            .await
            .expect("failover back");
        let runtime = drr_stack::topology::discover(stack.project.spec(), &secrets)
            .await
            .expect("one primary");
        assert_eq!(runtime.primary.name, "primary");
        drop((new_primary, old_primary, compose));

        // A spec without replica2 and with one more database: `up` drops
        // replica2's slot and volume and creates the database on the old volume.
        let mut spec = stack.project.spec().clone().database("extra", "app");
        spec.replicas.retain(|r| r.node.name != "replica2");
        stack.respec(spec);
        stack.up().await;
        assert_eq!(stack.volumes().len(), 2, "volumes after removing replica2");
        let primary = stack.connect("primary").await;
        let slots: Vec<String> = primary
            .query(
                "SELECT slot_name::text FROM pg_replication_slots ORDER BY 1",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        assert_eq!(slots, ["replica1"], "slots after removing replica2");
        let extra: bool = primary
            .query_one(
                "SELECT EXISTS (SELECT FROM pg_database WHERE datname = 'extra')",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert!(extra, "the database added to the spec exists");
        drop(primary);

        // Renaming the primary in the spec deletes no data without `--yes`.
        let mut renamed = stack.project.spec().clone();
        renamed.primary.name = "main".into();
        let before = stack.volumes();
        stack.respec(renamed);
        let err = stack
            .compose()
            .up(&mut Progress::new(true))
            .await
            .expect_err("up refuses to delete the old primary's volume");
        let text = format!("{err:#}");
        assert!(
            text.contains("node `primary` left the spec") && text.contains("--yes"),
            "{text}"
        );
        assert_eq!(stack.volumes(), before, "no volume was deleted");

        // `destroy` removes the volumes too.
        stack.compose().destroy(&mut Progress::new(false)).unwrap();
        assert!(stack.volumes().is_empty(), "volumes left after destroy");
    }
}

/// The compose stack's fault proxy runs as the server user (when the tests
/// run as root), and its replication links, which listen on Docker's
/// bridge address, admit this host (the containers' streaming shows they
/// are admitted; that others are not is `net::admit`'s unit test: a peer
/// that is neither needs another machine).
async fn proxy_is_the_server_users_and_admits_this_host(compose: &Compose<'_>) {
    use tokio::io::AsyncReadExt as _;

    let net = compose.net_dir();
    let pid = drr_stack::net::launch::running_pid(&net).expect("the fault proxy runs");
    assert_eq!(support::process_uid(pid), support::server_uid());

    let config = net.config().unwrap().expect("the proxy's configuration");
    let link = config
        .links
        .iter()
        .find(|l| l.bind.is_some())
        .expect("a replication link on the bridge");
    let address = link.listen_addr(&config);
    // Held open (the primary waits for a startup message): admitted.
    let log = || std::fs::read_to_string(net.log_file()).unwrap_or_default();
    let mut admitted = tokio::net::TcpStream::connect(address)
        .await
        .unwrap_or_else(|e| panic!("{address}: {e}; proxy log:\n{}", log()));
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_millis(300), admitted.read(&mut byte)).await;
    assert!(
        read.is_err(),
        "the host was turned away: {read:?}; proxy log:\n{}",
        log()
    );
}
