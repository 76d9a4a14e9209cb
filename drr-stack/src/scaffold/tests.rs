//! `drr init` on temporary repositories: what it plans, writes and refuses.

use super::*;

fn options(root: &Path, test_command: &[&str]) -> InitOptions {
    InitOptions {
        root: root.to_owned(),
        choices: Choices {
            source: Source::Git("https://example.invalid/drr".into()),
            name: "shop".into(),
            port: 15432,
            test_command: test_command.iter().map(|s| s.to_string()).collect(),
        },
    }
}

fn paths(actions: &[Action]) -> Vec<String> {
    actions.iter().map(ToString::to_string).collect()
}

#[test]
fn a_bare_repository_gets_every_file_and_a_second_run_keeps_them() {
    let root = tempfile::tempdir().unwrap();
    let options = options(root.path(), &["python", "manage.py", "test"]);
    let actions = plan(&options).unwrap();
    assert_eq!(
        paths(&actions),
        [
            "create xtask/Cargo.toml",
            "create xtask/src/main.rs",
            "create .cargo/config.toml",
            "create .gitignore",
        ]
    );
    apply(root.path(), &actions).unwrap();
    let main = fs::read_to_string(root.path().join("xtask/src/main.rs")).unwrap();
    assert!(
        main.contains(r#".test_command(TestCommand::new("python").args(["manage.py", "test"]))"#),
        "{main}"
    );
    assert!(
        main.contains(r#"Role::login("drr_user", "pass").createdb()"#),
        "{main}"
    );
    assert!(main.contains("Replica::new(\"replica1\", 15433)"), "{main}");
    let manifest = fs::read_to_string(root.path().join("xtask/Cargo.toml")).unwrap();
    assert!(manifest.contains(r#"drr-stack = { git = "https://example.invalid/drr" }"#));
    assert!(manifest.contains("name = \"shop-xtask\""), "{manifest}");
    let ignored = fs::read_to_string(root.path().join(".gitignore")).unwrap();
    assert!(
        ignored.contains("/.drr/\n/target/\n/xtask/target/\n"),
        "{ignored}"
    );

    let again = plan(&options).unwrap();
    assert!(
        again.iter().all(|a| matches!(a, Action::Keep { .. })),
        "{again:?}"
    );
}

#[test]
fn existing_files_are_appended_to_never_overwritten() {
    let root = tempfile::tempdir().unwrap();
    fs::write(root.path().join("Cargo.toml"), "[workspace]\n").unwrap();
    fs::write(root.path().join(".gitignore"), "/target").unwrap();
    fs::create_dir(root.path().join(".cargo")).unwrap();
    fs::write(
        root.path().join(".cargo/config.toml"),
        "[build]\njobs = 2\n",
    )
    .unwrap();
    let actions = plan(&options(root.path(), &[])).unwrap();
    apply(root.path(), &actions).unwrap();
    let ignored = fs::read_to_string(root.path().join(".gitignore")).unwrap();
    assert!(ignored.starts_with("/target\n# drr"), "{ignored}");
    assert!(!ignored.contains("\n/target/\n"), "{ignored}");
    let config = fs::read_to_string(root.path().join(".cargo/config.toml")).unwrap();
    assert!(config.starts_with("[build]\njobs = 2\n"), "{config}");
    assert!(
        config.ends_with(&format!("[alias]\n{}\n", templates::ALIAS)),
        "{config}"
    );
    let main = fs::read_to_string(root.path().join("xtask/src/main.rs")).unwrap();
    assert!(
        !main.contains("TestCommand"),
        "a Rust workspace runs its own tests:\n{main}"
    );
}

#[test]
fn what_is_in_the_way_stops_the_plan_before_anything_is_written() {
    let root = tempfile::tempdir().unwrap();
    let err = plan(&options(root.path(), &[])).unwrap_err().to_string();
    assert!(err.contains("drr init -- python manage.py test"), "{err}");

    fs::create_dir_all(root.path().join("xtask")).unwrap();
    fs::write(
        root.path().join("xtask/Cargo.toml"),
        "[package]\nname = \"xtask\"\n",
    )
    .unwrap();
    let err = plan(&options(root.path(), &["npm", "test"]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("does not depend on drr-stack"), "{err}");

    fs::remove_dir_all(root.path().join("xtask")).unwrap();
    fs::create_dir(root.path().join(".cargo")).unwrap();
    fs::write(
        root.path().join(".cargo/config.toml"),
        "[alias]\nb = \"build\"\n",
    )
    .unwrap();
    let err = plan(&options(root.path(), &["npm", "test"]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("add the line"), "{err}");
    assert!(!root.path().join("xtask").exists());
    assert!(!root.path().join(".gitignore").exists());
}

#[test]
fn stack_names_come_from_the_directory() {
    assert_eq!(stack_name(Path::new("/src/My Shop")), "my_shop");
    assert_eq!(stack_name(Path::new("/src/2fast")), "fast");
    assert_eq!(stack_name(Path::new("/")), "drr");
}
