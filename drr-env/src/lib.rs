//! The connection environment of a drr stack: the `DRR_*` variables
//! drr-stack prints (`cargo xtask env`) and exports (`cargo xtask test`), and
//! drr-core and its test helpers read. One typed list both sides name them
//! by, and the one format of their lists ([`join`], [`split`]).
//!
//! ```
//! use drr_env::Var;
//!
//! assert_eq!(Var::PrimaryUrl.name(), "DRR_PRIMARY_URL");
//! assert_eq!(Var::from_name("DRR_WRITER_URL"), Some(Var::WriterUrl));
//! let urls = drr_env::join(["postgres://a@h:1/d", "postgres://a@h:2/d"]);
//! assert_eq!(drr_env::split(&urls).count(), 2);
//! ```
#![deny(missing_docs)]

use std::fmt;

/// One variable of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Var {
    /// `DRR_PRIMARY_URL`: the spec's primary (its port, whichever node is
    /// the primary now), as the login role.
    PrimaryUrl,
    /// `DRR_REPLICA_URLS`: the spec's replicas, as the login role, a
    /// [list](join) in spec order.
    ReplicaUrls,
    /// `DATABASE_URL`: the same as `DRR_PRIMARY_URL`, for tools that read
    /// the conventional name.
    DatabaseUrl,
    /// `DRR_WRITER_URL`: every node in one multi-host URL with
    /// `target_session_attrs=read-write`, which connects to whichever node
    /// is the primary now. Its presence says the stack can fail over.
    WriterUrl,
    /// `DRR_REPLICA_NAMES`: the replicas' names, a list in the same order.
    ReplicaNames,
    /// `DRR_REPLICA_DELAYS_MS`: the replicas' apply delays in
    /// milliseconds, a list in the same order.
    ReplicaDelaysMs,
    /// `DRR_ADMIN_PRIMARY_URL`: the primary, as the superuser (tests only).
    AdminPrimaryUrl,
    /// `DRR_ADMIN_REPLICA_URLS`: the replicas, as the superuser, a list in
    /// the same order (tests only).
    AdminReplicaUrls,
}

impl Var {
    /// Every variable, in the order `cargo xtask env` prints them.
    pub const ALL: [Var; 8] = [
        Var::PrimaryUrl,
        Var::ReplicaUrls,
        Var::DatabaseUrl,
        Var::WriterUrl,
        Var::ReplicaNames,
        Var::ReplicaDelaysMs,
        Var::AdminPrimaryUrl,
        Var::AdminReplicaUrls,
    ];

    /// The variable's name in the environment.
    pub const fn name(self) -> &'static str {
        match self {
            Var::PrimaryUrl => "DRR_PRIMARY_URL",
            Var::ReplicaUrls => "DRR_REPLICA_URLS",
            Var::DatabaseUrl => "DATABASE_URL",
            Var::WriterUrl => "DRR_WRITER_URL",
            Var::ReplicaNames => "DRR_REPLICA_NAMES",
            Var::ReplicaDelaysMs => "DRR_REPLICA_DELAYS_MS",
            Var::AdminPrimaryUrl => "DRR_ADMIN_PRIMARY_URL",
            Var::AdminReplicaUrls => "DRR_ADMIN_REPLICA_URLS",
        }
    }

    /// The variable named `name`, if it is one of the contract's.
    pub fn from_name(name: &str) -> Option<Var> {
        Var::ALL.into_iter().find(|var| var.name() == name)
    }

    /// The variable's value in this process's environment, if set and not
    /// blank.
    pub fn get(self) -> Option<String> {
        std::env::var(self.name())
            .ok()
            .filter(|value| !value.trim().is_empty())
    }
}

impl fmt::Display for Var {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl AsRef<str> for Var {
    fn as_ref(&self) -> &str {
        self.name()
    }
}

/// A list variable's value: the items joined by commas (URLs have their
/// commas percent-encoded, so none holds one, except a multi-host URL,
/// which is never in a list).
pub fn join<I, S>(items: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    items
        .into_iter()
        .map(|item| item.as_ref().to_owned())
        .collect::<Vec<_>>()
        .join(",")
}

/// The items of a list variable's value, trimmed, empty ones skipped.
pub fn split(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_distinct_and_round_trip() {
        for var in Var::ALL {
            assert_eq!(Var::from_name(var.name()), Some(var));
            assert_eq!(var.to_string(), var.name());
        }
        assert_eq!(Var::from_name("DRR_NOPE"), None);
    }

    #[test]
    fn lists_round_trip() {
        let list = join(["a", "b"]);
        assert_eq!(list, "a,b");
        assert_eq!(split(" a , ,b ").collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(split("").count(), 0);
    }
}
