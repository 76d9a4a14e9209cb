//! drr attached to a cluster it did not start: a Patroni cluster (etcd and
//! two nodes) on this machine. `up` checks it, `status`, `env` and `probe`
//! work on it, `delay` refuses what Patroni would undo, and after `patronictl switchover`
//! drr follows the roles Patroni gave.

mod requires_patroni {
    use std::process::ExitCode;
    use std::time::{Duration, Instant};

    use drr_stack::cli::run_args;
    use drr_stack::lag::{self, DelayChange};
    use drr_stack::testing::patroni::{PATRONI, PatroniCluster, PatroniOptions};
    use drr_stack::testing::scratch_dir;

    #[test]
    fn drr_attaches_to_a_patroni_cluster_and_follows_its_switchover() {
        PATRONI.require(std::path::Path::new(env!("CARGO_MANIFEST_DIR")));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let started = Instant::now();
        let cluster = runtime
            .block_on(PatroniCluster::start(PatroniOptions::default()))
            .expect("a Patroni cluster");
        let ready = started.elapsed();
        for (var, value) in cluster.credentials() {
            // SAFETY: the only test of this binary, on a one-thread runtime
            // that is not running now: nothing reads the environment
            // concurrently.
            unsafe { std::env::set_var(var, value) };
        }
        let root = scratch_dir("drr-patroni-ws-").expect("a workspace");
        let run = |args: &[&str]| {
            let args = ["--quiet"].iter().chain(args).copied();
            run_args(args, cluster.spec().clone(), root.path())
        };
        let timed = |args: &[&str]| {
            let started = Instant::now();
            let code = run(args);
            (code, started.elapsed())
        };

        assert_eq!(run(&["up"]), ExitCode::SUCCESS, "up checks the cluster");
        let (code, status_took) = timed(&["status"]);
        assert_eq!(code, ExitCode::SUCCESS);
        assert_eq!(run(&["env"]), ExitCode::SUCCESS);
        let (code, probe_took) = timed(&["probe", "--duration", "2s", "--interval", "100ms"]);
        assert_eq!(
            code,
            ExitCode::SUCCESS,
            "every probe marker reached the replica"
        );

        // `delay` is refused, and changes nothing: Patroni owns the
        // recovery settings and would remove an ALTER SYSTEM delay at its
        // next loop. Showing the delay works.
        let leader = runtime.block_on(cluster.leader()).expect("a leader");
        let replica = if leader == "node1" { "node2" } else { "node1" };
        let project = drr_stack::project::Project::new(cluster.spec().clone(), root.path())
            .expect("a valid spec");
        let secrets = project.secrets().expect("the admin credentials");
        let targets = lag::select(cluster.spec(), &[]).expect("the spec's replicas");
        let refused = runtime
            .block_on(lag::delay(
                cluster.spec(),
                &secrets,
                &targets,
                DelayChange::Set(Duration::from_millis(300)),
            ))
            .expect_err("Patroni would undo it");
        assert!(
            format!("{refused:#}").contains("managed by Patroni")
                && format!("{refused:#}").contains("patronictl reload"),
            "{refused:#}"
        );
        assert_eq!(run(&["delay", "300ms"]), ExitCode::FAILURE);
        assert_eq!(
            show_delay(&runtime, &cluster, replica),
            "0",
            "nothing changed"
        );
        assert_eq!(run(&["delay"]), ExitCode::SUCCESS, "showing the delay");

        let started = Instant::now();
        runtime
            .block_on(cluster.switchover(replica))
            .expect("patronictl switchover");
        let switchover_took = started.elapsed();
        let roles = runtime
            .block_on(drr_stack::topology::discover(cluster.spec(), &secrets))
            .expect("drr finds the roles");
        assert_eq!(roles.primary.name, replica, "drr follows the new leader");
        assert_eq!(run(&["status"]), ExitCode::SUCCESS);
        assert_eq!(run(&["failover"]), ExitCode::FAILURE, "Patroni's job");
        assert_eq!(run(&["down"]), ExitCode::FAILURE, "never stopped by drr");
        runtime
            .block_on(cluster.wait_ready())
            .expect("the cluster is untouched");

        eprintln!(
            "patroni: cluster ready in {:.1} s; `status` {} ms, `probe --duration 2s` {} ms; \
             switchover (patronictl until both nodes run and stream) {} ms",
            ready.as_secs_f64(),
            status_took.as_millis(),
            probe_took.as_millis(),
            switchover_took.as_millis()
        );
    }

    fn show_delay(
        runtime: &tokio::runtime::Runtime,
        cluster: &PatroniCluster,
        node: &str,
    ) -> String {
        runtime.block_on(async {
            let client = cluster.admin(node).await.expect("the replica");
            let row = client
                .query_one("SHOW recovery_min_apply_delay", &[])
                .await
                .expect("its delay");
            row.get(0)
        })
    }
}
