//! A cluster drr did not start, attached as an external cluster: a native
//! stack of the test's own, described by host and port with its
//! credentials in environment variables, and with the spec naming the
//! replica as its primary (an HA engine decides the roles, not the spec).
//! Commands that read or tune work; commands that run the cluster are
//! refused and leave it as it was.

use std::process::ExitCode;
use std::time::Duration;

use drr_stack::cli::{Specs, run_args};
use drr_stack::spec::{EnvCredentials, External, Node, Replica, StackSpec};
use drr_stack::testing::{LOGIN, TempStack, scratch_dir};

#[test]
fn an_external_cluster_is_checked_read_and_tuned_but_never_run() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let spec = drr_stack::testing::spec(&[Duration::ZERO]).expect("a spec");
    let stack = runtime
        .block_on(TempStack::start(spec))
        .expect("a stack of the test's own");
    let secrets = stack.secrets().expect("secrets");
    // SAFETY: the only test of this binary, and its runtime has one thread,
    // which is this one: nothing reads the environment concurrently.
    unsafe {
        std::env::set_var("EXT_APP_USER", LOGIN.0);
        std::env::set_var("EXT_APP_PASSWORD", LOGIN.1);
        std::env::set_var("EXT_ADMIN_USER", &secrets.superuser);
        std::env::set_var("EXT_ADMIN_PASSWORD", &secrets.superuser_password);
    }
    let ports = (
        stack.spec().primary.port,
        stack.spec().replicas[0].node.port,
    );
    let external = StackSpec::new("ext", 15)
        .primary(Node::new("node_b", ports.1).host("127.0.0.1"))
        .replica(Replica::new("node_a", ports.0).host("localhost"))
        .external(External::new(
            "app",
            EnvCredentials::new("EXT_APP_USER", "EXT_APP_PASSWORD"),
            EnvCredentials::new("EXT_ADMIN_USER", "EXT_ADMIN_PASSWORD"),
        ));
    let root = scratch_dir("drr-external-").expect("a workspace");
    let specs = Specs::new(drr_stack::testing::spec(&[]).expect("a local spec")).cluster(external);
    let run = |args: &[&str]| {
        let args = ["--cluster", "ext", "--quiet"].iter().chain(args).copied();
        run_args(args, specs.clone(), root.path())
    };

    assert_eq!(run(&["up"]), ExitCode::SUCCESS, "up checks the cluster");
    assert_eq!(run(&["status"]), ExitCode::SUCCESS);
    assert_eq!(run(&["env"]), ExitCode::SUCCESS);
    assert_eq!(
        run(&["probe", "--duration", "1s", "--interval", "100ms"]),
        ExitCode::SUCCESS
    );

    // `delay` tunes the node that is the replica now, whatever the spec calls it.
    assert_eq!(run(&["delay", "250ms"]), ExitCode::SUCCESS);
    let delay = runtime.block_on(async {
        let replica = stack.admin("replica1").await.expect("the replica");
        let row = replica
            .query_one("SHOW recovery_min_apply_delay", &[])
            .await
            .expect("its delay");
        row.get::<_, String>(0)
    });
    assert_eq!(delay, "250ms");

    for refused in [
        &["failover"][..],
        &["down"],
        &["destroy", "--yes"],
        &["gen"],
        &["logs"],
        &["test", "--down"],
    ] {
        assert_eq!(run(refused), ExitCode::FAILURE, "{refused:?} is refused");
    }
    assert_eq!(
        run(&["status"]),
        ExitCode::SUCCESS,
        "the cluster still runs"
    );
    assert!(
        !root.path().join("compose").exists() && !root.path().join("target").exists(),
        "nothing was generated or made for the external cluster"
    );
    let roles = runtime.block_on(async {
        let primary = stack.admin("primary").await.expect("the primary");
        let row = primary
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await
            .expect("its role");
        row.get::<_, bool>(0)
    });
    assert!(!roles, "the primary is still the primary");

    let unknown = ["--cluster", "nope", "status"];
    assert_eq!(
        run_args(unknown, specs.clone(), root.path()),
        ExitCode::FAILURE
    );
}
