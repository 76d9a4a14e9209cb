//! Which node is the primary now. The spec names one, but after `cargo
//! xtask failover` another node plays it: the nodes themselves say, over
//! TCP (`pg_is_in_recovery()`), so this serves both backends (the native
//! backend also reads it from its data directories while the stack is
//! down).

use anyhow::Result;

use crate::pg::{self, Login};
use crate::secrets::Secrets;
use crate::spec::StackSpec;

/// The stack as it runs: `spec` with the node that answers as primary as
/// its primary. When no node answers as one (the stack is down), that is
/// `spec` itself; when several do, an error names them.
pub async fn discover(spec: &StackSpec, secrets: &Secrets) -> Result<StackSpec> {
    let mut primaries = Vec::new();
    for node in spec.nodes() {
        let Ok(client) = pg::connect(spec, node, Login::admin(secrets)).await else {
            continue;
        };
        if pg::replay_state(&client)
            .await
            .is_ok_and(|s| !s.in_recovery)
        {
            primaries.push(node.name.clone());
        }
    }
    match primaries.as_slice() {
        [] => Ok(spec.clone()),
        [only] => Ok(spec.with_primary(only)?),
        several => anyhow::bail!(
            "nodes {} all run as primaries: an interrupted failover left them so; run \
             `cargo xtask failover --to NODE` with the node that should be the primary, and \
             the others rejoin it as replicas",
            several
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}
