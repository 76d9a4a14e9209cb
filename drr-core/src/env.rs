//! Building a configuration from the environment printed by
//! `cargo xtask env`.

use crate::config::RouterConfig;
use crate::error::{Error, Result};

/// The primary's URL.
pub const PRIMARY_URL: &str = "DRR_PRIMARY_URL";
/// The replicas' URLs, comma-separated.
pub const REPLICA_URLS: &str = "DRR_REPLICA_URLS";
/// Optional names for the replicas, comma-separated, in the same order.
pub const REPLICA_NAMES: &str = "DRR_REPLICA_NAMES";

impl RouterConfig {
    /// A configuration from `DRR_PRIMARY_URL`, `DRR_REPLICA_URLS` and, if
    /// set, `DRR_REPLICA_NAMES`, with defaults for the rest.
    ///
    /// Run `cargo xtask env` to print these for the local stack.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|key| std::env::var(key).ok())
    }

    fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let primary = lookup(PRIMARY_URL).filter(|v| !v.trim().is_empty()).ok_or_else(|| {
            Error::config(format!(
                "{PRIMARY_URL} is not set; run `cargo xtask env` to print the variables for the local stack"
            ))
        })?;
        let urls = lookup(REPLICA_URLS).unwrap_or_default();
        let urls: Vec<&str> = split_list(&urls).collect();
        let names = lookup(REPLICA_NAMES).unwrap_or_default();
        let names: Vec<&str> = split_list(&names).collect();
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
        Ok(config)
    }
}

fn split_list(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
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
