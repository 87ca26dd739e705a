//! A RemoteDevice's status, computed from the plan and the TunnelPorts the agents report
//! on. Pure: the same inputs give the same status, so a resync with nothing new writes
//! nothing.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::jiff::Timestamp;

use crate::api::conditions::{self, NODES_SKIPPED, READY, device_reason, tunnel_reason};
use crate::api::validate;
use crate::api::{DeviceKey, RemoteDevice, RemoteDeviceStatus, TunnelDevice, TunnelPort};
use crate::planner::DeviceOutcome;

/// How many node names a message lists before it says "and N more".
const LIST_NODES: usize = 5;

/// Start of the `NodesSkipped` message naming the nodes skipped because the device's VTEP
/// is their own tunnel IP.
pub const SELF_TUNNEL_NOTE: &str = "Skipped nodes whose own tunnel IP is the VTEP:";

/// Whether a TunnelPort's agent reported, for its current generation, that OVS refused it.
pub fn tunnel_port_failed(port: &TunnelPort) -> Option<String> {
    let status = port.status.as_ref()?;
    if status.observed_generation.is_none()
        || status.observed_generation != port.metadata.generation
    {
        return None;
    }
    let ready = status.conditions.iter().find(|c| c.type_ == READY)?;
    let failed = ready.status == "False"
        && (ready.reason == tunnel_reason::OVS_ERROR
            || ready.reason == tunnel_reason::FOREIGN_PORT);
    failed.then(|| {
        if ready.message.is_empty() {
            ready.reason.clone()
        } else {
            ready.message.clone()
        }
    })
}

/// `a, b, c` or `a, b, c, d, e and 3 more`.
fn list_nodes<S: AsRef<str>>(nodes: &[S]) -> String {
    let shown: Vec<&str> = nodes.iter().take(LIST_NODES).map(AsRef::as_ref).collect();
    let mut text = shown.join(", ");
    if nodes.len() > LIST_NODES {
        text.push_str(&format!(" and {} more", nodes.len() - LIST_NODES));
    }
    text
}

/// The entry of device `key` in a TunnelPort's device list. Lists are sorted by
/// namespace/name (the planner writes them so), which makes this a binary search; a list
/// someone else reordered is searched linearly.
fn find_device<'a>(devices: &'a [TunnelDevice], key: &DeviceKey) -> Option<&'a TunnelDevice> {
    let wanted = (key.namespace.as_str(), key.name.as_str());
    match devices.binary_search_by(|d| (d.namespace.as_str(), d.name.as_str()).cmp(&wanted)) {
        Ok(i) => Some(&devices[i]),
        Err(_) => devices
            .iter()
            .find(|d| (d.namespace.as_str(), d.name.as_str()) == wanted),
    }
}

/// What a device's status needs to know of one desired TunnelPort, worked out once per
/// pass rather than once per device and node.
#[derive(Clone, Debug)]
pub struct PortView<'a> {
    /// The planned object.
    pub desired: &'a TunnelPort,
    /// The object in the cache, if any.
    pub stored: Option<&'a TunnelPort>,
    /// Whether the stored device list is exactly the planned one (the usual case), so
    /// every planned device is carried without looking it up.
    pub devices_match: bool,
    /// Stored and Ready for its current generation.
    pub ready: bool,
    /// What OVS said when it refused the port (current generation).
    pub failed: Option<String>,
}

/// One [`PortView`] per desired TunnelPort name.
pub fn port_views<'a>(
    desired: &BTreeMap<&'a str, &'a TunnelPort>,
    stored: &BTreeMap<&'a str, &'a TunnelPort>,
) -> HashMap<&'a str, PortView<'a>> {
    desired
        .iter()
        .map(|(name, want)| {
            let have = stored.get(name).copied();
            let view = PortView {
                desired: want,
                stored: have,
                devices_match: have.is_some_and(|h| h.spec.devices == want.spec.devices),
                ready: have.is_some_and(TunnelPort::is_ready),
                failed: have.and_then(tunnel_port_failed),
            };
            (*name, view)
        })
        .collect()
}

impl PortView<'_> {
    /// Whether the stored object carries exactly the planned entry of device `key`.
    fn carries(&self, key: &DeviceKey) -> bool {
        let Some(stored) = self.stored else {
            return false;
        };
        if self.devices_match {
            return true;
        }
        match find_device(&self.desired.spec.devices, key) {
            Some(want) => find_device(&stored.spec.devices, key) == Some(want),
            None => false,
        }
    }
}

/// The status `device` should have: `Ready`, and `NodesSkipped` while selected nodes are
/// left out because the device's VTEP is their own tunnel IP.
///
/// `ports` describes every desired TunnelPort by name. A node counts as ready when its
/// stored TunnelPort carries exactly the planned entry of this device and the agent
/// reported Ready for that generation.
pub fn device_status(
    device: &RemoteDevice,
    outcome: &DeviceOutcome,
    ports: &HashMap<&str, PortView<'_>>,
    now: Timestamp,
) -> RemoteDeviceStatus {
    let generation = device.metadata.generation;
    let previous = device
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let verdict = readiness(&DeviceKey::of(device), outcome, ports);
    let mut conditions = vec![conditions::condition(
        previous,
        READY,
        verdict.ok,
        verdict.reason,
        verdict.message,
        generation,
        now,
    )];
    if let DeviceOutcome::Planned {
        self_tunnel_nodes, ..
    } = outcome
        && !self_tunnel_nodes.is_empty()
    {
        conditions.push(conditions::condition(
            previous,
            NODES_SKIPPED,
            true,
            device_reason::SELF_TUNNEL,
            format!("{SELF_TUNNEL_NOTE} {}.", list_nodes(self_tunnel_nodes)),
            generation,
            now,
        ));
    }
    let ready = u32::try_from(verdict.ready).unwrap_or(u32::MAX);
    let total = u32::try_from(verdict.total).unwrap_or(u32::MAX);
    RemoteDeviceStatus {
        observed_generation: generation,
        conditions,
        ready_nodes: ready,
        total_nodes: total,
        ready: Some(format!("{ready}/{total}")),
    }
}

/// The `Ready` condition's verdict and the node counts.
struct Verdict {
    ok: bool,
    reason: &'static str,
    message: String,
    ready: usize,
    total: usize,
}

fn readiness(
    key: &DeviceKey,
    outcome: &DeviceOutcome,
    ports: &HashMap<&str, PortView<'_>>,
) -> Verdict {
    let refused = |reason, message| Verdict {
        ok: false,
        reason,
        message,
        ready: 0,
        total: 0,
    };
    match outcome {
        DeviceOutcome::Invalid(errors) => refused(
            device_reason::INVALID_SPEC,
            format!("Invalid spec: {}", validate::join(errors)),
        ),
        DeviceOutcome::Conflict { message, .. } => {
            refused(device_reason::CONFLICT, message.clone())
        }
        DeviceOutcome::Planned {
            tunnel_ports,
            self_tunnel_nodes,
        } => planned_readiness(key, tunnel_ports, !self_tunnel_nodes.is_empty(), ports),
    }
}

/// Readiness of a planned device: every node whose TunnelPort carries it and is Ready.
fn planned_readiness(
    key: &DeviceKey,
    tunnel_ports: &BTreeMap<String, String>,
    some_skipped: bool,
    ports: &HashMap<&str, PortView<'_>>,
) -> Verdict {
    let total = tunnel_ports.len();
    let mut ready_nodes = Vec::new();
    let mut waiting = Vec::new();
    let mut failed = Vec::new();
    for (node, name) in tunnel_ports {
        let view = ports.get(name.as_str());
        let carried = view.is_some_and(|v| v.carries(key));
        match view {
            Some(v) if carried && v.ready => ready_nodes.push(node.as_str()),
            Some(v) if carried => match &v.failed {
                Some(why) => failed.push(format!("{node} ({why})")),
                None => waiting.push(node.as_str()),
            },
            _ => waiting.push(node.as_str()),
        }
    }
    let ready = ready_nodes.len();
    let (ok, reason, message) = if total == 0 && some_skipped {
        let message = "No node needs a tunnel to this VTEP.".to_string();
        (false, device_reason::NO_MATCHING_NODES, message)
    } else if total == 0 {
        let message = "The node selector matches no node.".to_string();
        (false, device_reason::NO_MATCHING_NODES, message)
    } else if !failed.is_empty() {
        let message = format!(
            "{ready}/{total} nodes ready; OVS refused the tunnel on {}.",
            list_nodes(&failed)
        );
        (false, device_reason::TUNNEL_FAILED, message)
    } else if ready == total {
        (
            true,
            device_reason::READY,
            format!("{ready}/{total} nodes ready."),
        )
    } else {
        let message = format!(
            "{ready}/{total} nodes ready; waiting for {}.",
            list_nodes(&waiting)
        );
        (false, device_reason::PENDING, message)
    };
    Verdict {
        ok,
        reason,
        message,
        ready,
        total,
    }
}
