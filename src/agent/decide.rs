//! What the agent must write, decided by a pure function of its TunnelPorts and the view
//! of the node loop.

use std::collections::BTreeSet;

use k8s_openapi::jiff::Timestamp;

use crate::api::{OVS_CLEANUP_FINALIZER, TunnelPort, TunnelPortStatus, names};

use super::node::NodeView;
use super::status::tunnel_port_status;

/// The writes and the desired set for one round.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decisions {
    /// The complete desired set for the node loop (`None` before the first full list).
    pub desired: Option<Vec<TunnelPort>>,
    /// TunnelPorts that need the finalizer before their OVS port may be created.
    pub add_finalizer: Vec<String>,
    /// Deleted TunnelPorts whose OVS port and rules are gone: release the finalizer.
    pub release_finalizer: Vec<String>,
    /// Status to write (only where it differs from what the object shows).
    pub status: Vec<(String, TunnelPortStatus)>,
}

fn has_finalizer(tp: &TunnelPort) -> bool {
    tp.metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == OVS_CLEANUP_FINALIZER)
}

/// Whether nothing of `tp` is left in OVS: no port (as seen by a connected monitor) and no
/// flow of its tunnel in the last plan OVS confirmed.
fn gone_from_ovs(tp: &TunnelPort, view: &NodeView) -> bool {
    let name = tp.metadata.name.as_deref().unwrap_or_default();
    let Ok(remote) = crate::api::validate::parse_ip(&tp.spec.remote_ip) else {
        // Such a port could never have been created.
        return view.ovs.connected && !view.ovs.ports.contains_key(name);
    };
    let iface = names::interface_name(tp.spec.tunnel_type, remote, tp.spec.dst_port);
    // Gone from the plan OVS confirmed, and from the current plan (so it is not on its way back).
    let flows_gone = view
        .flows
        .applied
        .as_ref()
        .is_some_and(|p| !p.installed_per_tunnel.contains_key(&iface))
        && view
            .plan
            .as_ref()
            .is_some_and(|p| !p.installed_per_tunnel.contains_key(&iface));
    view.ovs.connected && !view.ovs.ports.contains_key(name) && flows_gone
}

/// Decides one round. `objects` are the TunnelPorts the watch shows for this node (`None`
/// until the first list is complete: then nothing is desired, so nothing is deleted).
pub fn decide(
    node: &str,
    objects: Option<&[TunnelPort]>,
    view: &NodeView,
    now: Timestamp,
) -> Decisions {
    let Some(objects) = objects else {
        return Decisions::default();
    };
    // The label is a hash for long node names; the spec is the truth.
    let mine: Vec<&TunnelPort> = objects
        .iter()
        .filter(|tp| tp.spec.node_name == node)
        .collect();
    let mut out = Decisions::default();
    let mut desired = Vec::new();
    let mut seen = BTreeSet::new();
    for tp in mine {
        let Some(name) = tp.metadata.name.clone() else {
            continue;
        };
        if !seen.insert(name.clone()) {
            continue;
        }
        let deleting = tp.metadata.deletion_timestamp.is_some();
        match (deleting, has_finalizer(tp)) {
            (false, true) => {
                let status = tunnel_port_status(tp, view, now);
                if tp.status.as_ref() != Some(&status) {
                    out.status.push((name, status));
                }
                desired.push(tp.clone());
            }
            // The finalizer first, so the port is never in OVS without a way to clean it up.
            (false, false) => out.add_finalizer.push(name),
            (true, true) if gone_from_ovs(tp, view) => out.release_finalizer.push(name),
            (true, _) => {}
        }
    }
    out.desired = Some(desired);
    out
}
