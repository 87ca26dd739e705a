//! The OVS rows the agent reads (Open_vSwitch, Bridge, Port, Interface), typed.

use std::collections::BTreeMap;

use crate::ovsdb::{MonitorRequest, Replica, Row, Uuid};

/// Tables and columns the agent monitors: only what the diff and the status need.
pub fn monitor_requests() -> Vec<MonitorRequest> {
    vec![
        MonitorRequest::new("Open_vSwitch", &["bridges"]),
        MonitorRequest::new("Bridge", &["name", "ports"]),
        MonitorRequest::new("Port", &["name", "interfaces", "tag", "external_ids"]),
        MonitorRequest::new(
            "Interface",
            &[
                "name",
                "type",
                "options",
                "external_ids",
                "ofport",
                "error",
                "bfd",
                "bfd_status",
            ],
        ),
    ]
}

/// A Bridge row.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BridgeRow {
    /// Row UUID.
    pub uuid: Uuid,
    /// Name.
    pub name: String,
    /// Its Port rows.
    pub ports: Vec<Uuid>,
}

/// A Port row.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PortRow {
    /// Row UUID.
    pub uuid: Uuid,
    /// Name.
    pub name: String,
    /// Its Interface rows.
    pub interfaces: Vec<Uuid>,
    /// Access VLAN.
    pub tag: Option<i64>,
    /// `external_ids`.
    pub external_ids: BTreeMap<String, String>,
}

/// An Interface row.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct InterfaceRow {
    /// Row UUID.
    pub uuid: Uuid,
    /// Name.
    pub name: String,
    /// `type` (empty = a system device).
    pub kind: String,
    /// `options`.
    pub options: BTreeMap<String, String>,
    /// `external_ids`.
    pub external_ids: BTreeMap<String, String>,
    /// OpenFlow port number once vswitchd has applied it; -1 = failed.
    pub ofport: Option<i64>,
    /// vswitchd's error for this interface.
    pub error: Option<String>,
    /// `bfd`: BFD configuration (`enable`, `min_rx`, `min_tx`; empty = off).
    pub bfd: BTreeMap<String, String>,
    /// `bfd_status`: the BFD session as vswitchd reports it (empty while off).
    pub bfd_status: BTreeMap<String, String>,
}

/// What the agent sees of OVS.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OvsView {
    /// The Open_vSwitch (root) row, if the database was initialised.
    pub root: Option<Uuid>,
    /// Bridges.
    pub bridges: Vec<BridgeRow>,
    /// Ports by UUID.
    pub ports: BTreeMap<Uuid, PortRow>,
    /// Interfaces by UUID.
    pub interfaces: BTreeMap<Uuid, InterfaceRow>,
}

fn string(row: &Row, col: &str) -> String {
    row.get(col)
        .and_then(|d| d.as_str())
        .unwrap_or_default()
        .to_string()
}

fn map(row: &Row, col: &str) -> BTreeMap<String, String> {
    row.get(col).map(|d| d.as_string_map()).unwrap_or_default()
}

fn uuids(row: &Row, col: &str) -> Vec<Uuid> {
    row.get(col).map(|d| d.as_uuids()).unwrap_or_default()
}

impl OvsView {
    /// Reads the view from a replica of [`monitor_requests`].
    pub fn from_replica(replica: &Replica) -> Self {
        let root = replica.rows("Open_vSwitch").next().map(|(u, _)| u.clone());
        let bridges = replica
            .rows("Bridge")
            .map(|(u, r)| BridgeRow {
                uuid: u.clone(),
                name: string(r, "name"),
                ports: uuids(r, "ports"),
            })
            .collect();
        let ports = replica
            .rows("Port")
            .map(|(u, r)| {
                (
                    u.clone(),
                    PortRow {
                        uuid: u.clone(),
                        name: string(r, "name"),
                        interfaces: uuids(r, "interfaces"),
                        tag: r.get("tag").and_then(|d| d.as_i64()),
                        external_ids: map(r, "external_ids"),
                    },
                )
            })
            .collect();
        let interfaces = replica
            .rows("Interface")
            .map(|(u, r)| {
                (
                    u.clone(),
                    InterfaceRow {
                        uuid: u.clone(),
                        name: string(r, "name"),
                        kind: string(r, "type"),
                        options: map(r, "options"),
                        external_ids: map(r, "external_ids"),
                        ofport: r.get("ofport").and_then(|d| d.as_i64()),
                        error: r
                            .get("error")
                            .and_then(|d| d.as_str())
                            .filter(|s| !s.is_empty())
                            .map(str::to_string),
                        bfd: map(r, "bfd"),
                        bfd_status: map(r, "bfd_status"),
                    },
                )
            })
            .collect();
        OvsView {
            root,
            bridges,
            ports,
            interfaces,
        }
    }

    /// The bridge named `name`.
    pub fn bridge(&self, name: &str) -> Option<&BridgeRow> {
        self.bridges.iter().find(|b| b.name == name)
    }

    /// The Port rows of `bridge` that are in the view.
    pub fn ports_of<'a>(&'a self, bridge: &'a BridgeRow) -> impl Iterator<Item = &'a PortRow> {
        bridge.ports.iter().filter_map(|u| self.ports.get(u))
    }

    /// The Interface rows of `port` that are in the view.
    pub fn interfaces_of<'a>(
        &'a self,
        port: &'a PortRow,
    ) -> impl Iterator<Item = &'a InterfaceRow> {
        port.interfaces
            .iter()
            .filter_map(|u| self.interfaces.get(u))
    }
}
