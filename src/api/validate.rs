//! The validation rules of a RemoteDevice and of a VtepGateway, one Rust function each.
//!
//! The CRDs enforce the same rules at admission (OpenAPI schema + CEL); the controller and
//! `plan` run these functions again, because objects can predate a rule, come from files,
//! or reach a cluster whose CRD is older. Messages name the field and say what is wrong.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use super::names::{is_dns_label, is_dns_subdomain};
use super::schema::{MAX_SELECTOR_EXPRESSIONS, MAX_SELECTOR_LABELS, MAX_SELECTOR_VALUES};
use super::{DeviceBfd, MAX_BFD_INTERVAL_MS, MIN_BFD_INTERVAL_MS};
use super::{GatewayAttachment, MAX_DEVICE_IPS, MAX_ENDPOINT_LEN, MAX_GATEWAY_TUNNEL_IPS};
use super::{RemoteDevice, RemoteDeviceSpec, TunnelType, VtepGateway, VtepGatewaySpec};

/// Largest VNI (24 bits).
pub const MAX_VNI: u32 = (1 << 24) - 1;
/// Largest VLAN tag a local port may carry.
pub const MAX_VLAN: u16 = 4094;
/// Largest VLAN of a gateway attachment (a `vlan_bindings` key of vtep(5)).
pub const MAX_ATTACHMENT_VLAN: u16 = 4095;
/// Longest Physical_Switch or Physical_Port name.
pub const MAX_SWITCH_NAME_LEN: usize = 253;

/// One thing wrong with one field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Path of the field, e.g. `spec.vtepIP` or `spec.ips[2]`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// All field errors of one object, joined for a condition message or an event.
pub fn join(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Parses an IP address as Kubernetes' CEL `isIP()` does: no zone, no leading zeros, no
/// IPv4-mapped IPv6.
pub fn parse_ip(s: &str) -> Result<IpAddr, String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.contains('%') {
        return Err(format!("{s:?} has a zone; zones are not allowed"));
    }
    let ip: IpAddr = s
        .parse()
        .map_err(|_| format!("{s:?} is not an IPv4 or IPv6 address"))?;
    if let IpAddr::V6(v6) = ip
        && v6.to_ipv4_mapped().is_some()
    {
        return Err(format!(
            "{s:?} is an IPv4-mapped IPv6 address; write the IPv4 address"
        ));
    }
    Ok(ip)
}

fn is_link_local_unicast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
    }
}

/// Why `ip` is not a unicast address usable as a tunnel endpoint, if it is not.
fn not_unicast(ip: IpAddr) -> Option<&'static str> {
    if ip.is_unspecified() {
        Some("is the unspecified address")
    } else if ip.is_loopback() {
        Some("is a loopback address")
    } else if ip.is_multicast() {
        Some("is a multicast address")
    } else if matches!(ip, IpAddr::V4(v4) if v4.is_broadcast()) {
        Some("is the broadcast address")
    } else {
        None
    }
}

/// Parses a VTEP address: an IP that is unicast and not link-local.
pub fn parse_vtep_ip(s: &str) -> Result<IpAddr, String> {
    let ip = parse_ip(s)?;
    if let Some(why) = not_unicast(ip) {
        return Err(format!("{s:?} {why}; a VTEP needs a unicast address"));
    }
    if is_link_local_unicast(ip) {
        return Err(format!(
            "{s:?} is a link-local address; a VTEP needs a routable address"
        ));
    }
    Ok(ip)
}

/// Parses a device IP: unicast (link-local allowed, the device is on the same segment).
pub fn parse_device_ip(s: &str) -> Result<IpAddr, String> {
    let ip = parse_ip(s)?;
    if let Some(why) = not_unicast(ip) {
        return Err(format!("{s:?} {why}; a device address must be unicast"));
    }
    Ok(ip)
}

/// Parses a unicast MAC address `xx:xx:xx:xx:xx:xx` (either case).
pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    // By hand, without allocating: the planner parses every device's MAC every pass.
    let bytes = s.as_bytes();
    let hex = |b: u8| char::from(b).to_digit(16);
    let mut mac = [0u8; 6];
    let well_formed = bytes.len() == 17
        && mac.iter_mut().enumerate().all(|(i, byte)| {
            let at = i * 3;
            let separated = i == 5 || bytes[at + 2] == b':';
            match (hex(bytes[at]), hex(bytes[at + 1])) {
                (Some(high), Some(low)) if separated => {
                    *byte = (high * 16 + low) as u8;
                    true
                }
                _ => false,
            }
        });
    if !well_formed {
        return Err(format!("{s:?} is not a MAC address like 52:54:00:12:34:56"));
    }
    if mac[0] & 1 == 1 {
        return Err(format!(
            "{s:?} is a multicast or broadcast MAC; a device needs a unicast MAC"
        ));
    }
    if mac == [0; 6] {
        return Err(format!(
            "{s:?} is the all-zero MAC; a device needs its own address"
        ));
    }
    Ok(mac)
}

/// Formats a MAC address the way OVS prints it.
pub fn format_mac(mac: [u8; 6]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(17);
    for (i, byte) in mac.iter().enumerate() {
        if i > 0 {
            text.push(':');
        }
        text.push(char::from(HEX[usize::from(byte >> 4)]));
        text.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    text
}

/// Parses a gateway tunnel IP: a unicast, routable IPv4 address (hardware_vtep carries
/// only VXLAN over IPv4).
pub fn parse_gateway_ip(s: &str) -> Result<IpAddr, String> {
    let ip = parse_ip(s)?;
    if ip.is_ipv6() {
        return Err(format!(
            "{s:?} is an IPv6 address; hardware_vtep carries only VXLAN over IPv4"
        ));
    }
    if let Some(why) = not_unicast(ip) {
        return Err(format!("{s:?} {why}; a tunnel IP must be unicast"));
    }
    if is_link_local_unicast(ip) {
        return Err(format!(
            "{s:?} is a link-local address; a tunnel IP must be routable"
        ));
    }
    Ok(ip)
}

/// Whether `s` is one DNS label of a host name: 1 to 63 ASCII letters, digits and inner
/// hyphens (either case).
fn is_host_label(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=63).contains(&b.len())
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// Checks an OVSDB endpoint of a gateway, `tcp:HOST:PORT` or `ssl:HOST:PORT`: HOST is a DNS
/// name, an IPv4 address or an IPv6 address in brackets, PORT is 1..65535. Returns the
/// scheme (`"tcp"` or `"ssl"`).
pub fn parse_endpoint(s: &str) -> Result<&str, String> {
    let len = s.chars().count();
    if len > MAX_ENDPOINT_LEN {
        return Err(format!(
            "{len} characters; at most {MAX_ENDPOINT_LEN} are allowed"
        ));
    }
    let Some((scheme, rest)) = s
        .split_once(':')
        .filter(|(scheme, _)| matches!(*scheme, "tcp" | "ssl"))
    else {
        return Err(format!(
            "{s:?} does not start with tcp: or ssl: (expected tcp:HOST:PORT or ssl:HOST:PORT)"
        ));
    };
    let Some((host, port)) = rest.rsplit_once(':') else {
        return Err(format!("{s:?} has no port (expected {scheme}:HOST:PORT)"));
    };
    if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{s:?}: the port {port:?} is not a number 1-65535"));
    }
    let number: u32 = port.parse().expect("1 to 5 ASCII digits");
    if !(1..=65535).contains(&number) {
        return Err(format!("{s:?}: the port {number} is out of range 1..65535"));
    }
    if let Some(inner) = host.strip_prefix('[') {
        let Some(inner) = inner.strip_suffix(']').filter(|a| {
            !a.is_empty()
                && a.bytes()
                    .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        }) else {
            return Err(format!(
                "{s:?}: the host {host:?} is not an IPv6 address in brackets"
            ));
        };
        return match parse_ip(inner) {
            Ok(IpAddr::V6(_)) => Ok(scheme),
            Ok(IpAddr::V4(_)) => Err(format!(
                "{s:?}: {inner} in brackets is an IPv4 address; write it without brackets"
            )),
            Err(e) => Err(format!("{s:?}: in brackets: {e}")),
        };
    }
    if !host.split('.').all(is_host_label) {
        return Err(format!(
            "{s:?}: the host {host:?} is not a DNS name, an IPv4 address or an IPv6 address in brackets"
        ));
    }
    // A host of digits and dots is read as an IPv4 address by resolvers, with their own
    // ideas about leading zeros (octal) and missing octets: it must be a plain one.
    if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') && parse_ip(host).is_err() {
        return Err(format!(
            "{s:?}: the host {host:?} is not an IPv4 address (four numbers 0-255 without leading zeros)"
        ));
    }
    Ok(scheme)
}

/// Checks a Physical_Switch or Physical_Port name: 1 to 253 printable ASCII characters,
/// no spaces.
pub fn check_switch_name(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    let len = s.chars().count();
    if len > MAX_SWITCH_NAME_LEN {
        return Err(format!(
            "{len} characters; at most {MAX_SWITCH_NAME_LEN} are allowed"
        ));
    }
    if let Some(c) = s.chars().find(|c| !matches!(c, '!'..='~')) {
        return Err(format!(
            "{s:?} contains {c:?}; only printable ASCII characters without spaces are allowed"
        ));
    }
    Ok(())
}

/// Whether `s` is a valid label key: optional DNS-subdomain prefix and `/`, then a name
/// of 1..63 alphanumerics, `-`, `_`, `.`, starting and ending alphanumeric.
pub fn is_label_key(s: &str) -> bool {
    let (prefix, name) = match s.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    prefix.is_none_or(is_dns_subdomain) && !name.is_empty() && is_label_value(name)
}

/// Whether `s` is a valid label value (possibly empty).
pub fn is_label_value(s: &str) -> bool {
    let b = s.as_bytes();
    s.len() <= 63
        && (b.is_empty()
            || (b
                .iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()))
}

/// Checks a label selector; errors are reported under `field`.
pub fn validate_selector(selector: &LabelSelector, field: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let labels = selector.match_labels.as_ref().map_or(0, |m| m.len());
    if labels > MAX_SELECTOR_LABELS {
        errors.push(FieldError::new(
            format!("{field}.matchLabels"),
            format!("{labels} labels; at most {MAX_SELECTOR_LABELS} are allowed"),
        ));
    }
    let expressions = selector.match_expressions.as_ref().map_or(0, Vec::len);
    if expressions > MAX_SELECTOR_EXPRESSIONS {
        errors.push(FieldError::new(
            format!("{field}.matchExpressions"),
            format!("{expressions} expressions; at most {MAX_SELECTOR_EXPRESSIONS} are allowed"),
        ));
    }
    for (key, value) in selector.match_labels.iter().flatten() {
        if !is_label_key(key) {
            errors.push(FieldError::new(
                format!("{field}.matchLabels"),
                format!("{key:?} is not a valid label key"),
            ));
        }
        if !is_label_value(value) {
            errors.push(FieldError::new(
                format!("{field}.matchLabels.{key}"),
                format!("{value:?} is not a valid label value"),
            ));
        }
    }
    for (i, expr) in selector.match_expressions.iter().flatten().enumerate() {
        let at = format!("{field}.matchExpressions[{i}]");
        if !is_label_key(&expr.key) {
            errors.push(FieldError::new(
                format!("{at}.key"),
                format!("{:?} is not a valid label key", expr.key),
            ));
        }
        let values = expr.values.as_deref().unwrap_or_default();
        if values.len() > MAX_SELECTOR_VALUES {
            errors.push(FieldError::new(
                format!("{at}.values"),
                format!(
                    "{} values; at most {MAX_SELECTOR_VALUES} are allowed",
                    values.len()
                ),
            ));
        }
        match expr.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => errors.push(FieldError::new(
                format!("{at}.values"),
                format!("operator {} needs at least one value", expr.operator),
            )),
            "Exists" | "DoesNotExist" if !values.is_empty() => errors.push(FieldError::new(
                format!("{at}.values"),
                format!("operator {} takes no values", expr.operator),
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => errors.push(FieldError::new(
                format!("{at}.operator"),
                format!("{other:?} is not one of In, NotIn, Exists, DoesNotExist"),
            )),
        }
        for (j, v) in values.iter().enumerate() {
            if !is_label_value(v) {
                errors.push(FieldError::new(
                    format!("{at}.values[{j}]"),
                    format!("{v:?} is not a valid label value"),
                ));
            }
        }
    }
    errors
}

/// Checks a RemoteDevice spec against every rule the CRD enforces.
pub fn validate_spec(spec: &RemoteDeviceSpec) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if let Err(e) = parse_vtep_ip(&spec.vtep_ip) {
        errors.push(FieldError::new("spec.vtepIP", e));
    }
    if spec.vni == 0 || spec.vni > MAX_VNI {
        errors.push(FieldError::new(
            "spec.vni",
            format!("{} is out of range 1..{MAX_VNI}", spec.vni),
        ));
    }
    if let Err(e) = parse_mac(&spec.mac_address) {
        errors.push(FieldError::new("spec.macAddress", e));
    }
    if spec.ips.len() > MAX_DEVICE_IPS {
        errors.push(FieldError::new(
            "spec.ips",
            format!(
                "{} addresses; at most {MAX_DEVICE_IPS} are allowed",
                spec.ips.len()
            ),
        ));
    }
    let mut seen = BTreeSet::new();
    let mut reported = BTreeSet::new();
    for (i, ip) in spec.ips.iter().enumerate() {
        match parse_device_ip(ip) {
            // A set of strings on the server: one spelling per address keeps it a set of
            // addresses.
            Ok(addr) if addr.to_string() != *ip => errors.push(FieldError::new(
                format!("spec.ips[{i}]"),
                format!("{ip:?} is not in canonical form; write {addr}"),
            )),
            // Reported once, at its second occurrence, as the API server does.
            Ok(addr) if !seen.insert(addr) => {
                if reported.insert(addr) {
                    errors.push(FieldError::new(
                        format!("spec.ips[{i}]"),
                        format!("{ip:?} is listed more than once"),
                    ));
                }
            }
            Ok(_) => {}
            Err(e) => errors.push(FieldError::new(format!("spec.ips[{i}]"), e)),
        }
    }
    match spec.dst_port {
        Some(0) => errors.push(FieldError::new(
            "spec.dstPort",
            "0 is out of range 1..65535",
        )),
        Some(_) if !spec.tunnel_type.has_udp_port() => errors.push(FieldError::new(
            "spec.dstPort",
            format!(
                "not allowed with tunnelType {} (it has no UDP port)",
                spec.tunnel_type
            ),
        )),
        _ => {}
    }
    if let Some(vlan) = spec.local_vlan
        && vlan > MAX_VLAN
    {
        errors.push(FieldError::new(
            "spec.localVlan",
            format!("{vlan} is out of range 0..{MAX_VLAN}"),
        ));
    }
    if let Some(attachment) = &spec.attachment {
        errors.extend(validate_attachment(attachment, spec));
    }
    if let Some(bfd) = &spec.bfd {
        errors.extend(validate_bfd(bfd));
    }
    if let Some(selector) = &spec.node_selector {
        errors.extend(validate_selector(selector, "spec.nodeSelector"));
    }
    errors
}

/// Checks `spec.bfd`: each timer 100..60000 ms.
fn validate_bfd(bfd: &DeviceBfd) -> Vec<FieldError> {
    [
        ("spec.bfd.minRxMs", bfd.min_rx_ms),
        ("spec.bfd.minTxMs", bfd.min_tx_ms),
    ]
    .into_iter()
    .filter_map(|(field, ms)| Some((field, check_bfd_interval(ms?).err()?)))
    .map(|(field, e)| FieldError::new(field, e))
    .collect()
}

/// Checks one BFD interval in milliseconds: 100..60000.
pub fn check_bfd_interval(ms: u32) -> Result<(), String> {
    if (MIN_BFD_INTERVAL_MS..=MAX_BFD_INTERVAL_MS).contains(&ms) {
        Ok(())
    } else {
        Err(format!(
            "{ms} is out of range {MIN_BFD_INTERVAL_MS}..{MAX_BFD_INTERVAL_MS} (milliseconds)"
        ))
    }
}

/// Checks `spec.attachment`: a switch port name, a VLAN 0..4095, and a device the switch
/// can carry (VXLAN over IPv4).
fn validate_attachment(attachment: &GatewayAttachment, spec: &RemoteDeviceSpec) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if let Err(e) = check_switch_name(&attachment.port) {
        errors.push(FieldError::new("spec.attachment.port", e));
    }
    if let Some(vlan) = attachment.vlan
        && vlan > MAX_ATTACHMENT_VLAN
    {
        errors.push(FieldError::new(
            "spec.attachment.vlan",
            format!("{vlan} is out of range 0..{MAX_ATTACHMENT_VLAN}"),
        ));
    }
    if spec.tunnel_type != TunnelType::Vxlan {
        errors.push(FieldError::new(
            "spec.attachment",
            format!(
                "a gateway attachment needs tunnelType vxlan, not {} (hardware_vtep carries only VXLAN)",
                spec.tunnel_type
            ),
        ));
    }
    // Only a valid vtepIP is judged here (an invalid one is reported at spec.vtepIP).
    if let Ok(IpAddr::V6(_)) = parse_ip(&spec.vtep_ip) {
        errors.push(FieldError::new(
            "spec.attachment",
            format!(
                "a gateway attachment needs an IPv4 vtepIP, not {} (hardware_vtep carries only VXLAN over IPv4)",
                spec.vtep_ip
            ),
        ));
    }
    errors
}

/// Checks what the API server checks in the metadata of every object: the name (a DNS
/// subdomain), label keys and values, and annotation keys.
fn validate_object_meta(meta: &ObjectMeta) -> Vec<FieldError> {
    let mut errors = Vec::new();
    match meta.name.as_deref() {
        None | Some("") => errors.push(FieldError::new("metadata.name", "is required")),
        Some(name) if !is_dns_subdomain(name) => errors.push(FieldError::new(
            "metadata.name",
            format!(
                "{name:?} is not a valid name (lower-case DNS subdomain, at most 253 characters)"
            ),
        )),
        Some(_) => {}
    }
    for (key, value) in meta.labels.iter().flatten() {
        if !is_label_key(key) {
            errors.push(FieldError::new(
                "metadata.labels",
                format!("{key:?} is not a valid label key"),
            ));
        }
        if !is_label_value(value) {
            errors.push(FieldError::new(
                "metadata.labels",
                format!("{value:?} (label {key}) is not a valid label value"),
            ));
        }
    }
    // Annotation keys are checked in lower case (`Example.COM/note` is fine).
    for key in meta.annotations.iter().flatten().map(|(k, _)| k) {
        if !is_label_key(&key.to_lowercase()) {
            errors.push(FieldError::new(
                "metadata.annotations",
                format!("{key:?} is not a valid annotation key"),
            ));
        }
    }
    errors
}

/// Checks a whole RemoteDevice: its name and namespace, then its spec.
pub fn validate_device(device: &RemoteDevice) -> Vec<FieldError> {
    let mut errors = validate_object_meta(&device.metadata);
    if let Some(ns) = device.metadata.namespace.as_deref()
        && !is_dns_label(ns)
    {
        errors.push(FieldError::new(
            "metadata.namespace",
            format!("{ns:?} is not a valid namespace name"),
        ));
    }
    errors.extend(validate_spec(&device.spec));
    errors
}

/// Checks a VtepGateway spec against every rule the CRD enforces.
pub fn validate_gateway_spec(spec: &VtepGatewaySpec) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if let Err(e) = parse_endpoint(&spec.endpoint) {
        errors.push(FieldError::new("spec.endpoint", e));
    }
    // As the CEL rule reads it: whatever else is wrong with the endpoint, `ssl:` needs a
    // Secret and anything else takes none.
    match (spec.endpoint.starts_with("ssl:"), &spec.tls_secret_name) {
        (true, None) => errors.push(FieldError::new(
            "spec.tlsSecretName",
            "an ssl: endpoint needs tlsSecretName (a Secret with tls.key, tls.crt and ca.crt)",
        )),
        (false, Some(_)) => errors.push(FieldError::new(
            "spec.tlsSecretName",
            "only an ssl: endpoint takes tlsSecretName; a tcp: endpoint takes none",
        )),
        _ => {}
    }
    if let Some(secret) = &spec.tls_secret_name
        && !is_dns_subdomain(secret)
    {
        errors.push(FieldError::new(
            "spec.tlsSecretName",
            format!(
                "{secret:?} is not a valid Secret name (lower-case DNS subdomain, at most 253 characters)"
            ),
        ));
    }
    let count = spec.tunnel_ips.len();
    if count == 0 {
        errors.push(FieldError::new(
            "spec.tunnelIPs",
            "at least one tunnel IP is needed",
        ));
    } else if count > MAX_GATEWAY_TUNNEL_IPS {
        errors.push(FieldError::new(
            "spec.tunnelIPs",
            format!("{count} addresses; at most {MAX_GATEWAY_TUNNEL_IPS} are allowed"),
        ));
    }
    let mut seen = BTreeSet::new();
    let mut reported = BTreeSet::new();
    for (i, ip) in spec.tunnel_ips.iter().enumerate() {
        // A valid IPv4 address has one spelling, so the server's set of strings is a set
        // of addresses; a duplicate is reported once, at its second occurrence.
        match parse_gateway_ip(ip) {
            Ok(addr) if !seen.insert(addr) => {
                if reported.insert(addr) {
                    errors.push(FieldError::new(
                        format!("spec.tunnelIPs[{i}]"),
                        format!("{ip:?} is listed more than once"),
                    ));
                }
            }
            Ok(_) => {}
            Err(e) => errors.push(FieldError::new(format!("spec.tunnelIPs[{i}]"), e)),
        }
    }
    if let Some(name) = &spec.physical_switch
        && let Err(e) = check_switch_name(name)
    {
        errors.push(FieldError::new("spec.physicalSwitch", e));
    }
    errors
}

/// Checks a whole VtepGateway: its name, then its spec. It is cluster-scoped: a namespace
/// in a manifest is ignored, as `kubectl` and the API server ignore it.
pub fn validate_gateway(gateway: &VtepGateway) -> Vec<FieldError> {
    let mut errors = validate_object_meta(&gateway.metadata);
    errors.extend(validate_gateway_spec(&gateway.spec));
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_rules() {
        for ok in ["192.0.2.10", "10.1.2.3", "2001:db8::1", "fd00::5"] {
            assert!(parse_vtep_ip(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "192.0.02.10",
            "::ffff:192.0.2.10",
            "127.0.0.1",
            "::1",
            "0.0.0.0",
            "::",
            "224.0.0.1",
            "ff02::1",
            "169.254.1.1",
            "fe80::1",
            "fe80::1%eth0",
            "255.255.255.255",
            "1.2.3",
            "1.2.3.4.5",
            " 1.2.3.4",
        ] {
            assert!(parse_vtep_ip(bad).is_err(), "{bad:?} accepted");
        }
        assert!(
            parse_device_ip("fe80::1").is_ok(),
            "link-local device IPs are fine"
        );
    }

    #[test]
    fn mac_rules() {
        assert_eq!(
            parse_mac("52:54:00:AB:cd:01").unwrap(),
            [0x52, 0x54, 0, 0xab, 0xcd, 1]
        );
        for bad in [
            "",
            "01:00:5e:00:00:01",
            "ff:ff:ff:ff:ff:ff",
            "00:00:00:00:00:00",
            "52-54-00-12-34-56",
            "52:54:00:12:34",
            "52:54:00:12:34:5g",
            "52:54:00:12:34:567",
            "52:54:00:12:3:456",
            "52:54:00:12:34;56",
            "+2:54:00:12:34:56",
            "52:54:00:12:34:é",
        ] {
            assert!(parse_mac(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            format_mac([0x52, 0x54, 0, 0xab, 0xcd, 1]),
            "52:54:00:ab:cd:01"
        );
        // Every unicast, non-zero MAC comes back from its text (a spread of values).
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..10_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let mut mac = [0u8; 6];
            mac.copy_from_slice(&x.to_be_bytes()[..6]);
            mac[0] &= 0xfe;
            if mac == [0; 6] {
                continue;
            }
            let text = format_mac(mac);
            assert_eq!(parse_mac(&text), Ok(mac), "{text}");
            assert_eq!(parse_mac(&text.to_uppercase()), Ok(mac), "{text}");
        }
    }

    /// One edit of a valid spec, in a table of cases.
    type Edit<T> = Box<dyn FnOnce(&mut T)>;

    fn gateway(edit: impl FnOnce(&mut VtepGatewaySpec)) -> Vec<FieldError> {
        let mut spec = VtepGatewaySpec {
            endpoint: "tcp:192.0.2.50:6640".into(),
            tls_secret_name: None,
            tunnel_ips: vec!["192.0.2.50".into()],
            physical_switch: None,
        };
        edit(&mut spec);
        validate_gateway_spec(&spec)
    }

    fn fields(errors: &[FieldError]) -> Vec<&str> {
        errors.iter().map(|e| e.field.as_str()).collect()
    }

    /// Endpoints with the verdict, checked against the CRD's pattern and CEL rules as
    /// written (the pattern with a JSON Schema validator, the CEL rules by their meaning),
    /// and against the OVSDB client's own parser for the accepted ones.
    #[test]
    fn endpoint_rules() {
        let long_label = "a".repeat(63);
        let too_long_label = "a".repeat(64);
        let long_name = format!("tcp:{}:6640", [long_label.as_str(); 4].join("."));
        let too_long = format!("tcp:{}:6640", ["a"; 134].join("."));
        let cases: Vec<(String, bool)> = [
            ("tcp:192.0.2.50:6640", true),
            ("ssl:192.0.2.50:6640", true),
            ("tcp:tor1.example.com:6640", true),
            ("tcp:TOR-1.Example.COM:1", true),
            ("tcp:localhost:65535", true),
            ("tcp:127.0.0.1:6640", true),
            ("tcp:[2001:db8::1]:6640", true),
            ("ssl:[FD00::5]:6640", true),
            ("tcp:0tor:6640", true),
            ("tcp:1e100.net:443", true),
            ("", false),
            ("tcp:", false),
            ("unix:/run/openvswitch/db.sock", false),
            ("TCP:192.0.2.50:6640", false),
            ("http:192.0.2.50:6640", false),
            ("tcp:192.0.2.50", false),
            ("tcp:192.0.2.50:", false),
            ("tcp:192.0.2.50:0", false),
            ("tcp:192.0.2.50:00000", false),
            ("tcp:192.0.2.50:65536", false),
            ("tcp:192.0.2.50:99999", false),
            ("tcp:192.0.2.50:123456", false),
            ("tcp:192.0.2.50:+1", false),
            ("tcp:192.0.2.50:6640 ", false),
            ("tcp: 192.0.2.50:6640", false),
            ("tcp:192.0.2.300:6640", false),
            ("tcp:010.0.0.1:6640", false),
            ("tcp:10.1:6640", false),
            ("tcp:1.2.3.4.5:6640", false),
            ("tcp:2001:db8::1:6640", false),
            ("tcp:[2001:db8::1:6640", false),
            ("tcp:[]:6640", false),
            ("tcp:[192.0.2.50]:6640", false),
            ("tcp:[::ffff:192.0.2.50]:6640", false),
            ("tcp:[fe80::1%eth0]:6640", false),
            ("tcp:[:::]:6640", false),
            ("tcp:[2001:db8::g]:6640", false),
            ("tcp:-tor:6640", false),
            ("tcp:tor-:6640", false),
            ("tcp:tor..example:6640", false),
            ("tcp:.tor:6640", false),
            ("tcp:tor.:6640", false),
            ("tcp:tor_1:6640", false),
            ("tcp:tör:6640", false),
            ("tcp:tor:６６４０", false),
        ]
        .into_iter()
        .map(|(e, ok)| (e.to_string(), ok))
        .chain([
            (long_name.clone(), true),
            (format!("tcp:{too_long_label}:6640"), false),
            (too_long, false),
        ])
        .collect();
        assert_eq!(long_name.len(), 264);
        let pattern =
            serde_json::json!({"type": "string", "pattern": crate::api::ENDPOINT_PATTERN});
        for (endpoint, ok) in &cases {
            let verdict = parse_endpoint(endpoint);
            assert_eq!(verdict.is_ok(), *ok, "{endpoint:?}: {verdict:?}");
            // Whatever the pattern alone accepts beyond these is one of the CEL rules' cases.
            let by_pattern = jsonschema::is_valid(&pattern, &serde_json::json!(endpoint))
                && endpoint.chars().count() <= MAX_ENDPOINT_LEN;
            if *ok {
                assert!(by_pattern, "{endpoint:?} is refused by the pattern");
                let parsed: Result<crate::ovsdb::Endpoint, _> = endpoint.parse();
                assert!(parsed.is_ok(), "{endpoint:?}: {parsed:?}");
            } else if by_pattern {
                let (_, port) = endpoint.rsplit_once(':').unwrap();
                let port: u32 = port.parse().unwrap();
                let host =
                    &endpoint[4..endpoint.len() - endpoint.rsplit_once(':').unwrap().1.len() - 1];
                let bracketed = host.starts_with('[');
                let dotted = host.bytes().all(|b| b.is_ascii_digit() || b == b'.');
                assert!(
                    !(1..=65535).contains(&port) || bracketed || dotted,
                    "{endpoint:?} is refused by no rule of the CRD"
                );
            }
        }
        assert!(
            gateway(|s| s.endpoint = "tcp:192.0.2.50:0".into())[0]
                .message
                .contains("out of range")
        );
    }

    #[test]
    fn gateway_rules() {
        assert_eq!(gateway(|_| {}), vec![]);
        let table: Vec<(Vec<&str>, Edit<VtepGatewaySpec>)> = vec![
            (
                vec![],
                Box::new(|s| {
                    s.endpoint = "ssl:tor1.example.com:6640".into();
                    s.tls_secret_name = Some("tor1-client-tls".into());
                    s.tunnel_ips = (1..=8).map(|i| format!("192.0.2.{i}")).collect();
                    s.physical_switch = Some("tor-1_rack/A!~".into());
                }),
            ),
            (
                vec!["spec.endpoint"],
                Box::new(|s| s.endpoint = "tcp:tor1".into()),
            ),
            (
                vec!["spec.tlsSecretName"],
                Box::new(|s| s.endpoint = "ssl:192.0.2.50:6640".into()),
            ),
            (
                vec!["spec.tlsSecretName"],
                Box::new(|s| s.tls_secret_name = Some("tls".into())),
            ),
            // An endpoint of neither scheme takes no Secret either.
            (
                vec!["spec.endpoint", "spec.tlsSecretName"],
                Box::new(|s| {
                    s.endpoint = "unix:/x".into();
                    s.tls_secret_name = Some("tls".into());
                }),
            ),
            (
                vec!["spec.tlsSecretName"],
                Box::new(|s| {
                    s.endpoint = "ssl:192.0.2.50:6640".into();
                    s.tls_secret_name = Some("Client_TLS".into());
                }),
            ),
            (vec!["spec.tunnelIPs"], Box::new(|s| s.tunnel_ips.clear())),
            (
                vec!["spec.tunnelIPs"],
                Box::new(|s| s.tunnel_ips = (1..=9).map(|i| format!("192.0.2.{i}")).collect()),
            ),
            (
                vec!["spec.tunnelIPs[1]"],
                Box::new(|s| {
                    s.tunnel_ips = vec!["192.0.2.1".into(), "192.0.2.1".into(), "192.0.2.1".into()]
                }),
            ),
            (
                vec![
                    "spec.tunnelIPs[0]",
                    "spec.tunnelIPs[1]",
                    "spec.tunnelIPs[2]",
                    "spec.tunnelIPs[3]",
                ],
                Box::new(|s| {
                    s.tunnel_ips = vec![
                        "2001:db8::1".into(),
                        "192.0.2.010".into(),
                        "169.254.0.1".into(),
                        "224.0.0.1".into(),
                    ]
                }),
            ),
            (
                vec![
                    "spec.tunnelIPs[1]",
                    "spec.tunnelIPs[2]",
                    "spec.tunnelIPs[3]",
                ],
                Box::new(|s| {
                    s.tunnel_ips = vec![
                        "192.0.2.1".into(),
                        "127.0.0.1".into(),
                        "0.0.0.0".into(),
                        "255.255.255.255".into(),
                    ]
                }),
            ),
            (
                vec!["spec.physicalSwitch"],
                Box::new(|s| s.physical_switch = Some(String::new())),
            ),
            (
                vec!["spec.physicalSwitch"],
                Box::new(|s| s.physical_switch = Some("tor 1".into())),
            ),
            (
                vec!["spec.physicalSwitch"],
                Box::new(|s| s.physical_switch = Some("a".repeat(254))),
            ),
            (
                vec![],
                Box::new(|s| s.physical_switch = Some("a".repeat(253))),
            ),
        ];
        for (i, (expected, edit)) in table.into_iter().enumerate() {
            let errors = gateway(edit);
            assert_eq!(fields(&errors), expected, "case {i}: {errors:?}");
            assert!(errors.iter().all(|e| !e.message.is_empty()));
        }
        for ok in [
            "192.0.2.1",
            "10.0.0.1",
            "100.64.0.1",
            "240.0.0.1",
            "0.1.2.3",
        ] {
            assert!(parse_gateway_ip(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn gateway_metadata_rules() {
        let mut gw = VtepGateway::new(
            "tor-1",
            VtepGatewaySpec {
                endpoint: "tcp:192.0.2.50:6640".into(),
                tls_secret_name: None,
                tunnel_ips: vec!["192.0.2.50".into()],
                physical_switch: None,
            },
        );
        assert_eq!(validate_gateway(&gw), vec![]);
        // Cluster-scoped: a namespace is ignored, as the API server clears it.
        gw.metadata.namespace = Some("Not_A_Namespace".into());
        assert_eq!(validate_gateway(&gw), vec![]);
        gw.metadata.name = Some("Tor_1".into());
        gw.metadata.labels = Some([("-x".to_string(), "y".to_string())].into());
        assert_eq!(
            fields(&validate_gateway(&gw)),
            vec!["metadata.name", "metadata.labels"]
        );
    }

    #[test]
    fn attachment_rules() {
        fn device(edit: impl FnOnce(&mut RemoteDeviceSpec)) -> Vec<FieldError> {
            let mut spec: RemoteDeviceSpec = serde_json::from_value(serde_json::json!({
                "vtepIP": "192.0.2.50", "vni": 5001, "macAddress": "52:54:00:00:00:01",
                "attachment": {"port": "eth1", "vlan": 100},
            }))
            .unwrap();
            edit(&mut spec);
            validate_spec(&spec)
        }
        fn port(s: &mut RemoteDeviceSpec) -> &mut GatewayAttachment {
            s.attachment.as_mut().unwrap()
        }
        assert_eq!(device(|_| {}), vec![]);
        let table: Vec<(Vec<&str>, Edit<RemoteDeviceSpec>)> = vec![
            (vec![], Box::new(|s| port(s).vlan = None)),
            (vec![], Box::new(|s| port(s).vlan = Some(0))),
            (vec![], Box::new(|s| port(s).vlan = Some(4095))),
            (vec![], Box::new(|s| port(s).port = "Ethernet1/1".into())),
            (
                vec!["spec.attachment.vlan"],
                Box::new(|s| port(s).vlan = Some(4096)),
            ),
            (
                vec!["spec.attachment.port"],
                Box::new(|s| port(s).port = String::new()),
            ),
            (
                vec!["spec.attachment.port"],
                Box::new(|s| port(s).port = "eth 1".into()),
            ),
            (
                vec!["spec.attachment.port"],
                Box::new(|s| port(s).port = "p".repeat(254)),
            ),
            (
                vec!["spec.attachment"],
                Box::new(|s| s.tunnel_type = TunnelType::Geneve),
            ),
            (
                vec!["spec.attachment"],
                Box::new(|s| s.tunnel_type = TunnelType::Gre),
            ),
            (
                vec!["spec.attachment"],
                Box::new(|s| s.vtep_ip = "2001:db8::1".into()),
            ),
            // An invalid vtepIP is reported there only.
            (vec!["spec.vtepIP"], Box::new(|s| s.vtep_ip = "tor1".into())),
            (
                vec!["spec.vtepIP", "spec.attachment"],
                Box::new(|s| s.vtep_ip = "::1".into()),
            ),
            (
                vec![],
                Box::new(|s| {
                    s.attachment = None;
                    s.tunnel_type = TunnelType::Gre;
                    s.vtep_ip = "2001:db8::1".into();
                }),
            ),
        ];
        for (i, (expected, edit)) in table.into_iter().enumerate() {
            let errors = device(edit);
            assert_eq!(fields(&errors), expected, "case {i}: {errors:?}");
        }
        // Read as the API server reads it: an integral float VLAN is an integer.
        let spec: RemoteDeviceSpec = serde_json::from_value(serde_json::json!({
            "vtepIP": "192.0.2.50", "vni": 5001, "macAddress": "52:54:00:00:00:01",
            "attachment": {"port": "eth1", "vlan": 100.0},
        }))
        .unwrap();
        assert_eq!(spec.attachment.unwrap().vlan, Some(100));
    }

    #[test]
    fn bfd_rules() {
        fn device(bfd: serde_json::Value) -> Vec<FieldError> {
            let spec: RemoteDeviceSpec = serde_json::from_value(serde_json::json!({
                "vtepIP": "192.0.2.50", "vni": 5001, "macAddress": "52:54:00:00:00:01",
                "bfd": bfd,
            }))
            .unwrap();
            validate_spec(&spec)
        }
        let cases: Vec<(serde_json::Value, Vec<&str>)> = vec![
            (serde_json::json!({}), vec![]),
            (serde_json::json!({"enabled": false}), vec![]),
            (
                serde_json::json!({"enabled": true, "minRxMs": 100, "minTxMs": 60000}),
                vec![],
            ),
            (serde_json::json!({"minRxMs": 99}), vec!["spec.bfd.minRxMs"]),
            (
                serde_json::json!({"minTxMs": 60001}),
                vec!["spec.bfd.minTxMs"],
            ),
            (serde_json::json!({"minRxMs": 0}), vec!["spec.bfd.minRxMs"]),
            // Checked also when BFD is off: the timers would apply as soon as it is on.
            (
                serde_json::json!({"enabled": false, "minRxMs": 50, "minTxMs": 70000}),
                vec!["spec.bfd.minRxMs", "spec.bfd.minTxMs"],
            ),
        ];
        for (i, (bfd, expected)) in cases.into_iter().enumerate() {
            let errors = device(bfd);
            assert_eq!(fields(&errors), expected, "case {i}: {errors:?}");
            assert!(
                errors
                    .iter()
                    .all(|e| e.message.contains("out of range 100..60000"))
            );
        }
    }

    #[test]
    fn label_rules() {
        assert!(is_label_key("kubernetes.io/hostname"));
        assert!(is_label_key("rack"));
        assert!(!is_label_key("-rack"));
        assert!(!is_label_key("Bad_Prefix/x"));
        assert!(is_label_value(""));
        assert!(!is_label_value(&"a".repeat(64)));
    }
}
