//! Table tests of the agent's pure decisions: status from the view, finalizers, desired set.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;

use super::decide::decide_writes;
use super::node::{NodeView, flow_input};
use super::status::tunnel_port_status;
use crate::api::conditions::{READY, tunnel_reason};
use crate::api::{OVS_CLEANUP_FINALIZER, TunnelDevice, TunnelPort, TunnelPortSpec, TunnelType};
use crate::flows::{self, SyncStatus};
use crate::ovs::{LocalPort, Observed, PortReport, PortState};

fn now() -> Timestamp {
    Timestamp::from_second(1_800_000_000).unwrap()
}

fn tp(name: &str, node: &str, finalizer: bool, deleting: bool) -> TunnelPort {
    TunnelPort {
        metadata: ObjectMeta {
            name: Some(name.into()),
            generation: Some(3),
            resource_version: Some("10".into()),
            finalizers: finalizer.then(|| vec![OVS_CLEANUP_FINALIZER.to_string()]),
            deletion_timestamp: deleting.then(|| Time(now())),
            ..ObjectMeta::default()
        },
        spec: TunnelPortSpec {
            node_name: node.into(),
            // One remote VTEP per name, as on a real node (one port per VTEP).
            remote_ip: format!("192.0.2.{}", name.as_bytes()[0]),
            tunnel_type: TunnelType::Vxlan,
            dst_port: None,
            local_ip: None,
            devices: Arc::new(vec![TunnelDevice {
                namespace: "t1".into(),
                name: "d1".into(),
                mac_address: "52:54:00:00:00:01".into(),
                vni: 5001,
                ips: vec!["10.0.0.50".into()],
                local_vlan: None,
            }]),
            bfd: None,
        },
        status: None,
    }
}

fn iface(tp: &TunnelPort) -> String {
    crate::api::TunnelId::of(&tp.spec).unwrap().interface_name()
}

/// A view in which the port has `state`/`ofport` and the flows for `desired` are applied
/// (or not).
fn view(desired: &[TunnelPort], port: Option<(PortState, i64)>, flows_applied: bool) -> NodeView {
    let mut ovs = Observed {
        connected: true,
        ..Observed::default()
    };
    if let Some((state, ofport)) = port {
        for tp in desired {
            ovs.ports.insert(
                tp.metadata.name.clone().unwrap(),
                PortReport {
                    interface_name: iface(tp),
                    ofport: Some(ofport),
                    state: state.clone(),
                    bfd: None,
                },
            );
        }
    }
    ovs.local_ports.push(LocalPort {
        name: "pod1".into(),
        ofport: 7,
        tag: None,
        interface_type: String::new(),
    });
    let plan = Arc::new(flows::desired_flows(&flow_input(desired, &ovs)));
    let applied = flows_applied.then(|| plan.clone());
    NodeView {
        ovs,
        flows: SyncStatus {
            applied,
            ..SyncStatus::default()
        },
        plan: Some(plan),
        active: desired
            .iter()
            .filter_map(|t| t.metadata.name.clone())
            .collect(),
        ..NodeView::default()
    }
}

fn ready_of(status: &crate::api::TunnelPortStatus) -> (String, String) {
    let c = status.conditions.iter().find(|c| c.type_ == READY).unwrap();
    (c.status.clone(), c.reason.clone())
}

#[test]
fn status_follows_what_ovs_shows() {
    let t = tp("n1.vxlan.192-0-2-10", "n1", true, false);
    let desired = [t.clone()];
    let cases: Vec<(&str, NodeView, &str, &str)> = vec![
        (
            "no port yet",
            view(&desired, None, false),
            "False",
            tunnel_reason::PENDING,
        ),
        (
            "port without ofport",
            view(&desired, Some((PortState::Pending, 0)), false),
            "False",
            tunnel_reason::PENDING,
        ),
        (
            "refused by OVS",
            view(
                &desired,
                Some((PortState::OvsError("File exists".into()), -1)),
                false,
            ),
            "False",
            tunnel_reason::OVS_ERROR,
        ),
        (
            "foreign port in the way",
            view(
                &desired,
                Some((PortState::ForeignConflict("port x".into()), 5)),
                false,
            ),
            "False",
            tunnel_reason::FOREIGN_PORT,
        ),
        (
            "ofport but rules not applied yet",
            view(&desired, Some((PortState::Ready, 5)), false),
            "False",
            tunnel_reason::PENDING,
        ),
        (
            "ofport and rules applied",
            view(&desired, Some((PortState::Ready, 5)), true),
            "True",
            tunnel_reason::READY,
        ),
        (
            "OVSDB unreachable past the grace period",
            NodeView {
                ovs: Observed {
                    connected: false,
                    last_error: Some("refused".into()),
                    ..Observed::default()
                },
                ovs_unavailable: true,
                ..NodeView::default()
            },
            "False",
            tunnel_reason::OVS_UNAVAILABLE,
        ),
        (
            "a short reconnect keeps the last known state",
            NodeView {
                ovs: Observed {
                    connected: false,
                    ..view(&desired, Some((PortState::Ready, 5)), true).ovs
                },
                ..view(&desired, Some((PortState::Ready, 5)), true)
            },
            "True",
            tunnel_reason::READY,
        ),
    ];
    for (name, v, status, reason) in cases {
        let s = tunnel_port_status(&t, &v, now());
        assert_eq!(
            ready_of(&s),
            (status.to_string(), reason.to_string()),
            "{name}"
        );
        assert_eq!(s.observed_generation, Some(3), "{name}");
        assert_eq!(
            s.message.is_some(),
            status == "False",
            "{name}: {:?}",
            s.message
        );
    }
    let refused = tunnel_port_status(
        &t,
        &view(
            &desired,
            Some((PortState::OvsError("File exists".into()), -1)),
            false,
        ),
        now(),
    );
    assert_eq!(refused.ofport, Some(-1));
    assert!(
        refused.message.unwrap().contains("File exists"),
        "OVS's own words reach the status"
    );
    let ready = tunnel_port_status(
        &t,
        &view(&desired, Some((PortState::Ready, 5)), true),
        now(),
    );
    assert_eq!(
        (ready.ofport, ready.devices, ready.interface_name),
        (Some(5), Some(1), Some(iface(&t)))
    );
}

#[test]
fn an_unchanged_situation_writes_nothing() {
    let mut t = tp("n1.vxlan.192-0-2-10", "n1", true, false);
    let v = view(std::slice::from_ref(&t), Some((PortState::Ready, 5)), true);
    let first = decide_writes("n1", Some(std::slice::from_ref(&t)), &v, now());
    assert_eq!(first.status.len(), 1);
    t.status = Some(first.status[0].1.clone());
    let later = Timestamp::from_second(1_800_000_100).unwrap();
    let again = decide_writes("n1", Some(std::slice::from_ref(&t)), &v, later);
    assert!(again.status.is_empty(), "{:?}", again.status);
}

/// A port made while its finalizer is still being added reports its status at once:
/// the finalizer and the status go in the same round.
#[test]
fn a_port_still_getting_its_finalizer_reports_its_status() {
    let fresh = tp("a", "n1", false, false);
    let mut v = view(
        std::slice::from_ref(&fresh),
        Some((PortState::Ready, 5)),
        true,
    );
    v.add_finalizer = vec!["a".into()];
    let d = decide_writes("n1", Some(std::slice::from_ref(&fresh)), &v, now());
    assert_eq!(d.add_finalizer, ["a"]);
    let status: Vec<&str> = d.status.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(status, ["a"], "{:?}", d.status);
    let ready = d.status[0].1.conditions.iter().find(|c| c.type_ == READY);
    assert_eq!(ready.map(|c| c.status.as_str()), Some("True"));
}

#[test]
fn finalizer_writes_follow_the_lifecycle_step_and_the_objects_now() {
    let fresh = tp("a", "n1", false, false);
    let kept = tp("b", "n1", true, false);
    let mut deleting = tp("c", "n1", true, false);
    deleting.metadata.deletion_timestamp = Some(Time(now()));
    let other_node = tp("d", "n2", false, false);
    let objects = vec![fresh, kept.clone(), deleting, other_node];

    // Before the first full list nothing is desired, so nothing can be swept.
    let blind = decide_writes("n1", None, &NodeView::default(), now());
    assert_eq!(blind.desired, None);
    assert!(blind.add_finalizer.is_empty() && blind.release_finalizer.is_empty());

    let mut v = view(
        std::slice::from_ref(&kept),
        Some((PortState::Ready, 5)),
        true,
    );
    v.add_finalizer = vec!["a".into(), "b".into(), "gone".into()];
    v.release_finalizer = vec!["c".into(), "b".into()];
    let d = decide_writes("n1", Some(&objects), &v, now());
    assert_eq!(
        d.desired.as_ref().map(Vec::len),
        Some(4),
        "the loop gets them all"
    );
    assert_eq!(
        d.add_finalizer,
        ["a"],
        "only where the object still lacks it"
    );
    assert_eq!(
        d.release_finalizer,
        ["c"],
        "only where it is deleted and holds it"
    );
    assert_eq!(
        d.status.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["b"],
        "status only for active ones"
    );
}

#[test]
fn flows_only_point_at_ready_tunnels_and_workload_ports_exclude_tunnels() {
    let t = tp("a", "n1", true, false);
    let iface = iface(&t);
    let mut ovs = Observed {
        connected: true,
        ..Observed::default()
    };
    ovs.ports.insert(
        "a".into(),
        PortReport {
            interface_name: iface,
            ofport: Some(9),
            state: PortState::Pending,
            bfd: None,
        },
    );
    ovs.local_ports = vec![
        LocalPort {
            name: "pod".into(),
            ofport: 3,
            tag: Some(10),
            interface_type: String::new(),
        },
        LocalPort {
            name: "foreign-vx".into(),
            ofport: 4,
            tag: None,
            interface_type: "vxlan".into(),
        },
        LocalPort {
            name: "patch".into(),
            ofport: 5,
            tag: None,
            interface_type: "patch".into(),
        },
    ];
    let input = flow_input(&[t], &ovs);
    assert_eq!(
        input.tunnels[0].ofport, -1,
        "a pending port gets no flows even if it has a number"
    );
    assert_eq!(
        input
            .workload_ports
            .iter()
            .map(|p| (p.ofport, p.vlan))
            .collect::<Vec<_>>(),
        vec![(3, Some(10))]
    );
}

#[test]
fn the_node_loop_is_not_fed_status_or_versions() {
    let view = NodeView::default();
    let with = |rv: &str, ready: bool| {
        let mut t = tp("a", "n1", true, false);
        t.metadata.resource_version = Some(rv.into());
        if ready {
            t.status = Some(tunnel_port_status(&t, &view, now()));
        }
        t
    };
    let fed = |t: TunnelPort| decide_writes("n1", Some(&[t]), &view, now()).desired;
    // The agent's own status write, echoed by the watch: the loop's input stays the same.
    assert_eq!(fed(with("10", false)), fed(with("11", true)));
    // What the loop acts on still reaches it.
    let mut deleting = with("12", true);
    deleting.metadata.deletion_timestamp = Some(Time(now()));
    assert_ne!(fed(with("10", false)), fed(deleting));
    let mut released = with("13", true);
    released.metadata.finalizers = None;
    assert_ne!(fed(with("10", false)), fed(released));
    let mut respecced = with("14", false);
    Arc::make_mut(&mut respecced.spec.devices).clear();
    assert_ne!(fed(with("10", false)), fed(respecced));
}
