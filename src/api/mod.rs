//! The three resource types of `remotedevice.io/v1alpha1`, their validation and their names.
//!
//! This module is the single source of truth: the CRDs in `crds/` are generated from it,
//! and the controller, the planner and the agent all use the same validation and naming.

mod bfd;
pub mod conditions;
pub mod names;
mod remote_device;
mod schema;
mod tunnel_id;
mod tunnel_port;
pub mod validate;
mod vtep_gateway;

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use bfd::{
    BFD_DETECT_MULTIPLIER, DEFAULT_BFD_INTERVAL_MS, DeviceBfd, MAX_BFD_DIAGNOSTIC_LEN,
    MAX_BFD_INTERVAL_MS, MAX_BFD_STATE_LEN, MIN_BFD_INTERVAL_MS, TunnelBfd, TunnelBfdStatus,
    device_bfd, tunnel_bfd,
};
pub use remote_device::{RemoteDevice, RemoteDeviceSpec, RemoteDeviceStatus};
pub use schema::{MAX_DEVICE_IPS, MAX_DEVICES_PER_TUNNEL};
pub use tunnel_id::TunnelId;
pub use tunnel_port::{TunnelDevice, TunnelPort, TunnelPortSpec, TunnelPortStatus};
pub use vtep_gateway::{
    ENDPOINT_PATTERN, GatewayAttachment, GatewayLogicalSwitch, GatewayPortStatus,
    GatewayTunnelStatus, MAX_ENDPOINT_LEN, MAX_GATEWAY_TUNNEL_IPS, SWITCH_NAME_PATTERN,
    VtepGateway, VtepGatewaySpec, VtepGatewayStatus,
};

/// API group of every kind.
pub const GROUP: &str = "remotedevice.io";
/// Label on every TunnelPort naming (a label-safe form of) its node, so an agent can
/// watch only its own TunnelPorts on any Kubernetes version.
pub const NODE_LABEL: &str = "remotedevice.io/node";
/// Standard label marking objects the controller manages (and may garbage-collect).
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`] and the server-side-apply field manager of the controller.
pub const MANAGER: &str = "remote-device-operator";

/// The server-side-apply body that sets `status` on a `K`, for `patch_status` with a
/// forced apply: fields the manager stops sending are removed (a merge patch would keep
/// lists that became empty, as they are left out of the body).
pub fn status_apply<K: kube::Resource<DynamicType = ()>>(
    status: &impl Serialize,
) -> kube::api::Patch<serde_json::Value> {
    kube::api::Patch::Apply(serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    }))
}

/// Node annotation that overrides the node's tunnel (underlay) IP; a comma-separated list
/// is accepted for dual-stack nodes.
pub const TUNNEL_IP_ANNOTATION: &str = "remotedevice.io/tunnel-ip";
/// Finalizer the agent puts on a TunnelPort while it creates the OVS port, so that once
/// it is on, the port (and its flows) are removed before the object disappears.
pub const OVS_CLEANUP_FINALIZER: &str = "remotedevice.io/ovs-cleanup";

/// Encapsulation of a tunnel, as OVS spells the Interface type.
#[derive(
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum TunnelType {
    /// VXLAN (UDP 4789 by default).
    #[default]
    Vxlan,
    /// Geneve (UDP 6081 by default).
    Geneve,
    /// GRE (no UDP port).
    Gre,
}

impl TunnelType {
    /// The OVS Interface `type`.
    pub fn as_str(self) -> &'static str {
        match self {
            TunnelType::Vxlan => "vxlan",
            TunnelType::Geneve => "geneve",
            TunnelType::Gre => "gre",
        }
    }

    /// Whether the encapsulation runs over UDP and so takes a destination port.
    pub fn has_udp_port(self) -> bool {
        !matches!(self, TunnelType::Gre)
    }

    /// The UDP port OVS uses when `dst_port` is not set (`None` for GRE, which has none).
    pub fn default_udp_port(self) -> Option<u16> {
        match self {
            TunnelType::Vxlan => Some(4789),
            TunnelType::Geneve => Some(6081),
            TunnelType::Gre => None,
        }
    }
}

impl fmt::Display for TunnelType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for TunnelType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "vxlan" => Ok(TunnelType::Vxlan),
            "geneve" => Ok(TunnelType::Geneve),
            "gre" => Ok(TunnelType::Gre),
            other => Err(format!(
                "unknown tunnel type {other:?} (expected vxlan, geneve or gre)"
            )),
        }
    }
}

/// Identifies one RemoteDevice: namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeviceKey {
    /// Namespace (tenant).
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl DeviceKey {
    /// Key of a RemoteDevice object (an object without a namespace is in `default`, as
    /// `kubectl apply` would put it).
    pub fn of(device: &RemoteDevice) -> Self {
        let (namespace, name) = Self::borrowed(device);
        DeviceKey {
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }

    /// The same key as [`DeviceKey::of`], borrowed from the object: for code that keys
    /// every device of a pass and would otherwise allocate two strings per device.
    pub fn borrowed(device: &RemoteDevice) -> (&str, &str) {
        (
            device.metadata.namespace.as_deref().unwrap_or("default"),
            device.metadata.name.as_deref().unwrap_or_default(),
        )
    }
}

impl fmt::Display for DeviceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}
