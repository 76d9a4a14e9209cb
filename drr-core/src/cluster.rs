//! The state every part of a router shares: the configuration, the nodes,
//! the classification cache, the balancer, the clock, the primary's
//! position history, and the monitor's own connections.
//!
//! [`Router`](crate::Router), sessions, clients and the monitor each hold an
//! `Arc<Cluster>`; nothing here knows about them.

use std::sync::Mutex;

use tokio::task::JoinHandle;
use tokio_postgres::Client;

use crate::balance::Balancer;
use crate::classify;
use crate::config::RouterConfig;
use crate::health::Clock;
use crate::lag::History;
use crate::node::{Node, NodeId};

/// One primary and its replicas, and what the router knows about them.
pub(crate) struct Cluster {
    pub(crate) config: RouterConfig,
    pub(crate) primary: Node,
    pub(crate) replicas: Vec<Node>,
    pub(crate) cache: classify::Cache,
    pub(crate) balancer: Balancer,
    pub(crate) clock: Clock,
    pub(crate) history: Mutex<History>,
    pub(crate) monitor: tokio::sync::Mutex<MonitorConnections>,
    /// The monitor's background task, aborted when the last handle to the
    /// cluster goes.
    pub(crate) monitor_task: Mutex<Option<JoinHandle<()>>>,
}

/// The monitor's own connections, never the pools' (so a busy pool cannot
/// make a healthy node look dead): the primary's, then one per replica.
pub(crate) struct MonitorConnections {
    pub(crate) primary: Option<Client>,
    pub(crate) replicas: Vec<Option<Client>>,
}

impl Cluster {
    /// The cluster of `primary` and `replicas`, with empty caches and no
    /// monitor yet.
    pub(crate) fn new(config: RouterConfig, primary: Node, replicas: Vec<Node>) -> Self {
        Cluster {
            cache: classify::Cache::new(
                config.classify_cache_size,
                config.function_overrides.clone(),
            ),
            balancer: Balancer::new(config.balance),
            clock: Clock::new(),
            history: Mutex::new(History::default()),
            monitor: tokio::sync::Mutex::new(MonitorConnections {
                primary: None,
                replicas: replicas.iter().map(|_| None).collect(),
            }),
            monitor_task: Mutex::new(None),
            primary,
            replicas,
            config,
        }
    }

    /// The node `id` names.
    pub(crate) fn node(&self, id: NodeId) -> &Node {
        match id {
            NodeId::Primary => &self.primary,
            NodeId::Replica(i) => &self.replicas[i],
        }
    }

    /// Every node, the primary first.
    pub(crate) fn nodes(&self) -> impl Iterator<Item = &Node> {
        std::iter::once(&self.primary).chain(&self.replicas)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(task) = self.monitor_task.get_mut().ok().and_then(Option::take) {
            task.abort();
        }
    }
}
