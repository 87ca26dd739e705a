//! The `remote-device-operator` binary: one subcommand per component.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use remote_device_operator::controller::{self, ControllerArgs};
use remote_device_operator::telemetry::{self, Health, LogFormat, Metrics};
use tokio_util::sync::CancellationToken;

/// Tunnels Open vSwitch nodes to devices behind remote VTEPs.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Log line format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    /// Address serving /metrics, /healthz and /readyz.
    #[arg(
        long,
        env = "METRICS_ADDR",
        default_value = "0.0.0.0:8080",
        global = true
    )]
    metrics_addr: SocketAddr,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Derive TunnelPorts from RemoteDevices and Nodes and report device status
    /// (Deployment; leader-elected, so several replicas are safe).
    Controller(ControllerArgs),
    /// Print the CustomResourceDefinitions as YAML.
    Crd,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Crd = cli.command {
        print!("{}", remote_device_operator::crd::all_yaml());
        return ExitCode::SUCCESS;
    }
    if let Err(e) = telemetry::init_tracing(cli.log_format) {
        eprintln!("{e}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Starts the endpoints, runs the component until it ends or a signal arrives, then stops
/// the endpoints.
async fn serve(cli: Cli) -> anyhow::Result<()> {
    let cancel = CancellationToken::new();
    telemetry::cancel_on_signal(cancel.clone())?;
    let metrics = Metrics::new();
    let health = Health::default();
    let (addr, server) = telemetry::serve(
        cli.metrics_addr,
        metrics.clone(),
        health.clone(),
        cancel.clone(),
    )
    .await?;
    tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
    let result = match &cli.command {
        Command::Controller(args) => run_controller(args, metrics, health, cancel.clone()).await,
        Command::Crd => Ok(()),
    };
    // Whatever ended the component, stop the endpoints too.
    cancel.cancel();
    server.await??;
    result
}

async fn run_controller(
    args: &ControllerArgs,
    metrics: Metrics,
    health: Health,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let client = kube::Client::try_default()
        .await
        .map_err(|e| anyhow::anyhow!("cannot configure the Kubernetes client: {e}"))?;
    controller::run(client, args, metrics, health, cancel).await
}
