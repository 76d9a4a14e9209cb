//! The state every handler shares: the router and the app's settings.

use drr_core::Router;

use crate::config::AppConfig;

/// Shared by every request; cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Routes statements between the primary and the replicas.
    pub router: Router,
    /// The app's settings.
    pub config: AppConfig,
}

impl AppState {
    /// State for [`app`](crate::app).
    pub fn new(router: Router, config: AppConfig) -> Self {
        AppState { router, config }
    }
}
