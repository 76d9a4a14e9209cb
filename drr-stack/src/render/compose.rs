//! `docker-compose.yaml`: one service per node, modelled as typed structs and
//! serialized with serde, so keys come out in a fixed order.
//!
//! Every service runs drr's own [`entrypoint`](super::entrypoint) as the
//! `postgres` user, never the image's entrypoint, so the same file works with
//! the official `postgres` image and with a plain Debian root filesystem that
//! has the `postgresql-NN` package. Generated passwords are never rendered:
//! the file interpolates them from the environment `cargo xtask` provides.
//!
//! The file works with Compose v1 (`docker-compose` 1.27+) and v2 (`docker
//! compose`): it has no top-level `name` (v1 rejects it), so the project name
//! comes from `-p`, which the compose backend always passes. Every service and
//! volume carries the label [`STACK_LABEL`] so that leftovers can be found.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Serialize;
use serde::ser::SerializeMap as _;

use super::PREAMBLE;
use super::entrypoint::{MOUNT_PATH, NODE_CONFIG_DIR};
use super::postgres;
use crate::spec::{Member, StackSpec};

/// Label on every service and volume: its value is the stack name.
pub const STACK_LABEL: &str = "dev.drr.stack";

/// Label on every volume: the part of its node in the stack (`primary` or
/// `replica`), so that `up` never deletes a primary's data unasked.
pub const ROLE_LABEL: &str = "dev.drr.role";

/// Environment variable that replaces the spec's image at `compose up` time
/// (e.g. `DRR_IMAGE=drr/postgres:15` after `cargo xtask image`).
pub const IMAGE_ENV: &str = "DRR_IMAGE";

/// Where each service's named volume is mounted.
pub const VOLUME_MOUNT: &str = "/var/lib/postgresql";

/// The name under which a replica container reaches the host, where the
/// fault proxy serves replication links: Docker maps it to the host's
/// address on its default bridge (`host-gateway`).
pub const HOST_GATEWAY: &str = "host.docker.internal";

/// `PGDATA` inside every container: a subdirectory of the named volume
/// (`/var/lib/postgresql/data` is an anonymous volume of the official image).
pub const PGDATA: &str = "/var/lib/postgresql/drr-data";

/// The complete `docker-compose.yaml` of `spec`.
pub fn docker_compose_yaml(spec: &StackSpec) -> String {
    let file = ComposeFile {
        services: InOrder(
            spec.members()
                .map(|m| (m.node().name.clone(), service(spec, m)))
                .collect(),
        ),
        volumes: InOrder(
            spec.members()
                .map(|m| {
                    let mut labels = labels(spec);
                    labels.insert(ROLE_LABEL, m.role_name().to_owned());
                    (volume_name(&m.node().name), Volume { labels })
                })
                .collect(),
        ),
    };
    let yaml = serde_yaml::to_string(&file)
        .expect("the compose model has only strings, numbers, lists and maps");
    format!("# {PREAMBLE}\n{yaml}")
}

/// Suffix of the named volume that holds a node's data directory.
const VOLUME_SUFFIX: &str = "-data";

/// The named volume that holds a node's data directory.
pub fn volume_name(node: &str) -> String {
    format!("{node}{VOLUME_SUFFIX}")
}

/// The node whose data [`volume_name`] names, if it names one.
pub fn node_of_volume(volume: &str) -> Option<&str> {
    volume.strip_suffix(VOLUME_SUFFIX).filter(|n| !n.is_empty())
}

fn service(spec: &StackSpec, member: Member<'_>) -> Service {
    let node = member.node();
    let port = node.port.to_string();
    let bin = postgres::server_bindir(spec.postgres_major);
    let mut environment = BTreeMap::from([
        ("DRR_NODE", node.name.clone()),
        ("DRR_NODE_ROLE", member.role_name().to_owned()),
        ("DRR_PG_BINDIR", bin.clone()),
        ("DRR_PORT", port.clone()),
        (
            "DRR_REPLICATION_PASSWORD",
            secret("DRR_REPLICATION_PASSWORD"),
        ),
        ("PGDATA", PGDATA.to_owned()),
    ]);
    let mut depends_on = BTreeMap::new();
    let mut extra_hosts = Vec::new();
    match member {
        Member::Primary(_) => {
            environment.insert("DRR_SUPERUSER_PASSWORD", secret("DRR_SUPERUSER_PASSWORD"));
        }
        Member::Replica(replica) => {
            // A replication link goes through the fault proxy on the host.
            let (host, port) = match replica.node.links.replication {
                Some(link) => {
                    extra_hosts.push(format!("{HOST_GATEWAY}:host-gateway"));
                    (HOST_GATEWAY.to_owned(), link)
                }
                None => (spec.primary.name.clone(), spec.primary.port),
            };
            environment.insert("DRR_PRIMARY_HOST", host);
            environment.insert("DRR_PRIMARY_PORT", port.to_string());
            environment.insert("DRR_REPLICATION_ROLE", spec.replication_role.clone());
            depends_on.insert(
                spec.primary.name.clone(),
                DependsOn {
                    condition: "service_healthy",
                },
            );
        }
    }
    Service {
        image: format!("${{{IMAGE_ENV}:-{}}}", spec.image),
        labels: labels(spec),
        user: "postgres",
        entrypoint: vec!["sh".to_owned(), MOUNT_PATH.to_owned()],
        environment,
        ports: vec![format!("{}:{port}:{port}", host_ip(spec.listen))],
        volumes: vec![
            format!("{}:{VOLUME_MOUNT}", volume_name(&node.name)),
            format!("./{}:{NODE_CONFIG_DIR}:ro", node.name),
            format!("./entrypoint.sh:{MOUNT_PATH}:ro"),
        ],
        healthcheck: Healthcheck {
            test: vec![
                "CMD".to_owned(),
                format!("{bin}/pg_isready"),
                "-h".to_owned(),
                "127.0.0.1".to_owned(),
                "-p".to_owned(),
                port,
                "-U".to_owned(),
                "postgres".to_owned(),
            ],
            interval: "1s",
            timeout: "5s",
            retries: 10,
            start_period: "120s",
        },
        depends_on,
        extra_hosts,
        stop_signal: "SIGINT",
        restart: "unless-stopped",
    }
}

/// The labels of every service and volume of `spec`.
fn labels(spec: &StackSpec) -> BTreeMap<&'static str, String> {
    BTreeMap::from([(STACK_LABEL, spec.name.clone())])
}

/// `${NAME:?...}`: compose refuses to start without the variable set.
fn secret(name: &str) -> String {
    format!(
        "${{{name}:?run the stack through cargo xtask, which provides the generated passwords}}"
    )
}

/// The host part of a short-syntax port: IPv6 addresses in brackets.
fn host_ip(listen: IpAddr) -> String {
    match listen {
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
    }
}

/// The top level of the file.
#[derive(Serialize)]
struct ComposeFile {
    services: InOrder<Service>,
    volumes: InOrder<Volume>,
}

/// One node's container.
#[derive(Serialize)]
struct Service {
    image: String,
    labels: BTreeMap<&'static str, String>,
    user: &'static str,
    entrypoint: Vec<String>,
    environment: BTreeMap<&'static str, String>,
    ports: Vec<String>,
    volumes: Vec<String>,
    healthcheck: Healthcheck,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    depends_on: BTreeMap<String, DependsOn>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    extra_hosts: Vec<String>,
    stop_signal: &'static str,
    restart: &'static str,
}

#[derive(Serialize)]
struct Healthcheck {
    test: Vec<String>,
    interval: &'static str,
    timeout: &'static str,
    retries: u32,
    start_period: &'static str,
}

#[derive(Serialize)]
struct DependsOn {
    condition: &'static str,
}

/// A named volume with the engine's defaults, labelled with the stack.
#[derive(Serialize)]
struct Volume {
    labels: BTreeMap<&'static str, String>,
}

/// A map serialized in insertion order: services and volumes follow the
/// spec (primary first) rather than the alphabet.
struct InOrder<V>(Vec<(String, V)>);

impl<V: Serialize> Serialize for InOrder<V> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in &self.0 {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;
    use std::time::Duration;

    use super::*;
    use crate::spec::{Replica, default_spec};

    fn parse(yaml: &str) -> serde_json::Value {
        serde_yaml::from_str(yaml).expect("generated YAML parses")
    }

    #[test]
    fn a_volume_name_leads_back_to_its_node() {
        assert_eq!(node_of_volume(&volume_name("replica2")), Some("replica2"));
        assert_eq!(node_of_volume("-data"), None);
        assert_eq!(node_of_volume("cache"), None);
    }

    #[test]
    fn default_spec_snapshot() {
        insta::assert_snapshot!(docker_compose_yaml(&default_spec()));
    }

    #[test]
    fn ipv6_three_nodes_snapshot() {
        let spec = default_spec()
            .listen(Ipv6Addr::LOCALHOST)
            .replica(Replica::new("replica2", 5434).delay(Duration::from_secs(1)));
        insta::assert_snapshot!(docker_compose_yaml(&spec));
    }

    #[test]
    fn replicas_wait_for_a_healthy_primary() {
        let doc = parse(&docker_compose_yaml(&default_spec()));
        let services = &doc["services"];
        assert_eq!(
            services["replica1"]["depends_on"]["primary"]["condition"],
            "service_healthy"
        );
        assert!(services["primary"].get("depends_on").is_none());
        assert_eq!(
            services["primary"]["healthcheck"]["test"][1],
            "/usr/lib/postgresql/15/bin/pg_isready"
        );
        assert_eq!(services["replica1"]["ports"][0], "127.0.0.1:5433:5433");
        assert_eq!(
            services["replica1"]["environment"]["DRR_PRIMARY_HOST"],
            "primary"
        );
    }

    #[test]
    fn a_replication_link_streams_through_the_proxy_on_the_host() {
        let mut spec = default_spec();
        spec.replicas[0] = spec.replicas[0].clone().replication_link(6434);
        let doc = parse(&docker_compose_yaml(&spec));
        let replica = &doc["services"]["replica1"];
        assert_eq!(replica["environment"]["DRR_PRIMARY_HOST"], HOST_GATEWAY);
        assert_eq!(replica["environment"]["DRR_PRIMARY_PORT"], "6434");
        assert_eq!(
            replica["extra_hosts"][0],
            format!("{HOST_GATEWAY}:host-gateway")
        );
        let plain = parse(&docker_compose_yaml(&default_spec()));
        assert!(plain["services"]["replica1"].get("extra_hosts").is_none());
    }

    #[test]
    fn passwords_are_interpolated_never_rendered() {
        let doc = parse(&docker_compose_yaml(&default_spec()));
        let env = &doc["services"]["primary"]["environment"];
        for name in ["DRR_SUPERUSER_PASSWORD", "DRR_REPLICATION_PASSWORD"] {
            let value = env[name].as_str().expect("a string");
            assert!(value.starts_with(&format!("${{{name}:?")), "{value}");
        }
        let replica = &doc["services"]["replica1"]["environment"];
        assert!(replica.get("DRR_SUPERUSER_PASSWORD").is_none());
    }

    #[test]
    fn every_service_and_volume_carries_the_stack_label() {
        let doc = parse(&docker_compose_yaml(&default_spec()));
        assert!(doc.get("name").is_none(), "compose v1 rejects `name`");
        for section in ["services", "volumes"] {
            for (key, item) in doc[section].as_object().unwrap() {
                assert_eq!(item["labels"][STACK_LABEL], "drr", "{section}.{key}");
            }
        }
    }

    #[test]
    fn the_image_can_be_replaced_from_the_environment() {
        let doc = parse(&docker_compose_yaml(&default_spec()));
        assert_eq!(
            doc["services"]["replica1"]["image"],
            "${DRR_IMAGE:-postgres:15.15-bookworm}"
        );
    }

    #[test]
    fn configs_are_mounted_read_only() {
        let doc = parse(&docker_compose_yaml(&default_spec()));
        let volumes = doc["services"]["replica1"]["volumes"].as_array().unwrap();
        assert_eq!(volumes[0], "replica1-data:/var/lib/postgresql");
        assert!(
            volumes[1..]
                .iter()
                .all(|v| v.as_str().unwrap().ends_with(":ro"))
        );
    }
}
