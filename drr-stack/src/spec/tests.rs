//! Defaults and one test per validation rule.

use std::time::Duration;

use super::*;

/// The fields of every problem `spec` has.
fn problems(spec: StackSpec) -> Vec<String> {
    match spec.validate() {
        Ok(()) => Vec::new(),
        Err(e) => e.problems().iter().map(|p| p.field.clone()).collect(),
    }
}

#[test]
fn default_spec_matches_the_original_setup() {
    let spec = default_spec();
    assert_eq!(spec.validate(), Ok(()));
    assert_eq!(spec.postgres_major, 15);
    assert_eq!(
        (spec.primary.name.as_str(), spec.primary.port),
        ("primary", 5432)
    );
    let replica = &spec.replicas[0];
    assert_eq!(
        (replica.node.name.as_str(), replica.node.port),
        ("replica1", 5433)
    );
    assert_eq!(replica.delay, Duration::from_millis(3000));
    let (role, db) = spec.login().expect("default spec has a login");
    assert_eq!(
        (role.name.as_str(), role.password.as_str()),
        ("drr_user", "pass")
    );
    assert_eq!(role.attributes, vec![RoleAttribute::CreateDb]);
    assert_eq!(db.map(|d| d.name.as_str()), Some("drr"));
    assert_eq!(spec.listen.to_string(), "127.0.0.1");
    assert_eq!(spec.image, "postgres:15.15-bookworm");
    assert_eq!(spec.backend, Backend::Native);
}

#[test]
fn adding_a_replica_is_one_line() {
    let spec = default_spec().replica(Replica::new("replica2", 5434).delay(Duration::from_secs(1)));
    assert_eq!(spec.validate(), Ok(()));
    let names: Vec<_> = spec.nodes().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["primary", "replica1", "replica2"]);
}

#[test]
fn duplicate_node_name() {
    let spec = default_spec().replica(Replica::new("replica1", 5434));
    assert_eq!(problems(spec), ["replicas[1].name"]);
}

#[test]
fn invalid_node_names() {
    for bad in [
        "Replica",
        "2nd",
        "re-plica",
        "",
        "pg_replica",
        &"r".repeat(64),
    ] {
        let spec = default_spec().replica(Replica::new(bad, 5434));
        assert_eq!(problems(spec), ["replicas[1].name"], "{bad:?}");
    }
}

#[test]
fn duplicate_port() {
    let spec = default_spec().replica(Replica::new("replica2", 5433));
    let err = spec.validate().unwrap_err();
    assert_eq!(err.problems()[0].field, "replicas[1].port");
    assert!(
        err.to_string()
            .contains("port 5433 is already used by node `replica1`"),
        "{err}"
    );
}

#[test]
fn port_zero() {
    let spec = default_spec().replica(Replica::new("replica2", 0));
    assert_eq!(problems(spec), ["replicas[1].port"]);
}

#[test]
fn privileged_port_needs_permission() {
    let spec = default_spec().primary(Node::new("primary", 543));
    assert_eq!(problems(spec.clone()), ["primary.port"]);
    assert_eq!(
        problems(spec.allow_privileged_ports()),
        Vec::<String>::new()
    );
}

#[test]
fn delay_above_24h() {
    let day = Duration::from_secs(24 * 3600);
    assert_eq!(
        problems(default_spec().replica(Replica::new("r2", 5434).delay(day))),
        Vec::<String>::new()
    );
    let spec =
        default_spec().replica(Replica::new("r2", 5434).delay(day + Duration::from_millis(1)));
    assert_eq!(problems(spec), ["replicas[1].delay"]);
}

#[test]
fn database_owner_must_be_declared() {
    let spec = default_spec().database("other", "nobody");
    let err = spec.validate().unwrap_err();
    assert_eq!(err.problems()[0].field, "databases[1].owner");
    assert!(err.problems()[0].fix.contains("Role::login(\"nobody\""));
}

#[test]
fn unknown_postgres_version() {
    let mut spec = default_spec();
    spec.postgres_major = 14;
    assert_eq!(problems(spec), ["postgres_major"]);
}

#[test]
fn duplicate_role_and_database() {
    let spec = default_spec()
        .role(Role::login("drr_user", "x"))
        .database("drr", "drr_user");
    assert_eq!(problems(spec), ["roles[1].name", "databases[1].name"]);
}

#[test]
fn reserved_names() {
    let spec = default_spec()
        .role(Role::login("postgres", "x"))
        .database("template1", "drr_user");
    assert_eq!(problems(spec), ["roles[1].name", "databases[1].name"]);
}

#[test]
fn empty_password() {
    assert_eq!(
        problems(default_spec().role(Role::login("other", ""))),
        ["roles[1].password"]
    );
}

#[test]
fn managed_and_malformed_settings() {
    let spec = default_spec().primary(
        Node::new("primary", 5432)
            .setting("port", "1")
            .setting("Work Mem", "1")
            .setting("work_mem", "a\nb"),
    );
    assert_eq!(
        problems(spec),
        [
            "primary.settings.Work Mem",
            "primary.settings.port",
            "primary.settings.work_mem"
        ]
    );
}

#[test]
fn invalid_stack_name_and_image() {
    let mut spec = default_spec().image("postgres 15");
    spec.name = "My Stack".into();
    assert_eq!(problems(spec), ["name", "image"]);
}

#[test]
fn all_problems_are_reported_at_once() {
    let spec = default_spec()
        .replica(Replica::new("replica1", 5433))
        .database("x", "nobody");
    let err = spec.validate().unwrap_err();
    assert_eq!(err.problems().len(), 3, "{err}");
    assert!(
        err.to_string()
            .starts_with("the stack spec is invalid:\n  - ")
    );
}

#[test]
fn backend_parses_and_prints() {
    assert_eq!("compose".parse::<Backend>(), Ok(Backend::Compose));
    assert_eq!(Backend::Native.to_string(), "native");
    assert!(
        "docker"
            .parse::<Backend>()
            .unwrap_err()
            .contains("use `native`")
    );
}

#[test]
fn delays_finer_than_a_millisecond_are_refused_not_truncated() {
    let spec = StackSpec::new("s", 15)
        .replica(Replica::new("r1", 5433).delay(Duration::from_micros(1500)))
        .replica(Replica::new("r2", 5434).delay(Duration::from_millis(2)));
    assert_eq!(problems(spec), ["replicas[0].delay"]);
}

#[test]
fn a_replica_may_not_lower_what_a_hot_standby_needs() {
    let spec = default_spec();
    let lower = spec
        .clone()
        .replica(Replica::new("replica2", 5434).setting("max_connections", "100"));
    assert_eq!(problems(lower), ["replica2.settings.max_connections"]);
    let primary_raised = StackSpec {
        primary: spec
            .primary
            .clone()
            .setting("max_locks_per_transaction", "128"),
        ..spec.clone()
    };
    let replica_lower = primary_raised
        .clone()
        .replica(Replica::new("replica2", 5434).setting("max_locks_per_transaction", "100"));
    assert_eq!(
        problems(replica_lower),
        ["replica2.settings.max_locks_per_transaction"]
    );
    assert_eq!(primary_raised.validate(), Ok(()));
    let not_a_number =
        spec.replica(Replica::new("replica2", 5434).setting("max_wal_senders", "lots"));
    assert_eq!(
        problems(not_a_number),
        ["replica2.settings.max_wal_senders"]
    );
}

#[test]
fn the_slot_wal_limit_holds_at_least_a_segment() {
    assert_eq!(
        problems(default_spec().slot_wal_limit_mb(8)),
        ["slot_wal_limit_mb"]
    );
    assert_eq!(default_spec().slot_wal_limit_mb(16).validate(), Ok(()));
    assert_eq!(default_spec().unlimited_slot_wal().validate(), Ok(()));
}

#[test]
fn after_a_failover_the_promoted_replica_is_the_primary_and_delays_stay_with_their_nodes() {
    let spec = default_spec().replica(Replica::new("replica2", 5434).delay(Duration::from_secs(1)));
    let runtime = spec.with_primary("replica2").unwrap();
    assert_eq!(runtime.primary.name, "replica2");
    let replicas: Vec<(&str, Duration)> = runtime
        .replicas
        .iter()
        .map(|r| (r.node.name.as_str(), r.delay))
        .collect();
    assert_eq!(
        replicas,
        [
            ("replica1", Duration::from_millis(3000)),
            ("primary", Duration::ZERO)
        ]
    );
    assert_eq!(runtime.validate(), Ok(()));
    assert_eq!(spec.with_primary("primary").unwrap(), spec);
    let err = spec.with_primary("nope").unwrap_err();
    assert_eq!(err.known, ["primary", "replica1", "replica2"]);
}

#[test]
fn an_external_cluster_names_hosts_and_variables_and_creates_nothing() {
    let external = External::new(
        "app",
        EnvCredentials::new("APP_USER", "APP_PASSWORD"),
        EnvCredentials::new("ADMIN_USER", "ADMIN_PASSWORD"),
    );
    let spec = StackSpec::new("staging", 15)
        .primary(Node::new("n1", 5432).host("db1.internal"))
        .replica(Replica::new("n2", 5432).host("db2.internal"))
        .external(external.clone());
    assert_eq!(spec.validate(), Ok(()));
    assert!(!spec.is_managed());
    assert_eq!(spec.node_host(&spec.primary), "db1.internal");
    let env = |var: &str| Some(format!("{var}-value"));
    let login = spec.login_credentials_from(&env).unwrap();
    assert_eq!(
        (
            login.user.as_str(),
            login.password.as_str(),
            login.database.as_str()
        ),
        ("APP_USER-value", "APP_PASSWORD-value", "app")
    );
    assert!(crate::render::compose_dir(&spec).is_empty());

    let with_roles = spec.clone().role(Role::login("x", "y"));
    assert_eq!(problems(with_roles), ["external"]);
    let mut bad_var = external;
    bad_var.admin.password_var = "not a var".into();
    assert_eq!(
        problems(spec.clone().external(bad_var)),
        ["external.admin.password_var"]
    );
    let managed_with_host = default_spec().primary(Node::new("primary", 5432).host("h"));
    assert_eq!(problems(managed_with_host), ["primary.host"]);
}
