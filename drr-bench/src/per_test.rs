//! The body every per-test database runs in the per-test benchmarks (the
//! peers' comparison with `#[sqlx::test]` and the suite-size curves), so
//! both measure the same test.

use tokio_postgres::Client;

/// One insert and one count on a fresh database; an error when the count
/// shows the database was not fresh.
pub async fn insert_and_count(
    primary: &Client,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    primary
        .execute("INSERT INTO items (owner) VALUES ('t')", &[])
        .await?;
    let n: i64 = primary
        .query_one("SELECT count(*) FROM items", &[])
        .await?
        .get(0);
    if n != 1 {
        return Err(format!("a fresh per-test database held {n} rows").into());
    }
    Ok(())
}
