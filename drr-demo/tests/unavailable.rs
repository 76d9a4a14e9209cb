//! With no database node reachable, the demo answers 503 with a message
//! instead of hanging or crashing. Needs no stack: the nodes are closed
//! ports.

use std::time::Duration;

use drr_core::{Router, RouterConfig};
use drr_demo::{AppConfig, AppState};

/// A local port nothing listens on.
async fn closed_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    listener.local_addr().expect("address").port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_reachable_node_is_503() {
    let primary = format!(
        "postgres://drr_user:pass@127.0.0.1:{}/drr",
        closed_port().await
    );
    let replica = format!(
        "postgres://drr_user:pass@127.0.0.1:{}/drr",
        closed_port().await
    );
    let config = RouterConfig::new(&primary)
        .and_then(|config| config.replica(&replica))
        .expect("config")
        .connect_timeout(Duration::from_millis(500));
    let router = Router::connect(config).await.expect("router");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let server = tokio::spawn(async move {
        let app = drr_demo::app(AppState::new(router, AppConfig::default()));
        axum::serve(listener, app).await.expect("serve");
    });
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");

    let created = http
        .post(format!("{base}/items"))
        .json(&serde_json::json!({ "name": "x", "quantity": 1 }))
        .send()
        .await
        .expect("POST");
    assert_eq!(created.status(), 503);
    assert_eq!(
        created.headers().get("retry-after").map(|v| v.as_bytes()),
        Some(&b"1"[..])
    );
    let body: serde_json::Value = created.json().await.expect("JSON");
    let text = body["error"].as_str().unwrap_or_default();
    assert!(
        text.starts_with("no database node can serve the request"),
        "{text}"
    );
    assert!(
        !text.contains("pass"),
        "the message leaks the password: {text}"
    );

    for mode in ["eventual", "read-your-writes", "pin"] {
        let fetched = http
            .get(format!("{base}/items/1"))
            .header("x-drr-consistency", mode)
            .header(
                "x-drr-written-at",
                drr_demo::consistency::now_ms().to_string(),
            )
            .send()
            .await
            .expect("GET");
        assert_eq!(fetched.status(), 503, "{mode}");
    }
    server.abort();
}
