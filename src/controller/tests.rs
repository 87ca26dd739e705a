//! Tables for the pure decisions: one scenario per reconcile path.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, NodeAddress, NodeStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;

use super::reconcile::{Action, PassDecisions, Snapshot, decide, event_reason, needs_apply};
use super::status::SELF_TUNNEL_NOTE;
use crate::api::conditions::{READY, device_reason, tunnel_reason};
use crate::api::{
    DeviceKey, MANAGED_BY_LABEL, MANAGER, OVS_CLEANUP_FINALIZER, RemoteDevice, RemoteDeviceSpec,
    RemoteDeviceStatus, TunnelPort, TunnelPortStatus, TunnelType,
};
use crate::telemetry::TunnelPortState;

pub(crate) fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(seconds).unwrap()
}

pub(crate) fn node(name: &str, ip: &str) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            uid: Some(format!("uid-{name}")),
            labels: Some(BTreeMap::from([("rack".to_string(), "r1".to_string())])),
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

pub(crate) fn device(ns: &str, name: &str, vtep: &str, vni: u32, mac: &str) -> RemoteDevice {
    let mut d = RemoteDevice::new(
        name,
        RemoteDeviceSpec {
            vtep_ip: vtep.into(),
            tunnel_type: TunnelType::Vxlan,
            vni,
            mac_address: mac.into(),
            ips: vec!["10.0.0.50".into()],
            dst_port: None,
            local_vlan: None,
            node_selector: None,
            attachment: None,
            bfd: None,
        },
    );
    d.metadata.namespace = Some(ns.into());
    d.metadata.uid = Some(format!("uid-{ns}-{name}"));
    d.metadata.generation = Some(1);
    d.metadata.creation_timestamp = Some(Time(at(1000 + i64::from(vni))));
    d
}

/// What the API server returns for an applied desired object: server fields filled in,
/// plus a finalizer and a label of someone else.
pub(crate) fn stored(desired: &TunnelPort) -> TunnelPort {
    let mut tp = desired.clone();
    let name = tp.metadata.name.clone().unwrap();
    tp.metadata.uid = Some(format!("uid-{name}"));
    tp.metadata.resource_version = Some("7".into());
    tp.metadata.generation = Some(1);
    tp.metadata.finalizers = Some(vec![OVS_CLEANUP_FINALIZER.into()]);
    tp.metadata
        .labels
        .get_or_insert_default()
        .insert("team".into(), "net".into());
    tp
}

pub(crate) fn with_ready(mut tp: TunnelPort, ok: bool, reason: &str, message: &str) -> TunnelPort {
    tp.status = Some(TunnelPortStatus {
        observed_generation: tp.metadata.generation,
        conditions: vec![Condition {
            type_: READY.into(),
            status: if ok { "True" } else { "False" }.into(),
            reason: reason.into(),
            message: message.into(),
            observed_generation: tp.metadata.generation,
            last_transition_time: Time(at(5)),
        }],
        ofport: Some(if ok { 1 } else { -1 }),
        ..TunnelPortStatus::default()
    });
    tp
}

fn applies(d: &PassDecisions) -> Vec<(String, bool)> {
    d.actions
        .iter()
        .filter_map(|a| match a {
            Action::Apply { port, create } => Some((port.metadata.name.clone().unwrap(), *create)),
            _ => None,
        })
        .collect()
}

fn deletes(d: &PassDecisions) -> Vec<String> {
    d.actions
        .iter()
        .filter_map(|a| match a {
            Action::Delete { name, .. } => Some(name.clone()),
            _ => None,
        })
        .collect()
}

fn releases(d: &PassDecisions) -> Vec<String> {
    d.actions
        .iter()
        .filter_map(|a| match a {
            Action::ReleaseFinalizer { name, .. } => Some(name.clone()),
            _ => None,
        })
        .collect()
}

/// (device, status, event reasons) of every status write.
fn statuses(d: &PassDecisions) -> Vec<(String, RemoteDeviceStatus, Vec<&'static str>)> {
    d.actions
        .iter()
        .filter_map(|a| match a {
            Action::DeviceStatus {
                key,
                status,
                events,
                ..
            } => Some((
                key.to_string(),
                status.clone(),
                events.iter().map(|e| e.reason).collect(),
            )),
            _ => None,
        })
        .collect()
}

fn ready_of(status: &RemoteDeviceStatus) -> (&str, &str, &str) {
    let c = status.conditions.iter().find(|c| c.type_ == READY).unwrap();
    (c.status.as_str(), c.reason.as_str(), c.message.as_str())
}

/// Stores every status and TunnelPort `d` writes into `snap`, as a server would.
pub(crate) fn settle(snap: &mut Snapshot, d: &PassDecisions) {
    for action in &d.actions {
        match action {
            Action::Apply { port, .. } => {
                let name = port.metadata.name.clone();
                snap.tunnel_ports.retain(|t| t.metadata.name != name);
                snap.tunnel_ports.push(stored(port));
            }
            Action::Delete { name, .. } => snap
                .tunnel_ports
                .retain(|t| t.metadata.name.as_ref() != Some(name)),
            Action::ReleaseFinalizer { name, keep, .. } => {
                for t in &mut snap.tunnel_ports {
                    if t.metadata.name.as_ref() == Some(name) {
                        t.metadata.finalizers = Some(keep.clone());
                    }
                }
            }
            Action::DeviceStatus { key, status, .. } => {
                for dev in &mut snap.devices {
                    if DeviceKey::of(dev) == *key {
                        dev.status = Some(status.clone());
                    }
                }
            }
        }
    }
}

fn two_nodes_one_device() -> Snapshot {
    Snapshot {
        devices: vec![device("t1", "srv", "192.0.2.10", 5001, "52:54:00:00:00:01")],
        nodes: vec![node("n1", "10.1.0.1"), node("n2", "10.1.0.2")],
        tunnel_ports: vec![],
    }
}

#[test]
fn first_pass_creates_every_tunnel_port_and_reports_pending() {
    let snap = two_nodes_one_device();
    let d = decide(&snap, at(100));
    assert_eq!(
        applies(&d),
        vec![
            ("n1.vxlan.192-0-2-10".to_string(), true),
            ("n2.vxlan.192-0-2-10".to_string(), true)
        ]
    );
    assert!(deletes(&d).is_empty() && releases(&d).is_empty());
    let st = statuses(&d);
    assert_eq!(st.len(), 1);
    let (key, status, events) = &st[0];
    assert_eq!(key, "t1/srv");
    assert_eq!((status.ready_nodes, status.total_nodes), (0, 2));
    assert_eq!(status.ready.as_deref(), Some("0/2"));
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(
        ready_of(status),
        (
            "False",
            device_reason::PENDING,
            "0/2 nodes ready; waiting for n1, n2."
        )
    );
    assert!(events.is_empty());
    // Order: applies before statuses.
    assert!(matches!(
        d.actions.last(),
        Some(Action::DeviceStatus { .. })
    ));
}

#[test]
fn applies_share_the_planned_objects() {
    let snap = two_nodes_one_device();
    let plan = crate::planner::plan_tunnels_keeping(&snap.devices, &snap.nodes, &snap.tunnel_ports);
    let d = super::reconcile::decide_with_plan(&snap, &plan, at(100));
    let applied: Vec<&Arc<TunnelPort>> = d
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Apply { port, .. } => Some(port),
            _ => None,
        })
        .collect();
    assert_eq!(applied.len(), plan.tunnel_ports.len());
    // No copies: a first pass applies every desired port.
    for port in applied {
        assert!(plan.tunnel_ports.iter().any(|p| Arc::ptr_eq(p, port)));
    }
}

#[test]
fn resync_with_nothing_new_decides_nothing() {
    let mut snap = two_nodes_one_device();
    let first = decide(&snap, at(100));
    settle(&mut snap, &first);
    let again = decide(&snap, at(200));
    assert_eq!(again.actions, vec![], "a no-op resync must not write");
    assert_eq!(
        again.tunnel_port_states,
        vec![(TunnelPortState::Pending, 2)]
    );
}

#[test]
fn ready_when_every_node_reports_ready_and_transition_time_moves_once() {
    let mut snap = two_nodes_one_device();
    let first = decide(&snap, at(100));
    settle(&mut snap, &first);
    // n1 ready: still pending, same lastTransitionTime (status False → False).
    snap.tunnel_ports[0] = with_ready(snap.tunnel_ports[0].clone(), true, tunnel_reason::READY, "");
    let d = decide(&snap, at(200));
    let (_, status, _) = &statuses(&d)[0];
    assert_eq!(ready_of(status).2, "1/2 nodes ready; waiting for n2.");
    assert_eq!(status.conditions[0].last_transition_time, Time(at(100)));
    settle(&mut snap, &d);
    for i in 0..2 {
        snap.tunnel_ports[i] =
            with_ready(snap.tunnel_ports[i].clone(), true, tunnel_reason::READY, "");
    }
    let d = decide(&snap, at(300));
    let (_, status, _) = &statuses(&d)[0];
    assert_eq!(
        ready_of(status),
        ("True", device_reason::READY, "2/2 nodes ready.")
    );
    assert_eq!(status.conditions[0].last_transition_time, Time(at(300)));
    assert_eq!(d.tunnel_port_states, vec![(TunnelPortState::Ready, 2)]);
    settle(&mut snap, &d);
    assert!(decide(&snap, at(400)).actions.is_empty());
}

#[test]
fn a_ready_port_with_an_old_device_entry_is_not_counted() {
    let mut snap = two_nodes_one_device();
    let first = decide(&snap, at(100));
    settle(&mut snap, &first);
    for i in 0..2 {
        snap.tunnel_ports[i] =
            with_ready(snap.tunnel_ports[i].clone(), true, tunnel_reason::READY, "");
    }
    // The device's MAC changes; the stored ports still carry the old one.
    snap.devices[0].spec.mac_address = "52:54:00:00:00:99".into();
    snap.devices[0].metadata.generation = Some(2);
    let d = decide(&snap, at(200));
    assert_eq!(applies(&d).len(), 2, "both ports get the new entry");
    let (_, status, _) = &statuses(&d)[0];
    assert_eq!((status.ready_nodes, status.total_nodes), (0, 2));
    assert_eq!(status.observed_generation, Some(2));
    assert_eq!(applies(&d).iter().filter(|(_, create)| *create).count(), 0);
}

#[test]
fn tunnel_failed_names_the_node_and_what_ovs_said() {
    let mut snap = two_nodes_one_device();
    let first = decide(&snap, at(100));
    settle(&mut snap, &first);
    snap.tunnel_ports[0] = with_ready(snap.tunnel_ports[0].clone(), true, tunnel_reason::READY, "");
    snap.tunnel_ports[1] = with_ready(
        snap.tunnel_ports[1].clone(),
        false,
        tunnel_reason::OVS_ERROR,
        "could not add network device",
    );
    let d = decide(&snap, at(200));
    let (_, status, _) = &statuses(&d)[0];
    assert_eq!(
        ready_of(status),
        (
            "False",
            device_reason::TUNNEL_FAILED,
            "1/2 nodes ready; OVS refused the tunnel on n2 (could not add network device)."
        )
    );
    assert_eq!(
        d.tunnel_port_states,
        vec![(TunnelPortState::Ready, 1), (TunnelPortState::Failed, 1)]
    );
}

#[test]
fn last_device_gone_deletes_its_tunnel_ports_only() {
    let mut snap = two_nodes_one_device();
    snap.devices.push(device(
        "t2",
        "other",
        "192.0.2.20",
        6001,
        "52:54:00:00:00:02",
    ));
    let first = decide(&snap, at(100));
    settle(&mut snap, &first);
    assert_eq!(snap.tunnel_ports.len(), 4);
    // An unmanaged TunnelPort (someone else's) must never be touched.
    let mut foreign = snap.tunnel_ports[0].clone();
    foreign.metadata.name = Some("hand-made".into());
    foreign.metadata.labels = None;
    snap.tunnel_ports.push(foreign);

    snap.devices
        .retain(|d| d.metadata.name.as_deref() != Some("srv"));
    let d = decide(&snap, at(200));
    assert_eq!(
        deletes(&d),
        vec![
            "n1.vxlan.192-0-2-10".to_string(),
            "n2.vxlan.192-0-2-10".to_string()
        ]
    );
    assert!(applies(&d).is_empty() && releases(&d).is_empty() && statuses(&d).is_empty());
    let Action::Delete { uid, note, .. } = &d.actions[0] else {
        panic!("{:?}", d.actions[0])
    };
    assert_eq!(uid.as_deref(), Some("uid-n1.vxlan.192-0-2-10"));
    assert!(
        note.starts_with("No device needs the vxlan tunnel from node n1 to VTEP 192.0.2.10"),
        "{note}"
    );
}

#[test]
fn deleting_device_is_ignored_like_a_gone_one() {
    let mut snap = two_nodes_one_device();
    let first = decide(&snap, at(100));
    settle(&mut snap, &first);
    snap.devices[0].metadata.deletion_timestamp = Some(Time(at(150)));
    let d = decide(&snap, at(200));
    assert_eq!(deletes(&d).len(), 2);
    assert!(
        statuses(&d).is_empty(),
        "no status for a device being deleted"
    );
}

#[test]
fn node_gone_releases_finalizer_and_deletes_its_ports_only() {
    let mut snap = two_nodes_one_device();
    let first = decide(&snap, at(100));
    settle(&mut snap, &first);
    snap.nodes
        .retain(|n| n.metadata.name.as_deref() != Some("n2"));
    let d = decide(&snap, at(200));
    assert_eq!(releases(&d), vec!["n2.vxlan.192-0-2-10".to_string()]);
    assert_eq!(deletes(&d), vec!["n2.vxlan.192-0-2-10".to_string()]);
    assert!(applies(&d).is_empty());
    let Action::ReleaseFinalizer {
        keep,
        resource_version,
        ..
    } = &d.actions[0]
    else {
        panic!("release first: {:?}", d.actions)
    };
    assert!(keep.is_empty());
    assert_eq!(resource_version.as_deref(), Some("7"));
    let (_, status, _) = &statuses(&d)[0];
    assert_eq!((status.ready_nodes, status.total_nodes), (0, 1));

    // Garbage collection already marked it: only the finalizer is left to release.
    let mut snap2 = snap.clone();
    for t in &mut snap2.tunnel_ports {
        if t.spec.node_name == "n2" {
            t.metadata.deletion_timestamp = Some(Time(at(190)));
        }
    }
    let d2 = decide(&snap2, at(200));
    assert_eq!(releases(&d2), vec!["n2.vxlan.192-0-2-10".to_string()]);
    assert!(deletes(&d2).is_empty(), "already terminating");
}

#[test]
fn node_gone_without_finalizer_is_only_deleted_and_other_finalizers_are_kept() {
    let mut snap = two_nodes_one_device();
    let first = decide(&snap, at(100));
    settle(&mut snap, &first);
    snap.tunnel_ports[0].metadata.finalizers = None;
    snap.tunnel_ports[1].metadata.finalizers = Some(vec![
        "example.com/keep".into(),
        OVS_CLEANUP_FINALIZER.into(),
    ]);
    snap.nodes.clear();
    let d = decide(&snap, at(200));
    assert_eq!(releases(&d), vec!["n2.vxlan.192-0-2-10".to_string()]);
    let Action::ReleaseFinalizer { keep, .. } = &d.actions[0] else {
        panic!()
    };
    assert_eq!(keep, &vec!["example.com/keep".to_string()]);
    assert_eq!(deletes(&d).len(), 2);
    let (_, status, _) = &statuses(&d)[0];
    assert_eq!(ready_of(status).1, device_reason::NO_MATCHING_NODES);
}

#[test]
fn invalid_device_gets_condition_and_one_event_and_no_tunnel_port() {
    let mut snap = two_nodes_one_device();
    snap.devices[0].spec.vtep_ip = "127.0.0.1".into();
    let d = decide(&snap, at(100));
    assert!(applies(&d).is_empty());
    let st = statuses(&d);
    let (_, status, events) = &st[0];
    let (ok, reason, message) = ready_of(status);
    assert_eq!((ok, reason), ("False", device_reason::INVALID_SPEC));
    assert!(
        message.starts_with("Invalid spec: spec.vtepIP"),
        "{message}"
    );
    assert_eq!(events, &vec![event_reason::INVALID]);
    assert_eq!(status.ready.as_deref(), Some("0/0"));
    settle(&mut snap, &d);
    assert!(
        decide(&snap, at(200)).actions.is_empty(),
        "event once, not every resync"
    );
}

#[test]
fn conflicting_device_gets_condition_and_event_older_one_keeps_claim() {
    let mut snap = two_nodes_one_device();
    let mut dup = device("t2", "copy", "192.0.2.10", 5001, "52:54:00:00:00:01");
    dup.metadata.creation_timestamp = Some(Time(at(9999)));
    snap.devices.push(dup);
    let d = decide(&snap, at(100));
    let st = statuses(&d);
    assert_eq!(st.len(), 2);
    let (key, status, events) = &st[1];
    assert_eq!(key, "t2/copy");
    assert_eq!(ready_of(status).1, device_reason::CONFLICT);
    assert!(
        ready_of(status).2.contains("t1/srv"),
        "{}",
        ready_of(status).2
    );
    assert_eq!(events, &vec![event_reason::CONFLICT]);
    assert_eq!(st[0].2, Vec::<&str>::new());
    // The TunnelPorts carry only the older device.
    for (name, _) in applies(&d) {
        let port = d
            .actions
            .iter()
            .find_map(|a| match a {
                Action::Apply { port, .. } if port.metadata.name.as_ref() == Some(&name) => {
                    Some(port)
                }
                _ => None,
            })
            .unwrap();
        assert_eq!(port.spec.devices.len(), 1);
        assert_eq!(port.spec.devices[0].name, "srv");
    }
}

#[test]
fn self_tunnel_nodes_are_named_excluded_and_announced_once() {
    let mut snap = two_nodes_one_device();
    snap.nodes.push(node("vtep-node", "192.0.2.10"));
    let d = decide(&snap, at(100));
    assert_eq!(applies(&d).len(), 2, "no tunnel from a node to itself");
    let (_, status, events) = &statuses(&d)[0];
    assert_eq!(status.total_nodes, 2);
    assert_eq!(ready_of(status).2, "0/2 nodes ready; waiting for n1, n2.");
    assert_eq!(
        skipped_of(status),
        Some(format!("{SELF_TUNNEL_NOTE} vtep-node."))
    );
    assert_eq!(events, &vec![event_reason::SELF_TUNNEL]);
    settle(&mut snap, &d);
    // Progress changes the message but not the self-tunnel sentence: no second event.
    snap.tunnel_ports[0] = with_ready(snap.tunnel_ports[0].clone(), true, tunnel_reason::READY, "");
    let d = decide(&snap, at(200));
    let (_, status, events) = &statuses(&d)[0];
    assert!(ready_of(status).2.starts_with("1/2 nodes ready"));
    assert!(events.is_empty());
}

#[test]
fn only_self_tunnel_nodes_means_no_matching_nodes() {
    let mut snap = two_nodes_one_device();
    snap.nodes = vec![node("vtep-node", "192.0.2.10")];
    let d = decide(&snap, at(100));
    let (_, status, events) = &statuses(&d)[0];
    assert_eq!(
        ready_of(status),
        (
            "False",
            device_reason::NO_MATCHING_NODES,
            "No node needs a tunnel to this VTEP."
        )
    );
    assert_eq!(
        skipped_of(status),
        Some(format!("{SELF_TUNNEL_NOTE} vtep-node."))
    );
    assert_eq!(events, &vec![event_reason::SELF_TUNNEL]);
}

/// The `NodesSkipped` condition's message (it is always True when present).
fn skipped_of(status: &crate::api::RemoteDeviceStatus) -> Option<String> {
    let c =
        crate::api::conditions::find(&status.conditions, crate::api::conditions::NODES_SKIPPED)?;
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("True", device_reason::SELF_TUNNEL)
    );
    Some(c.message.clone())
}

#[test]
fn selector_limits_nodes_and_lists_are_shortened() {
    let mut snap = two_nodes_one_device();
    snap.nodes = (0..8)
        .map(|i| node(&format!("n{i}"), &format!("10.1.0.{}", i + 1)))
        .collect();
    let d = decide(&snap, at(100));
    let (_, status, _) = &statuses(&d)[0];
    assert_eq!(
        ready_of(status).2,
        "0/8 nodes ready; waiting for n0, n1, n2, n3, n4 and 3 more."
    );

    snap.devices[0].spec.node_selector = Some(LabelSelector {
        match_labels: Some(BTreeMap::from([("rack".to_string(), "r2".to_string())])),
        ..LabelSelector::default()
    });
    let d = decide(&snap, at(100));
    assert!(applies(&d).is_empty());
    let (_, status, _) = &statuses(&d)[0];
    assert_eq!(
        ready_of(status),
        (
            "False",
            device_reason::NO_MATCHING_NODES,
            "The node selector matches no node."
        )
    );
}

#[test]
fn drift_is_repaired_by_apply_without_create() {
    let mut snap = two_nodes_one_device();
    let first = decide(&snap, at(100));
    settle(&mut snap, &first);
    snap.tunnel_ports[0].spec.local_ip = Some("10.9.9.9".into());
    snap.tunnel_ports[1].metadata.owner_references = None;
    let d = decide(&snap, at(200));
    assert_eq!(
        applies(&d),
        vec![
            ("n1.vxlan.192-0-2-10".to_string(), false),
            ("n2.vxlan.192-0-2-10".to_string(), false)
        ]
    );
}

#[test]
fn terminating_ports_are_neither_applied_nor_deleted_again() {
    let mut snap = two_nodes_one_device();
    let first = decide(&snap, at(100));
    settle(&mut snap, &first);
    for t in &mut snap.tunnel_ports {
        t.metadata.deletion_timestamp = Some(Time(at(150)));
        Arc::make_mut(&mut t.spec.devices).clear();
    }
    let d = decide(&snap, at(200));
    assert!(applies(&d).is_empty(), "recreated after it is gone");
    snap.devices.clear();
    let d = decide(&snap, at(200));
    assert!(deletes(&d).is_empty());
}

#[test]
fn needs_apply_compares_only_what_the_controller_owns() {
    let snap = two_nodes_one_device();
    let want = decide(&snap, at(1)).actions.iter().find_map(|a| match a {
        Action::Apply { port, .. } => Some(port.clone()),
        _ => None,
    });
    let want = want.unwrap();
    let have = stored(&want);
    type Change = fn(&mut TunnelPort);
    let cases: &[(&str, Change, bool)] = &[
        ("as stored", |_| {}, false),
        (
            "extra foreign label",
            |t| {
                t.metadata
                    .labels
                    .get_or_insert_default()
                    .insert("x".into(), "y".into());
            },
            false,
        ),
        (
            "status changed",
            |t| t.status = Some(TunnelPortStatus::default()),
            false,
        ),
        (
            "extra owner",
            |t| {
                let mut o = t.metadata.owner_references.clone().unwrap()[0].clone();
                o.uid = "other".into();
                t.metadata.owner_references.get_or_insert_default().push(o);
            },
            false,
        ),
        (
            "managed-by label changed",
            |t| {
                t.metadata
                    .labels
                    .get_or_insert_default()
                    .insert(MANAGED_BY_LABEL.into(), "me".into());
            },
            true,
        ),
        (
            "owner uid changed",
            |t| {
                t.metadata.owner_references.as_mut().unwrap()[0].uid = "new".into();
            },
            true,
        ),
        (
            "devices differ",
            |t| Arc::make_mut(&mut t.spec.devices).clear(),
            true,
        ),
        ("dst port differs", |t| t.spec.dst_port = Some(4790), true),
    ];
    for (what, change, want_apply) in cases {
        let mut h = have.clone();
        change(&mut h);
        assert_eq!(needs_apply(&want, &h), *want_apply, "{what}");
    }
    assert_eq!(MANAGER, "remote-device-operator");
}

#[test]
fn a_reordered_device_list_is_repaired_but_its_devices_still_count() {
    let mut snap = two_nodes_one_device();
    for (i, name) in ["a", "b", "c"].iter().enumerate() {
        let mac = format!("52:54:00:00:01:0{i}");
        snap.devices
            .push(device("t1", name, "192.0.2.10", 7001 + i as u32, &mac));
    }
    let first = decide(&snap, at(100));
    settle(&mut snap, &first);
    for i in 0..2 {
        let mut tp = with_ready(snap.tunnel_ports[i].clone(), true, tunnel_reason::READY, "");
        Arc::make_mut(&mut tp.spec.devices).reverse();
        snap.tunnel_ports[i] = tp;
    }
    let d = decide(&snap, at(200));
    assert_eq!(applies(&d).len(), 2, "the order is ours to keep");
    let st = statuses(&d);
    assert_eq!(st.len(), 4);
    for (key, status, _) in &st {
        assert_eq!(ready_of(status).0, "True", "{key}: {:?}", ready_of(status));
        assert_eq!(status.ready.as_deref(), Some("2/2"));
    }
}

#[test]
fn lease_namespace_is_the_flag_else_the_pods_else_default() {
    for (flag, file, want) in [
        (Some("ops"), Some("rdo\n"), "ops"),
        (None, Some("rdo\n"), "rdo"),
        (Some(""), Some("rdo"), "rdo"),
        (None, Some("  \n"), "default"),
        (None, None, "default"),
    ] {
        assert_eq!(
            super::lease_namespace(flag, file),
            want,
            "{flag:?} {file:?}"
        );
    }
}
