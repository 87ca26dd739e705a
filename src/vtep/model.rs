//! The `hardware_vtep` rows the gateway writer reads, typed (see `vtep(5)`).
//!
//! Only the columns the diff and the status need are monitored. Physical_Locator and
//! Physical_Locator_Set are not root tables: the server garbage-collects them once no
//! row refers to them, so the writer never deletes them itself.

use std::collections::BTreeMap;

use crate::ovsdb::{Atom, Datum, MonitorRequest, Replica, Row, Uuid};

/// Name of the database a ToR serves (`vtep(5)`).
pub const DATABASE: &str = "hardware_vtep";

/// Tables and columns the writer monitors.
pub fn monitor_requests() -> Vec<MonitorRequest> {
    vec![
        MonitorRequest::new(
            "Physical_Switch",
            &[
                "name",
                "description",
                "ports",
                "tunnel_ips",
                "management_ips",
                "tunnels",
                "switch_fault_status",
            ],
        ),
        MonitorRequest::new(
            "Physical_Port",
            &["name", "vlan_bindings", "port_fault_status"],
        ),
        MonitorRequest::new(
            "Logical_Switch",
            &[
                "name",
                "description",
                "tunnel_key",
                "replication_mode",
                "other_config",
            ],
        ),
        MonitorRequest::new(
            "Physical_Locator",
            &["encapsulation_type", "dst_ip", "tunnel_key"],
        ),
        MonitorRequest::new("Physical_Locator_Set", &["locators"]),
        MonitorRequest::new(
            "Ucast_Macs_Remote",
            &["MAC", "logical_switch", "locator", "ipaddr"],
        ),
        MonitorRequest::new(
            "Mcast_Macs_Remote",
            &["MAC", "logical_switch", "locator_set", "ipaddr"],
        ),
        // Written by the switch; read only to know when a logical switch is unreferenced.
        MonitorRequest::new("Ucast_Macs_Local", &["MAC", "logical_switch"]),
        MonitorRequest::new("Mcast_Macs_Local", &["MAC", "logical_switch"]),
        MonitorRequest::new("Tunnel", &["local", "remote", "bfd_params", "bfd_status"]),
    ]
}

/// A Physical_Switch row.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PhysicalSwitchRow {
    /// Row UUID.
    pub uuid: Uuid,
    /// Name (unique).
    pub name: String,
    /// The switch's own description.
    pub description: String,
    /// Its Physical_Port rows.
    pub ports: Vec<Uuid>,
    /// Its VTEP addresses.
    pub tunnel_ips: Vec<String>,
    /// Management addresses.
    pub management_ips: Vec<String>,
    /// Its Tunnel rows (written by the switch).
    pub tunnels: Vec<Uuid>,
    /// Faults in the switch's words (`switch_fault_status`).
    pub fault_status: Vec<String>,
}

/// A Physical_Port row.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PhysicalPortRow {
    /// Row UUID.
    pub uuid: Uuid,
    /// Name.
    pub name: String,
    /// VLAN → Logical_Switch.
    pub vlan_bindings: BTreeMap<u16, Uuid>,
    /// Faults in the switch's words (`port_fault_status`).
    pub fault_status: Vec<String>,
}

/// A Logical_Switch row.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogicalSwitchRow {
    /// Row UUID.
    pub uuid: Uuid,
    /// Name (unique).
    pub name: String,
    /// Description.
    pub description: String,
    /// VNI.
    pub tunnel_key: Option<i64>,
    /// `service_node` / `source_node` (empty = service_node).
    pub replication_mode: Option<String>,
    /// `other_config`.
    pub other_config: BTreeMap<String, String>,
}

/// A Physical_Locator row.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LocatorRow {
    /// Row UUID.
    pub uuid: Uuid,
    /// Always `vxlan_over_ipv4` in schema 1.x.
    pub encapsulation_type: String,
    /// Remote VTEP address.
    pub dst_ip: String,
    /// Per-locator tunnel key (the writer uses the per-Logical_Switch model: none).
    pub tunnel_key: Option<i64>,
}

/// A Ucast_Macs_Remote or Mcast_Macs_Remote row (`target` = locator or locator set).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MacRow {
    /// Row UUID.
    pub uuid: Uuid,
    /// MAC (or `unknown-dst`).
    pub mac: String,
    /// Logical_Switch.
    pub logical_switch: Uuid,
    /// Physical_Locator (ucast) or Physical_Locator_Set (mcast).
    pub target: Uuid,
}

/// A Tunnel row (written by the switch; BFD state read back).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TunnelRow {
    /// Row UUID.
    pub uuid: Uuid,
    /// Local locator.
    pub local: Uuid,
    /// Remote locator.
    pub remote: Uuid,
    /// `bfd_params` (what the controller asks the switch for).
    pub bfd_params: BTreeMap<String, String>,
    /// `bfd_status`.
    pub bfd_status: BTreeMap<String, String>,
}

/// What the writer sees of one hardware_vtep database.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VtepView {
    /// Physical switches.
    pub switches: Vec<PhysicalSwitchRow>,
    /// Physical ports by UUID.
    pub ports: BTreeMap<Uuid, PhysicalPortRow>,
    /// Logical switches by UUID.
    pub logical_switches: BTreeMap<Uuid, LogicalSwitchRow>,
    /// Locators by UUID.
    pub locators: BTreeMap<Uuid, LocatorRow>,
    /// Locator sets: UUID → member locators (sorted).
    pub locator_sets: BTreeMap<Uuid, Vec<Uuid>>,
    /// Ucast_Macs_Remote by UUID.
    pub ucast_remote: BTreeMap<Uuid, MacRow>,
    /// Mcast_Macs_Remote by UUID.
    pub mcast_remote: BTreeMap<Uuid, MacRow>,
    /// Logical switches referenced by Ucast_Macs_Local / Mcast_Macs_Local rows.
    pub local_mac_refs: Vec<Uuid>,
    /// Tunnels by UUID.
    pub tunnels: BTreeMap<Uuid, TunnelRow>,
}

fn string(row: &Row, col: &str) -> String {
    row.get(col)
        .and_then(|d| d.as_str())
        .unwrap_or_default()
        .to_string()
}

fn strings(row: &Row, col: &str) -> Vec<String> {
    row.get(col)
        .map(|d| {
            d.as_set()
                .into_iter()
                .filter_map(|a| a.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn map(row: &Row, col: &str) -> BTreeMap<String, String> {
    row.get(col).map(|d| d.as_string_map()).unwrap_or_default()
}

fn uuids(row: &Row, col: &str) -> Vec<Uuid> {
    row.get(col).map(|d| d.as_uuids()).unwrap_or_default()
}

fn uuid(row: &Row, col: &str) -> Uuid {
    uuids(row, col).into_iter().next().unwrap_or_default()
}

/// An integer → uuid map column (`vlan_bindings`).
fn vlan_map(row: &Row, col: &str) -> BTreeMap<u16, Uuid> {
    match row.get(col) {
        Some(Datum::Map(m)) => m
            .iter()
            .filter_map(|(k, v)| match (k, v) {
                (Atom::Integer(vlan), Atom::Uuid(u)) => {
                    Some((u16::try_from(*vlan).ok()?, u.clone()))
                }
                _ => None,
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

fn mac_rows(replica: &Replica, table: &str, target: &str) -> BTreeMap<Uuid, MacRow> {
    replica
        .rows(table)
        .map(|(u, r)| {
            let row = MacRow {
                uuid: u.clone(),
                mac: string(r, "MAC"),
                logical_switch: uuid(r, "logical_switch"),
                target: uuid(r, target),
            };
            (u.clone(), row)
        })
        .collect()
}

impl VtepView {
    /// Reads the view from a replica of [`monitor_requests`].
    pub fn from_replica(replica: &Replica) -> Self {
        let switches = replica
            .rows("Physical_Switch")
            .map(|(u, r)| PhysicalSwitchRow {
                uuid: u.clone(),
                name: string(r, "name"),
                description: string(r, "description"),
                ports: uuids(r, "ports"),
                tunnel_ips: strings(r, "tunnel_ips"),
                management_ips: strings(r, "management_ips"),
                tunnels: uuids(r, "tunnels"),
                fault_status: strings(r, "switch_fault_status"),
            })
            .collect();
        let ports = replica
            .rows("Physical_Port")
            .map(|(u, r)| {
                let port = PhysicalPortRow {
                    uuid: u.clone(),
                    name: string(r, "name"),
                    vlan_bindings: vlan_map(r, "vlan_bindings"),
                    fault_status: strings(r, "port_fault_status"),
                };
                (u.clone(), port)
            })
            .collect();
        let mut view = VtepView {
            switches,
            ports,
            ..Default::default()
        };
        view.read_logical(replica);
        view
    }

    fn read_logical(&mut self, replica: &Replica) {
        self.logical_switches = replica
            .rows("Logical_Switch")
            .map(|(u, r)| {
                let ls = LogicalSwitchRow {
                    uuid: u.clone(),
                    name: string(r, "name"),
                    description: string(r, "description"),
                    tunnel_key: r.get("tunnel_key").and_then(|d| d.as_i64()),
                    replication_mode: r
                        .get("replication_mode")
                        .and_then(|d| d.as_str())
                        .map(str::to_string),
                    other_config: map(r, "other_config"),
                };
                (u.clone(), ls)
            })
            .collect();
        self.locators = replica
            .rows("Physical_Locator")
            .map(|(u, r)| {
                let loc = LocatorRow {
                    uuid: u.clone(),
                    encapsulation_type: string(r, "encapsulation_type"),
                    dst_ip: string(r, "dst_ip"),
                    tunnel_key: r.get("tunnel_key").and_then(|d| d.as_i64()),
                };
                (u.clone(), loc)
            })
            .collect();
        self.locator_sets = replica
            .rows("Physical_Locator_Set")
            .map(|(u, r)| {
                let mut members = uuids(r, "locators");
                members.sort();
                (u.clone(), members)
            })
            .collect();
        self.ucast_remote = mac_rows(replica, "Ucast_Macs_Remote", "locator");
        self.mcast_remote = mac_rows(replica, "Mcast_Macs_Remote", "locator_set");
        self.local_mac_refs = ["Ucast_Macs_Local", "Mcast_Macs_Local"]
            .iter()
            .flat_map(|t| replica.rows(t).map(|(_, r)| uuid(r, "logical_switch")))
            .collect();
        self.tunnels = replica
            .rows("Tunnel")
            .map(|(u, r)| {
                let t = TunnelRow {
                    uuid: u.clone(),
                    local: uuid(r, "local"),
                    remote: uuid(r, "remote"),
                    bfd_params: map(r, "bfd_params"),
                    bfd_status: map(r, "bfd_status"),
                };
                (u.clone(), t)
            })
            .collect();
    }

    /// The Physical_Switch named `name`.
    pub fn switch(&self, name: &str) -> Option<&PhysicalSwitchRow> {
        self.switches.iter().find(|s| s.name == name)
    }

    /// The ports of a switch, by name.
    pub fn ports_of(&self, switch: &PhysicalSwitchRow) -> BTreeMap<&str, &PhysicalPortRow> {
        switch
            .ports
            .iter()
            .filter_map(|u| self.ports.get(u))
            .map(|p| (p.name.as_str(), p))
            .collect()
    }

    /// The `vxlan_over_ipv4` locator (without per-locator key) for `ip`, if any.
    pub fn locator_for(&self, ip: &str) -> Option<&LocatorRow> {
        self.locators.values().find(|l| {
            l.encapsulation_type == "vxlan_over_ipv4" && l.dst_ip == ip && l.tunnel_key.is_none()
        })
    }
}
