//! The state every part of a router shares: the configuration, the nodes
//! and which of them is the primary now, the classification cache, the
//! balancer, the clock, the primary's position history, and the monitor's
//! own connections.
//!
//! [`Router`](crate::Router), sessions, clients and the monitor each hold an
//! `Arc<Cluster>`; nothing here knows about them.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_postgres::Client;

use crate::balance::Balancer;
use crate::classify;
use crate::config::{Roles, RouterConfig};
use crate::error::{Error, Result};
use crate::health::Clock;
use crate::lag::History;
use crate::node::{Node, NodeId};
use crate::role::Role;

/// The nodes, and what the router knows about them.
pub(crate) struct Cluster {
    pub(crate) config: RouterConfig,
    /// Every node, in the configuration's order.
    pub(crate) nodes: Vec<Node>,
    /// The primary now: [`NONE`] or a node's index.
    primary: AtomicUsize,
    /// The last node that was the primary (the first node before any was).
    last_primary: AtomicUsize,
    /// Whether a primary was ever found, so that the first discovery does
    /// not count as a role change.
    found: std::sync::atomic::AtomicBool,
    pub(crate) cache: classify::Cache,
    pub(crate) balancer: Balancer,
    pub(crate) clock: Clock,
    pub(crate) history: Mutex<History>,
    /// The monitor's own connections, one per node, never the pools' (so a
    /// busy pool cannot make a healthy node look dead).
    pub(crate) monitor: tokio::sync::Mutex<Vec<Option<Client>>>,
    /// Wakes the monitor before its interval: a write met a node that is
    /// not the primary, or lost the primary.
    pub(crate) recheck: Arc<Notify>,
    /// The monitor's background task, aborted when the last handle to the
    /// cluster goes.
    pub(crate) monitor_task: Mutex<Option<JoinHandle<()>>>,
}

/// No node is the primary.
const NONE: usize = usize::MAX;

impl Cluster {
    /// The cluster of `nodes`, with empty caches and no monitor yet. A
    /// fixed primary is the first node; a discovered one is unknown until
    /// the first check.
    pub(crate) fn new(config: RouterConfig, nodes: Vec<Node>) -> Self {
        let primary = match config.roles {
            Roles::Fixed => 0,
            Roles::Discovered => NONE,
        };
        Cluster {
            cache: classify::Cache::new(
                config.classify_cache_size,
                config.function_overrides.clone(),
            ),
            balancer: Balancer::new(config.balance),
            clock: Clock::new(),
            history: Mutex::new(History::default()),
            monitor: tokio::sync::Mutex::new(nodes.iter().map(|_| None).collect()),
            recheck: Arc::new(Notify::new()),
            monitor_task: Mutex::new(None),
            primary: AtomicUsize::new(primary),
            last_primary: AtomicUsize::new(0),
            found: std::sync::atomic::AtomicBool::new(primary != NONE),
            nodes,
            config,
        }
    }

    /// The node `id` names.
    pub(crate) fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.0]
    }

    /// Every node with its id, in the configuration's order.
    pub(crate) fn ids(&self) -> impl Iterator<Item = (NodeId, &Node)> {
        self.nodes.iter().enumerate().map(|(i, n)| (NodeId(i), n))
    }

    /// Whether the router discovers the primary (and follows failovers).
    pub(crate) fn follows(&self) -> bool {
        self.config.roles == Roles::Discovered
    }

    /// The primary now, if any node is.
    pub(crate) fn primary(&self) -> Option<NodeId> {
        match self.primary.load(Relaxed) {
            NONE => None,
            i => Some(NodeId(i)),
        }
    }

    /// The primary, or while there is none the last node that was.
    pub(crate) fn last_primary(&self) -> NodeId {
        self.primary()
            .unwrap_or_else(|| NodeId(self.last_primary.load(Relaxed)))
    }

    /// The node writes go to, or a failover error while there is none.
    pub(crate) fn writer(&self) -> Result<NodeId> {
        self.primary().ok_or_else(|| {
            self.recheck.notify_one();
            Error::no_primary()
        })
    }

    /// What node `id` is for now.
    pub(crate) fn role(&self, id: NodeId) -> Role {
        if self.primary() == Some(id) {
            Role::Primary
        } else {
            Role::Replica
        }
    }

    /// Makes `new` the primary (none, while no node answers as one);
    /// counts a role change for the node that stops being it and for the
    /// one that starts. Returns whether it changed.
    pub(crate) fn set_primary(&self, new: Option<NodeId>) -> bool {
        let old = self.primary.swap(new.map_or(NONE, |id| id.0), Relaxed);
        if old == new.map_or(NONE, |id| id.0) {
            return false;
        }
        if old != NONE {
            self.nodes[old].counters.role_change();
        }
        if let Some(id) = new {
            self.last_primary.store(id.0, Relaxed);
            if self.found.swap(true, Relaxed) {
                self.node(id).counters.role_change();
            }
        }
        match new {
            Some(id) => tracing::info!(node = %self.node(id).name, "the primary is this node now"),
            None => tracing::warn!("no node answers as the primary: writes fail until one does"),
        }
        true
    }

    /// What `error`, met on the primary `id`, means: in a cluster whose
    /// primary the router discovers, a node in recovery or a broken
    /// connection is a failover error, and the monitor looks for the
    /// primary at once. Otherwise it is returned unchanged.
    pub(crate) fn primary_error(&self, id: NodeId, error: Error) -> Error {
        if !self.follows() {
            return error;
        }
        if error.is_read_only_violation() {
            self.not_primary(id);
        } else if error.is_connection() {
            self.recheck.notify_one();
        }
        error.on_primary()
    }

    /// A write found `id` is not the primary any more (it is in recovery):
    /// no more writes go to it, and the monitor looks for the new primary
    /// now.
    fn not_primary(&self, id: NodeId) {
        if self
            .primary
            .compare_exchange(id.0, NONE, Relaxed, Relaxed)
            .is_ok()
        {
            self.node(id).counters.role_change();
            tracing::warn!(node = %self.node(id).name, "a write found the primary in recovery");
        }
        self.recheck.notify_one();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(task) = self.monitor_task.get_mut().ok().and_then(Option::take) {
            task.abort();
        }
    }
}
