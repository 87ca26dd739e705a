//! The pure diff: this node's desired TunnelPorts + the observed OVS rows → the one
//! transaction that makes them match, and what to report per TunnelPort.
//!
//! Rules:
//! - A Port is ours when its `external_ids` carry [`OWNER_KEY`]=[`OWNER`]; it also
//!   carries [`TUNNELPORT_KEY`]=<TunnelPort name>. Nothing else is ever changed or deleted,
//!   even when it clashes with a desired tunnel by name or by tunnel identity: that is
//!   reported as [`PortState::ForeignConflict`] and ours is not created.
//! - Port and Interface are named [`TunnelId::interface_name`] (15 characters, stable
//!   for (remote IP, type, destination port)).
//! - Options are exactly `remote_ip`, `key=flow`, `dst_port` when set and `local_ip` when
//!   known; anything else on an owned interface is drift and is reverted.
//! - With `desired = None` (not yet completely known) owned ports are never deleted.
//! - Two desired tunnels that OVS would refuse as duplicates (same type, remote IP,
//!   local IP, key and effective destination port): the first by TunnelPort name wins, the
//!   other is reported [`PortState::Invalid`].

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::api::validate::parse_ip;
use crate::api::{TunnelId, TunnelPort, TunnelType};
use crate::ovsdb::{Atom, Condition, Datum, Mutation, Mutator, Operation, Row, Uuid};

use super::model::{BridgeRow, InterfaceRow, OvsView, PortRow};

/// `external_ids` key marking rows the agent owns.
pub const OWNER_KEY: &str = "remotedevice.io/owner";
/// Value of [`OWNER_KEY`].
pub const OWNER: &str = crate::api::MANAGER;
/// `external_ids` key naming the TunnelPort a port implements.
pub const TUNNELPORT_KEY: &str = "remotedevice.io/tunnelport";

/// What OVS shows for one TunnelPort.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortReport {
    /// The OVS port and interface name.
    pub interface_name: String,
    /// OpenFlow port number (-1 = OVS refused the interface).
    pub ofport: Option<i64>,
    /// Summary.
    pub state: PortState,
}

/// State of one TunnelPort's OVS port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortState {
    /// The port exists as desired and has an ofport.
    Ready,
    /// Being created, changed or removed, or waiting for vswitchd to assign an ofport.
    Pending,
    /// OVS refused it (ofport -1 or the Interface `error` column), in OVS's words.
    OvsError(String),
    /// A port the agent does not own has the same name or tunnels to the same place; it is
    /// left alone and ours is not created.
    ForeignConflict(String),
    /// The TunnelPort cannot be turned into an OVS port (bad address, or it duplicates
    /// another desired TunnelPort).
    Invalid(String),
}

impl PortState {
    /// The human message, for conditions and events (`None` when Ready or Pending).
    pub fn message(&self) -> Option<&str> {
        match self {
            PortState::Ready | PortState::Pending => None,
            PortState::OvsError(m) | PortState::ForeignConflict(m) | PortState::Invalid(m) => {
                Some(m)
            }
        }
    }
}

/// A port on the bridge that the agent does not own (a workload port).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalPort {
    /// Port name.
    pub name: String,
    /// OpenFlow port number of its (first) interface.
    pub ofport: i64,
    /// Access VLAN (`tag`).
    pub tag: Option<u16>,
    /// Interface `type` (empty = system device, `internal`, `vxlan`, ...).
    pub interface_type: String,
}

/// One tunnel this node should have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredTunnel {
    /// Name of the TunnelPort.
    pub tunnel_port: String,
    /// Port and Interface name.
    pub interface_name: String,
    /// Encapsulation.
    pub tunnel_type: TunnelType,
    /// Interface `options`.
    pub options: BTreeMap<String, String>,
}

/// What OVS treats as the same tunnel (a second one fails with "File exists").
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Identity {
    kind: String,
    remote: IpAddr,
    local: Option<IpAddr>,
    dst_port: u16,
    key: String,
}

/// The identity of an interface of a tunnel type (`None` for others and flow-based ones).
fn identity(kind: &str, options: &BTreeMap<String, String>) -> Option<Identity> {
    let tunnel_type: TunnelType = kind.parse().ok()?;
    let remote = options.get("remote_ip")?.parse().ok()?;
    let local = match options.get("local_ip") {
        Some(l) => Some(l.parse().ok()?),
        None => None,
    };
    let dst_port = match options.get("dst_port") {
        Some(p) => p.parse().ok()?,
        None => tunnel_type.default_udp_port().unwrap_or(0),
    };
    Some(Identity {
        kind: kind.to_string(),
        remote,
        local,
        dst_port,
        key: options
            .get("key")
            .or(options.get("in_key"))
            .cloned()
            .unwrap_or_else(|| "0".into()),
    })
}

impl DesiredTunnel {
    /// The tunnel a TunnelPort asks for.
    pub fn from_tunnel_port(tp: &TunnelPort) -> Result<Self, String> {
        let spec = &tp.spec;
        let id = TunnelId::of(spec)?;
        let remote = id.remote_ip();
        let mut options = BTreeMap::from([
            ("remote_ip".to_string(), remote.to_string()),
            ("key".to_string(), "flow".to_string()),
        ]);
        if let Some(port) = id.dst_port() {
            if !spec.tunnel_type.has_udp_port() {
                return Err(format!(
                    "dstPort: not allowed with tunnelType {}",
                    spec.tunnel_type
                ));
            }
            if port == 0 {
                return Err("dstPort: must be 1-65535".into());
            }
            options.insert("dst_port".into(), port.to_string());
        }
        if let Some(local) = &spec.local_ip {
            let local = parse_ip(local).map_err(|e| format!("localIP: {e}"))?;
            if local.is_ipv4() != remote.is_ipv4() {
                return Err("localIP: must be of the same family as remoteIP".into());
            }
            options.insert("local_ip".into(), local.to_string());
        }
        Ok(DesiredTunnel {
            tunnel_port: tp.metadata.name.clone().unwrap_or_default(),
            interface_name: id.interface_name(),
            tunnel_type: spec.tunnel_type,
            options,
        })
    }

    fn identity(&self) -> Option<Identity> {
        identity(self.tunnel_type.as_str(), &self.options)
    }

    fn external_ids(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (OWNER_KEY.to_string(), OWNER.to_string()),
            (TUNNELPORT_KEY.to_string(), self.tunnel_port.clone()),
        ])
    }
}

/// Names of what a plan changes, for logs and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// The bridge is created.
    pub create_bridge: bool,
    /// Ports created.
    pub create: Vec<String>,
    /// Owned ports repaired (options, type, marks, interfaces, bridge).
    pub update: Vec<String>,
    /// Owned ports deleted.
    pub delete: Vec<String>,
}

/// The result of [`diff_ports`]: the transaction and what to report per TunnelPort.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PortDiff {
    /// The single transaction to run (empty = OVS already matches).
    pub ops: Vec<Operation>,
    /// Per TunnelPort: every desired one, and every owned port still present.
    pub ports: BTreeMap<String, PortReport>,
    /// Ports on the bridge the agent does not own, with an ofport.
    pub local_ports: Vec<LocalPort>,
    /// What `ops` change.
    pub changes: Changes,
}

fn ids_ok(have: &BTreeMap<String, String>, want: &BTreeMap<String, String>) -> bool {
    want.iter().all(|(k, v)| have.get(k) == Some(v))
}

fn merged(have: &BTreeMap<String, String>, want: &BTreeMap<String, String>) -> Datum {
    let mut m = have.clone();
    m.extend(want.iter().map(|(k, v)| (k.clone(), v.clone())));
    Datum::string_map(&m)
}

fn interface_state(i: &InterfaceRow) -> PortState {
    if let Some(e) = &i.error {
        return PortState::OvsError(e.clone());
    }
    match i.ofport {
        Some(-1) => PortState::OvsError("OVS refused the interface (ofport -1)".into()),
        Some(n) if n > 0 => PortState::Ready,
        _ => PortState::Pending,
    }
}

fn is_owned(p: &PortRow) -> bool {
    p.external_ids.get(OWNER_KEY).map(String::as_str) == Some(OWNER)
}

struct Placed<'a> {
    bridge: &'a BridgeRow,
    port: &'a PortRow,
}

/// The desired tunnels of a desired set, prepared once per change of the set (the diff
/// then runs on every OVS update without re-deriving names and options).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DesiredSet {
    /// `false` = not completely known yet: nothing is deleted.
    pub known: bool,
    /// Valid tunnels without duplicates, in TunnelPort name order.
    pub tunnels: Vec<DesiredTunnel>,
    /// TunnelPorts that cannot become an OVS port, with the reason.
    pub invalid: BTreeMap<String, PortReport>,
}

impl DesiredSet {
    /// Prepares `desired` (`None` = not yet completely known).
    pub fn new(desired: Option<&[TunnelPort]>) -> Self {
        let mut out = DesiredSet {
            known: desired.is_some(),
            ..Default::default()
        };
        let Some(list) = desired else {
            return out;
        };
        let mut sorted: Vec<&TunnelPort> = list.iter().collect();
        sorted.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        let mut by_name: BTreeMap<String, String> = BTreeMap::new();
        let mut by_identity: BTreeMap<Identity, String> = BTreeMap::new();
        for tp in sorted {
            let Some(name) = tp.metadata.name.clone() else {
                continue;
            };
            let d = match DesiredTunnel::from_tunnel_port(tp) {
                Ok(d) => d,
                Err(e) => {
                    out.invalid.insert(
                        name,
                        PortReport {
                            interface_name: String::new(),
                            ofport: None,
                            state: PortState::Invalid(e),
                        },
                    );
                    continue;
                }
            };
            let invalid = |why: String| PortReport {
                interface_name: d.interface_name.clone(),
                ofport: None,
                state: PortState::Invalid(why),
            };
            if let Some(other) = by_name.get(&d.interface_name) {
                out.invalid.insert(
                    name,
                    invalid(format!("same OVS port as TunnelPort {other}")),
                );
                continue;
            }
            if let Some(id) = d.identity() {
                if let Some(other) = by_identity.get(&id) {
                    out.invalid.insert(
                        name,
                        invalid(format!(
                            "OVS would refuse it as a duplicate of TunnelPort {other} \
                             (same type, remote IP, local IP and destination port)"
                        )),
                    );
                    continue;
                }
                by_identity.insert(id, name.clone());
            }
            by_name.insert(d.interface_name.clone(), name);
            out.tunnels.push(d);
        }
        out
    }
}

/// Computes the transaction that makes `view` match `desired` on `bridge`.
pub fn diff_ports(desired: Option<&[TunnelPort]>, view: &OvsView, bridge: &str) -> PortDiff {
    diff_port_set(&DesiredSet::new(desired), view, bridge)
}

/// [`diff_ports`] for a prepared desired set.
pub fn diff_port_set(desired: &DesiredSet, view: &OvsView, bridge: &str) -> PortDiff {
    let mut out = PortDiff {
        ports: desired.invalid.clone(),
        ..Default::default()
    };
    let wanted = &desired.tunnels;

    // What is there: owned ports by name; names and tunnels of everything else.
    let mut owned: BTreeMap<&str, Placed> = BTreeMap::new();
    let mut foreign_names: BTreeMap<&str, &str> = BTreeMap::new();
    let mut foreign_tunnels: BTreeMap<Identity, &str> = BTreeMap::new();
    for b in &view.bridges {
        for pu in &b.ports {
            let Some(port) = view.ports.get(pu) else {
                continue;
            };
            if is_owned(port) {
                owned.insert(&port.name, Placed { bridge: b, port });
                continue;
            }
            foreign_names.insert(&port.name, &port.name);
            for iu in &port.interfaces {
                if let Some(i) = view.interfaces.get(iu) {
                    foreign_names.insert(&i.name, &port.name);
                    if let Some(id) = identity(&i.kind, &i.options) {
                        foreign_tunnels.insert(id, &i.name);
                    }
                }
            }
        }
    }

    let mut named = 0usize;
    let mut next_name = |prefix: &str| {
        named += 1;
        format!("rdo_{prefix}{named}")
    };
    let mut inserts: Vec<Operation> = Vec::new();
    let mut updates: Vec<Operation> = Vec::new();
    let mut bridge_adds: Vec<Atom> = Vec::new();
    let mut bridge_removes: BTreeMap<Uuid, Vec<Atom>> = BTreeMap::new();

    for d in wanted {
        let existing = owned.remove(d.interface_name.as_str());
        if let Some(fp) = foreign_names.get(d.interface_name.as_str()) {
            out.ports.insert(
                d.tunnel_port.clone(),
                PortReport {
                    interface_name: d.interface_name.clone(),
                    ofport: None,
                    state: PortState::ForeignConflict(format!(
                        "OVS port {fp} uses the name {} and is not managed by {OWNER}; \
                         it is left alone",
                        d.interface_name
                    )),
                },
            );
            continue;
        }
        if let Some(fi) = d.identity().and_then(|id| foreign_tunnels.get(&id)) {
            // Ours, if it exists, stays (and OVS shows which of the two it refused).
            let ofport = existing.as_ref().and_then(|p| {
                p.port
                    .interfaces
                    .iter()
                    .filter_map(|u| view.interfaces.get(u))
                    .find_map(|i| i.ofport)
            });
            out.ports.insert(
                d.tunnel_port.clone(),
                PortReport {
                    interface_name: d.interface_name.clone(),
                    ofport,
                    state: PortState::ForeignConflict(format!(
                        "interface {fi} is not managed by {OWNER} and already is a {} tunnel \
                         to {}; OVS allows only one",
                        d.tunnel_type, d.options["remote_ip"]
                    )),
                },
            );
            continue;
        }
        let ids = d.external_ids();
        let Some(placed) = existing else {
            let iname = next_name("i");
            let pname = next_name("p");
            inserts.push(Operation::Insert {
                table: "Interface".into(),
                row: interface_row(d),
                uuid_name: Some(iname.clone()),
            });
            inserts.push(Operation::Insert {
                table: "Port".into(),
                row: Row::from([
                    ("name".into(), Datum::string(&d.interface_name)),
                    (
                        "interfaces".into(),
                        Datum::set(vec![Atom::NamedUuid(iname)]),
                    ),
                    ("external_ids".into(), Datum::string_map(&ids)),
                ]),
                uuid_name: Some(pname.clone()),
            });
            bridge_adds.push(Atom::NamedUuid(pname));
            out.changes.create.push(d.interface_name.clone());
            out.ports.insert(
                d.tunnel_port.clone(),
                PortReport {
                    interface_name: d.interface_name.clone(),
                    ofport: None,
                    state: PortState::Pending,
                },
            );
            continue;
        };

        let port = placed.port;
        let mut changed = false;
        if placed.bridge.name != bridge {
            bridge_removes
                .entry(placed.bridge.uuid.clone())
                .or_default()
                .push(Atom::Uuid(port.uuid.clone()));
            bridge_adds.push(Atom::Uuid(port.uuid.clone()));
            changed = true;
        }
        let mut port_row = Row::new();
        let iface = port
            .interfaces
            .iter()
            .filter_map(|u| view.interfaces.get(u))
            .find(|i| i.name == d.interface_name);
        match iface {
            None => {
                let iname = next_name("i");
                inserts.push(Operation::Insert {
                    table: "Interface".into(),
                    row: interface_row(d),
                    uuid_name: Some(iname.clone()),
                });
                port_row.insert(
                    "interfaces".into(),
                    Datum::set(vec![Atom::NamedUuid(iname)]),
                );
            }
            Some(i) => {
                if port.interfaces.len() != 1 {
                    port_row.insert(
                        "interfaces".into(),
                        Datum::set(vec![Atom::Uuid(i.uuid.clone())]),
                    );
                }
                if i.kind != d.tunnel_type.as_str()
                    || i.options != d.options
                    || !ids_ok(&i.external_ids, &ids)
                {
                    updates.push(Operation::Update {
                        table: "Interface".into(),
                        conditions: vec![Condition::uuid(&i.uuid)],
                        row: Row::from([
                            ("type".into(), Datum::string(d.tunnel_type.as_str())),
                            ("options".into(), Datum::string_map(&d.options)),
                            ("external_ids".into(), merged(&i.external_ids, &ids)),
                        ]),
                    });
                    changed = true;
                }
            }
        }
        if !ids_ok(&port.external_ids, &ids) {
            port_row.insert("external_ids".into(), merged(&port.external_ids, &ids));
        }
        if !port_row.is_empty() {
            updates.push(Operation::Update {
                table: "Port".into(),
                conditions: vec![Condition::uuid(&port.uuid)],
                row: port_row,
            });
            changed = true;
        }
        if changed {
            out.changes.update.push(d.interface_name.clone());
        }
        let (ofport, state) = match iface {
            Some(i) if !changed => (i.ofport, interface_state(i)),
            Some(i) => (i.ofport, PortState::Pending),
            None => (None, PortState::Pending),
        };
        out.ports.insert(
            d.tunnel_port.clone(),
            PortReport {
                interface_name: d.interface_name.clone(),
                ofport,
                state,
            },
        );
    }

    // Owned ports nobody wants: gone once the desired set is known, reported until then.
    for (name, placed) in owned {
        let iface = placed
            .port
            .interfaces
            .iter()
            .filter_map(|u| view.interfaces.get(u))
            .next();
        let state = if desired.known {
            bridge_removes
                .entry(placed.bridge.uuid.clone())
                .or_default()
                .push(Atom::Uuid(placed.port.uuid.clone()));
            out.changes.delete.push(name.to_string());
            PortState::Pending
        } else {
            iface.map_or(PortState::Pending, interface_state)
        };
        let key = placed
            .port
            .external_ids
            .get(TUNNELPORT_KEY)
            .cloned()
            .unwrap_or_else(|| name.to_string());
        out.ports.entry(key).or_insert(PortReport {
            interface_name: name.to_string(),
            ofport: iface.and_then(|i| i.ofport),
            state,
        });
    }

    // Bridge membership.
    let mut bridge_ops = Vec::new();
    for (buuid, removes) in bridge_removes {
        bridge_ops.push(Operation::Mutate {
            table: "Bridge".into(),
            conditions: vec![Condition::uuid(&buuid)],
            mutations: vec![Mutation::new("ports", Mutator::Delete, Datum::set(removes))],
        });
    }
    match view.bridge(bridge) {
        None => {
            out.changes.create_bridge = true;
            let bname = "rdo_bridge".to_string();
            // The bridge's own internal port, as `ovs-vsctl add-br` makes it (not marked
            // as ours: it is never deleted).
            inserts.push(Operation::Insert {
                table: "Interface".into(),
                row: Row::from([
                    ("name".into(), Datum::string(bridge)),
                    ("type".into(), Datum::string("internal")),
                ]),
                uuid_name: Some("rdo_bridge_i".into()),
            });
            inserts.push(Operation::Insert {
                table: "Port".into(),
                row: Row::from([
                    ("name".into(), Datum::string(bridge)),
                    (
                        "interfaces".into(),
                        Datum::set(vec![Atom::NamedUuid("rdo_bridge_i".into())]),
                    ),
                ]),
                uuid_name: Some("rdo_bridge_p".into()),
            });
            bridge_adds.push(Atom::NamedUuid("rdo_bridge_p".into()));
            inserts.push(Operation::Insert {
                table: "Bridge".into(),
                row: Row::from([
                    ("name".into(), Datum::string(bridge)),
                    ("ports".into(), Datum::set(bridge_adds)),
                    // Only explicit flows forward: no MAC learning loops across tunnels.
                    ("fail_mode".into(), Datum::string("secure")),
                    (
                        "external_ids".into(),
                        Datum::string_map(&BTreeMap::from([(
                            OWNER_KEY.to_string(),
                            OWNER.to_string(),
                        )])),
                    ),
                ]),
                uuid_name: Some(bname.clone()),
            });
            let named_bridge = Datum::set(vec![Atom::NamedUuid(bname)]);
            match &view.root {
                Some(root) => bridge_ops.push(Operation::Mutate {
                    table: "Open_vSwitch".into(),
                    conditions: vec![Condition::uuid(root)],
                    mutations: vec![Mutation::new("bridges", Mutator::Insert, named_bridge)],
                }),
                None => inserts.push(Operation::Insert {
                    table: "Open_vSwitch".into(),
                    row: Row::from([("bridges".into(), named_bridge)]),
                    uuid_name: None,
                }),
            }
        }
        Some(b) => {
            if !bridge_adds.is_empty() {
                bridge_ops.push(Operation::Mutate {
                    table: "Bridge".into(),
                    conditions: vec![Condition::uuid(&b.uuid)],
                    mutations: vec![Mutation::new(
                        "ports",
                        Mutator::Insert,
                        Datum::set(bridge_adds),
                    )],
                });
            }
            out.local_ports = local_ports(view, b);
        }
    }
    out.ops = inserts;
    out.ops.extend(updates);
    out.ops.extend(bridge_ops);
    out
}

fn interface_row(d: &DesiredTunnel) -> Row {
    Row::from([
        ("name".into(), Datum::string(&d.interface_name)),
        ("type".into(), Datum::string(d.tunnel_type.as_str())),
        ("options".into(), Datum::string_map(&d.options)),
        ("external_ids".into(), Datum::string_map(&d.external_ids())),
    ])
}

fn local_ports(view: &OvsView, bridge: &BridgeRow) -> Vec<LocalPort> {
    let mut out: Vec<LocalPort> = bridge
        .ports
        .iter()
        .filter_map(|u| view.ports.get(u))
        .filter(|p| !is_owned(p) && p.name != bridge.name)
        .filter_map(|p| {
            let i = p
                .interfaces
                .iter()
                .filter_map(|u| view.interfaces.get(u))
                .find(|i| i.ofport.is_some_and(|o| o > 0))?;
            Some(LocalPort {
                name: p.name.clone(),
                ofport: i.ofport?,
                tag: p.tag.and_then(|t| u16::try_from(t).ok()),
                interface_type: i.kind.clone(),
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

#[cfg(test)]
#[path = "diff_tests.rs"]
mod tests;
