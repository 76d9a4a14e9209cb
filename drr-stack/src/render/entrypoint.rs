//! `entrypoint.sh`: the POSIX shell script every compose service runs.
//!
//! The script is the same for every node and every spec; the node's facts
//! reach it through the environment the compose file sets (see
//! [`super::compose`]). Its body lives next to this file as `entrypoint.sh`.

use super::PREAMBLE;

/// The body of the script, without the shebang and preamble.
const BODY: &str = include_str!("entrypoint.sh");

/// Where every service mounts the script (read-only).
pub const MOUNT_PATH: &str = "/etc/drr/entrypoint.sh";

/// Where every service mounts its node's directory of `compose/` (read-only).
pub const NODE_CONFIG_DIR: &str = "/etc/drr/node";

/// The complete `compose/entrypoint.sh`.
pub fn entrypoint_sh() -> String {
    format!("#!/bin/sh\n# {PREAMBLE}\n#\n{BODY}")
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
}
