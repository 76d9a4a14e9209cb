//! Who may connect to a link that listens beyond loopback.
//!
//! On the compose backend a replica's replication link must listen where
//! containers reach the host (Docker's bridge address), not on 127.0.0.1.
//! Such a link admits only the host itself (any of its addresses: a
//! connection from the host to its bridge address may come from its
//! `eth0` address) and the containers on this host's Docker bridges
//! (interfaces `docker0` and `br-*`), so the primary's port, published on
//! loopback only, is not opened to other machines through the proxy.

use std::net::IpAddr;

use ipnet::IpNet;

/// Which peers a link accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Every peer that reaches the listener (it listens on the spec's
    /// address, as the nodes do).
    Any,
    /// This host's own addresses and the subnets of its Docker bridges.
    DockerBridges,
}

impl Admit {
    /// Whether `peer` may connect; asks the kernel for this host's
    /// addresses only when it has to.
    pub fn allows(self, peer: IpAddr) -> bool {
        match self {
            Admit::Any => true,
            Admit::DockerBridges => {
                let peer = peer.to_canonical();
                peer.is_loopback() || Interfaces::now().admit(peer)
            }
        }
    }
}

/// Whether `address` is one of this host's interface addresses now.
pub fn is_own_address(address: IpAddr) -> bool {
    Interfaces::now().own.contains(&address.to_canonical())
}

/// This host's addresses and its Docker bridges' subnets.
#[derive(Debug, Default)]
struct Interfaces {
    own: Vec<IpAddr>,
    bridges: Vec<IpNet>,
}

impl Interfaces {
    /// As the kernel says now (networks come and go with compose projects).
    fn now() -> Interfaces {
        let mut found = Interfaces::default();
        let Ok(addresses) = nix::ifaddrs::getifaddrs() else {
            return found;
        };
        for entry in addresses {
            let Some(net) = subnet(entry.address.as_ref(), entry.netmask.as_ref()) else {
                continue;
            };
            found.own.push(net.addr());
            if is_docker_bridge(&entry.interface_name) {
                found.bridges.push(net.trunc());
            }
        }
        found
    }

    /// Whether `peer` is one of the host's addresses or on a bridge.
    fn admit(&self, peer: IpAddr) -> bool {
        self.own.contains(&peer) || self.bridges.iter().any(|net| net.contains(&peer))
    }
}

/// An interface's address with its netmask.
fn subnet(
    address: Option<&nix::sys::socket::SockaddrStorage>,
    mask: Option<&nix::sys::socket::SockaddrStorage>,
) -> Option<IpNet> {
    let (address, mask) = (address?, mask?);
    if let (Some(address), Some(mask)) = (address.as_sockaddr_in(), mask.as_sockaddr_in()) {
        return IpNet::with_netmask(address.ip().into(), mask.ip().into()).ok();
    }
    let (address, mask) = (address.as_sockaddr_in6()?, mask.as_sockaddr_in6()?);
    IpNet::with_netmask(address.ip().into(), mask.ip().into()).ok()
}

/// Whether an interface is one of Docker's bridges.
fn is_docker_bridge(interface: &str) -> bool {
    interface == "docker0" || interface.starts_with("br-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hosts_addresses_and_peers_on_its_bridges_are_in() {
        let host = Interfaces {
            own: vec!["192.0.2.2".parse().unwrap(), "172.17.0.1".parse().unwrap()],
            bridges: vec!["172.17.0.0/16".parse().unwrap()],
        };
        assert!(host.admit("172.17.0.3".parse().unwrap()), "a container");
        assert!(host.admit("192.0.2.2".parse().unwrap()), "the host itself");
        assert!(!host.admit("192.0.2.3".parse().unwrap()), "a neighbour");
        assert!(!host.admit("172.18.0.3".parse().unwrap()), "another subnet");
    }

    #[test]
    fn docker_bridges_are_docker0_and_br_interfaces() {
        assert!(is_docker_bridge("docker0"));
        assert!(is_docker_bridge("br-3f2a9c1d0e4b"));
        assert!(!is_docker_bridge("eth0"));
        assert!(!is_docker_bridge("lo"));
    }

    #[test]
    fn loopback_is_always_in_and_any_admits_all() {
        assert!(Admit::DockerBridges.allows("127.0.0.1".parse().unwrap()));
        assert!(Admit::DockerBridges.allows("::1".parse().unwrap()));
        assert!(Admit::Any.allows("203.0.113.9".parse().unwrap()));
        // No interface here has that documentation address.
        assert!(!Admit::DockerBridges.allows("203.0.113.9".parse().unwrap()));
        assert!(is_own_address("127.0.0.1".parse().unwrap()));
        assert!(!is_own_address("203.0.113.9".parse().unwrap()));
    }
}
