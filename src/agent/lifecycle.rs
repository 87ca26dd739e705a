//! The lifecycle of a node's tunnels as one pure step: every ordering rule lives here.
//!
//! - A TunnelPort's OVS port is created side by side with adding the agent's finalizer,
//!   not after it: waiting for the patch and its echo cost every new port ~50 ms, and the
//!   finalizer is not what cleans up a port whose TunnelPort goes before it lands — the
//!   agent removes any port it owns that no TunnelPort wants (rules first while this
//!   process saw it active; an agent restarted in between removes both in one step, as in
//!   standalone mode). A finalizer that cannot be added (a refused patch) leaves the port
//!   in place and is retried. In standalone mode there are no finalizers.
//! - No rule may point at a port that is not Ready (the flow planner gets ofport -1 for
//!   a pending, refused or replaced port), and no flow plan is made before OVSDB has been
//!   seen once (a plan then would be empty and the flow sync would delete every rule).
//! - On removal the rules go first, then the port: a tunnel that left the desired set
//!   keeps its OVS port until the flow sync confirmed a plan without its rules; then the
//!   finalizer is released, once neither port nor rules are left.
//! - OVSDB out of reach for less than [`OVSDB_GRACE`] reports the last known state.
//! - An unknown desired set (`None`: the first list is not complete) touches nothing.

use std::collections::{BTreeMap, BTreeSet};

use tokio::time::Instant;

use crate::api::{OVS_CLEANUP_FINALIZER, TunnelId, TunnelPort};
use crate::flows::{FlowPlan, FlowPlanner, SyncStatus};
use crate::ovs::Observed;

use super::node::flow_input;

/// How long OVSDB may be unreachable before TunnelPorts report `OvsUnavailable`.
pub const OVSDB_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Where a TunnelPort is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Its port and rules belong in OVS; the agent's finalizer is still to be added.
    NeedsFinalizer,
    /// Its port and rules belong in OVS.
    Active,
    /// Deleted: its rules and port must go; `holds_finalizer` says whether the agent must
    /// then release its finalizer.
    Deleting {
        /// The agent's finalizer is still on the object.
        holds_finalizer: bool,
    },
}

/// The phase of one TunnelPort (`finalizers`: whether this mode uses them at all).
pub fn phase(tp: &TunnelPort, finalizers: bool) -> Phase {
    let holds_finalizer = tp
        .metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == OVS_CLEANUP_FINALIZER);
    if tp.metadata.deletion_timestamp.is_some() {
        Phase::Deleting { holds_finalizer }
    } else if finalizers && !holds_finalizer {
        Phase::NeedsFinalizer
    } else {
        Phase::Active
    }
}

/// What one step sees.
#[derive(Clone, Copy, Debug)]
pub struct Inputs<'a> {
    /// Every TunnelPort of this node (`None`: not completely known yet).
    pub objects: Option<&'a [TunnelPort]>,
    /// What OVSDB shows.
    pub observed: &'a Observed,
    /// What the flow sync last achieved.
    pub flows: &'a SyncStatus,
    /// The time of this step.
    pub now: Instant,
}

/// What one step decided; the node loop carries it out.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Step {
    /// The TunnelPorts whose ports OVS must hold (`None`: touch nothing).
    pub ovs_ports: Option<Vec<TunnelPort>>,
    /// The flows OVS must hold (`None`: touch nothing).
    pub flow_plan: Option<FlowPlan>,
    /// The TunnelPorts whose status is reported: those whose port belongs in OVS (Active,
    /// or still getting the finalizer).
    pub active: BTreeSet<String>,
    /// TunnelPorts that need the finalizer (their ports are in `ovs_ports` meanwhile).
    pub add_finalizer: Vec<String>,
    /// Deleted TunnelPorts with neither port nor rules left: release the finalizer.
    pub release_finalizer: Vec<String>,
    /// OVSDB has been out of reach for longer than [`OVSDB_GRACE`].
    pub ovs_unavailable: bool,
    /// Step again at this time even if nothing changes (the grace period ends).
    pub wake_at: Option<Instant>,
}

/// The memory of the node loop between steps.
#[derive(Clone, Debug)]
pub struct NodeState {
    node: Option<String>,
    finalizers: bool,
    seen_ovs: bool,
    disconnected_since: Option<Instant>,
    /// Active TunnelPorts of the previous step.
    previous: BTreeMap<String, TunnelPort>,
    /// TunnelPorts that left the active set while OVS may still hold their rules.
    /// With the flow sync's round count when they left: only a round completed after that
    /// can confirm their rules gone.
    leaving: BTreeMap<String, (TunnelPort, u64)>,
    /// Deleted TunnelPorts whose rules were confirmed gone (their port may go).
    cleared: BTreeSet<String>,
    /// The flow planner with its memory: a step plans only what changed.
    flows: FlowPlanner,
}

impl NodeState {
    /// The state of the loop of `node` (`None`: take every TunnelPort given, as standalone
    /// mode plans for one node only); `finalizers`: whether TunnelPorts carry the agent's.
    pub fn new(node: Option<String>, finalizers: bool) -> Self {
        NodeState {
            node,
            finalizers,
            seen_ovs: false,
            disconnected_since: None,
            previous: BTreeMap::new(),
            leaving: BTreeMap::new(),
            cleared: BTreeSet::new(),
            flows: FlowPlanner::default(),
        }
    }

    /// One step: everything the loop must do now.
    pub fn step(&mut self, input: Inputs<'_>) -> Step {
        self.seen_ovs |= input.observed.connected;
        let (ovs_unavailable, wake_at) = self.grace(input.observed.connected, input.now);
        let mut step = Step {
            ovs_unavailable,
            wake_at,
            ..Step::default()
        };
        let Some(objects) = input.objects else {
            return step;
        };
        let mine = self.by_phase(objects, &mut step);
        let active: Vec<TunnelPort> = mine.active.values().cloned().collect();
        if self.seen_ovs {
            step.flow_plan = Some(self.flows.plan(&flow_input(&active, input.observed)));
        }
        let rules = Rules::new(input.flows, &active);
        self.track_leaving(&mine, &rules);
        // Every deleted one is in `leaving` until its rules are confirmed gone; then its
        // port goes, and then the finalizer.
        let observed = input.observed;
        step.release_finalizer = mine
            .deleting_with_finalizer
            .iter()
            .filter_map(|tp| tp.metadata.name.clone())
            .filter(|name| {
                !self.leaving.contains_key(name)
                    && observed.connected
                    && !observed.ports.contains_key(name)
            })
            .collect();
        let mut ports = active;
        ports.extend(self.leaving.values().map(|(tp, _)| tp.clone()));
        step.ovs_ports = Some(ports);
        step.active = mine.active.keys().cloned().collect();
        self.previous = mine.active;
        step
    }

    /// Whether OVSDB counts as unavailable now, and when that changes by itself.
    fn grace(&mut self, connected: bool, now: Instant) -> (bool, Option<Instant>) {
        if connected {
            self.disconnected_since = None;
            return (false, None);
        }
        let since = *self.disconnected_since.get_or_insert(now);
        let ends = since + OVSDB_GRACE;
        if now >= ends {
            (true, None)
        } else {
            (false, Some(ends))
        }
    }

    /// This node's TunnelPorts (the spec is the truth: the label is a hash for long node
    /// names), once each, sorted into phases; finalizers to add go into `step`.
    fn by_phase(&self, objects: &[TunnelPort], step: &mut Step) -> Mine {
        let mut mine = Mine::default();
        let mut seen = BTreeSet::new();
        for tp in objects {
            let Some(name) = tp.metadata.name.clone() else {
                continue;
            };
            if self.node.as_ref().is_some_and(|n| *n != tp.spec.node_name)
                || !seen.insert(name.clone())
            {
                continue;
            }
            match phase(tp, self.finalizers) {
                p @ (Phase::NeedsFinalizer | Phase::Active) => {
                    if p == Phase::NeedsFinalizer {
                        step.add_finalizer.push(name.clone());
                    }
                    mine.active.insert(name, tp.clone());
                }
                Phase::Deleting { holds_finalizer } => {
                    if holds_finalizer {
                        mine.deleting_with_finalizer.push(tp.clone());
                    }
                }
            }
        }
        mine
    }

    /// Keeps every TunnelPort that left the active set — and every deleted one still
    /// holding the finalizer, even if this process never saw it active — in `leaving`
    /// until the flow sync confirmed a plan without its rules; one that comes back is
    /// simply active again.
    fn track_leaving(&mut self, mine: &Mine, rules: &Rules<'_>) {
        let gone_from_active = self
            .previous
            .iter()
            .filter(|(name, _)| !mine.active.contains_key(*name))
            .map(|(name, tp)| (name.clone(), tp));
        // A deleted one whose rules were already confirmed gone is not taken in again.
        let deleting: Vec<(String, &TunnelPort)> = mine
            .deleting_with_finalizer
            .iter()
            .filter_map(|tp| Some((tp.metadata.name.clone()?, tp)))
            .filter(|(name, _)| !self.cleared.contains(name))
            .collect();
        for (name, tp) in gone_from_active.chain(deleting) {
            self.leaving
                .entry(name)
                .or_insert_with(|| (tp.clone(), rules.rounds));
        }
        let mut cleared = Vec::new();
        self.leaving.retain(|name, (tp, since)| {
            let keep = !mine.active.contains_key(name) && rules.may_hold(tp, *since);
            if !keep && !mine.active.contains_key(name) {
                cleared.push(name.clone());
            }
            keep
        });
        // Remember confirmations only while the object is still being deleted.
        let still_deleting: BTreeSet<&String> = mine
            .deleting_with_finalizer
            .iter()
            .filter_map(|tp| tp.metadata.name.as_ref())
            .collect();
        self.cleared.retain(|name| still_deleting.contains(name));
        self.cleared.extend(cleared);
    }
}

/// The phases of this node's TunnelPorts.
#[derive(Default)]
struct Mine {
    active: BTreeMap<String, TunnelPort>,
    deleting_with_finalizer: Vec<TunnelPort>,
}

/// What OVS may still hold of a tunnel's rules.
struct Rules<'a> {
    /// The plan the flow sync last confirmed OVS holds.
    applied: Option<&'a FlowPlan>,
    /// Its successful rounds so far.
    rounds: u64,
    /// Interfaces of the active TunnelPorts (a duplicate's interface is another's).
    active: BTreeSet<String>,
}

impl<'a> Rules<'a> {
    fn new(flows: &'a SyncStatus, active: &[TunnelPort]) -> Self {
        Rules {
            applied: flows.applied.as_deref(),
            rounds: flows.rounds,
            active: active
                .iter()
                .filter_map(|tp| TunnelId::of(&tp.spec).ok())
                .map(|id| id.interface_name())
                .collect(),
        }
    }

    /// Whether OVS may still hold rules of `tp`'s tunnel that belong to `tp`, which left
    /// when the flow sync had done `since` rounds: yes until a round completed after that
    /// (an older confirmed plan may predate rules a later one is still installing), then
    /// only if the plan it confirmed has rules for the tunnel. A tunnel without a valid
    /// identity could never have had rules, and rules of an interface an active
    /// TunnelPort claims are that one's.
    fn may_hold(&self, tp: &TunnelPort, since: u64) -> bool {
        let Ok(id) = TunnelId::of(&tp.spec) else {
            return false;
        };
        let interface = id.interface_name();
        if self.active.contains(&interface) {
            return false;
        }
        match self.applied {
            Some(plan) if self.rounds > since => plan.installed_per_tunnel.contains_key(&interface),
            _ => true,
        }
    }
}

#[cfg(test)]
#[path = "lifecycle_tests.rs"]
pub(super) mod tests;
