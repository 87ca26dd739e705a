//! The desired fabric state of one gateway, protocol-neutral, computed by a pure function.
//!
//! A gateway (a ToR) carries one L2 *segment* per VNI. A segment is what any VXLAN
//! control plane needs to know, whatever the protocol:
//!
//! | [`Segment`] field | hardware_vtep (OVSDB) | BGP-EVPN (RFC 7432 / 8365) |
//! |---|---|---|
//! | `vni` | Logical_Switch `tunnel_key` | the EVI / VNI label |
//! | `bindings` (port, VLAN) | Physical_Port `vlan_bindings` | the local attachment circuit (ES / EVI config) |
//! | `device_macs` | (the switch learns them: Ucast_Macs_Local) | type-2 routes the gateway advertises |
//! | `flood` (node VTEPs) | Mcast_Macs_Remote `unknown-dst` → locator set | type-3 IMET routes received (ingress replication list) |
//! | `remote_macs` (MAC → node VTEP) | Ucast_Macs_Remote → Physical_Locator | type-2 routes received |
//!
//! So a later EVPN writer consumes the same [`FabricState`]; only the writer differs.
//! Nothing here knows about OVSDB.
//!
//! Rules, each pinned by a table test:
//! - A VNI is 1..=16 777 215; a VLAN 0..=4095 (0 = untagged); a port name is non-empty.
//! - Node VTEPs must be IPv4: `hardware_vtep` 1.x knows only `vxlan_over_ipv4`.
//! - A segment without any valid device attachment is not desired at all: the last
//!   device of a VNI gone = its logical switch goes.
//! - Two VNIs claiming the same (port, VLAN): the lower VNI keeps it, the other is
//!   reported (a frame on a port+VLAN can belong to one segment only).
//! - A workload MAC claimed by two nodes: the lowest node address wins, reported.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

/// A VXLAN network identifier.
pub type Vni = u32;

/// Highest VNI (24 bits).
pub const MAX_VNI: Vni = (1 << 24) - 1;

/// A MAC address in canonical form (lowercase, colon separated).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mac(String);

impl Mac {
    /// Parses `aa:bb:cc:dd:ee:ff` (either case, `:` or `-`).
    pub fn parse(s: &str) -> Option<Mac> {
        let parts: Vec<&str> = s.split([':', '-']).collect();
        let ok = parts.len() == 6
            && parts
                .iter()
                .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()));
        ok.then(|| Mac(parts.join(":").to_ascii_lowercase()))
    }

    /// The canonical text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One device attached to the gateway on `port` (VLAN `vlan`, 0 = untagged).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attachment {
    /// Physical port name on the switch.
    pub port: String,
    /// VLAN on that port.
    pub vlan: u16,
    /// The device's MACs (as declared; informational for OVSDB, advertised by EVPN).
    pub macs: Vec<String>,
}

/// What the caller knows about one VNI on this gateway.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SegmentInput {
    /// Devices behind the gateway on this VNI.
    pub attachments: Vec<Attachment>,
    /// Node VTEP addresses that have a tunnel to this gateway carrying this VNI.
    pub node_vteps: Vec<IpAddr>,
    /// Known workload MACs → the VTEP of the node they run on.
    pub workload_macs: Vec<(String, IpAddr)>,
}

/// The planner's input for one gateway: VNI → what is known about it.
pub type GatewayInput = BTreeMap<Vni, SegmentInput>;

/// A (port, VLAN) attachment circuit.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortVlan {
    /// Physical port name.
    pub port: String,
    /// VLAN (0 = untagged).
    pub vlan: u16,
}

/// One desired L2 segment on the gateway.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    /// VNI.
    pub vni: Vni,
    /// Local attachment circuits.
    pub bindings: BTreeSet<PortVlan>,
    /// MACs of the local devices.
    pub device_macs: BTreeSet<Mac>,
    /// Remote VTEPs that get broadcast, unknown unicast and multicast (ingress replication).
    pub flood: BTreeSet<Ipv4Addr>,
    /// Remote unicast MACs and the VTEP behind which each lives.
    pub remote_macs: BTreeMap<Mac, Ipv4Addr>,
}

/// BFD timers of one tunnel (both ends run the same).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bfd {
    /// Slowest rate, in milliseconds, at which we want to receive control packets.
    pub min_rx_ms: u32,
    /// Fastest rate, in milliseconds, at which we send them.
    pub min_tx_ms: u32,
}

/// The complete desired state of one gateway.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FabricState {
    /// Segments by VNI.
    pub segments: BTreeMap<Vni, Segment>,
    /// Node VTEPs whose tunnel from the gateway runs BFD, with its timers.
    pub bfd: BTreeMap<Ipv4Addr, Bfd>,
    /// What was dropped from the input, and why.
    pub problems: Vec<String>,
}

fn ipv4(ip: IpAddr, what: &str, problems: &mut Vec<String>) -> Option<Ipv4Addr> {
    match ip {
        IpAddr::V4(v4) if !v4.is_unspecified() && !v4.is_multicast() => Some(v4),
        IpAddr::V4(v4) => {
            problems.push(format!("{what} {v4}: not a unicast address"));
            None
        }
        IpAddr::V6(v6) => {
            problems.push(format!(
                "{what} {v6}: hardware_vtep carries only vxlan_over_ipv4"
            ));
            None
        }
    }
}

/// Adds the valid attachments of `vni` to `seg`, claiming (port, VLAN) pairs in `claimed`.
fn attach(
    vni: Vni,
    input: &SegmentInput,
    seg: &mut Segment,
    claimed: &mut BTreeMap<PortVlan, Vni>,
    problems: &mut Vec<String>,
) {
    for a in &input.attachments {
        if a.port.is_empty() || a.vlan > 4095 {
            problems.push(format!(
                "VNI {vni}: attachment {:?} VLAN {}: needs a port name and VLAN 0-4095",
                a.port, a.vlan
            ));
            continue;
        }
        let pv = PortVlan {
            port: a.port.clone(),
            vlan: a.vlan,
        };
        match claimed.get(&pv) {
            Some(&other) if other != vni => {
                problems.push(format!(
                    "VNI {vni}: port {} VLAN {} is already bound to VNI {other}",
                    a.port, a.vlan
                ));
                continue;
            }
            _ => {
                claimed.insert(pv.clone(), vni);
            }
        }
        seg.bindings.insert(pv);
        for m in &a.macs {
            match Mac::parse(m) {
                Some(mac) => {
                    seg.device_macs.insert(mac);
                }
                None => problems.push(format!("VNI {vni}: device MAC {m:?} is not a MAC")),
            }
        }
    }
}

/// Fills the flood list and the remote MACs of `seg`.
fn remotes(vni: Vni, input: &SegmentInput, seg: &mut Segment, problems: &mut Vec<String>) {
    let what = format!("VNI {vni}: node VTEP");
    seg.flood = input
        .node_vteps
        .iter()
        .filter_map(|ip| ipv4(*ip, &what, problems))
        .collect();
    // Sorted so that "lowest node address wins" does not depend on input order.
    let mut macs: Vec<(Mac, Ipv4Addr)> = Vec::new();
    for (m, ip) in &input.workload_macs {
        let Some(mac) = Mac::parse(m) else {
            problems.push(format!("VNI {vni}: workload MAC {m:?} is not a MAC"));
            continue;
        };
        if let Some(ip) = ipv4(
            *ip,
            &format!("VNI {vni}: workload MAC {mac} VTEP"),
            problems,
        ) {
            macs.push((mac, ip));
        }
    }
    macs.sort();
    for (mac, ip) in macs {
        if seg.device_macs.contains(&mac) {
            problems.push(format!(
                "VNI {vni}: MAC {mac} is both a device and a workload"
            ));
            continue;
        }
        match seg.remote_macs.get(&mac) {
            Some(first) if *first != ip => problems.push(format!(
                "VNI {vni}: workload MAC {mac} claimed by {first} and {ip}; {first} kept"
            )),
            _ => {
                seg.remote_macs.insert(mac, ip);
            }
        }
    }
}

/// [`plan_fabric`] plus BFD on the gateway's tunnels to the node VTEPs in `bfd`. Only
/// nodes in some segment's flood list get a session (the switch has a tunnel to no other).
pub fn plan_fabric_with_bfd(input: &GatewayInput, bfd: &BTreeMap<IpAddr, Bfd>) -> FabricState {
    let mut state = plan_fabric(input);
    let flooded: BTreeSet<Ipv4Addr> = state
        .segments
        .values()
        .flat_map(|s| s.flood.iter().copied())
        .collect();
    state.bfd = bfd
        .iter()
        .filter_map(|(ip, b)| match ip {
            IpAddr::V4(v4) if flooded.contains(v4) => Some((*v4, *b)),
            _ => None,
        })
        .collect();
    state
}

/// Computes the desired state of a gateway from what the caller knows about it.
pub fn plan_fabric(input: &GatewayInput) -> FabricState {
    let mut state = FabricState::default();
    let mut claimed = BTreeMap::new();
    // BTreeMap order = ascending VNI, so the lower VNI claims a (port, VLAN) first.
    for (&vni, seg_in) in input {
        if vni == 0 || vni > MAX_VNI {
            state
                .problems
                .push(format!("VNI {vni}: must be 1-{MAX_VNI}"));
            continue;
        }
        let mut seg = Segment {
            vni,
            ..Default::default()
        };
        attach(vni, seg_in, &mut seg, &mut claimed, &mut state.problems);
        if seg.bindings.is_empty() {
            // No device on this VNI: nothing of it belongs on the switch.
            continue;
        }
        remotes(vni, seg_in, &mut seg, &mut state.problems);
        state.segments.insert(vni, seg);
    }
    state
}
