//! The connection environment of a stack: the variables `cargo xtask env`
//! prints and `cargo xtask test` exports, which drr-core reads. Both name
//! them through [`drr_env::Var`], and write lists with [`drr_env::join`].

use drr_env::{Var, join};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::secrets::Secrets;
use crate::spec::{Node, StackSpec};

/// Characters kept as they are in a URL's user and password.
const USERINFO: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A `postgres://` URL for `node`.
pub fn url(spec: &StackSpec, node: &Node, user: &str, password: &str, database: &str) -> String {
    url_over(spec, std::slice::from_ref(node), user, password, database)
}

/// A `postgres://` URL over several `nodes` (libpq's multi-host form,
/// which tokio-postgres reads too).
fn url_over(
    spec: &StackSpec,
    nodes: &[Node],
    user: &str,
    password: &str,
    database: &str,
) -> String {
    let hosts: Vec<String> = nodes
        .iter()
        .map(|n| {
            let host = spec.node_host(n);
            match host.parse::<std::net::Ipv6Addr>() {
                Ok(_) => format!("[{host}]:{}", n.port),
                Err(_) => format!("{host}:{}", n.port),
            }
        })
        .collect();
    format!(
        "postgres://{}:{}@{}/{}",
        utf8_percent_encode(user, USERINFO),
        utf8_percent_encode(password, USERINFO),
        hosts.join(","),
        utf8_percent_encode(database, USERINFO)
    )
}

/// `DRR_WRITER_URL`: every node, and libpq's `target_session_attrs =
/// read-write`, so that a client connects to whichever node is the primary
/// now, across `cargo xtask failover` (psycopg, Django, Rails and
/// tokio-postgres all read it).
pub fn writer_url(spec: &StackSpec, user: &str, password: &str, database: &str) -> String {
    let nodes: Vec<Node> = spec.nodes().cloned().collect();
    format!(
        "{}?target_session_attrs=read-write",
        url_over(spec, &nodes, user, password, database)
    )
}

/// The variables, in print order: `DRR_PRIMARY_URL` (the spec's primary,
/// whichever node is primary now), `DRR_REPLICA_URLS` (comma-separated,
/// spec order), `DATABASE_URL`, `DRR_WRITER_URL` (see [`writer_url`]),
/// `DRR_REPLICA_NAMES`,
/// `DRR_REPLICA_DELAYS_MS`, and with `admin` the superuser's
/// `DRR_ADMIN_PRIMARY_URL` and `DRR_ADMIN_REPLICA_URLS`.
///
/// URLs log in as the spec's login role (see [`StackSpec::login`]); they
/// reach a node through its client link when the spec opts one in (so an
/// application meets the faults `cargo xtask net` sets), while the admin
/// URLs, drr's own way in, always go direct.
pub fn vars(spec: &StackSpec, admin: Option<&Secrets>) -> Vec<(&'static str, String)> {
    let mut vars = Vec::new();
    let admin_spec = spec;
    let through_links = spec.with_client_ports();
    let spec = &through_links;
    if let Ok(credentials) = spec.login_credentials() {
        let (user, password, database) = (
            credentials.user.as_str(),
            credentials.password.as_str(),
            credentials.database.as_str(),
        );
        let login = |node: &Node| url(spec, node, user, password, database);
        let primary = login(&spec.primary);
        vars.push((Var::PrimaryUrl.name(), primary.clone()));
        vars.push((
            Var::ReplicaUrls.name(),
            join(spec.replicas.iter().map(|r| login(&r.node))),
        ));
        vars.push((Var::DatabaseUrl.name(), primary));
        vars.push((
            Var::WriterUrl.name(),
            writer_url(spec, user, password, database),
        ));
    }
    vars.push((
        Var::ReplicaNames.name(),
        join(spec.replicas.iter().map(|r| r.node.name.clone())),
    ));
    vars.push((
        Var::ReplicaDelaysMs.name(),
        join(
            spec.replicas
                .iter()
                .map(|r| r.delay.as_millis().to_string()),
        ),
    ));
    if let Some(secrets) = admin {
        let spec = admin_spec;
        let admin = |node: &Node| {
            url(
                spec,
                node,
                &secrets.superuser,
                &secrets.superuser_password,
                "postgres",
            )
        };
        vars.push((Var::AdminPrimaryUrl.name(), admin(&spec.primary)));
        vars.push((
            Var::AdminReplicaUrls.name(),
            join(spec.replicas.iter().map(|r| admin(&r.node))),
        ));
    }
    vars
}

/// Replaces the exported replica delays (`DRR_REPLICA_DELAYS_MS`) with
/// `delays_ms`, in spec order: for tests under runtime overrides.
pub fn set_delays(vars: &mut [(&'static str, String)], delays_ms: &[u64]) {
    for (key, value) in vars.iter_mut() {
        if *key == Var::ReplicaDelaysMs.name() {
            *value = join(delays_ms.iter().map(u64::to_string));
        }
    }
}

/// `export KEY='value'` lines for a POSIX shell.
pub fn exports(vars: &[(&str, String)]) -> String {
    vars.iter()
        .map(|(k, v)| format!("export {k}='{}'\n", v.replace('\'', "'\\''")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Replica, Role, default_spec};

    #[test]
    fn default_spec_prints_the_original_urls() {
        let text = exports(&vars(&default_spec(), None));
        assert_eq!(
            text,
            "export DRR_PRIMARY_URL='postgres://drr_user:pass@127.0.0.1:5432/drr'\n\
             export DRR_REPLICA_URLS='postgres://drr_user:pass@127.0.0.1:5433/drr'\n\
             export DATABASE_URL='postgres://drr_user:pass@127.0.0.1:5432/drr'\n\
             export DRR_WRITER_URL='postgres://drr_user:pass@127.0.0.1:5432,127.0.0.1:5433/drr?target_session_attrs=read-write'\n\
             export DRR_REPLICA_NAMES='replica1'\n\
             export DRR_REPLICA_DELAYS_MS='3000'\n"
        );
    }

    #[test]
    fn passwords_are_encoded_and_replicas_listed_in_order() {
        let spec = default_spec()
            .role(Role::login("other", "p@ss:w/rd'"))
            .replica(Replica::new("replica2", 5434));
        let mut spec = spec;
        spec.databases[0].owner = "other".into();
        let vars = vars(&spec, None);
        assert_eq!(
            vars[0].1,
            "postgres://other:p%40ss%3Aw%2Frd%27@127.0.0.1:5432/drr"
        );
        assert_eq!(vars[1].1.matches(',').count(), 1);
        assert!(exports(&vars).contains("w%2Frd%27@"));
        assert_eq!(vars[4].1, "replica1,replica2");
    }
}
