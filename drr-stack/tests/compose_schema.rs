//! The generated `docker-compose.yaml` is a valid compose file: checked
//! against the Compose Specification JSON schema, which CI provides at
//! `../shared/compose-spec.json` next to the checkout, or where that is
//! absent by the real compose tool (`docker compose config -q`). With
//! neither it fails; `cargo xtask test` reports it as skipped there
//! ([`COMPOSE_CHECKER`]).

mod requires_compose_checker {
    use std::net::Ipv6Addr;
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use drr_stack::compose::Tool;
    use drr_stack::render::compose::docker_compose_yaml;
    use drr_stack::spec::{Replica, default_spec};
    use drr_stack::testing::{COMPOSE_CHECKER, compose_schema_path};

    fn workspace() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
    }

    /// The default spec, and one with IPv6, three replicas and a delay of 0.
    fn generated_files() -> Vec<String> {
        [
            default_spec(),
            default_spec()
                .listen(Ipv6Addr::LOCALHOST)
                .replica(Replica::new("replica2", 5434).delay(Duration::from_secs(1)))
                .replica(Replica::new("replica3", 5435)),
        ]
        .iter()
        .map(docker_compose_yaml)
        .collect()
    }

    #[test]
    fn generated_compose_files_are_valid_compose_files() {
        let root = workspace();
        COMPOSE_CHECKER.require(&root);
        match std::fs::read_to_string(compose_schema_path(&root)) {
            Ok(schema) => validate_with_the_schema(&schema),
            Err(_) => validate_with_the_compose_tool(),
        }
    }

    fn validate_with_the_schema(text: &str) {
        let schema: serde_json::Value = serde_json::from_str(text).expect("the schema is JSON");
        let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
        let unknown_key = serde_json::json!({"services": {"primary": {"image": "x", "bogus": 1}}});
        assert!(
            !validator.is_valid(&unknown_key),
            "the schema must reject unknown service keys"
        );
        for yaml in generated_files() {
            let doc: serde_json::Value = serde_yaml::from_str(&yaml).expect("the YAML parses");
            let errors: Vec<String> = validator
                .iter_errors(&doc)
                .map(|e| format!("{} at {}", e, e.instance_path()))
                .collect();
            assert!(errors.is_empty(), "{yaml}\n{errors:#?}");
        }
    }

    fn validate_with_the_compose_tool() {
        let tool = Tool::detect().expect("COMPOSE_CHECKER found a compose tool");
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("docker-compose.yaml");
        std::fs::write(&file, "services:\n  primary:\n    image: x\n    bogus: 1\n")
            .expect("write");
        let config = || {
            tool.command()
                .args(["-f".into(), file.clone().into_os_string()])
                .args(["config", "-q"])
                .dir(dir.path())
        };
        // A generated file requires the generated passwords
        // (`${VAR:?...}`), which `cargo xtask` provides: placeholders here.
        let with_required = |yaml: &str| {
            required_variables(yaml)
                .into_iter()
                .fold(config(), |command, name| command.env(name, "placeholder"))
        };
        assert!(
            config().read().is_err(),
            "{} must reject unknown service keys",
            tool.describe()
        );
        for yaml in generated_files() {
            std::fs::write(&file, &yaml).expect("write");
            if let Err(e) = with_required(&yaml).read() {
                panic!(
                    "{} rejects the generated file: {e:#}\n{yaml}",
                    tool.describe()
                );
            }
        }
    }

    /// The variables a compose file requires (`${NAME:?message}`).
    fn required_variables(yaml: &str) -> Vec<String> {
        yaml.split("${")
            .skip(1)
            .filter_map(|rest| {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                rest[name.len()..].starts_with(":?").then_some(name)
            })
            .collect()
    }
}
