//! Reading a server's log as drr's `log_line_prefix` writes it
//! (`%m [%p] %b %q%u@%d `): which process gave up, and why.

/// A FATAL or PANIC line of a server log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Failure<'a> {
    /// Who said it: the backend type (`postmaster`, `startup`,
    /// `walreceiver`, …), then `user@db` for a session; empty in logs of a
    /// prefix without them.
    pub who: &'a str,
    /// `FATAL` or `PANIC`.
    pub level: &'a str,
    /// The message, without the prefix.
    pub message: &'a str,
}

impl Failure<'_> {
    /// Whether a session said it (a client's connection ended, not the
    /// server).
    pub fn of_session(&self) -> bool {
        self.who.contains('@')
    }

    /// Whether the server itself gave up: a PANIC, or a FATAL of a process
    /// the server cannot run without. A session's FATAL ends a connection;
    /// the WAL receiver's ends one attempt to stream, which the server
    /// retries (why it cannot stream is the readiness layer's question).
    pub fn of_server(&self) -> bool {
        self.level == "PANIC" || !(self.of_session() || self.who == "walreceiver")
    }
}

/// Every FATAL and PANIC line of `log`.
pub(crate) fn failures(log: &str) -> impl Iterator<Item = Failure<'_>> {
    log.lines().filter_map(|line| {
        let (_, rest) = line.split_once("] ")?;
        ["FATAL", "PANIC"].into_iter().find_map(|level| {
            let (who, message) = rest.split_once(&format!("{level}:"))?;
            // Levels end the prefix: what precedes one has no colon.
            (!who.contains(':')).then(|| Failure {
                who: who.trim(),
                level,
                message: message.trim(),
            })
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_gave_up_is_read_from_the_prefix() {
        let log = "\
2026-11-26 23:21:54.715 UTC [25270] postmaster LOG:  listening on IPv4 address \"127.0.0.1\", port 31118
2026-11-26 23:21:54.751 UTC [25304] walreceiver FATAL:  database system identifier differs between the primary and standby
2026-11-26 23:21:54.754 UTC [25303] client backend postgres@postgres FATAL:  the database system is starting up
2026-11-26 23:21:55.001 UTC [25302] startup FATAL:  recovery aborted because of insufficient parameter settings
2026-11-26 23:21:55.002 UTC [25302] FATAL:  a log of a prefix without the backend type
2026-11-26 23:21:55.003 UTC [25305] LOG:  a message that mentions FATAL: in passing
";
        let found: Vec<(&str, bool, bool)> = failures(log)
            .map(|f| (f.who, f.of_session(), f.of_server()))
            .collect();
        assert_eq!(
            found,
            [
                ("walreceiver", false, false),
                ("client backend postgres@postgres", true, false),
                ("startup", false, true),
                ("", false, true),
            ]
        );
        assert_eq!(
            failures(log).next().map(|f| f.message),
            Some("database system identifier differs between the primary and standby")
        );
    }
}
