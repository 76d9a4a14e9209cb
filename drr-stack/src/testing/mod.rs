//! Throw-away stacks for tests and benchmarks: a native stack on free
//! loopback ports in a temporary directory, destroyed when dropped.
//!
//! The rule drr's own tests keep (ARCHITECTURE.md, "Tests"): the shared
//! stack that `cargo xtask test` brings up is read, never changed. A test
//! that pauses replay, changes a delay, stops, kills or promotes a node runs
//! on a [`TempStack`] of its own, so no other test can see what it does.
//!
//! ```no_run
//! use std::time::Duration;
//! use drr_stack::testing::{self, TempStack};
//!
//! # async fn example() -> anyhow::Result<()> {
//! let stack = TempStack::start(testing::spec(&[Duration::from_millis(500)])?).await?;
//! let replica = stack.admin("replica1").await?;
//! replica.execute("SELECT pg_wal_replay_pause()", &[]).await?;
//! // `stack.vars()` gives the DRR_* variables, for drr-core's test helpers.
//! # Ok(())
//! # }
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result};
use tokio_postgres::Client;

use crate::native::{Native, StateDir};

use crate::pg::{self, Login};
use crate::progress::Progress;
use crate::project::Project;
use crate::secrets::Secrets;
use crate::spec::{Node, Replica, Role, StackSpec};

pub mod patroni;
mod ports;

pub use ports::free_ports;

/// The login role of [`TempStack::spec`] (a password with a space, so that
/// URL encoding is exercised everywhere).
pub const LOGIN: (&str, &str) = ("app", "secret pass");

/// A native stack of its own on free ports in a temporary directory;
/// destroyed (servers stopped, data deleted) when dropped.
#[derive(Debug)]
pub struct TempStack {
    project: Project,
    dir: tempfile::TempDir,
    cache: PathBuf,
}

impl TempStack {
    /// A stopped stack for `spec`, with the template cache every test stack
    /// of this user on this machine shares ([`shared_cache`]).
    pub fn new(spec: StackSpec) -> Result<TempStack> {
        Self::with_cache(spec, &shared_cache()?)
    }

    /// A stopped stack for `spec` using the template cache `cache`. Stacks
    /// of one cache share one project root (`<cache>/project`), hence one
    /// set of generated passwords, hence one template cluster.
    pub fn with_cache(spec: StackSpec, cache: &Path) -> Result<TempStack> {
        let dir = scratch_dir("drr-stack-")?;
        let project = Project::new(spec, cache.join("project"))?;
        Ok(TempStack {
            project,
            dir,
            cache: cache.to_owned(),
        })
    }

    /// Starts a stack for `spec` and waits until every replica streams.
    pub async fn start(spec: StackSpec) -> Result<TempStack> {
        let stack = TempStack::new(spec)?;
        stack.up().await?;
        Ok(stack)
    }

    /// Runs `up` (again) with the current spec.
    pub async fn up(&self) -> Result<()> {
        self.native()?.up(&mut Progress::new(true)).await
    }

    /// Replaces the spec, as a user editing it would; the state is kept.
    pub fn respec(&mut self, spec: StackSpec) -> Result<()> {
        self.project = Project::new(spec, self.project.root())?;
        Ok(())
    }

    /// The native backend on this stack's directories.
    pub fn native(&self) -> Result<Native<'_>> {
        Native::with_state(
            &self.project,
            StateDir::at(self.dir.path().join("state"), &self.cache),
        )
    }

    /// The stack, for what commands do with one (`failover`, say).
    pub fn stack(&self) -> Result<crate::stack::Stack<'_>> {
        self.native()
            .map(|native| crate::stack::Stack::Native(Box::new(native)))
    }

    /// The stack's project (spec and root).
    pub fn project(&self) -> &Project {
        &self.project
    }

    /// The stack's spec.
    pub fn spec(&self) -> &StackSpec {
        self.project.spec()
    }

    /// The generated passwords.
    pub fn secrets(&self) -> Result<Secrets> {
        self.project.secrets()
    }

    /// The variables `cargo xtask test` would export for this stack, the
    /// superuser's URLs included.
    pub fn vars(&self) -> Result<Vec<(&'static str, String)>> {
        Ok(crate::env::vars(self.spec(), Some(&self.secrets()?)))
    }

    /// A connection to `node` as the spec's login role.
    pub async fn connect(&self, node: &str) -> Result<Client> {
        let spec = self.spec();
        let credentials = spec.login_credentials()?;
        pg::connect(spec, spec.node(node)?, Login::of(&credentials)).await
    }

    /// A superuser connection to `node`.
    pub async fn admin(&self, node: &str) -> Result<Client> {
        let secrets = self.secrets()?;
        let spec = self.spec();
        pg::connect(spec, spec.node(node)?, Login::admin(&secrets)).await
    }
}

impl Drop for TempStack {
    fn drop(&mut self) {
        if let Ok(native) = self.native() {
            let _ = native.destroy(&mut Progress::new(true));
        }
    }
}

/// A spec named `t`: a primary and one replica per delay (`replica1`,
/// `replica2`, ...), on free loopback ports, with the login role [`LOGIN`]
/// owning database `app`.
pub fn spec(delays: &[Duration]) -> Result<StackSpec> {
    let ports = free_ports(delays.len() + 1)?;
    let mut spec = StackSpec::new("t", 15)
        .primary(Node::new("primary", ports[0]))
        .role(Role::login(LOGIN.0, LOGIN.1).createdb())
        .database("app", LOGIN.0);
    for (i, delay) in delays.iter().enumerate() {
        let name = format!("replica{}", i + 1);
        spec = spec.replica(Replica::new(&name, ports[i + 1]).delay(*delay));
    }
    Ok(spec)
}

/// [`spec`] with every replica's client and replication links through the
/// fault proxy, and its Toxiproxy API, on free ports (see
/// docs/network-faults.md).
pub fn net_spec(delays: &[Duration]) -> Result<StackSpec> {
    let mut spec = spec(delays)?;
    let ports = free_ports(2 * delays.len() + 1)?;
    for (replica, ports) in spec.replicas.iter_mut().zip(ports.chunks(2)) {
        *replica = replica
            .clone()
            .client_link(ports[0])
            .replication_link(ports[1]);
    }
    Ok(spec.net_api(ports[2 * delays.len()]))
}

/// The target directory and the build directory (where compiled
/// dependencies go) cargo uses for the workspace at `root`:
/// `CARGO_TARGET_DIR` and `CARGO_BUILD_BUILD_DIR` (relative ones from
/// `root`), else `root/target` and the target directory. Tests that build
/// another workspace share the build directory, never the final binaries.
pub fn cargo_dirs(root: &Path) -> (PathBuf, PathBuf) {
    let from_env = |var: &str| {
        std::env::var_os(var).map(PathBuf::from).map(|dir| {
            if dir.is_absolute() {
                dir
            } else {
                root.join(dir)
            }
        })
    };
    let target = from_env("CARGO_TARGET_DIR").unwrap_or_else(|| root.join("target"));
    let build = from_env("CARGO_BUILD_BUILD_DIR").unwrap_or_else(|| target.clone());
    (target, build)
}

/// A fresh temporary directory that the server user can reach, marked as
/// drr's (see [`crate::host::dirs`]), so it can serve as a template cache.
pub fn scratch_dir(prefix: &str) -> Result<tempfile::TempDir> {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .context("cannot create a temporary directory")?;
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .with_context(|| format!("cannot open {} to the server user", dir.path().display()))?;
    crate::host::dirs::mark(dir.path())?;
    Ok(dir)
}

/// The template cache (and generated passwords) every test stack of this
/// user shares: `drr-test-cache-<uid>` in the system's temporary directory,
/// a predictable path in a world-writable place, so it is used only when
/// drr made it and no other user controls it (see [`crate::host::dirs`]).
pub fn shared_cache() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("drr-test-cache-{}", nix::unistd::getuid()));
    crate::host::dirs::claim(&dir, crate::host::ServerUser::resolve()?.as_ref()).with_context(
        || {
            format!(
                "cannot use {} as the test stacks' shared cache (set TMPDIR to use another \
                 temporary directory)",
                dir.display()
            )
        },
    )?;
    Ok(dir)
}

/// Something a group of tests needs that a machine may lack (a Docker
/// engine, say). Such tests live in a module named after it
/// (`mod requires_docker { ... }`) and call [`Requirement::require`] first.
/// `cargo xtask test` checks every requirement before running anything and
/// excludes the tests of a missing one, which the runner's summary then
/// counts as skipped, after a line that says why; under `CI=true` a missing
/// requirement fails the run instead.
#[derive(Debug, Clone, Copy)]
pub struct Requirement {
    /// The module its tests live in, e.g. `requires_docker`.
    pub module: &'static str,
    /// What it is, for messages.
    pub what: &'static str,
    check: fn(&Path) -> Result<()>,
}

/// A Docker engine, a compose tool, and the compose backend's image (or
/// `mmdebstrap` to build it).
pub const DOCKER: Requirement = Requirement {
    module: "requires_docker",
    what: "a Docker engine with a compose tool and the drr/postgres image",
    check: check_docker,
};

/// Something that checks a generated compose file against the Compose
/// Specification: its JSON schema at `<workspace>/../shared/compose-spec.json`
/// (where CI provides it), or a compose tool (`docker compose config`).
pub const COMPOSE_CHECKER: Requirement = Requirement {
    module: "requires_compose_checker",
    what: "the Compose Specification schema (../shared/compose-spec.json) or a compose tool",
    check: check_compose_checker,
};

/// Django and psycopg in `examples/django/.venv`, for the Django example's
/// tests (`.ci/run` installs them from PyPI).
pub const DJANGO: Requirement = Requirement {
    module: "requires_django",
    what: "Django and psycopg in examples/django/.venv",
    check: check_django,
};

fn check_django(root: &Path) -> Result<()> {
    let python = root.join("examples/django/.venv/bin/python");
    crate::command::Command::new(&python)
        .args(["-c", "import django, psycopg"])
        .read()
        .map(drop)
        .context(
            "examples/django/.venv has no Django and psycopg; create it with `python3 -m venv \
             examples/django/.venv && examples/django/.venv/bin/pip install -r \
             examples/django/requirements.txt`",
        )
}

/// A Python with toxiproxy-python (a real Toxiproxy client, to drive the
/// fault proxy's API): `$DRR_TOXIPROXY_PYTHON`, else `python3`.
pub const TOXIPROXY_PYTHON: Requirement = Requirement {
    module: "requires_toxiproxy_python",
    what: "a Python with toxiproxy-python ($DRR_TOXIPROXY_PYTHON, else python3)",
    check: check_toxiproxy_python,
};

/// Environment variable naming the Python [`TOXIPROXY_PYTHON`] runs.
pub const TOXIPROXY_PYTHON_ENV: &str = "DRR_TOXIPROXY_PYTHON";

/// The Python interpreter [`TOXIPROXY_PYTHON`] names.
pub fn toxiproxy_python() -> String {
    std::env::var(TOXIPROXY_PYTHON_ENV)
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "python3".to_owned())
}

/// Every requirement `cargo xtask test` knows.
pub const REQUIREMENTS: &[Requirement] = &[
    DOCKER,
    COMPOSE_CHECKER,
    patroni::PATRONI,
    DJANGO,
    TOXIPROXY_PYTHON,
];

/// Where CI provides the Compose Specification's JSON schema for the
/// workspace at `root`.
pub fn compose_schema_path(root: &Path) -> PathBuf {
    root.join("..").join("shared").join("compose-spec.json")
}

impl Requirement {
    /// Whether this machine has it, for the workspace at `root`; the error
    /// says what is missing and how to get it.
    pub fn check(&self, root: &Path) -> Result<()> {
        (self.check)(root)
    }

    /// Panics, saying what is missing and how to get it, unless this machine
    /// has it: the first line of every test in the requirement's module, so
    /// that run outside `cargo xtask test` it fails instead of passing.
    #[track_caller]
    pub fn require(&self, root: &Path) {
        if let Err(e) = self.check(root) {
            panic!(
                "this test needs {}: {e:#}\n`cargo xtask test` reports such tests as skipped \
                 where the requirement is missing (and fails under CI=true)",
                self.what
            );
        }
    }

    /// The nextest filterset that selects this requirement's tests.
    pub fn filterset(&self) -> String {
        format!("test(/(^|::){}::/)", self.module)
    }
}

fn check_docker(_: &Path) -> Result<()> {
    crate::compose::check_engine()?;
    crate::compose::Tool::detect()?;
    let tag = crate::compose::image::local_tag(15);
    let built = crate::compose::image::exists(&tag).unwrap_or(false);
    if !built
        && crate::command::Command::new("mmdebstrap")
            .args(["--version"])
            .read()
            .is_err()
    {
        anyhow::bail!(
            "{tag} is not built and mmdebstrap is not installed to build it; \
             `apt-get install -y mmdebstrap`, then `cargo xtask image`"
        );
    }
    Ok(())
}

fn check_toxiproxy_python(_: &Path) -> Result<()> {
    let python = toxiproxy_python();
    crate::command::Command::new(&python)
        .args(["-c", "import toxiproxy"])
        .read()
        .map(drop)
        .with_context(|| {
            format!(
                "`{python}` cannot import toxiproxy; `python3 -m venv /tmp/toxiproxy-venv && \
                 /tmp/toxiproxy-venv/bin/pip install toxiproxy-python`, then set \
                 {TOXIPROXY_PYTHON_ENV}=/tmp/toxiproxy-venv/bin/python"
            )
        })
}

fn check_compose_checker(root: &Path) -> Result<()> {
    let schema = compose_schema_path(root);
    if schema.is_file() {
        return Ok(());
    }
    crate::compose::Tool::detect().map(drop).with_context(|| {
        format!(
            "there is no schema at {} and no compose tool; put the Compose \
             Specification's schema there, or install docker-compose",
            schema.display()
        )
    })
}
