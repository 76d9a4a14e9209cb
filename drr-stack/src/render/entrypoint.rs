//! `entrypoint.sh`: the POSIX shell script every compose service runs.
//!
//! The script is the same for every node and every spec; the node's facts
//! reach it through the environment the compose file sets (see
//! [`super::compose`]). Its body lives next to this file as `entrypoint.sh`.

use super::PREAMBLE;
use super::postgres::INITDB_ARGS;

/// The body of the script, without the shebang and preamble.
const BODY: &str = include_str!("entrypoint.sh");

/// Where every service mounts the script (read-only).
pub const MOUNT_PATH: &str = "/etc/drr/entrypoint.sh";

/// Where every service mounts its node's directory of `compose/` (read-only).
pub const NODE_CONFIG_DIR: &str = "/etc/drr/node";

/// The complete `compose/entrypoint.sh`, with the native backend's initdb
/// arguments ([`INITDB_ARGS`]), so that both backends' clusters are made
/// alike (same encoding and locale).
pub fn entrypoint_sh() -> String {
    let initdb_args: Vec<String> = INITDB_ARGS.iter().map(|a| shell_word(a)).collect();
    let body = BODY.replace("@INITDB_ARGS@", &initdb_args.join(" "));
    format!("#!/bin/sh\n# {PREAMBLE}\n#\n{body}")
}

/// `word` for a POSIX shell: as it is when it holds only safe characters,
/// else single-quoted.
fn shell_word(word: &str) -> String {
    if word
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_=./:".contains(c))
    {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_with_shebang_then_preamble() {
        let script = entrypoint_sh();
        let mut lines = script.lines();
        assert_eq!(lines.next(), Some("#!/bin/sh"));
        assert_eq!(lines.next(), Some(format!("# {PREAMBLE}").as_str()));
        assert!(script.ends_with('\n'));
    }

    #[test]
    fn uses_the_mount_points_the_compose_file_declares() {
        let script = entrypoint_sh();
        assert!(script.contains(&format!("conf={NODE_CONFIG_DIR}\n")));
        assert!(script.contains("\"$bin/pg_basebackup\""));
        assert!(script.contains("-R -C -S \"$node\" -X stream"));
        assert!(script.contains("exec \"$bin/postgres\" -D \"$PGDATA\""));
    }

    #[test]
    fn initdb_gets_the_native_backends_arguments() {
        let script = entrypoint_sh();
        assert!(!script.contains("@INITDB_ARGS@"));
        let line = script
            .lines()
            .find(|l| l.contains("\"$bin/initdb\""))
            .expect("an initdb line");
        for arg in INITDB_ARGS {
            assert!(line.contains(arg), "{arg} missing from {line}");
        }
        assert_eq!(shell_word("--locale=C"), "--locale=C");
        assert_eq!(shell_word("a b'c"), "'a b'\\''c'");
    }
}
