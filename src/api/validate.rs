//! The validation rules of a RemoteDevice as one Rust function.
//!
//! The CRD enforces the same rules at admission (OpenAPI schema + CEL); the controller and
//! `plan` run this function again, because objects can predate a rule, come from files, or
//! reach a cluster whose CRD is older. Messages name the field and say what is wrong.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::MAX_DEVICE_IPS;
use super::names::{is_dns_label, is_dns_subdomain};
use super::schema::{MAX_SELECTOR_EXPRESSIONS, MAX_SELECTOR_LABELS, MAX_SELECTOR_VALUES};
use super::{RemoteDevice, RemoteDeviceSpec};

/// Largest VNI (24 bits).
pub const MAX_VNI: u32 = (1 << 24) - 1;
/// Largest VLAN tag a local port may carry.
pub const MAX_VLAN: u16 = 4094;

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
    let parts: Vec<&str> = s.split(':').collect();
    let well_formed = s.len() == 17
        && parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()));
    if !well_formed {
        return Err(format!("{s:?} is not a MAC address like 52:54:00:12:34:56"));
    }
    let mut mac = [0u8; 6];
    for (byte, part) in mac.iter_mut().zip(parts) {
        *byte = u8::from_str_radix(part, 16).map_err(|e| e.to_string())?;
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
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
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
    if let Some(selector) = &spec.node_selector {
        errors.extend(validate_selector(selector, "spec.nodeSelector"));
    }
    errors
}

/// Checks a whole RemoteDevice: its name and namespace, then its spec.
pub fn validate_device(device: &RemoteDevice) -> Vec<FieldError> {
    let mut errors = Vec::new();
    match device.metadata.name.as_deref() {
        None | Some("") => errors.push(FieldError::new("metadata.name", "is required")),
        Some(name) if !is_dns_subdomain(name) => errors.push(FieldError::new(
            "metadata.name",
            format!(
                "{name:?} is not a valid name (lower-case DNS subdomain, at most 253 characters)"
            ),
        )),
        Some(_) => {}
    }
    if let Some(ns) = device.metadata.namespace.as_deref()
        && !is_dns_label(ns)
    {
        errors.push(FieldError::new(
            "metadata.namespace",
            format!("{ns:?} is not a valid namespace name"),
        ));
    }
    // The API server checks every object's labels and annotation keys.
    for (key, value) in device.metadata.labels.iter().flatten() {
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
    for key in device.metadata.annotations.iter().flatten().map(|(k, _)| k) {
        if !is_label_key(&key.to_lowercase()) {
            errors.push(FieldError::new(
                "metadata.annotations",
                format!("{key:?} is not a valid annotation key"),
            ));
        }
    }
    errors.extend(validate_spec(&device.spec));
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
        ] {
            assert!(parse_mac(bad).is_err(), "{bad:?} accepted");
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
