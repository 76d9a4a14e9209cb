//! Connection URLs, parsed and checked when the configuration is built.

use std::str::FromStr;

use crate::error::{Error, Result};

/// Parses and checks a node's URL, so that a bad one fails here, naming the
/// bad part, rather than at the first query as a connection error.
pub(super) fn parse_url(url: &str, what: &str) -> Result<tokio_postgres::Config> {
    // The URL may hold a password: name the node, never echo the URL.
    let config = tokio_postgres::Config::from_str(url.trim())
        .map_err(|err| Error::config(format!("invalid connection URL for {what}: {err}")))?;
    if config.get_hosts().is_empty() {
        return Err(Error::config(format!(
            "the connection URL for {what} names no host: add one (postgres://user@host/db, or host=...)"
        )));
    }
    if config.get_user().is_none() {
        return Err(Error::config(format!(
            "the connection URL for {what} names no user: add one (postgres://user@host/db, or user=...)"
        )));
    }
    let (hosts, ports) = (config.get_hosts().len(), config.get_ports().len());
    if ports > 1 && ports != hosts {
        return Err(Error::config(format!(
            "the connection URL for {what} has {hosts} hosts but {ports} ports: give one port, or one per host"
        )));
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use crate::config::RouterConfig;

    #[test]
    fn urls_are_validated_when_the_config_is_built() {
        for (url, part) in [
            ("", "no host"),
            ("   ", "no host"),
            ("user=app dbname=app", "no host"),
            ("postgres:///app", "no host"),
            ("host=db1 dbname=app", "no user"),
            ("postgres://db1/app", "no user"),
            ("host=a,b,c port=1,2 user=u", "3 hosts but 2 ports"),
        ] {
            let err = RouterConfig::new(url).expect_err(url);
            assert!(err.is_config(), "{url:?}: {err}");
            assert!(err.to_string().contains(part), "{url:?}: {err}");
        }
        let err = RouterConfig::new("postgres://u@h/d")
            .and_then(|c| c.named_replica("eu", "host=h"))
            .expect_err("a replica without a user");
        assert!(err.to_string().contains("node eu"), "{err}");
        for good in [
            "postgres://u@h/d",
            "postgresql://u:p@h1:1,h2:2/d",
            "host=/var/run/postgresql user=u",
            "host=a,b port=5432 user=u",
        ] {
            assert!(RouterConfig::new(good).is_ok(), "{good}");
        }
    }
}
