//! The `remote-device-operator` binary: one subcommand per component.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use remote_device_operator::cli;
use remote_device_operator::controller::{self, ControllerArgs};
use remote_device_operator::envvars;
use remote_device_operator::telemetry::{self, Health, LogArgs, Metrics, ServeArgs};
use tokio_util::sync::CancellationToken;

/// Tunnels Open vSwitch nodes to devices behind remote VTEPs.
///
/// Environment variables carry the prefix RDO_ (each flag's is shown with it). The names
/// of earlier versions (NODE_NAME, POD_NAMESPACE, OVS_BRIDGE, …) still work with a
/// deprecation warning; set beside a new name with another value they are refused.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// A long-running component's own flags, its logging and its endpoints.
#[derive(clap::Args, Debug)]
struct Component<A: clap::Args> {
    #[command(flatten)]
    args: A,
    #[command(flatten)]
    log: LogArgs,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Derive TunnelPorts from RemoteDevices and Nodes and report device status
    /// (Deployment; leader-elected, so several replicas are safe).
    Controller(Component<ControllerArgs>),
    /// Make this node's OVS match its TunnelPorts and report their status (DaemonSet).
    Agent(Component<remote_device_operator::agent::AgentArgs>),
    /// Print the TunnelPorts the controller would create for RemoteDevice (and Node)
    /// manifests, then every rejected manifest with file, field and reason. Exits 1 when
    /// anything was rejected.
    Plan(cli::plan_command::PlanArgs),
    /// Run the agent without Kubernetes: plan for this node from a directory of
    /// manifests, make OVS match, print the tunnel ports, follow changes.
    Standalone {
        #[command(flatten)]
        args: remote_device_operator::standalone::StandaloneArgs,
        #[command(flatten)]
        log: LogArgs,
    },
    /// Print the CustomResourceDefinitions (the files in crds/ are this output).
    Crd,
}

fn main() -> ExitCode {
    // Before clap reads the environment, and before any thread exists.
    let warnings = match envvars::reads_env(std::env::args().nth(1).as_deref()) {
        false => Vec::new(),
        true => match envvars::apply_to_process() {
            Ok(warnings) => warnings,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        },
    };
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
        Command::Standalone { args, log } => {
            // Logs go to stderr; stdout carries the tunnel-port tables.
            if let Err(e) = telemetry::init_tracing(log.log_format) {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
            log_warnings(&warnings);
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
        Command::Agent(c) => component("agent", &c.log, &c.serve, &warnings, |m, h, t| {
            run_agent(c.args, m, h, t)
        }),
        Command::Controller(c) => {
            component("controller", &c.log, &c.serve, &warnings, |m, h, t| {
                run_controller(c.args, m, h, t)
            })
        }
    }
}

/// The deprecation warnings of the environment, once, as soon as logging is up.
fn log_warnings(warnings: &[String]) {
    for warning in warnings {
        tracing::warn!("{warning}");
    }
}

/// Runs a long-running component: logs, the endpoints, the runtime, and shutdown on
/// SIGTERM / SIGINT.
fn component<F, Fut>(
    name: &'static str,
    log: &LogArgs,
    serve_args: &ServeArgs,
    warnings: &[String],
    run: F,
) -> ExitCode
where
    F: FnOnce(Metrics, Health, CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    if let Err(e) = telemetry::init_tracing(log.log_format) {
        eprintln!("{e}");
        return ExitCode::FAILURE;
    }
    log_warnings(warnings);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(name, serve_args, run)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Starts the endpoints, runs the component until it ends or a signal arrives, then stops
/// the endpoints.
async fn serve<F, Fut>(name: &'static str, args: &ServeArgs, run: F) -> anyhow::Result<()>
where
    F: FnOnce(Metrics, Health, CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let cancel = CancellationToken::new();
    telemetry::cancel_on_signal(cancel.clone())?;
    let metrics = Metrics::for_component(name);
    let health = args.health();
    let (addr, server) = telemetry::serve(
        args.metrics_addr,
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
