//! When a stack is ready, decided the same way for both backends: over TCP
//! on the published ports. A backend only says what it alone knows about
//! its servers ([`Servers`]): whether one runs, whether one gave up, and
//! the end of its log for an error message.
//!
//! `up` on either backend: [`check_ports`] before anything starts, then
//! [`wait_logins`] per node, then [`wait_replicas`]; last,
//! [`report_versions`] says which Postgres each node runs.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use tokio_postgres::Client;

use crate::host::ports;
use crate::pg::{self, Login};
use crate::progress::Progress;
use crate::secrets::Secrets;
use crate::spec::{Backend, Node, Replica, StackSpec};

/// How often a wait polls the nodes.
const POLL: Duration = Duration::from_millis(5);

/// How often a wait asks the backend whether a server gave up (asking a
/// container engine costs tens of milliseconds).
const ALIVE_POLL: Duration = Duration::from_millis(200);

/// What a backend knows about its servers that SQL cannot tell.
pub trait Servers {
    /// The backend, for the commands that messages suggest.
    fn backend(&self) -> Backend;

    /// How long replicas may take to stream after their servers start.
    fn ready_timeout(&self) -> Duration;

    /// Whether `node`'s server (process or container) runs, so that the
    /// port it holds is its own.
    fn runs(&self, node: &str) -> bool;

    /// Fails, saying why, when `node`'s server gave up while starting
    /// (exited, keeps restarting, logged a fatal error).
    fn check_alive(&self, node: &str) -> Result<()>;

    /// The end of `node`'s log, for an error message.
    fn log_tail(&self, node: &str) -> String;

    /// What `node`'s log says since its start, for [`stream_failure`].
    fn recent_log(&self, node: &str) -> String;
}

/// A replica that can never stream from the primary as it is, and why: its
/// data no longer fits the primary's (see [`stream_failure`]). A backend
/// answers by rebuilding it from the primary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("replica `{replica}` cannot stream from the primary: {reason}")]
pub struct CannotStream {
    /// The replica.
    pub replica: String,
    /// What its log says, e.g. that the system identifiers differ.
    pub reason: String,
}

/// Causes, as a standby's log words them, for which a replica will never
/// stream until it is rebuilt; connection failures (a primary restarting)
/// are not among them.
const PERMANENT_STREAM_FAILURES: [&str; 6] = [
    "database system identifier differs",
    "has already been removed",
    "is ahead of the WAL flush position",
    "is not a child of",
    "highest timeline",
    "has been invalidated",
];

/// The first FATAL of the server (not of a session) in `log` that says the
/// replica can never stream as it is (see [`PERMANENT_STREAM_FAILURES`]),
/// without its prefix.
pub fn stream_failure(log: &str) -> Option<String> {
    crate::server_log::failures(log)
        .filter(|f| !f.of_session())
        .find(|f| {
            PERMANENT_STREAM_FAILURES
                .iter()
                .any(|cause| f.message.contains(cause))
        })
        .map(|f| f.message.to_owned())
}

/// Fails before anything starts when a node that is not running finds its
/// port taken, naming the holder.
pub fn check_ports(spec: &StackSpec, servers: &impl Servers) -> Result<()> {
    for node in spec.nodes() {
        if servers.runs(&node.name) {
            continue;
        }
        if let Some(holder) = ports::holder(spec.listen, node.port) {
            let other = match servers.backend() {
                Backend::Native => Backend::Compose,
                Backend::Compose => Backend::Native,
            };
            anyhow::bail!(
                "port {} on {} (node `{}`) is already in use by {holder}; stop it (a {other} stack \
                 of this spec: `cargo xtask down --backend {other}`), or give `{}` another port in \
                 the spec",
                node.port,
                spec.listen,
                node.name,
                node.name
            );
        }
    }
    Ok(())
}

/// Waits until `node` accepts the superuser over TCP, for at most
/// `timeout`, failing early (with the backend's reason) when its server
/// gave up. Returns the client.
pub async fn wait_logins(
    spec: &StackSpec,
    secrets: &Secrets,
    node: &Node,
    servers: &impl Servers,
    timeout: Duration,
) -> Result<Client> {
    let mut last_check = Instant::now();
    let mut gave_up = false;
    let result = pg::connect_retrying(spec, node, Login::admin(secrets), timeout, || {
        if last_check.elapsed() < ALIVE_POLL {
            return Ok(());
        }
        last_check = Instant::now();
        servers
            .check_alive(&node.name)
            .inspect_err(|_| gave_up = true)
    })
    .await;
    match result {
        Err(e) if !gave_up => Err(e.context(servers.log_tail(&node.name))),
        other => other,
    }
}

/// How a backend rebuilds a replica that cannot stream: removes its data
/// (and server), then starts it again from a fresh base backup.
pub trait Rebuild {
    /// Removes the replica's server and data.
    fn remove(&self, replica: &str) -> Result<()>;

    /// Starts `replica` from a fresh base backup and waits until it accepts
    /// logins.
    async fn restart(&self, replica: &Replica, progress: &mut Progress) -> Result<()>;
}

/// Waits until every replica streams ([`wait_replicas`]). A replica whose
/// log says it can never stream as it is ([`CannotStream`]: its data no
/// longer fits the primary's) is rebuilt, once, and said so: removed, its
/// slot dropped, started from a fresh base backup; then the wait starts
/// over.
pub async fn wait_streaming(
    spec: &StackSpec,
    secrets: &Secrets,
    admin: &Client,
    servers: &impl Servers,
    rebuild: &impl Rebuild,
    progress: &mut Progress,
) -> Result<()> {
    let timeout = servers.ready_timeout();
    let mut rebuilt = Vec::new();
    loop {
        let started = Instant::now();
        let error = match wait_replicas(spec, secrets, admin, servers, timeout).await {
            Ok(()) => {
                progress.record("replicas stream", started.elapsed());
                return Ok(());
            }
            Err(error) => error,
        };
        let Some(cannot) = error.downcast_ref::<CannotStream>() else {
            return Err(error);
        };
        let name = cannot.replica.clone();
        let Some(replica) = spec
            .find_replica(&name)
            .filter(|_| !rebuilt.contains(&name))
        else {
            return Err(error);
        };
        progress.step(
            &format!("remove {name} to rebuild it: {}", cannot.reason),
            || rebuild.remove(&name),
        )?;
        rebuilt.push(name.clone());
        pg::drop_slot(admin, &name).await?;
        rebuild.restart(replica, progress).await?;
    }
}

/// Waits until the spec's login role can log in to the primary, every
/// replica is in recovery, and every replica streams from its slot, for at
/// most `timeout`.
pub async fn wait_replicas(
    spec: &StackSpec,
    secrets: &Secrets,
    admin: &Client,
    servers: &impl Servers,
    timeout: Duration,
) -> Result<()> {
    if let Ok(credentials) = spec.login_credentials() {
        pg::connect(spec, &spec.primary, Login::of(&credentials))
            .await
            .with_context(|| {
                format!(
                    "the login role cannot log in to the primary: its data was made from another \
                     spec; run `{}` and `up` to rebuild it",
                    destroy_command(servers.backend())
                )
            })?;
    }
    for replica in &spec.replicas {
        let client = pg::connect(spec, &replica.node, Login::admin(secrets)).await?;
        let state = pg::replay_state(&client).await?;
        anyhow::ensure!(
            state.in_recovery,
            "node `{}` is not in recovery: it is not a replica any more; run `{}` and `up` to \
             rebuild the stack",
            replica.node.name,
            destroy_command(servers.backend())
        );
    }
    let deadline = Instant::now() + timeout;
    let mut last_check = Instant::now();
    loop {
        let rows = pg::streaming(admin).await?;
        let lagging: Vec<&str> = spec
            .replicas
            .iter()
            .map(|r| r.node.name.as_str())
            .filter(|name| !rows.iter().any(|row| row.slot == *name && row.streaming))
            .collect();
        let Some(&first) = lagging.first() else {
            return Ok(());
        };
        if last_check.elapsed() >= ALIVE_POLL {
            last_check = Instant::now();
            for replica in &lagging {
                if let Some(reason) = stream_failure(&servers.recent_log(replica)) {
                    return Err(CannotStream {
                        replica: (*replica).to_owned(),
                        reason,
                    }
                    .into());
                }
            }
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "replica `{first}` does not stream from the primary; {}",
                servers.log_tail(first)
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Says which server version each node runs (asked over TCP), on one line
/// of `up`'s progress.
pub async fn report_versions(
    spec: &StackSpec,
    secrets: &Secrets,
    progress: &mut Progress,
) -> Result<()> {
    let started = Instant::now();
    let mut versions = Vec::new();
    for node in spec.nodes() {
        let client = pg::connect(spec, node, Login::admin(secrets)).await?;
        versions.push((node.name.as_str(), pg::server_version(&client).await?));
    }
    progress.record(&versions_line(&versions), started.elapsed());
    Ok(())
}

/// `Postgres 15.18 on primary, replica1`: nodes grouped by version, in
/// the order given.
fn versions_line(versions: &[(&str, String)]) -> String {
    let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
    for (node, version) in versions {
        match groups.iter_mut().find(|(v, _)| v == version) {
            Some((_, nodes)) => nodes.push(node),
            None => groups.push((version, vec![node])),
        }
    }
    let parts: Vec<String> = groups
        .iter()
        .map(|(version, nodes)| format!("{version} on {}", nodes.join(", ")))
        .collect();
    format!("Postgres {}", parts.join("; "))
}

/// `cargo xtask destroy` for `backend` (the flag only where it is not the
/// default).
fn destroy_command(backend: Backend) -> String {
    match backend {
        Backend::Native => "cargo xtask destroy".to_owned(),
        other => format!("cargo xtask destroy --backend {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_permanent_stream_failures_count() {
        let log = "\
2026-11-26 10:00:00.001 UTC [10] LOG:  started streaming WAL from primary at 0/3000000 on timeline 1
2026-11-26 10:00:00.002 UTC [11] FATAL:  could not connect to the primary server: connection refused
2026-11-26 10:00:00.003 UTC [12] app@db FATAL:  database system identifier differs (a session)
2026-11-26 10:00:01.000 UTC [13] walreceiver FATAL:  database system identifier differs between the primary and standby
";
        assert_eq!(
            stream_failure(log).as_deref(),
            Some("database system identifier differs between the primary and standby")
        );
        let transient = log.lines().take(3).collect::<Vec<_>>().join("\n");
        assert_eq!(stream_failure(&transient), None);
    }

    #[test]
    fn versions_are_grouped_in_node_order() {
        let same = [
            ("primary", "15.18".to_owned()),
            ("replica1", "15.18".to_owned()),
        ];
        assert_eq!(versions_line(&same), "Postgres 15.18 on primary, replica1");
        let mixed = [
            ("primary", "15.18".to_owned()),
            ("replica1", "15.15".to_owned()),
            ("replica2", "15.18".to_owned()),
        ];
        assert_eq!(
            versions_line(&mixed),
            "Postgres 15.18 on primary, replica2; 15.15 on replica1"
        );
    }
}
