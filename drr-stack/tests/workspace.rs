//! `cargo xtask down --all` stops every drr stack of a workspace (each
//! native state directory under `target/drr`, whichever spec made it) and
//! nothing else: a stack outside the workspace keeps running, and a
//! directory drr did not create is reported, not entered.

mod support;

use std::path::PathBuf;

use drr_stack::native::{Native, StateDir};
use drr_stack::progress::Progress;
use drr_stack::project::Project;
use drr_stack::spec::StackSpec;
use support::{TempStack, spec};

/// A temporary workspace whose stacks live where `up` puts them
/// (`<workspace>/target/drr/<stack>`); every one is stopped on drop.
struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    fn new() -> Workspace {
        assert!(
            std::env::var_os(drr_stack::native::STATE_DIR_ENV).is_none(),
            "unset {}: `down --all` stops that stack too",
            drr_stack::native::STATE_DIR_ENV
        );
        let dir = drr_stack::testing::scratch_dir("drr-workspace-").expect("a workspace");
        Workspace { dir }
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("target").join("drr")
    }

    /// A project of this workspace: `spec` named `name`.
    fn project(&self, name: &str, mut spec: StackSpec) -> Project {
        spec.name = name.to_owned();
        Project::new(spec, self.dir.path()).expect("valid spec")
    }

    /// The native stack of `project` in this workspace.
    fn native<'p>(&self, project: &'p Project) -> Native<'p> {
        let state = StateDir::at(
            self.home().join(&project.spec().name),
            self.home().join("cache"),
        );
        Native::with_state(project, state).expect("native backend")
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        let project = self.project("any", spec(&[]));
        let _ = drr_stack::stack::down_all(&project, &mut Progress::new(true));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_all_stops_every_stack_of_the_workspace_and_nothing_else() {
    let workspace = Workspace::new();
    let a = workspace.project("a", spec(&[0]));
    let b = workspace.project("b", spec(&[]));
    let mut progress = Progress::new(true);
    for project in [&a, &b] {
        workspace
            .native(project)
            .up(&mut progress)
            .await
            .expect("up");
    }
    assert_eq!(workspace.native(&a).pids().len(), 2);
    assert_eq!(workspace.native(&b).pids().len(), 1);
    let outsider = TempStack::up(spec(&[])).await;
    let outsider_pids = outsider.native().pids();
    // Looks like a stack, but drr did not create it.
    let stray = workspace.home().join("stray");
    std::fs::create_dir_all(stray.join("nodes")).unwrap();

    let err = drr_stack::stack::down_all(&a, &mut progress).unwrap_err();
    let err = format!("{err:#}");
    assert!(
        err.contains(&stray.display().to_string()) && err.contains("was not created by drr"),
        "{err}"
    );
    assert!(workspace.native(&a).pids().is_empty(), "stack a still runs");
    assert!(workspace.native(&b).pids().is_empty(), "stack b still runs");
    assert_eq!(
        outsider.native().pids(),
        outsider_pids,
        "outside the workspace"
    );
    outsider.admin("primary").await;

    std::fs::remove_dir_all(&stray).unwrap();
    drr_stack::stack::down_all(&b, &mut progress).expect("nothing left to refuse");
    workspace
        .native(&a)
        .up(&mut progress)
        .await
        .expect("a comes back");
}
