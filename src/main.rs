//! The `remote-device-operator` binary: one subcommand per component.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use remote_device_operator::cli;
use remote_device_operator::controller::{self, ControllerArgs};
use remote_device_operator::telemetry::{self, Health, LogFormat, Metrics};
use tokio_util::sync::CancellationToken;

/// Tunnels Open vSwitch nodes to devices behind remote VTEPs.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Cli {
    /// Log line format of the long-running components.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    /// Address serving /metrics, /healthz and /readyz (long-running components).
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
    /// Make this node's OVS match its TunnelPorts and report their status (DaemonSet).
    Agent(remote_device_operator::agent::AgentArgs),
    /// Print the TunnelPorts the controller would create for RemoteDevice (and Node)
    /// manifests, then every rejected manifest with file, field and reason. Exits 1 when
    /// anything was rejected.
    Plan(cli::plan_command::PlanArgs),
    /// Run the agent without Kubernetes: plan for this node from a directory of
    /// manifests, make OVS match, print the tunnel ports, follow changes.
    Standalone(remote_device_operator::standalone::StandaloneArgs),
    /// Print the CustomResourceDefinitions (the files in crds/ are this output).
    Crd,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Plan(args) => {
            match cli::plan_command::run(&args, &mut std::io::stdout(), &mut std::io::stderr()) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::FAILURE,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Standalone(args) => {
            // Logs go to stderr; stdout carries the tunnel-port tables.
            if let Err(e) = telemetry::init_tracing(cli.log_format) {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
            let result = tokio::runtime::Runtime::new()
                .map_err(anyhow::Error::from)
                .and_then(|runtime| {
                    runtime.block_on(async {
                        let cancel = CancellationToken::new();
                        telemetry::cancel_on_signal(cancel.clone())?;
                        remote_device_operator::standalone::run(
                            args,
                            cancel,
                            &mut std::io::stdout(),
                        )
                        .await
                    })
                });
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Crd => {
            print!("{}", remote_device_operator::crd::all_yaml());
            ExitCode::SUCCESS
        }
        Command::Agent(args) => component("agent", cli.log_format, cli.metrics_addr, |m, h, c| {
            run_agent(args, m, h, c)
        }),
        Command::Controller(args) => {
            component("controller", cli.log_format, cli.metrics_addr, |m, h, c| {
                run_controller(args, m, h, c)
            })
        }
    }
}

/// Runs a long-running component: logs, the endpoints, the runtime, and shutdown on
/// SIGTERM / SIGINT.
fn component<F, Fut>(
    name: &'static str,
    format: LogFormat,
    metrics_addr: SocketAddr,
    run: F,
) -> ExitCode
where
    F: FnOnce(Metrics, Health, CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    if let Err(e) = telemetry::init_tracing(format) {
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
    match runtime.block_on(serve(name, metrics_addr, run)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Starts the endpoints, runs the component until it ends or a signal arrives, then stops
/// the endpoints.
async fn serve<F, Fut>(name: &'static str, metrics_addr: SocketAddr, run: F) -> anyhow::Result<()>
where
    F: FnOnce(Metrics, Health, CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let cancel = CancellationToken::new();
    telemetry::cancel_on_signal(cancel.clone())?;
    let metrics = Metrics::for_component(name);
    let health = Health::default();
    let (addr, server) = telemetry::serve(
        metrics_addr,
        metrics.clone(),
        health.clone(),
        cancel.clone(),
    )
    .await?;
    tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
    let result = run(metrics, health, cancel.clone()).await;
    // Whatever ended the component, stop the endpoints too.
    cancel.cancel();
    server.await??;
    result
}

/// The in-cluster (or kubeconfig) client.
async fn client() -> anyhow::Result<kube::Client> {
    kube::Client::try_default()
        .await
        .map_err(|e| anyhow::anyhow!("cannot configure the Kubernetes client: {e}"))
}

async fn run_controller(
    args: ControllerArgs,
    metrics: Metrics,
    health: Health,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    controller::run(client().await?, &args, metrics, health, cancel).await
}

async fn run_agent(
    args: remote_device_operator::agent::AgentArgs,
    metrics: Metrics,
    health: Health,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    remote_device_operator::agent::run(client().await?, &args, metrics, health, cancel).await
}
