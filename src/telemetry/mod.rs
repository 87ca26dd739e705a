//! What both long-running components (controller and agent, one binary) share to be observable and stoppable: structured logs, Prometheus
//! metrics, `/healthz` + `/readyz`, and shutdown on SIGTERM / SIGINT.

mod metrics;
mod server;
mod shutdown;

pub use metrics::{ErrorKind, Metrics, TunnelPortState, WriteKind};
pub use server::{Health, serve};
pub use shutdown::cancel_on_signal;

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Installs the global tracing subscriber. The filter comes from `RUST_LOG` (default
/// `info`). Errors (a subscriber already installed) are returned, never a panic.
pub fn init_tracing(format: LogFormat) -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot install the log subscriber: {e}"))
}
