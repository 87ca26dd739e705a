//! A RemoteDevice's status, computed from the plan and the TunnelPorts the agents report
//! on. Pure: the same inputs give the same status, so a resync with nothing new writes
//! nothing.

use std::collections::BTreeMap;

use k8s_openapi::jiff::Timestamp;

use crate::api::conditions::{self, READY, device_reason, tunnel_reason};
use crate::api::validate;
use crate::api::{DeviceKey, RemoteDevice, RemoteDeviceStatus, TunnelPort};
use crate::plan::DeviceOutcome;

/// How many node names a message lists before it says "and N more".
const LIST_NODES: usize = 5;

/// Start of the sentence naming the nodes skipped because the device's VTEP is their own
/// tunnel IP; events compare it between the old and the new message.
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

/// The sentence naming self-tunnel nodes, if any.
pub fn self_tunnel_note(nodes: &[String]) -> Option<String> {
    (!nodes.is_empty()).then(|| format!("{SELF_TUNNEL_NOTE} {}.", list_nodes(nodes)))
}

/// The self-tunnel sentence inside a condition message, if any.
pub fn find_self_tunnel_note(message: &str) -> Option<&str> {
    message.find(SELF_TUNNEL_NOTE).map(|at| &message[at..])
}

/// The status `device` should have.
///
/// `desired` and `stored` map TunnelPort names to the planned and the observed objects. A
/// node counts as ready when its stored TunnelPort carries exactly the planned entry of
/// this device and the agent reported Ready for that generation.
pub fn device_status(
    device: &RemoteDevice,
    outcome: &DeviceOutcome,
    desired: &BTreeMap<&str, &TunnelPort>,
    stored: &BTreeMap<&str, &TunnelPort>,
    now: Timestamp,
) -> RemoteDeviceStatus {
    let key = DeviceKey::of(device);
    let generation = device.metadata.generation;
    let previous = device
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();

    let (ok, reason, message, ready, total) = match outcome {
        DeviceOutcome::Invalid(errors) => (
            false,
            device_reason::INVALID_SPEC,
            format!("Invalid spec: {}", validate::join(errors)),
            0,
            0,
        ),
        DeviceOutcome::Conflict { message, .. } => {
            (false, device_reason::CONFLICT, message.clone(), 0, 0)
        }
        DeviceOutcome::Planned {
            tunnel_ports,
            self_tunnel_nodes,
        } => {
            let total = tunnel_ports.len();
            let mut ready_nodes = Vec::new();
            let mut waiting = Vec::new();
            let mut failed = Vec::new();
            for (node, name) in tunnel_ports {
                let entry = desired.get(name.as_str()).and_then(|tp| {
                    tp.spec
                        .devices
                        .iter()
                        .find(|d| d.namespace == key.namespace && d.name == key.name)
                });
                let port = stored.get(name.as_str());
                let carried = match (entry, port) {
                    (Some(entry), Some(port)) => port.spec.devices.contains(entry),
                    _ => false,
                };
                match port {
                    Some(port) if carried && port.is_ready() => ready_nodes.push(node.as_str()),
                    Some(port) if carried => match tunnel_port_failed(port) {
                        Some(why) => failed.push(format!("{node} ({why})")),
                        None => waiting.push(node.as_str()),
                    },
                    _ => waiting.push(node.as_str()),
                }
            }
            let ready = ready_nodes.len();
            let (ok, reason, base) = if total == 0 {
                let base = if self_tunnel_nodes.is_empty() {
                    "The node selector matches no node.".to_string()
                } else {
                    "No node needs a tunnel to this VTEP.".to_string()
                };
                (false, device_reason::NO_MATCHING_NODES, base)
            } else if !failed.is_empty() {
                let base = format!(
                    "{ready}/{total} nodes ready; OVS refused the tunnel on {}.",
                    list_nodes(&failed)
                );
                (false, device_reason::TUNNEL_FAILED, base)
            } else if ready == total {
                (
                    true,
                    device_reason::READY,
                    format!("{ready}/{total} nodes ready."),
                )
            } else {
                let base = format!(
                    "{ready}/{total} nodes ready; waiting for {}.",
                    list_nodes(&waiting)
                );
                (false, device_reason::PENDING, base)
            };
            let message = match self_tunnel_note(self_tunnel_nodes) {
                Some(note) => format!("{base} {note}"),
                None => base,
            };
            (ok, reason, message, ready, total)
        }
    };

    let condition = conditions::condition(previous, READY, ok, reason, message, generation, now);
    let ready = u32::try_from(ready).unwrap_or(u32::MAX);
    let total = u32::try_from(total).unwrap_or(u32::MAX);
    RemoteDeviceStatus {
        observed_generation: generation,
        conditions: vec![condition],
        ready_nodes: ready,
        total_nodes: total,
        ready: Some(format!("{ready}/{total}")),
    }
}
