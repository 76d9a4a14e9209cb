//! `cargo xtask status`: each node's role, process, Postgres version,
//! delay, lag and pause state, gathered over TCP (so it serves both
//! backends).

use std::collections::BTreeMap;

use std::process::ExitCode;

use anyhow::Result;
use serde::Serialize;

use crate::pg::{self, Login};
use crate::project::Project;
use crate::secrets::Secrets;
use crate::spec::{Backend, Member, StackSpec};
use crate::stack::Stack;

/// One node's status.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeStatus {
    /// Node name.
    pub node: String,
    /// `primary` or `replica`: the role the node plays now, which a
    /// failover changes (the spec's roles while the stack is down).
    pub role: &'static str,
    /// The timeline the node is on (nodes that are up); a failover starts
    /// a new one.
    pub timeline: Option<i32>,
    /// Port on the listen address.
    pub port: u16,
    /// Server process id (native) when it runs.
    pub pid: Option<i32>,
    /// Container state as the engine words it (compose), e.g. `Up 5 seconds (healthy)`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// `up` when it accepts logins, else `down`.
    pub state: &'static str,
    /// The Postgres version it runs, e.g. `15.18` (nodes that are up).
    pub server_version: Option<String>,
    /// The spec's delay (replicas).
    pub spec_delay_ms: Option<u64>,
    /// The delay in effect (replicas that are up).
    pub current_delay_ms: Option<u64>,
    /// Whether the replica streams from its slot on the primary.
    pub streaming: Option<bool>,
    /// Replay lag in time, from the primary's `pg_stat_replication` (0 when idle).
    pub replay_lag_ms: Option<f64>,
    /// Replay lag in bytes of WAL.
    pub replay_lag_bytes: Option<i64>,
    /// Whether replay runs or is held by a pause (replicas that are up).
    pub replay: Option<pg::Replay>,
    /// WAL the replica's slot keeps on the primary, in bytes.
    pub slot_wal_bytes: Option<i64>,
    /// The slot's `wal_status`: `reserved`, `extended`, `unreserved`, or
    /// `lost` (invalidated: `cargo xtask up` rebuilds the replica).
    pub slot_status: Option<String>,
    /// The network faults on the node's links (`cargo xtask net`), e.g.
    /// `client: latency 80ms; replication: blackhole`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub faults: Option<String>,
}

impl NodeStatus {
    /// Whether the node accepts logins.
    pub fn is_up(&self) -> bool {
        self.state == "up"
    }
}

/// `cargo xtask status`: every node's status on `backend`, as a table or
/// JSON; fails (non-zero exit) when a node the spec declares is down.
pub async fn run(project: &Project, backend: Backend, json: bool) -> Result<ExitCode> {
    let nodes = report(project, backend).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&nodes)?);
    } else {
        print!("{}", table(&nodes));
    }
    let Some(down) = nodes.iter().find(|n| !n.is_up()) else {
        return Ok(ExitCode::SUCCESS);
    };
    if !json {
        eprintln!(
            "node `{}` is down; start the stack with `cargo xtask up`",
            down.node
        );
    }
    Ok(ExitCode::FAILURE)
}

/// Every spec node's status on `backend`, in its current role: what SQL
/// over TCP tells, and what the backend knows of its processes (when it can
/// be opened).
pub async fn report(project: &Project, backend: Backend) -> Result<Vec<NodeStatus>> {
    let secrets = project.secrets()?;
    let stack = Stack::open(project, backend).ok();
    let pids = stack.as_ref().map(Stack::pids).unwrap_or_default();
    let runtime = match crate::topology::discover(project.spec(), &secrets).await {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("warning: {e:#}");
            project.spec().clone()
        }
    };
    let mut nodes = gather(&runtime, &secrets, &pids).await;
    if let Some(stack) = &stack {
        stack.annotate(&mut nodes);
    }
    Ok(nodes)
}

/// Gathers every spec node's status; `pids` comes from the backend.
pub async fn gather(
    spec: &StackSpec,
    secrets: &Secrets,
    pids: &BTreeMap<String, i32>,
) -> Vec<NodeStatus> {
    let admin = Login::admin(secrets);
    let primary = pg::connect(spec, &spec.primary, admin).await.ok();
    let slots = match &primary {
        Some(client) => pg::streaming(client).await.unwrap_or_default(),
        None => Vec::new(),
    };
    let mut out = Vec::new();
    for member in spec.members() {
        let node = member.node();
        let mut status = NodeStatus {
            node: node.name.clone(),
            role: member.role_name(),
            timeline: None,
            port: node.port,
            pid: pids.get(&node.name).copied(),
            container: None,
            state: "down",
            server_version: None,
            spec_delay_ms: None,
            current_delay_ms: None,
            streaming: None,
            replay_lag_ms: None,
            replay_lag_bytes: None,
            replay: None,
            slot_wal_bytes: None,
            slot_status: None,
            faults: None,
        };
        match member {
            Member::Primary(_) => {
                if let Some(client) = &primary {
                    status.state = "up";
                    status.server_version = pg::server_version(client).await.ok();
                    status.timeline = pg::timeline(client).await.ok();
                }
            }
            Member::Replica(replica) => {
                status.spec_delay_ms = Some(replica.delay.as_millis() as u64);
                let client = pg::connect(spec, node, admin).await.ok();
                let replay = match &client {
                    Some(client) => pg::replay_state(client).await.ok(),
                    None => None,
                };
                // The slot the replica names (drr names it after the node;
                // an HA engine or a managed service, anyhow).
                let slot_name = replay.as_ref().and_then(|r| r.slot.as_deref());
                let slot = slots
                    .iter()
                    .find(|s| Some(s.slot.as_str()) == slot_name || s.slot == node.name);
                status.streaming = Some(
                    slot.is_some_and(|s| s.streaming)
                        || replay.as_ref().is_some_and(|r| r.streaming),
                );
                status.replay_lag_bytes = slot.and_then(|s| s.replay_lag_bytes);
                status.slot_wal_bytes = slot.and_then(|s| s.retained_bytes);
                status.slot_status = slot.and_then(|s| s.wal_status.clone());
                status.replay_lag_ms = slot
                    .filter(|s| s.streaming)
                    .map(|s| s.replay_lag_ms.unwrap_or(0.0));
                if let (Some(replay), Some(client)) = (replay, &client) {
                    status.state = "up";
                    status.server_version = pg::server_version(client).await.ok();
                    status.timeline = pg::timeline(client).await.ok();
                    status.current_delay_ms = Some(replay.delay_ms);
                    status.replay = Some(replay.replay);
                }
            }
        }
        out.push(status);
    }
    out
}

/// A fixed-width table for people.
pub fn table(nodes: &[NodeStatus]) -> String {
    let containers = nodes.iter().any(|n| n.container.is_some());
    let header = [
        "NODE",
        "ROLE",
        "TL",
        "PORT",
        if containers { "CONTAINER" } else { "PID" },
        "STATE",
        "VERSION",
        "DELAY (SPEC)",
        "LAG",
        "LAG BYTES",
        "SLOT WAL",
        "REPLAY",
    ];
    let faults = nodes.iter().any(|n| n.faults.is_some());
    let mut header = header.to_vec();
    if faults {
        header.push("FAULTS");
    }
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| {
            let opt = |v: Option<String>| v.unwrap_or_else(|| "-".to_owned());
            let delay = match (n.current_delay_ms, n.spec_delay_ms) {
                (Some(c), Some(s)) if c == s => format!("{c} ms"),
                (Some(c), Some(s)) => format!("{c} ms ({s} ms)"),
                (None, Some(s)) => format!("- ({s} ms)"),
                _ => "-".to_owned(),
            };
            let replay = match (&n.replay, n.streaming) {
                (Some(r), Some(false)) => format!("{r}, not streaming"),
                (Some(r), _) => r.to_string(),
                (None, _) => "-".to_owned(),
            };
            [
                n.node.clone(),
                n.role.to_owned(),
                opt(n.timeline.map(|t| t.to_string())),
                n.port.to_string(),
                match &n.container {
                    Some(state) => state.clone(),
                    None => opt(n.pid.map(|p| p.to_string())),
                },
                n.state.to_owned(),
                opt(n.server_version.clone()),
                delay,
                opt(n.replay_lag_ms.map(|l| format!("{l:.0} ms"))),
                opt(n.replay_lag_bytes.map(|b| b.to_string())),
                match (n.slot_wal_bytes, &n.slot_status) {
                    (_, Some(status)) if status == "lost" => "lost".to_owned(),
                    (Some(bytes), _) => format!("{:.1} MB", bytes as f64 / 1_048_576.0),
                    (None, _) => "-".to_owned(),
                },
                replay,
            ]
            .into_iter()
            .chain(faults.then(|| opt(n.faults.clone())))
            .collect()
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let text: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("{}\n", text.join("  ").trim_end())
    };
    let mut out = line(header.clone());
    for row in &rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_shows_runtime_and_spec_delay() {
        let replica = NodeStatus {
            node: "replica1".into(),
            role: "replica",
            timeline: Some(2),
            port: 5433,
            pid: Some(42),
            container: None,
            state: "up",
            server_version: Some("15.18".into()),
            spec_delay_ms: Some(3000),
            current_delay_ms: Some(5000),
            streaming: Some(true),
            replay_lag_ms: Some(0.0),
            replay_lag_bytes: Some(0),
            replay: Some(pg::Replay::Paused),
            slot_wal_bytes: Some(16 * 1_048_576),
            slot_status: Some("reserved".into()),
            faults: None,
        };
        let text = table(std::slice::from_ref(&replica));
        let row = text.lines().nth(1).unwrap();
        assert!(
            row.contains("up     15.18")
                && row.contains("5000 ms (3000 ms)")
                && row.contains("16.0 MB")
                && row.ends_with("paused"),
            "{text}"
        );
        assert!(
            text.starts_with("NODE") && text.contains("STATE  VERSION"),
            "{text}"
        );
        assert!(!text.contains("FAULTS"), "{text}");
        let cut = NodeStatus {
            faults: Some("replication: blackhole".into()),
            ..replica
        };
        let text = table(&[cut]);
        assert!(
            text.lines().next().unwrap().ends_with("FAULTS")
                && text
                    .lines()
                    .nth(1)
                    .unwrap()
                    .ends_with("replication: blackhole"),
            "{text}"
        );
    }
}
