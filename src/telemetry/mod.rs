//! What both long-running components (controller and agent, one binary) share to be observable and stoppable: structured logs, Prometheus
//! metrics, `/healthz` + `/readyz`, and shutdown on SIGTERM / SIGINT.

mod metrics;
mod server;
mod shutdown;

pub use metrics::{ErrorKind, Metrics, TunnelPortState, TunnelReachability, WriteKind};
pub use server::{DEFAULT_LIVENESS_STALL, Health, ipv4_fallback, liveness, serve};
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

/// The logging flag of every subcommand that logs (controller, agent, standalone).
#[derive(clap::Args, Clone, Debug)]
pub struct LogArgs {
    /// Log line format.
    #[arg(long, env = "RDO_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// The endpoint flags of the long-running components (controller, agent).
#[derive(clap::Args, Clone, Debug)]
pub struct ServeArgs {
    /// Address serving /metrics, /healthz and /readyz. `[::]` listens on IPv4 and IPv6
    /// (IPv4 only on a host without IPv6); `[::1]:P` or `127.0.0.1:P` on one family.
    #[arg(long, env = "RDO_METRICS_ADDR", default_value = "[::]:8080")]
    pub metrics_addr: std::net::SocketAddr,
    /// /healthz fails (503) once a loop has had work pending for this long without
    /// finishing a pass, so the kubelet restarts a stuck component.
    #[arg(long, env = "RDO_LIVENESS_STALL_SECONDS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub liveness_stall_seconds: u64,
}

impl ServeArgs {
    /// A fresh Health with the flag's stall limit.
    pub fn health(&self) -> Health {
        Health::with_liveness_stall(std::time::Duration::from_secs(self.liveness_stall_seconds))
    }
}
