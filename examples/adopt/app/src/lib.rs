//! A tiny application on drr-core: place an order (a write, routed to the
//! primary) and read it back at once (a read, routed to a replica only when
//! that replica has replayed the write, else to the primary).

use drr_core::{Result, Router};

/// Creates the `orders` table when it is missing.
pub async fn ensure_schema(router: &Router) -> Result<()> {
    router
        .execute(
            "CREATE TABLE IF NOT EXISTS orders (id bigserial PRIMARY KEY, item text NOT NULL)",
            &[],
        )
        .await?;
    Ok(())
}

/// Places an order for `item` and reads it back in the same session, which
/// reads its own writes however far behind the replicas are. Returns the
/// order's id and the item the read saw (`None` would be the replica-lag bug
/// read-your-writes prevents).
pub async fn place_order(router: &Router, item: &str) -> Result<(i64, Option<String>)> {
    let session = router.session();
    let id: i64 = session
        .query_one(
            "INSERT INTO orders (item) VALUES ($1) RETURNING id",
            &[&item],
        )
        .await?
        .get(0);
    let seen = session
        .query_opt("SELECT item FROM orders WHERE id = $1", &[&id])
        .await?
        .map(|row| row.get(0));
    Ok((id, seen))
}
