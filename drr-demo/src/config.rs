//! Configuration: the command-line flags of `drr-demo`, and the settings the
//! app itself needs.
//!
//! The database nodes come from the environment that `cargo xtask env`
//! prints (`DRR_PRIMARY_URL`, `DRR_REPLICA_URLS`, `DRR_REPLICA_NAMES`).

use std::time::Duration;

use drr_core::RouterConfig;

use crate::consistency::Mode;

/// The flags of `cargo run -p drr-demo -- [FLAGS]`.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "drr-demo",
    about = "A small items service on drr-core that shows replication lag bugs and their fixes",
    after_help = "The database nodes come from DRR_PRIMARY_URL, DRR_REPLICA_URLS and \
                  DRR_REPLICA_NAMES: run `eval \"$(cargo xtask env)\"` first."
)]
pub struct Cli {
    /// Port to listen on, on 127.0.0.1 (0 picks a free one).
    #[arg(long, short, default_value_t = 3000, env = "DRR_DEMO_PORT")]
    pub port: u16,
    /// Consistency of reads that send no `x-drr-consistency` header:
    /// eventual, read-your-writes or pin.
    #[arg(long, default_value = "read-your-writes", env = "DRR_DEMO_CONSISTENCY")]
    pub consistency: Mode,
    /// How long reads stay on the primary after a write, in pin mode (ms).
    #[arg(long, default_value_t = 5000, value_name = "MS")]
    pub pin_ms: u64,
    /// How long a read-your-writes read waits for a replica to catch up
    /// before it falls back to the primary (ms).
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    pub max_wait_ms: u64,
    /// Connections per database node.
    #[arg(long, default_value_t = 16)]
    pub pool_size: usize,
}

impl Cli {
    /// The router's configuration: nodes from the environment, policy from
    /// the flags.
    pub fn router_config(&self) -> drr_core::Result<RouterConfig> {
        Ok(RouterConfig::from_env()?
            .max_wait(Duration::from_millis(self.max_wait_ms))
            .pool_size(self.pool_size))
    }

    /// The app's own settings.
    pub fn app_config(&self) -> AppConfig {
        AppConfig {
            default_mode: self.consistency,
            pin: Duration::from_millis(self.pin_ms),
        }
    }
}

/// What the handlers need to know besides the router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppConfig {
    /// The mode of reads that do not ask for one.
    pub default_mode: Mode,
    /// How long reads stay on the primary after a write, in pin mode.
    pub pin: Duration,
}

impl Default for AppConfig {
    fn default() -> Self {
        AppConfig {
            default_mode: Mode::ReadYourWrites,
            pin: Duration::from_millis(5000),
        }
    }
}
