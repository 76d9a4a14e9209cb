//! Opting nodes into network fault injection: which of a node's links go
//! through drr's fault proxy, on which ports the proxy listens, and the
//! port of its Toxiproxy-compatible HTTP API.
//!
//! Nothing here changes a stack that opts in to nothing: no proxy runs,
//! every port and every `primary_conninfo` stays as it was.

use std::collections::BTreeMap;

use super::{Node, Problem, Replica, StackSpec};

/// The links of one node that go through the fault proxy (none by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Links {
    /// Where applications reach the node through the proxy (the client
    /// link); drr's own tools keep using the node's port.
    pub client: Option<u16>,
    /// Where the replica's WAL stream reaches the primary through the
    /// proxy (the replication link); replicas only.
    pub replication: Option<u16>,
}

/// The two kinds of link a node may opt in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum LinkKind {
    /// Applications → the node.
    Client,
    /// The replica → its primary (the WAL stream).
    Replication,
}

impl LinkKind {
    /// `"client"` or `"replication"`.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkKind::Client => "client",
            LinkKind::Replication => "replication",
        }
    }
}

impl std::fmt::Display for LinkKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One proxied link as a stack runs it: the proxy listens on `listen` and
/// forwards to `upstream` (both on the stack's host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The node the link belongs to.
    pub node: String,
    /// Which of the node's links.
    pub kind: LinkKind,
    /// The proxy's port.
    pub listen: u16,
    /// The port it forwards to: the node's own (client), or the primary's
    /// (replication).
    pub upstream: u16,
}

impl Link {
    /// The link's name in the proxy and its API: `NODE-KIND`, e.g.
    /// `replica1-replication`.
    pub fn name(&self) -> String {
        format!("{}-{}", self.node, self.kind)
    }
}

impl Node {
    /// Puts the node's client link through the fault proxy, which listens
    /// on `port`: applications (`cargo xtask env`, `cargo xtask test`)
    /// reach the node there, and `cargo xtask net`/`partition` act on it.
    pub fn client_link(mut self, port: u16) -> Self {
        self.links.client = Some(port);
        self
    }
}

impl Replica {
    /// Puts the replica's client link through the fault proxy on `port`
    /// (see [`Node::client_link`]).
    pub fn client_link(mut self, port: u16) -> Self {
        self.node = self.node.client_link(port);
        self
    }

    /// Puts the replica's WAL stream through the fault proxy, which
    /// listens on `port` and forwards to the primary: the replica's
    /// `primary_conninfo` names this port.
    pub fn replication_link(mut self, port: u16) -> Self {
        self.node.links.replication = Some(port);
        self
    }
}

impl StackSpec {
    /// Serves Toxiproxy's HTTP API (the subset drr implements) on `port`,
    /// so that a test suite's Toxiproxy client drives the stack's faults.
    pub fn net_api(mut self, port: u16) -> Self {
        self.net_api = Some(port);
        self
    }

    /// Every proxied link of the stack as it runs, in node order (client
    /// link first). Empty when no node opts in.
    pub fn fault_links(&self) -> Vec<Link> {
        let mut links = Vec::new();
        for node in self.nodes() {
            if let Some(listen) = node.links.client {
                links.push(Link {
                    node: node.name.clone(),
                    kind: LinkKind::Client,
                    listen,
                    upstream: node.port,
                });
            }
        }
        for replica in &self.replicas {
            if let Some(listen) = replica.node.links.replication {
                links.push(Link {
                    node: replica.node.name.clone(),
                    kind: LinkKind::Replication,
                    listen,
                    upstream: self.primary.port,
                });
            }
        }
        links.sort_by(|a, b| (&a.node, a.kind).cmp(&(&b.node, b.kind)));
        links
    }

    /// Whether the stack runs the fault proxy: some node opts a link in.
    pub fn has_fault_links(&self) -> bool {
        self.nodes()
            .any(|n| n.links.client.is_some() || n.links.replication.is_some())
    }

    /// The stack as applications reach it: every node's port replaced by
    /// its client link's, where it has one.
    pub fn with_client_ports(&self) -> StackSpec {
        let mut spec = self.clone();
        let nodes =
            std::iter::once(&mut spec.primary).chain(spec.replicas.iter_mut().map(|r| &mut r.node));
        for node in nodes {
            node.port = node.links.client.unwrap_or(node.port);
        }
        spec
    }

    /// The port replica `node` streams from: its replication link's when
    /// it has one, else the primary's.
    pub fn replication_port(&self, node: &Node) -> u16 {
        node.links.replication.unwrap_or(self.primary.port)
    }
}

/// The rules of links: fixed, unprivileged ports no node or other link
/// uses; replication links on replicas only; no links on an external
/// cluster (drr runs no proxy for it).
pub(super) fn problems(spec: &StackSpec) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut report = |field: String, message: String, fix: &str| {
        problems.push(Problem {
            field,
            message,
            fix: fix.to_owned(),
        })
    };
    if spec.primary.links.replication.is_some() {
        report(
            "primary.links.replication".into(),
            "the primary has no replication link".into(),
            "call `.replication_link(port)` on a replica instead",
        );
    }
    let external = spec.external.is_some();
    let mut seen: BTreeMap<u16, String> = spec.nodes().map(|n| (n.port, n.name.clone())).collect();
    let ports = spec
        .nodes()
        .flat_map(|n| {
            [
                (format!("{}.links.client", n.name), n.links.client),
                (format!("{}.links.replication", n.name), n.links.replication),
            ]
        })
        .chain(std::iter::once(("net_api".to_owned(), spec.net_api)))
        .filter_map(|(field, port)| port.map(|p| (field, p)));
    for (field, port) in ports {
        if external {
            report(
                field,
                "an external cluster has no fault proxy".into(),
                "remove the link: drr runs the proxy only for stacks it runs",
            );
            continue;
        }
        if port == 0 || (port < 1024 && !spec.allow_privileged_ports) {
            report(
                field,
                format!("port {port} is not a fixed unprivileged port"),
                "choose a port from 1024 to 65535",
            );
            continue;
        }
        if let Some(first) = seen.insert(port, field.clone()) {
            report(
                field,
                format!("port {port} is already used by `{first}`"),
                "give every node, link and API its own port",
            );
        }
    }
    if spec.net_api.is_some() && !spec.has_fault_links() {
        report(
            "net_api".into(),
            "the Toxiproxy API needs at least one proxied link".into(),
            "opt a node in with `.client_link(port)` or `.replication_link(port)`",
        );
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::default_spec;

    fn opted() -> StackSpec {
        let mut spec = default_spec();
        spec.replicas[0] = spec.replicas[0]
            .clone()
            .client_link(6433)
            .replication_link(6434);
        spec
    }

    #[test]
    fn links_name_their_node_and_upstream() {
        let links = opted().fault_links();
        let names: Vec<(String, u16, u16)> = links
            .iter()
            .map(|l| (l.name(), l.listen, l.upstream))
            .collect();
        assert_eq!(
            names,
            [
                ("replica1-client".to_owned(), 6433, 5433),
                ("replica1-replication".to_owned(), 6434, 5432)
            ]
        );
        assert!(default_spec().fault_links().is_empty());
        assert!(!default_spec().has_fault_links());
    }

    #[test]
    fn ports_follow_the_links() {
        let spec = opted();
        let replica = &spec.replicas[0].node;
        assert_eq!(spec.replication_port(replica), 6434);
        assert_eq!(spec.replication_port(&spec.primary), 5432);
        let apps = spec.with_client_ports();
        assert_eq!(apps.replicas[0].node.port, 6433);
        assert_eq!(apps.primary.port, 5432);
    }

    #[test]
    fn taken_ports_and_misplaced_links_are_reported() {
        let mut spec = opted().net_api(5432);
        spec.primary = spec.primary.clone().client_link(6433);
        spec.primary.links.replication = Some(7000);
        let fields: Vec<String> = problems(&spec).into_iter().map(|p| p.field).collect();
        assert_eq!(
            fields,
            [
                "primary.links.replication",
                "replica1.links.client",
                "net_api"
            ]
        );
        assert!(problems(&opted()).is_empty());
        assert_eq!(
            problems(&default_spec().net_api(7474))[0].field,
            "net_api",
            "an API without links"
        );
    }
}
