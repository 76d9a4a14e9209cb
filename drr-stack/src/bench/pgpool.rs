//! A pgpool-II process in front of a throw-away stack, for the peers
//! part: its files rendered by [`crate::render::pgpool`] into a temporary
//! directory, run in the foreground (`-n`) as the server user when drr runs
//! as root, stopped when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::host::ServerUser;
use crate::render::pgpool::{self, Pgpool};
use crate::secrets::Secrets;
use crate::spec::{Node, StackSpec};
use crate::testing::{free_ports, scratch_dir};

/// Debian's package puts the binary here.
const PROGRAM: &str = "/usr/sbin/pgpool";

/// How to install pgpool-II, for the message when it is missing.
pub const INSTALL: &str = "apt-get install pgpool2 (as .ci/run does)";

/// A running pgpool-II.
pub struct Running {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

/// Whether pgpool-II is installed.
pub fn installed() -> bool {
    Path::new(PROGRAM).is_file()
}

impl Running {
    /// Starts pgpool-II for `spec` on free ports, a replica excluded from
    /// reads from `delay_threshold_bytes` of lag (0: never), and waits until
    /// the login role can log in through it.
    pub async fn start(
        spec: &StackSpec,
        secrets: &Secrets,
        delay_threshold_bytes: u64,
    ) -> Result<Running> {
        let user = ServerUser::resolve()?;
        let dir = scratch_dir("drr-bench-pgpool-")?;
        let ports = free_ports(2)?;
        let settings = Pgpool {
            port: ports[0],
            pcp_port: ports[1],
            run_dir: dir.path().display().to_string(),
            delay_threshold_bytes,
            sr_check_period_s: 1,
            children: 32,
        };
        let credentials = spec.login_credentials()?;
        let write = |name: &str, contents: String, mode: u32| -> Result<PathBuf> {
            let path = dir.path().join(name);
            std::fs::write(&path, contents)
                .with_context(|| format!("cannot write {}", path.display()))?;
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
            crate::host::give(user.as_ref(), &path)?;
            Ok(path)
        };
        let conf = write(
            "pgpool.conf",
            pgpool::pgpool_conf(spec, &settings, &secrets.superuser),
            0o644,
        )?;
        let hba = write("pool_hba.conf", pgpool::pool_hba_conf(), 0o644)?;
        let pcp = write("pcp.conf", String::new(), 0o600)?;
        write(
            "pool_passwd",
            pgpool::pool_passwd(&[
                (&credentials.user, &credentials.password),
                (&secrets.superuser, &secrets.superuser_password),
            ]),
            0o600,
        )?;
        crate::host::give(user.as_ref(), dir.path())?;
        let log = dir.path().join("pgpool.log");
        let file = std::fs::File::create(&log)?;
        let child = {
            use std::os::unix::process::CommandExt as _;
            let mut command = std::process::Command::new(PROGRAM);
            command
                .arg("-n")
                .arg("-f")
                .arg(&conf)
                .arg("-a")
                .arg(&hba)
                .arg("-F")
                .arg(&pcp)
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(file.try_clone()?)
                .stderr(file)
                .process_group(0);
            if let Some(user) = &user {
                command.uid(user.uid).gid(user.gid);
            }
            command
                .spawn()
                .with_context(|| format!("cannot start {PROGRAM}; {INSTALL}"))?
        };
        let mut running = Running {
            child,
            port: settings.port,
            dir,
        };
        running.wait_ready(spec, &credentials).await?;
        Ok(running)
    }

    /// The login role's URL through pgpool-II.
    pub fn url(&self, spec: &StackSpec) -> Result<String> {
        let credentials = spec.login_credentials()?;
        Ok(crate::env::url(
            spec,
            &Node::new("pgpool", self.port),
            &credentials.user,
            &credentials.password,
            &credentials.database,
        ))
    }

    async fn wait_ready(
        &mut self,
        spec: &StackSpec,
        credentials: &crate::spec::Credentials,
    ) -> Result<()> {
        let url = self.url(spec)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let attempt = async {
                let (client, connection) =
                    tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
                tokio::spawn(connection);
                client.simple_query("SELECT 1").await
            };
            match attempt.await {
                Ok(_) => return Ok(()),
                Err(err) => {
                    if let Some(status) = self.child.try_wait()? {
                        anyhow::bail!(
                            "pgpool-II exited ({status}) as {}; its log:\n{}",
                            credentials.user,
                            self.log()
                        );
                    }
                    anyhow::ensure!(
                        Instant::now() < deadline,
                        "pgpool-II did not accept a login within 30 s ({err}); its log:\n{}",
                        self.log()
                    );
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("pgpool.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Running {
    /// Fast shutdown (SIGINT) of pgpool-II and its children, then a kill
    /// if it has not exited within 5 s.
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}
