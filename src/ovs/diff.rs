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
//!   known; anything else on an owned interface is drift and is reverted. `key=flow` also
//!   carries BFD, whose control packets travel in VNI 0.
//! - The Interface `bfd` column is exactly `enable=true`, `min_rx`, `min_tx` when the
//!   TunnelPort has `bfd`, else empty (off); changing it alone leaves the port's state as
//!   it is (the port stays Ready). The report then carries the session from `bfd_status`.
//! - With `desired = None` (not yet completely known) owned ports are never deleted.
//! - Two desired tunnels that OVS would refuse as duplicates (same type, remote IP,
//!   local IP, key and effective destination port): the first by TunnelPort name wins, the
//!   other is reported [`PortState::Invalid`].

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::api::validate::{check_bfd_interval, parse_ip};
use crate::api::{TunnelBfd, TunnelId, TunnelPort, TunnelType};
use crate::ovsdb::{Atom, Condition, Datum, Mutation, Mutator, Operation, Row, Uuid};

use super::bfd::BfdReport;
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
    /// The BFD session, when the TunnelPort asks for BFD (damped by the OVS loop, see
    /// [`super::bfd`]).
    pub bfd: Option<BfdReport>,
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
    /// BFD on the interface (`None` = off).
    pub bfd: Option<TunnelBfd>,
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
        if let Some(bfd) = &spec.bfd {
            check_bfd_interval(bfd.min_rx_ms).map_err(|e| format!("bfd.minRxMs: {e}"))?;
            check_bfd_interval(bfd.min_tx_ms).map_err(|e| format!("bfd.minTxMs: {e}"))?;
        }
        Ok(DesiredTunnel {
            tunnel_port: tp.metadata.name.clone().unwrap_or_default(),
            interface_name: id.interface_name(),
            tunnel_type: spec.tunnel_type,
            options,
            bfd: spec.bfd,
        })
    }

    /// The Interface `bfd` column (empty = off, the schema's default).
    pub fn bfd_column(&self) -> BTreeMap<String, String> {
        self.bfd
            .as_ref()
            .map(TunnelBfd::ovs_column)
            .unwrap_or_default()
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
    /// Owned ports whose BFD settings (only) changed.
    pub bfd: Vec<String>,
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

impl PortReport {
    fn new(interface_name: &str, ofport: Option<i64>, state: PortState) -> Self {
        PortReport {
            interface_name: interface_name.to_string(),
            ofport,
            state,
            bfd: None,
        }
    }
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
        // Name order decides which of two duplicates wins.
        let mut sorted: Vec<&TunnelPort> = list.iter().collect();
        sorted.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        let mut claims = Claims::default();
        for tp in sorted {
            let Some(name) = tp.metadata.name.clone() else {
                continue;
            };
            match DesiredTunnel::from_tunnel_port(tp) {
                Err(e) => {
                    out.invalid
                        .insert(name, PortReport::new("", None, PortState::Invalid(e)));
                }
                Ok(d) => match claims.claim(&d) {
                    Ok(()) => out.tunnels.push(d),
                    Err(why) => {
                        let report =
                            PortReport::new(&d.interface_name, None, PortState::Invalid(why));
                        out.invalid.insert(name, report);
                    }
                },
            }
        }
        out
    }
}

/// The OVS port names and tunnel identities taken by earlier tunnels of a desired set.
#[derive(Default)]
struct Claims {
    /// Port name → TunnelPort.
    by_name: BTreeMap<String, String>,
    /// Tunnel identity → TunnelPort.
    by_identity: BTreeMap<Identity, String>,
}

impl Claims {
    /// Takes `d`'s port name and tunnel identity, or says which TunnelPort holds one.
    fn claim(&mut self, d: &DesiredTunnel) -> Result<(), String> {
        if let Some(other) = self.by_name.get(&d.interface_name) {
            return Err(format!("same OVS port as TunnelPort {other}"));
        }
        let id = d.identity();
        if let Some(other) = id.as_ref().and_then(|id| self.by_identity.get(id)) {
            return Err(format!(
                "OVS would refuse it as a duplicate of TunnelPort {other} \
                 (same type, remote IP, local IP and destination port)"
            ));
        }
        if let Some(id) = id {
            self.by_identity.insert(id, d.tunnel_port.clone());
        }
        self.by_name
            .insert(d.interface_name.clone(), d.tunnel_port.clone());
        Ok(())
    }
}

/// Computes the transaction that makes `view` match `desired` on `bridge`.
pub fn diff_ports(desired: Option<&[TunnelPort]>, view: &OvsView, bridge: &str) -> PortDiff {
    diff_port_set(&DesiredSet::new(desired), view, bridge)
}

/// [`diff_ports`] for a prepared desired set.
///
/// Each desired tunnel is a foreign conflict (left alone), a port to create or an owned
/// port to repair; the owned ports left over are deleted (once the set is known).
pub fn diff_port_set(desired: &DesiredSet, view: &OvsView, bridge: &str) -> PortDiff {
    let mut present = Present::index(view);
    let mut plan = Plan::new(view, bridge);
    let mut ports = desired.invalid.clone();
    for d in &desired.tunnels {
        // Taken out before the conflict checks: an owned port that clashes with a foreign
        // one stays as it is, it is not deleted as unwanted.
        let existing = present.owned.remove(d.interface_name.as_str());
        let bfd_status = existing.as_ref().and_then(|p| {
            view.interfaces_of(p.port)
                .find(|i| i.name == d.interface_name)
                .map(|i| &i.bfd_status)
        });
        let mut report = match (present.foreign_conflict(d, existing.as_ref()), existing) {
            (Some(conflict), _) => conflict,
            (None, None) => plan.create_port(d),
            (None, Some(placed)) => plan.repair_port(d, &placed),
        };
        report.bfd = d.bfd.map(|timers| BfdReport::observe(timers, bfd_status));
        ports.insert(d.tunnel_port.clone(), report);
    }
    for (name, placed) in present.owned {
        let (tunnel_port, report) = plan.unwanted_port(name, &placed, desired.known);
        // A TunnelPort's own report wins over a leftover port still marked with its name.
        ports.entry(tunnel_port).or_insert(report);
    }
    plan.finish(ports)
}

/// A port and the bridge it is on.
struct Placed<'a> {
    bridge: &'a BridgeRow,
    port: &'a PortRow,
}

/// What is on the bridges: the agent's ports, and the names and tunnels of everything
/// else, which a desired tunnel must not clash with.
struct Present<'a> {
    view: &'a OvsView,
    /// Owned ports by name; a desired tunnel takes its own out, the rest are unwanted.
    owned: BTreeMap<&'a str, Placed<'a>>,
    /// Names of foreign ports and of their interfaces → the foreign port.
    foreign_names: BTreeMap<&'a str, &'a str>,
    /// Tunnel identities of foreign interfaces → the interface.
    foreign_tunnels: BTreeMap<Identity, &'a str>,
}

impl<'a> Present<'a> {
    /// Indexes what is there.
    fn index(view: &'a OvsView) -> Self {
        let mut present = Present {
            view,
            owned: BTreeMap::new(),
            foreign_names: BTreeMap::new(),
            foreign_tunnels: BTreeMap::new(),
        };
        for bridge in &view.bridges {
            for port in view.ports_of(bridge) {
                if is_owned(port) {
                    present.owned.insert(&port.name, Placed { bridge, port });
                    continue;
                }
                present.foreign_names.insert(&port.name, &port.name);
                for i in view.interfaces_of(port) {
                    present.foreign_names.insert(&i.name, &port.name);
                    if let Some(id) = identity(&i.kind, &i.options) {
                        present.foreign_tunnels.insert(id, &i.name);
                    }
                }
            }
        }
        present
    }

    /// The report for `d` when a port the agent does not own has its name or its tunnel
    /// (`existing`: our port of that name, if any).
    fn foreign_conflict(&self, d: &DesiredTunnel, existing: Option<&Placed>) -> Option<PortReport> {
        if let Some(fp) = self.foreign_names.get(d.interface_name.as_str()) {
            let why = format!(
                "OVS port {fp} uses the name {} and is not managed by {OWNER}; \
                 it is left alone",
                d.interface_name
            );
            let state = PortState::ForeignConflict(why);
            return Some(PortReport::new(&d.interface_name, None, state));
        }
        let fi = d.identity().and_then(|id| self.foreign_tunnels.get(&id))?;
        // Ours, if it exists, stays (and OVS shows which of the two it refused).
        let ofport = existing.and_then(|p| self.view.interfaces_of(p.port).find_map(|i| i.ofport));
        let why = format!(
            "interface {fi} is not managed by {OWNER} and already is a {} tunnel \
             to {}; OVS allows only one",
            d.tunnel_type, d.options["remote_ip"]
        );
        let state = PortState::ForeignConflict(why);
        Some(PortReport::new(&d.interface_name, ofport, state))
    }
}

/// The transaction being built, kept in the order it is sent: inserts (named, so later
/// operations can refer to the new rows), updates, then bridge membership.
struct Plan<'a> {
    view: &'a OvsView,
    bridge: &'a str,
    /// Last `uuid-name` number handed out.
    named: usize,
    inserts: Vec<Operation>,
    updates: Vec<Operation>,
    /// Ports to add to `bridge`: new ones by `uuid-name`, moved ones by UUID.
    bridge_adds: Vec<Atom>,
    /// Ports to take off, per bridge.
    bridge_removes: BTreeMap<Uuid, Vec<Atom>>,
    changes: Changes,
}

impl<'a> Plan<'a> {
    fn new(view: &'a OvsView, bridge: &'a str) -> Self {
        Plan {
            view,
            bridge,
            named: 0,
            inserts: Vec::new(),
            updates: Vec::new(),
            bridge_adds: Vec::new(),
            bridge_removes: BTreeMap::new(),
            changes: Changes::default(),
        }
    }

    fn next_name(&mut self, prefix: &str) -> String {
        self.named += 1;
        format!("rdo_{prefix}{}", self.named)
    }

    /// Inserts `d`'s Interface row; returns its `uuid-name`.
    fn insert_interface(&mut self, d: &DesiredTunnel) -> String {
        let name = self.next_name("i");
        self.inserts
            .push(named_insert("Interface", &name, interface_row(d)));
        name
    }

    fn remove_from_bridge(&mut self, placed: &Placed) {
        self.bridge_removes
            .entry(placed.bridge.uuid.clone())
            .or_default()
            .push(Atom::Uuid(placed.port.uuid.clone()));
    }

    /// A port to create: a new Interface and Port, added to the bridge.
    fn create_port(&mut self, d: &DesiredTunnel) -> PortReport {
        let iface = self.insert_interface(d);
        let port = self.next_name("p");
        let row = Row::from([
            ("name".into(), Datum::string(&d.interface_name)),
            ("interfaces".into(), named_uuid(&iface)),
            ("external_ids".into(), Datum::string_map(&d.external_ids())),
        ]);
        self.inserts.push(named_insert("Port", &port, row));
        self.bridge_adds.push(Atom::NamedUuid(port));
        self.changes.create.push(d.interface_name.clone());
        PortReport::new(&d.interface_name, None, PortState::Pending)
    }

    /// A port to repair: our port named for `d`, put back on the bridge with exactly its
    /// one interface, type, options and marks. Pending while anything changes.
    fn repair_port(&mut self, d: &DesiredTunnel, placed: &Placed) -> PortReport {
        let view = self.view;
        let port = placed.port;
        let ids = d.external_ids();
        let mut changed = false;
        if placed.bridge.name != self.bridge {
            self.remove_from_bridge(placed);
            self.bridge_adds.push(Atom::Uuid(port.uuid.clone()));
            changed = true;
        }
        let iface = view
            .interfaces_of(port)
            .find(|i| i.name == d.interface_name);
        let mut port_row = Row::new();
        match iface {
            None => {
                let name = self.insert_interface(d);
                port_row.insert("interfaces".into(), named_uuid(&name));
            }
            Some(i) => {
                // Any other interface is dropped from our port.
                if port.interfaces.len() != 1 {
                    let only = Datum::set(vec![Atom::Uuid(i.uuid.clone())]);
                    port_row.insert("interfaces".into(), only);
                }
                changed |= self.repair_interface(d, i);
            }
        }
        if !ids_ok(&port.external_ids, &ids) {
            port_row.insert("external_ids".into(), merged(&port.external_ids, &ids));
        }
        if !port_row.is_empty() {
            self.updates.push(update("Port", &port.uuid, port_row));
            changed = true;
        }
        if changed {
            self.changes.update.push(d.interface_name.clone());
        }
        let (ofport, state) = match iface {
            Some(i) if !changed => (i.ofport, interface_state(i)),
            Some(i) => (i.ofport, PortState::Pending),
            None => (None, PortState::Pending),
        };
        PortReport::new(&d.interface_name, ofport, state)
    }

    /// Reverts drift of type or options on `i` (whether there was any: the port is then
    /// being changed), and sets its `bfd` column (which leaves the port as it is). The
    /// interface carries no marks: its port's say whose it is.
    fn repair_interface(&mut self, d: &DesiredTunnel, i: &InterfaceRow) -> bool {
        let kind = d.tunnel_type.as_str();
        let drifted = !(i.kind == kind && i.options == d.options);
        let bfd = d.bfd_column();
        let mut row = Row::new();
        if drifted {
            row.insert("type".into(), Datum::string(kind));
            row.insert("options".into(), Datum::string_map(&d.options));
        }
        if i.bfd != bfd {
            row.insert("bfd".into(), Datum::string_map(&bfd));
            if !drifted {
                self.changes.bfd.push(d.interface_name.clone());
            }
        }
        if !row.is_empty() {
            self.updates.push(update("Interface", &i.uuid, row));
        }
        drifted
    }

    /// A port to delete: ours, and no desired tunnel names it. It goes only once the
    /// desired set is known and is reported until it is gone (so the agent keeps the
    /// TunnelPort's finalizer); returns the TunnelPort it belongs to and the report.
    fn unwanted_port(&mut self, name: &str, placed: &Placed, known: bool) -> (String, PortReport) {
        let iface = self.view.interfaces_of(placed.port).next();
        let state = if known {
            self.remove_from_bridge(placed);
            self.changes.delete.push(name.to_string());
            PortState::Pending
        } else {
            iface.map_or(PortState::Pending, interface_state)
        };
        let tunnel_port = placed
            .port
            .external_ids
            .get(TUNNELPORT_KEY)
            .cloned()
            .unwrap_or_else(|| name.to_string());
        let ofport = iface.and_then(|i| i.ofport);
        (tunnel_port, PortReport::new(name, ofport, state))
    }

    /// The diff: the transaction's operations, bridge membership last.
    fn finish(mut self, ports: BTreeMap<String, PortReport>) -> PortDiff {
        let view = self.view;
        let mut membership: Vec<Operation> = std::mem::take(&mut self.bridge_removes)
            .into_iter()
            .map(|(bridge, removes)| ports_mutation(&bridge, Mutator::Delete, removes))
            .collect();
        let local_ports = match view.bridge(self.bridge) {
            None => {
                membership.extend(self.create_bridge());
                Vec::new()
            }
            Some(b) => {
                if !self.bridge_adds.is_empty() {
                    let adds = std::mem::take(&mut self.bridge_adds);
                    membership.push(ports_mutation(&b.uuid, Mutator::Insert, adds));
                }
                local_ports(view, b)
            }
        };
        let mut ops = self.inserts;
        ops.extend(self.updates);
        ops.extend(membership);
        PortDiff {
            ops,
            ports,
            local_ports,
            changes: self.changes,
        }
    }

    /// Inserts the missing bridge with the ports to add and its own internal port (as
    /// `ovs-vsctl add-br` makes it; not marked as ours: it is never deleted). Returns the
    /// mutation that adds it to the root row, or inserts a root row when there is none.
    fn create_bridge(&mut self) -> Option<Operation> {
        const IFACE: &str = "rdo_bridge_i";
        const PORT: &str = "rdo_bridge_p";
        const BRIDGE: &str = "rdo_bridge";
        self.changes.create_bridge = true;
        let name = Datum::string(self.bridge);
        let iface = Row::from([
            ("name".into(), name.clone()),
            ("type".into(), Datum::string("internal")),
        ]);
        self.inserts.push(named_insert("Interface", IFACE, iface));
        let port = Row::from([
            ("name".into(), name.clone()),
            ("interfaces".into(), named_uuid(IFACE)),
        ]);
        self.inserts.push(named_insert("Port", PORT, port));
        self.bridge_adds.push(Atom::NamedUuid(PORT.into()));
        let owner = BTreeMap::from([(OWNER_KEY.to_string(), OWNER.to_string())]);
        let bridge = Row::from([
            ("name".into(), name),
            (
                "ports".into(),
                Datum::set(std::mem::take(&mut self.bridge_adds)),
            ),
            // Only explicit flows forward: no MAC learning loops across tunnels.
            ("fail_mode".into(), Datum::string("secure")),
            ("external_ids".into(), Datum::string_map(&owner)),
        ]);
        self.inserts.push(named_insert("Bridge", BRIDGE, bridge));
        let Some(root) = &self.view.root else {
            self.inserts.push(Operation::Insert {
                table: "Open_vSwitch".into(),
                row: Row::from([("bridges".into(), named_uuid(BRIDGE))]),
                uuid_name: None,
            });
            return None;
        };
        Some(Operation::Mutate {
            table: "Open_vSwitch".into(),
            conditions: vec![Condition::uuid(root)],
            mutations: vec![Mutation::new(
                "bridges",
                Mutator::Insert,
                named_uuid(BRIDGE),
            )],
        })
    }
}

fn interface_row(d: &DesiredTunnel) -> Row {
    let mut row = Row::from([
        ("name".into(), Datum::string(&d.interface_name)),
        ("type".into(), Datum::string(d.tunnel_type.as_str())),
        ("options".into(), Datum::string_map(&d.options)),
    ]);
    if d.bfd.is_some() {
        row.insert("bfd".into(), Datum::string_map(&d.bfd_column()));
    }
    row
}

/// A set of one row inserted earlier in the same transaction.
fn named_uuid(uuid_name: &str) -> Datum {
    Datum::set(vec![Atom::NamedUuid(uuid_name.into())])
}

fn named_insert(table: &str, uuid_name: &str, row: Row) -> Operation {
    Operation::Insert {
        table: table.into(),
        row,
        uuid_name: Some(uuid_name.into()),
    }
}

fn update(table: &str, uuid: &Uuid, row: Row) -> Operation {
    Operation::Update {
        table: table.into(),
        conditions: vec![Condition::uuid(uuid)],
        row,
    }
}

/// Adds ports to or removes them from the bridge `bridge`.
fn ports_mutation(bridge: &Uuid, mutator: Mutator, ports: Vec<Atom>) -> Operation {
    Operation::Mutate {
        table: "Bridge".into(),
        conditions: vec![Condition::uuid(bridge)],
        mutations: vec![Mutation::new("ports", mutator, Datum::set(ports))],
    }
}

/// The ports on `bridge` the agent does not own, besides the bridge's own, with an ofport.
fn local_ports(view: &OvsView, bridge: &BridgeRow) -> Vec<LocalPort> {
    let mut out: Vec<LocalPort> = view
        .ports_of(bridge)
        .filter(|p| !is_owned(p) && p.name != bridge.name)
        .filter_map(|p| {
            let i = view
                .interfaces_of(p)
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
