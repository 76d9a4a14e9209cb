//! A Patroni cluster on this machine, for tests that need a real HA engine:
//! one etcd and two or more Patroni nodes running Postgres, on free loopback
//! ports in a temporary directory, run as the server user. drr attaches to
//! it as an external cluster ([`PatroniCluster::spec`]); the test switches
//! it over with `patronictl` or crashes its leader, as production would.
//!
//! Settings that make it quick and deterministic on a loaded 2-core machine
//! (measured with Patroni 3.0.2 and etcd 3.4): a leader lease of 10 s
//! renewed every second (`loop_wait + 2 * retry_timeout <= ttl`), a crashed
//! leader's Postgres failed over at once (`master_start_timeout: 0`) rather
//! than restarted in place, and base backups with a fast checkpoint (with a
//! spread one a replica took 95 s to appear). The first node bootstraps and
//! leads; the others join once it accepts writes.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use serde_json::{Value, json};
use tokio_postgres::Client;

use super::{Requirement, free_ports};
use crate::host::{Binaries, ServerUser};
use crate::spec::{EnvCredentials, External, Node, Replica, StackSpec};

/// Patroni with etcd, and Postgres 15's server binaries.
pub const PATRONI: Requirement = Requirement {
    module: "requires_patroni",
    what: "Patroni 3 with etcd and Postgres 15",
    check: check_patroni,
};

/// The environment variables [`PatroniCluster::spec`] reads the login
/// role's and the admin role's credentials from.
pub const CREDENTIAL_VARS: [&str; 4] = [
    "DRR_PATRONI_USER",
    "DRR_PATRONI_PASSWORD",
    "DRR_PATRONI_ADMIN_USER",
    "DRR_PATRONI_ADMIN_PASSWORD",
];

/// The login role and database the cluster is made with.
pub const APP: (&str, &str) = ("app", "app");

/// How long a cluster may take to become ready (start-up, a switchover, a
/// crashed leader's lease running out plus the rejoin).
const READY_TIMEOUT: Duration = Duration::from_secs(90);

const INSTALL: &str = "apt-get install --no-install-recommends patroni etcd-server python3-etcd";

/// What kind of cluster to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatroniOptions {
    nodes: usize,
    synchronous: bool,
}

impl Default for PatroniOptions {
    /// Two nodes, asynchronous replication.
    fn default() -> Self {
        PatroniOptions {
            nodes: 2,
            synchronous: false,
        }
    }
}

impl PatroniOptions {
    /// `n` nodes (at least 2).
    pub fn nodes(mut self, n: usize) -> Self {
        self.nodes = n.max(2);
        self
    }

    /// Patroni's `synchronous_mode: true`: a commit is acknowledged once a
    /// synchronous standby has it, and only that standby may be promoted.
    pub fn synchronous(mut self) -> Self {
        self.synchronous = true;
        self
    }
}

/// One node: its ports, and its Patroni process while it runs.
#[derive(Debug)]
struct Member {
    name: String,
    rest_port: u16,
    pg_port: u16,
    patroni: Option<Child>,
}

/// A running Patroni cluster; stopped and deleted when dropped.
#[derive(Debug)]
pub struct PatroniCluster {
    dir: tempfile::TempDir,
    user: Option<ServerUser>,
    bindir: PathBuf,
    etcd: Child,
    etcd_port: u16,
    members: Vec<Member>,
    options: PatroniOptions,
    superuser_password: String,
    app_password: String,
    spec: StackSpec,
}

impl PatroniCluster {
    /// Starts etcd and the nodes, creates the login role and its database,
    /// and waits until every node runs and every replica streams (and, in
    /// synchronous mode, a synchronous standby is chosen).
    pub async fn start(options: PatroniOptions) -> Result<PatroniCluster> {
        let user = ServerUser::resolve()?;
        let bindir = Binaries::find(15)?.dir().to_owned();
        let dir = tempfile::Builder::new()
            .prefix("drr-patroni-")
            .tempdir()
            .context("cannot create a directory for the Patroni cluster")?;
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )?;
        crate::host::give(user.as_ref(), dir.path())?;
        let ports = free_ports(2 + 2 * options.nodes)?;
        let etcd = spawn(
            user.as_ref(),
            dir.path(),
            &find_program("etcd")?,
            &etcd_args(dir.path(), ports[0], ports[1]),
            &dir.path().join("etcd.log"),
        )?;
        let members: Vec<Member> = (0..options.nodes)
            .map(|i| Member {
                name: format!("node{}", i + 1),
                rest_port: ports[2 + 2 * i],
                pg_port: ports[3 + 2 * i],
                patroni: None,
            })
            .collect();
        let spec = external_spec(&members)?;
        let mut cluster = PatroniCluster {
            dir,
            user,
            bindir,
            etcd,
            etcd_port: ports[0],
            members,
            options,
            superuser_password: crate::secrets::random_password()?,
            app_password: crate::secrets::random_password()?,
            spec,
        };
        anyhow::ensure!(
            listens(cluster.etcd_port, Duration::from_secs(20)),
            "etcd did not start within 20 s; {}",
            cluster.log_tail("etcd")
        );
        for i in 0..cluster.members.len() {
            cluster.write_config(i)?;
        }
        // The first node bootstraps; the others clone it once it leads.
        cluster.restart("node1")?;
        cluster.wait_writable("node1").await?;
        cluster.create_app().await?;
        for i in 1..cluster.members.len() {
            let name = cluster.members[i].name.clone();
            cluster.restart(&name)?;
        }
        cluster.wait_ready().await?;
        Ok(cluster)
    }

    /// The cluster as a drr spec: an external cluster whose credentials
    /// come from [`CREDENTIAL_VARS`] (see [`PatroniCluster::credentials`]).
    pub fn spec(&self) -> &StackSpec {
        &self.spec
    }

    /// Each variable of [`CREDENTIAL_VARS`] with its value.
    pub fn credentials(&self) -> [(&'static str, String); 4] {
        let [user, password, admin_user, admin_password] = CREDENTIAL_VARS;
        [
            (user, APP.0.to_owned()),
            (password, self.app_password.clone()),
            (admin_user, "postgres".to_owned()),
            (admin_password, self.superuser_password.clone()),
        ]
    }

    /// Every node's URL for the login role, in node order.
    pub fn urls(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| {
                format!(
                    "postgres://{}:{}@127.0.0.1:{}/{}",
                    APP.0, self.app_password, m.pg_port, APP.1
                )
            })
            .collect()
    }

    /// The node names, in order.
    pub fn nodes(&self) -> Vec<String> {
        self.members.iter().map(|m| m.name.clone()).collect()
    }

    /// A superuser connection to `node`.
    pub async fn admin(&self, node: &str) -> Result<Client> {
        self.admin_to(node, APP.1).await
    }

    /// The node Patroni made leader, as its REST API says.
    pub async fn leader(&self) -> Result<String> {
        self.rest_members()
            .await
            .iter()
            .find(|m| m["role"] == "leader")
            .and_then(|m| m["name"].as_str())
            .map(str::to_owned)
            .context("the Patroni cluster has no leader now")
    }

    /// `patronictl switchover --force` to `candidate`; returns once the
    /// cluster is ready again.
    pub async fn switchover(&self, candidate: &str) -> Result<()> {
        let leader = self.leader().await?;
        let config = self.config_path(self.running_member()?);
        let output = std::process::Command::new(find_program("patronictl")?)
            .args(["-c"])
            .arg(&config)
            .args(["switchover", "--leader", &leader, "--candidate", candidate])
            .arg("--force")
            .env_clear()
            .envs(clean_env(self.dir.path()))
            .stdin(Stdio::null())
            .identity(self.user.as_ref())
            .output()
            .context("cannot run patronictl")?;
        anyhow::ensure!(
            output.status.success(),
            "patronictl switchover to `{candidate}` failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        self.wait_ready().await
    }

    /// Kills `node` as a machine crash would: its Patroni and its
    /// postmaster together, with SIGKILL. (Killing Patroni alone leaves its
    /// Postgres running as a primary nobody fences: split brain, without
    /// the watchdog device these machines lack.)
    pub fn crash(&mut self, node: &str) -> Result<()> {
        let postmaster = self.postmaster_pid(node);
        let member = self.member_mut(node)?;
        if let Some(mut patroni) = member.patroni.take() {
            let _ = patroni.kill();
            let _ = patroni.wait();
        }
        if let Some(pid) = postmaster {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            wait_gone(pid, Duration::from_secs(10));
        }
        Ok(())
    }

    /// Starts `node`'s Patroni (again): after a crash, it rejoins the
    /// cluster, rewound onto the new leader's timeline.
    pub fn restart(&mut self, node: &str) -> Result<()> {
        let index = self.index(node)?;
        anyhow::ensure!(
            self.members[index].patroni.is_none(),
            "`{node}` of the Patroni cluster runs already"
        );
        let config = self.config_path(&self.members[index]);
        let log = self.dir.path().join(format!("{node}.log"));
        let child = spawn(
            self.user.as_ref(),
            self.dir.path(),
            &find_program("patroni")?,
            &[config.into_os_string()],
            &log,
        )?;
        self.members[index].patroni = Some(child);
        Ok(())
    }

    /// Waits until one leader and every running node are `running` in
    /// Patroni's view, every replica streams, and in synchronous mode a
    /// synchronous standby is chosen.
    pub async fn wait_ready(&self) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let Some(waiting_for) = self.not_ready().await else {
                return Ok(());
            };
            anyhow::ensure!(
                Instant::now() < deadline,
                "the Patroni cluster was not ready within {READY_TIMEOUT:?} (last: {waiting_for}); {}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// What the cluster still lacks to be ready, or `None`.
    async fn not_ready(&self) -> Option<String> {
        let members = self.rest_members().await;
        let running: Vec<&Member> = self
            .members
            .iter()
            .filter(|m| m.patroni.is_some())
            .collect();
        let mut leaders = 0;
        let mut sync = false;
        for member in &running {
            let name = &member.name;
            let Some(view) = members.iter().find(|m| m["name"] == name.as_str()) else {
                return Some(format!("`{name}` to join"));
            };
            if view["state"] != "running" {
                return Some(format!("`{name}` to run (it is {})", view["state"]));
            }
            match view["role"].as_str() {
                Some("leader") => leaders += 1,
                Some(role @ ("replica" | "sync_standby")) => {
                    sync |= role == "sync_standby";
                    if !self.streams(name).await {
                        return Some(format!("`{name}` to stream"));
                    }
                }
                other => return Some(format!("`{name}` to get a role (it has {other:?})")),
            }
        }
        if leaders != 1 {
            return Some(format!("one leader (there are {leaders})"));
        }
        if self.options.synchronous && running.len() > 1 && !sync {
            return Some("a synchronous standby".to_owned());
        }
        None
    }

    /// Whether `node`'s WAL receiver streams.
    async fn streams(&self, node: &str) -> bool {
        let Ok(client) = self.admin(node).await else {
            return false;
        };
        let query = "SELECT EXISTS (SELECT FROM pg_stat_wal_receiver WHERE status = 'streaming')";
        client
            .query_one(query, &[])
            .await
            .is_ok_and(|row| row.get::<_, bool>(0))
    }

    /// Waits until `node` accepts writes.
    async fn wait_writable(&self, node: &str) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(client) = self.admin_to(node, "postgres").await
                && let Ok(row) = client.query_one("SELECT pg_is_in_recovery()", &[]).await
                && !row.get::<_, bool>(0)
            {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "`{node}` did not become the Patroni cluster's leader within {READY_TIMEOUT:?}; {}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Creates the login role and its database on the leader (Patroni 3
    /// has no `bootstrap.users`).
    async fn create_app(&self) -> Result<()> {
        let client = self.admin_to("node1", "postgres").await?;
        let password = self.app_password.replace('\'', "''");
        // Two round trips: CREATE DATABASE refuses the implicit
        // transaction of a multi-statement query.
        for statement in [
            format!("CREATE ROLE \"{}\" LOGIN PASSWORD '{password}'", APP.0),
            format!("CREATE DATABASE \"{}\" OWNER \"{}\"", APP.1, APP.0),
        ] {
            client
                .batch_execute(&statement)
                .await
                .with_context(|| format!("cannot run `{statement}` on the leader"))?;
        }
        Ok(())
    }

    async fn admin_to(&self, node: &str, database: &str) -> Result<Client> {
        let member = self.member(node)?;
        let (client, connection) = tokio_postgres::Config::new()
            .host("127.0.0.1")
            .port(member.pg_port)
            .user("postgres")
            .password(&self.superuser_password)
            .dbname(database)
            .connect_timeout(Duration::from_secs(2))
            .connect(tokio_postgres::NoTls)
            .await
            .with_context(|| format!("cannot connect to `{node}` of the Patroni cluster"))?;
        tokio::spawn(connection);
        Ok(client)
    }

    /// The members in `GET /cluster` of the first node whose REST API
    /// answers (none when none does).
    async fn rest_members(&self) -> Vec<Value> {
        let ports: Vec<u16> = self
            .members
            .iter()
            .filter(|m| m.patroni.is_some())
            .map(|m| m.rest_port)
            .collect();
        let cluster = tokio::task::spawn_blocking(move || {
            ports
                .into_iter()
                .find_map(|port| http_get_json(port, "/cluster"))
        })
        .await
        .ok()
        .flatten();
        cluster
            .and_then(|c| c["members"].as_array().cloned())
            .unwrap_or_default()
    }

    fn write_config(&self, index: usize) -> Result<()> {
        let member = &self.members[index];
        let dir = self.dir.path();
        let config = json!({
            "scope": "drr",
            "namespace": "/drr/",
            "name": member.name,
            "log": {"level": "INFO"},
            "restapi": {
                "listen": format!("127.0.0.1:{}", member.rest_port),
                "connect_address": format!("127.0.0.1:{}", member.rest_port),
            },
            // etcd 3.4 speaks only v3 by default; Patroni's etcd3 section does.
            "etcd3": {"hosts": format!("127.0.0.1:{}", self.etcd_port)},
            "bootstrap": {
                "dcs": {
                    "ttl": 10,
                    "loop_wait": 1,
                    "retry_timeout": 4,
                    "maximum_lag_on_failover": 1_048_576,
                    "master_start_timeout": 0,
                    "synchronous_mode": self.options.synchronous,
                    "postgresql": {
                        "use_pg_rewind": true,
                        "use_slots": true,
                        "parameters": {
                            "wal_level": "replica",
                            "hot_standby": "on",
                            "wal_log_hints": "on",
                            "max_wal_senders": 10,
                            "max_replication_slots": 10,
                            "wal_keep_size": "128MB",
                        },
                    },
                },
                "initdb": [{"encoding": "UTF8"}, {"locale": "C.UTF-8"}],
            },
            "postgresql": {
                "listen": format!("127.0.0.1:{}", member.pg_port),
                "connect_address": format!("127.0.0.1:{}", member.pg_port),
                "data_dir": dir.join(&member.name).join("data"),
                "bin_dir": self.bindir,
                "pgpass": dir.join(&member.name).join("pgpass"),
                "basebackup": [{"checkpoint": "fast"}],
                "authentication": {
                    "superuser": {"username": "postgres", "password": self.superuser_password},
                    "replication": {"username": "replicator", "password": self.superuser_password},
                    "rewind": {"username": "rewinder", "password": self.superuser_password},
                },
                "parameters": {
                    "unix_socket_directories": dir.join(&member.name),
                    "shared_buffers": "32MB",
                    // A process crash loses nothing without fsync; only an
                    // operating-system crash would, and this cluster is
                    // thrown away.
                    "fsync": "off",
                },
                "pg_hba": [
                    "local all all peer",
                    "host replication replicator 127.0.0.1/32 scram-sha-256",
                    "host all all 127.0.0.1/32 scram-sha-256",
                ],
            },
        });
        let node_dir = dir.join(&member.name);
        std::fs::create_dir_all(&node_dir)?;
        std::fs::set_permissions(
            &node_dir,
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )?;
        crate::host::give(self.user.as_ref(), &node_dir)?;
        let path = self.config_path(member);
        let yaml = serde_yaml::to_string(&config).context("cannot write Patroni's config")?;
        std::fs::write(&path, yaml).with_context(|| format!("cannot write {}", path.display()))?;
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        crate::host::give(self.user.as_ref(), &path)
    }

    fn config_path(&self, member: &Member) -> PathBuf {
        self.dir.path().join(format!("{}.yml", member.name))
    }

    fn postmaster_pid(&self, node: &str) -> Option<nix::unistd::Pid> {
        let pid_file = self.dir.path().join(node).join("data/postmaster.pid");
        let text = std::fs::read_to_string(pid_file).ok()?;
        text.lines()
            .next()?
            .trim()
            .parse()
            .ok()
            .map(nix::unistd::Pid::from_raw)
    }

    fn index(&self, node: &str) -> Result<usize> {
        self.members
            .iter()
            .position(|m| m.name == node)
            .with_context(|| format!("the Patroni cluster has no node `{node}`"))
    }

    fn member(&self, node: &str) -> Result<&Member> {
        self.index(node).map(|i| &self.members[i])
    }

    fn member_mut(&mut self, node: &str) -> Result<&mut Member> {
        let index = self.index(node)?;
        Ok(&mut self.members[index])
    }

    fn running_member(&self) -> Result<&Member> {
        self.members
            .iter()
            .find(|m| m.patroni.is_some())
            .context("no node of the Patroni cluster runs")
    }

    /// The last lines of one log (`etcd` or a node's name).
    pub fn log_tail(&self, name: &str) -> String {
        let text = std::fs::read_to_string(self.dir.path().join(format!("{name}.log")))
            .unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(20)..].join("\n");
        format!("{name}.log ends:\n{tail}")
    }

    fn logs(&self) -> String {
        self.members
            .iter()
            .map(|m| self.log_tail(&m.name))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for PatroniCluster {
    /// Stops everything at once: the Patroni processes first (so none
    /// starts a failover), then the postmasters (immediate shutdown), then
    /// etcd; the directory goes with `dir`.
    fn drop(&mut self) {
        let postmasters: Vec<_> = self
            .members
            .iter()
            .filter_map(|m| self.postmaster_pid(&m.name))
            .collect();
        for member in &mut self.members {
            if let Some(mut patroni) = member.patroni.take() {
                let _ = patroni.kill();
                let _ = patroni.wait();
            }
        }
        for pid in &postmasters {
            let _ = nix::sys::signal::kill(*pid, nix::sys::signal::Signal::SIGQUIT);
        }
        for pid in postmasters {
            wait_gone(pid, Duration::from_secs(10));
        }
        let _ = self.etcd.kill();
        let _ = self.etcd.wait();
    }
}

/// The cluster as drr sees it: nodes by host and port, credentials from
/// [`CREDENTIAL_VARS`]. Which node is the spec's primary does not matter:
/// drr asks them.
fn external_spec(members: &[Member]) -> Result<StackSpec> {
    let [user, password, admin_user, admin_password] = CREDENTIAL_VARS;
    let (first, rest) = (&members[0], &members[1..]);
    let mut spec = StackSpec::new("patroni", 15)
        .primary(Node::new(&first.name, first.pg_port).host("127.0.0.1"))
        .external(External::new(
            APP.1,
            EnvCredentials::new(user, password),
            EnvCredentials::new(admin_user, admin_password),
        ));
    for member in rest {
        spec = spec.replica(Replica::new(&member.name, member.pg_port).host("127.0.0.1"));
    }
    spec.validate()?;
    Ok(spec)
}

fn etcd_args(dir: &Path, client: u16, peer: u16) -> Vec<std::ffi::OsString> {
    let client = format!("http://127.0.0.1:{client}");
    let peer = format!("http://127.0.0.1:{peer}");
    [
        "--name",
        "e0",
        "--data-dir",
        &dir.join("etcd").display().to_string(),
        "--listen-client-urls",
        &client,
        "--advertise-client-urls",
        &client,
        "--listen-peer-urls",
        &peer,
        "--initial-advertise-peer-urls",
        &peer,
        "--initial-cluster",
        &format!("e0={peer}"),
        "--initial-cluster-state",
        "new",
        "--log-level",
        "warn",
    ]
    .iter()
    .map(Into::into)
    .collect()
}

/// The environment the daemons run in: nothing of the caller's (a root
/// shell's `PATH` may lead to a Python without Patroni's modules).
fn clean_env(home: &Path) -> Vec<(&'static str, std::ffi::OsString)> {
    vec![
        ("HOME", home.as_os_str().to_owned()),
        ("PATH", "/usr/sbin:/usr/bin:/sbin:/bin".into()),
        ("LANG", "C.UTF-8".into()),
    ]
}

/// Runs a command as the server user (when drr runs as root), in a process
/// group of its own so that Ctrl-C on the terminal reaches only the test.
trait Identity {
    fn identity(&mut self, user: Option<&ServerUser>) -> &mut Self;
}

impl Identity for std::process::Command {
    fn identity(&mut self, user: Option<&ServerUser>) -> &mut Self {
        use std::os::unix::process::CommandExt as _;
        self.process_group(0);
        if let Some(user) = user {
            // Dropping root this way also drops root's supplementary groups.
            self.uid(user.uid).gid(user.gid);
        }
        self
    }
}

fn spawn(
    user: Option<&ServerUser>,
    home: &Path,
    program: &Path,
    args: &[std::ffi::OsString],
    log: &Path,
) -> Result<Child> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("cannot open {}", log.display()))?;
    crate::host::give(user, log)?;
    std::process::Command::new(program)
        .args(args)
        .env_clear()
        .envs(clean_env(home))
        .current_dir(home)
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .identity(user)
        .spawn()
        .with_context(|| format!("cannot start {}", program.display()))
}

/// `program` in `PATH` or `/usr/bin`.
fn find_program(name: &str) -> Result<PathBuf> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
        .with_context(|| format!("`{name}` is not installed; `{INSTALL}`"))
}

/// Whether something listens on `port` within `timeout`.
fn listens(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

/// Waits until `pid` has exited (a zombie counts as exited: an orphan is
/// reaped by init in its own time).
fn wait_gone(pid: nix::unistd::Pid, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while crate::native::is_live_postgres(pid.as_raw()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A GET on Patroni's REST API: HTTP/1.0 on loopback, one JSON answer
/// (`None` for anything else). The harness needs this one request; a
/// client library would add nothing.
fn http_get_json(port: u16, path: &str) -> Option<Value> {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let ok = head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200");
    ok.then(|| serde_json::from_str(body).ok()).flatten()
}

fn check_patroni(_: &Path) -> Result<()> {
    let patroni = find_program("patroni")?;
    find_program("etcd")?;
    find_program("patronictl")?;
    // Patroni's etcd3 support imports python3-etcd, which its package
    // does not depend on.
    let shebang = std::fs::read_to_string(&patroni).unwrap_or_default();
    let python = shebang
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("#!"))
        .map(str::trim)
        .unwrap_or("/usr/bin/python3")
        .to_owned();
    crate::command::Command::new(&python)
        .args(["-c", "import etcd, patroni"])
        .read()
        .with_context(|| format!("Patroni's Python lacks its etcd client; `{INSTALL}`"))?;
    Binaries::find(15).map(drop)
}
