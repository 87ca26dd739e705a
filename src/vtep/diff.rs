//! The pure diff: desired [`FabricState`] × observed [`VtepView`] → the operations of ONE
//! transaction that make the switch match, touching only rows the operator owns.
//!
//! # Which rows are ours
//! `vtep(5)` gives only some tables a free-form column: Logical_Switch has
//! `description` and `other_config`; Ucast/Mcast_Macs_Remote, Physical_Locator(_Set)
//! have none, and Physical_Port belongs to the switch. Neither ovn-controller-vtep (it
//! assumes the whole database is its own: its cleanup resets `tunnel_key` on every
//! Logical_Switch and deletes every Ucast_Macs_Remote) nor a shared ToR can live with
//! "everything is mine". So ownership is anchored on the one row that can carry a mark
//! and everything else follows references:
//! - **Logical_Switch**: ours iff `other_config:remotedevice.io/owner=remote-device-operator`;
//!   it also carries `other_config:remotedevice.io/vni=<VNI>`, is named `rdo-vni-<VNI>`
//!   and uses `replication_mode=source_node` (the switch replicates BUM traffic to every
//!   node of the flood set itself; the default service-node mode would send it to one).
//! - **Ucast_Macs_Remote / Mcast_Macs_Remote**: ours iff their `logical_switch` is ours.
//! - **Physical_Port `vlan_bindings`**: an entry VLAN → ours is ours; entries pointing at
//!   foreign logical switches are never changed (a desired binding that collides with one
//!   is reported as a conflict). Ports themselves are the switch's.
//! - **Physical_Locator**: shared (unique index on encapsulation_type, dst_ip,
//!   tunnel_key): an existing row is reused, a missing one inserted. Neither locators nor
//!   locator sets (immutable) are ever deleted: both are non-root, the server collects them
//!   once unreferenced.
//! - **Tunnel `bfd_params`**: the switch makes Tunnel rows; we set `bfd_params` only on
//!   those towards the node VTEPs of our flood lists (on with timers, or empty = off).
//! - A foreign Logical_Switch with our name or our VNI as `tunnel_key` blocks the segment
//!   (conflict), it is never adopted.
//!
//! # Rules
//! - `desired = None` (not completely known): no operation at all.
//! - A logical switch no longer desired loses its remote MACs and our bindings at once;
//!   the row itself is deleted only when nothing refers to it any more (the switch's own
//!   Ucast/Mcast_Macs_Local rows refer to it until the switch sees the bindings gone), so
//!   the delete never trips referential integrity.
//! - Optimistic concurrency: every row we update or mutate is guarded by a `wait` on the
//!   columns we changed, as observed; an inserted locator by a `wait` that none exists.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use crate::ovsdb::{Atom, Condition, Datum, Mutation, Mutator, Operation, Row, Uuid, WaitUntil};

use super::fabric::{FabricState, PortVlan, Segment, Vni};
use super::model::{LogicalSwitchRow, MacRow, PhysicalPortRow, VtepView};

/// `other_config` key marking logical switches the operator owns.
pub const OWNER_KEY: &str = "remotedevice.io/owner";
/// Value of [`OWNER_KEY`].
pub const OWNER: &str = "remote-device-operator";
/// `other_config` key holding the VNI of an owned logical switch.
pub const VNI_KEY: &str = "remotedevice.io/vni";
/// The only multicast MAC `hardware_vtep` knows: broadcast, unknown unicast, multicast.
pub const UNKNOWN_DST: &str = "unknown-dst";
/// The only encapsulation of schema 1.x.
pub const ENCAP: &str = "vxlan_over_ipv4";
/// Replication mode of owned logical switches.
pub const REPLICATION: &str = "source_node";

/// Name of the owned logical switch of `vni`.
pub fn logical_switch_name(vni: Vni) -> String {
    format!("rdo-vni-{vni}")
}

/// Whether a logical switch is ours.
pub fn is_owned(ls: &LogicalSwitchRow) -> bool {
    ls.other_config.get(OWNER_KEY).map(String::as_str) == Some(OWNER)
}

fn owned_vni(ls: &LogicalSwitchRow) -> Option<Vni> {
    ls.other_config.get(VNI_KEY)?.parse().ok()
}

/// What one transaction changes, counted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Logical switches inserted / updated / deleted.
    pub logical_switches: (usize, usize, usize),
    /// VLAN bindings added / removed.
    pub bindings: (usize, usize),
    /// Locators inserted.
    pub locators: usize,
    /// Ucast_Macs_Remote inserted / updated / deleted.
    pub ucast: (usize, usize, usize),
    /// Mcast_Macs_Remote inserted / updated / deleted.
    pub mcast: (usize, usize, usize),
    /// Tunnels whose `bfd_params` changed.
    pub tunnels: usize,
}

/// The diff's result.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VtepPlan {
    /// One transaction (empty = the switch matches).
    pub ops: Vec<Operation>,
    /// Foreign rows in the way of something desired (left alone, ours not created).
    pub conflicts: Vec<String>,
    /// Desired things waiting for the switch (a port not seen yet, a logical switch
    /// still referenced by the switch's own rows).
    pub pending: Vec<String>,
    /// Owned logical switches present now: VNI → name.
    pub managed: BTreeMap<Vni, String>,
    /// Counts.
    pub changes: Changes,
}

/// Owned logical switches by VNI (the lowest UUID of duplicates), and the others.
fn owned_switches(view: &VtepView) -> (BTreeMap<Vni, &LogicalSwitchRow>, Vec<&LogicalSwitchRow>) {
    let mut by_vni = BTreeMap::new();
    let mut orphans = Vec::new();
    for ls in view.logical_switches.values().filter(|l| is_owned(l)) {
        match owned_vni(ls) {
            Some(vni) if !by_vni.contains_key(&vni) => {
                by_vni.insert(vni, ls);
            }
            _ => orphans.push(ls),
        }
    }
    (by_vni, orphans)
}

fn wait_eq(table: &str, uuid: &Uuid, row: Row) -> Operation {
    Operation::Wait {
        table: table.to_string(),
        conditions: vec![Condition::uuid(uuid)],
        columns: row.keys().cloned().collect(),
        until: WaitUntil::Eq,
        rows: vec![row],
        timeout_ms: Some(0),
    }
}

fn delete(table: &str, uuid: &Uuid) -> Operation {
    Operation::Delete {
        table: table.to_string(),
        conditions: vec![Condition::uuid(uuid)],
    }
}

fn update(table: &str, uuid: &Uuid, row: Row) -> Operation {
    Operation::Update {
        table: table.to_string(),
        conditions: vec![Condition::uuid(uuid)],
        row,
    }
}

fn uuid_atom(u: &Uuid) -> Datum {
    Datum::Atom(Atom::Uuid(u.clone()))
}

fn row(cols: Vec<(&str, Datum)>) -> Row {
    cols.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

fn vlan_datum(pairs: &[(u16, Atom)]) -> Datum {
    Datum::Map(
        pairs
            .iter()
            .map(|(v, a)| (Atom::Integer(i64::from(*v)), a.clone()))
            .collect(),
    )
}

/// Accumulates one transaction.
struct Builder<'v> {
    view: &'v VtepView,
    waits: Vec<Operation>,
    base: Vec<Operation>,
    rest: Vec<Operation>,
    locators: BTreeMap<Ipv4Addr, Atom>,
    names: usize,
    plan: VtepPlan,
}

impl<'v> Builder<'v> {
    fn name(&mut self, prefix: &str) -> String {
        self.names += 1;
        format!("{prefix}{}", self.names)
    }

    /// The locator of `ip`: the existing row, or one inserted in this transaction.
    fn locator(&mut self, ip: Ipv4Addr) -> Atom {
        if let Some(a) = self.locators.get(&ip) {
            return a.clone();
        }
        let text = ip.to_string();
        let atom = match self.view.locator_for(&text) {
            Some(l) => Atom::Uuid(l.uuid.clone()),
            None => {
                let name = self.name("loc");
                let conditions = vec![
                    Condition::eq("encapsulation_type", Datum::string(ENCAP)),
                    Condition::eq("dst_ip", Datum::string(&text)),
                    Condition::eq("tunnel_key", Datum::empty_set()),
                ];
                // Someone else inserting it first must fail us cleanly, not by index.
                self.waits.push(Operation::Wait {
                    table: "Physical_Locator".into(),
                    conditions,
                    columns: vec!["dst_ip".into()],
                    until: WaitUntil::Eq,
                    rows: vec![],
                    timeout_ms: Some(0),
                });
                self.base.push(Operation::Insert {
                    table: "Physical_Locator".into(),
                    row: row(vec![
                        ("encapsulation_type", Datum::string(ENCAP)),
                        ("dst_ip", Datum::string(&text)),
                    ]),
                    uuid_name: Some(name.clone()),
                });
                self.plan.changes.locators += 1;
                Atom::NamedUuid(name)
            }
        };
        self.locators.insert(ip, atom.clone());
        atom
    }

    /// The logical switch for `vni`: ours (fixing drift), a new one, or `None` when a
    /// foreign row is in the way.
    fn logical_switch(&mut self, vni: Vni, owned: Option<&LogicalSwitchRow>) -> Option<Atom> {
        if let Some(ls) = owned {
            let want_mode = Some(REPLICATION.to_string());
            if ls.tunnel_key != Some(i64::from(vni)) || ls.replication_mode != want_mode {
                let observed = row(vec![
                    ("tunnel_key", opt_int(ls.tunnel_key)),
                    ("replication_mode", opt_str(ls.replication_mode.as_deref())),
                ]);
                self.waits
                    .push(wait_eq("Logical_Switch", &ls.uuid, observed));
                let fixed = row(vec![
                    ("tunnel_key", Datum::integer(i64::from(vni))),
                    ("replication_mode", Datum::string(REPLICATION)),
                ]);
                self.rest.push(update("Logical_Switch", &ls.uuid, fixed));
                self.plan.changes.logical_switches.1 += 1;
            }
            return Some(Atom::Uuid(ls.uuid.clone()));
        }
        let name = logical_switch_name(vni);
        let foreign = self
            .view
            .logical_switches
            .values()
            .find(|l| !is_owned(l) && (l.name == name || l.tunnel_key == Some(i64::from(vni))));
        if let Some(f) = foreign {
            self.plan.conflicts.push(format!(
                "VNI {vni}: logical switch {:?} (not ours) has the name {name:?} or tunnel_key {vni}",
                f.name
            ));
            return None;
        }
        let uuid_name = self.name("ls");
        let other_config = [
            (OWNER_KEY.to_string(), OWNER.to_string()),
            (VNI_KEY.to_string(), vni.to_string()),
        ];
        self.base.push(Operation::Insert {
            table: "Logical_Switch".into(),
            row: row(vec![
                ("name", Datum::string(name)),
                (
                    "description",
                    Datum::string(format!("VNI {vni}, managed by {OWNER}")),
                ),
                ("tunnel_key", Datum::integer(i64::from(vni))),
                ("replication_mode", Datum::string(REPLICATION)),
                (
                    "other_config",
                    Datum::string_map(other_config.iter().map(|(k, v)| (k, v))),
                ),
            ]),
            uuid_name: Some(uuid_name.clone()),
        });
        self.plan.changes.logical_switches.0 += 1;
        Some(Atom::NamedUuid(uuid_name))
    }
}

fn opt_int(v: Option<i64>) -> Datum {
    Datum::Set(v.map(Atom::Integer).into_iter().collect())
}

fn opt_str(v: Option<&str>) -> Datum {
    Datum::Set(v.map(Atom::string).into_iter().collect())
}

/// Remote MAC rows of `ls`, split into the first per MAC (kept) and duplicates.
fn rows_of<'a>(rows: &'a BTreeMap<Uuid, MacRow>, ls: Option<&Uuid>) -> Vec<&'a MacRow> {
    match ls {
        Some(ls) => rows.values().filter(|r| &r.logical_switch == ls).collect(),
        None => Vec::new(),
    }
}

impl Builder<'_> {
    /// The `unknown-dst` flood entry of one segment (`seg = None`: remove it).
    fn flood(&mut self, seg: Option<&Segment>, ls_atom: &Atom, ls: Option<&Uuid>) {
        let mut kept: Option<&MacRow> = None;
        for r in rows_of(&self.view.mcast_remote, ls) {
            if r.mac == UNKNOWN_DST && kept.is_none() && seg.is_some_and(|s| !s.flood.is_empty()) {
                kept = Some(r);
            } else {
                self.rest.push(delete("Mcast_Macs_Remote", &r.uuid));
                self.plan.changes.mcast.2 += 1;
            }
        }
        let Some(seg) = seg.filter(|s| !s.flood.is_empty()) else {
            return;
        };
        let members: Vec<Atom> = seg.flood.iter().map(|ip| self.locator(*ip)).collect();
        let existing: Option<Vec<Uuid>> = members.iter().map(|a| a.as_uuid().cloned()).collect();
        let existing = existing.map(|mut v| {
            v.sort();
            v
        });
        if let (Some(k), Some(want)) = (kept, &existing)
            && self.view.locator_sets.get(&k.target) == Some(want)
        {
            return;
        }
        // Sets are immutable and shareable: reuse an identical one, else insert one.
        let reuse = existing
            .as_ref()
            .and_then(|want| self.view.locator_sets.iter().find(|(_, m)| *m == want))
            .map(|(u, _)| Atom::Uuid(u.clone()));
        let set = match reuse {
            Some(a) => a,
            None => {
                let name = self.name("set");
                self.base.push(Operation::Insert {
                    table: "Physical_Locator_Set".into(),
                    row: row(vec![("locators", Datum::Set(members))]),
                    uuid_name: Some(name.clone()),
                });
                Atom::NamedUuid(name)
            }
        };
        self.set_mac(
            "Mcast_Macs_Remote",
            "locator_set",
            kept,
            UNKNOWN_DST,
            ls_atom,
            set,
        );
    }

    /// Points an existing MAC row at `target` (guarded), or inserts the row.
    fn set_mac(
        &mut self,
        table: &str,
        column: &str,
        existing: Option<&MacRow>,
        mac: &str,
        ls_atom: &Atom,
        target: Atom,
    ) {
        let counts = if table == "Mcast_Macs_Remote" {
            &mut self.plan.changes.mcast
        } else {
            &mut self.plan.changes.ucast
        };
        match existing {
            Some(r) => {
                counts.1 += 1;
                let observed = row(vec![(column, uuid_atom(&r.target))]);
                self.waits.push(wait_eq(table, &r.uuid, observed));
                self.rest.push(update(
                    table,
                    &r.uuid,
                    row(vec![(column, Datum::Atom(target))]),
                ));
            }
            None => {
                counts.0 += 1;
                self.rest.push(Operation::Insert {
                    table: table.to_string(),
                    row: row(vec![
                        ("MAC", Datum::string(mac)),
                        ("logical_switch", Datum::Atom(ls_atom.clone())),
                        (column, Datum::Atom(target)),
                    ]),
                    uuid_name: None,
                });
            }
        }
    }

    /// The remote unicast MACs of one segment (`seg = None`: remove them all).
    fn ucast(&mut self, seg: Option<&Segment>, ls_atom: &Atom, ls: Option<&Uuid>) {
        let mut seen = BTreeSet::new();
        let empty = BTreeMap::new();
        let want = seg.map_or(&empty, |s| &s.remote_macs);
        for r in rows_of(&self.view.ucast_remote, ls) {
            let mac = r.mac.to_ascii_lowercase();
            let desired = want.iter().find(|(m, _)| m.as_str() == mac);
            match desired {
                Some((_, ip)) if seen.insert(mac.clone()) => {
                    let loc = self.locator(*ip);
                    if loc.as_uuid() != Some(&r.target) {
                        self.set_mac("Ucast_Macs_Remote", "locator", Some(r), &mac, ls_atom, loc);
                    }
                }
                _ => {
                    self.rest.push(delete("Ucast_Macs_Remote", &r.uuid));
                    self.plan.changes.ucast.2 += 1;
                }
            }
        }
        for (mac, ip) in want {
            if !seen.contains(mac.as_str()) {
                let loc = self.locator(*ip);
                self.set_mac(
                    "Ucast_Macs_Remote",
                    "locator",
                    None,
                    mac.as_str(),
                    ls_atom,
                    loc,
                );
            }
        }
    }
}

/// Binding changes of one port.
#[derive(Default)]
struct PortChange {
    remove: Vec<(u16, Atom)>,
    add: Vec<(u16, Atom)>,
}

impl Builder<'_> {
    /// Makes the bindings of the switch's ports equal `slots` for our logical switches.
    fn bindings(
        &mut self,
        ports: &BTreeMap<&str, &PhysicalPortRow>,
        slots: &BTreeMap<PortVlan, Atom>,
        owned: &BTreeSet<&Uuid>,
    ) {
        let mut changes: BTreeMap<&str, PortChange> = BTreeMap::new();
        for (name, port) in ports {
            for (vlan, u) in &port.vlan_bindings {
                let pv = PortVlan {
                    port: name.to_string(),
                    vlan: *vlan,
                };
                let keep = slots.get(&pv) == Some(&Atom::Uuid(u.clone()));
                if owned.contains(u) && !keep {
                    let c = changes.entry(name).or_default();
                    c.remove.push((*vlan, Atom::Uuid(u.clone())));
                }
            }
        }
        for (pv, atom) in slots {
            let Some(port) = ports.get(pv.port.as_str()) else {
                self.plan.pending.push(format!(
                    "port {} is not (yet) a Physical_Port of the switch",
                    pv.port
                ));
                continue;
            };
            match port.vlan_bindings.get(&pv.vlan) {
                Some(u) if atom.as_uuid() == Some(u) => {}
                Some(u) if !owned.contains(u) => self.plan.conflicts.push(format!(
                    "port {} VLAN {} is bound to a logical switch that is not ours ({})",
                    pv.port,
                    pv.vlan,
                    self.view
                        .logical_switches
                        .get(u)
                        .map_or(u.0.as_str(), |l| l.name.as_str())
                )),
                _ => changes
                    .entry(port.name.as_str())
                    .or_default()
                    .add
                    .push((pv.vlan, atom.clone())),
            }
        }
        for (name, c) in changes {
            self.port_ops(ports[name], c);
        }
    }

    fn port_ops(&mut self, port: &PhysicalPortRow, c: PortChange) {
        let observed: Vec<(u16, Atom)> = port
            .vlan_bindings
            .iter()
            .map(|(v, u)| (*v, Atom::Uuid(u.clone())))
            .collect();
        self.waits.push(wait_eq(
            "Physical_Port",
            &port.uuid,
            row(vec![("vlan_bindings", vlan_datum(&observed))]),
        ));
        let mut mutations = Vec::new();
        // Delete before insert: `insert` into a map never replaces an existing key.
        if !c.remove.is_empty() {
            self.plan.changes.bindings.1 += c.remove.len();
            mutations.push(Mutation::new(
                "vlan_bindings",
                Mutator::Delete,
                vlan_datum(&c.remove),
            ));
        }
        if !c.add.is_empty() {
            self.plan.changes.bindings.0 += c.add.len();
            mutations.push(Mutation::new(
                "vlan_bindings",
                Mutator::Insert,
                vlan_datum(&c.add),
            ));
        }
        self.rest.push(Operation::Mutate {
            table: "Physical_Port".into(),
            conditions: vec![Condition::uuid(&port.uuid)],
            mutations,
        });
    }

    /// Sets `bfd_params` on the switch's tunnels to our node VTEPs: on with the timers for
    /// the nodes in `desired.bfd`, empty (off) for the other nodes of our flood lists.
    /// Tunnels to any other address are not ours to configure.
    fn bfd(&mut self, ps: &super::model::PhysicalSwitchRow, desired: &FabricState) {
        let nodes: BTreeSet<Ipv4Addr> = desired
            .segments
            .values()
            .flat_map(|s| s.flood.iter().copied())
            .collect();
        for tunnel in ps.tunnels.iter().filter_map(|u| self.view.tunnels.get(u)) {
            let Some(remote) = self
                .view
                .locators
                .get(&tunnel.remote)
                .and_then(|l| l.dst_ip.parse::<Ipv4Addr>().ok())
                .filter(|ip| nodes.contains(ip))
            else {
                continue;
            };
            let want = bfd_params(desired.bfd.get(&remote));
            if tunnel.bfd_params == want {
                continue;
            }
            let as_datum = |m: &BTreeMap<String, String>| {
                Datum::Map(
                    m.iter()
                        .map(|(k, v)| (Atom::String(k.clone()), Atom::String(v.clone())))
                        .collect(),
                )
            };
            self.waits.push(wait_eq(
                "Tunnel",
                &tunnel.uuid,
                row(vec![("bfd_params", as_datum(&tunnel.bfd_params))]),
            ));
            self.rest.push(update(
                "Tunnel",
                &tunnel.uuid,
                row(vec![("bfd_params", as_datum(&want))]),
            ));
            self.plan.changes.tunnels += 1;
        }
    }

    /// Deletes a logical switch we no longer want, once nothing but our own rows (removed
    /// in this transaction) refers to it.
    fn retire(&mut self, ls: &LogicalSwitchRow, our_ports: &BTreeSet<&Uuid>) {
        let atom = Atom::Uuid(ls.uuid.clone());
        self.flood(None, &atom, Some(&ls.uuid));
        self.ucast(None, &atom, Some(&ls.uuid));
        let bound_elsewhere = self.view.ports.values().any(|p| {
            !our_ports.contains(&p.uuid) && p.vlan_bindings.values().any(|u| u == &ls.uuid)
        });
        if bound_elsewhere || self.view.local_mac_refs.contains(&ls.uuid) {
            self.plan.pending.push(format!(
                "logical switch {} still referenced by the switch; deleted once released",
                ls.name
            ));
            return;
        }
        self.rest.push(delete("Logical_Switch", &ls.uuid));
        self.plan.changes.logical_switches.2 += 1;
    }
}

/// The `bfd_params` of a tunnel: on with the timers, or empty (off, the schema's default).
pub fn bfd_params(bfd: Option<&super::fabric::Bfd>) -> BTreeMap<String, String> {
    match bfd {
        None => BTreeMap::new(),
        Some(b) => [
            ("enable", "true".to_string()),
            ("min_rx", b.min_rx_ms.to_string()),
            ("min_tx", b.min_tx_ms.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect(),
    }
}

/// The diff. `switch` is the Physical_Switch whose ports the bindings go on.
pub fn plan(desired: Option<&FabricState>, view: &VtepView, switch: &str) -> VtepPlan {
    let (owned, orphans) = owned_switches(view);
    let mut b = Builder {
        view,
        waits: Vec::new(),
        base: Vec::new(),
        rest: Vec::new(),
        locators: BTreeMap::new(),
        names: 0,
        plan: VtepPlan {
            managed: owned.iter().map(|(v, l)| (*v, l.name.clone())).collect(),
            ..Default::default()
        },
    };
    let Some(desired) = desired else {
        return b.plan;
    };
    let Some(ps) = view.switch(switch) else {
        b.plan
            .pending
            .push(format!("Physical_Switch {switch:?} not in the database"));
        return b.plan;
    };
    let ports = view.ports_of(ps);
    let our_ports: BTreeSet<&Uuid> = ps.ports.iter().collect();
    let owned_uuids: BTreeSet<&Uuid> = view
        .logical_switches
        .values()
        .filter(|l| is_owned(l))
        .map(|l| &l.uuid)
        .collect();
    let mut slots = BTreeMap::new();
    for seg in desired.segments.values() {
        let mine = owned.get(&seg.vni).copied();
        let Some(atom) = b.logical_switch(seg.vni, mine) else {
            continue;
        };
        let ls = mine.map(|l| &l.uuid);
        b.flood(Some(seg), &atom, ls);
        b.ucast(Some(seg), &atom, ls);
        for pv in &seg.bindings {
            slots.insert(pv.clone(), atom.clone());
        }
    }
    b.bindings(&ports, &slots, &owned_uuids);
    b.bfd(ps, desired);
    let retired = owned
        .iter()
        .filter(|(vni, _)| !desired.segments.contains_key(vni))
        .map(|(_, l)| *l)
        .chain(orphans);
    for ls in retired {
        b.retire(ls, &our_ports);
    }
    let mut ops = std::mem::take(&mut b.waits);
    ops.append(&mut b.base);
    ops.append(&mut b.rest);
    if !ops.is_empty() {
        ops.push(Operation::Comment(format!("{OWNER}: gateway {switch}")));
    }
    b.plan.ops = ops;
    b.plan
}
