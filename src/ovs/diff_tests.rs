use super::*;
use crate::api::TunnelPortSpec;
use crate::ovs::model::{BridgeRow, InterfaceRow, OvsView, PortRow};
use serde_json::{Value, json};

const BR: &str = "br-int";

fn tp(
    name: &str,
    t: TunnelType,
    remote: &str,
    dst: Option<u16>,
    local: Option<&str>,
) -> TunnelPort {
    TunnelPort::new(
        name,
        TunnelPortSpec {
            node_name: "n1".into(),
            remote_ip: remote.into(),
            tunnel_type: t,
            dst_port: dst,
            local_ip: local.map(str::to_string),
            devices: Default::default(),
            bfd: None,
        },
    )
}

fn vx(name: &str, remote: &str) -> TunnelPort {
    tp(name, TunnelType::Vxlan, remote, None, None)
}

struct V {
    view: OvsView,
    n: usize,
}

fn m(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl V {
    fn new() -> Self {
        let mut v = V {
            view: OvsView {
                root: Some(Uuid("root".into())),
                ..Default::default()
            },
            n: 0,
        };
        v.bridge(BR);
        v
    }

    fn uuid(&mut self) -> Uuid {
        self.n += 1;
        Uuid(format!("u{}", self.n))
    }

    fn bridge(&mut self, name: &str) {
        let uuid = self.uuid();
        self.view.bridges.push(BridgeRow {
            uuid,
            name: name.into(),
            ports: vec![],
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn port(
        &mut self,
        bridge: &str,
        name: &str,
        ids: BTreeMap<String, String>,
        kind: &str,
        options: BTreeMap<String, String>,
        ofport: Option<i64>,
        error: Option<&str>,
    ) -> Uuid {
        let (pu, iu) = (self.uuid(), self.uuid());
        self.view.interfaces.insert(
            iu.clone(),
            InterfaceRow {
                uuid: iu.clone(),
                name: name.into(),
                kind: kind.into(),
                options,
                ofport,
                error: error.map(str::to_string),
                bfd: BTreeMap::new(),
                bfd_status: BTreeMap::new(),
            },
        );
        self.view.ports.insert(
            pu.clone(),
            PortRow {
                uuid: pu.clone(),
                name: name.into(),
                interfaces: vec![iu],
                tag: None,
                external_ids: ids,
            },
        );
        let b = self
            .view
            .bridges
            .iter_mut()
            .find(|b| b.name == bridge)
            .unwrap();
        b.ports.push(pu.clone());
        pu
    }

    /// Exactly what the agent would have created for `t`.
    fn owned(&mut self, bridge: &str, t: &TunnelPort, ofport: Option<i64>) -> Uuid {
        let d = DesiredTunnel::from_tunnel_port(t).unwrap();
        self.port(
            bridge,
            &d.interface_name,
            d.external_ids(),
            d.tunnel_type.as_str(),
            d.options.clone(),
            ofport,
            None,
        )
    }
}

fn iface(t: &TunnelPort) -> String {
    DesiredTunnel::from_tunnel_port(t).unwrap().interface_name
}

fn ops_json(p: &PortDiff) -> Vec<Value> {
    p.ops.iter().map(Operation::to_json).collect()
}

#[test]
fn desired_options() {
    let cases = [
        (
            tp("a", TunnelType::Vxlan, "192.0.2.1", None, None),
            m(&[("key", "flow"), ("remote_ip", "192.0.2.1")]),
        ),
        (
            tp(
                "b",
                TunnelType::Geneve,
                "2001:db8::1",
                Some(6082),
                Some("2001:db8::2"),
            ),
            m(&[
                ("dst_port", "6082"),
                ("key", "flow"),
                ("local_ip", "2001:db8::2"),
                ("remote_ip", "2001:db8::1"),
            ]),
        ),
        (
            tp(
                "c",
                TunnelType::Gre,
                "198.51.100.7",
                None,
                Some("198.51.100.1"),
            ),
            m(&[
                ("key", "flow"),
                ("local_ip", "198.51.100.1"),
                ("remote_ip", "198.51.100.7"),
            ]),
        ),
    ];
    for (t, want) in cases {
        let d = DesiredTunnel::from_tunnel_port(&t).unwrap();
        assert_eq!(d.options, want);
        assert!(d.interface_name.len() <= 15);
    }
}

#[test]
fn create() {
    let v = V::new();
    let want = [
        tp("a", TunnelType::Vxlan, "192.0.2.1", None, None),
        tp("b", TunnelType::Geneve, "192.0.2.1", None, None),
        tp("c", TunnelType::Gre, "192.0.2.2", None, Some("192.0.2.100")),
    ];
    let p = diff_ports(Some(&want), &v.view, BR);
    assert_eq!(p.changes.create, want.iter().map(iface).collect::<Vec<_>>());
    assert!(!p.changes.create_bridge);
    assert_eq!(p.ops.len(), 7, "3 × (Interface + Port) + 1 bridge mutate");
    let j = ops_json(&p);
    assert_eq!(
        j[0],
        json!({"op": "insert", "table": "Interface", "uuid-name": "rdo_i1", "row": {
            "name": iface(&want[0]), "type": "vxlan",
            "options": ["map", [["key", "flow"], ["remote_ip", "192.0.2.1"]]]}})
    );
    assert_eq!(j[1]["table"], "Port");
    assert_eq!(
        j[1]["row"]["interfaces"],
        json!(["set", [["named-uuid", "rdo_i1"]]])
    );
    assert_eq!(
        j[6],
        json!({"op": "mutate", "table": "Bridge", "where": [["_uuid", "==", ["uuid", "u1"]]],
               "mutations": [["ports", "insert", ["set", [["named-uuid", "rdo_p2"],
                   ["named-uuid", "rdo_p4"], ["named-uuid", "rdo_p6"]]]]]})
    );
    for t in &want {
        assert_eq!(
            p.ports[t.metadata.name.as_deref().unwrap()].state,
            PortState::Pending
        );
    }
}

#[test]
fn no_op_reports_ofports() {
    let mut v = V::new();
    let want = [
        vx("a", "192.0.2.1"),
        tp("b", TunnelType::Gre, "192.0.2.2", None, None),
    ];
    v.owned(BR, &want[0], Some(3));
    v.owned(BR, &want[1], None);
    let p = diff_ports(Some(&want), &v.view, BR);
    assert!(p.ops.is_empty(), "{:?}", p.ops);
    assert_eq!(p.changes, Changes::default());
    assert_eq!(
        p.ports["a"],
        PortReport {
            interface_name: iface(&want[0]),
            ofport: Some(3),
            state: PortState::Ready,
            bfd: None,
        }
    );
    assert_eq!(p.ports["b"].state, PortState::Pending, "no ofport yet");
}

#[test]
fn ovs_errors_are_reported_in_ovs_words() {
    let mut v = V::new();
    let want = [vx("a", "192.0.2.1"), vx("b", "192.0.2.2")];
    let d = DesiredTunnel::from_tunnel_port(&want[0]).unwrap();
    v.port(
        BR,
        &d.interface_name,
        d.external_ids(),
        "vxlan",
        d.options.clone(),
        Some(-1),
        Some("could not add network device (File exists)"),
    );
    v.owned(BR, &want[1], Some(-1));
    let p = diff_ports(Some(&want), &v.view, BR);
    assert!(p.ops.is_empty());
    assert_eq!(
        p.ports["a"].state,
        PortState::OvsError("could not add network device (File exists)".into())
    );
    assert!(matches!(p.ports["b"].state, PortState::OvsError(ref m) if m.contains("-1")));
    assert_eq!(p.ports["b"].ofport, Some(-1));
}

#[test]
fn option_and_type_drift_is_repaired_in_place() {
    let mut v = V::new();
    let want = [vx("a", "192.0.2.1")];
    let d = DesiredTunnel::from_tunnel_port(&want[0]).unwrap();
    let mut opts = d.options.clone();
    opts.insert("remote_ip".into(), "192.0.2.99".into());
    opts.insert("csum".into(), "true".into());
    v.port(
        BR,
        &d.interface_name,
        d.external_ids(),
        "geneve",
        opts,
        Some(5),
        None,
    );
    let p = diff_ports(Some(&want), &v.view, BR);
    assert_eq!(p.changes.update, vec![d.interface_name.clone()]);
    assert_eq!(
        ops_json(&p),
        vec![
            json!({"op": "update", "table": "Interface", "where": [["_uuid", "==", ["uuid", "u3"]]],
            "row": {"type": "vxlan",
                    "options": ["map", [["key", "flow"], ["remote_ip", "192.0.2.1"]]]}})
        ]
    );
    assert_eq!(p.ports["a"].state, PortState::Pending);
}

#[test]
fn renamed_tunnel_port_gets_its_mark_updated() {
    let mut v = V::new();
    v.owned(BR, &vx("old-name", "192.0.2.1"), Some(4));
    let p = diff_ports(Some(&[vx("new-name", "192.0.2.1")]), &v.view, BR);
    // Only the Port carries marks: its interface is left as it is.
    assert_eq!(p.ops.len(), 1, "the Port's external_ids");
    let j = ops_json(&p);
    assert_eq!(j[0]["table"], "Port");
    assert_eq!(
        j[0]["row"]["external_ids"],
        json!([
            "map",
            [
                ["remotedevice.io/owner", "remote-device-operator"],
                ["remotedevice.io/tunnelport", "new-name"]
            ]
        ])
    );
    assert!(!p.ports.contains_key("old-name"));
}

#[test]
fn foreign_ports_are_untouched_and_listed_as_local() {
    let mut v = V::new();
    let vm = v.port(
        BR,
        "vm1",
        m(&[("iface-id", "x")]),
        "",
        m(&[]),
        Some(7),
        None,
    );
    v.view.ports.get_mut(&vm).unwrap().tag = Some(100);
    v.port(BR, "br-int", m(&[]), "internal", m(&[]), Some(65534), None);
    v.port(BR, "vm2-pending", m(&[]), "", m(&[]), None, None);
    // A foreign tunnel and a port marked by someone else.
    v.port(
        BR,
        "vxlan0",
        m(&[]),
        "vxlan",
        m(&[("remote_ip", "203.0.113.9")]),
        Some(8),
        None,
    );
    v.port(
        BR,
        "other",
        m(&[(OWNER_KEY, "someone-else")]),
        "",
        m(&[]),
        Some(9),
        None,
    );
    for desired in [None, Some(&[][..])] {
        let p = diff_ports(desired, &v.view, BR);
        assert!(p.ops.is_empty(), "{:?}", p.ops);
        assert!(p.ports.is_empty());
        assert_eq!(
            p.local_ports,
            vec![
                LocalPort {
                    name: "other".into(),
                    ofport: 9,
                    tag: None,
                    interface_type: "".into()
                },
                LocalPort {
                    name: "vm1".into(),
                    ofport: 7,
                    tag: Some(100),
                    interface_type: "".into()
                },
                LocalPort {
                    name: "vxlan0".into(),
                    ofport: 8,
                    tag: None,
                    interface_type: "vxlan".into()
                },
            ]
        );
    }
}

#[test]
fn stale_owned_ports_go_only_once_desired_is_known() {
    let mut v = V::new();
    let stale = vx("gone", "192.0.2.1");
    let pu = v.owned(BR, &stale, Some(3));
    let keep = vx("keep", "192.0.2.2");
    v.owned(BR, &keep, Some(4));

    let p = diff_ports(None, &v.view, BR);
    assert!(
        p.ops.is_empty(),
        "never delete before the desired set is known"
    );
    assert_eq!(p.ports["gone"].state, PortState::Ready);
    assert_eq!(p.ports["keep"].state, PortState::Ready);

    let p = diff_ports(Some(&[keep]), &v.view, BR);
    assert_eq!(p.changes.delete, vec![iface(&stale)]);
    assert_eq!(
        ops_json(&p),
        vec![
            json!({"op": "mutate", "table": "Bridge", "where": [["_uuid", "==", ["uuid", "u1"]]],
                    "mutations": [["ports", "delete", ["set", [["uuid", pu.0]]]]]})
        ]
    );
    // Still there until the transaction runs: reported so the agent keeps its finalizer.
    assert_eq!(p.ports["gone"].state, PortState::Pending);
}

#[test]
fn name_clash_with_a_foreign_port() {
    let mut v = V::new();
    let t = vx("a", "192.0.2.1");
    v.port(BR, &iface(&t), m(&[]), "", m(&[]), Some(3), None);
    let p = diff_ports(Some(&[t]), &v.view, BR);
    assert!(p.ops.is_empty());
    assert!(
        matches!(p.ports["a"].state, PortState::ForeignConflict(ref m) if m.contains("not managed"))
    );
}

#[test]
fn identity_clash_with_a_foreign_tunnel() {
    let mut v = V::new();
    // Same remote, default port spelled out, no local IP, key=flow: OVS sees one tunnel.
    v.port(
        BR,
        "their-vxlan",
        m(&[]),
        "vxlan",
        m(&[
            ("remote_ip", "192.0.2.1"),
            ("key", "flow"),
            ("dst_port", "4789"),
        ]),
        Some(3),
        None,
    );
    // A different key is a different tunnel for OVS.
    v.port(
        BR,
        "their-gre",
        m(&[]),
        "gre",
        m(&[("remote_ip", "192.0.2.5")]),
        Some(4),
        None,
    );
    let want = [
        vx("a", "192.0.2.1"),
        tp("b", TunnelType::Gre, "192.0.2.5", None, None),
    ];
    let p = diff_ports(Some(&want), &v.view, BR);
    assert!(
        matches!(p.ports["a"].state, PortState::ForeignConflict(ref m) if m.contains("their-vxlan"))
    );
    assert_eq!(p.changes.create, vec![iface(&want[1])]);
}

/// The default port spelled out is the same tunnel (TunnelId), so the same OVS port.
#[test]
fn two_tunnels_ovs_would_reject_as_duplicates() {
    let v = V::new();
    let want = [
        tp("a", TunnelType::Vxlan, "192.0.2.1", None, None),
        tp("b", TunnelType::Vxlan, "192.0.2.1", Some(4789), None),
        // Different port or local IP: distinct tunnels.
        tp("c", TunnelType::Vxlan, "192.0.2.1", Some(4790), None),
        tp("d", TunnelType::Geneve, "192.0.2.1", Some(6081), None),
        tp("e", TunnelType::Geneve, "192.0.2.1", None, None),
    ];
    let p = diff_ports(Some(&want), &v.view, BR);
    assert_eq!(
        p.changes.create,
        vec![iface(&want[0]), iface(&want[2]), iface(&want[3])]
    );
    assert!(
        matches!(p.ports["b"].state, PortState::Invalid(ref m) if m.contains("same OVS port as TunnelPort a"))
    );
    assert!(
        matches!(p.ports["e"].state, PortState::Invalid(ref m) if m.contains("same OVS port as TunnelPort d"))
    );
}

#[test]
fn invalid_specs_are_reported() {
    let v = V::new();
    let want = [
        vx("a", "not-an-ip"),
        tp("b", TunnelType::Gre, "192.0.2.1", Some(1), None),
        tp(
            "c",
            TunnelType::Vxlan,
            "192.0.2.1",
            None,
            Some("2001:db8::1"),
        ),
        vx("d", "127.0.0.1"),
    ];
    let p = diff_ports(Some(&want), &v.view, BR);
    assert!(p.ops.is_empty());
    for n in ["a", "b", "c", "d"] {
        assert!(
            matches!(p.ports[n].state, PortState::Invalid(_)),
            "{n}: {:?}",
            p.ports[n]
        );
    }
}

#[test]
fn missing_bridge_is_created_with_the_ports() {
    let mut v = V::new();
    v.view.bridges.clear();
    let p = diff_ports(Some(&[vx("a", "192.0.2.1")]), &v.view, BR);
    assert!(p.changes.create_bridge);
    let j = ops_json(&p);
    assert_eq!(j.len(), 6);
    assert_eq!(
        j[2],
        json!({"op": "insert", "table": "Interface", "uuid-name": "rdo_bridge_i",
               "row": {"name": "br-int", "type": "internal"}})
    );
    assert_eq!(
        j[3],
        json!({"op": "insert", "table": "Port", "uuid-name": "rdo_bridge_p",
               "row": {"name": "br-int", "interfaces": ["set", [["named-uuid", "rdo_bridge_i"]]]}})
    );
    assert_eq!(
        j[4],
        json!({"op": "insert", "table": "Bridge", "uuid-name": "rdo_bridge", "row": {
            "name": "br-int", "fail_mode": "secure",
            "ports": ["set", [["named-uuid", "rdo_p2"], ["named-uuid", "rdo_bridge_p"]]],
            "external_ids": ["map", [["remotedevice.io/owner", "remote-device-operator"]]]}})
    );
    assert_eq!(
        j[5],
        json!({"op": "mutate", "table": "Open_vSwitch", "where": [["_uuid", "==", ["uuid", "root"]]],
               "mutations": [["bridges", "insert", ["set", [["named-uuid", "rdo_bridge"]]]]]})
    );
    // Not even a root row: it is created too. With nothing desired the bridge gets only
    // its own port.
    v.view.root = None;
    let p = diff_ports(None, &v.view, BR);
    let j = ops_json(&p);
    assert_eq!(
        j[2]["row"]["ports"],
        json!(["set", [["named-uuid", "rdo_bridge_p"]]])
    );
    assert_eq!(
        j[3],
        json!({"op": "insert", "table": "Open_vSwitch",
        "row": {"bridges": ["set", [["named-uuid", "rdo_bridge"]]]}})
    );
}

#[test]
fn owned_port_on_another_bridge_is_moved() {
    let mut v = V::new();
    v.bridge("br-old");
    let t = vx("a", "192.0.2.1");
    let pu = v.owned("br-old", &t, Some(3));
    let p = diff_ports(Some(&[t]), &v.view, BR);
    let j = ops_json(&p);
    assert_eq!(j.len(), 2);
    assert_eq!(
        j[0]["mutations"][0],
        json!(["ports", "delete", ["set", [["uuid", pu.0.clone()]]]])
    );
    assert_eq!(
        j[1]["mutations"][0],
        json!(["ports", "insert", ["set", [["uuid", pu.0]]]])
    );
    assert_eq!(j[1]["where"], json!([["_uuid", "==", ["uuid", "u1"]]]));
}

#[test]
fn owned_port_missing_its_interface_gets_a_new_one() {
    let mut v = V::new();
    let t = vx("a", "192.0.2.1");
    let pu = v.owned(BR, &t, Some(3));
    v.view.ports.get_mut(&pu).unwrap().interfaces.clear();
    let p = diff_ports(Some(&[t]), &v.view, BR);
    let j = ops_json(&p);
    assert_eq!(j.len(), 2);
    assert_eq!(j[0]["table"], "Interface");
    assert_eq!(j[1]["op"], "update");
    assert_eq!(
        j[1]["row"]["interfaces"],
        json!(["set", [["named-uuid", "rdo_i1"]]])
    );
}

fn with_bfd(mut t: TunnelPort, rx: u32, tx: u32) -> TunnelPort {
    t.spec.bfd = Some(crate::api::TunnelBfd {
        min_rx_ms: rx,
        min_tx_ms: tx,
    });
    t
}

impl V {
    /// The interface of our port for `t`, to set its `bfd` / `bfd_status` columns.
    fn iface_of(&mut self, t: &TunnelPort) -> &mut InterfaceRow {
        let name = iface(t);
        self.view
            .interfaces
            .values_mut()
            .find(|i| i.name == name)
            .unwrap()
    }
}

#[test]
fn a_tunnel_with_bfd_is_created_with_it_and_keeps_key_flow() {
    let v = V::new();
    let want = [with_bfd(vx("a", "192.0.2.1"), 300, 1000)];
    let p = diff_ports(Some(&want), &v.view, BR);
    let j = ops_json(&p);
    assert_eq!(j[0]["table"], "Interface");
    assert_eq!(
        j[0]["row"]["bfd"],
        json!([
            "map",
            [["enable", "true"], ["min_rx", "300"], ["min_tx", "1000"]]
        ])
    );
    assert_eq!(
        j[0]["row"]["options"],
        json!(["map", [["key", "flow"], ["remote_ip", "192.0.2.1"]]]),
        "BFD travels in VNI 0: the tunnel keeps key=flow"
    );
    let bfd = p.ports["a"].bfd.as_ref().expect("a BFD report");
    assert_eq!(bfd.health, crate::ovs::BfdHealth::Pending);
    // Without BFD the column is not written at all (the schema's default: off).
    let p = diff_ports(Some(&[vx("b", "192.0.2.2")]), &v.view, BR);
    assert!(ops_json(&p)[0]["row"].get("bfd").is_none());
    assert_eq!(p.ports["b"].bfd, None);
}

/// Turning BFD on, retiming it or off touches only the `bfd` column, and the port stays
/// Ready meanwhile; the session is read from `bfd_status`.
#[test]
fn bfd_is_set_and_removed_in_place_without_disturbing_the_port() {
    let on = m(&[("enable", "true"), ("min_rx", "1000"), ("min_tx", "1000")]);
    // (what, the TunnelPort's timers, the interface's bfd column, the column written)
    type Case = (
        &'static str,
        Option<(u32, u32)>,
        BTreeMap<String, String>,
        Option<Value>,
    );
    let cases: Vec<Case> = vec![
        (
            "turned on",
            Some((1000, 1000)),
            BTreeMap::new(),
            Some(json!([
                "map",
                [["enable", "true"], ["min_rx", "1000"], ["min_tx", "1000"]]
            ])),
        ),
        (
            "retimed",
            Some((300, 1000)),
            on.clone(),
            Some(json!([
                "map",
                [["enable", "true"], ["min_rx", "300"], ["min_tx", "1000"]]
            ])),
        ),
        ("turned off", None, on.clone(), Some(json!(["map", []]))),
        ("as wanted", Some((1000, 1000)), on.clone(), None),
        (
            "drift put back",
            Some((1000, 1000)),
            m(&[("enable", "false")]),
            {
                Some(json!([
                    "map",
                    [["enable", "true"], ["min_rx", "1000"], ["min_tx", "1000"]]
                ]))
            },
        ),
    ];
    for (what, timers, have, write) in cases {
        let mut v = V::new();
        let plain = vx("a", "192.0.2.1");
        v.owned(BR, &plain, Some(3));
        v.iface_of(&plain).bfd = have;
        let want = match timers {
            Some((rx, tx)) => with_bfd(plain.clone(), rx, tx),
            None => plain.clone(),
        };
        let p = diff_ports(Some(std::slice::from_ref(&want)), &v.view, BR);
        match &write {
            Some(bfd) => {
                assert_eq!(
                    ops_json(&p),
                    vec![json!({"op": "update", "table": "Interface",
                        "where": [["_uuid", "==", ["uuid", "u3"]]], "row": {"bfd": bfd}})],
                    "{what}"
                );
                assert_eq!(p.changes.bfd, vec![iface(&want)], "{what}");
            }
            None => assert!(p.ops.is_empty(), "{what}: {:?}", p.ops),
        }
        assert!(p.changes.update.is_empty(), "{what}");
        assert_eq!(p.ports["a"].state, PortState::Ready, "{what}");
        assert_eq!(p.ports["a"].bfd.is_some(), timers.is_some(), "{what}");
    }
}

#[test]
fn the_session_is_read_from_bfd_status() {
    let mut v = V::new();
    let want = with_bfd(vx("a", "192.0.2.1"), 1000, 1000);
    v.owned(BR, &want, Some(3));
    let i = v.iface_of(&want);
    i.bfd = want.spec.bfd.unwrap().ovs_column();
    i.bfd_status = m(&[
        ("state", "down"),
        ("forwarding", "false"),
        ("diagnostic", "Control Detection Time Expired"),
        ("remote_state", "down"),
        ("remote_diagnostic", "No Diagnostic"),
        ("flap_count", "2"),
    ]);
    let p = diff_ports(Some(std::slice::from_ref(&want)), &v.view, BR);
    assert!(p.ops.is_empty(), "{:?}", p.ops);
    let bfd = p.ports["a"].bfd.clone().unwrap();
    assert_eq!(bfd.health, crate::ovs::BfdHealth::Down);
    assert_eq!(
        bfd.session,
        crate::ovs::BfdSession {
            state: Some("down".into()),
            forwarding: Some(false),
            diagnostic: Some("Control Detection Time Expired".into()),
            remote_state: Some("down".into()),
            remote_diagnostic: Some("No Diagnostic".into()),
            flap_count: Some(2),
        }
    );
    // Type or option drift together with BFD: one update, the port pending meanwhile.
    let i = v.iface_of(&want);
    i.kind = "geneve".into();
    i.bfd = BTreeMap::new();
    let p = diff_ports(Some(std::slice::from_ref(&want)), &v.view, BR);
    let j = ops_json(&p);
    assert_eq!(j.len(), 1);
    assert_eq!(j[0]["row"]["type"], "vxlan");
    assert_eq!(j[0]["row"]["bfd"][1][0], json!(["enable", "true"]));
    assert_eq!(p.ports["a"].state, PortState::Pending);
    assert!(p.changes.bfd.is_empty());
}

#[test]
fn bfd_timers_out_of_range_are_invalid() {
    let v = V::new();
    let want = [with_bfd(vx("a", "192.0.2.1"), 50, 1000)];
    let p = diff_ports(Some(&want), &v.view, BR);
    assert!(p.ops.is_empty());
    match &p.ports["a"].state {
        PortState::Invalid(why) => assert!(why.contains("bfd.minRxMs"), "{why}"),
        other => panic!("{other:?}"),
    }
}
