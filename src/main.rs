//! The `remote-device-operator` binary: one subcommand per component.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use remote_device_operator::cli;

/// Tunnels Open vSwitch nodes to devices behind remote VTEPs.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the TunnelPorts the controller would create for RemoteDevice (and Node)
    /// manifests, then every rejected manifest with file, field and reason. Exits 1 when
    /// anything was rejected.
    Plan(cli::plan::PlanArgs),
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
            match cli::plan::run(&args, &mut std::io::stdout(), &mut std::io::stderr()) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::FAILURE,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Standalone(args) => {
            let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
            let result = runtime.block_on(async {
                let shutdown = tokio_util::sync::CancellationToken::new();
                let token = shutdown.clone();
                tokio::spawn(async move {
                    let _ = tokio::signal::ctrl_c().await;
                    token.cancel();
                });
                remote_device_operator::standalone::run(args, shutdown, &mut std::io::stdout())
                    .await
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
    }
}
