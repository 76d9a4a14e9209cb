//! Telling whether a port is free and, when it is not, who holds it.

use std::net::{IpAddr, TcpListener};

/// `None` when `port` on `address` can be bound; otherwise a description of
/// the holder, e.g. `postgres (pid 4242)`, or `another process`.
pub fn holder(address: IpAddr, port: u16) -> Option<String> {
    match TcpListener::bind((address, port)) {
        Ok(_) => None,
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            Some(find_listener(port).unwrap_or_else(|| "another process".to_owned()))
        }
        Err(e) => Some(format!("an error binding it ({e})")),
    }
}

/// Looks through /proc for the process listening on `port` (Linux only;
/// processes of other users may stay anonymous).
fn find_listener(port: u16) -> Option<String> {
    let inode = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .find_map(|table| {
            let text = std::fs::read_to_string(table).ok()?;
            text.lines().skip(1).find_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let local_port = fields.get(1)?.rsplit(':').next()?;
                let listening = fields.get(3) == Some(&"0A");
                (listening && u16::from_str_radix(local_port, 16).ok()? == port)
                    .then(|| fields.get(9).map(|s| s.to_string()))?
            })
        })?;
    let needle = format!("socket:[{inode}]");
    for proc_entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let pid = proc_entry.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(proc_entry.path().join("fd")) else {
            continue;
        };
        let holds = fds
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t.to_string_lossy() == needle));
        if holds {
            let comm = std::fs::read_to_string(proc_entry.path().join("comm")).unwrap_or_default();
            return Some(format!("{} (pid {pid})", comm.trim()));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn a_bound_port_names_its_holder() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let holder = holder(IpAddr::V4(Ipv4Addr::LOCALHOST), port).expect("port is taken");
        assert!(
            holder.contains(&format!("pid {}", std::process::id())),
            "{holder}"
        );
        drop(listener);
        assert_eq!(super::holder(IpAddr::V4(Ipv4Addr::LOCALHOST), port), None);
    }
}
