//! `RemoteDevice`: a device that no SDN manages, reachable through a VTEP.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::TunnelType;
use super::schema;

/// A device outside the cluster (bare-metal server behind a top-of-rack VTEP, a router,
/// a VM of another cloud) that workloads on the selected nodes reach over the overlay.
/// The namespace is the tenant.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "remotedevice.io",
    version = "v1alpha1",
    kind = "RemoteDevice",
    derive = "PartialEq",
    namespaced,
    shortname = "rd",
    category = "rdo",
    status = "RemoteDeviceStatus",
    doc = "A device outside the cluster that no SDN manages (a bare-metal server behind a top-of-rack VTEP, a router, a VM of another cloud), reachable over the overlay through its VTEP. The namespace is the tenant. The operator gives every selected node one tunnel port to the VTEP and the forwarding rules for the device (one TunnelPort object per node and VTEP).",
    printcolumn = r#"{"name":"VTEP","type":"string","jsonPath":".spec.vtepIP"}"#,
    printcolumn = r#"{"name":"TYPE","type":"string","jsonPath":".spec.tunnelType"}"#,
    printcolumn = r#"{"name":"VNI","type":"integer","jsonPath":".spec.vni"}"#,
    printcolumn = r#"{"name":"MAC","type":"string","jsonPath":".spec.macAddress"}"#,
    printcolumn = r#"{"name":"READY","type":"string","jsonPath":".status.ready"}"#,
    printcolumn = r#"{"name":"REACHABLE","type":"string","jsonPath":".status.reachable"}"#,
    printcolumn = r#"{"name":"AGE","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.tunnelType) && self.tunnelType == 'gre' && has(self.dstPort))").message("not allowed with tunnelType gre (GRE has no UDP port)").field_path(".dstPort"))]
#[x_kube(validation = Rule::new("!has(self.attachment) || !has(self.tunnelType) || self.tunnelType == 'vxlan'").message("a gateway attachment needs tunnelType vxlan (hardware_vtep carries only VXLAN)").field_path(".attachment"))]
#[x_kube(validation = Rule::new("!has(self.attachment) || !isIP(self.vtepIP) || ip(self.vtepIP).family() == 4").message("a gateway attachment needs an IPv4 vtepIP (hardware_vtep carries only VXLAN over IPv4)").field_path(".attachment"))]
pub struct RemoteDeviceSpec {
    /// IP address of the VTEP in front of the device (IPv4 or IPv6). Must be a unicast
    /// address: not loopback, multicast, link-local, unspecified or IPv4-mapped.
    #[serde(rename = "vtepIP")]
    #[schemars(length(min = 1, max = 45))]
    #[x_kube(validation = Rule::new("isIP(self)").message("must be an IPv4 or IPv6 address in canonical form (no leading zeros, no IPv4-mapped IPv6)"))]
    #[x_kube(validation = Rule::new("!isIP(self) || ip(self).isGlobalUnicast()").message("must be a unicast address (not loopback, multicast, broadcast, link-local or unspecified)"))]
    pub vtep_ip: String,

    /// Encapsulation used to reach the VTEP.
    #[serde(default, deserialize_with = "serde_compat::null_as_default")]
    pub tunnel_type: TunnelType,

    /// Virtual network identifier (VXLAN VNI, Geneve VNI or GRE key), 1..16777215.
    #[schemars(range(min = 1, max = 16_777_215))]
    #[serde(deserialize_with = "serde_compat::integer")]
    pub vni: u32,

    /// MAC address of the device; a unicast address such as `52:54:00:12:34:56`.
    #[schemars(regex(pattern = r"^[0-9a-fA-F][02468aceACE](:[0-9a-fA-F]{2}){5}$"))]
    #[schemars(length(min = 17, max = 17))]
    #[x_kube(validation = Rule::new("self != '00:00:00:00:00:00'").message("the all-zero MAC is not a device address"))]
    pub mac_address: String,

    /// IP addresses of the device (0 to 16); local workloads get ARP / neighbour answers for them.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "serde_compat::null_as_default"
    )]
    #[schemars(length(max = 16))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    #[schemars(schema_with = "schema::device_ips")]
    pub ips: Vec<String>,

    /// UDP destination port of the VTEP (vxlan and geneve only); unset = the OVS default.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "serde_compat::optional_integer"
    )]
    #[schemars(range(min = 1, max = 65535))]
    pub dst_port: Option<u16>,

    /// OVS VLAN tag (Port `tag`) of the local workload ports that use this device, 0..4094;
    /// unset = untagged ports.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "serde_compat::optional_integer"
    )]
    #[schemars(range(max = 4094))]
    pub local_vlan: Option<u16>,

    /// Where the device is plugged into the VtepGateway whose `tunnelIPs` contain `vtepIP`
    /// (physical port and VLAN); the operator then binds it there. Needs VXLAN over IPv4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment: Option<super::GatewayAttachment>,

    /// BFD on every node's tunnel to the VTEP, so `kubectl get` shows whether the VTEP
    /// answers (TunnelPort `Reachable`, and `reachable` here). On by default only with an
    /// `attachment` (the device is behind a managed VtepGateway, which the operator tells to
    /// run BFD too); an unmanaged VTEP may not speak BFD, so turn it on only where it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bfd: Option<super::DeviceBfd>,

    /// Nodes that need the device; unset = every node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::label_selector")]
    pub node_selector: Option<LabelSelector>,
}

/// Decoding the way the API server reads a RemoteDevice, so that `plan` accepts exactly
/// what admission accepts: `null` in a field that is not nullable is dropped (so the field
/// takes its default), and an integer may be written as a number with a zero fraction
/// (`5001.0`).
mod serde_compat {
    use serde::Deserialize;
    use serde::de::{Deserializer, Error};

    /// `null` reads as the default, as the API server prunes it before defaulting.
    pub fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de> + Default,
    {
        Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
    }

    /// A JSON number with an integral value that fits `T`.
    pub fn integer<'de, D, T>(d: D) -> Result<T, D::Error>
    where
        D: Deserializer<'de>,
        T: TryFrom<i128>,
    {
        let number = serde_json::Number::deserialize(d)?;
        let value: Option<i128> = if let Some(u) = number.as_u64() {
            Some(u.into())
        } else if let Some(i) = number.as_i64() {
            Some(i.into())
        } else {
            number
                .as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 1e30)
                .map(|f| f as i128)
        };
        let value = value
            .ok_or_else(|| D::Error::custom(format!("invalid type: {number} is not an integer")))?;
        T::try_from(value).map_err(|_| {
            D::Error::custom(format!(
                "invalid value: {value} is out of range for {}",
                std::any::type_name::<T>()
            ))
        })
    }

    /// Like [`integer`], for an optional field (`null` = unset).
    pub fn optional_integer<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: TryFrom<i128>,
    {
        #[derive(Deserialize)]
        struct Wrap<T: TryFrom<i128>>(#[serde(deserialize_with = "integer")] T);
        Ok(Option::<Wrap<T>>::deserialize(d)?.map(|w| w.0))
    }
}

/// What the controller observed about a RemoteDevice.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RemoteDeviceStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` (with a reason) following Kubernetes API conventions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::conditions")]
    pub conditions: Vec<Condition>,
    /// Nodes whose tunnel to this device's VTEP is up and carries this device.
    #[serde(default)]
    pub ready_nodes: u32,
    /// Nodes that should reach this device.
    #[serde(default)]
    pub total_nodes: u32,
    /// `ready/total`, for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<String>,
    /// Nodes whose tunnel carrying this device runs BFD and reports the VTEP `Reachable`;
    /// unset when BFD is off for this device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reachable_nodes: Option<u32>,
    /// `reachable/total` ("reachable from 3/3 nodes"), for `kubectl get`; unset when BFD is
    /// off for this device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reachable: Option<String>,
}
