//! The per-node agent: makes OVS match this node's TunnelPorts and reports status.
//!
//! - [`lifecycle`]: the pure step that owns every ordering rule (finalizer, port, rules).
//! - [`node`]: the node loop around it, shared with the standalone mode (OVS ports + flows).
//! - [`status`], [`decide`]: pure decisions of what to write (status, finalizers).
//! - [`events`]: which Kubernetes Events to record (pure), and recording them.
//! - [`kube`]: the Kubernetes I/O around them.

pub mod apiserver;
pub mod decide;
pub mod events;
pub mod lifecycle;
pub mod node;
pub mod status;
#[cfg(test)]
mod tests;

pub use node::{Feed, NodeConfig, NodeHandle, NodeView, OvsArgs};

use tokio_util::sync::CancellationToken;

use crate::api::TunnelPort;
use crate::telemetry::{Health, Metrics};

/// Arguments of `agent`.
#[derive(Clone, Debug, clap::Args)]
pub struct AgentArgs {
    /// This node's name; the agent handles only TunnelPorts whose spec.nodeName it is
    /// (the DaemonSet passes it from the downward API).
    #[arg(long, env = "RDO_NODE_NAME")]
    pub node_name: String,
    /// Where OVS is.
    #[command(flatten)]
    pub ovs: OvsArgs,
    /// Longest wait for one API request before it counts as failed and is retried.
    #[arg(long, env = "RDO_API_TIMEOUT_SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub api_timeout_seconds: u64,
}

/// Runs the agent until `shutdown`: the node loop, and the Kubernetes side feeding it.
/// On shutdown OVS is left exactly as it is (no port or rule is removed).
pub async fn run(
    client: ::kube::Client,
    args: &AgentArgs,
    metrics: Metrics,
    health: Health,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let config = NodeConfig::new(
        &args.ovs,
        Feed::Agent {
            node: args.node_name.clone(),
        },
    );
    let handle = node::spawn(config, shutdown.clone());
    tokio::spawn(status::report_reachability(
        handle.view.clone(),
        metrics.clone(),
        shutdown.clone(),
    ));
    tracing::info!(node = %args.node_name, ovsdb = %args.ovs.ovsdb, bridge = %args.ovs.bridge, "agent started");
    let api: ::kube::Api<TunnelPort> = ::kube::Api::all(client);
    apiserver::run(
        api,
        args.node_name.clone(),
        &handle,
        &metrics,
        &health,
        std::time::Duration::from_secs(args.api_timeout_seconds),
        shutdown.clone(),
    )
    .await;
    let failed = handle.view.borrow().failed.clone();
    shutdown.cancel();
    handle.join().await;
    match failed {
        Some(reason) => Err(anyhow::anyhow!(reason)),
        None => Ok(()),
    }
}
