//! The node loop: one node's desired TunnelPorts → OVS tunnel ports + OpenFlow rules.
//!
//! Shared by the Kubernetes agent and the standalone mode. It wires three tasks together:
//! the OVS reconcile loop (tunnel ports), the flow sync (rules), and a joiner that turns
//! the desired TunnelPorts plus what OVS shows (tunnel ofports, workload ports) into the
//! desired flows. Everything it sees is published as one [`NodeView`].

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::api::TunnelPort;
use crate::flows::{
    self, Flow, FlowInput, FlowPlan, FlowSync, FlowSyncConfig, Owner, SyncStatus, TunnelFlowsInput,
    WorkloadPort,
};
use crate::ovs::{self, Observed, OvsConfig, PortState};

/// Where this node's OVS is.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// OVSDB endpoint, as ovs-vsctl spells it (`unix:/var/run/openvswitch/db.sock`).
    pub ovsdb: String,
    /// The integration bridge.
    pub bridge: String,
    /// OVS run directory, where `<bridge>.mgmt` (the OpenFlow socket) lives.
    pub ovs_rundir: PathBuf,
}

/// Where this node's OVS is, as command-line flags (shared by `agent` and `standalone`).
#[derive(Clone, Debug, clap::Args)]
pub struct OvsArgs {
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

impl From<&OvsArgs> for NodeConfig {
    fn from(args: &OvsArgs) -> Self {
        NodeConfig {
            ovsdb: args.ovsdb.clone(),
            bridge: args.bridge.clone(),
            ovs_rundir: args.ovs_rundir.clone(),
        }
    }
}

/// Everything the node loop knows, re-published on every change.
#[derive(Clone, Debug, Default)]
pub struct NodeView {
    /// What OVSDB shows.
    pub ovs: Observed,
    /// What the flow sync last achieved.
    pub flows: SyncStatus,
    /// The desired flows for the current desired TunnelPorts and observed ofports.
    pub plan: Option<Arc<FlowPlan>>,
    /// Whether the OVS loop stopped for good (an unusable configuration).
    pub failed: Option<String>,
    /// OVSDB has been out of reach for longer than [`OVSDB_GRACE`]. A shorter reconnect
    /// keeps reporting the last known state, so a blip does not flip every TunnelPort's
    /// status (two API writes each) for nothing.
    pub ovs_unavailable: bool,
}

/// How long OVSDB may be unreachable before TunnelPorts report `OvsUnavailable`.
pub const OVSDB_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

impl NodeView {
    /// Whether OVS holds the current desired flows in full.
    pub fn flows_current(&self) -> bool {
        match (&self.plan, &self.flows.applied) {
            (Some(want), Some(have)) => Arc::ptr_eq(want, have) || want == have,
            _ => false,
        }
    }

    /// Whether OVS holds the current desired flows of one tunnel and its devices (so a
    /// change elsewhere on the bridge does not make this tunnel look pending).
    pub fn tunnel_flows_current(&self, interface: &str, devices: &[crate::api::DeviceKey]) -> bool {
        let (Some(want), Some(have)) = (&self.plan, &self.flows.applied) else {
            return false;
        };
        if Arc::ptr_eq(want, have) {
            return true;
        }
        let mut owners: Vec<Owner> = devices.iter().cloned().map(Owner::Device).collect();
        owners.push(Owner::Tunnel(interface.to_string()));
        // The flows of these owners, in both plans (an ofport change shows in the actions).
        let flows_of = |plan: &FlowPlan| -> Vec<Flow> {
            let cookies: Vec<u64> = owners
                .iter()
                .filter_map(|o| plan.cookies.get(o).copied())
                .collect();
            plan.flows
                .values()
                .filter(|f| cookies.contains(&f.cookie))
                .cloned()
                .collect()
        };
        want.installed_per_tunnel.get(interface) == have.installed_per_tunnel.get(interface)
            && devices
                .iter()
                .all(|d| want.devices.get(d) == have.devices.get(d))
            && flows_of(want) == flows_of(have)
    }
}

/// A running node loop.
pub struct NodeHandle {
    /// Feed the complete desired set here (`None` = not known yet: nothing is deleted).
    pub desired: watch::Sender<Option<Vec<TunnelPort>>>,
    /// Follow what the loop sees.
    pub view: watch::Receiver<NodeView>,
    tasks: JoinSet<()>,
}

impl NodeHandle {
    /// Waits until every task has stopped (after the shutdown token was cancelled).
    pub async fn join(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

/// The flow planner's input: tunnels with the ofport OVS gave them (only when the port is
/// Ready, so no rule ever points at a port that is pending, refused or being replaced),
/// and the workload ports (every port we do not own, except other tunnels and patch
/// ports, so no loop between tunnels can form and nothing leaks to another bridge).
pub fn flow_input(desired: &[TunnelPort], observed: &Observed) -> FlowInput {
    let tunnels = desired
        .iter()
        .filter_map(|tp| {
            let report = observed.ports.get(tp.metadata.name.as_deref()?)?;
            let ofport = match report.state {
                PortState::Ready => report.ofport.unwrap_or(-1),
                _ => -1,
            };
            Some(TunnelFlowsInput {
                tunnel_port: report.interface_name.clone(),
                ofport,
                devices: tp.spec.devices.clone(),
            })
        })
        .collect();
    let workload_ports = observed
        .local_ports
        .iter()
        .filter(|p| {
            !matches!(
                p.interface_type.as_str(),
                "vxlan" | "geneve" | "gre" | "stt" | "lisp" | "patch"
            )
        })
        .map(|p| WorkloadPort {
            ofport: p.ofport,
            vlan: p.tag,
        })
        .collect();
    FlowInput {
        tunnels,
        workload_ports,
    }
}

/// Starts the node loop; it runs until `shutdown` is cancelled and leaves OVS as it is then.
pub fn spawn(config: NodeConfig, shutdown: CancellationToken) -> NodeHandle {
    let (desired_tx, desired_rx) = watch::channel::<Option<Vec<TunnelPort>>>(None);
    let (observed_tx, mut observed_rx) = watch::channel(Observed::default());
    let (plan_tx, plan_rx) = watch::channel::<Option<Arc<FlowPlan>>>(None);
    let (view_tx, view_rx) = watch::channel(NodeView::default());
    let sync = FlowSync::new(FlowSyncConfig::new(&config.ovs_rundir, &config.bridge));
    let mut flow_status = sync.status();
    let mut tasks = JoinSet::new();

    let ovs_config = OvsConfig::new(config.ovsdb.clone(), config.bridge.clone());
    let (token, view) = (shutdown.clone(), view_tx.clone());
    let ovs_desired = desired_rx.clone();
    tasks.spawn(async move {
        if let Err(e) = ovs::run(ovs_config, ovs_desired, observed_tx, token).await {
            tracing::error!(error = %e, "OVS loop stopped");
            view.send_modify(|v| v.failed = Some(e.to_string()));
        }
    });
    tasks.spawn(sync.run(plan_rx, shutdown.clone()));

    let mut desired = desired_rx;
    tasks.spawn(async move {
        let mut disconnected_since: Option<tokio::time::Instant> = None;
        loop {
            let desired_now = desired.borrow_and_update().clone();
            let observed = observed_rx.borrow_and_update().clone();
            let plan = desired_now
                .as_deref()
                .map(|d| Arc::new(flows::plan(&flow_input(d, &observed))));
            // Keep the Arc when nothing changed: the flow sync tells repairs from new plans by it.
            plan_tx.send_if_modified(|current| {
                if current.as_deref() == plan.as_deref() {
                    return false;
                }
                *current = plan;
                true
            });
            let plan = plan_tx.borrow().clone();
            let flows = flow_status.borrow_and_update().clone();
            let now = tokio::time::Instant::now();
            let down_since = if observed.connected {
                None
            } else {
                Some(*disconnected_since.get_or_insert(now))
            };
            disconnected_since = down_since;
            let unavailable = down_since.is_some_and(|since| now >= since + OVSDB_GRACE);
            view_tx.send_modify(|v| {
                v.ovs = observed;
                v.flows = flows;
                v.plan = plan;
                v.ovs_unavailable = unavailable;
            });
            // While disconnected within the grace period, wake when it runs out.
            let grace_ends = down_since
                .filter(|_| !unavailable)
                .map(|since| since + OVSDB_GRACE);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                r = desired.changed() => if r.is_err() { return },
                r = observed_rx.changed() => if r.is_err() { return },
                r = flow_status.changed() => if r.is_err() { return },
                _ = sleep_until(grace_ends) => {}
            }
        }
    });
    NodeHandle {
        desired: desired_tx,
        view: view_rx,
        tasks,
    }
}

/// Sleeps until `at`, or for ever when there is nothing to wait for.
pub(crate) async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
