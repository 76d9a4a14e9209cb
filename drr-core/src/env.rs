//! Building a configuration from the environment printed by
//! `cargo xtask env`: the variables of the [`drr_env`] contract, which
//! drr-stack prints.

use drr_env::{Var, split};

use crate::config::{Roles, RouterConfig};
use crate::error::{Error, Result};

/// The primary's URL ([`Var::PrimaryUrl`]).
pub const PRIMARY_URL: &str = Var::PrimaryUrl.name();
/// The replicas' URLs, comma-separated ([`Var::ReplicaUrls`]).
pub const REPLICA_URLS: &str = Var::ReplicaUrls.name();
/// Optional names for the replicas, comma-separated, in the same order
/// ([`Var::ReplicaNames`]).
pub const REPLICA_NAMES: &str = Var::ReplicaNames.name();
/// A multi-host URL over every node with `target_session_attrs=read-write`:
/// set by a stack whose primary may change, for clients that follow it
/// ([`Var::WriterUrl`]).
pub const WRITER_URL: &str = Var::WriterUrl.name();

impl RouterConfig {
    /// A configuration from `DRR_PRIMARY_URL`, `DRR_REPLICA_URLS` and, if
    /// set, `DRR_REPLICA_NAMES`, with defaults for the rest.
    ///
    /// When `DRR_WRITER_URL` is set too (`cargo xtask env` prints it: the
    /// stack can fail over), the router does not take `DRR_PRIMARY_URL`'s
    /// node for the primary: it discovers the primary among all these nodes,
    /// as [`cluster`](RouterConfig::cluster) does, and follows a failover.
    /// The nodes keep their names (`primary` is the spec's primary, whatever
    /// it is now).
    ///
    /// Run `cargo xtask env` to print these for the local stack.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|key| std::env::var(key).ok())
    }

    pub(crate) fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let primary = lookup(PRIMARY_URL).filter(|v| !v.trim().is_empty()).ok_or_else(|| {
            Error::config(format!(
                "{PRIMARY_URL} is not set; run `cargo xtask env` to print the variables for the local stack"
            ))
        })?;
        let urls = lookup(REPLICA_URLS).unwrap_or_default();
        let urls: Vec<&str> = split(&urls).collect();
        let names = lookup(REPLICA_NAMES).unwrap_or_default();
        let names: Vec<&str> = split(&names).collect();
        if !names.is_empty() && names.len() != urls.len() {
            return Err(Error::config(format!(
                "{REPLICA_NAMES} has {} names but {REPLICA_URLS} has {} URLs",
                names.len(),
                urls.len()
            )));
        }
        let mut config = RouterConfig::new(&primary)?;
        for (i, url) in urls.iter().enumerate() {
            config = match names.get(i) {
                Some(name) => config.named_replica(name, url)?,
                None => config.replica(url)?,
            };
        }
        if lookup(WRITER_URL).is_some_and(|url| !url.trim().is_empty()) {
            config.roles = Roles::Discovered;
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(vars: &[(&str, &str)]) -> Result<RouterConfig> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        RouterConfig::from_lookup(|key| vars.get(key).cloned())
    }

    #[test]
    fn reads_primary_replicas_and_names() {
        let config = from(&[
            (PRIMARY_URL, "postgres://u:p@127.0.0.1:5432/drr"),
            (
                REPLICA_URLS,
                "postgres://u:p@127.0.0.1:5433/drr, postgres://u:p@127.0.0.1:5434/drr",
            ),
            (REPLICA_NAMES, "east,west"),
        ])
        .unwrap();
        assert_eq!(config.replica_names().collect::<Vec<_>>(), ["east", "west"]);
        assert!(!config.discovers_roles(), "no writer URL: a fixed primary");
    }

    #[test]
    fn a_writer_url_means_the_primary_is_discovered() {
        let config = from(&[
            (PRIMARY_URL, "postgres://u@h:1/d"),
            (REPLICA_URLS, "postgres://u@h:2/d"),
            (
                WRITER_URL,
                "postgres://u@h:1,h:2/d?target_session_attrs=read-write",
            ),
        ])
        .unwrap();
        assert!(config.discovers_roles());
        assert_eq!(
            config.node_names().collect::<Vec<_>>(),
            ["primary", "replica1"]
        );
    }

    #[test]
    fn names_default_to_replica_n() {
        let config = from(&[
            (PRIMARY_URL, "postgres://u@h/d"),
            (REPLICA_URLS, "postgres://u@h:1/d"),
        ])
        .unwrap();
        assert_eq!(config.replica_names().collect::<Vec<_>>(), ["replica1"]);
    }

    #[test]
    fn missing_primary_says_what_to_run() {
        let err = from(&[]).unwrap_err();
        assert!(err.is_config());
        assert!(err.to_string().contains("cargo xtask env"), "{err}");
    }

    #[test]
    fn mismatched_names_are_rejected() {
        let err = from(&[
            (PRIMARY_URL, "postgres://u@h/d"),
            (REPLICA_URLS, "postgres://u@h:1/d"),
            (REPLICA_NAMES, "a,b"),
        ])
        .unwrap_err();
        assert!(err.to_string().contains("2 names but"), "{err}");
    }

    #[test]
    fn bad_urls_do_not_echo_passwords() {
        let err = from(&[(PRIMARY_URL, "postgres://u:hunter2@h:notaport/d")]).unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}
