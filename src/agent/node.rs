//! The node loop: one node's desired TunnelPorts → OVS tunnel ports + OpenFlow rules.
//!
//! Shared by the Kubernetes agent and the standalone mode. It wires three tasks together:
//! the OVS reconcile loop (tunnel ports), the flow sync (rules), and a joiner that turns
//! the desired TunnelPorts plus what OVS shows (tunnel ofports, workload ports) into the
//! desired flows. Everything it sees is published as one [`NodeView`].

use std::collections::{BTreeMap, BTreeSet};
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
                // Every tunnel type OVS 3.1 knows, and patch ports: never workloads.
                "vxlan"
                    | "geneve"
                    | "gre"
                    | "ip6gre"
                    | "erspan"
                    | "ip6erspan"
                    | "stt"
                    | "lisp"
                    | "gtpu"
                    | "bareudp"
                    | "srv6"
                    | "patch"
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

/// The tunnel ports OVS must hold: every desired one, and every one that left the desired
/// set while OVS may still hold rules pointing at it (kept in `leaving` until the flow sync
/// confirmed a plan without its rules).
pub(super) fn ports_for_ovs(
    desired: Option<&[TunnelPort]>,
    leaving: &mut BTreeMap<String, TunnelPort>,
    previous: &Option<Vec<TunnelPort>>,
    flows: &SyncStatus,
) -> Option<Vec<TunnelPort>> {
    let desired = desired?;
    let wanted: BTreeSet<&str> = desired
        .iter()
        .filter_map(|tp| tp.metadata.name.as_deref())
        .collect();
    for tp in previous.iter().flatten() {
        if let Some(name) = tp.metadata.name.as_deref()
            && !wanted.contains(name)
        {
            leaving
                .entry(name.to_string())
                .or_insert_with(|| tp.clone());
        }
    }
    leaving.retain(|name, tp| {
        let rules_left = match (
            &flows.applied,
            crate::api::validate::parse_ip(&tp.spec.remote_ip),
        ) {
            (Some(applied), Ok(remote)) => {
                let iface = crate::api::names::interface_name(
                    tp.spec.tunnel_type,
                    remote,
                    tp.spec.dst_port,
                );
                applied.installed_per_tunnel.contains_key(&iface)
            }
            // Nothing confirmed yet, or a port that could never have had rules.
            (None, Ok(_)) => true,
            (_, Err(_)) => false,
        };
        !wanted.contains(name.as_str()) && rules_left
    });
    let mut ports = desired.to_vec();
    ports.extend(leaving.values().cloned());
    Some(ports)
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
    // The OVS loop's desired ports: the desired TunnelPorts plus those leaving, which stay
    // until OVS confirms their rules are gone (no rule may point at a removed port).
    let (ovs_desired_tx, ovs_desired) = watch::channel::<Option<Vec<TunnelPort>>>(None);
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
        // Until OVSDB has been seen once, the workload ports and tunnel ofports are
        // unknown: a plan then would be empty and the sync would delete every rule.
        let mut seen_ovs = false;
        let mut leaving: BTreeMap<String, TunnelPort> = BTreeMap::new();
        loop {
            let desired_now = desired.borrow_and_update().clone();
            let observed = observed_rx.borrow_and_update().clone();
            seen_ovs |= observed.connected;
            let plan = desired_now
                .as_deref()
                .filter(|_| seen_ovs)
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
            let ports = ports_for_ovs(
                desired_now.as_deref(),
                &mut leaving,
                &ovs_desired_tx.borrow(),
                &flows,
            );
            ovs_desired_tx.send_if_modified(|current| {
                let changed = *current != ports;
                *current = ports;
                changed
            });
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
