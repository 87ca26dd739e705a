//! `TunnelPort`: one tunnel from one node to one remote VTEP, with every device behind it.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::schema;
use super::{TunnelBfd, TunnelBfdStatus, TunnelType};

/// Desired state of one OVS tunnel port on one node: the complete picture for the
/// (node, remote VTEP, tunnel type, destination port) it is named after, so that the
/// node's agent needs nothing else. Written by the controller; status by the agent.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "remotedevice.io",
    version = "v1alpha1",
    kind = "TunnelPort",
    derive = "PartialEq",
    shortname = "tp",
    category = "rdo",
    doc = "One OVS tunnel port on one node towards one remote VTEP, with every device behind that VTEP the node needs. Written by the controller from the RemoteDevices (do not edit); its status is written by the node's agent from what Open vSwitch shows.",
    status = "TunnelPortStatus",
    selectable = ".spec.nodeName",
    printcolumn = r#"{"name":"NODE","type":"string","jsonPath":".spec.nodeName"}"#,
    printcolumn = r#"{"name":"REMOTE","type":"string","jsonPath":".spec.remoteIP"}"#,
    printcolumn = r#"{"name":"TYPE","type":"string","jsonPath":".spec.tunnelType"}"#,
    printcolumn = r#"{"name":"DEVICES","type":"integer","jsonPath":".status.devices"}"#,
    printcolumn = r#"{"name":"OFPORT","type":"integer","jsonPath":".status.ofport"}"#,
    printcolumn = r#"{"name":"READY","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"REACHABLE","type":"string","jsonPath":".status.conditions[?(@.type==\"Reachable\")].status"}"#,
    printcolumn = r#"{"name":"AGE","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(self.tunnelType == 'gre' && has(self.dstPort))").message("not allowed with tunnelType gre").field_path(".dstPort"))]
pub struct TunnelPortSpec {
    /// The node whose agent owns this port.
    #[schemars(length(min = 1, max = 253))]
    pub node_name: String,
    /// The remote VTEP's IP address.
    #[serde(rename = "remoteIP")]
    #[schemars(length(min = 1, max = 45))]
    #[x_kube(validation = Rule::new("isIP(self)").message("must be an IP address"))]
    pub remote_ip: String,
    /// Encapsulation.
    pub tunnel_type: TunnelType,
    /// UDP destination port (vxlan and geneve); unset = the OVS default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub dst_port: Option<u16>,
    /// Source address of the tunnel on this node (same family as `remoteIP`), when known.
    #[serde(rename = "localIP", default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 45))]
    #[x_kube(validation = Rule::new("isIP(self)").message("must be an IP address"))]
    pub local_ip: Option<String>,
    // Shared (not part of the schema's description): every node's TunnelPort to a VTEP
    // usually carries the same list, so the planner builds it once and each port holds a
    // reference. The planner builds fresh lists each pass, so comparing with a stored port
    // still walks both lists.
    /// Every device behind the remote VTEP that this node needs, sorted by namespace/name.
    #[serde(default)]
    #[schemars(schema_with = "schema::devices")]
    pub devices: Arc<Vec<TunnelDevice>>,
    /// BFD on the tunnel (present = on): on when any device it carries asks for it, with the
    /// fastest timers any of them asks for. The agent sets it on the OVS interface and
    /// reports the session in the `Reachable` condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bfd: Option<TunnelBfd>,
}

/// One device behind a tunnel: what the agent needs for its forwarding rules.
#[derive(
    Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct TunnelDevice {
    /// Namespace (tenant) of the RemoteDevice.
    #[schemars(length(min = 1, max = 63))]
    pub namespace: String,
    /// Name of the RemoteDevice.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The device's MAC address, lower case.
    #[schemars(length(min = 17, max = 17))]
    pub mac_address: String,
    /// The virtual network identifier (tun_id) of the device.
    #[schemars(range(min = 1, max = 16_777_215))]
    pub vni: u32,
    /// The device's IP addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::device_ips")]
    pub ips: Vec<String>,
    /// VLAN tag of the local workload ports that use the device; unset = untagged ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 4094))]
    pub local_vlan: Option<u16>,
}

/// What the node's agent observed in OVS for this tunnel port.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TunnelPortStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` and `Reachable` (with reasons) following Kubernetes API conventions.
    /// `Reachable`: True (`BfdUp`) while the BFD session to the remote VTEP is up; False
    /// with the BFD diagnostic as reason (e.g. `ControlDetectionTimeExpired`), or
    /// `Flapping` after 3 flaps within 30 s until 30 s without one; Unknown (`BfdDisabled`
    /// when the tunnel runs no BFD, `BfdPending` before the first answer). Its
    /// `lastTransitionTime` is the last change.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::conditions")]
    pub conditions: Vec<Condition>,
    /// The BFD session as OVS reports it, while the tunnel runs BFD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bfd: Option<TunnelBfdStatus>,
    /// OpenFlow port number OVS gave the tunnel (-1 when OVS refused it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ofport: Option<i64>,
    /// Name of the OVS interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface_name: Option<String>,
    /// Number of devices whose forwarding rules are installed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<u32>,
    /// What went wrong, in OVS's words, when not Ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl TunnelPort {
    /// Whether the agent has reported Ready for the current generation.
    pub fn is_ready(&self) -> bool {
        let Some(status) = &self.status else {
            return false;
        };
        status.observed_generation.is_some()
            && status.observed_generation == self.metadata.generation
            && super::conditions::is_true(&status.conditions, super::conditions::READY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Objects from the API server may carry fields of a newer release (mixed-version
    /// rollouts): they must decode, or one object would break every watch. Manifests read
    /// from files are checked strictly elsewhere (`manifests`).
    #[test]
    fn objects_with_fields_of_a_newer_release_still_decode() {
        let json = serde_json::json!({
            "apiVersion": "remotedevice.io/v1alpha1", "kind": "TunnelPort",
            "metadata": {"name": "n1.vxlan.192-0-2-10"},
            "spec": {"nodeName": "n1", "remoteIP": "192.0.2.10", "tunnelType": "vxlan", "future": true,
                     "devices": [{"namespace": "t", "name": "d", "macAddress": "52:54:00:00:00:01", "vni": 1, "later": 2}]},
            "status": {"ofport": 3, "newer": "x"}
        });
        let tp: TunnelPort = serde_json::from_value(json).unwrap();
        assert_eq!(tp.spec.devices[0].vni, 1);
        let device = serde_json::json!({"apiVersion": "remotedevice.io/v1alpha1", "kind": "RemoteDevice",
            "metadata": {"name": "d", "namespace": "t"},
            "spec": {"vtepIP": "192.0.2.10", "vni": 1, "macAddress": "52:54:00:00:00:01", "future": 1}});
        assert!(serde_json::from_value::<crate::api::RemoteDevice>(device).is_ok());
    }
}
