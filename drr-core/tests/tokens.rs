//! Read-your-writes tokens across clusters: a router that outlives its
//! stack (`destroy` and `up` under a running app) and tokens from another
//! cluster or timeline. Each test runs stacks of its own: template-copied
//! clusters share one system identifier, as `cargo xtask up` makes them, and
//! some set the `drr.stack_id` setting a stack gives each instance.

mod support;

use std::time::Duration;

use drr_core::testing::TestStack;
use drr_core::{Consistency, LsnToken, Role, Router, RouterConfig};
use drr_stack::spec::{Node, Replica, Role as LoginRole, StackSpec};
use drr_stack::testing::{LOGIN, TempStack, free_ports};
use support::eventually;

/// Like `drr_stack::testing::spec`, on the given ports, with `stack_id` as
/// every node's `drr.stack_id` when given.
fn spec_on(ports: &[u16], delays: &[Duration], stack_id: Option<&str>) -> StackSpec {
    let with_id = |node: Node| match stack_id {
        Some(id) => node.setting("drr.stack_id", id),
        None => node,
    };
    let mut spec = StackSpec::new("t", 15)
        .primary(with_id(Node::new("primary", ports[0])))
        .role(LoginRole::login(LOGIN.0, LOGIN.1).createdb())
        .database("app", LOGIN.0);
    for (i, delay) in delays.iter().enumerate() {
        let mut replica = Replica::new(&format!("replica{}", i + 1), ports[i + 1]).delay(*delay);
        if let Some(id) = stack_id {
            replica = replica.setting("drr.stack_id", id);
        }
        spec = spec.replica(replica);
    }
    spec
}

async fn start(spec: StackSpec) -> anyhow::Result<(TempStack, TestStack)> {
    let own = TempStack::start(spec).await?;
    let stack = TestStack::from_vars(own.vars()?)?;
    Ok((own, stack))
}

/// Moves the stack's WAL position on by three segments (48 MB), cheaply.
async fn advance_wal(own: &TempStack) -> anyhow::Result<()> {
    let primary = own.admin("primary").await?;
    for _ in 0..3 {
        primary
            .batch_execute(
                "SELECT pg_switch_wal(); CREATE TABLE IF NOT EXISTS pad (); DROP TABLE pad",
            )
            .await?;
    }
    Ok(())
}

/// The replica's replay position as the router last saw it.
fn seen_replay(router: &Router) -> Option<drr_core::Lsn> {
    router
        .stats()
        .node("replica1")
        .and_then(|n| n.health.replay_lsn)
}

/// `cargo xtask destroy && cargo xtask up` under a running app: the new
/// stack starts its WAL far behind where the old one ended. The router
/// must not keep the old replay position (it only ever grew) and serve a
/// session's reads from a replica that has not replayed its writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_outliving_its_stack_reads_nothing_stale_from_the_next() -> anyhow::Result<()> {
    let ports = free_ports(2)?;
    let (old, stack) = start(spec_on(&ports, &[Duration::ZERO], None)).await?;
    advance_wal(&old).await?;
    let config: RouterConfig = stack.router_config()?;
    let router = Router::connect(config).await?;
    let old_end = {
        let primary = old.connect("primary").await?;
        drr_core::wal::commit_token(&primary).await?.lsn()
    };
    eventually(
        "the router to see the old replica caught up",
        Duration::from_secs(20),
        || async { seen_replay(&router).is_some_and(|lsn| lsn >= old_end) },
    )
    .await;
    drop(old);

    let (new, _) = start(spec_on(&ports, &[Duration::from_secs(2)], None)).await?;
    new.connect("primary")
        .await?
        .batch_execute("CREATE TABLE notes (id int PRIMARY KEY)")
        .await?;
    let replica = new.connect("replica1").await?;
    eventually(
        "the table to reach the new replica",
        Duration::from_secs(30),
        || async {
            replica
                .query_one("SELECT to_regclass('notes') IS NOT NULL", &[])
                .await
                .is_ok_and(|row| row.get::<_, bool>(0))
        },
    )
    .await;

    // The outage banned the replica: wait until it serves reads again.
    eventually(
        "the new replica to serve reads",
        Duration::from_secs(30),
        || async { router.route("SELECT 1").role == Role::Replica },
    )
    .await;
    let session = router.session_with(Consistency::ReadYourWrites);
    session.execute("INSERT INTO notes VALUES (1)", &[]).await?;
    let row = session
        .query_opt("SELECT id FROM notes WHERE id = 1", &[])
        .await?;
    assert!(
        row.is_some(),
        "read-your-writes missed the session's write on the new stack (replay seen: {:?}, \
         token: {:?})",
        seen_replay(&router),
        session.token()
    );
    assert!(seen_replay(&router).is_some_and(|lsn| lsn < old_end));
    Ok(())
}

/// Tokens name their cluster and timeline. One from another cluster (two
/// stacks made from one template, told apart by `drr.stack_id`), or from a
/// timeline no replica has reached, reads from the primary and is counted;
/// one from this cluster, or in the old `v1:` form, reads from a replica
/// that has replayed it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_from_another_cluster_or_timeline_read_from_the_primary() -> anyhow::Result<()> {
    let (a, a_stack) = start(spec_on(&free_ports(2)?, &[Duration::ZERO], Some("stack-a"))).await?;
    let (b, b_stack) = start(spec_on(&free_ports(2)?, &[Duration::ZERO], Some("stack-b"))).await?;
    // B is far ahead of A: by position alone, B's replica has replayed
    // anything A's token names.
    advance_wal(&b).await?;
    let a_token = drr_core::wal::commit_token(&a.connect("primary").await?).await?;
    let b_token = drr_core::wal::commit_token(&b.connect("primary").await?).await?;
    assert!(a_token.lsn() < b_token.lsn());
    assert_ne!(a_token.cluster(), b_token.cluster(), "{a_token} {b_token}");
    assert_eq!(a_token.timeline(), Some(1));
    assert!(a_token.to_string().starts_with("v2:"), "{a_token}");
    assert_eq!(a_token.to_string().parse::<LsnToken>()?, a_token);
    drop(a_stack);

    let router = Router::connect(b_stack.router_config()?).await?;
    eventually(
        "B's replica to replay B's token",
        Duration::from_secs(20),
        || async { seen_replay(&router).is_some_and(|lsn| lsn >= b_token.lsn()) },
    )
    .await;
    let role_for = async |token: LsnToken| -> anyhow::Result<Role> {
        let session = router
            .session_with(Consistency::ReadYourWrites)
            .with_token(token);
        Ok(session.replica().await?.role())
    };

    assert_eq!(role_for(b_token).await?, Role::Replica, "B's own token");
    let v1: LsnToken = format!("v1:{}", b_token.lsn()).parse()?;
    assert_eq!(role_for(v1).await?, Role::Replica, "a v1 token");
    assert_eq!(role_for(a_token).await?, Role::Primary, "a token from A");
    let next_timeline = LsnToken::from_cluster(
        b_token.lsn(),
        b_token.cluster().expect("a cluster"),
        b_token.timeline().expect("a timeline") + 1,
    );
    assert_eq!(
        role_for(next_timeline).await?,
        Role::Primary,
        "a later timeline"
    );

    let stats = router.stats();
    let fallbacks = stats.primary().map(|p| p.fallbacks).unwrap_or_default();
    assert_eq!(
        (fallbacks.foreign_token, fallbacks.unreached_timeline),
        (1, 1),
        "{stats:?}"
    );
    Ok(())
}
