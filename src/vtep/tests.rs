//! Table tests of the planner and the diff (pure).

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::ovsdb::{Atom, Operation, Uuid};

use super::diff::{OWNER, OWNER_KEY, VNI_KEY, plan};
use super::fabric::{Attachment, FabricState, GatewayInput, Mac, SegmentInput, plan_fabric};
use super::model::{
    LocatorRow, LogicalSwitchRow, MacRow, PhysicalPortRow, PhysicalSwitchRow, VtepView,
};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn seg(port: &str, vlan: u16, nodes: &[&str]) -> SegmentInput {
    SegmentInput {
        attachments: vec![Attachment {
            port: port.into(),
            vlan,
            macs: vec!["52:54:00:00:50:01".into()],
        }],
        node_vteps: nodes.iter().map(|n| ip(n)).collect(),
        workload_macs: vec![],
    }
}

#[test]
fn planner_table() {
    struct Case {
        name: &'static str,
        input: GatewayInput,
        vnis: Vec<u32>,
        problems: usize,
    }
    let cases = vec![
        Case {
            name: "one VNI, two nodes",
            input: [(5001, seg("p1", 0, &["192.168.100.1", "192.168.100.3"]))].into(),
            vnis: vec![5001],
            problems: 0,
        },
        Case {
            name: "no device: no segment",
            input: [(
                5001,
                SegmentInput {
                    node_vteps: vec![ip("192.168.100.1")],
                    ..Default::default()
                },
            )]
            .into(),
            vnis: vec![],
            problems: 0,
        },
        Case {
            name: "VNI out of range",
            input: [(0, seg("p1", 0, &[])), (1 << 24, seg("p1", 1, &[]))].into(),
            vnis: vec![],
            problems: 2,
        },
        Case {
            name: "VLAN out of range, empty port",
            input: [(7, seg("p1", 4096, &[])), (8, seg("", 1, &[]))].into(),
            vnis: vec![],
            problems: 2,
        },
        Case {
            name: "same port+VLAN twice: lower VNI keeps it",
            input: [(20, seg("p1", 5, &[])), (10, seg("p1", 5, &[]))].into(),
            vnis: vec![10],
            problems: 1,
        },
        Case {
            name: "IPv6 node VTEP dropped, segment kept",
            input: [(5, seg("p1", 0, &["fd00::1", "10.1.1.1"]))].into(),
            vnis: vec![5],
            problems: 1,
        },
    ];
    for c in cases {
        let s = plan_fabric(&c.input);
        assert_eq!(
            s.segments.keys().copied().collect::<Vec<_>>(),
            c.vnis,
            "{}",
            c.name
        );
        assert_eq!(s.problems.len(), c.problems, "{}: {:?}", c.name, s.problems);
    }
}

#[test]
fn planner_macs() {
    let mut input = seg("p1", 0, &["10.0.0.1"]);
    input.workload_macs = vec![
        ("AA-BB-CC-00-00-01".into(), ip("10.0.0.2")),
        ("aa:bb:cc:00:00:01".into(), ip("10.0.0.1")),
        ("52:54:00:00:50:01".into(), ip("10.0.0.1")),
        ("nope".into(), ip("10.0.0.1")),
    ];
    let s = plan_fabric(&[(9, input)].into());
    let seg = &s.segments[&9];
    let mac = Mac::parse("aa:bb:cc:00:00:01").unwrap();
    assert_eq!(
        seg.remote_macs.get(&mac),
        Some(&"10.0.0.1".parse().unwrap())
    );
    assert_eq!(seg.remote_macs.len(), 1);
    assert!(
        seg.device_macs
            .contains(&Mac::parse("52:54:00:00:50:01").unwrap())
    );
    // duplicate owner, device/workload clash, bad MAC
    assert_eq!(s.problems.len(), 3, "{:?}", s.problems);
}

fn u(s: &str) -> Uuid {
    Uuid(s.into())
}

/// A switch `tor1` with port `p1` (bindings given) and nothing else.
fn switch_view(bindings: &[(u16, &str)]) -> VtepView {
    let mut v = VtepView::default();
    v.switches.push(PhysicalSwitchRow {
        uuid: u("ps"),
        name: "tor1".into(),
        ports: vec![u("p1")],
        tunnel_ips: vec!["192.168.100.2".into()],
        ..Default::default()
    });
    v.ports.insert(
        u("p1"),
        PhysicalPortRow {
            uuid: u("p1"),
            name: "p1".into(),
            vlan_bindings: bindings.iter().map(|(vl, l)| (*vl, u(l))).collect(),
            ..Default::default()
        },
    );
    v
}

fn owned_ls(uuid: &str, vni: u32) -> LogicalSwitchRow {
    LogicalSwitchRow {
        uuid: u(uuid),
        name: format!("rdo-vni-{vni}"),
        tunnel_key: Some(i64::from(vni)),
        replication_mode: Some("source_node".into()),
        other_config: [
            (OWNER_KEY.to_string(), OWNER.to_string()),
            (VNI_KEY.to_string(), vni.to_string()),
        ]
        .into(),
        ..Default::default()
    }
}

fn locator(v: &mut VtepView, uuid: &str, dst: &str) {
    v.locators.insert(
        u(uuid),
        LocatorRow {
            uuid: u(uuid),
            encapsulation_type: "vxlan_over_ipv4".into(),
            dst_ip: dst.into(),
            tunnel_key: None,
        },
    );
}

/// The view after our writer programmed VNI 5001 on p1 with nodes .1 and .3.
fn programmed() -> VtepView {
    let mut v = switch_view(&[(0, "ls")]);
    v.logical_switches.insert(u("ls"), owned_ls("ls", 5001));
    locator(&mut v, "l1", "192.168.100.1");
    locator(&mut v, "l3", "192.168.100.3");
    v.locator_sets.insert(u("set"), vec![u("l1"), u("l3")]);
    v.mcast_remote.insert(
        u("m"),
        MacRow {
            uuid: u("m"),
            mac: "unknown-dst".into(),
            logical_switch: u("ls"),
            target: u("set"),
        },
    );
    v
}

fn desired(nodes: &[&str]) -> FabricState {
    plan_fabric(&[(5001, seg("p1", 0, nodes))].into())
}

fn count(ops: &[Operation], op: &str, table: &str) -> usize {
    ops.iter()
        .filter(|o| {
            let j = o.to_json();
            j["op"] == op && j["table"] == table
        })
        .count()
}

#[test]
fn unknown_desired_state_touches_nothing() {
    let p = plan(None, &programmed(), "tor1");
    assert!(p.ops.is_empty());
    assert_eq!(
        p.managed,
        BTreeMap::from([(5001, "rdo-vni-5001".to_string())])
    );
}

#[test]
fn fresh_switch_gets_everything_in_one_transaction() {
    let p = plan(
        Some(&desired(&["192.168.100.1", "192.168.100.3"])),
        &switch_view(&[]),
        "tor1",
    );
    let ops = &p.ops;
    assert_eq!(count(ops, "insert", "Logical_Switch"), 1);
    assert_eq!(count(ops, "insert", "Physical_Locator"), 2);
    assert_eq!(count(ops, "wait", "Physical_Locator"), 2);
    assert_eq!(count(ops, "insert", "Physical_Locator_Set"), 1);
    assert_eq!(count(ops, "insert", "Mcast_Macs_Remote"), 1);
    assert_eq!(count(ops, "mutate", "Physical_Port"), 1);
    assert_eq!(count(ops, "wait", "Physical_Port"), 1);
    // Waits come first, inserts of referenced rows before the rows that refer to them.
    let first_non_wait = ops
        .iter()
        .position(|o| !matches!(o, Operation::Wait { .. }))
        .unwrap();
    assert!(
        ops[first_non_wait..]
            .iter()
            .all(|o| !matches!(o, Operation::Wait { .. }))
    );
    let ls = ops[first_non_wait].to_json();
    assert_eq!(ls["row"]["name"], "rdo-vni-5001");
    assert_eq!(ls["row"]["tunnel_key"], 5001);
    assert_eq!(ls["row"]["replication_mode"], "source_node");
    assert!(ls["row"]["other_config"].to_string().contains(OWNER));
    assert!(p.conflicts.is_empty() && p.pending.is_empty(), "{p:?}");
}

#[test]
fn matching_switch_needs_nothing_and_locators_are_reused() {
    let p = plan(
        Some(&desired(&["192.168.100.1", "192.168.100.3"])),
        &programmed(),
        "tor1",
    );
    assert!(p.ops.is_empty(), "{:#?}", p.ops);
    // A third node: existing locators reused, one inserted, a new set, the entry repointed.
    let p = plan(
        Some(&desired(&[
            "192.168.100.1",
            "192.168.100.3",
            "192.168.100.4",
        ])),
        &programmed(),
        "tor1",
    );
    assert_eq!(count(&p.ops, "insert", "Physical_Locator"), 1);
    assert_eq!(count(&p.ops, "insert", "Physical_Locator_Set"), 1);
    assert_eq!(count(&p.ops, "update", "Mcast_Macs_Remote"), 1);
    assert_eq!(count(&p.ops, "wait", "Mcast_Macs_Remote"), 1);
}

#[test]
fn node_removed_leaves_the_flood_set() {
    let p = plan(Some(&desired(&["192.168.100.1"])), &programmed(), "tor1");
    let set = p
        .ops
        .iter()
        .find(|o| matches!(o, Operation::Insert { table, .. } if table == "Physical_Locator_Set"))
        .expect("a new set");
    let Operation::Insert { row, .. } = set else {
        unreachable!()
    };
    assert_eq!(row["locators"].as_uuids(), vec![u("l1")]);
    assert_eq!(count(&p.ops, "insert", "Physical_Locator"), 0);
}

#[test]
fn last_device_gone_removes_ours_and_the_switch_when_released() {
    let mut v = programmed();
    v.local_mac_refs.push(u("ls"));
    let p = plan(Some(&FabricState::default()), &v, "tor1");
    assert_eq!(count(&p.ops, "delete", "Mcast_Macs_Remote"), 1);
    assert_eq!(count(&p.ops, "mutate", "Physical_Port"), 1);
    assert_eq!(
        count(&p.ops, "delete", "Logical_Switch"),
        0,
        "still referenced"
    );
    assert_eq!(p.pending.len(), 1);
    // Once the switch released it (its local MACs gone, our rows gone):
    let mut v = switch_view(&[]);
    v.logical_switches.insert(u("ls"), owned_ls("ls", 5001));
    let p = plan(Some(&FabricState::default()), &v, "tor1");
    assert_eq!(count(&p.ops, "delete", "Logical_Switch"), 1);
}

#[test]
fn foreign_rows_are_never_touched() {
    // A foreign logical switch with our VNI blocks the segment; its binding stays.
    let mut v = switch_view(&[(0, "foreign"), (7, "foreign")]);
    v.logical_switches.insert(
        u("foreign"),
        LogicalSwitchRow {
            uuid: u("foreign"),
            name: "theirs".into(),
            tunnel_key: Some(5001),
            ..Default::default()
        },
    );
    v.ucast_remote.insert(
        u("um"),
        MacRow {
            uuid: u("um"),
            mac: "aa:bb:cc:dd:ee:ff".into(),
            logical_switch: u("foreign"),
            target: u("x"),
        },
    );
    let p = plan(Some(&desired(&["192.168.100.1"])), &v, "tor1");
    assert!(p.ops.is_empty(), "{:#?}", p.ops);
    assert_eq!(p.conflicts.len(), 1, "{:?}", p.conflicts);
    let p = plan(Some(&FabricState::default()), &v, "tor1");
    assert!(p.ops.is_empty());
    // Another VNI wanting p1 VLAN 0 (bound to the foreign switch): conflict, no binding.
    let other = plan_fabric(&[(42, seg("p1", 0, &[]))].into());
    let p = plan(Some(&other), &v, "tor1");
    assert_eq!(count(&p.ops, "mutate", "Physical_Port"), 0);
    assert_eq!(count(&p.ops, "insert", "Logical_Switch"), 1);
    assert_eq!(p.conflicts.len(), 1, "{:?}", p.conflicts);
}

#[test]
fn remote_macs_follow_their_node() {
    let mut v = programmed();
    v.ucast_remote.insert(
        u("um"),
        MacRow {
            uuid: u("um"),
            mac: "aa:bb:cc:00:00:01".into(),
            logical_switch: u("ls"),
            target: u("l1"),
        },
    );
    v.ucast_remote.insert(
        u("stale"),
        MacRow {
            uuid: u("stale"),
            mac: "aa:bb:cc:00:00:09".into(),
            logical_switch: u("ls"),
            target: u("l1"),
        },
    );
    let mut input = seg("p1", 0, &["192.168.100.1", "192.168.100.3"]);
    input.workload_macs = vec![("aa:bb:cc:00:00:01".into(), ip("192.168.100.3"))];
    let p = plan(Some(&plan_fabric(&[(5001, input)].into())), &v, "tor1");
    assert_eq!(count(&p.ops, "update", "Ucast_Macs_Remote"), 1);
    assert_eq!(count(&p.ops, "wait", "Ucast_Macs_Remote"), 1);
    assert_eq!(count(&p.ops, "delete", "Ucast_Macs_Remote"), 1);
    let upd = p
        .ops
        .iter()
        .find(|o| matches!(o, Operation::Update { table, .. } if table == "Ucast_Macs_Remote"))
        .unwrap();
    let Operation::Update { row, .. } = upd else {
        unreachable!()
    };
    assert_eq!(
        row["locator"],
        crate::ovsdb::Datum::Atom(Atom::Uuid(u("l3")))
    );
}

#[test]
fn missing_switch_or_port_is_pending() {
    let p = plan(Some(&desired(&[])), &VtepView::default(), "tor1");
    assert!(p.ops.is_empty());
    assert_eq!(p.pending.len(), 1);
    let d = plan_fabric(&[(5001, seg("p9", 0, &[]))].into());
    let p = plan(Some(&d), &switch_view(&[]), "tor1");
    assert_eq!(count(&p.ops, "mutate", "Physical_Port"), 0);
    assert!(
        p.pending.iter().any(|m| m.contains("p9")),
        "{:?}",
        p.pending
    );
}

/// `programmed()` plus the switch's own tunnels to .1, .3 and a foreign .9.
fn with_tunnels(params: &[(&str, BTreeMap<String, String>)]) -> VtepView {
    let mut v = programmed();
    locator(&mut v, "local", "192.168.100.2");
    locator(&mut v, "l9", "192.168.100.9");
    for (i, (remote, p)) in params.iter().enumerate() {
        let uuid = u(&format!("t{i}"));
        v.switches[0].tunnels.push(uuid.clone());
        v.tunnels.insert(
            uuid.clone(),
            super::model::TunnelRow {
                uuid,
                local: u("local"),
                remote: u(remote),
                bfd_params: p.clone(),
                bfd_status: BTreeMap::new(),
            },
        );
    }
    v
}

#[test]
fn bfd_is_set_on_the_tunnels_to_our_nodes_only() {
    use super::diff::bfd_params;
    use super::fabric::{Bfd, plan_fabric_with_bfd};
    let timers = Bfd {
        min_rx_ms: 300,
        min_tx_ms: 300,
    };
    let input: GatewayInput = [(5001, seg("p1", 0, &["192.168.100.1", "192.168.100.3"]))].into();
    // .1 asks for BFD; .9 asks too but the switch floods nothing to it: not ours.
    let want = plan_fabric_with_bfd(
        &input,
        &[(ip("192.168.100.1"), timers), (ip("192.168.100.9"), timers)].into(),
    );
    assert_eq!(want.bfd.len(), 1);
    let on = bfd_params(Some(&timers));
    let view = with_tunnels(&[
        ("l1", BTreeMap::new()),
        ("l3", on.clone()),
        ("l9", BTreeMap::from([("enable".into(), "true".into())])),
    ]);
    let p = plan(Some(&want), &view, "tor1");
    // .1 turned on, .3 turned off (it no longer asks), .9 (foreign) untouched.
    assert_eq!(count(&p.ops, "update", "Tunnel"), 2, "{:#?}", p.ops);
    assert_eq!(count(&p.ops, "wait", "Tunnel"), 2);
    assert_eq!(p.changes.tunnels, 2);
    let updates: Vec<serde_json::Value> = p
        .ops
        .iter()
        .map(Operation::to_json)
        .filter(|j| j["op"] == "update" && j["table"] == "Tunnel")
        .collect();
    assert!(
        updates[0]["row"]["bfd_params"]
            .to_string()
            .contains("min_rx")
    );
    assert_eq!(
        updates[1]["row"]["bfd_params"],
        serde_json::json!(["map", []])
    );
    // Already as wanted: nothing to do.
    let done = with_tunnels(&[("l1", on), ("l3", BTreeMap::new())]);
    assert!(plan(Some(&want), &done, "tor1").ops.is_empty());
}
