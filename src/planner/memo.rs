//! The planner kept from one pass to the next: a tunnel whose groups of devices and whose
//! nodes did not change keeps its TunnelPorts and placements, so one device's change
//! re-plans only the tunnel it sits behind (1000 ports on 1000 nodes, not all 100 000).
//! The plan is the same as a fresh planner's; only the work differs.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;

use super::{
    DeviceOutcome, Expressions, FastHash, Group, GroupPlacement, NodeInfo, TunnelPlan, accept,
    group, place_tunnel, settled_devices, unique_nodes,
};
use crate::api::{RemoteDevice, TunnelBfd, TunnelDevice, TunnelId, TunnelPort};

/// A TunnelPort's place in [`Planner`]: its name, then its node. Names can collide only
/// between nodes of one tunnel whose names differ but map to the same name part (e.g.
/// `UPPER` beside `upper-<hash>`); keyed by node too, both ports stay in the plan, in the
/// order a fresh planner gives.
type PortKey = (String, String);

/// A group as a memo remembers it: its selector, and its members' entries and BFD in
/// settle order.
type GroupInputs = (Expressions, Vec<(TunnelDevice, Option<TunnelBfd>)>);

/// One tunnel's part of the last plan: what it was computed from and what it came to.
struct TunnelMemo {
    /// Per group, in group order.
    inputs: Vec<GroupInputs>,
    /// Per group, in the same order: where its devices landed.
    placements: Vec<GroupPlacement>,
    /// Its TunnelPorts in [`Planner::ports`].
    ports: Vec<PortKey>,
}

impl TunnelMemo {
    /// Whether `run` (one tunnel's groups, this pass) is what the memo was computed from.
    fn computed_from(&self, run: &[Group<'_>]) -> bool {
        self.inputs.len() == run.len()
            && self
                .inputs
                .iter()
                .zip(run)
                .all(|((expressions, members), g)| {
                    *expressions == g.expressions
                        && members.len() == g.members.len()
                        && members
                            .iter()
                            .zip(&g.members)
                            .all(|((entry, bfd), d)| *entry == d.entry && *bfd == d.bfd)
                })
    }
}

/// The planner with the last pass's results; see the module docs.
#[derive(Default)]
pub struct Planner {
    /// The nodes the memos were placed on: when they change, everything is re-planned.
    nodes: Vec<NodeInfo>,
    tunnels: HashMap<TunnelId, TunnelMemo, FastHash>,
    /// Every planned TunnelPort, in the plan's order.
    ports: BTreeMap<PortKey, Arc<TunnelPort>>,
}

impl Planner {
    /// Computes the desired TunnelPorts, letting devices that `previous` TunnelPorts
    /// already carry keep their claims against newcomers. Claims are settled and devices
    /// validated afresh every time; placement and TunnelPorts only for tunnels whose
    /// groups changed (members, their entries or BFD, their settle order, selectors),
    /// and for all of them when the nodes as the planner sees them changed.
    pub fn plan(
        &mut self,
        devices: &[RemoteDevice],
        nodes: &[Node],
        previous: &[impl Borrow<TunnelPort>],
    ) -> TunnelPlan {
        let mut out = TunnelPlan::default();
        let ordered = settled_devices(devices, previous);
        let accepted = accept(&ordered, &mut out.devices);
        let node_infos = unique_nodes(nodes);
        out.node_issues = node_infos.iter().filter_map(|n| n.issue.clone()).collect();
        if node_infos != self.nodes {
            self.tunnels.clear();
            self.ports.clear();
            self.nodes = node_infos;
        }
        let groups = group(&accepted);
        let mut live = HashSet::with_hasher(FastHash::default());
        // `group` sorts by tunnel first: each run is one tunnel's groups.
        for run in groups.chunk_by(|a, b| a.tunnel == b.tunnel) {
            live.insert(run[0].tunnel);
            let memo = self.tunnel(run);
            for (g, (tunnel_ports, self_tunnel_nodes)) in run.iter().zip(&memo.placements) {
                for device in &g.members {
                    let outcome = DeviceOutcome::Planned {
                        tunnel_ports: Arc::clone(tunnel_ports),
                        self_tunnel_nodes: self_tunnel_nodes.clone(),
                    };
                    out.devices.insert(device.key.clone(), outcome);
                }
            }
        }
        let ports = &mut self.ports;
        self.tunnels.retain(|tunnel, memo| {
            let keep = live.contains(tunnel);
            if !keep {
                for key in &memo.ports {
                    ports.remove(key);
                }
            }
            keep
        });
        out.tunnel_ports = self.ports.values().cloned().collect();
        out
    }

    /// The memo of `run`'s tunnel, placed again unless it was computed from `run`.
    fn tunnel(&mut self, run: &[Group<'_>]) -> &TunnelMemo {
        let tunnel = run[0].tunnel;
        if !self
            .tunnels
            .get(&tunnel)
            .is_some_and(|m| m.computed_from(run))
        {
            if let Some(old) = self.tunnels.remove(&tunnel) {
                for key in &old.ports {
                    self.ports.remove(key);
                }
            }
            let (placements, built) = place_tunnel(run, &self.nodes);
            let mut keys = Vec::with_capacity(built.len());
            for port in built {
                let name = port.metadata.name.clone().unwrap_or_default();
                let key = (name, port.spec.node_name.clone());
                self.ports.insert(key.clone(), Arc::new(port));
                keys.push(key);
            }
            let inputs = run
                .iter()
                .map(|g| {
                    let members = g.members.iter().map(|d| (d.entry.clone(), d.bfd));
                    (g.expressions.clone(), members.collect())
                })
                .collect();
            let memo = TunnelMemo {
                inputs,
                placements,
                ports: keys,
            };
            self.tunnels.insert(tunnel, memo);
        }
        &self.tunnels[&tunnel]
    }
}
