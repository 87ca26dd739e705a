//! Table and property tests of the planner.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, NodeAddress, NodeStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta, Time,
};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use proptest::prelude::*;

use crate::api::TunnelType;

use super::*;
use crate::api::{RemoteDeviceSpec, TUNNEL_IP_ANNOTATION};

fn node(name: &str, ip: &str, labels: &[(&str, &str)]) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            uid: Some(format!("uid-{name}")),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..ObjectMeta::default()
        },
        status: Some(NodeStatus {
            addresses: Some(vec![NodeAddress {
                type_: "InternalIP".into(),
                address: ip.into(),
            }]),
            ..NodeStatus::default()
        }),
        ..Node::default()
    }
}

fn spec(vtep: &str, vni: u32, mac: &str) -> RemoteDeviceSpec {
    RemoteDeviceSpec {
        vtep_ip: vtep.into(),
        tunnel_type: TunnelType::Vxlan,
        vni,
        mac_address: mac.into(),
        ips: vec![],
        dst_port: None,
        local_vlan: None,
        node_selector: None,
        attachment: None,
        bfd: None,
    }
}

fn device(ns: &str, name: &str, spec: RemoteDeviceSpec) -> RemoteDevice {
    let mut d = RemoteDevice::new(name, spec);
    d.metadata.namespace = Some(ns.into());
    d
}

fn created(mut d: RemoteDevice, second: i64) -> RemoteDevice {
    d.metadata.creation_timestamp = Some(Time(Timestamp::from_second(second).unwrap()));
    d
}

fn key(ns: &str, name: &str) -> DeviceKey {
    DeviceKey {
        namespace: ns.into(),
        name: name.into(),
    }
}

/// A compact view of a plan: TunnelPort name → (node, remote, device names).
fn summary(plan: &TunnelPlan) -> Vec<(String, String, String, Vec<String>)> {
    plan.tunnel_ports
        .iter()
        .map(|tp| {
            (
                tp.metadata.name.clone().unwrap(),
                tp.spec.node_name.clone(),
                tp.spec.remote_ip.clone(),
                tp.spec
                    .devices
                    .iter()
                    .map(|d| format!("{}/{}", d.namespace, d.name))
                    .collect(),
            )
        })
        .collect()
}

fn two_nodes() -> Vec<Node> {
    vec![
        node("n1", "198.51.100.1", &[("rack", "a")]),
        node("n2", "198.51.100.2", &[("rack", "b")]),
    ]
}

#[test]
fn one_device_gives_one_tunnel_port_per_node() {
    let plan = plan_tunnels(
        &[device(
            "t1",
            "d1",
            spec("192.0.2.10", 5001, "52:54:00:00:00:01"),
        )],
        &two_nodes(),
    );
    assert_eq!(
        summary(&plan),
        vec![
            (
                "n1.vxlan.192-0-2-10".into(),
                "n1".into(),
                "192.0.2.10".into(),
                vec!["t1/d1".into()]
            ),
            (
                "n2.vxlan.192-0-2-10".into(),
                "n2".into(),
                "192.0.2.10".into(),
                vec!["t1/d1".into()]
            ),
        ]
    );
    let tp = &plan.tunnel_ports[0];
    assert_eq!(tp.spec.local_ip.as_deref(), Some("198.51.100.1"));
    assert_eq!(tp.labels().get(NODE_LABEL).map(String::as_str), Some("n1"));
    assert_eq!(
        tp.labels().get(MANAGED_BY_LABEL).map(String::as_str),
        Some(MANAGER)
    );
    let owner = &tp.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
        ("Node", "n1", "uid-n1")
    );
    assert_eq!(
        plan.devices[&key("t1", "d1")],
        DeviceOutcome::Planned {
            tunnel_ports: Arc::new(BTreeMap::from([
                ("n1".into(), "n1.vxlan.192-0-2-10".into()),
                ("n2".into(), "n2.vxlan.192-0-2-10".into())
            ])),
            self_tunnel_nodes: vec![],
        }
    );
}

#[test]
fn table() {
    struct Case {
        name: &'static str,
        devices: Vec<RemoteDevice>,
        nodes: Vec<Node>,
        ports: Vec<(&'static str, Vec<&'static str>)>,
        outcomes: Vec<(&'static str, &'static str)>,
    }
    let selector = |k: &str, v: &str| LabelSelector {
        match_labels: Some(BTreeMap::from([(k.to_string(), v.to_string())])),
        ..LabelSelector::default()
    };
    let cases = vec![
        Case {
            name: "devices behind one VTEP share the tunnel port",
            devices: vec![
                device("t1", "a", spec("192.0.2.10", 5001, "52:54:00:00:00:01")),
                device("t2", "b", spec("192.0.2.10", 5002, "52:54:00:00:00:02")),
            ],
            nodes: vec![node("n1", "198.51.100.1", &[])],
            ports: vec![("n1.vxlan.192-0-2-10", vec!["t1/a", "t2/b"])],
            outcomes: vec![("t1/a", "planned"), ("t2/b", "planned")],
        },
        Case {
            name: "type and destination port make separate tunnels",
            devices: vec![
                device("t1", "a", spec("192.0.2.10", 5001, "52:54:00:00:00:01")),
                device(
                    "t1",
                    "b",
                    RemoteDeviceSpec {
                        tunnel_type: TunnelType::Geneve,
                        ..spec("192.0.2.10", 5002, "52:54:00:00:00:02")
                    },
                ),
                device(
                    "t1",
                    "c",
                    RemoteDeviceSpec {
                        dst_port: Some(4790),
                        ..spec("192.0.2.10", 5003, "52:54:00:00:00:03")
                    },
                ),
            ],
            nodes: vec![node("n1", "198.51.100.1", &[])],
            ports: vec![
                ("n1.geneve.192-0-2-10", vec!["t1/b"]),
                ("n1.vxlan.192-0-2-10", vec!["t1/a"]),
                ("n1.vxlan.192-0-2-10.4790", vec!["t1/c"]),
            ],
            outcomes: vec![
                ("t1/a", "planned"),
                ("t1/b", "planned"),
                ("t1/c", "planned"),
            ],
        },
        Case {
            name: "the default port spelled out is the same tunnel as no port",
            devices: vec![
                device("t1", "a", spec("192.0.2.10", 5001, "52:54:00:00:00:01")),
                device(
                    "t1",
                    "b",
                    RemoteDeviceSpec {
                        dst_port: Some(4789),
                        ..spec("192.0.2.10", 5002, "52:54:00:00:00:02")
                    },
                ),
                device(
                    "t1",
                    "c",
                    RemoteDeviceSpec {
                        tunnel_type: TunnelType::Geneve,
                        dst_port: Some(6081),
                        ..spec("192.0.2.10", 5003, "52:54:00:00:00:03")
                    },
                ),
            ],
            nodes: vec![node("n1", "198.51.100.1", &[])],
            ports: vec![
                ("n1.geneve.192-0-2-10", vec!["t1/c"]),
                ("n1.vxlan.192-0-2-10", vec!["t1/a", "t1/b"]),
            ],
            outcomes: vec![
                ("t1/a", "planned"),
                ("t1/b", "planned"),
                ("t1/c", "planned"),
            ],
        },
        Case {
            name: "node selector picks nodes",
            devices: vec![device(
                "t1",
                "a",
                RemoteDeviceSpec {
                    node_selector: Some(selector("rack", "b")),
                    ..spec("192.0.2.10", 5001, "52:54:00:00:00:01")
                },
            )],
            nodes: two_nodes(),
            ports: vec![("n2.vxlan.192-0-2-10", vec!["t1/a"])],
            outcomes: vec![("t1/a", "planned")],
        },
        Case {
            name: "match expressions",
            devices: vec![device(
                "t1",
                "a",
                RemoteDeviceSpec {
                    node_selector: Some(LabelSelector {
                        match_expressions: Some(vec![LabelSelectorRequirement {
                            key: "rack".into(),
                            operator: "NotIn".into(),
                            values: Some(vec!["a".into()]),
                        }]),
                        ..LabelSelector::default()
                    }),
                    ..spec("192.0.2.10", 5001, "52:54:00:00:00:01")
                },
            )],
            nodes: two_nodes(),
            ports: vec![("n2.vxlan.192-0-2-10", vec!["t1/a"])],
            outcomes: vec![("t1/a", "planned")],
        },
        Case {
            name: "a node is never tunnelled to its own IP",
            devices: vec![device(
                "t1",
                "a",
                spec("198.51.100.1", 5001, "52:54:00:00:00:01"),
            )],
            nodes: two_nodes(),
            ports: vec![("n2.vxlan.198-51-100-1", vec!["t1/a"])],
            outcomes: vec![("t1/a", "self:n1")],
        },
        Case {
            name: "the tunnel-ip annotation wins over InternalIP",
            devices: vec![device(
                "t1",
                "a",
                spec("203.0.113.7", 5001, "52:54:00:00:00:01"),
            )],
            nodes: vec![{
                let mut n = node("n1", "198.51.100.1", &[]);
                n.metadata.annotations = Some(BTreeMap::from([(
                    TUNNEL_IP_ANNOTATION.into(),
                    "203.0.113.7".into(),
                )]));
                n
            }],
            ports: vec![],
            outcomes: vec![("t1/a", "self:n1")],
        },
        Case {
            name: "same VNI and MAC: the older device keeps it",
            devices: vec![
                created(
                    device("t2", "new", spec("192.0.2.11", 5001, "52:54:00:00:00:01")),
                    200,
                ),
                created(
                    device("t1", "old", spec("192.0.2.10", 5001, "52:54:00:00:00:01")),
                    100,
                ),
            ],
            nodes: vec![node("n1", "198.51.100.1", &[])],
            ports: vec![("n1.vxlan.192-0-2-10", vec!["t1/old"])],
            outcomes: vec![("t1/old", "planned"), ("t2/new", "conflict:t1/old")],
        },
        Case {
            name: "same MAC in two VNIs is fine",
            devices: vec![
                device("t1", "a", spec("192.0.2.10", 5001, "52:54:00:00:00:01")),
                device("t1", "b", spec("192.0.2.10", 5002, "52:54:00:00:00:01")),
            ],
            nodes: vec![node("n1", "198.51.100.1", &[])],
            ports: vec![("n1.vxlan.192-0-2-10", vec!["t1/a", "t1/b"])],
            outcomes: vec![("t1/a", "planned"), ("t1/b", "planned")],
        },
        Case {
            name: "MAC case does not hide a conflict",
            devices: vec![
                device("t1", "a", spec("192.0.2.10", 5001, "52:54:00:AA:00:01")),
                device("t1", "b", spec("192.0.2.10", 5001, "52:54:00:aa:00:01")),
            ],
            nodes: vec![node("n1", "198.51.100.1", &[])],
            ports: vec![("n1.vxlan.192-0-2-10", vec!["t1/a"])],
            outcomes: vec![("t1/a", "planned"), ("t1/b", "conflict:t1/a")],
        },
        Case {
            name: "one VNI on two local VLANs",
            devices: vec![
                device(
                    "t1",
                    "a",
                    RemoteDeviceSpec {
                        local_vlan: Some(10),
                        ..spec("192.0.2.10", 5001, "52:54:00:00:00:01")
                    },
                ),
                device(
                    "t1",
                    "b",
                    RemoteDeviceSpec {
                        local_vlan: Some(20),
                        ..spec("192.0.2.10", 5001, "52:54:00:00:00:02")
                    },
                ),
                device("t1", "c", spec("192.0.2.10", 5001, "52:54:00:00:00:03")),
            ],
            nodes: vec![node("n1", "198.51.100.1", &[])],
            ports: vec![("n1.vxlan.192-0-2-10", vec!["t1/a"])],
            outcomes: vec![
                ("t1/a", "planned"),
                ("t1/b", "conflict:t1/a"),
                ("t1/c", "conflict:t1/a"),
            ],
        },
        Case {
            name: "invalid devices are excluded and reported",
            devices: vec![
                device("t1", "bad", spec("127.0.0.1", 0, "ff:ff:ff:ff:ff:ff")),
                device("t1", "good", spec("192.0.2.10", 5001, "52:54:00:00:00:01")),
            ],
            nodes: vec![node("n1", "198.51.100.1", &[])],
            ports: vec![("n1.vxlan.192-0-2-10", vec!["t1/good"])],
            outcomes: vec![
                ("t1/bad", "invalid:spec.vtepIP,spec.vni,spec.macAddress"),
                ("t1/good", "planned"),
            ],
        },
        Case {
            name: "IPv6 VTEP spelled two ways is one tunnel; local IP of the same family",
            devices: vec![
                device("t1", "a", spec("2001:DB8::5", 5001, "52:54:00:00:00:01")),
                device("t1", "b", spec("2001:db8:0::5", 5002, "52:54:00:00:00:02")),
            ],
            nodes: vec![node("n1", "198.51.100.1", &[])],
            ports: vec![("n1.vxlan.2001-db8-0-0-0-0-0-5", vec!["t1/a", "t1/b"])],
            outcomes: vec![("t1/a", "planned"), ("t1/b", "planned")],
        },
        Case {
            name: "no nodes, no ports",
            devices: vec![device(
                "t1",
                "a",
                spec("192.0.2.10", 5001, "52:54:00:00:00:01"),
            )],
            nodes: vec![],
            ports: vec![],
            outcomes: vec![("t1/a", "planned")],
        },
    ];
    for case in cases {
        let plan = plan_tunnels(&case.devices, &case.nodes);
        let got_ports: Vec<(String, Vec<String>)> = summary(&plan)
            .into_iter()
            .map(|(n, _, _, d)| (n, d))
            .collect();
        let want_ports: Vec<(String, Vec<String>)> = case
            .ports
            .iter()
            .map(|(n, d)| (n.to_string(), d.iter().map(|s| s.to_string()).collect()))
            .collect();
        assert_eq!(got_ports, want_ports, "{}: ports", case.name);
        let got: Vec<(String, String)> = plan
            .devices
            .iter()
            .map(|(k, o)| {
                let o = match o {
                    DeviceOutcome::Planned {
                        self_tunnel_nodes, ..
                    } if self_tunnel_nodes.is_empty() => "planned".into(),
                    DeviceOutcome::Planned {
                        self_tunnel_nodes, ..
                    } => format!("self:{}", self_tunnel_nodes.join(",")),
                    DeviceOutcome::Invalid(errors) => {
                        format!(
                            "invalid:{}",
                            errors
                                .iter()
                                .map(|e| e.field.as_str())
                                .collect::<Vec<_>>()
                                .join(",")
                        )
                    }
                    DeviceOutcome::Conflict { with, .. } => {
                        format!(
                            "conflict:{}",
                            with.as_ref().map(ToString::to_string).unwrap_or_default()
                        )
                    }
                };
                (k.to_string(), o)
            })
            .collect();
        let want: Vec<(String, String)> = case
            .outcomes
            .iter()
            .map(|(k, o)| (k.to_string(), o.to_string()))
            .collect();
        assert_eq!(got, want, "{}: outcomes", case.name);
    }
}

#[test]
fn a_sitting_holder_keeps_its_claim_against_an_older_or_same_aged_newcomer() {
    let nodes = [node("n1", "198.51.100.1", &[])];
    let holder = device(
        "t2",
        "z-holder",
        spec("192.0.2.10", 5001, "52:54:00:00:00:01"),
    );
    let before = plan_tunnels(std::slice::from_ref(&holder), &nodes);
    // The newcomer sorts first by name and has no creation time either.
    let newcomer = device(
        "t1",
        "a-newcomer",
        spec("192.0.2.11", 5001, "52:54:00:00:00:01"),
    );
    let after = plan_tunnels_keeping(&[holder, newcomer], &nodes, &before.tunnel_ports);
    assert_eq!(after.tunnel_ports, before.tunnel_ports);
    assert!(matches!(
        after.devices[&key("t1", "a-newcomer")],
        DeviceOutcome::Conflict { .. }
    ));
}

#[test]
fn ipv6_vtep_gets_ipv6_local_ip_from_dual_stack_annotation() {
    let mut n = node("n1", "198.51.100.1", &[]);
    n.metadata.annotations = Some(BTreeMap::from([(
        TUNNEL_IP_ANNOTATION.into(),
        "198.51.100.1, 2001:db8:1::1".into(),
    )]));
    let plan = plan_tunnels(
        &[device(
            "t1",
            "a",
            spec("2001:db8::5", 5001, "52:54:00:00:00:01"),
        )],
        &[n],
    );
    assert_eq!(
        plan.tunnel_ports[0].spec.local_ip.as_deref(),
        Some("2001:db8:1::1")
    );
}

#[test]
fn bad_annotation_is_reported_and_internal_ip_used() {
    let mut n = node("n1", "198.51.100.1", &[]);
    n.metadata.annotations = Some(BTreeMap::from([(
        TUNNEL_IP_ANNOTATION.into(),
        "not-an-ip".into(),
    )]));
    let plan = plan_tunnels(
        &[device(
            "t1",
            "a",
            spec("198.51.100.1", 5001, "52:54:00:00:00:01"),
        )],
        &[n],
    );
    assert_eq!(plan.node_issues.len(), 1);
    assert!(
        plan.node_issues[0].message.contains("not-an-ip"),
        "{:?}",
        plan.node_issues
    );
    assert!(
        plan.tunnel_ports.is_empty(),
        "InternalIP is still the node's own address"
    );
}

#[test]
fn deleting_objects_are_left_out() {
    let mut gone = device("t1", "gone", spec("192.0.2.10", 5001, "52:54:00:00:00:01"));
    gone.metadata.deletion_timestamp = Some(Time(Timestamp::from_second(1).unwrap()));
    let mut dying = node("n2", "198.51.100.2", &[]);
    dying.metadata.deletion_timestamp = Some(Time(Timestamp::from_second(1).unwrap()));
    let plan = plan_tunnels(
        &[
            gone,
            device("t1", "kept", spec("192.0.2.11", 5002, "52:54:00:00:00:02")),
        ],
        &[node("n1", "198.51.100.1", &[]), dying],
    );
    assert_eq!(
        summary(&plan).into_iter().map(|s| s.0).collect::<Vec<_>>(),
        vec!["n1.vxlan.192-0-2-11"]
    );
}

#[test]
fn too_many_devices_behind_one_vtep_are_refused_not_dropped_silently() {
    let devices: Vec<RemoteDevice> = (0..=MAX_DEVICES_PER_TUNNEL as u32)
        .map(|i| {
            device(
                "t1",
                &format!("d{i:05}"),
                spec("192.0.2.10", 1 + i, "52:54:00:00:00:01"),
            )
        })
        .collect();
    let plan = plan_tunnels(&devices, &[node("n1", "198.51.100.1", &[])]);
    assert_eq!(
        plan.tunnel_ports[0].spec.devices.len(),
        MAX_DEVICES_PER_TUNNEL
    );
    let refused: Vec<_> = plan
        .devices
        .values()
        .filter(|o| matches!(o, DeviceOutcome::Conflict { .. }))
        .collect();
    assert_eq!(refused.len(), 1);
}

// ---- properties -----------------------------------------------------------------------

/// Devices drawn from small pools so that they share VTEPs, VNIs, MACs and selectors.
fn arb_device() -> impl Strategy<Value = (u8, u8, u8, u8, u8, Option<u8>, bool)> {
    (
        0u8..4,
        0u8..3,
        0u8..4,
        0u8..6,
        0u8..3,
        proptest::option::of(0u8..2),
        any::<bool>(),
    )
}

fn build(
    index: usize,
    (vtep, ttype, vni, mac, ns, selector, vlan): (u8, u8, u8, u8, u8, Option<u8>, bool),
    unique_macs: bool,
) -> RemoteDevice {
    let tunnel_type = [TunnelType::Vxlan, TunnelType::Geneve, TunnelType::Gre][ttype as usize];
    let vni = 5000 + u32::from(vni);
    let mac = if unique_macs { index as u8 } else { mac };
    let spec = RemoteDeviceSpec {
        vtep_ip: ["192.0.2.10", "192.0.2.11", "2001:db8::1", "198.51.100.1"][vtep as usize].into(),
        tunnel_type,
        vni,
        mac_address: format!("52:54:00:00:{:02x}:{mac:02x}", index >> 8),
        ips: vec![],
        dst_port: None,
        // With unique MACs the VLAN is a function of the VNI, so no device conflicts.
        local_vlan: if unique_macs {
            Some((vni % 2) as u16)
        } else {
            vlan.then_some(7)
        },
        attachment: None,
        bfd: None,
        node_selector: selector.map(|r| LabelSelector {
            match_labels: Some(BTreeMap::from([(
                "rack".to_string(),
                ["a", "b"][r as usize].to_string(),
            )])),
            ..LabelSelector::default()
        }),
    };
    let d = device(&format!("t{ns}"), &format!("d{index}"), spec);
    created(d, index as i64)
}

fn nodes3() -> Vec<Node> {
    vec![
        node("n1", "198.51.100.1", &[("rack", "a")]),
        node("n2", "198.51.100.2", &[("rack", "b")]),
        node("n3", "198.51.100.3", &[("rack", "a")]),
    ]
}

/// Every TunnelPort of `before` is still in `after`, with at least the same devices.
fn nothing_removed(before: &TunnelPlan, after: &TunnelPlan) -> Result<(), TestCaseError> {
    for tp in &before.tunnel_ports {
        let now = after
            .tunnel_ports
            .iter()
            .find(|t| t.metadata.name == tp.metadata.name);
        prop_assert!(now.is_some(), "{:?} vanished", tp.metadata.name);
        for d in tp.spec.devices.iter() {
            let kept = now.is_some_and(|n| n.spec.devices.contains(d));
            prop_assert!(
                kept,
                "{}/{} left {:?}",
                d.namespace,
                d.name,
                tp.metadata.name
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_input_order_gives_the_same_plan(raw in proptest::collection::vec(arb_device(), 0..12), seed in any::<u64>()) {
        let devices: Vec<RemoteDevice> = raw.into_iter().enumerate().map(|(i, r)| build(i, r, false)).collect();
        let mut shuffled = devices.clone();
        // A deterministic shuffle driven by the seed.
        let mut s = seed;
        for i in (1..shuffled.len()).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            shuffled.swap(i, (s >> 33) as usize % (i + 1));
        }
        let mut nodes = nodes3();
        nodes.reverse();
        prop_assert_eq!(plan_tunnels(&devices, &nodes3()), plan_tunnels(&shuffled, &nodes));
    }

    #[test]
    fn removing_the_last_device_behind_a_vtep_removes_exactly_its_tunnel_ports(
        raw in proptest::collection::vec(arb_device(), 1..12),
        pick in any::<prop::sample::Index>(),
    ) {
        let devices: Vec<RemoteDevice> = raw.into_iter().enumerate().map(|(i, r)| build(i, r, true)).collect();
        let before = plan_tunnels(&devices, &nodes3());
        let victim = pick.get(&devices);
        let vtep = victim.spec.vtep_ip.clone();
        let kept: Vec<RemoteDevice> = devices.iter().filter(|d| d.spec.vtep_ip != vtep).cloned().collect();
        let after = plan_tunnels(&kept, &nodes3());
        let expected: Vec<Arc<TunnelPort>> = before
            .tunnel_ports
            .iter()
            .filter(|tp| validate::parse_ip(&tp.spec.remote_ip).ok() != validate::parse_ip(&vtep).ok())
            .cloned()
            .collect();
        prop_assert_eq!(after.tunnel_ports, expected);
    }

    #[test]
    fn adding_a_device_never_removes_one_even_without_creation_times(
        raw in proptest::collection::vec(arb_device(), 0..12),
        extra in arb_device(),
        position in any::<prop::sample::Index>(),
    ) {
        let undated = |mut d: RemoteDevice| { d.metadata.creation_timestamp = None; d };
        let devices: Vec<RemoteDevice> = raw.into_iter().enumerate().map(|(i, r)| undated(build(i, r, false))).collect();
        let before = plan_tunnels(&devices, &nodes3());
        let mut more = devices.clone();
        more.insert(position.index(devices.len() + 1), undated(build(devices.len(), extra, false)));
        let after = plan_tunnels_keeping(&more, &nodes3(), &before.tunnel_ports);
        nothing_removed(&before, &after)?;
    }

    #[test]
    fn adding_a_device_never_removes_one(
        raw in proptest::collection::vec(arb_device(), 0..12),
        extra in arb_device(),
    ) {
        let devices: Vec<RemoteDevice> = raw.into_iter().enumerate().map(|(i, r)| build(i, r, false)).collect();
        let before = plan_tunnels(&devices, &nodes3());
        let mut more = devices.clone();
        // A new object is always the newest one.
        more.push(build(devices.len(), extra, false));
        let after = plan_tunnels(&more, &nodes3());
        nothing_removed(&before, &after)?;
    }
}

/// BFD of each planned TunnelPort from the devices it carries: on when any asks for it
/// (explicitly, or by default with an attachment), with the fastest timers of those that do.
#[test]
fn a_tunnel_port_runs_bfd_when_a_device_it_carries_asks_for_it() {
    use crate::api::{DeviceBfd, GatewayAttachment, TunnelBfd};
    let bfd = |enabled: Option<bool>, rx: Option<u32>, tx: Option<u32>| {
        Some(DeviceBfd {
            enabled,
            min_rx_ms: rx,
            min_tx_ms: tx,
        })
    };
    let on = |rx, tx| {
        Some(TunnelBfd {
            min_rx_ms: rx,
            min_tx_ms: tx,
        })
    };
    let attached = || {
        Some(GatewayAttachment {
            port: "eth1".into(),
            vlan: None,
        })
    };
    // Per case: devices behind 192.0.2.10 as (bfd, attachment) → the TunnelPort's bfd.
    type Case = (
        Vec<(Option<DeviceBfd>, Option<GatewayAttachment>)>,
        Option<TunnelBfd>,
    );
    let cases: Vec<Case> = vec![
        (vec![(None, None)], None),
        (vec![(bfd(Some(false), Some(100), None), None)], None),
        (vec![(None, attached())], on(1000, 1000)),
        (vec![(bfd(Some(false), None, None), attached())], None),
        (vec![(bfd(Some(true), None, None), None)], on(1000, 1000)),
        // One device with BFD turns it on for the tunnel it shares with others.
        (
            vec![(None, None), (bfd(Some(true), Some(300), None), None)],
            on(300, 1000),
        ),
        // The fastest of each timer, from the devices that run BFD only.
        (
            vec![
                (bfd(Some(true), Some(300), Some(2000)), None),
                (bfd(None, Some(500), Some(200)), attached()),
                (bfd(Some(false), Some(100), Some(100)), None),
            ],
            on(300, 200),
        ),
    ];
    for (i, (devices, want)) in cases.into_iter().enumerate() {
        let devices: Vec<RemoteDevice> = devices
            .into_iter()
            .enumerate()
            .map(|(j, (bfd, attachment))| {
                let mut s = spec("192.0.2.10", 5001, &format!("52:54:00:00:00:{:02x}", j + 1));
                s.bfd = bfd;
                s.attachment = attachment;
                device("t1", &format!("d{j}"), s)
            })
            .collect();
        let plan = plan_tunnels(&devices, &two_nodes());
        assert_eq!(plan.tunnel_ports.len(), 2, "case {i}: {:?}", plan.devices);
        for tp in &plan.tunnel_ports {
            assert_eq!(tp.spec.bfd, want, "case {i}: {}", tp.name_any());
        }
    }
}

/// Devices group by tunnel and selector: one group per distinct pair, whatever the input
/// order, and nothing else splits or merges them.
#[test]
fn devices_group_by_tunnel_and_selector() {
    let with_selector = |mut d: RemoteDevice, rack: Option<&str>| {
        d.spec.node_selector = rack.map(|r| LabelSelector {
            match_labels: Some(BTreeMap::from([("rack".to_string(), r.to_string())])),
            ..LabelSelector::default()
        });
        d
    };
    let dev = |name: &str, vtep: &str, vni: u32, rack: Option<&str>| {
        let mac = format!("52:54:00:00:00:{vni:02x}");
        with_selector(device("t", name, spec(vtep, vni, &mac)), rack)
    };
    // (case, devices, expected groups as member names in (tunnel, selector) order)
    type Case<'a> = (&'a str, Vec<RemoteDevice>, Vec<Vec<&'a str>>);
    let cases: Vec<Case<'_>> = vec![
        ("nothing", vec![], vec![]),
        (
            "same VTEP, no selector: one group",
            vec![
                dev("a", "192.0.2.10", 1, None),
                dev("b", "192.0.2.10", 2, None),
            ],
            vec![vec!["a", "b"]],
        ),
        (
            "another VTEP: another group",
            vec![
                dev("a", "192.0.2.10", 1, None),
                dev("b", "192.0.2.11", 2, None),
            ],
            vec![vec!["a"], vec!["b"]],
        ),
        (
            "same VTEP, selectors split and equal selectors join",
            vec![
                dev("a", "192.0.2.10", 1, Some("r1")),
                dev("b", "192.0.2.10", 2, None),
                dev("c", "192.0.2.10", 3, Some("r1")),
                dev("d", "192.0.2.10", 4, Some("r2")),
            ],
            vec![vec!["b"], vec!["a", "c"], vec!["d"]],
        ),
    ];
    for (case, devices, want) in cases {
        for reversed in [false, true] {
            let mut input: Vec<&RemoteDevice> = devices.iter().collect();
            if reversed {
                input.reverse();
            }
            let accepted = accept(&input, &mut BTreeMap::new());
            let got: Vec<Vec<&str>> = group(&accepted)
                .iter()
                .map(|g| {
                    let mut names: Vec<&str> =
                        g.members.iter().map(|d| d.key.name.as_str()).collect();
                    names.sort();
                    names
                })
                .collect();
            assert_eq!(got, want, "{case} (reversed: {reversed})");
        }
    }
}

/// The nodes of [`nodes3`] in one of six states: as they are, n2 moved to rack a, n3
/// gone, n2 on the tunnel IP of a VTEP the devices use, n2 recreated (new UID), n4 added.
fn nodes_variant(variant: u8) -> Vec<Node> {
    let mut nodes = nodes3();
    match variant {
        1 => nodes[1] = node("n2", "198.51.100.2", &[("rack", "a")]),
        2 => drop(nodes.pop()),
        3 => nodes[1] = node("n2", "192.0.2.10", &[("rack", "b")]),
        4 => nodes[1].metadata.uid = Some("uid-n2-again".into()),
        5 => nodes.push(node("n4", "198.51.100.4", &[("rack", "b")])),
        _ => {}
    }
    nodes
}

/// One edit between two passes of [`a_planner_kept_across_passes_plans_what_a_fresh_one_does`].
#[derive(Clone, Debug)]
enum Edit {
    /// A new device (new name) in place of one, or added when there is none.
    Replace(DeviceParts),
    Remove,
    /// The same object asks for no BFD (0), the default BFD (1) or faster BFD (2).
    Bfd(u8),
    /// The same object with the selector of these parts.
    Selector(DeviceParts),
    /// The same object (same key, same BFD) with the rest of the spec from these parts:
    /// VTEP, tunnel type, VNI, MAC, VLAN, selector.
    Spec(DeviceParts),
    /// The same object with one more IP.
    AddIp(u8),
}

type DeviceParts = (u8, u8, u8, u8, u8, Option<u8>, bool);

fn arb_edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        arb_device().prop_map(Edit::Replace),
        Just(Edit::Remove),
        (0u8..3).prop_map(Edit::Bfd),
        arb_device().prop_map(Edit::Selector),
        arb_device().prop_map(Edit::Spec),
        any::<u8>().prop_map(Edit::AddIp),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_planner_kept_across_passes_plans_what_a_fresh_one_does(
        raw in proptest::collection::vec(arb_device(), 0..10),
        steps in proptest::collection::vec(
            (any::<prop::sample::Index>(), arb_edit(), 0u8..6, any::<bool>()),
            1..10,
        ),
    ) {
        let mut devices: Vec<RemoteDevice> =
            raw.into_iter().enumerate().map(|(i, r)| build(i, r, false)).collect();
        let bfd = |ask: u8| (ask > 0).then(|| crate::api::DeviceBfd {
            enabled: Some(true),
            min_rx_ms: (ask == 2).then_some(300),
            ..Default::default()
        });
        let mut kept = Planner::default();
        let mut stored: Vec<Arc<TunnelPort>> = Vec::new();
        for (n, (at, edit, variant, written)) in steps.into_iter().enumerate() {
            let i = (!devices.is_empty()).then(|| at.index(devices.len()));
            match (edit, i) {
                (Edit::Replace(r), None) => devices.push(build(100 + n, r, false)),
                (Edit::Replace(r), Some(i)) => devices[i] = build(100 + n, r, false),
                (Edit::Remove, Some(i)) => drop(devices.remove(i)),
                (Edit::Bfd(ask), Some(i)) => devices[i].spec.bfd = bfd(ask),
                (Edit::Selector(r), Some(i)) => {
                    devices[i].spec.node_selector = build(0, r, false).spec.node_selector;
                }
                (Edit::Spec(r), Some(i)) => {
                    let bfd = devices[i].spec.bfd.take();
                    devices[i].spec = RemoteDeviceSpec { bfd, ..build(0, r, false).spec };
                }
                (Edit::AddIp(last), Some(i)) => devices[i].spec.ips.push(format!("203.0.113.{last}")),
                (_, None) => {}
            }
            let nodes = nodes_variant(variant);
            let incremental = kept.plan(&devices, &nodes, &stored);
            let fresh = plan_tunnels_keeping(&devices, &nodes, &stored);
            prop_assert_eq!(&incremental, &fresh, "step {}", n);
            // The writes went through, or the pass's writes failed and the store is old.
            if written {
                stored = incremental.tunnel_ports;
            }
        }
    }
}

#[test]
fn a_kept_planner_rebuilds_only_the_tunnel_whose_devices_changed() {
    let nodes = nodes3();
    let a = device("t1", "a", spec("192.0.2.10", 5001, "52:54:00:00:00:01"));
    let b = device("t1", "b", spec("192.0.2.11", 5002, "52:54:00:00:00:02"));
    let mut planner = Planner::default();
    let before = planner.plan(&[a.clone(), b.clone()], &nodes, &[] as &[TunnelPort]);
    let mut b2 = b.clone();
    b2.spec.ips = vec!["198.51.100.20".into()];
    let after = planner.plan(&[a.clone(), b2], &nodes, &before.tunnel_ports);
    assert_eq!(after.tunnel_ports.len(), 6);
    for (old, new) in before.tunnel_ports.iter().zip(&after.tunnel_ports) {
        let same = Arc::ptr_eq(old, new);
        let to_a = new.spec.remote_ip == "192.0.2.10";
        assert_eq!(same, to_a, "{:?}: kept {same}", new.metadata.name);
    }
    // The nodes changed: every tunnel is placed again.
    let moved = nodes_variant(1);
    let again = planner.plan(&[a, b], &moved, &after.tunnel_ports);
    assert!(
        again
            .tunnel_ports
            .iter()
            .all(|p| !after.tunnel_ports.iter().any(|q| Arc::ptr_eq(p, q)))
    );
}
