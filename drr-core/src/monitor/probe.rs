//! One health check on the monitor's own connection to a node, and why it
//! failed when it did.

use std::time::Duration;

use tokio_postgres::{Client, NoTls};

use crate::error::{is_connection_error, is_login_refused};
use crate::health::CheckFailure;
use crate::node::Node;

/// Runs one check on the monitor's connection to `node`, connecting first if
/// needed. Returns the connection to keep (none after a failure) and the
/// result.
pub(crate) async fn probe<T, F>(
    client: Option<Client>,
    node: &Node,
    timeout: Duration,
    read: F,
) -> (Option<Client>, Result<T, CheckFailure>)
where
    F: AsyncFnOnce(&Client) -> Result<T, tokio_postgres::Error>,
{
    let attempt = async {
        let client = match client {
            Some(client) if !client.is_closed() => client,
            _ => connect(node).await?,
        };
        let value = read(&client).await?;
        Ok::<_, tokio_postgres::Error>((client, value))
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok((client, value))) => (Some(client), Ok(value)),
        Ok(Err(err)) => {
            tracing::debug!(node = %node.name, error = %err, "health check failed");
            (None, Err(failure(&err)))
        }
        Err(_) => {
            tracing::debug!(node = %node.name, ?timeout, "health check timed out");
            (None, Err(CheckFailure::TimedOut))
        }
    }
}

async fn connect(node: &Node) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = node.pg.connect(NoTls).await?;
    tokio::spawn(async move {
        // Ends when the client is dropped or the server goes away.
        let _ = connection.await;
    });
    Ok(client)
}

fn failure(err: &tokio_postgres::Error) -> CheckFailure {
    if is_login_refused(err) {
        CheckFailure::LoginRefused
    } else if is_connection_error(err) || err.as_db_error().is_none() {
        CheckFailure::Unreachable
    } else {
        CheckFailure::QueryFailed
    }
}
