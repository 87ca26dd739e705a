//! Table tests of the planner and the diff (pure; the real-OVS tests are in tests/).

use std::collections::BTreeSet;
use std::sync::Arc;

use super::*;
use crate::api::{DeviceKey, TunnelDevice};

#[path = "typed_tests.rs"]
mod typed_tests;

fn dev(ns: &str, name: &str, mac: &str, vni: u32, ips: &[&str], vlan: Option<u16>) -> TunnelDevice {
    TunnelDevice {
        namespace: ns.into(),
        name: name.into(),
        mac_address: mac.into(),
        vni,
        ips: ips.iter().map(|s| s.to_string()).collect(),
        local_vlan: vlan,
    }
}

fn tunnel(name: &str, ofport: i64, devices: Vec<TunnelDevice>) -> TunnelFlowsInput {
    TunnelFlowsInput {
        interface_name: name.into(),
        ofport,
        devices: Arc::new(devices),
    }
}

fn port(ofport: i64, vlan: Option<u16>) -> WorkloadPort {
    WorkloadPort { ofport, vlan }
}

fn key(ns: &str, name: &str) -> DeviceKey {
    DeviceKey {
        namespace: ns.into(),
        name: name.into(),
    }
}

/// The plan as `table priority match actions` lines without cookies, sorted.
fn lines(plan: &FlowPlan) -> BTreeSet<String> {
    plan.flows()
        .map(|f| format!("{} {} {} {}", f.table, f.priority, f.matches, f.actions))
        .collect()
}

/// The untagged segment's local delivery flow.
fn untagged_delivery(p: &FlowPlan) -> &Flow {
    p.flow(&FlowKey::new(
        TABLE_TO_LOCAL,
        PRIORITY_DELIVER,
        "reg6=0x1001",
    ))
    .unwrap()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

const ARP_50: &str = "move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],set_field:52:54:00:00:00:50->eth_src,set_field:2->arp_op,move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],set_field:52:54:00:00:00:50->arp_sha,move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],set_field:10.0.0.50->arp_spa,IN_PORT";

#[test]
fn empty_input_gives_no_flows() {
    let p = desired_flows(&FlowInput::default());
    assert!(p.is_empty());
    assert!(p.devices.is_empty());
}

#[test]
fn one_untagged_device_gets_the_full_set() {
    let input = FlowInput {
        tunnels: vec![tunnel(
            "rdv-aaa",
            7,
            vec![dev(
                "t1",
                "d1",
                "52:54:00:00:00:50",
                5001,
                &["10.0.0.50"],
                None,
            )],
        )],
        workload_ports: vec![port(1, None), port(2, None), port(3, Some(100))],
    };
    let p = desired_flows(&input);
    let conj = CONJ_ID_BASE + 4096;
    let expected = set(&[
        // ingress: from the tunnel, this VNI, this device → untagged ports
        "0 60010 tun_id=0x1389,in_port=7,dl_src=52:54:00:00:00:50 load:0x1001->NXM_NX_REG6[],resubmit(,231)",
        "0 60005 in_port=7 drop",
        &format!("0 60000 dl_dst=52:54:00:00:00:50 conjunction({conj},2/2)"),
        &format!("0 60000 arp,arp_tpa=10.0.0.50,arp_op=1 conjunction({conj},2/2)"),
        &format!("0 60000 in_port=1 conjunction({conj},1/2)"),
        &format!("0 60000 in_port=2 conjunction({conj},1/2)"),
        &format!("0 60000 conj_id={conj} load:0x1001->NXM_NX_REG6[],resubmit(,230)"),
        "230 100 reg6=0x1001,dl_dst=52:54:00:00:00:50 set_field:0x1389->tun_id,output:7",
        &format!("230 200 arp,reg6=0x1001,arp_tpa=10.0.0.50,arp_op=1 {ARP_50}"),
        "231 100 reg6=0x1001 output:1,output:2",
    ]);
    assert_eq!(lines(&p), expected);
    let cookie = p.device_cookie("t1", "d1").expect("installed");
    assert_eq!(cookie & COOKIE_MASK, COOKIE_TAG);
    assert_eq!(
        p.devices[&key("t1", "d1")],
        DeviceState::Installed { cookie }
    );
    assert_eq!(p.installed_per_tunnel["rdv-aaa"], 1);
    // Every flow carries the tag; the device's own flows carry its cookie.
    assert!(p.flows().all(|f| f.cookie & COOKIE_MASK == COOKIE_TAG));
    let own = p.flows().filter(|f| f.cookie == cookie).count();
    assert_eq!(own, 5, "ingress, egress, ARP responder, two clauses");
}

#[test]
fn ipv6_gets_a_neighbour_responder_and_tagged_ports_are_separate() {
    let input = FlowInput {
        tunnels: vec![tunnel(
            "rdv-aaa",
            7,
            vec![dev(
                "t1",
                "d1",
                "52:54:00:00:00:51",
                10,
                &["fd00::51"],
                Some(100),
            )],
        )],
        workload_ports: vec![
            port(1, None),
            port(3, Some(100)),
            port(4, Some(100)),
            port(5, Some(200)),
        ],
    };
    let p = desired_flows(&input);
    let l = lines(&p);
    let conj = CONJ_ID_BASE + 100;
    assert!(l.contains(&format!(
        "0 60000 icmp6,icmp_type=135,nd_target=fd00::51 conjunction({conj},2/2)"
    )));
    assert!(l.contains(&format!("0 60000 in_port=3 conjunction({conj},1/2)")));
    assert!(l.contains(&format!("0 60000 in_port=4 conjunction({conj},1/2)")));
    assert!(
        !l.iter()
            .any(|f| f.starts_with("0 60000 in_port=1 ") || f.starts_with("0 60000 in_port=5 "))
    );
    assert!(l.contains("231 100 reg6=0x65 output:3,output:4"));
    let nd = p
        .flows()
        .find(|f| f.matches.starts_with("icmp6,reg6=0x65"))
        .expect("neighbour responder");
    assert_eq!(nd.table, TABLE_FROM_LOCAL);
    assert!(nd.actions.contains("set_field:136->icmpv6_type"));
    assert!(nd.actions.contains("set_field:fd00::51->ipv6_src"));
    assert!(nd.actions.ends_with("resubmit(,232)"));
    assert!(l.contains(
        "232 100 icmp6,reg6=0x65,icmp_type=136 move:NXM_OF_ETH_SRC[]->NXM_NX_ND_TLL[],IN_PORT"
    ));
    assert!(
        !l.iter().any(|f| f.contains("arp")),
        "no ARP for an IPv6-only device"
    );
}

#[test]
fn no_flow_points_at_a_tunnel_without_a_valid_ofport() {
    for bad in [-1, 0, 0xff00, 65534] {
        let input = FlowInput {
            tunnels: vec![
                tunnel(
                    "rdv-bad",
                    bad,
                    vec![dev(
                        "t1",
                        "d1",
                        "52:54:00:00:00:50",
                        1,
                        &["10.0.0.50"],
                        None,
                    )],
                ),
                tunnel(
                    "rdv-good",
                    9,
                    vec![dev(
                        "t1",
                        "d2",
                        "52:54:00:00:00:52",
                        1,
                        &["10.0.0.52"],
                        None,
                    )],
                ),
            ],
            workload_ports: vec![port(1, None)],
        };
        let p = desired_flows(&input);
        assert!(
            matches!(&p.devices[&key("t1", "d1")], DeviceState::Pending { reason } if reason.contains("rdv-bad")),
            "ofport {bad}: {:?}",
            p.devices
        );
        assert!(!p.has_device("t1", "d1"));
        assert!(p.has_device("t1", "d2"));
        assert_eq!(p.installed_per_tunnel["rdv-bad"], 0);
        for f in p.flows() {
            assert!(
                !f.matches.contains("52:54:00:00:00:50"),
                "ofport {bad}: {f:?}"
            );
            assert!(!f.matches.contains(&format!("in_port={bad},")), "{f:?}");
            assert!(!f.actions.contains(&format!("output:{bad}")), "{f:?}");
        }
    }
}

#[test]
fn conflicts_are_decided_by_device_order() {
    let cases: Vec<(&str, TunnelDevice, TunnelDevice, Option<&str>)> = vec![
        (
            "same MAC, same segment",
            dev("a", "first", "52:54:00:00:00:01", 1, &[], None),
            dev("b", "second", "52:54:00:00:00:01", 2, &[], None),
            Some("MAC 52:54:00:00:00:01 in untagged is already used by a/first"),
        ),
        (
            "same IP, same segment",
            dev("a", "first", "52:54:00:00:00:01", 1, &["10.0.0.1"], Some(5)),
            dev(
                "b",
                "second",
                "52:54:00:00:00:02",
                1,
                &["10.0.0.1"],
                Some(5),
            ),
            Some("IP 10.0.0.1 in vlan 5 is already used by a/first"),
        ),
        (
            "same MAC and VNI behind one tunnel, other segment",
            dev("a", "first", "52:54:00:00:00:01", 1, &[], Some(5)),
            dev("b", "second", "52:54:00:00:00:01", 1, &[], Some(6)),
            Some("with VNI 1 behind tunnel rdv-1 is already used by a/first"),
        ),
        (
            "same MAC in other segments with other VNIs is fine",
            dev("a", "first", "52:54:00:00:00:01", 1, &["10.0.0.1"], Some(5)),
            dev(
                "b",
                "second",
                "52:54:00:00:00:01",
                2,
                &["10.0.0.1"],
                Some(6),
            ),
            None,
        ),
    ];
    for (name, first, second, conflict) in cases {
        // Input order must not matter: "second" loses both ways.
        for devices in [
            vec![first.clone(), second.clone()],
            vec![second.clone(), first.clone()],
        ] {
            let p = desired_flows(&FlowInput {
                tunnels: vec![tunnel("rdv-1", 3, devices)],
                workload_ports: vec![port(1, None), port(2, Some(5)), port(4, Some(6))],
            });
            assert!(p.has_device("a", "first"), "{name}");
            match conflict {
                Some(text) => {
                    assert!(
                        matches!(&p.devices[&key("b", "second")], DeviceState::Rejected { reason } if reason.contains(text)),
                        "{name}: {:?}",
                        p.devices
                    );
                    assert!(!p.has_device("b", "second"));
                }
                None => assert!(p.has_device("b", "second"), "{name}: {:?}", p.devices),
            }
        }
    }
}

#[test]
fn a_clause_needed_by_two_segments_is_shared() {
    let p = desired_flows(&FlowInput {
        tunnels: vec![tunnel(
            "rdv-1",
            3,
            vec![
                dev("a", "x", "52:54:00:00:00:01", 1, &["10.0.0.1"], Some(5)),
                dev("b", "y", "52:54:00:00:00:01", 2, &["10.0.0.1"], Some(6)),
            ],
        )],
        workload_ports: vec![port(2, Some(5)), port(4, Some(6))],
    });
    let clause = p
        .flow(&FlowKey::new(
            0,
            PRIORITY_CLASSIFY,
            "dl_dst=52:54:00:00:00:01",
        ))
        .unwrap();
    assert_eq!(
        clause.actions,
        format!(
            "conjunction({},2/2),conjunction({},2/2)",
            CONJ_ID_BASE + 5,
            CONJ_ID_BASE + 6
        )
    );
    assert_eq!(
        clause.cookie,
        p.cookie(&Owner::Shared("dl_dst=52:54:00:00:00:01".into()))
            .unwrap()
    );
    // Removing one device leaves the clause to the other, under its own cookie.
    let p2 = desired_flows(&FlowInput {
        tunnels: vec![tunnel(
            "rdv-1",
            3,
            vec![dev(
                "b",
                "y",
                "52:54:00:00:00:01",
                2,
                &["10.0.0.1"],
                Some(6),
            )],
        )],
        workload_ports: vec![port(2, Some(5)), port(4, Some(6))],
    });
    let clause = p2
        .flow(&FlowKey::new(
            0,
            PRIORITY_CLASSIFY,
            "dl_dst=52:54:00:00:00:01",
        ))
        .unwrap();
    assert_eq!(
        clause.actions,
        format!("conjunction({},2/2)", CONJ_ID_BASE + 6)
    );
    assert_eq!(Some(clause.cookie), p2.device_cookie("b", "y"));
}

#[test]
fn bad_device_data_is_rejected_not_a_panic() {
    let cases = [
        (dev("a", "d", "not-a-mac", 1, &[], None), "macAddress"),
        (
            dev("a", "d", "01:00:5e:00:00:01", 1, &[], None),
            "macAddress",
        ),
        (dev("a", "d", "52:54:00:00:00:01", 0, &[], None), "vni"),
        (
            dev("a", "d", "52:54:00:00:00:01", 1 << 24, &[], None),
            "vni",
        ),
        (
            dev("a", "d", "52:54:00:00:00:01", 1, &["10.0.0.300"], None),
            "ips",
        ),
        (
            dev("a", "d", "52:54:00:00:00:01", 1, &["224.0.0.1"], None),
            "ips",
        ),
        (
            dev("a", "d", "52:54:00:00:00:01", 1, &[], Some(4095)),
            "localVlan",
        ),
    ];
    for (device, field) in cases {
        let p = desired_flows(&FlowInput {
            tunnels: vec![tunnel("rdv-1", 3, vec![device.clone()])],
            workload_ports: vec![port(1, None)],
        });
        assert!(
            matches!(&p.devices[&key("a", "d")], DeviceState::Rejected { reason } if reason.starts_with(field)),
            "{device:?}: {:?}",
            p.devices
        );
        // Only the tunnel's own drop rule remains.
        assert_eq!(lines(&p), set(&["0 60005 in_port=3 drop"]), "{device:?}");
    }
}

#[test]
fn mac_case_and_ip_spelling_are_normalized() {
    let p = desired_flows(&FlowInput {
        tunnels: vec![tunnel(
            "rdv-1",
            3,
            vec![dev("a", "d", "52:54:00:AB:CD:EF", 1, &["FD00::0:1"], None)],
        )],
        workload_ports: vec![port(1, None)],
    });
    let l = lines(&p);
    assert!(l.iter().any(|f| f.contains("dl_dst=52:54:00:ab:cd:ef")));
    assert!(l.iter().any(|f| f.contains("nd_target=fd00::1")));
}

#[test]
fn workload_ports_never_include_tunnels_or_reserved_numbers() {
    let p = desired_flows(&FlowInput {
        tunnels: vec![tunnel(
            "rdv-1",
            3,
            vec![dev("a", "d", "52:54:00:00:00:01", 1, &[], None)],
        )],
        workload_ports: vec![
            port(3, None),
            port(-1, None),
            port(0, None),
            port(65534, None),
            port(8, None),
        ],
    });
    let deliver = untagged_delivery(&p);
    assert_eq!(deliver.actions, "output:8");
    // A port some tunnel reports is never local, even when that tunnel gets no flows
    // (here: a second entry with the same name).
    let p = desired_flows(&FlowInput {
        tunnels: vec![
            tunnel(
                "rdv-1",
                3,
                vec![dev("a", "d", "52:54:00:00:00:01", 1, &[], None)],
            ),
            tunnel("rdv-1", 8, vec![]),
        ],
        workload_ports: vec![port(8, None), port(9, None)],
    });
    let deliver = untagged_delivery(&p);
    assert_eq!(deliver.actions, "output:9");
    // Without local ports the segment delivers nowhere (and nothing can match as local).
    let p = desired_flows(&FlowInput {
        tunnels: vec![tunnel(
            "rdv-1",
            3,
            vec![dev("a", "d", "52:54:00:00:00:01", 1, &[], None)],
        )],
        workload_ports: vec![],
    });
    assert_eq!(
        p.flow(&FlowKey::new(
            TABLE_TO_LOCAL,
            PRIORITY_DELIVER,
            "reg6=0x1001"
        ))
        .unwrap()
        .actions,
        "drop"
    );
}

#[test]
fn no_flow_goes_from_one_tunnel_to_another() {
    let p = desired_flows(&FlowInput {
        tunnels: vec![
            tunnel(
                "rdv-1",
                3,
                vec![dev("a", "d1", "52:54:00:00:00:01", 1, &["10.0.0.1"], None)],
            ),
            tunnel(
                "rdv-2",
                4,
                vec![dev("a", "d2", "52:54:00:00:00:02", 1, &["10.0.0.2"], None)],
            ),
        ],
        workload_ports: vec![port(1, None)],
    });
    for f in p.flows() {
        // Outputs to tunnels only happen in TABLE_FROM_LOCAL (reached from local ports).
        if f.actions.contains("output:3") || f.actions.contains("output:4") {
            assert_eq!(f.table, TABLE_FROM_LOCAL, "{f:?}");
        }
        // Tunnel ingress only ever goes to the local delivery table.
        if f.matches.contains("in_port=3") || f.matches.contains("in_port=4") {
            assert!(
                f.actions == "drop" || f.actions.ends_with(&format!("resubmit(,{TABLE_TO_LOCAL})")),
                "{f:?}"
            );
        }
        if f.table == TABLE_TO_LOCAL {
            assert_eq!(f.actions, "output:1");
        }
    }
}

#[test]
fn plan_is_independent_of_input_order() {
    let devices = vec![
        dev(
            "a",
            "d1",
            "52:54:00:00:00:01",
            1,
            &["10.0.0.1", "fd00::1"],
            None,
        ),
        dev("b", "d2", "52:54:00:00:00:02", 2, &["10.0.0.2"], Some(7)),
        dev("c", "d3", "52:54:00:00:00:03", 3, &[], None),
    ];
    let a = desired_flows(&FlowInput {
        tunnels: vec![
            tunnel("rdv-1", 3, devices.clone()),
            tunnel("rdv-2", 5, vec![]),
        ],
        workload_ports: vec![port(1, None), port(2, Some(7))],
    });
    let mut rev = devices;
    rev.reverse();
    let b = desired_flows(&FlowInput {
        tunnels: vec![tunnel("rdv-2", 5, vec![]), tunnel("rdv-1", 3, rev)],
        workload_ports: vec![port(2, Some(7)), port(1, None)],
    });
    assert_eq!(a, b);
}

fn many(n: u32) -> Vec<TunnelDevice> {
    (0..n)
        .map(|i| {
            dev(
                "bench",
                &format!("d{i}"),
                &format!(
                    "52:54:00:{:02x}:{:02x}:{:02x}",
                    i >> 16,
                    (i >> 8) & 255,
                    i & 255
                ),
                100 + i % 7,
                &[&format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255)],
                None,
            )
        })
        .collect()
}

fn observed_from(p: &FlowPlan) -> Vec<ObservedFlow> {
    p.flows()
        .map(|f| ObservedFlow {
            cookie: f.cookie,
            table: f.table,
            priority: f.priority,
            matches: f.matches.clone(),
            actions: f.actions.clone(),
            attributes: vec![],
        })
        .collect()
}

#[test]
fn adding_one_device_beside_many_is_incremental() {
    let mut devices = many(1000);
    let before = desired_flows(&FlowInput {
        tunnels: vec![tunnel("rdv-1", 3, devices.clone())],
        workload_ports: vec![port(1, None)],
    });
    devices.push(dev(
        "bench",
        "new",
        "52:54:00:ff:00:01",
        1,
        &["10.99.0.1"],
        None,
    ));
    let after = desired_flows(&FlowInput {
        tunnels: vec![tunnel("rdv-1", 3, devices)],
        workload_ports: vec![port(1, None)],
    });
    let d = diff(&after, &observed_from(&before));
    let cookie = after.device_cookie("bench", "new").unwrap();
    assert!(d.delete.is_empty());
    assert_eq!(d.add.len(), 5, "{d:?}");
    assert!(d.add.iter().all(|f| f.cookie == cookie));
    // And removing it again deletes exactly those.
    let back = diff(&before, &observed_from(&after));
    assert!(back.add.is_empty());
    assert_eq!(back.delete.len(), 5);
    assert!(back.delete.iter().all(|f| f.cookie == cookie));
    // Plan to plan (what the sync applies on a change, without a dump): the same.
    assert_eq!(diff_plans(&after, &before), d);
    assert_eq!(diff_plans(&before, &after), back);
    assert!(diff_plans(&after, &after).is_empty());
}

#[test]
fn removing_the_last_device_removes_everything() {
    let with = desired_flows(&FlowInput {
        tunnels: vec![tunnel("rdv-1", 3, many(3))],
        workload_ports: vec![port(1, None)],
    });
    let without = desired_flows(&FlowInput {
        tunnels: vec![],
        workload_ports: vec![port(1, None)],
    });
    let d = diff(&without, &observed_from(&with));
    assert!(d.add.is_empty());
    assert_eq!(d.delete.len(), with.len());
}

#[test]
fn diff_repairs_changes_and_ignores_foreign_flows() {
    let p = desired_flows(&FlowInput {
        tunnels: vec![tunnel("rdv-1", 3, many(1))],
        workload_ports: vec![port(1, None)],
    });
    let egress = p
        .flows()
        .find(|f| f.table == TABLE_FROM_LOCAL && f.priority == PRIORITY_EGRESS)
        .unwrap()
        .clone();
    let base = observed_from(&p);
    let foreign = ObservedFlow {
        cookie: 0x1,
        table: 0,
        priority: 60000,
        matches: "in_port=1".into(),
        actions: "NORMAL".into(),
        attributes: vec![],
    };
    let stray = ObservedFlow {
        cookie: COOKIE_TAG | 0x1234,
        table: 0,
        priority: 60000,
        matches: "in_port=99".into(),
        actions: "drop".into(),
        attributes: vec![],
    };
    type Mutate = fn(&mut Vec<ObservedFlow>, &ObservedFlow, &ObservedFlow);
    let cases: Vec<(&str, Mutate, usize, usize)> = vec![
        ("in sync", |_, _, _| {}, 0, 0),
        (
            "foreign flow is not ours",
            |o, f, _| o.push(f.clone()),
            0,
            0,
        ),
        ("stray owned flow goes", |o, _, s| o.push(s.clone()), 0, 1),
        (
            "deleted flow comes back",
            |o, _, _| o.retain(|f| f.table != TABLE_FROM_LOCAL || f.priority != PRIORITY_EGRESS),
            1,
            0,
        ),
        (
            "changed actions are rewritten",
            |o, _, _| {
                for f in o
                    .iter_mut()
                    .filter(|f| f.table == TABLE_FROM_LOCAL && f.priority == PRIORITY_EGRESS)
                {
                    f.actions = "drop".into();
                }
            },
            1,
            0,
        ),
        (
            "changed cookie is rewritten",
            |o, _, _| {
                for f in o
                    .iter_mut()
                    .filter(|f| f.table == TABLE_FROM_LOCAL && f.priority == PRIORITY_EGRESS)
                {
                    f.cookie = COOKIE_TAG | 7;
                }
            },
            1,
            0,
        ),
        (
            "added timeout is rewritten",
            |o, _, _| {
                for f in o
                    .iter_mut()
                    .filter(|f| f.table == TABLE_FROM_LOCAL && f.priority == PRIORITY_EGRESS)
                {
                    f.attributes.push("idle_timeout=5".into());
                }
            },
            1,
            0,
        ),
        (
            "match printed in another order is the same flow",
            |o, _, _| {
                for f in o.iter_mut() {
                    let mut fields: Vec<&str> = f.matches.split(',').collect();
                    fields.reverse();
                    f.matches = fields.join(",");
                }
            },
            0,
            0,
        ),
    ];
    for (name, mutate, adds, deletes) in cases {
        let mut observed = base.clone();
        mutate(&mut observed, &foreign, &stray);
        let d = diff(&p, &observed);
        assert_eq!(
            (d.add.len(), d.delete.len()),
            (adds, deletes),
            "{name}: {d:?}"
        );
        if adds == 1 {
            assert_eq!(d.add[0], egress, "{name}");
        }
        assert!(
            d.delete
                .iter()
                .all(|f| f.cookie & COOKIE_MASK == COOKIE_TAG),
            "{name}"
        );
    }
}

#[test]
fn bundle_lines_are_ofctl_syntax() {
    let p = desired_flows(&FlowInput {
        tunnels: vec![tunnel("rdv-1", 3, many(1))],
        workload_ports: vec![port(1, None)],
    });
    let stray = ObservedFlow {
        cookie: COOKIE_TAG | 0x1234,
        table: 230,
        priority: 100,
        matches: "reg6=0x5,dl_dst=52:54:00:00:00:99".into(),
        actions: "drop".into(),
        attributes: vec![],
    };
    let d = diff(&p, &[stray]);
    let text = d.bundle_text();
    let first = text.lines().next().unwrap();
    assert_eq!(
        first,
        "delete_strict cookie=0x52444f4600001234/-1,table=230,priority=100,reg6=0x5,dl_dst=52:54:00:00:00:99"
    );
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("add cookie=0x52444f46"))
            .count(),
        p.len()
    );
    assert!(
        text.lines()
            .all(|l| !l.starts_with("add ") || l.contains(",actions="))
    );
}

#[test]
fn dump_output_is_parsed() {
    let text = "OFPST_FLOW reply (OF1.4) (xid=0x2):\n \
        cookie=0x52444f4600000001, priority=60000,in_port=1 actions=conjunction(1380188160,1/2)\n \
        cookie=0x52444f4600000002, table=230, priority=200,arp,reg6=0x1001,arp_tpa=10.0.0.50,arp_op=1 actions=IN_PORT\n \
        cookie=0x52444f4600000003, table=231, idle_timeout=5, priority=100,reg6=0x1001 actions=output:1,output:2\n";
    let flows = parse_dump(text).unwrap();
    assert_eq!(flows.len(), 3);
    assert_eq!(
        flows[0],
        ObservedFlow {
            cookie: 0x52444f4600000001,
            table: 0,
            priority: 60000,
            matches: "in_port=1".into(),
            actions: "conjunction(1380188160,1/2)".into(),
            attributes: vec![],
        }
    );
    assert_eq!(flows[1].table, 230);
    assert_eq!(
        flows[1].matches,
        "arp,reg6=0x1001,arp_tpa=10.0.0.50,arp_op=1"
    );
    assert_eq!(flows[2].attributes, vec!["idle_timeout=5".to_string()]);
    assert_eq!(flows[2].actions, "output:1,output:2");
    assert!(parse_dump(" cookie=0x1, priority=5,in_port=1\n").is_err());
    assert!(parse_dump(" cookie=zz, priority=5 actions=drop\n").is_err());
    assert!(parse_dump("").unwrap().is_empty());
}

/// Two devices whose owner hashes collide: the first in owner order keeps the hash, the
/// other takes the next id; when the first comes or goes, the other's cookie (and every
/// flow of it) moves, in a planner with memory as in a fresh one.
#[test]
fn a_cookie_collision_moves_the_later_owner() {
    let (first, second) = ("d79611", "d88079");
    let hash = |name: &str| {
        use sha2::Digest;
        let d = sha2::Sha256::digest(format!("device/t/{name}").as_bytes());
        u32::from_be_bytes([d[0], d[1], d[2], d[3]])
    };
    assert_eq!(hash(first), hash(second), "the two names collide");
    let with = |names: &[&str]| FlowInput {
        tunnels: vec![tunnel(
            "rdv-1",
            3,
            names
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    let mac = format!("52:54:00:00:00:{:02x}", i + 1);
                    dev("t", n, &mac, 7, &[], None)
                })
                .collect(),
        )],
        workload_ports: vec![port(1, None)],
    };
    let id = COOKIE_TAG | u64::from(hash(first));
    let mut planner = FlowPlanner::default();
    let alone = planner.plan(&with(&[second]));
    assert_eq!(alone.device_cookie("t", second), Some(id));
    let both = planner.plan(&with(&[second, first]));
    assert_eq!(both, desired_flows(&with(&[second, first])));
    assert_eq!(both.device_cookie("t", first), Some(id));
    assert_eq!(both.device_cookie("t", second), Some(id + 1));
    assert!(both.flows().filter(|f| f.cookie == id + 1).count() >= 3);
    assert_eq!(
        both.devices[&key("t", second)],
        DeviceState::Installed { cookie: id + 1 }
    );
    let back = planner.plan(&with(&[second]));
    assert_eq!(back, alone);
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    /// Small pools so that collisions (same MAC, IP, ofport) happen often.
    fn device_strategy() -> impl Strategy<Value = TunnelDevice> {
        (
            0u8..3,
            0u8..6,
            0u8..4,
            1u32..4,
            proptest::collection::vec(0u8..5, 0..3),
            proptest::option::of(0u16..3),
        )
            .prop_map(|(ns, name, mac, vni, ips, vlan)| TunnelDevice {
                namespace: format!("ns{ns}"),
                name: format!("d{name}"),
                mac_address: format!("52:54:00:00:00:{mac:02x}"),
                vni,
                ips: ips
                    .into_iter()
                    .map(|i| {
                        if i % 2 == 0 {
                            format!("10.0.0.{i}")
                        } else {
                            format!("fd00::{i}")
                        }
                    })
                    .collect(),
                local_vlan: vlan,
            })
    }

    pub(super) fn input_strategy() -> impl Strategy<Value = FlowInput> {
        (
            proptest::collection::vec(
                (
                    0u8..4,
                    -1i64..6,
                    proptest::collection::vec(device_strategy(), 0..5),
                ),
                0..4,
            ),
            proptest::collection::vec((-1i64..10, proptest::option::of(0u16..3)), 0..6),
        )
            .prop_map(|(tunnels, ports)| FlowInput {
                tunnels: tunnels
                    .into_iter()
                    .map(|(n, ofport, devices)| tunnel(&format!("rdv-{n}"), ofport, devices))
                    .collect(),
                workload_ports: ports
                    .into_iter()
                    .map(|(ofport, vlan)| WorkloadPort { ofport, vlan })
                    .collect(),
            })
    }

    /// One edit of a planner's input, as the agent sees them: a device added, removed or
    /// changed, a tunnel renumbered, the local ports changed.
    #[derive(Clone, Debug)]
    enum Edit {
        Add(usize, TunnelDevice),
        Remove(usize, usize),
        Replace(usize, usize, TunnelDevice),
        Ofport(usize, i64),
        Ports(Vec<WorkloadPort>),
    }

    fn edit_strategy() -> impl Strategy<Value = Edit> {
        prop_oneof![
            3 => (0usize..4, device_strategy()).prop_map(|(t, d)| Edit::Add(t, d)),
            2 => (0usize..4, 0usize..5).prop_map(|(t, i)| Edit::Remove(t, i)),
            2 => (0usize..4, 0usize..5, device_strategy())
                .prop_map(|(t, i, d)| Edit::Replace(t, i, d)),
            1 => (0usize..4, -1i64..6).prop_map(|(t, p)| Edit::Ofport(t, p)),
            1 => proptest::collection::vec((-1i64..10, proptest::option::of(0u16..3)), 0..6)
                .prop_map(|ports| Edit::Ports(
                    ports.into_iter().map(|(ofport, vlan)| WorkloadPort { ofport, vlan }).collect()
                )),
        ]
    }

    impl Edit {
        fn apply(self, input: &mut FlowInput) {
            let n = input.tunnels.len();
            match self {
                Edit::Ports(ports) => input.workload_ports = ports,
                _ if n == 0 => {}
                Edit::Add(t, d) => Arc::make_mut(&mut input.tunnels[t % n].devices).push(d),
                Edit::Remove(t, i) => {
                    let devices = Arc::make_mut(&mut input.tunnels[t % n].devices);
                    if !devices.is_empty() {
                        devices.remove(i % devices.len());
                    }
                }
                Edit::Replace(t, i, d) => {
                    let devices = Arc::make_mut(&mut input.tunnels[t % n].devices);
                    if !devices.is_empty() {
                        let len = devices.len();
                        devices[i % len] = d;
                    }
                }
                Edit::Ofport(t, p) => input.tunnels[t % n].ofport = p,
            }
        }
    }

    /// The owned flows (as `add-flows` lines) after applying a diff to `flows`.
    fn applied(mut flows: BTreeSet<String>, d: &FlowDiff) -> BTreeSet<String> {
        for f in &d.delete {
            let line = format!(
                "cookie={:#x},table={},priority={},{},actions={}",
                f.cookie, f.table, f.priority, f.matches, f.actions
            );
            assert!(
                flows.remove(&line),
                "deletes a flow it does not hold: {line}"
            );
        }
        for f in &d.add {
            let key = f.key();
            flows.retain(|l| {
                let (head, _) = l.split_once(",actions=").unwrap();
                let mut parts = head.splitn(4, ',');
                let (_, table, priority) = (parts.next(), parts.next(), parts.next());
                let table = table.unwrap()["table=".len()..].parse().unwrap();
                let priority = priority.unwrap()["priority=".len()..].parse().unwrap();
                FlowKey::new(table, priority, parts.next().unwrap_or("")) != key
            });
            flows.insert(f.to_ofctl());
        }
        flows
    }

    /// The ofport in `in_port=N` / `output:N` fields of a flow.
    fn ports_in(text: &str, prefix: &str) -> Vec<i64> {
        text.split(',')
            .filter_map(|f| f.strip_prefix(prefix))
            .filter_map(|n| n.parse().ok())
            .collect()
    }

    proptest! {
        /// The planner kept between edits gives what a fresh one gives, and the change
        /// from one plan to the next, applied to the flows OVS held, gives the new flows.
        #[test]
        fn planner_with_memory_is_the_fresh_planner(
            start in input_strategy(),
            edits in proptest::collection::vec(edit_strategy(), 1..12),
        ) {
            let mut planner = FlowPlanner::default();
            let mut input = start;
            let mut before = planner.plan(&input);
            prop_assert_eq!(&before, &desired_flows(&input));
            for edit in edits {
                edit.apply(&mut input);
                let after = planner.plan(&input);
                prop_assert_eq!(&after, &desired_flows(&input), "after {:?}", input);
                let held: BTreeSet<String> = before.flows().map(Flow::to_ofctl).collect();
                let want: BTreeSet<String> = after.flows().map(Flow::to_ofctl).collect();
                prop_assert_eq!(applied(held, &diff_plans(&after, &before)), want);
                before = after;
            }
        }

        #[test]
        fn planner_invariants(input in input_strategy()) {
            let p = desired_flows(&input);
            // Tunnels that may carry flows: valid ofport, first by name to claim it.
            let mut names: Vec<&TunnelFlowsInput> = input.tunnels.iter().collect();
            names.sort_by(|a, b| a.interface_name.cmp(&b.interface_name));
            let mut valid: BTreeSet<i64> = BTreeSet::new();
            for t in names {
                if (1..=0xfeff).contains(&t.ofport) {
                    valid.insert(t.ofport);
                }
            }
            for f in p.flows() {
                prop_assert_eq!(f.cookie & COOKIE_MASK, COOKIE_TAG);
                prop_assert_eq!(&f.key(), &FlowKey::new(f.table, f.priority, &f.matches));
                // Outputs to tunnels only from TABLE_FROM_LOCAL, and only to valid ones;
                // nothing ever goes from a tunnel to a tunnel.
                for out in ports_in(&f.actions, "output:") {
                    if f.table == TABLE_FROM_LOCAL {
                        prop_assert!(valid.contains(&out), "{:?}", f);
                    } else {
                        prop_assert_eq!(f.table, TABLE_TO_LOCAL);
                        prop_assert!(!valid.contains(&out), "{:?}", f);
                    }
                }
                for inp in ports_in(&f.matches, "in_port=") {
                    prop_assert!((1..=0xfeff).contains(&inp), "{:?}", f);
                }
            }
            // Every device gets exactly one state; installed ones own flows under their
            // cookie, the others own none.
            let keys: BTreeSet<DeviceKey> = input
                .tunnels
                .iter()
                .flat_map(|t| t.devices.iter().map(|d| key(&d.namespace, &d.name)))
                .collect();
            prop_assert_eq!(keys.len(), p.devices.len());
            let cookies: BTreeSet<u64> = p.owners.values().map(|o| o.cookie).collect();
            prop_assert_eq!(cookies.len(), p.owners.len(), "cookies are unique per owner");
            for (k, state) in &p.devices {
                let owned = p.device_cookie(&k.namespace, &k.name);
                match state {
                    DeviceState::Installed { cookie } => {
                        prop_assert_eq!(owned, Some(*cookie));
                        prop_assert!(p.flows().any(|f| f.cookie == *cookie));
                    }
                    _ => prop_assert_eq!(owned, None),
                }
            }
            // Deterministic whatever the order of the input.
            let mut reversed = input.clone();
            reversed.tunnels.reverse();
            for t in &mut reversed.tunnels {
                Arc::make_mut(&mut t.devices).reverse();
            }
            reversed.workload_ports.reverse();
            prop_assert_eq!(&desired_flows(&reversed), &p);
            // Removing everything from OVS that the plan holds is exactly its flows.
            let gone = diff(&desired_flows(&FlowInput::default()), &observed_from(&p));
            prop_assert_eq!(gone.delete.len(), p.len());
        }
    }
}
