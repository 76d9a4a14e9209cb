//! `drr-demo`: parse the flags, connect, migrate, serve.

use std::net::Ipv4Addr;

use anyhow::Context;
use clap::Parser;
use drr_demo::{AppState, Cli};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let cli = Cli::parse();
    let config = cli
        .router_config()
        .context("cannot configure the database router; run `eval \"$(cargo xtask env)\"` first")?;
    let router = drr_core::Router::connect(config)
        .await
        .context("cannot start the database router")?;
    let applied = drr_demo::migrate(&router).await.context(
        "cannot apply the migrations on the primary; is the stack up? run `cargo xtask up`",
    )?;
    tracing::info!(?applied, "migrations applied");
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, cli.port))
        .await
        .with_context(|| {
            format!(
                "cannot listen on 127.0.0.1:{}; pick another with --port",
                cli.port
            )
        })?;
    let addr = listener
        .local_addr()
        .context("cannot read the listening address")?;
    tracing::info!(%addr, consistency = %cli.consistency, "drr-demo listening");
    axum::serve(
        listener,
        drr_demo::app(AppState::new(router, cli.app_config())),
    )
    .with_graceful_shutdown(async {
        // Without a signal handler the server just runs until killed.
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
    .context("the HTTP server failed")
}
