//! What the agent must write to the API, decided by a pure function of its TunnelPorts and
//! the view of the node loop (whose lifecycle step decided the order of things).

use std::collections::BTreeMap;

use k8s_openapi::jiff::Timestamp;

use crate::api::{TunnelPort, TunnelPortStatus};

use super::lifecycle::{Phase, phase};
use super::node::NodeView;
use super::status::tunnel_port_status;

/// The writes and the desired set for one round.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AgentWrites {
    /// Every TunnelPort of this node, for the node loop (`None` before the first full list).
    pub desired: Option<Vec<TunnelPort>>,
    /// TunnelPorts that need the finalizer (their OVS ports are created meanwhile).
    pub add_finalizer: Vec<String>,
    /// Deleted TunnelPorts whose OVS port and rules are gone: release the finalizer.
    pub release_finalizer: Vec<String>,
    /// Status to write (only where it differs from what the object shows).
    pub status: Vec<(String, TunnelPortStatus)>,
}

/// Decides one round. `objects` are the TunnelPorts the watch shows for this node (`None`
/// until the first list is complete: then nothing is desired, so nothing is deleted). The
/// node loop is fed all of them; its lifecycle step says which need or may lose the
/// finalizer, and which are active (their status is written when it changed).
pub fn decide_writes(
    node: &str,
    objects: Option<&[TunnelPort]>,
    view: &NodeView,
    now: Timestamp,
) -> AgentWrites {
    let Some(objects) = objects else {
        return AgentWrites::default();
    };
    let mine: BTreeMap<&str, &TunnelPort> = objects
        .iter()
        .filter(|tp| tp.spec.node_name == node)
        .filter_map(|tp| Some((tp.metadata.name.as_deref()?, tp)))
        .collect();
    let still = |names: &[String], phase_now: fn(Phase) -> bool| -> Vec<String> {
        names
            .iter()
            .filter(|n| {
                mine.get(n.as_str())
                    .is_some_and(|tp| phase_now(phase(tp, true)))
            })
            .cloned()
            .collect()
    };
    let status = mine
        .iter()
        // Not once it is being deleted, whatever the last step saw.
        .filter(|(name, tp)| {
            view.active.contains(**name) && !matches!(phase(tp, true), Phase::Deleting { .. })
        })
        .filter_map(|(name, tp)| {
            let status = tunnel_port_status(tp, view, now);
            (tp.status.as_ref() != Some(&status)).then(|| (name.to_string(), status))
        })
        .collect();
    AgentWrites {
        desired: Some(objects.iter().map(node_input).collect()),
        add_finalizer: still(&view.add_finalizer, |p| p == Phase::NeedsFinalizer),
        release_finalizer: still(&view.release_finalizer, |p| {
            p == Phase::Deleting {
                holds_finalizer: true,
            }
        }),
        status,
    }
}

/// What the node loop reads of a TunnelPort: its name, spec, finalizers and deletion.
/// Status and versions are left out, so a status write (the agent's own, echoed by the
/// watch) does not make the node loop re-plan every rule of the node.
pub fn node_input(tp: &TunnelPort) -> TunnelPort {
    let mut input = TunnelPort::new(
        tp.metadata.name.as_deref().unwrap_or_default(),
        tp.spec.clone(),
    );
    input.metadata.uid = tp.metadata.uid.clone();
    input.metadata.generation = tp.metadata.generation;
    input.metadata.labels = tp.metadata.labels.clone();
    input.metadata.finalizers = tp.metadata.finalizers.clone();
    input.metadata.deletion_timestamp = tp.metadata.deletion_timestamp.clone();
    input
}
