//! The OVS rows the agent reads (Open_vSwitch, Bridge, Port, Interface), typed.

use std::collections::BTreeMap;

use crate::ovsdb::{MonitorRequest, Replica, Row, Touched, Uuid};

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

fn port_row(uuid: &Uuid, r: &Row) -> PortRow {
    PortRow {
        uuid: uuid.clone(),
        name: string(r, "name"),
        interfaces: uuids(r, "interfaces"),
        tag: r.get("tag").and_then(|d| d.as_i64()),
        external_ids: map(r, "external_ids"),
    }
}

fn interface_row(uuid: &Uuid, r: &Row) -> InterfaceRow {
    InterfaceRow {
        uuid: uuid.clone(),
        name: string(r, "name"),
        kind: string(r, "type"),
        options: map(r, "options"),
        ofport: r.get("ofport").and_then(|d| d.as_i64()),
        error: r
            .get("error")
            .and_then(|d| d.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_string),
        bfd: map(r, "bfd"),
        bfd_status: map(r, "bfd_status"),
    }
}

/// Reads one row of `table` again into `rows`, or drops it when it is gone.
fn reread<T>(
    rows: &mut BTreeMap<Uuid, T>,
    replica: &Replica,
    table: &str,
    uuid: Uuid,
    read: fn(&Uuid, &Row) -> T,
) {
    match replica.row(table, &uuid) {
        Some(r) => {
            let row = read(&uuid, r);
            rows.insert(uuid, row);
        }
        None => {
            rows.remove(&uuid);
        }
    }
}

impl OvsView {
    /// Reads the view from a replica of [`monitor_requests`].
    pub fn from_replica(replica: &Replica) -> Self {
        let mut view = OvsView {
            ports: replica
                .rows("Port")
                .map(|(u, r)| (u.clone(), port_row(u, r)))
                .collect(),
            interfaces: replica
                .rows("Interface")
                .map(|(u, r)| (u.clone(), interface_row(u, r)))
                .collect(),
            ..Default::default()
        };
        view.read_bridges(replica);
        view
    }

    /// Brings the view up to date with `replica` by the rows `touched` since it was last
    /// read (`None`: reads it all): one port beside 1000 costs one row, not 2000.
    pub fn update(&mut self, replica: &Replica, touched: Touched) {
        let Some(touched) = touched else {
            *self = Self::from_replica(replica);
            return;
        };
        let mut bridges = false;
        for (table, uuid) in touched {
            match table.as_str() {
                "Port" => reread(&mut self.ports, replica, "Port", uuid, port_row),
                "Interface" => reread(
                    &mut self.interfaces,
                    replica,
                    "Interface",
                    uuid,
                    interface_row,
                ),
                // The root row and the bridges are few: read again whole.
                _ => bridges = true,
            }
        }
        if bridges {
            self.read_bridges(replica);
        }
    }

    fn read_bridges(&mut self, replica: &Replica) {
        self.root = replica.rows("Open_vSwitch").next().map(|(u, _)| u.clone());
        self.bridges = replica
            .rows("Bridge")
            .map(|(u, r)| BridgeRow {
                uuid: u.clone(),
                name: string(r, "name"),
                ports: uuids(r, "ports"),
            })
            .collect();
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

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::ovsdb::UpdateFormat;
    use crate::ovsdb::monitor::column_kinds;

    /// The monitored columns with the kinds vswitch.ovsschema gives them.
    fn replica() -> Replica {
        let set = |key: &str| json!({"type": {"key": key, "min": 0, "max": "unlimited"}});
        let map =
            json!({"type": {"key": "string", "value": "string", "min": 0, "max": "unlimited"}});
        let opt_int = json!({"type": {"key": "integer", "min": 0, "max": 1}});
        let schema = json!({"tables": {
            "Open_vSwitch": {"columns": {"bridges": set("uuid")}},
            "Bridge": {"columns": {"name": {"type": "string"}, "ports": set("uuid")}},
            "Port": {"columns": {"name": {"type": "string"}, "interfaces": set("uuid"),
                "tag": opt_int, "external_ids": map}},
            "Interface": {"columns": {"name": {"type": "string"}, "type": {"type": "string"},
                "options": map, "ofport": opt_int,
                "error": {"type": {"key": "string", "min": 0, "max": 1}},
                "bfd": map, "bfd_status": map}},
        }});
        Replica::new(column_kinds(&schema).unwrap())
    }

    fn uuids(names: &[&str]) -> Value {
        json!([
            "set",
            names.iter().map(|n| json!(["uuid", n])).collect::<Vec<_>>()
        ])
    }

    fn port(name: &str, iface: &str) -> Value {
        json!({"name": name, "interfaces": ["uuid", iface],
            "external_ids": ["map", [["owner", "rdo"]]]})
    }

    fn iface(name: &str) -> Value {
        json!({"name": name, "type": "vxlan", "options": ["map", [["remote_ip", "192.0.2.1"]]]})
    }

    /// Each step is applied as a monitor update; after it the view kept up to date by the
    /// touched rows equals one read afresh, and touched only what the step named.
    #[test]
    fn update_by_touched_rows_equals_a_fresh_read() {
        let steps = [
            json!({
                "Open_vSwitch": {"root": {"initial": {"bridges": ["uuid", "br"]}}},
                "Bridge": {"br": {"initial": {"name": "br-int", "ports": uuids(&["p1", "p2"])}}},
                "Port": {"p1": {"initial": port("t1", "i1")}, "p2": {"initial": port("t2", "i2")}},
                "Interface": {"i1": {"initial": iface("t1")}, "i2": {"initial": iface("t2")}},
            }),
            // vswitchd fills in an ofport.
            json!({"Interface": {"i1": {"modify": {"ofport": 7}}}}),
            // A port added beside the others.
            json!({
                "Bridge": {"br": {"modify": {"ports": ["uuid", "p3"]}}},
                "Port": {"p3": {"insert": port("t3", "i3")}},
                "Interface": {"i3": {"insert": iface("t3")}},
            }),
            // A port's own columns change.
            json!({"Port": {"p2": {"modify": {"tag": 5}}}}),
            // A port removed.
            json!({
                "Bridge": {"br": {"modify": {"ports": ["uuid", "p1"]}}},
                "Port": {"p1": {"delete": null}},
                "Interface": {"i1": {"delete": null}},
            }),
            // The bridge removed.
            json!({
                "Open_vSwitch": {"root": {"modify": {"bridges": ["uuid", "br"]}}},
                "Bridge": {"br": {"delete": null}},
            }),
        ];
        let mut r = replica();
        let mut view = OvsView::default();
        for (i, step) in steps.iter().enumerate() {
            r.apply(UpdateFormat::Update2, step).unwrap();
            let touched = r.take_touched();
            if i == 0 {
                assert_eq!(touched, None, "a replica not read before is read whole");
            } else {
                let named: usize = step
                    .as_object()
                    .unwrap()
                    .values()
                    .map(|t| t.as_object().unwrap().len())
                    .sum();
                assert_eq!(touched.as_ref().map(|t| t.len()), Some(named), "step {i}");
            }
            view.update(&r, touched);
            assert_eq!(view, OvsView::from_replica(&r), "step {i}");
        }
        assert!(view.bridges.is_empty() && view.ports.len() == 2);
        assert_eq!(r.take_touched(), Some(Default::default()), "nothing since");
    }
}
