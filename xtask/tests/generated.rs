//! Plain `cargo test` fails when `compose/` drifts from `xtask/src/spec.rs`:
//! the same check as `cargo xtask gen --check`.

use drr_stack::codegen;
use drr_stack::project::Project;

#[test]
fn compose_dir_matches_the_spec() {
    let project =
        Project::new(xtask::spec(), xtask::workspace_root()).unwrap_or_else(|e| panic!("{e}"));
    if let Err(report) = codegen::check(&project) {
        panic!("{report}");
    }
}
