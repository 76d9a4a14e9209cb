//! drr-demo: a small items service on [`drr_core`] that shows the bug read
//! replicas cause (create, then fetch at once: 404) and its fixes.
//!
//! ```no_run
//! # async fn run() -> anyhow::Result<()> {
//! let router = drr_core::Router::from_env().await?;
//! drr_demo::migrate(&router).await?;
//! let app = drr_demo::app(drr_demo::AppState::new(router, drr_demo::AppConfig::default()));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app).await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Endpoints
//!
//! | method and path | success | errors |
//! | --- | --- | --- |
//! | `POST /items` `{"name": "...", "quantity": 1}` | 201, the item, `Location`, `x-drr-lsn`, `x-drr-written-at`, cookies | 422 invalid input, 415 not JSON, 503 |
//! | `GET /items/{id}` | 200, the item, `x-drr-node` | 404, 422 bad id, 400 bad header, 503 |
//! | `GET /items?limit=N` | 200, newest first | 422 bad limit, 400, 503 |
//! | `GET /stats` | 200, the router's counters per node | |
//!
//! How the consistency mode and the token travel between requests is
//! described in [`consistency`].
#![deny(missing_docs)]

pub use config::{AppConfig, Cli};
pub use consistency::{Mode, ReadPrefs, WriteReceipt};
pub use error::AppError;
pub use items::{Item, NewItem};
pub use migrate::{MigrateError, migrate, migrations};
pub use state::AppState;

pub mod consistency;

mod config;
mod error;
mod items;
mod migrate;
mod state;
mod stats;

use axum::routing::{get, post};

/// The service: every route, over `state`.
pub fn app(state: AppState) -> axum::Router {
    axum::Router::new()
        .route("/items", post(items::create).get(items::list))
        .route("/items/{id}", get(items::get))
        .route("/stats", get(stats::stats))
        .with_state(state)
}
