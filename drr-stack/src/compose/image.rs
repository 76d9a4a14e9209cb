//! `cargo xtask image`: a local Postgres image built without any registry.
//!
//! `mmdebstrap` makes a Debian root filesystem with the `postgresql-NN`
//! package from the machine's own apt mirror, and `docker import` turns the
//! tarball into the image [`local_tag`] (`drr/postgres:NN`). Debian's
//! packaging would create a "main" cluster; a hook tells `postgresql-common`
//! not to, before the package installs. The result runs drr's entrypoint like
//! the official image does: a `postgres` user owning `/var/lib/postgresql`
//! and the major's server binaries in `/usr/lib/postgresql/NN/bin`.
//!
//! The image records the exact server package it holds: the label
//! [`VERSION_LABEL`] carries the Debian package version (e.g.
//! `15.18-0+deb12u1`), and a second tag names the server version
//! (`drr/postgres:15.18`), which a spec can pin with `.image(...)`.
//!
//! Building is cached: when the tag exists and records its version,
//! [`ensure`] returns at once; an image without the label (built by an
//! older drr) is rebuilt. A failed build leaves neither a tag nor a
//! temporary file behind.

use std::path::Path;

use anyhow::{Context as _, Result};

use super::engine;
use crate::command::Command;
use crate::progress::Progress;

/// Overrides the Debian mirror read from the machine's apt sources.
pub const MIRROR_ENV: &str = "DRR_DEBIAN_MIRROR";

/// The mirror used when neither [`MIRROR_ENV`] nor the apt sources name one.
pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";

/// Label on every image drr builds; its value is the major version.
pub const IMAGE_LABEL: &str = "dev.drr.image";

/// Label carrying the Debian version of the server package in the image,
/// e.g. `15.18-0+deb12u1`.
pub const VERSION_LABEL: &str = "dev.drr.postgres-version";

/// Programs drr's entrypoint and health check need inside the image.
const REQUIRED: &[&str] = &["sh", "mv", "rm", "mktemp", "printf"];

/// The tag of the image [`ensure`] builds for `major`.
pub fn local_tag(major: u16) -> String {
    format!("drr/postgres:{major}")
}

/// Whether `image` is on this machine (never pulls).
pub fn exists(image: &str) -> Result<bool> {
    engine::check()?;
    Ok(Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", image])
        .read()
        .is_ok())
}

/// The tag naming the server version an image holds, e.g.
/// `drr/postgres:15.18` for package version `15.18-0+deb12u1`.
pub fn version_tag(major: u16, package_version: &str) -> String {
    format!(
        "drr/postgres:{}",
        upstream(package_version).unwrap_or(&major.to_string())
    )
}

/// The server version of a Debian package version: `15.18` of
/// `15.18-0+deb12u1` (an epoch such as `1:` dropped); `None` when it is
/// not a package version (Debian allows letters, digits and `.+~:-`, and
/// the version starts with a digit).
pub fn upstream(package_version: &str) -> Option<&str> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || ".+~:-".contains(c);
    if !package_version.chars().all(allowed) {
        return None;
    }
    let version = package_version
        .split_once(':')
        .map_or(package_version, |(_, rest)| rest);
    let version = version.split('-').next().unwrap_or(version);
    version
        .starts_with(|c: char| c.is_ascii_digit())
        .then_some(version)
}

/// The server package version `image` records in [`VERSION_LABEL`];
/// `None` when it has no such label (not built by drr, or by an older one).
pub fn package_version(image: &str) -> Result<Option<String>> {
    let format = format!("{{{{index .Config.Labels \"{VERSION_LABEL}\"}}}}");
    let out = Command::new("docker")
        .args(["image", "inspect", "--format", &format, image])
        .read()
        .with_context(|| format!("cannot read the labels of image {image}"))?;
    let version = out.trim();
    Ok((!version.is_empty() && version != "<no value>").then(|| version.to_owned()))
}

/// Builds [`local_tag`] for `major` unless it exists and records its
/// server version (see the module docs); returns the tag.
pub fn ensure(major: u16, progress: &mut Progress) -> Result<String> {
    let tag = local_tag(major);
    if exists(&tag)? {
        match package_version(&tag)? {
            Some(version) => {
                let versioned = version_tag(major, &version);
                progress.step(
                    &format!(
                        "{tag} is already built (postgresql-{major} {version}, also {versioned})"
                    ),
                    || retag(&tag, &versioned),
                )?;
                return Ok(tag);
            }
            None => progress.note(&format!(
                "{tag} records no server version (an older drr built it): building it again"
            )),
        }
    }
    let suite = suite(major)?;
    let mmdebstrap = which("mmdebstrap").context(
        "mmdebstrap is not installed; install it with `apt-get install -y mmdebstrap` \
         (it builds the image from Debian packages, without a registry)",
    )?;
    let mirror = mirror();
    let dir = tempfile::Builder::new()
        .prefix("drr-image-")
        .tempdir()
        .context("cannot create a temporary directory for the root filesystem")?;
    let tar = dir.path().join("rootfs.tar");
    let version_file = dir.path().join("version");
    progress.step(
        &format!("mmdebstrap {suite} with postgresql-{major} from {mirror}"),
        || rootfs(&mmdebstrap, major, suite, &mirror, &tar, &version_file),
    )?;
    let version = std::fs::read_to_string(&version_file)
        .with_context(|| format!("cannot read {}", version_file.display()))?
        .trim()
        .to_owned();
    anyhow::ensure!(
        upstream(&version).is_some(),
        "the root filesystem reports `{version}` as the version of postgresql-{major}, which is \
         not a package version; check the mirror ({MIRROR_ENV}) and run `cargo xtask image` again"
    );
    progress.step(
        &format!("docker import {tag} (postgresql-{major} {version})"),
        || import(major, &version, &tar, &tag),
    )?;
    drop(dir);
    let versioned = version_tag(major, &version);
    progress.step(&format!("check {tag}, tag {versioned}"), || {
        let checked = verify(major, &version, &tag).and_then(|()| retag(&tag, &versioned));
        if checked.is_err() {
            let _ = Command::new("docker").args(["image", "rm", &tag]).read();
        }
        checked
    })?;
    Ok(tag)
}

/// Points `versioned` at the image `tag` names.
fn retag(tag: &str, versioned: &str) -> Result<()> {
    Command::new("docker")
        .args(["tag", tag, versioned])
        .read()
        .map(drop)
}

/// The Debian release that packages `major` (Debian carries one major per
/// release; others need the PostgreSQL apt repository, which drr does not add).
fn suite(major: u16) -> Result<&'static str> {
    match major {
        15 => Ok("bookworm"),
        17 => Ok("trixie"),
        _ => anyhow::bail!(
            "drr builds local images only for Postgres 15 (Debian bookworm) and 17 (Debian trixie); \
             for {major}, set `.image(...)` in the spec to an image with Postgres {major} \
             (e.g. the official `postgres:{major}`) or use the native backend"
        ),
    }
}

/// `mmdebstrap` into `tar`: apt, the server package, no "main" cluster;
/// the package's exact version is written to `version_file`.
fn rootfs(
    mmdebstrap: &Path,
    major: u16,
    suite: &str,
    mirror: &str,
    tar: &Path,
    version_file: &Path,
) -> Result<()> {
    // Before any package installs: postgresql-common reads this file when
    // its postinst would create (and start) the default cluster.
    let no_cluster = "mkdir -p \"$1/etc/postgresql-common\" && \
         echo 'create_main_cluster = false' > \"$1/etc/postgresql-common/createcluster.conf\"";
    // Defence in depth, and the data directory's parent owned by postgres.
    let tidy = format!(
        "rm -rf \"$1/var/lib/postgresql/{major}\" \"$1/etc/postgresql/{major}\" && \
         chroot \"$1\" chown postgres:postgres /var/lib/postgresql"
    );
    // Hooks run as shell commands: the path is single-quoted (the name of a
    // temporary directory has no quote in it).
    let record = format!(
        "chroot \"$1\" dpkg-query --showformat='${{Version}}' --show postgresql-{major} > '{}'",
        version_file.display()
    );
    Command::new(mmdebstrap)
        .args([
            "--variant=apt".to_owned(),
            format!("--include=postgresql-{major}"),
            format!("--essential-hook={no_cluster}"),
            format!("--customize-hook={tidy}"),
            format!("--customize-hook={record}"),
            "--dpkgopt=path-exclude=/usr/share/doc/*".to_owned(),
            "--dpkgopt=path-exclude=/usr/share/man/*".to_owned(),
            "--aptopt=Acquire::Retries \"3\"".to_owned(),
            suite.to_owned(),
        ])
        .args([tar.as_os_str()])
        .args([mirror])
        .read()
        .map(drop)
        .context("cannot build the root filesystem; check that the mirror is reachable (set DRR_DEBIAN_MIRROR to use another)")
}

/// `docker import` with the settings a Dockerfile would give, and the
/// package version as [`VERSION_LABEL`].
fn import(major: u16, version: &str, tar: &Path, tag: &str) -> Result<()> {
    let bin = crate::render::postgres::server_bindir(major);
    let changes = [
        "USER postgres".to_owned(),
        "WORKDIR /var/lib/postgresql".to_owned(),
        format!("ENV PATH={bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
        "ENV LANG=C.UTF-8".to_owned(),
        format!("LABEL {IMAGE_LABEL}={major}"),
        format!("LABEL {VERSION_LABEL}={version}"),
        "CMD [\"postgres\"]".to_owned(),
    ];
    let mut command = Command::new("docker").args(["import"]);
    for change in changes {
        command = command.args(["--change".to_owned(), change]);
    }
    command
        .args([
            "--message".to_owned(),
            format!("drr: Debian with postgresql-{major} {version}, built by `cargo xtask image`"),
        ])
        .args([tar.as_os_str()])
        .args([tag])
        .read()
        .map(drop)
}

/// Runs the image once: the server binaries answer, the entrypoint's tools
/// exist, as the `postgres` user that owns `/var/lib/postgresql`, and the
/// installed package is the `version` the label records.
fn verify(major: u16, version: &str, tag: &str) -> Result<()> {
    let bin = crate::render::postgres::server_bindir(major);
    let mut script =
        String::from("set -e; test \"$(stat -c %U /var/lib/postgresql)\" = postgres; ");
    script.push_str(&format!(
        "test \"$(dpkg-query --showformat='${{Version}}' --show postgresql-{major})\" = '{version}'; "
    ));
    script.push_str("test ! -e /var/lib/postgresql/");
    script.push_str(&major.to_string());
    script.push_str("; ");
    for tool in REQUIRED {
        script.push_str(&format!("command -v {tool} >/dev/null; "));
    }
    for tool in [
        "postgres",
        "initdb",
        "pg_ctl",
        "pg_isready",
        "psql",
        "pg_basebackup",
        "pg_receivewal",
    ] {
        script.push_str(&format!("test -x {bin}/{tool}; "));
    }
    script.push_str(&format!("{bin}/postgres --version"));
    Command::new("docker")
        .args(["run", "--rm", "--entrypoint", "sh", tag, "-c", &script])
        .read()
        .map(drop)
        .with_context(|| {
            format!("the new image {tag} lacks what drr's entrypoint needs; it was removed")
        })
}

/// The Debian mirror: [`MIRROR_ENV`], else the machine's apt sources, else
/// [`DEFAULT_MIRROR`].
pub fn mirror() -> String {
    if let Some(m) = std::env::var(MIRROR_ENV)
        .ok()
        .filter(|m| !m.trim().is_empty())
    {
        return m.trim().to_owned();
    }
    let mut texts = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        texts.extend(
            paths
                .iter()
                .filter(|p| p.extension().is_some_and(|e| e == "sources"))
                .filter_map(|p| std::fs::read_to_string(p).ok())
                .map(|t| (true, t)),
        );
    }
    if let Ok(text) = std::fs::read_to_string("/etc/apt/sources.list") {
        texts.push((false, text));
    }
    texts
        .iter()
        .find_map(|(deb822, text)| {
            if *deb822 {
                mirror_in_deb822(text)
            } else {
                mirror_in_one_line(text)
            }
        })
        .unwrap_or_else(|| DEFAULT_MIRROR.to_owned())
}

/// The first `URIs:` of a deb822 stanza for the main Debian archive (not
/// the security archive).
fn mirror_in_deb822(text: &str) -> Option<String> {
    text.split("\n\n").find_map(|stanza| {
        let field = |name: &str| {
            stanza.lines().find_map(|l| {
                let (key, value) = l.split_once(':')?;
                key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
            })
        };
        let types = field("Types")?;
        let uri = field("URIs")?.split_whitespace().next()?;
        let suites = field("Suites").unwrap_or_default();
        let is_main = suites.split_whitespace().any(|s| !s.contains('-'));
        (types.split_whitespace().any(|t| t == "deb") && is_main && !uri.contains("security"))
            .then(|| uri.to_owned())
    })
}

/// The first `deb URI SUITE ...` line of a one-line-style `sources.list`.
fn mirror_in_one_line(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace().filter(|w| !w.starts_with('['));
        (words.next()? == "deb").then_some(())?;
        let uri = words.next()?;
        let suite = words.next()?;
        (!suite.contains('-') && !uri.contains("security")).then(|| uri.to_owned())
    })
}

/// The full path of `program` on `PATH`.
fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deb822_main_archive_not_security() {
        let text = "Types: deb\n# a comment\nURIs: http://security.debian.org/debian-security\n\
                    Suites: bookworm-security\nComponents: main\n\n\
                    Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n\
                    Components: main\n";
        assert_eq!(
            mirror_in_deb822(text).as_deref(),
            Some("http://mirror.example/debian")
        );
    }

    #[test]
    fn one_line_sources() {
        let text = "# deb http://old.example/debian bookworm main\n\
                    deb [arch=amd64] http://mirror.example/debian bookworm main\n";
        assert_eq!(
            mirror_in_one_line(text).as_deref(),
            Some("http://mirror.example/debian")
        );
        assert_eq!(
            mirror_in_one_line("deb-src http://x/debian bookworm main"),
            None
        );
    }

    #[test]
    fn package_versions_name_the_server_version() {
        assert_eq!(upstream("15.18-0+deb12u1"), Some("15.18"));
        assert_eq!(upstream("1:17.7-3"), Some("17.7"));
        assert_eq!(upstream("15.18"), Some("15.18"));
        assert_eq!(upstream("dpkg-query: no packages found"), None);
        assert_eq!(upstream("15.18'; rm -rf /"), None);
        assert_eq!(version_tag(15, "15.18-0+deb12u1"), "drr/postgres:15.18");
    }

    #[test]
    fn unsupported_majors_name_the_alternatives() {
        let err = suite(16).unwrap_err().to_string();
        assert!(
            err.contains("postgres:16") && err.contains("native"),
            "{err}"
        );
        assert_eq!(suite(15).unwrap(), "bookworm");
    }
}
