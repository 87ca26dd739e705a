//! The per-node agent: makes OVS match this node's TunnelPorts and reports status.
//!
//! - [`node`]: the node loop shared with the standalone mode (OVS ports + flows).
//! - [`status`], [`decide`]: pure decisions (status, finalizers, desired set).
//! - [`kube`]: the Kubernetes I/O around them.

pub mod decide;
pub mod kube;
pub mod node;
pub mod status;
#[cfg(test)]
mod tests;

pub use node::{NodeConfig, NodeHandle, NodeView};

use std::path::PathBuf;

use tokio_util::sync::CancellationToken;

use crate::api::TunnelPort;
use crate::telemetry::{Health, Metrics};

/// Arguments of `agent`.
#[derive(Clone, Debug, clap::Args)]
pub struct AgentArgs {
    /// This node's name; the agent handles only TunnelPorts whose spec.nodeName it is
    /// (the DaemonSet passes it from the downward API).
    #[arg(long, env = "NODE_NAME")]
    pub node_name: String,
    /// OVSDB endpoint, as ovs-vsctl spells it (unix:/path or tcp:host:port).
    #[arg(
        long,
        env = "OVSDB_ENDPOINT",
        default_value = "unix:/var/run/openvswitch/db.sock"
    )]
    pub ovsdb: String,
    /// Integration bridge that carries the tunnel ports and rules (created when missing).
    #[arg(long, env = "OVS_BRIDGE", default_value = "br-int")]
    pub bridge: String,
    /// OVS run directory, where the bridge's OpenFlow socket `<bridge>.mgmt` lives.
    #[arg(long, env = "OVS_RUNDIR", default_value = "/var/run/openvswitch")]
    pub ovs_rundir: PathBuf,
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
    let config = NodeConfig {
        ovsdb: args.ovsdb.clone(),
        bridge: args.bridge.clone(),
        ovs_rundir: args.ovs_rundir.clone(),
    };
    let handle = node::spawn(config, shutdown.clone());
    tracing::info!(node = %args.node_name, ovsdb = %args.ovsdb, bridge = %args.bridge, "agent started");
    let api: ::kube::Api<TunnelPort> = ::kube::Api::all(client);
    kube::run(
        api,
        args.node_name.clone(),
        &handle,
        &metrics,
        &health,
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
