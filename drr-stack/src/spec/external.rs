//! A cluster drr does not run: a staging or production cluster on an HA
//! engine (Patroni, pg_auto_failover, repmgr) or a managed service. The spec
//! names its nodes by host and port and the environment variables that hold
//! its credentials; the credentials themselves are read at run time and
//! never written into a file.

/// Credentials read from two environment variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvCredentials {
    /// The variable holding the role name.
    pub user_var: String,
    /// The variable holding its password.
    pub password_var: String,
}

impl EnvCredentials {
    /// The role name in `user_var`, its password in `password_var`.
    pub fn new(user_var: &str, password_var: &str) -> Self {
        EnvCredentials {
            user_var: user_var.to_owned(),
            password_var: password_var.to_owned(),
        }
    }

    /// The role name and password, read with `lookup` (the environment);
    /// `what` says whose they are, for the error.
    pub fn resolve(
        &self,
        lookup: &impl Fn(&str) -> Option<String>,
        what: &'static str,
    ) -> Result<(String, String), CredentialsError> {
        let read = |var: &str| {
            lookup(var)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| CredentialsError::MissingEnv {
                    var: var.to_owned(),
                    what,
                })
        };
        Ok((read(&self.user_var)?, read(&self.password_var)?))
    }
}

/// How drr reaches a cluster it does not run.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct External {
    /// The role applications (and `cargo xtask env`) log in as.
    pub login: EnvCredentials,
    /// The database they use.
    pub database: String,
    /// The role drr's commands use (`status`, `probe`, `delay`, `pause`): a
    /// superuser, or a role that may read `pg_stat_replication` (and run
    /// `ALTER SYSTEM` and `pg_wal_replay_pause()` for the lag commands).
    pub admin: EnvCredentials,
}

impl External {
    /// A cluster whose applications log in to `database` with `login`, and
    /// which drr's commands reach with `admin`.
    pub fn new(database: &str, login: EnvCredentials, admin: EnvCredentials) -> Self {
        External {
            login,
            database: database.to_owned(),
            admin,
        }
    }
}

/// Credentials to log in with.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Role name.
    pub user: String,
    /// Password.
    pub password: String,
    /// Database name.
    pub database: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("database", &self.database)
            .finish_non_exhaustive()
    }
}

/// Why the login credentials are not at hand.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialsError {
    /// The spec declares no login role.
    #[error("the spec declares no login role; add one with `.role(...)`")]
    NoLoginRole,
    /// An environment variable the external cluster names is not set.
    #[error("{var} is not set: the spec's external cluster reads {what} from it; export it")]
    MissingEnv {
        /// The variable.
        var: String,
        /// Whose credentials it holds.
        what: &'static str,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_come_from_the_variables_the_spec_names() {
        let creds = EnvCredentials::new("APP_USER", "APP_PASSWORD");
        let env = |var: &str| match var {
            "APP_USER" => Some("app".to_owned()),
            "APP_PASSWORD" => Some("s3cret".to_owned()),
            _ => None,
        };
        assert_eq!(
            creds.resolve(&env, "the login role").unwrap(),
            ("app".to_owned(), "s3cret".to_owned())
        );
        let none = |_: &str| None;
        let err = creds.resolve(&none, "the login role").unwrap_err();
        assert_eq!(
            err.to_string(),
            "APP_USER is not set: the spec's external cluster reads the login role from it; \
             export it"
        );
    }
}
