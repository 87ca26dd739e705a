//! The pure heart of the controller: from what the caches hold to the list of writes.
//!
//! Nothing here does I/O. A write is decided only when the cluster differs from what it
//! should be, so a resync with nothing new decides nothing.

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::jiff::Timestamp;
use kube::Resource;

use crate::api::conditions::{self, NODES_SKIPPED, READY, device_reason};
use crate::api::{
    DeviceKey, MANAGED_BY_LABEL, MANAGER, OVS_CLEANUP_FINALIZER, RemoteDevice, RemoteDeviceStatus,
    TunnelPort,
};
use crate::planner::{self, NodeIssue, TunnelPlan};
use crate::telemetry::TunnelPortState;

use super::status;

/// Everything the caches hold at one moment.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Every RemoteDevice, all namespaces.
    pub devices: Vec<RemoteDevice>,
    /// Every Node.
    pub nodes: Vec<Node>,
    /// The TunnelPorts this controller manages (label-selected).
    pub tunnel_ports: Vec<TunnelPort>,
}

/// An event to publish about an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventSpec {
    /// Warning (something needs attention) or Normal.
    pub warning: bool,
    /// PascalCase reason.
    pub reason: &'static str,
    /// Human-readable note.
    pub note: String,
}

/// Event reasons.
pub mod event_reason {
    /// A TunnelPort was created.
    pub const CREATED: &str = "TunnelPortCreated";
    /// A TunnelPort was deleted.
    pub const DELETED: &str = "TunnelPortDeleted";
    /// A device's spec breaks a rule.
    pub const INVALID: &str = "InvalidSpec";
    /// A device conflicts with another.
    pub const CONFLICT: &str = "Conflict";
    /// A device's VTEP is some selected node's own tunnel IP.
    pub const SELF_TUNNEL: &str = "SelfTunnel";
}

/// One write, in the order [`decide`] returns them.
// A pass builds a handful of these once; boxing the large variants would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Remove the agent's finalizer from a TunnelPort whose node is gone (no agent will).
    ReleaseFinalizer {
        /// TunnelPort name.
        name: String,
        /// Resource version as stored: the patch carries it, so a concurrent change is
        /// refused (409) instead of overwritten.
        resource_version: Option<String>,
        /// Finalizers to keep.
        keep: Vec<String>,
    },
    /// Server-side apply of a desired TunnelPort.
    Apply {
        /// The object to apply, shared with the plan it came from (a first pass applies
        /// every desired port: copies would be held beside the plan's until written).
        port: Arc<TunnelPort>,
        /// Whether no such object exists yet (an event says so once it does).
        create: bool,
    },
    /// Delete a managed TunnelPort nothing needs any more.
    Delete {
        /// TunnelPort name.
        name: String,
        /// UID precondition, so a recreated object of the same name is not hit.
        uid: Option<String>,
        /// Why, for the event.
        note: String,
    },
    /// Write a RemoteDevice's status, then publish its events.
    DeviceStatus {
        /// Which device.
        key: DeviceKey,
        /// The whole status (server-side apply).
        status: RemoteDeviceStatus,
        /// The device, for events.
        reference: ObjectReference,
        /// Events to publish once the status is written.
        events: Vec<EventSpec>,
        /// Only the counts moved ([`status::progress_only`]): the writer may hold it back
        /// for a while.
        progress_only: bool,
    },
}

/// What [`decide`] found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PassDecisions {
    /// Writes, in order: finalizer releases, applies, deletions, device statuses.
    pub actions: Vec<Action>,
    /// Managed TunnelPorts by state, for the `tunnelports` gauge.
    pub tunnel_port_states: Vec<(TunnelPortState, i64)>,
    /// Nodes whose tunnel IP annotation is unusable (logged).
    pub node_issues: Vec<NodeIssue>,
}

/// Whether the TunnelPort carries the managed-by label of this controller.
pub fn is_managed(port: &TunnelPort) -> bool {
    port.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_BY_LABEL))
        .is_some_and(|v| v == MANAGER)
}

fn same_owner(a: &OwnerReference, b: &OwnerReference) -> bool {
    a.api_version == b.api_version && a.kind == b.kind && a.name == b.name && a.uid == b.uid
}

/// Whether applying `desired` would change `stored`: its spec, one of our labels or one
/// of our owner references differs. Fields others own (finalizers, other labels) are
/// not ours to compare.
pub fn needs_apply(desired: &TunnelPort, stored: &TunnelPort) -> bool {
    if desired.spec != stored.spec {
        return true;
    }
    // Borrowed, not cloned: this runs for every TunnelPort on every pass.
    let stored_labels = stored.metadata.labels.as_ref();
    let labels_differ = desired
        .metadata
        .labels
        .iter()
        .flatten()
        .any(|(k, v)| stored_labels.and_then(|l| l.get(k)) != Some(v));
    let stored_owners = stored
        .metadata
        .owner_references
        .as_deref()
        .unwrap_or_default();
    let owners_differ = desired
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|want| !stored_owners.iter().any(|have| same_owner(want, have)));
    labels_differ || owners_differ
}

fn state_of(port: &TunnelPort) -> TunnelPortState {
    if port.is_ready() {
        TunnelPortState::Ready
    } else if status::tunnel_port_failed(port).is_some() {
        TunnelPortState::Failed
    } else {
        TunnelPortState::Pending
    }
}

fn condition_text(status: Option<&RemoteDeviceStatus>) -> (Option<&str>, Option<&str>) {
    let ready = status.and_then(|s| s.conditions.iter().find(|c| c.type_ == READY));
    (
        ready.map(|c| c.reason.as_str()),
        ready.map(|c| c.message.as_str()),
    )
}

/// Events for a device whose status changes from `old` to `new`: a Warning when it turns
/// invalid or conflicting (or the reason text changes), and when nodes are skipped as
/// self-tunnels that were not before.
pub fn device_events(old: Option<&RemoteDeviceStatus>, new: &RemoteDeviceStatus) -> Vec<EventSpec> {
    let (old_reason, old_message) = condition_text(old);
    let (new_reason, new_message) = condition_text(Some(new));
    let (Some(new_reason), Some(new_message)) = (new_reason, new_message) else {
        return Vec::new();
    };
    let mut events = Vec::new();
    let changed = old_reason != Some(new_reason) || old_message != Some(new_message);
    if changed && new_reason == device_reason::INVALID_SPEC {
        events.push(EventSpec {
            warning: true,
            reason: event_reason::INVALID,
            note: new_message.to_string(),
        });
    }
    if changed && new_reason == device_reason::CONFLICT {
        events.push(EventSpec {
            warning: true,
            reason: event_reason::CONFLICT,
            note: new_message.to_string(),
        });
    }
    // Nodes newly skipped (the condition appeared, or names other nodes now).
    let skipped = |s: Option<&RemoteDeviceStatus>| {
        s.and_then(|s| conditions::find(&s.conditions, NODES_SKIPPED))
            .filter(|c| c.status == "True")
            .map(|c| c.message.clone())
    };
    if let Some(note) = skipped(Some(new))
        && skipped(old).as_ref() != Some(&note)
    {
        events.push(EventSpec {
            warning: true,
            reason: event_reason::SELF_TUNNEL,
            note,
        });
    }
    events
}

/// "vxlan tunnel from node n1 to VTEP 192.0.2.10 carrying 2 device(s)", for events.
pub(super) fn tunnel_summary(port: &TunnelPort) -> String {
    format!(
        "{} tunnel from node {} to VTEP {} carrying {} device(s)",
        port.spec.tunnel_type,
        port.spec.node_name,
        port.spec.remote_ip,
        port.spec.devices.len()
    )
}

/// Decides every write for `snapshot` at time `now`, with a fresh planner (the controller
/// keeps one across passes and calls [`decide_with_plan`]; the decisions are the same).
pub fn decide(snapshot: &Snapshot, now: Timestamp) -> PassDecisions {
    let planned: TunnelPlan =
        planner::plan_tunnels_keeping(&snapshot.devices, &snapshot.nodes, &snapshot.tunnel_ports);
    decide_with_plan(snapshot, &planned, now)
}

/// [`decide`] with the plan already computed.
pub fn decide_with_plan(
    snapshot: &Snapshot,
    planned: &TunnelPlan,
    now: Timestamp,
) -> PassDecisions {
    let index = PassIndex::new(snapshot, planned);
    let mut actions = orphan_finalizers(&index);
    actions.extend(applies(&index));
    actions.extend(deletions(&index));
    let views = status::port_views(&index.desired, &index.stored);
    actions.extend(device_statuses(snapshot, planned, &views, now));
    let mut counts: BTreeMap<TunnelPortState, i64> = BTreeMap::new();
    for port in &index.managed {
        *counts.entry(state_of(port)).or_default() += 1;
    }
    PassDecisions {
        actions,
        tunnel_port_states: counts.into_iter().collect(),
        node_issues: planned.node_issues.clone(),
    }
}

/// What one pass compares: the TunnelPorts stored and desired by name, and the nodes.
struct PassIndex<'a> {
    managed: Vec<&'a TunnelPort>,
    stored: BTreeMap<&'a str, &'a TunnelPort>,
    desired: BTreeMap<&'a str, &'a Arc<TunnelPort>>,
    node_names: BTreeSet<&'a str>,
}

/// A TunnelPort (or a shared one) keyed by its name; unnamed ones cannot be written.
fn by_name<P: Borrow<TunnelPort>>(port: &P) -> Option<(&str, &P)> {
    Some((port.borrow().metadata.name.as_deref()?, port))
}

impl<'a> PassIndex<'a> {
    fn new(snapshot: &'a Snapshot, planned: &'a TunnelPlan) -> Self {
        let managed: Vec<&TunnelPort> = snapshot
            .tunnel_ports
            .iter()
            .filter(|p| is_managed(p))
            .collect();
        PassIndex {
            stored: managed.iter().copied().filter_map(by_name).collect(),
            desired: planned.tunnel_ports.iter().filter_map(by_name).collect(),
            node_names: snapshot
                .nodes
                .iter()
                .filter_map(|n| n.metadata.name.as_deref())
                .collect(),
            managed,
        }
    }

    fn node_exists(&self, port: &TunnelPort) -> bool {
        self.node_names.contains(port.spec.node_name.as_str())
    }
}

/// Nobody will run the agent's cleanup on a node that no longer exists: release its
/// finalizer there.
fn orphan_finalizers(index: &PassIndex<'_>) -> Vec<Action> {
    let mut actions = Vec::new();
    for (name, port) in &index.stored {
        let finalizers = port.metadata.finalizers.as_deref().unwrap_or_default();
        if index.node_exists(port) || !finalizers.iter().any(|f| f == OVS_CLEANUP_FINALIZER) {
            continue;
        }
        let keep = finalizers
            .iter()
            .filter(|f| *f != OVS_CLEANUP_FINALIZER)
            .cloned()
            .collect();
        actions.push(Action::ReleaseFinalizer {
            name: name.to_string(),
            resource_version: port.metadata.resource_version.clone(),
            keep,
        });
    }
    actions
}

/// Desired TunnelPorts that are missing or differ from what is stored.
fn applies(index: &PassIndex<'_>) -> Vec<Action> {
    let mut actions = Vec::new();
    for (name, want) in &index.desired {
        match index.stored.get(name) {
            // Terminating: let it go; its deletion event brings a fresh create.
            Some(have) if have.metadata.deletion_timestamp.is_some() => {}
            Some(have) if !needs_apply(want, have) => {}
            have => actions.push(Action::Apply {
                port: Arc::clone(want),
                create: have.is_none(),
            }),
        }
    }
    actions
}

/// Stored TunnelPorts nothing needs any more, with the reason for the event.
fn deletions(index: &PassIndex<'_>) -> Vec<Action> {
    let mut actions = Vec::new();
    for (name, port) in &index.stored {
        if index.desired.contains_key(name) || port.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let note = if index.node_exists(port) {
            format!("No device needs the {} any more", tunnel_summary(port))
        } else {
            format!(
                "Node {} is gone; deleted its {}",
                port.spec.node_name,
                tunnel_summary(port)
            )
        };
        actions.push(Action::Delete {
            name: name.to_string(),
            uid: port.metadata.uid.clone(),
            note,
        });
    }
    actions
}

/// Device statuses that changed, with their events, in namespace/name order.
fn device_statuses(
    snapshot: &Snapshot,
    planned: &TunnelPlan,
    views: &status::PortViews<'_>,
    now: Timestamp,
) -> Vec<Action> {
    let mut devices: Vec<&RemoteDevice> = snapshot
        .devices
        .iter()
        .filter(|d| d.metadata.deletion_timestamp.is_none())
        .collect();
    devices.sort_by_key(|d| DeviceKey::of(d));
    let mut actions = Vec::new();
    for device in devices {
        let key = DeviceKey::of(device);
        let Some(outcome) = planned.devices.get(&key) else {
            continue;
        };
        let new = status::device_status(device, outcome, views, now);
        if device.status.as_ref() == Some(&new) {
            continue;
        }
        let events = device_events(device.status.as_ref(), &new);
        let progress_only = status::progress_only(device.status.as_ref(), &new);
        actions.push(Action::DeviceStatus {
            key,
            status: new,
            reference: device.object_ref(&()),
            events,
            progress_only,
        });
    }
    actions
}
