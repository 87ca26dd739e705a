//! Table tests of the agent's pure decisions: status from the view, finalizers, desired set.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;

use super::decide::decide;
use super::node::{NodeView, flow_input, ports_for_ovs};
use super::status::tunnel_port_status;
use crate::api::conditions::{READY, tunnel_reason};
use crate::api::{
    OVS_CLEANUP_FINALIZER, TunnelDevice, TunnelPort, TunnelPortSpec, TunnelType, names,
};
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
            devices: vec![TunnelDevice {
                namespace: "t1".into(),
                name: "d1".into(),
                mac_address: "52:54:00:00:00:01".into(),
                vni: 5001,
                ips: vec!["10.0.0.50".into()],
                local_vlan: None,
            }],
        },
        status: None,
    }
}

fn iface(tp: &TunnelPort) -> String {
    names::interface_name(TunnelType::Vxlan, tp.spec.remote_ip.parse().unwrap(), None)
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
    let plan = Arc::new(flows::plan(&flow_input(desired, &ovs)));
    let applied = flows_applied.then(|| plan.clone());
    NodeView {
        ovs,
        flows: SyncStatus {
            applied,
            ..SyncStatus::default()
        },
        plan: Some(plan),
        failed: None,
        ovs_unavailable: false,
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
    let first = decide("n1", Some(std::slice::from_ref(&t)), &v, now());
    assert_eq!(first.status.len(), 1);
    t.status = Some(first.status[0].1.clone());
    let later = Timestamp::from_second(1_800_000_100).unwrap();
    let again = decide("n1", Some(std::slice::from_ref(&t)), &v, later);
    assert!(again.status.is_empty(), "{:?}", again.status);
}

#[test]
fn finalizer_before_port_and_port_gone_before_release() {
    let fresh = tp("a", "n1", false, false);
    let kept = tp("b", "n1", true, false);
    let deleting = tp("c", "n1", true, false);
    let other_node = tp("d", "n2", false, false);
    let mut deleting_now = deleting.clone();
    deleting_now.metadata.deletion_timestamp = Some(Time(now()));
    let objects = vec![fresh, kept.clone(), deleting_now.clone(), other_node];

    // Before the first full list nothing is desired, so nothing can be swept.
    let blind = decide("n1", None, &NodeView::default(), now());
    assert_eq!(blind.desired, None);
    assert!(blind.add_finalizer.is_empty() && blind.release_finalizer.is_empty());

    // The deleted one's port is still in OVS: it leaves the desired set, the finalizer stays.
    let still_there = view(
        &[kept.clone(), deleting.clone()],
        Some((PortState::Ready, 5)),
        true,
    );
    let d = decide("n1", Some(&objects), &still_there, now());
    assert_eq!(
        d.add_finalizer,
        vec!["a".to_string()],
        "finalizer first, port later"
    );
    assert_eq!(
        d.desired
            .as_ref()
            .unwrap()
            .iter()
            .map(|t| t.metadata.name.clone().unwrap())
            .collect::<Vec<_>>(),
        vec!["b"]
    );
    assert!(d.release_finalizer.is_empty(), "port still in OVS");

    // Port gone but its flows still applied: keep waiting.
    let mut port_gone = view(
        std::slice::from_ref(&kept),
        Some((PortState::Ready, 5)),
        true,
    );
    port_gone.flows.applied = still_there.flows.applied.clone();
    assert!(
        decide("n1", Some(&objects), &port_gone, now())
            .release_finalizer
            .is_empty()
    );

    // Port and flows gone: release.
    let all_gone = view(
        std::slice::from_ref(&kept),
        Some((PortState::Ready, 5)),
        true,
    );
    assert_eq!(
        decide("n1", Some(&objects), &all_gone, now()).release_finalizer,
        vec!["c".to_string()]
    );

    // OVSDB unreachable: never release on a guess.
    let mut blind_ovs = all_gone.clone();
    blind_ovs.ovs.connected = false;
    assert!(
        decide("n1", Some(&objects), &blind_ovs, now())
            .release_finalizer
            .is_empty()
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

/// A TunnelPort leaving the desired set keeps its OVS port while the rules OVS holds still
/// point at it, and loses it once the flow sync confirmed a plan without them.
#[test]
fn a_leaving_tunnel_keeps_its_port_until_its_rules_are_gone() {
    let kept = tp("a", "n1", true, false);
    let leaving = tp("b", "n1", true, false);
    let both = vec![kept.clone(), leaving.clone()];
    let with_rules = view(&both, Some((PortState::Ready, 5)), true).flows;
    let without_rules = view(
        std::slice::from_ref(&kept),
        Some((PortState::Ready, 5)),
        true,
    )
    .flows;
    let names = |ports: Option<Vec<TunnelPort>>| -> Vec<String> {
        ports
            .unwrap()
            .iter()
            .map(|t| t.metadata.name.clone().unwrap())
            .collect()
    };
    let mut pending = std::collections::BTreeMap::new();
    let previous = Some(both.clone());
    let desired = [kept.clone()];

    let now = ports_for_ovs(Some(&desired), &mut pending, &previous, &with_rules);
    assert_eq!(
        names(now.clone()),
        vec!["a", "b"],
        "rules still there: the port stays"
    );
    let later = ports_for_ovs(Some(&desired), &mut pending, &now, &without_rules);
    assert_eq!(names(later), vec!["a"], "rules gone: the port goes");
    assert!(pending.is_empty());
    assert_eq!(
        ports_for_ovs(None, &mut pending, &previous, &with_rules),
        None,
        "unknown desired set: nothing"
    );
}
