//! TunnelPort status from what OVS shows: a pure function, re-run on every change.

use k8s_openapi::jiff::Timestamp;

use crate::api::conditions::{READY, condition, tunnel_reason};
use crate::api::{TunnelPort, TunnelPortStatus};
use crate::flows::DeviceState;
use crate::ovs::PortState;

use super::node::NodeView;

/// The status the agent reports for `tp`, from the node loop's view. Conditions keep their
/// `lastTransitionTime` while their status holds, so an unchanged situation gives an
/// identical status (and no write).
pub fn tunnel_port_status(tp: &TunnelPort, view: &NodeView, now: Timestamp) -> TunnelPortStatus {
    let name = tp.metadata.name.as_deref().unwrap_or_default();
    let previous = tp
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let report = view.ovs.ports.get(name);
    // Devices whose rules OVS confirmed (the applied plan), not merely planned ones.
    let installed = view
        .flows
        .applied
        .as_ref()
        .zip(report)
        .and_then(|(plan, r)| plan.installed_per_tunnel.get(&r.interface_name).copied());

    let (ready, reason, message) = if let Some(failed) = &view.failed {
        (false, tunnel_reason::OVS_UNAVAILABLE, failed.clone())
    } else if view.ovs_unavailable {
        let why = view
            .ovs
            .last_error
            .clone()
            .unwrap_or_else(|| "not connected yet".into());
        (
            false,
            tunnel_reason::OVS_UNAVAILABLE,
            format!("cannot reach OVSDB: {why}"),
        )
    } else {
        match report.map(|r| &r.state) {
            None => (
                false,
                tunnel_reason::PENDING,
                "the OVS port is not created yet".to_string(),
            ),
            Some(PortState::Pending) => (
                false,
                tunnel_reason::PENDING,
                "waiting for OVS to give the port an ofport".into(),
            ),
            Some(PortState::OvsError(m)) | Some(PortState::Invalid(m)) => {
                (false, tunnel_reason::OVS_ERROR, m.clone())
            }
            Some(PortState::ForeignConflict(m)) => (false, tunnel_reason::FOREIGN_PORT, m.clone()),
            Some(PortState::Ready) => flow_readiness(tp, view, installed),
        }
    };
    let generation = tp.metadata.generation;
    TunnelPortStatus {
        observed_generation: generation,
        conditions: vec![condition(
            previous,
            READY,
            ready,
            reason,
            message.clone(),
            generation,
            now,
        )],
        ofport: report.and_then(|r| r.ofport),
        interface_name: report.map(|r| r.interface_name.clone()),
        devices: Some(installed.unwrap_or(0)),
        message: (!ready).then_some(message),
    }
}

/// A port that OVS numbered is Ready once the flow sync confirmed the rules of every
/// device on it.
fn flow_readiness(
    tp: &TunnelPort,
    view: &NodeView,
    installed: Option<u32>,
) -> (bool, &'static str, String) {
    let ofport = view
        .ovs
        .ports
        .get(tp.metadata.name.as_deref().unwrap_or_default())
        .and_then(|r| r.ofport)
        .unwrap_or(-1);
    let rejected: Vec<String> = tp
        .spec
        .devices
        .iter()
        .filter_map(|d| {
            let plan = view.plan.as_ref()?;
            let key = crate::api::DeviceKey {
                namespace: d.namespace.clone(),
                name: d.name.clone(),
            };
            match plan.devices.get(&key) {
                Some(DeviceState::Rejected { reason }) => Some(format!("{key}: {reason}")),
                _ => None,
            }
        })
        .collect();
    if let Some(error) = &view.flows.error {
        return (
            false,
            tunnel_reason::OVS_ERROR,
            format!("forwarding rules not applied: {error}"),
        );
    }
    if !rejected.is_empty() {
        return (
            false,
            tunnel_reason::OVS_ERROR,
            format!("no forwarding rules for {}", rejected.join("; ")),
        );
    }
    let interface = view
        .ovs
        .ports
        .get(tp.metadata.name.as_deref().unwrap_or_default())
        .map(|r| r.interface_name.as_str());
    let keys: Vec<crate::api::DeviceKey> = tp
        .spec
        .devices
        .iter()
        .map(|d| crate::api::DeviceKey {
            namespace: d.namespace.clone(),
            name: d.name.clone(),
        })
        .collect();
    if !interface.is_some_and(|i| view.tunnel_flows_current(i, &keys)) {
        return (
            false,
            tunnel_reason::PENDING,
            "installing the forwarding rules".into(),
        );
    }
    let devices = installed.unwrap_or(0);
    (
        true,
        tunnel_reason::READY,
        format!("ofport {ofport}; forwarding rules for {devices} device(s) installed"),
    )
}
