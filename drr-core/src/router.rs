//! The router: pools for every node, and the entry points that pick one.

use std::sync::Arc;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

use crate::classify::Classification;
use crate::client::{NodeClient, Transaction};
use crate::cluster::Cluster;
use crate::config::{Consistency, NodeSpec, RouterConfig};
use crate::error::{Error, Result};
use crate::functions::{Verdicts, Volatility};
use crate::health::Health;
use crate::monitor;
use crate::node::{Node, NodeId};
use crate::role::Role;
use crate::route;
use crate::session::Session;
use crate::session_state::ReadContext;
use crate::stats::{Counters, Stats};

/// Routes statements between one primary and its replicas.
///
/// The primary is the one the configuration names, or, in a
/// [`cluster`](RouterConfig::cluster), the node that answers as one: the
/// router follows a failover (see [`Error::is_failover`]).
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
    cluster: Arc<Cluster>,
}

/// Where [`Router::route`] would send a statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Route<'r> {
    /// The node's name.
    pub node: &'r str,
    /// The node's role now.
    pub role: Role,
}

impl Router {
    /// Builds the pools, checks every node once, and starts the monitor.
    ///
    /// Fails only on an invalid configuration: unreachable nodes are
    /// reported by [`stats`](Router::stats) and avoided until they recover.
    pub async fn connect(config: RouterConfig) -> Result<Self> {
        let build = |spec: &NodeSpec| -> Result<Node> {
            let mut pg = spec.pg.clone();
            pg.connect_timeout(config.connect_timeout);
            Ok(Node {
                name: spec.name.as_str().into(),
                pool: build_pool(&config, &spec.name, pg.clone())?,
                pg,
                health: Health::new(),
                counters: Counters::default(),
                functions: Verdicts::default(),
            })
        };
        let nodes = config.nodes.iter().map(build).collect::<Result<Vec<_>>>()?;
        let cluster = Arc::new(Cluster::new(config, nodes));
        monitor::check(&cluster).await;
        let task = monitor::spawn(Arc::downgrade(&cluster));
        if let Ok(mut slot) = cluster.monitor_task.lock() {
            *slot = Some(task);
        }
        Ok(Router { cluster })
    }

    /// [`connect`](Router::connect) with [`RouterConfig::from_env`].
    pub async fn from_env() -> Result<Self> {
        Self::connect(RouterConfig::from_env()?).await
    }

    /// A session with the router's default consistency.
    pub fn session(&self) -> Session {
        self.session_with(self.cluster.config.consistency)
    }

    /// A session with the given consistency.
    pub fn session_with(&self, consistency: Consistency) -> Session {
        Session::new(self.cluster.clone(), consistency)
    }

    /// A pooled connection to the primary (a failover error while a
    /// [`cluster`](RouterConfig::cluster) has none).
    pub async fn primary(&self) -> Result<NodeClient> {
        route::connect_writer(&self.cluster)
            .await
            .map(NodeClient::handed_out)
    }

    /// A pooled connection to a replica chosen by the balancing policy (or
    /// the primary, when no replica may serve reads and fallback is on).
    pub async fn replica(&self) -> Result<NodeClient> {
        route::read_client(&self.cluster, &ReadContext::EVENTUAL)
            .await
            .map(NodeClient::handed_out)
    }

    /// Runs a statement on the node its classification allows, returning
    /// the rows.
    pub async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        Ok(
            route::run::<route::Query>(&self.cluster, &ReadContext::EVENTUAL, sql, params)
                .await?
                .out,
        )
    }

    /// Like [`query`](Router::query), for exactly one row.
    pub async fn query_one(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row> {
        Ok(
            route::run::<route::QueryOne>(&self.cluster, &ReadContext::EVENTUAL, sql, params)
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
            route::run::<route::QueryOpt>(&self.cluster, &ReadContext::EVENTUAL, sql, params)
                .await?
                .out,
        )
    }

    /// Runs a statement on the node its classification allows, returning
    /// the number of rows affected.
    pub async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        Ok(
            route::run::<route::Execute>(&self.cluster, &ReadContext::EVENTUAL, sql, params)
                .await?
                .out,
        )
    }

    /// A read-write transaction on the primary.
    pub async fn transaction(&self) -> Result<Transaction<'static>> {
        route::write_transaction(&self.cluster, None).await
    }

    /// A `READ ONLY`, `REPEATABLE READ` transaction on a replica.
    pub async fn read_transaction(&self) -> Result<Transaction<'static>> {
        route::read_transaction(&self.cluster, &ReadContext::EVENTUAL).await
    }

    /// Where a plain call with this SQL would go right now, for an eventual
    /// read. Uses the classification cache and takes a balancing turn, like
    /// a real call; connects to nothing, so a function the chosen replica has
    /// not been asked about yet counts as one that needs the primary. While
    /// no node is the primary (a failover under way), a call for the
    /// primary names the last one, which fails.
    pub fn route(&self, sql: &str) -> Route<'_> {
        let analysis = self.cluster.cache.analyze(sql);
        let replica = match analysis.classification {
            Classification::ReadOnly | Classification::DependsOnFunctions => {
                route::pick_replica(&self.cluster, None, None)
            }
            _ => None,
        };
        let known_read_only = |id: NodeId| {
            let verdicts = &self.cluster.node(id).functions;
            analysis
                .functions
                .iter()
                .flat_map(|names| names.iter())
                .all(|name| verdicts.get(name) == Some(Volatility::ReadOnly))
        };
        let (id, role) = match replica.filter(|&id| known_read_only(id)) {
            Some(id) => (id, Role::Replica),
            None => (self.cluster.last_primary(), Role::Primary),
        };
        Route {
            node: &self.cluster.node(id).name,
            role,
        }
    }

    /// Counters and health for every node.
    pub fn stats(&self) -> Stats {
        let now = self.cluster.clock.now_ms();
        let nodes = self
            .cluster
            .ids()
            .map(|(id, node)| {
                node.counters
                    .snapshot(&node.name, self.cluster.role(id), node.health.snapshot(now))
            })
            .collect();
        Stats { nodes }
    }

    /// Checks every node now, without waiting for the next interval.
    pub async fn check_now(&self) {
        monitor::check(&self.cluster).await;
    }
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field(
                "primary",
                &self.cluster.primary().map(|p| &self.cluster.node(p).name),
            )
            .field(
                "nodes",
                &self
                    .cluster
                    .nodes
                    .iter()
                    .map(|n| &n.name)
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
