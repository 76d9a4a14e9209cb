//! The application against this workspace's real stack: run with
//! `cargo xtask test`, which brings the stack up and exports
//! `DRR_PRIMARY_URL` and `DRR_REPLICA_URLS`.

use drr_core::Router;

#[tokio::test]
async fn an_order_is_readable_right_after_it_is_placed() {
    let router = Router::from_env()
        .await
        .expect("run this test with `cargo xtask test`, which exports the stack's URLs");
    adopt_app::ensure_schema(&router).await.unwrap();
    let (id, seen) = adopt_app::place_order(&router, "teapot").await.unwrap();
    assert!(id > 0);
    assert_eq!(seen.as_deref(), Some("teapot"));
}
