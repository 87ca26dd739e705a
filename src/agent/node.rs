//! The node loop: one node's desired TunnelPorts → OVS tunnel ports + OpenFlow rules.
//!
//! Shared by the Kubernetes agent and the standalone mode. It wires three tasks together:
//! the OVS reconcile loop (tunnel ports), the flow sync (rules), and the lifecycle loop,
//! which feeds both from the pure [`super::lifecycle`] step over the node's TunnelPorts
//! and what OVS shows (ofports, workload ports, the rules confirmed). The loop is a cycle
//! by nature — what OVS confirmed decides what it may remove next — and everything it
//! sees and decided is published as one [`NodeView`].

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::api::TunnelPort;
use crate::flows::{
    FlowInput, FlowPlan, FlowSync, FlowSyncConfig, Owner, SyncStatus, TunnelFlowsInput,
    WorkloadPort,
};
use crate::ovs::{self, Observed, OvsConfig, PortState};
use crate::pacing::{gather_burst, sleep_until};

use super::lifecycle::{Inputs, NodeState};

/// Where this node's OVS is, and whose TunnelPorts the loop is fed.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// OVSDB endpoint, as ovs-vsctl spells it (`unix:/var/run/openvswitch/db.sock`).
    pub ovsdb: String,
    /// The integration bridge.
    pub bridge: String,
    /// OVS run directory, where `<bridge>.mgmt` (the OpenFlow socket) lives.
    pub ovs_rundir: PathBuf,
    /// Who feeds the loop.
    pub feed: Feed,
}

/// Who feeds the node loop its TunnelPorts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Feed {
    /// The agent: this node's TunnelPorts as the API shows them, finalizers and all.
    Agent {
        /// This node (only TunnelPorts whose spec names it count).
        node: String,
    },
    /// Standalone mode: the planner's TunnelPorts for this node (no finalizers).
    Standalone,
}

impl NodeConfig {
    /// The config for the flags, fed by `feed`.
    pub fn new(args: &OvsArgs, feed: Feed) -> Self {
        NodeConfig {
            ovsdb: args.ovsdb.clone(),
            bridge: args.bridge.clone(),
            ovs_rundir: args.ovs_rundir.clone(),
            feed,
        }
    }
}

/// Where this node's OVS is, as command-line flags (shared by `agent` and `standalone`).
#[derive(Clone, Debug, clap::Args)]
pub struct OvsArgs {
    /// OVSDB endpoint, as ovs-vsctl spells it (unix:/path or tcp:host:port).
    #[arg(
        long,
        env = "RDO_OVSDB_ENDPOINT",
        default_value = "unix:/var/run/openvswitch/db.sock"
    )]
    pub ovsdb: String,
    /// Integration bridge that carries the tunnel ports and rules (created when missing).
    #[arg(long, env = "RDO_OVS_BRIDGE", default_value = "br-int")]
    pub bridge: String,
    /// OVS run directory, where the bridge's OpenFlow socket `<bridge>.mgmt` lives.
    #[arg(long, env = "RDO_OVS_RUNDIR", default_value = "/var/run/openvswitch")]
    pub ovs_rundir: PathBuf,
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
    /// The TunnelPorts whose status is reported (Active ones and those still getting the
    /// finalizer).
    pub active: BTreeSet<String>,
    /// TunnelPorts that need the agent's finalizer (their ports are created meanwhile).
    pub add_finalizer: Vec<String>,
    /// Deleted TunnelPorts with neither port nor rules left in OVS.
    pub release_finalizer: Vec<String>,
}

pub use super::lifecycle::OVSDB_GRACE;

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
        let mut owners: Vec<Owner> = devices
            .iter()
            .map(|d| Owner::Device(Arc::new(d.clone())))
            .collect();
        owners.push(Owner::Tunnel(interface.to_string()));
        // The flows of these owners, in both plans (an ofport change shows in the actions).
        want.installed_per_tunnel.get(interface) == have.installed_per_tunnel.get(interface)
            && devices
                .iter()
                .all(|d| want.devices.get(d) == have.devices.get(d))
            && owners
                .iter()
                .all(|o| want.owners.get(o) == have.owners.get(o))
    }
}

/// A running node loop.
pub struct NodeHandle {
    /// Feed every TunnelPort of this node here (`None` = not known yet: nothing is deleted).
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
            // An Invalid TunnelPort has no port of its own (a duplicate's report names the
            // other one's interface): it must not keep that interface in the plans.
            if matches!(report.state, PortState::Invalid(_)) {
                return None;
            }
            let ofport = match report.state {
                PortState::Ready => report.ofport.unwrap_or(-1),
                _ => -1,
            };
            Some(TunnelFlowsInput {
                interface_name: report.interface_name.clone(),
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

/// Starts the node loop; it runs until `shutdown` is cancelled and leaves OVS as it is then.
/// Three tasks: the OVS loop (tunnel ports), the flow sync (rules), and the lifecycle
/// loop that feeds both from [`NodeState::step`] and publishes the [`NodeView`].
pub fn spawn(config: NodeConfig, shutdown: CancellationToken) -> NodeHandle {
    let (desired_tx, desired_rx) = watch::channel::<Option<Vec<TunnelPort>>>(None);
    let (observed_tx, observed_rx) = watch::channel(Observed::default());
    let (plan_tx, plan_rx) = watch::channel::<Option<Arc<FlowPlan>>>(None);
    let (view_tx, view_rx) = watch::channel(NodeView::default());
    let (ovs_ports_tx, ovs_ports_rx) = watch::channel::<Option<Vec<TunnelPort>>>(None);
    let sync = FlowSync::new(FlowSyncConfig::new(&config.ovs_rundir, &config.bridge));
    let flow_status = sync.status();
    let mut tasks = JoinSet::new();

    let ovs_config = OvsConfig::new(config.ovsdb.clone(), config.bridge.clone());
    let (token, view) = (shutdown.clone(), view_tx.clone());
    tasks.spawn(async move {
        if let Err(e) = ovs::run(ovs_config, ovs_ports_rx, observed_tx, token).await {
            tracing::error!(error = %e, "OVS loop stopped");
            view.send_modify(|v| v.failed = Some(e.to_string()));
        }
    });
    tasks.spawn(sync.run(plan_rx, shutdown.clone()));
    let state = match config.feed {
        Feed::Agent { node } => NodeState::new(Some(node), true),
        Feed::Standalone => NodeState::new(None, false),
    };
    let channels = LifecycleChannels {
        desired: desired_rx,
        observed: observed_rx,
        flows: flow_status,
        plan: plan_tx,
        ovs_ports: ovs_ports_tx,
        view: view_tx,
    };
    tasks.spawn(lifecycle_loop(state, channels, shutdown));
    NodeHandle {
        desired: desired_tx,
        view: view_rx,
        tasks,
    }
}

/// The lifecycle loop's inputs and outputs.
struct LifecycleChannels {
    desired: watch::Receiver<Option<Vec<TunnelPort>>>,
    observed: watch::Receiver<Observed>,
    flows: watch::Receiver<SyncStatus>,
    plan: watch::Sender<Option<Arc<FlowPlan>>>,
    ovs_ports: watch::Sender<Option<Vec<TunnelPort>>>,
    view: watch::Sender<NodeView>,
}

/// Steps on every change of its inputs (and when the OVSDB grace period ends) and carries
/// out what the step says; the ordering rules are all in [`NodeState::step`].
async fn lifecycle_loop(
    mut state: NodeState,
    mut ch: LifecycleChannels,
    shutdown: CancellationToken,
) {
    let mut woken_by = "start";
    loop {
        let started = std::time::Instant::now();
        let desired = ch.desired.borrow_and_update().clone();
        let observed = ch.observed.borrow_and_update().clone();
        let flows = ch.flows.borrow_and_update().clone();
        let step = state.step(Inputs {
            objects: desired.as_deref(),
            observed: &observed,
            flows: &flows,
            now: tokio::time::Instant::now(),
        });
        // Keep the Arc when nothing changed: the flow sync tells repairs from new plans by it.
        let plan = step.flow_plan.map(Arc::new);
        ch.plan.send_if_modified(|current| {
            if current.as_deref() == plan.as_deref() {
                return false;
            }
            *current = plan;
            true
        });
        let ports_changed = ch.ovs_ports.send_if_modified(|current| {
            let changed = *current != step.ovs_ports;
            *current = step.ovs_ports;
            changed
        });
        tracing::debug!(
            woken_by,
            elapsed_us = started.elapsed().as_micros() as u64,
            "node loop stepped"
        );
        let plan = ch.plan.borrow().clone();
        ch.view.send_modify(|v| {
            v.ovs = observed;
            v.flows = flows;
            v.plan = plan;
            v.ovs_unavailable = step.ovs_unavailable;
            v.active = step.active;
            v.add_finalizer = step.add_finalizer;
            v.release_finalizer = step.release_finalizer;
        });
        if ports_changed {
            // The OVS reconciler was just woken into this worker's LIFO slot, where no
            // other worker can take it: yield, or it waits for this loop's next step
            // (a cold start's transaction went out ~6 ms later for it).
            tokio::task::yield_now().await;
        }
        let idle_since = tokio::time::Instant::now();
        tokio::select! {
            _ = shutdown.cancelled() => return,
            // A burst of changes (a bulk `kubectl apply` or `delete` brings a node's ports
            // one by one) makes one step: each step re-plans and re-diffs every rule of
            // the node, and a step per change kept an agent with 100 ports beside 5 000
            // rules busy for seconds. A change after a quiet spell is stepped on at once,
            // and so is the first set (the initial list, or standalone's manifests),
            // which comes whole.
            r = ch.desired.changed() => {
                if r.is_err() {
                    return;
                }
                if desired.is_some()
                    && !gather_burst(
                        &mut ch.desired,
                        idle_since,
                        DESIRED_QUIET,
                        DESIRED_MAX_WAIT,
                        &shutdown,
                    )
                    .await
                {
                    return;
                }
                woken_by = "desired";
            }
            r = ch.observed.changed() => if r.is_err() { return } else { woken_by = "ovs" },
            r = ch.flows.changed() => if r.is_err() { return } else { woken_by = "flows" },
            _ = sleep_until(step.wake_at) => woken_by = "timer",
        }
    }
}

/// Quiet time after a change of the desired TunnelPorts (one that came within this long of
/// the loop's last step) before the loop steps on it...
const DESIRED_QUIET: Duration = Duration::from_millis(30);
/// ... and the longest wait for that quiet.
const DESIRED_MAX_WAIT: Duration = Duration::from_millis(500);

#[cfg(test)]
mod tests {
    use tokio::time::{Instant, sleep};

    use super::*;
    use crate::agent::lifecycle::tests::tp;

    /// How long until the loop's next step shows in its view.
    async fn stepped(view_rx: &mut watch::Receiver<NodeView>) -> Duration {
        let started = Instant::now();
        view_rx.changed().await.expect("the loop runs");
        started.elapsed()
    }

    /// The node loop steps at once on a desired change after it sat idle for
    /// [`DESIRED_QUIET`], and gathers one that follows its last step sooner.
    #[tokio::test(start_paused = true)]
    async fn a_lone_port_change_is_stepped_on_at_once_a_burst_after_quiet() {
        let (desired_tx, desired) = watch::channel::<Option<Vec<TunnelPort>>>(None);
        let (_observed_tx, observed) = watch::channel(Observed::default());
        let (_flows_tx, flows) = watch::channel(SyncStatus::default());
        let (plan, _plan_rx) = watch::channel(None);
        let (ovs_ports, _ovs_ports_rx) = watch::channel(None);
        let (view, mut view_rx) = watch::channel(NodeView::default());
        let channels = LifecycleChannels {
            desired,
            observed,
            flows,
            plan,
            ovs_ports,
            view,
        };
        let shutdown = CancellationToken::new();
        let state = NodeState::new(Some("n1".into()), true);
        let task = tokio::spawn(lifecycle_loop(state, channels, shutdown.clone()));
        assert_eq!(stepped(&mut view_rx).await, Duration::ZERO, "the start");
        let (a, b, c) = (
            tp("a", false, false),
            tp("b", false, false),
            tp("c", false, false),
        );
        desired_tx.send_replace(Some(vec![a.clone()]));
        assert_eq!(stepped(&mut view_rx).await, Duration::ZERO, "the first set");
        // Idle for longer than the quiet time: the next change is stepped on at once.
        sleep(DESIRED_QUIET * 2).await;
        desired_tx.send_replace(Some(vec![a.clone(), b.clone()]));
        assert_eq!(stepped(&mut view_rx).await, Duration::ZERO, "a lone change");
        // 5 ms after that step: gathered until quiet.
        sleep(Duration::from_millis(5)).await;
        desired_tx.send_replace(Some(vec![a, b, c]));
        assert_eq!(stepped(&mut view_rx).await, DESIRED_QUIET, "a burst");
        shutdown.cancel();
        task.await.unwrap();
    }
}
