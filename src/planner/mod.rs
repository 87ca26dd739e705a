//! The planner: RemoteDevices + Nodes → the TunnelPorts every node must have.
//!
//! Pure and total: no I/O, no panics, and the same output for any order of the input.
//! [`Planner`] keeps a pass's results for the next one; its output is still that of a
//! fresh planner for the same input.
//! Devices that cannot be planned (invalid, conflicting) are excluded and reported, so one
//! bad object never blocks the others.

mod memo;
mod nodes;
#[cfg(test)]
mod tests;

use std::borrow::Borrow;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::core::{Selector, SelectorExt};

use crate::api::validate::{self, FieldError};
use crate::api::{
    DeviceKey, MANAGED_BY_LABEL, MANAGER, MAX_DEVICES_PER_TUNNEL, NODE_LABEL, RemoteDevice,
    RemoteDeviceSpec, TunnelBfd, TunnelDevice, TunnelId, TunnelPort, TunnelPortSpec, device_bfd,
    names, tunnel_bfd,
};

pub use memo::Planner;
pub use nodes::{NodeInfo, NodeIssue};

/// What the planner decided for one device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceOutcome {
    /// Planned onto these nodes.
    Planned {
        /// Node name → name of the TunnelPort that carries the device there; shared by
        /// the devices of one (tunnel, selector) group, which land on the same nodes.
        tunnel_ports: Arc<BTreeMap<String, String>>,
        /// Selected nodes skipped because the device's VTEP is the node's own tunnel IP.
        self_tunnel_nodes: Vec<String>,
    },
    /// The spec breaks a validation rule; nothing is planned for it.
    Invalid(Vec<FieldError>),
    /// Another device (older, or first by namespace/name) holds what this one claims.
    Conflict {
        /// The device that keeps the claim.
        with: Option<DeviceKey>,
        /// What is claimed twice.
        message: String,
    },
}

/// The planner's answer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TunnelPlan {
    /// Desired TunnelPorts, sorted by name; shared with the [`Planner`] that keeps them
    /// for the next pass.
    pub tunnel_ports: Vec<Arc<TunnelPort>>,
    /// Outcome of every input device.
    pub devices: BTreeMap<DeviceKey, DeviceOutcome>,
    /// Nodes whose tunnel IP could not be worked out as configured.
    pub node_issues: Vec<NodeIssue>,
}

/// A device that passed validation, with its fields parsed and normalized.
struct ValidDevice {
    key: DeviceKey,
    tunnel: TunnelId,
    selector: Option<Selector>,
    entry: TunnelDevice,
    /// The BFD it asks for, defaults applied (`None` = off).
    bfd: Option<TunnelBfd>,
}

/// Namespace/name of every device a stored TunnelPort carries, borrowed: every node's
/// port repeats the same devices, so owned keys would cost nodes × devices allocations.
type Holders<'a> = HashSet<(&'a str, &'a str), FastHash>;

/// The hasher of the planner's indexes: they are rebuilt every pass over every device and
/// stored port, where std's SipHash was a visible share of the pass.
pub(crate) type FastHash = foldhash::fast::RandomState;

/// Where a device stands in [`settle_order`]: newcomer?, creation time, namespace/name.
type SettleOrder<'a> = (
    bool,
    Option<k8s_openapi::jiff::Timestamp>,
    (&'a str, &'a str),
);

/// Order in which claims are settled: devices that already hold their claim on a stored
/// TunnelPort first (so a newcomer can never take a claim away, even when creation times
/// tie or are missing), then older objects, then namespace/name. Objects read from files
/// have no creation time and are settled by namespace/name after the sitting holders.
fn settle_order<'a>(device: &'a RemoteDevice, holders: &Holders<'_>) -> SettleOrder<'a> {
    let key = DeviceKey::borrowed(device);
    (
        !holders.contains(&key),
        device.metadata.creation_timestamp.as_ref().map(|t| t.0),
        key,
    )
}

/// Computes the desired TunnelPorts from all RemoteDevices and Nodes, with no previous
/// state (claims settled by age, then namespace/name).
pub fn plan_tunnels(devices: &[RemoteDevice], nodes: &[Node]) -> TunnelPlan {
    plan_tunnels_keeping(devices, nodes, &[] as &[TunnelPort])
}

/// Computes the desired TunnelPorts, letting devices that `previous` TunnelPorts already
/// carry keep their claims against newcomers. A [`Planner`] that starts empty: the
/// controller keeps one across passes instead, which gives the same plan.
pub fn plan_tunnels_keeping(
    devices: &[RemoteDevice],
    nodes: &[Node],
    previous: &[impl Borrow<TunnelPort>],
) -> TunnelPlan {
    Planner::default().plan(devices, nodes, previous)
}

/// Live devices, one per key, in the order their claims are settled ([`settle_order`]).
fn settled_devices<'a>(
    devices: &'a [RemoteDevice],
    previous: &[impl Borrow<TunnelPort>],
) -> Vec<&'a RemoteDevice> {
    // Each distinct list once: the nodes' ports to a VTEP share theirs (the controller's
    // cache makes them one), and at 100 000 ports walking every copy was a million
    // insertions a pass.
    let mut lists = HashSet::with_hasher(FastHash::default());
    let holders: Holders<'_> = previous
        .iter()
        .map(Borrow::borrow)
        .filter(|tp| lists.insert(Arc::as_ptr(&tp.spec.devices)))
        .flat_map(|tp| tp.spec.devices.iter())
        .map(|d| (d.namespace.as_str(), d.name.as_str()))
        .collect();
    // One object per key (the first in settle order), whatever the input order.
    let mut unique: HashMap<(&str, &str), (SettleOrder<'a>, &RemoteDevice), FastHash> =
        HashMap::default();
    for device in devices
        .iter()
        .filter(|d| d.metadata.deletion_timestamp.is_none())
    {
        let order = settle_order(device, &holders);
        match unique.entry(order.2) {
            Entry::Vacant(slot) => {
                slot.insert((order, device));
            }
            Entry::Occupied(mut slot) if order < slot.get().0 => {
                slot.insert((order, device));
            }
            Entry::Occupied(_) => {}
        }
    }
    // The sort key ends in the unique namespace/name: the hash map's order does not show.
    let mut ordered: Vec<_> = unique.into_values().collect();
    ordered.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    ordered.into_iter().map(|(_, device)| device).collect()
}

/// Live nodes, one per name; for duplicate names (only possible from files) the one with
/// the smallest content wins, so the result does not depend on input order.
fn unique_nodes(nodes: &[Node]) -> Vec<NodeInfo> {
    let mut infos: Vec<NodeInfo> = nodes
        .iter()
        .filter(|n| n.metadata.deletion_timestamp.is_none())
        .map(NodeInfo::from_node)
        .collect();
    infos.sort_by(|a, b| {
        a.name
            .cmp(&b.name)
            .then_with(|| format!("{a:?}").cmp(&format!("{b:?}")))
    });
    infos.dedup_by(|a, b| a.name == b.name);
    infos
}

/// The devices one tunnel port carries (one list, shared by every node's port that
/// carries the same groups) and the BFD settings they merge to.
type CarriedList = (Arc<Vec<TunnelDevice>>, Option<TunnelBfd>);

/// Accepted devices that share a tunnel and a node selector: they land on exactly the
/// same nodes, so the selector is evaluated once per group and node, not per device.
struct Group<'a> {
    tunnel: TunnelId,
    selector: Option<&'a Selector>,
    /// The selector's expressions, by which groups are told apart.
    expressions: Expressions,
    members: Vec<&'a ValidDevice>,
}

/// A node selector as a comparable value (`None` = every node).
type Expressions = Option<Vec<kube::core::Expression>>;

/// The groups of `accepted`, in (tunnel, selector) order so the result does not depend on
/// input order. Selectors are compared by their expressions: two spellings of the same
/// selection only make two groups, which place the same way.
fn group(accepted: &[ValidDevice]) -> Vec<Group<'_>> {
    type Members<'a> = (Option<&'a Selector>, Vec<&'a ValidDevice>);
    let mut groups: BTreeMap<(TunnelId, Expressions), Members<'_>> = BTreeMap::new();
    for device in accepted {
        let expressions = device.selector.clone().map(|s| s.into_iter().collect());
        groups
            .entry((device.tunnel, expressions))
            .or_insert_with(|| (device.selector.as_ref(), Vec::new()))
            .1
            .push(device);
    }
    groups
        .into_iter()
        .map(|((tunnel, expressions), (selector, members))| Group {
            tunnel,
            selector,
            expressions,
            members,
        })
        .collect()
}

/// A group's devices on one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Placement {
    /// The selector leaves the node out.
    NotSelected,
    /// Selected, but the VTEP is the node's own tunnel IP.
    SelfTunnel,
    /// The node's TunnelPort to the VTEP carries them.
    Carried,
}

impl Group<'_> {
    /// Where the group's devices stand on `node`.
    fn placement(&self, node: &NodeInfo) -> Placement {
        if !self.selector.is_none_or(|s| s.matches(&node.labels)) {
            Placement::NotSelected
        } else if node.tunnel_ips.contains(&self.tunnel.remote_ip()) {
            Placement::SelfTunnel
        } else {
            Placement::Carried
        }
    }

    /// The sorted device list and merged BFD of a TunnelPort carrying these groups.
    fn carried(groups: &[&Group<'_>]) -> CarriedList {
        let members = || groups.iter().flat_map(|g| &g.members);
        let bfd = tunnel_bfd(members().map(|d| d.bfd));
        let mut devices: Vec<TunnelDevice> = members().map(|d| d.entry.clone()).collect();
        devices.sort();
        (Arc::new(devices), bfd)
    }
}

/// Where one group's devices landed: node → name of the TunnelPort that carries them
/// there, and the selected nodes skipped as self-tunnels.
type GroupPlacement = (Arc<BTreeMap<String, String>>, Vec<String>);

/// Puts the groups of one tunnel (`run`, all with the same tunnel) on the nodes their
/// selectors pick (never on a node whose own tunnel IP is the VTEP): where each group
/// landed, in `run` order, and one TunnelPort per node that carries any of them.
fn place_tunnel(
    run: &[Group<'_>],
    node_infos: &[NodeInfo],
) -> (Vec<GroupPlacement>, Vec<TunnelPort>) {
    let mut placed: Vec<(BTreeMap<String, String>, Vec<String>)> =
        vec![Default::default(); run.len()];
    // Nodes that carry the same groups carry the same list: built once.
    let mut lists: BTreeMap<Vec<usize>, CarriedList> = BTreeMap::new();
    let mut ports = Vec::new();
    for node in node_infos {
        let mut carried = Vec::new();
        for (i, g) in run.iter().enumerate() {
            match g.placement(node) {
                Placement::NotSelected => {}
                Placement::SelfTunnel => placed[i].1.push(node.name.clone()),
                Placement::Carried => {
                    let name = g.tunnel.tunnel_port_name(&node.name);
                    placed[i].0.insert(node.name.clone(), name);
                    carried.push(i);
                }
            }
        }
        if carried.is_empty() {
            continue;
        }
        let (devices, bfd) = lists.entry(carried).or_insert_with_key(|carried| {
            let members: Vec<&Group<'_>> = carried.iter().map(|&i| &run[i]).collect();
            Group::carried(&members)
        });
        ports.push(tunnel_port(node, run[0].tunnel, Arc::clone(devices), *bfd));
    }
    let placements = placed
        .into_iter()
        .map(|(tunnel_ports, self_tunnel)| (Arc::new(tunnel_ports), self_tunnel))
        .collect();
    (placements, ports)
}

/// The claims accepted devices hold, checked across all namespaces (VNIs are global on
/// the overlay). Holders are kept as the objects, borrowed: a key is only built for a
/// conflict.
#[derive(Default)]
struct Claims<'a> {
    mac_owner: BTreeMap<(u32, [u8; 6]), &'a RemoteDevice>,
    vlan_of_vni: BTreeMap<u32, (Option<u16>, &'a RemoteDevice)>,
    tunnel_load: BTreeMap<TunnelId, usize>,
}

impl<'a> Claims<'a> {
    /// Who already holds what this device claims, and what: the same (VNI, MAC), the same
    /// VNI on another VLAN, or a full tunnel.
    fn conflict(
        &self,
        spec: &RemoteDeviceSpec,
        mac: [u8; 6],
        tunnel: TunnelId,
    ) -> Option<(Option<DeviceKey>, String)> {
        if let Some(owner) = self.mac_owner.get(&(spec.vni, mac)) {
            let owner = DeviceKey::of(owner);
            let mac = validate::format_mac(mac);
            let message = format!(
                "VNI {} and MAC {mac} are already claimed by {owner}",
                spec.vni
            );
            return Some((Some(owner), message));
        }
        if let Some((vlan, owner)) = self.vlan_of_vni.get(&spec.vni)
            && *vlan != spec.local_vlan
        {
            let owner = DeviceKey::of(owner);
            let show = |v: &Option<u16>| {
                v.map_or_else(|| "untagged ports".to_string(), |v| format!("VLAN {v}"))
            };
            let (theirs, ours) = (show(vlan), show(&spec.local_vlan));
            let message = format!(
                "VNI {} is mapped to {theirs} by {owner}; this device maps it to {ours}",
                spec.vni
            );
            return Some((Some(owner), message));
        }
        if self.tunnel_load.get(&tunnel).copied().unwrap_or(0) >= MAX_DEVICES_PER_TUNNEL {
            let message = format!(
                "VTEP {} ({}) already carries {MAX_DEVICES_PER_TUNNEL} devices, the most one TunnelPort holds",
                tunnel.remote_ip(),
                spec.tunnel_type
            );
            return Some((None, message));
        }
        None
    }

    /// Records the claims of an accepted device.
    fn take(&mut self, device: &'a RemoteDevice, mac: [u8; 6], tunnel: TunnelId) {
        let spec = &device.spec;
        *self.tunnel_load.entry(tunnel).or_default() += 1;
        self.mac_owner.insert((spec.vni, mac), device);
        self.vlan_of_vni
            .entry(spec.vni)
            .or_insert((spec.local_vlan, device));
    }
}

/// A device's fields parsed, once validation passed; the errors otherwise (a parse failure
/// after passing validation is still reported, never unwrapped).
fn parsed(device: &RemoteDevice) -> Result<(TunnelId, [u8; 6], Option<Selector>), Vec<FieldError>> {
    let errors = validate::validate_device(device);
    let selector = device
        .spec
        .node_selector
        .clone()
        .map(Selector::try_from)
        .transpose();
    let parts = (
        validate::parse_vtep_ip(&device.spec.vtep_ip),
        validate::parse_mac(&device.spec.mac_address),
        selector,
    );
    match (errors.is_empty(), parts) {
        (true, (Ok(remote_ip), Ok(mac), Ok(selector))) => {
            let spec = &device.spec;
            Ok((
                TunnelId::new(spec.tunnel_type, remote_ip, spec.dst_port),
                mac,
                selector,
            ))
        }
        _ => Err(errors),
    }
}

/// Validates devices and settles conflicting claims in `settle_order`; records the outcome
/// of every device that is not accepted.
fn accept(
    ordered: &[&RemoteDevice],
    outcomes: &mut BTreeMap<DeviceKey, DeviceOutcome>,
) -> Vec<ValidDevice> {
    let mut accepted = Vec::new();
    let mut claims = Claims::default();
    for device in ordered {
        let key = DeviceKey::of(device);
        let (tunnel, mac, selector) = match parsed(device) {
            Ok(parts) => parts,
            Err(errors) => {
                outcomes.insert(key, DeviceOutcome::Invalid(errors));
                continue;
            }
        };
        let spec = &device.spec;
        if let Some((with, message)) = claims.conflict(spec, mac, tunnel) {
            outcomes.insert(key, DeviceOutcome::Conflict { with, message });
            continue;
        }
        claims.take(device, mac, tunnel);
        let entry = TunnelDevice {
            namespace: key.namespace.clone(),
            name: key.name.clone(),
            mac_address: validate::format_mac(mac),
            vni: spec.vni,
            ips: spec
                .ips
                .iter()
                .filter_map(|ip| validate::parse_device_ip(ip).ok())
                .map(|ip| ip.to_string())
                .collect(),
            local_vlan: spec.local_vlan,
        };
        accepted.push(ValidDevice {
            key,
            tunnel,
            selector,
            entry,
            bfd: device_bfd(spec),
        });
    }
    accepted
}

/// Builds one TunnelPort object.
fn tunnel_port(
    node: &NodeInfo,
    tunnel: TunnelId,
    devices: Arc<Vec<TunnelDevice>>,
    bfd: Option<TunnelBfd>,
) -> TunnelPort {
    let name = tunnel.tunnel_port_name(&node.name);
    let labels = BTreeMap::from([
        (NODE_LABEL.to_string(), names::node_label_value(&node.name)),
        (MANAGED_BY_LABEL.to_string(), MANAGER.to_string()),
    ]);
    // A Node can own a cluster-scoped object: deleting the node deletes its TunnelPorts.
    let owner_references = node.uid.as_ref().map(|uid| {
        vec![OwnerReference {
            api_version: "v1".into(),
            kind: "Node".into(),
            name: node.name.clone(),
            uid: uid.clone(),
            ..OwnerReference::default()
        }]
    });
    let local_ip = node
        .tunnel_ips
        .iter()
        .find(|ip| ip.is_ipv4() == tunnel.remote_ip().is_ipv4())
        .map(ToString::to_string);
    TunnelPort {
        metadata: ObjectMeta {
            name: Some(name),
            labels: Some(labels),
            owner_references,
            ..ObjectMeta::default()
        },
        spec: TunnelPortSpec {
            node_name: node.name.clone(),
            remote_ip: tunnel.remote_ip().to_string(),
            tunnel_type: tunnel.tunnel_type(),
            dst_port: tunnel.dst_port(),
            local_ip,
            devices,
            bfd,
        },
        status: None,
    }
}
