//! `cargo xtask down --all`, native half: stop every native stack of a
//! workspace ([`StateDir::all_roots`]), whichever spec made it, and nothing
//! outside it. Each one is stopped as `down` stops it: under its lock, and
//! only processes that serve one of its data directories.

use anyhow::Result;

use super::{Native, StateDir};
use crate::progress::Progress;
use crate::project::Project;

/// Stops every native stack of `project`'s workspace; a stack that cannot
/// be stopped (a directory drr did not create, say) does not keep the
/// others running, and fails the call afterwards with each reason.
pub fn down_all(project: &Project, progress: &mut Progress) -> Result<()> {
    let this = Native::open(project)?;
    let roots = StateDir::all_roots(project)?;
    if roots.is_empty() {
        progress.note("no native stack in this workspace");
    }
    let mut failed = Vec::new();
    for root in roots {
        let stack = Native::with_state(project, StateDir::at(&root, this.state().cache()))?;
        if let Err(e) = stack.down(progress) {
            failed.push(format!("{}: {e:#}", root.display()));
        }
    }
    anyhow::ensure!(
        failed.is_empty(),
        "some native stacks of this workspace were not stopped:\n{}",
        failed.join("\n")
    );
    Ok(())
}
