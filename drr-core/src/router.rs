//! The router: pools for every node, and the entry points that pick one.

use std::sync::{Arc, Mutex};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio::task::JoinHandle;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

use crate::balance::Balancer;
use crate::classify::{self, Classification};
use crate::client::{NodeClient, Transaction};
use crate::config::{Consistency, NodeSpec, RouterConfig};
use crate::error::{Error, Result};
use crate::monitor::{self, History, Monitor};
use crate::node::{Clock, Health, Node, Role};
use crate::route::{self, ReadContext};
use crate::session::Session;
use crate::stats::{Counters, Stats};

/// Routes statements between one primary and its replicas.
///
/// Cheap to clone: clones share pools, health and counters. A background
/// task checks every node at the configured interval; it stops when the last
/// clone is dropped.
///
/// Calls on the router itself have no memory of earlier writes, so they read
/// with [`Consistency::Eventual`]. For pinning and read-your-writes, use a
/// [`Session`].
#[derive(Clone)]
pub struct Router {
    pub(crate) inner: Arc<Inner>,
}

/// Which node: the primary, or a replica by index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NodeId {
    Primary,
    Replica(usize),
}

pub(crate) struct Inner {
    pub(crate) config: RouterConfig,
    pub(crate) primary: Node,
    pub(crate) replicas: Vec<Node>,
    pub(crate) cache: classify::Cache,
    pub(crate) balancer: Balancer,
    pub(crate) clock: Clock,
    pub(crate) history: Mutex<History>,
    pub(crate) monitor: tokio::sync::Mutex<Monitor>,
    monitor_task: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = self.monitor_task.get_mut().ok().and_then(Option::take) {
            task.abort();
        }
    }
}

/// Where [`Router::route`] would send a statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Route<'r> {
    /// The node's name.
    pub node: &'r str,
    /// The node's role.
    pub role: Role,
}

impl Router {
    /// Builds the pools, checks every node once, and starts the monitor.
    ///
    /// Fails only on an invalid configuration: unreachable nodes are
    /// reported by [`stats`](Router::stats) and avoided until they recover.
    pub async fn connect(config: RouterConfig) -> Result<Self> {
        let build = |spec: &NodeSpec, role| -> Result<Node> {
            let mut pg = spec.pg.clone();
            pg.connect_timeout(config.connect_timeout);
            Ok(Node {
                name: spec.name.as_str().into(),
                role,
                pool: build_pool(&config, &spec.name, pg.clone())?,
                pg,
                health: Health::new(),
                counters: Counters::default(),
            })
        };
        let primary = build(&config.primary, Role::Primary)?;
        let replicas = config
            .replicas
            .iter()
            .map(|spec| build(spec, Role::Replica))
            .collect::<Result<Vec<_>>>()?;
        let inner = Arc::new(Inner {
            cache: classify::Cache::new(config.classify_cache_size),
            balancer: Balancer::new(config.balance),
            clock: Clock::new(),
            history: Mutex::new(History::default()),
            monitor: tokio::sync::Mutex::new(Monitor::new(replicas.len())),
            monitor_task: Mutex::new(None),
            primary,
            replicas,
            config,
        });
        monitor::check(&inner).await;
        let task = monitor::spawn(Arc::downgrade(&inner));
        if let Ok(mut slot) = inner.monitor_task.lock() {
            *slot = Some(task);
        }
        Ok(Router { inner })
    }

    /// [`connect`](Router::connect) with [`RouterConfig::from_env`].
    pub async fn from_env() -> Result<Self> {
        Self::connect(RouterConfig::from_env()?).await
    }

    /// A session with the router's default consistency.
    pub fn session(&self) -> Session {
        self.session_with(self.inner.config.consistency)
    }

    /// A session with the given consistency.
    pub fn session_with(&self, consistency: Consistency) -> Session {
        Session::new(self.clone(), consistency)
    }

    /// A pooled connection to the primary.
    pub async fn primary(&self) -> Result<NodeClient> {
        route::connect(self, NodeId::Primary).await
    }

    /// A pooled connection to a replica chosen by the balancing policy (or
    /// the primary, when no replica may serve reads and fallback is on).
    pub async fn replica(&self) -> Result<NodeClient> {
        route::read_client(self, &ReadContext::EVENTUAL).await
    }

    /// Runs a statement on the node its classification allows, returning
    /// the rows.
    pub async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        Ok(
            route::run::<route::Query>(self, &ReadContext::EVENTUAL, sql, params)
                .await?
                .out,
        )
    }

    /// Like [`query`](Router::query), for exactly one row.
    pub async fn query_one(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row> {
        Ok(
            route::run::<route::QueryOne>(self, &ReadContext::EVENTUAL, sql, params)
                .await?
                .out,
        )
    }

    /// Like [`query`](Router::query), for at most one row.
    pub async fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>> {
        Ok(
            route::run::<route::QueryOpt>(self, &ReadContext::EVENTUAL, sql, params)
                .await?
                .out,
        )
    }

    /// Runs a statement on the node its classification allows, returning
    /// the number of rows affected.
    pub async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        Ok(
            route::run::<route::Execute>(self, &ReadContext::EVENTUAL, sql, params)
                .await?
                .out,
        )
    }

    /// A read-write transaction on the primary.
    pub async fn transaction(&self) -> Result<Transaction<'static>> {
        route::write_transaction(self, None).await
    }

    /// A `READ ONLY`, `REPEATABLE READ` transaction on a replica.
    pub async fn read_transaction(&self) -> Result<Transaction<'static>> {
        route::read_transaction(self, &ReadContext::EVENTUAL).await
    }

    /// Where a plain call with this SQL would go right now, for an eventual
    /// read. Uses the classification cache and takes a balancing turn, like
    /// a real call; connects to nothing.
    pub fn route(&self, sql: &str) -> Route<'_> {
        let id = match self.inner.cache.classify(sql) {
            Classification::ReadOnly => {
                route::pick_replica(self, None, None).unwrap_or(NodeId::Primary)
            }
            _ => NodeId::Primary,
        };
        let node = self.node(id);
        Route {
            node: &node.name,
            role: node.role,
        }
    }

    /// Counters and health for every node.
    pub fn stats(&self) -> Stats {
        let now = self.inner.clock.now_ms();
        let nodes = std::iter::once(&self.inner.primary)
            .chain(&self.inner.replicas)
            .map(|node| {
                node.counters
                    .snapshot(&node.name, node.role, node.health.snapshot(now))
            })
            .collect();
        Stats { nodes }
    }

    /// Checks every node now, without waiting for the next interval.
    pub async fn check_now(&self) {
        monitor::check(&self.inner).await;
    }

    pub(crate) fn node(&self, id: NodeId) -> &Node {
        match id {
            NodeId::Primary => &self.inner.primary,
            NodeId::Replica(i) => &self.inner.replicas[i],
        }
    }
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("primary", &self.inner.primary.name)
            .field(
                "replicas",
                &self
                    .inner
                    .replicas
                    .iter()
                    .map(|r| &r.name)
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

fn build_pool(config: &RouterConfig, name: &str, pg: tokio_postgres::Config) -> Result<Pool> {
    let manager = Manager::from_config(
        pg,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(config.pool_size)
        .wait_timeout(Some(config.pool_wait_timeout))
        .create_timeout(Some(config.connect_timeout))
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|err| Error::config(format!("cannot build the pool for {name}: {err}")))
}
