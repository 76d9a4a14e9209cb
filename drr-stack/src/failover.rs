//! `cargo xtask failover [--to NODE]`: the cluster changing under an
//! application, on demand. A replica is promoted, the other replicas follow
//! it, and the old primary rejoins it as a replica; `--to primary` switches
//! back.
//!
//! The steps, each timed and printed:
//! 1. the old primary stops (a fast shutdown sends the replicas all its WAL
//!    first, so no acknowledged write is lost), unless it is down already;
//! 2. the target has received all of it, then `pg_promote()` (promotion
//!    ends the apply delay: received WAL replays at once);
//! 3. the new primary gets a replication slot for every other node, and
//!    the other replicas stream from it (a new `primary_conninfo`, reloaded;
//!    they follow the new timeline by themselves);
//! 4. the old primary is rewound onto the new timeline (`pg_rewind`, which
//!    needs `wal_log_hints`, on in every node drr renders), made a standby
//!    of the new primary, and started;
//! 5. every replica streams from the new primary.
//!
//! The roles are state: they live in the data (a standby's
//! `standby.signal`), so `up` keeps them, `status` shows them, and `destroy`
//! forgets them. Delays belong to nodes: a node that becomes a replica runs
//! with its own spec delay (none for the spec's primary).

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use tokio_postgres::Client;

use crate::pg::{self, Login};
use crate::progress::Progress;
use crate::render::{sql, standby};
use crate::secrets::Secrets;
use crate::spec::StackSpec;
use crate::stack::Stack;

/// Replicas delayed by at most this much are waited for until they stream.
const PROMPT: Duration = Duration::from_millis(100);

/// How long the target may take to receive the old primary's last WAL.
const CATCH_UP: Duration = Duration::from_secs(30);

/// `cargo xtask failover`: promotes `to` (default: the replica that has
/// received the most WAL) and rejoins the old primary as its replica;
/// returns the stack as it runs afterwards.
pub async fn run(
    stack: &Stack<'_>,
    secrets: &Secrets,
    to: Option<&str>,
    progress: &mut Progress,
) -> Result<StackSpec> {
    let spec = stack.spec();
    anyhow::ensure!(
        spec.is_managed(),
        "`{}` is an external cluster: failing it over is its HA engine's job (`patronictl \
         switchover` for Patroni, a managed service's console); drr follows whatever it does, and \
         `cargo xtask status` shows the roles",
        spec.name
    );
    let _lock = stack.lock()?;
    let started = Instant::now();
    let runtime = stack.runtime(secrets).await?;
    let plan = Plan::new(&runtime, secrets, to).await?;
    let after = plan.execute(stack, secrets, progress).await?;
    let timeline = pg::timeline(&plan.target).await?;
    progress.done(&format!(
        "`{}` is the primary (timeline {timeline}) and `{}` its replica, after {} ms",
        after.primary.name,
        plan.old,
        started.elapsed().as_millis()
    ));
    Ok(after)
}

/// A checked failover: who steps down, who takes over.
struct Plan {
    /// The node that is the primary now.
    old: String,
    /// Its superuser connection, if it is up.
    old_client: Option<Client>,
    /// The node to promote.
    to: String,
    /// Its superuser connection.
    target: Client,
}

impl Plan {
    /// Checks everything before anything changes: there is a replica, the
    /// target is one, it is up, and every running node can be rewound.
    async fn new(runtime: &StackSpec, secrets: &Secrets, to: Option<&str>) -> Result<Plan> {
        anyhow::ensure!(
            !runtime.replicas.is_empty(),
            "the spec declares no replicas, so there is nothing to fail over to; add one to the \
             spec and run `cargo xtask up`"
        );
        let old = runtime.primary.name.clone();
        if let Some(name) = to {
            runtime.node(name)?;
            anyhow::ensure!(
                name != old,
                "`{name}` is the primary already; `cargo xtask status` shows each node's role"
            );
        }
        let admin = Login::admin(secrets);
        let old_client = pg::connect(runtime, &runtime.primary, admin).await.ok();
        let mut candidates = Vec::new();
        for replica in &runtime.replicas {
            let name = replica.node.name.as_str();
            if to.is_some_and(|to| to != name) {
                continue;
            }
            let Ok(client) = pg::connect(runtime, &replica.node, admin).await else {
                anyhow::ensure!(
                    to.is_none(),
                    "`{name}` is down, so it cannot take over; start it with `cargo xtask up`"
                );
                continue;
            };
            let state = pg::replay_state(&client).await?;
            anyhow::ensure!(
                state.in_recovery,
                "`{name}` is not a replica; `cargo xtask status` shows each node's role"
            );
            let received = pg::received_position(&client).await?;
            candidates.push((received, name.to_owned(), client));
        }
        // The replica with the most WAL; the first in spec order on a tie.
        candidates.sort_by_key(|(received, _, _)| std::cmp::Reverse(*received));
        let Some((_, to, target)) = candidates.into_iter().next() else {
            anyhow::bail!(
                "every replica is down, so none can take over; start them with `cargo xtask up`"
            );
        };
        for client in std::iter::once(&target).chain(old_client.as_ref()) {
            let hints: String = client.query_one("SHOW wal_log_hints", &[]).await?.get(0);
            anyhow::ensure!(
                hints == "on",
                "the nodes run with wal_log_hints = off, which pg_rewind needs to rejoin the old \
                 primary; run `cargo xtask up` (it restarts them with it on), then fail over"
            );
        }
        Ok(Plan {
            old,
            old_client,
            to,
            target,
        })
    }

    /// Runs the failover; returns the stack as it runs afterwards.
    async fn execute(
        &self,
        stack: &Stack<'_>,
        secrets: &Secrets,
        progress: &mut Progress,
    ) -> Result<StackSpec> {
        // From the written spec, not `runtime`: a delay belongs to its node,
        // and a node that was promoted has none in `runtime`.
        let after = stack.spec().with_primary(&self.to)?;
        let new_primary = &after.primary;
        let old = self.old.as_str();
        if let Some(client) = &self.old_client {
            let last = pg::write_position(client).await?;
            progress.step(&format!("stop {old}"), || stack.stop_node(old))?;
            let waited = Instant::now();
            self.caught_up(last).await?;
            progress.record(
                &format!("{} received {old}'s last WAL", self.to),
                waited.elapsed(),
            );
        }
        let promoted = Instant::now();
        promote(&self.target, &self.to).await?;
        progress.record(&format!("promote {}", self.to), promoted.elapsed());

        // Replication links forward to the new primary from now on, so a
        // replica that opts one in keeps streaming through the proxy.
        if after.has_fault_links() {
            progress.step("fault proxy follows the new primary", || {
                stack.net_follow(&after)
            })?;
        }
        for replica in &after.replicas {
            pg::ensure_slot(&self.target, &replica.node.name).await?;
        }
        for replica in after.replicas.iter().filter(|r| r.node.name != old) {
            let name = replica.node.name.as_str();
            let Ok(client) = pg::connect(&after, &replica.node, Login::admin(secrets)).await else {
                eprintln!(
                    "note: `{name}` is down; `cargo xtask up` makes it follow `{}`",
                    self.to
                );
                continue;
            };
            let upstream = stack.stream_upstream(&after, name);
            let conninfo =
                standby::primary_conninfo(&after, &upstream, name, &secrets.replication_password);
            let repointed = Instant::now();
            follow(&client, &conninfo, name).await?;
            progress.record(&format!("{name} follows {}", self.to), repointed.elapsed());
        }
        progress.step(&format!("rewind {old} onto {}", self.to), || {
            stack.rewind(old, &after, secrets)
        })?;
        progress.step(&format!("make {old} a replica of {}", self.to), || {
            stack.make_standby(old, new_primary, secrets)
        })?;
        let restarted = Instant::now();
        stack.start_node(old, secrets).await?;
        progress.record(&format!("start {old}"), restarted.elapsed());
        // A delayed replica reconnects only once the commit it holds back is
        // due (its startup process waits out the delay first): wait for the
        // others, and say when the delayed ones follow.
        let mut prompt = after.clone();
        prompt.replicas.retain(|r| r.delay <= PROMPT);
        let streaming = Instant::now();
        stack.wait_replicas(&prompt, secrets, &self.target).await?;
        progress.record("replicas stream", streaming.elapsed());
        for replica in after.replicas.iter().filter(|r| r.delay > PROMPT) {
            eprintln!(
                "note: `{}` streams from `{}` once the commit it holds back is due (within its \
                 {} ms delay)",
                replica.node.name,
                self.to,
                replica.delay.as_millis()
            );
        }
        Ok(after)
    }

    /// Waits until the target has received WAL up to `last`, the old
    /// primary's position before it stopped (its shutdown sends the rest).
    async fn caught_up(&self, last: u64) -> Result<()> {
        let deadline = Instant::now() + CATCH_UP;
        loop {
            if pg::received_position(&self.target).await? >= last {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "`{}` did not receive the old primary's last WAL within {CATCH_UP:?}; nothing was \
                 promoted, and `cargo xtask up` restarts the old primary",
                self.to
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// Promotes the replica `client` is connected to, waiting for it, then
/// checkpoints it.
async fn promote(client: &Client, name: &str) -> Result<()> {
    let done: bool = client
        .query_one("SELECT pg_promote(true, 60)", &[])
        .await
        .with_context(|| format!("cannot promote `{name}`"))?
        .get(0);
    anyhow::ensure!(
        done,
        "`{name}` did not finish its promotion within 60 s; see `cargo xtask logs {name}`"
    );
    // pg_rewind reads the source's timeline from its control file, which
    // only a checkpoint after the promotion brings up to date.
    client
        .batch_execute("CHECKPOINT")
        .await
        .with_context(|| format!("cannot checkpoint `{name}` after its promotion"))?;
    Ok(())
}

/// Points the replica `client` is connected to at a new upstream.
async fn follow(client: &Client, conninfo: &str, name: &str) -> Result<()> {
    // ALTER SYSTEM takes no bind parameters: the values are quoted literals.
    for statement in [
        format!(
            "ALTER SYSTEM SET primary_conninfo = {}",
            sql::literal(conninfo)
        ),
        format!(
            "ALTER SYSTEM SET primary_slot_name = {}",
            sql::literal(name)
        ),
        "SELECT pg_reload_conf()".to_owned(),
    ] {
        client
            .batch_execute(&statement)
            .await
            .with_context(|| format!("cannot point `{name}` at the new primary"))?;
    }
    Ok(())
}
