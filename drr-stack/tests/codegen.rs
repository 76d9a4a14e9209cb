//! `cargo xtask gen` on a temporary `compose/`: reproducible output, the
//! add/remove round trip of a replica, `--check` reports, stale files.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::Duration;

use drr_stack::codegen::{Drift, DriftKind, Mode, sync};
use drr_stack::render::{self, PREAMBLE};
use drr_stack::spec::{Replica, StackSpec, default_spec};

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(dir: &Path, prefix: &str, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
            if entry.file_type().unwrap().is_dir() {
                walk(&entry.path(), &format!("{name}/"), out);
            } else {
                out.insert(name, fs::read(entry.path()).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, "", &mut out);
    out
}

fn gen_into(dir: &Path, spec: &StackSpec, mode: Mode) -> Vec<Drift> {
    sync(dir, &render::compose_dir(spec), mode).unwrap()
}

fn summary(drifts: &[Drift]) -> Vec<String> {
    drifts.iter().map(|d| d.to_string()).collect()
}

fn with_replica2() -> StackSpec {
    default_spec().replica(Replica::new("replica2", 5434).delay(Duration::from_millis(1000)))
}

#[test]
fn layout_of_the_default_spec() {
    let paths: Vec<String> = render::compose_dir(&default_spec())
        .into_iter()
        .map(|f| f.path)
        .collect();
    assert_eq!(
        paths,
        [
            "docker-compose.yaml",
            "entrypoint.sh",
            "primary/bootstrap.sql",
            "primary/pg_hba.conf",
            "primary/postgresql.conf",
            "replica1/pg_hba.conf",
            "replica1/postgresql.conf",
        ]
    );
}

#[test]
fn every_file_carries_the_preamble_near_the_top() {
    for file in render::compose_dir(&with_replica2()) {
        let head: Vec<&str> = file.contents.lines().take(2).collect();
        assert!(
            head.iter().any(|l| l.ends_with(PREAMBLE)),
            "{} lacks the preamble",
            file.path
        );
    }
}

#[test]
fn rendering_is_deterministic() {
    assert_eq!(
        render::compose_dir(&with_replica2()),
        render::compose_dir(&with_replica2())
    );
}

#[test]
fn adding_and_removing_a_replica_round_trips_byte_for_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("compose");

    let created = gen_into(&dir, &default_spec(), Mode::Write);
    assert_eq!(created.len(), 7);
    assert!(created.iter().all(|d| d.kind == DriftKind::Missing));
    let before = snapshot(&dir);
    assert!(gen_into(&dir, &default_spec(), Mode::Write).is_empty());

    let added = gen_into(&dir, &with_replica2(), Mode::Write);
    let paths: Vec<&str> = added.iter().map(|d| d.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "docker-compose.yaml",
            "replica2/pg_hba.conf",
            "replica2/postgresql.conf"
        ]
    );
    assert!(matches!(added[0].kind, DriftKind::Differs { .. }));
    let after = snapshot(&dir);
    let changed: Vec<&String> = after
        .keys()
        .filter(|path| before.get(*path) != after.get(*path))
        .collect();
    assert_eq!(changed, paths);
    let compose = String::from_utf8(after["docker-compose.yaml"].clone()).unwrap();
    assert!(compose.contains("\n  replica2:\n"));
    assert!(compose.contains("\n  replica2-data:\n    labels:\n"));
    let conf = String::from_utf8(after["replica2/postgresql.conf"].clone()).unwrap();
    assert!(conf.contains("\nrecovery_min_apply_delay = '1000ms'\n"));

    let removed = gen_into(&dir, &default_spec(), Mode::Write);
    assert_eq!(
        summary(&removed[1..]),
        [
            "compose/replica2/pg_hba.conf: stale, not in the spec",
            "compose/replica2/postgresql.conf: stale, not in the spec",
        ]
    );
    assert_eq!(snapshot(&dir), before);
    assert!(!dir.join("replica2").exists());
}

#[test]
fn check_reports_every_drift_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("compose");
    gen_into(&dir, &with_replica2(), Mode::Write);
    let conf = dir.join("replica1/postgresql.conf");
    let edited = fs::read_to_string(&conf)
        .unwrap()
        .replace("port = '5433'", "port = '6000'");
    fs::write(&conf, edited).unwrap();
    fs::remove_file(dir.join("primary/pg_hba.conf")).unwrap();
    fs::write(dir.join("notes.txt"), "mine").unwrap();
    let before = snapshot(&dir);

    let drifts = gen_into(&dir, &default_spec(), Mode::Check);
    let report = summary(&drifts);
    assert_eq!(report.len(), 6, "{report:#?}");
    assert!(report[0].starts_with("compose/docker-compose.yaml: differs (line "));
    assert_eq!(report[1], "compose/primary/pg_hba.conf: missing");
    assert!(
        report[2].starts_with(
            "compose/replica1/postgresql.conf: differs (line 5: expected \"port = '5433'\", found \"port = '6000'\")"
        ),
        "{}",
        report[2]
    );
    assert_eq!(
        report[3..],
        [
            "compose/notes.txt: stale, not in the spec",
            "compose/replica2/pg_hba.conf: stale, not in the spec",
            "compose/replica2/postgresql.conf: stale, not in the spec",
        ]
    );
    assert_eq!(snapshot(&dir), before, "--check must not change anything");

    gen_into(&dir, &default_spec(), Mode::Write);
    assert!(gen_into(&dir, &default_spec(), Mode::Check).is_empty());
}

#[test]
fn check_of_a_missing_directory_lists_every_file_as_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("compose");
    let drifts = gen_into(&dir, &default_spec(), Mode::Check);
    assert_eq!(drifts.len(), 7);
    assert!(drifts.iter().all(|d| d.kind == DriftKind::Missing));
    assert!(!dir.exists());
}

#[test]
fn leftover_temporary_files_and_empty_directories_are_cleaned_up() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("compose");
    fs::create_dir_all(dir.join("gone/deeper")).unwrap();
    fs::create_dir_all(dir.join("primary")).unwrap();
    fs::write(dir.join("primary/.pg_hba.conf.drr-tmp"), "half").unwrap();
    gen_into(&dir, &default_spec(), Mode::Write);
    assert!(!dir.join("gone").exists());
    assert!(!dir.join("primary/.pg_hba.conf.drr-tmp").exists());
    assert_eq!(snapshot(&dir).len(), 7);
}

#[test]
fn a_spec_without_compose_output_generates_and_checks_nothing() {
    let root = tempfile::tempdir().unwrap();
    let native_only = default_spec().without_compose();
    let project = drr_stack::project::Project::new(native_only.clone(), root.path()).unwrap();
    assert_eq!(
        drr_stack::codegen::run(&project, false).unwrap(),
        std::process::ExitCode::SUCCESS
    );
    assert!(!project.compose_dir().exists(), "gen wrote compose/");
    // A compose/ of the project's own is not drr's to check.
    fs::create_dir(project.compose_dir()).unwrap();
    fs::write(project.compose_dir().join("theirs.yaml"), "x").unwrap();
    assert_eq!(drr_stack::codegen::check(&project), Ok(()));
    assert!(project.compose_dir().join("theirs.yaml").is_file());

    let refused = drr_stack::stack::Stack::open(&project, drr_stack::spec::Backend::Compose)
        .expect_err("no compose backend without compose files");
    assert!(refused.to_string().contains("without_compose"), "{refused}");
    let compose_default = native_only.backend(drr_stack::spec::Backend::Compose);
    let problems = compose_default.validate().unwrap_err();
    assert_eq!(problems.problems()[0].field, "backend", "{problems}");
}
