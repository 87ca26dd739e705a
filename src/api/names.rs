//! Deterministic names: TunnelPort objects, their node label, and OVS interface names.
//!
//! Identical inputs always give identical names, so the controller can compute the name
//! of the object it must apply, and the agent the name of the OVS port it must create,
//! without any lookup.

use std::net::IpAddr;

use sha2::{Digest, Sha256};

use super::TunnelType;

/// Longest Kubernetes object name (DNS subdomain).
const MAX_NAME: usize = 253;
/// Longest label value.
const MAX_LABEL_VALUE: usize = 63;
/// Longest Linux interface name (IFNAMSIZ - 1).
pub const MAX_INTERFACE_NAME: usize = 15;

/// The first `len` hex digits of SHA-256 over `input`.
fn hash_hex(input: &str, len: usize) -> String {
    let digest = Sha256::digest(input.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    hex[..len].to_string()
}

/// An IP address spelled with dashes, valid inside a DNS label: `192-0-2-10`, and IPv6
/// with every group written out so no label starts or ends with a dash:
/// `2001-db8-0-0-0-0-0-1`.
pub fn ip_dashed(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4
            .octets()
            .iter()
            .map(u8::to_string)
            .collect::<Vec<_>>()
            .join("-"),
        IpAddr::V6(v6) => v6
            .segments()
            .iter()
            .map(|s| format!("{s:x}"))
            .collect::<Vec<_>>()
            .join("-"),
    }
}

/// Whether `s` is a valid DNS-1123 subdomain (Kubernetes object name).
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_NAME && s.split('.').all(is_dns_label_part)
}

/// Whether `s` is a valid DNS-1123 label (namespace name).
pub fn is_dns_label(s: &str) -> bool {
    s.len() <= 63 && is_dns_label_part(s)
}

fn is_dns_label_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// Replaces what may not stand in a DNS name, and trims to `max` characters.
fn sanitize(s: &str, max: usize) -> String {
    let cleaned: String = s
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .take(max)
        .collect();
    cleaned
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string()
}

/// Name of the TunnelPort for (node, tunnel type, remote VTEP, destination port):
/// `<node>.<type>.<ip-dashed>[.<port>]`, e.g. `worker-1.vxlan.192-0-2-10`. When that is not
/// a valid name (too long, odd node name) the node part becomes a readable prefix plus a
/// hash of the whole, so the name stays unique and deterministic.
pub(super) fn tunnel_port_name(
    node: &str,
    tunnel_type: TunnelType,
    remote_ip: IpAddr,
    dst_port: Option<u16>,
) -> String {
    let mut suffix = format!("{}.{}", tunnel_type, ip_dashed(remote_ip));
    if let Some(port) = dst_port {
        suffix.push_str(&format!(".{port}"));
    }
    let readable = format!("{node}.{suffix}");
    if is_dns_subdomain(&readable) {
        return readable;
    }
    let hash = hash_hex(&readable, 10);
    // Room for "<prefix>-<hash>.<suffix>".
    let room = MAX_NAME - suffix.len() - hash.len() - 2;
    let prefix = sanitize(node, room);
    // Trimming may have left dashes around dots ("a-.b"); drop dots to be safe.
    let prefix: String = prefix.replace('.', "-");
    if prefix.is_empty() {
        format!("{hash}.{suffix}")
    } else {
        format!("{prefix}-{hash}.{suffix}")
    }
}

/// Value of the `remotedevice.io/node` label for a node: the node name when it is a valid
/// label value, else a readable prefix plus a hash.
pub fn node_label_value(node: &str) -> String {
    let valid = node.len() <= MAX_LABEL_VALUE
        && !node.is_empty()
        && node
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && node.as_bytes()[0].is_ascii_alphanumeric()
        && node.as_bytes()[node.len() - 1].is_ascii_alphanumeric();
    if valid {
        return node.to_string();
    }
    let hash = hash_hex(node, 10);
    let prefix = sanitize(node, MAX_LABEL_VALUE - hash.len() - 1);
    if prefix.is_empty() {
        hash
    } else {
        format!("{prefix}-{hash}")
    }
}

/// OVS interface (and port) name for a tunnel: `rd` + type letter + `-` + 11 hex digits
/// of a hash over (type, remote IP, destination port), always 15 characters.
pub(super) fn interface_name(
    tunnel_type: TunnelType,
    remote_ip: IpAddr,
    dst_port: Option<u16>,
) -> String {
    let letter = match tunnel_type {
        TunnelType::Vxlan => 'v',
        TunnelType::Geneve => 'g',
        TunnelType::Gre => 'r',
    };
    let port = dst_port.map(|p| p.to_string()).unwrap_or_default();
    let key = format!("{tunnel_type}|{remote_ip}|{port}");
    format!("rd{letter}-{}", hash_hex(&key, MAX_INTERFACE_NAME - 4))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn tunnel_port_names() {
        let cases: &[(&str, TunnelType, &str, Option<u16>, &str)] = &[
            (
                "worker-1",
                TunnelType::Vxlan,
                "192.0.2.10",
                None,
                "worker-1.vxlan.192-0-2-10",
            ),
            (
                "worker-1",
                TunnelType::Geneve,
                "192.0.2.10",
                Some(6082),
                "worker-1.geneve.192-0-2-10.6082",
            ),
            (
                "n.example.com",
                TunnelType::Gre,
                "2001:db8::1",
                None,
                "n.example.com.gre.2001-db8-0-0-0-0-0-1",
            ),
            (
                "kind-control-plane",
                TunnelType::Vxlan,
                "fd00::",
                None,
                "kind-control-plane.vxlan.fd00-0-0-0-0-0-0-0",
            ),
        ];
        for (node, t, addr, port, want) in cases {
            let got = tunnel_port_name(node, *t, ip(addr), *port);
            assert_eq!(&got, want);
            assert!(is_dns_subdomain(&got));
        }
    }

    #[test]
    fn long_or_odd_node_names_are_hashed_valid_and_distinct() {
        let long_a = format!("{}a", "n".repeat(250));
        let long_b = format!("{}b", "n".repeat(250));
        for node in [long_a.as_str(), long_b.as_str(), "Upper_Case", "-x-", "..."] {
            let name = tunnel_port_name(
                node,
                TunnelType::Vxlan,
                ip("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"),
                Some(65535),
            );
            assert!(is_dns_subdomain(&name), "{name}");
            assert_eq!(
                name,
                tunnel_port_name(
                    node,
                    TunnelType::Vxlan,
                    ip("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"),
                    Some(65535)
                )
            );
        }
        assert_ne!(
            tunnel_port_name(&long_a, TunnelType::Vxlan, ip("192.0.2.1"), None),
            tunnel_port_name(&long_b, TunnelType::Vxlan, ip("192.0.2.1"), None)
        );
    }

    #[test]
    fn node_label_values() {
        assert_eq!(node_label_value("worker-1"), "worker-1");
        let long = "a".repeat(100);
        let v = node_label_value(&long);
        assert_eq!(v.len(), 63);
        assert_ne!(v, node_label_value(&"a".repeat(101)));
    }

    #[test]
    fn interface_names_fit_and_differ() {
        let a = interface_name(TunnelType::Vxlan, ip("192.0.2.10"), None);
        let b = interface_name(TunnelType::Vxlan, ip("192.0.2.10"), Some(4790));
        let c = interface_name(TunnelType::Geneve, ip("192.0.2.10"), None);
        for n in [&a, &b, &c] {
            assert_eq!(n.len(), MAX_INTERFACE_NAME);
        }
        assert!(a.starts_with("rdv-") && c.starts_with("rdg-"));
        assert_ne!(a, b);
        assert_eq!(a, interface_name(TunnelType::Vxlan, ip("192.0.2.10"), None));
    }
}
