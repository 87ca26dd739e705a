//! Which tunnel a TunnelPort stands for: one OVS port per (type, remote VTEP, UDP port).
//!
//! Parsed once from a TunnelPort's spec, it owns the rules every module must agree on:
//! the default UDP port of a type counts as no port, and the OVS interface name and the
//! TunnelPort name are derived from it alone.

use std::fmt;
use std::net::IpAddr;

use super::validate::parse_vtep_ip;
use super::{TunnelPortSpec, TunnelType, names};

/// The identity of one tunnel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TunnelId {
    tunnel_type: TunnelType,
    remote_ip: IpAddr,
    /// Only a port other than the type's default; `None` = the default.
    dst_port: Option<u16>,
}

impl TunnelId {
    /// The tunnel of `tunnel_type` to `remote_ip`; a `dst_port` equal to the type's
    /// default is the same tunnel as none at all.
    pub fn new(tunnel_type: TunnelType, remote_ip: IpAddr, dst_port: Option<u16>) -> Self {
        TunnelId {
            tunnel_type,
            remote_ip,
            dst_port: dst_port.filter(|p| Some(*p) != tunnel_type.default_udp_port()),
        }
    }

    /// The tunnel a TunnelPort spec names, or why its remote IP is unusable.
    pub fn of(spec: &TunnelPortSpec) -> Result<Self, String> {
        let remote = parse_vtep_ip(&spec.remote_ip).map_err(|e| format!("remoteIP: {e}"))?;
        Ok(TunnelId::new(spec.tunnel_type, remote, spec.dst_port))
    }

    /// Encapsulation.
    pub fn tunnel_type(&self) -> TunnelType {
        self.tunnel_type
    }

    /// The remote VTEP.
    pub fn remote_ip(&self) -> IpAddr {
        self.remote_ip
    }

    /// The UDP port when it is not the type's default (what a spec and OVS spell out).
    pub fn dst_port(&self) -> Option<u16> {
        self.dst_port
    }

    /// The OVS port and interface name: `rd` + type letter + `-` + 11 hex digits.
    pub fn interface_name(&self) -> String {
        names::interface_name(self.tunnel_type, self.remote_ip, self.dst_port)
    }

    /// The name of this tunnel's TunnelPort on `node`.
    pub fn tunnel_port_name(&self, node: &str) -> String {
        names::tunnel_port_name(node, self.tunnel_type, self.remote_ip, self.dst_port)
    }
}

impl fmt::Display for TunnelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.dst_port {
            Some(port) => write!(f, "{} to {} port {port}", self.tunnel_type, self.remote_ip),
            None => write!(f, "{} to {}", self.tunnel_type, self.remote_ip),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(remote: &str, tunnel_type: TunnelType, dst_port: Option<u16>) -> TunnelPortSpec {
        TunnelPortSpec {
            node_name: "n1".into(),
            remote_ip: remote.into(),
            tunnel_type,
            dst_port,
            local_ip: None,
            devices: Default::default(),
            bfd: None,
        }
    }

    #[test]
    fn the_default_port_spelled_out_is_the_same_tunnel() {
        use TunnelType::*;
        let cases = [
            (Vxlan, Some(4789), None),
            (Vxlan, Some(4790), Some(4790)),
            (Geneve, Some(6081), None),
            (Geneve, Some(4789), Some(4789)),
            (Gre, None, None),
        ];
        for (t, given, kept) in cases {
            let id = TunnelId::of(&spec("192.0.2.10", t, given)).unwrap();
            assert_eq!(id.dst_port(), kept, "{t} {given:?}");
            assert_eq!(
                id.interface_name(),
                TunnelId::of(&spec("192.0.2.10", t, kept))
                    .unwrap()
                    .interface_name()
            );
        }
    }

    #[test]
    fn names_come_from_the_identity_alone() {
        let a = TunnelId::of(&spec("2001:db8::1", TunnelType::Vxlan, None)).unwrap();
        assert_eq!(a.interface_name().len(), 15);
        assert!(a.interface_name().starts_with("rdv-"));
        assert_eq!(a.tunnel_port_name("n1"), "n1.vxlan.2001-db8-0-0-0-0-0-1");
        let b = TunnelId::of(&spec("2001:db8::1", TunnelType::Geneve, None)).unwrap();
        assert_ne!(a.interface_name(), b.interface_name());
        assert_eq!(a.to_string(), "vxlan to 2001:db8::1");
    }

    #[test]
    fn an_unusable_remote_is_refused_with_the_field() {
        for bad in [
            "",
            "localhost",
            "127.0.0.1",
            "::ffff:192.0.2.1",
            "224.0.0.1",
        ] {
            let e = TunnelId::of(&spec(bad, TunnelType::Vxlan, None)).unwrap_err();
            assert!(e.starts_with("remoteIP: "), "{bad}: {e}");
        }
    }
}
