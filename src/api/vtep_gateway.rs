//! `VtepGateway`: a hardware VTEP (top-of-rack switch, router) whose `hardware_vtep` OVSDB
//! the controller programs, so the remote end of every tunnel to it follows the cluster.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::schema;

/// Longest `spec.endpoint`: scheme, a DNS name of 253 characters, port.
pub const MAX_ENDPOINT_LEN: usize = 270;
/// Most tunnel IPs of one gateway.
pub const MAX_GATEWAY_TUNNEL_IPS: usize = 8;
/// Shape of `spec.endpoint`: `tcp:` or `ssl:`, then an IPv4 address or DNS name (labels of
/// 1 to 63 alphanumerics and inner hyphens), or an IPv6 address in brackets, then `:PORT`.
/// [`ENDPOINT_RULES`] check what a regular expression cannot: the port's range, and that a
/// bracketed host is an IPv6 address and a host of digits and dots an IPv4 address.
pub const ENDPOINT_PATTERN: &str = r"^(tcp|ssl):(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*):[0-9]{1,5}$";
/// CEL rules (rule, message) on `spec.endpoint`, each vacuous unless the endpoint has the
/// shape it is about (the API server evaluates them even when the pattern failed).
pub const ENDPOINT_RULES: [(&str, &str); 3] = [
    (
        r"!self.matches(':[0-9]{1,5}$') || (int(self.substring(self.lastIndexOf(':') + 1)) >= 1 && int(self.substring(self.lastIndexOf(':') + 1)) <= 65535)",
        "the port must be 1-65535",
    ),
    (
        r"!self.matches('^(tcp|ssl):\\[[0-9A-Fa-f:.]+\\]:[0-9]{1,5}$') || (isIP(self.substring(5, self.lastIndexOf(']'))) && ip(self.substring(5, self.lastIndexOf(']'))).family() == 6)",
        "an address in brackets must be an IPv6 address in a form Kubernetes accepts (no zone, not IPv4-mapped), and an IPv4 address is written without brackets",
    ),
    (
        r"!self.matches('^(tcp|ssl):[0-9.]+:[0-9]{1,5}$') || isIP(self.substring(4, self.lastIndexOf(':')))",
        "a host of digits and dots must be an IPv4 address: four numbers 0-255 without leading zeros",
    ),
];
/// Shape of a Physical_Switch or Physical_Port name: printable, no spaces.
pub const SWITCH_NAME_PATTERN: &str = r"^[!-~]+$";

/// A hardware VTEP the operator programs through its OVSDB `hardware_vtep` database
/// (vtep(5)), as ovn-controller-vtep and networking-l2gw do.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "remotedevice.io",
    version = "v1alpha1",
    kind = "VtepGateway",
    derive = "PartialEq",
    shortname = "vgw",
    category = "rdo",
    status = "VtepGatewayStatus",
    doc = "A hardware VTEP (a top-of-rack switch or router) that the operator programs through its OVSDB hardware_vtep database: one logical switch per VNI used by the RemoteDevices behind it, their port bindings, and the tunnel IPs of the nodes that have a TunnelPort to it. Rows the operator writes are marked as its own; others are never touched.",
    printcolumn = r#"{"name":"ENDPOINT","type":"string","jsonPath":".spec.endpoint"}"#,
    printcolumn = r#"{"name":"SWITCH","type":"string","jsonPath":".status.physicalSwitch"}"#,
    printcolumn = r#"{"name":"VNIS","type":"integer","jsonPath":".status.logicalSwitchCount"}"#,
    printcolumn = r#"{"name":"CONNECTED","type":"string","jsonPath":".status.conditions[?(@.type==\"Connected\")].status"}"#,
    printcolumn = r#"{"name":"READY","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"AGE","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.endpoint.startsWith('ssl:') == has(self.tlsSecretName)").message("an ssl: endpoint needs tlsSecretName; a tcp: endpoint takes none").field_path(".tlsSecretName"))]
pub struct VtepGatewaySpec {
    /// The switch's OVSDB server: `tcp:HOST:PORT` or `ssl:HOST:PORT` (IPv6 in brackets).
    #[schemars(length(min = 1, max = 270))]
    #[schemars(regex(pattern = ENDPOINT_PATTERN))]
    #[x_kube(validation = Rule::new(ENDPOINT_RULES[0].0).message(ENDPOINT_RULES[0].1))]
    #[x_kube(validation = Rule::new(ENDPOINT_RULES[1].0).message(ENDPOINT_RULES[1].1))]
    #[x_kube(validation = Rule::new(ENDPOINT_RULES[2].0).message(ENDPOINT_RULES[2].1))]
    pub endpoint: String,

    /// For an `ssl:` endpoint: a Secret in the operator's namespace holding the client key
    /// (`tls.key`), its certificate (`tls.crt`) and the CA the switch's certificate must
    /// chain to (`ca.crt`) — the shape cert-manager writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    #[schemars(regex(
        pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
    ))]
    pub tls_secret_name: Option<String>,

    /// The IPv4 address(es) the switch terminates VXLAN on: RemoteDevices whose `vtepIP` is
    /// one of them are behind this gateway. hardware_vtep carries only VXLAN over IPv4.
    #[serde(rename = "tunnelIPs")]
    #[schemars(schema_with = "schema::gateway_tunnel_ips")]
    pub tunnel_ips: Vec<String>,

    /// The Physical_Switch row to program; unset = the object's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    #[schemars(regex(pattern = SWITCH_NAME_PATTERN))]
    pub physical_switch: Option<String>,
}

impl VtepGateway {
    /// The Physical_Switch name: the spec's, else the object's name.
    pub fn switch_name(&self) -> String {
        self.spec
            .physical_switch
            .clone()
            .or_else(|| self.metadata.name.clone())
            .unwrap_or_default()
    }
}

/// Where a RemoteDevice is plugged into its gateway.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayAttachment {
    /// The Physical_Port of the switch the device is on.
    #[schemars(length(min = 1, max = 253))]
    #[schemars(regex(pattern = SWITCH_NAME_PATTERN))]
    pub port: String,
    /// The VLAN of the device's frames on that port, 0..4095; unset = 0 (untagged).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "optional_integer"
    )]
    #[schemars(range(max = 4095))]
    pub vlan: Option<u16>,
}

/// An optional integer read as the API server reads it, so that `plan` accepts what
/// admission accepts: `null` is unset, and a number with a zero fraction (`10.0`) is an
/// integer.
fn optional_integer<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<i128>,
{
    use serde::de::Error;
    let Some(number) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
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
    T::try_from(value).map(Some).map_err(|_| {
        D::Error::custom(format!(
            "invalid value: {value} is out of range for {}",
            std::any::type_name::<T>()
        ))
    })
}

/// What the controller observed on the switch.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VtepGatewayStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Connected` (an OVSDB session is up) and `Ready` (the switch holds what the
    /// RemoteDevices ask for), with reasons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::conditions")]
    pub conditions: Vec<Condition>,
    /// The Physical_Switch as found in the database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub physical_switch: Option<String>,
    /// Its ports and what is bound on them (ours and others').
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1024))]
    pub ports: Vec<GatewayPortStatus>,
    /// Number of logical switches the operator manages there (for `kubectl get`).
    #[serde(default)]
    pub logical_switch_count: u32,
    /// The logical switches the operator manages there.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 4096))]
    pub logical_switches: Vec<GatewayLogicalSwitch>,
    /// The switch's tunnels to node VTEPs, with their BFD state as the switch reports it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 4096))]
    pub tunnels: Vec<GatewayTunnelStatus>,
    /// The last error, in the switch's (or the connection's) words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// One Physical_Port.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayPortStatus {
    /// Port name.
    pub name: String,
    /// `VLAN=logical switch` for every binding on the port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bindings: Vec<String>,
    /// `port_fault_status`, when the switch reports any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<String>,
}

/// One logical switch the operator manages.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayLogicalSwitch {
    /// Its name in the database.
    pub name: String,
    /// Its VNI (`tunnel_key`).
    pub vni: u32,
    /// Node VTEPs in its flood list (`unknown-dst` locators), as the database holds them.
    #[serde(rename = "floodVTEPs", default, skip_serializing_if = "Vec::is_empty")]
    pub flood_vteps: Vec<String>,
}

/// One tunnel of the switch.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayTunnelStatus {
    /// The switch's end.
    #[serde(rename = "localIP")]
    pub local_ip: String,
    /// The node's end.
    #[serde(rename = "remoteIP")]
    pub remote_ip: String,
    /// BFD state (`bfd_status:state`: up, down, init, admin_down), when the switch runs
    /// BFD on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bfd_state: Option<String>,
    /// Why it is not up, in BFD's words (`bfd_status:diagnostic`), when it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bfd_diagnostic: Option<String>,
}
