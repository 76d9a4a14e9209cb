//! Settles [`Classification::DependsOnFunctions`](crate::classify::Classification):
//! asks the node a read landed on about the functions it calls, once per
//! function and node.

use tokio_postgres::Error;

use crate::client::NodeClient;
use crate::functions::{self, FunctionName, Volatility};

/// Whether a statement calling `names` may run where `client` points, as
/// that node says: [`Volatility::ReadOnly`] if every function is,
/// [`Volatility::Volatile`] if one is, `None` if the node knows one of them
/// not at all (a replica may not have replayed its creation yet).
pub(crate) async fn verdict(
    client: &NodeClient,
    names: &[FunctionName],
) -> Result<Option<Volatility>, Error> {
    if names.is_empty() {
        return Ok(Some(Volatility::ReadOnly));
    }
    let known = &client.node_ref().functions;
    let missing: Vec<FunctionName> = names
        .iter()
        .filter(|name| known.get(name).is_none())
        .cloned()
        .collect();
    if !missing.is_empty() {
        let found = functions::lookup(client, &missing).await?;
        for (name, verdict) in missing.iter().zip(found) {
            known.record(name, verdict);
        }
    }
    let mut verdict = Some(Volatility::ReadOnly);
    for name in names {
        match known.get(name) {
            None => return Ok(None),
            Some(Volatility::Volatile) => verdict = Some(Volatility::Volatile),
            Some(_) => {}
        }
    }
    Ok(verdict)
}
