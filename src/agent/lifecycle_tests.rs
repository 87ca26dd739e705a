//! One table test per ordering rule of the lifecycle step.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use tokio::time::Instant;

use super::*;
use crate::api::{TunnelDevice, TunnelPortSpec, TunnelType};
use crate::flows::SyncStatus;
use crate::ovs::{LocalPort, Observed, PortReport, PortState};

/// TunnelPort `name` of node n1 (one remote VTEP per name), with or without the finalizer,
/// deleted or not.
pub(in crate::agent) fn tp(name: &str, finalizer: bool, deleting: bool) -> TunnelPort {
    TunnelPort {
        metadata: ObjectMeta {
            name: Some(name.into()),
            finalizers: finalizer.then(|| vec![OVS_CLEANUP_FINALIZER.to_string()]),
            deletion_timestamp: deleting
                .then(|| Time(Timestamp::from_second(1_800_000_000).unwrap())),
            ..ObjectMeta::default()
        },
        spec: TunnelPortSpec {
            node_name: "n1".into(),
            remote_ip: format!("192.0.2.{}", name.as_bytes()[0]),
            tunnel_type: TunnelType::Vxlan,
            dst_port: None,
            local_ip: None,
            devices: Arc::new(vec![TunnelDevice {
                namespace: "t1".into(),
                name: format!("dev-{name}"),
                mac_address: format!("52:54:00:00:00:{:02x}", name.as_bytes()[0]),
                vni: 5001,
                ips: vec![],
                local_vlan: None,
            }]),
            bfd: None,
        },
        status: None,
    }
}

fn iface(tp: &TunnelPort) -> String {
    TunnelId::of(&tp.spec).unwrap().interface_name()
}

/// OVSDB (connected) showing a port for each of `with_port`, in `state`, plus a workload port.
fn observed(with_port: &[&TunnelPort], state: PortState) -> Observed {
    let mut o = Observed {
        connected: true,
        ..Observed::default()
    };
    for (i, tp) in with_port.iter().enumerate() {
        let ofport = (state == PortState::Ready).then_some(10 + i as i64);
        o.ports.insert(
            tp.metadata.name.clone().unwrap(),
            PortReport {
                interface_name: iface(tp),
                ofport,
                state: state.clone(),
                bfd: None,
            },
        );
    }
    o.local_ports.push(LocalPort {
        name: "pod1".into(),
        ofport: 7,
        tag: None,
        interface_type: String::new(),
    });
    o
}

/// The flow sync having confirmed the plan of `active` tunnels (all Ready).
/// The flow sync having confirmed, in a round later than every earlier call's, the plan
/// of `active` tunnels (all Ready).
fn applied(active: &[&TunnelPort]) -> SyncStatus {
    use std::sync::atomic::{AtomicU64, Ordering};
    static ROUNDS: AtomicU64 = AtomicU64::new(1);
    let ports: Vec<TunnelPort> = active.iter().map(|t| (*t).clone()).collect();
    let plan =
        crate::flows::desired_flows(&flow_input(&ports, &observed(active, PortState::Ready)));
    SyncStatus {
        applied: Some(Arc::new(plan)),
        rounds: ROUNDS.fetch_add(1, Ordering::Relaxed),
        ..SyncStatus::default()
    }
}

fn names(ports: &Option<Vec<TunnelPort>>) -> Vec<String> {
    let mut v: Vec<String> = ports
        .iter()
        .flatten()
        .filter_map(|t| t.metadata.name.clone())
        .collect();
    v.sort();
    v
}

fn agent() -> NodeState {
    NodeState::new(Some("n1".into()), true)
}

fn step(
    state: &mut NodeState,
    objects: Option<&[TunnelPort]>,
    observed: &Observed,
    flows: &SyncStatus,
    now: Instant,
) -> Step {
    state.step(Inputs {
        objects,
        observed,
        flows,
        now,
    })
}

#[test]
fn first_appearance_the_port_does_not_wait_for_the_finalizer() {
    let t0 = Instant::now();
    let fresh = tp("a", false, false);
    let kept = tp("b", true, false);
    let elsewhere = TunnelPort {
        spec: TunnelPortSpec {
            node_name: "n2".into(),
            ..tp("c", true, false).spec
        },
        ..tp("c", true, false)
    };
    let objects = vec![fresh.clone(), kept.clone(), elsewhere];
    let none = SyncStatus::default();
    let cases: [(&str, NodeState, Vec<&str>, Vec<&str>); 2] = [
        // The finalizer is added side by side with the port, both for "a".
        ("agent", agent(), vec!["a"], vec!["a", "b"]),
        (
            "standalone",
            NodeState::new(None, false),
            vec![],
            vec!["a", "b", "c"],
        ),
    ];
    for (name, mut state, add, in_ovs) in cases {
        let s = step(
            &mut state,
            Some(&objects),
            &observed(&[], PortState::Ready),
            &none,
            t0,
        );
        assert_eq!(s.add_finalizer, add, "{name}");
        assert_eq!(names(&s.ovs_ports), in_ovs, "{name}");
        assert_eq!(s.active.iter().collect::<Vec<_>>(), in_ovs, "{name}");
    }
}

/// A TunnelPort deleted before the agent's finalizer landed (it was in OVS meanwhile)
/// leaves like any other: rules first, then its port; there is no finalizer to release.
#[test]
fn deleted_before_its_finalizer_landed_its_rules_then_its_port_go() {
    let t0 = Instant::now();
    let a = tp("a", false, false);
    let mut state = agent();
    let s = step(
        &mut state,
        Some(std::slice::from_ref(&a)),
        &observed(&[&a], PortState::Ready),
        &SyncStatus::default(),
        t0,
    );
    assert_eq!(
        (s.add_finalizer, names(&s.ovs_ports)),
        (vec!["a".to_string()], vec!["a".to_string()])
    );
    // Gone from the watch (no finalizer held it); its rules are still in OVS.
    let ovs = observed(&[&a], PortState::Ready);
    let s = step(&mut state, Some(&[]), &ovs, &applied(&[&a]), t0);
    assert_eq!(
        names(&s.ovs_ports),
        ["a"],
        "the port stays while its rules may be there"
    );
    assert!(
        s.flow_plan
            .is_some_and(|p| !p.installed_per_tunnel.contains_key(&iface(&a)))
    );
    // The flow sync confirmed a plan without its rules: the port goes, nothing to release.
    let s = step(&mut state, Some(&[]), &ovs, &applied(&[]), t0);
    assert_eq!(names(&s.ovs_ports), Vec::<String>::new());
    assert!(s.release_finalizer.is_empty() && s.add_finalizer.is_empty());
}

#[test]
fn no_rule_points_at_a_port_without_an_ofport() {
    let t0 = Instant::now();
    let a = tp("a", true, false);
    let none = SyncStatus::default();
    let cases = [
        (PortState::Pending, 0),
        (PortState::OvsError("File exists".into()), 0),
        (PortState::Ready, 1),
    ];
    for (state_in_ovs, devices) in cases {
        let s = step(
            &mut agent(),
            Some(std::slice::from_ref(&a)),
            &observed(&[&a], state_in_ovs.clone()),
            &none,
            t0,
        );
        let plan = s.flow_plan.expect("OVSDB seen: a plan");
        assert_eq!(
            plan.installed_per_tunnel.get(&iface(&a)).copied(),
            Some(devices),
            "{state_in_ovs:?}"
        );
    }
}

#[test]
fn a_leaving_tunnel_keeps_its_port_until_its_rules_are_gone() {
    let t0 = Instant::now();
    let (a, b) = (tp("a", true, false), tp("b", true, false));
    let both = vec![a.clone(), b.clone()];
    let ovs = observed(&[&a, &b], PortState::Ready);
    let mut state = agent();
    let s = step(&mut state, Some(&both), &ovs, &applied(&[&a, &b]), t0);
    assert_eq!(names(&s.ovs_ports), ["a", "b"]);
    // b leaves; OVS still holds its rules.
    let only_a = std::slice::from_ref(&a);
    let s = step(&mut state, Some(only_a), &ovs, &applied(&[&a, &b]), t0);
    assert_eq!(
        names(&s.ovs_ports),
        ["a", "b"],
        "rules still there: the port stays"
    );
    let plan = s.flow_plan.unwrap();
    assert!(
        !plan.installed_per_tunnel.contains_key(&iface(&b)),
        "its rules go"
    );
    // The flow sync confirmed the plan without b.
    let s = step(&mut state, Some(only_a), &ovs, &applied(&[&a]), t0);
    assert_eq!(names(&s.ovs_ports), ["a"], "rules gone: the port goes");
}

#[test]
fn a_tunnel_that_comes_back_while_leaving_is_active_again() {
    let t0 = Instant::now();
    let (a, b) = (tp("a", true, false), tp("b", true, false));
    let both = vec![a.clone(), b.clone()];
    let ovs = observed(&[&a, &b], PortState::Ready);
    let rules = applied(&[&a, &b]);
    let mut state = agent();
    step(&mut state, Some(&both), &ovs, &rules, t0);
    step(&mut state, Some(std::slice::from_ref(&a)), &ovs, &rules, t0);
    let s = step(&mut state, Some(&both), &ovs, &rules, t0);
    assert_eq!(names(&s.ovs_ports), ["a", "b"], "once each");
    assert!(s.active.contains("b"));
    assert_eq!(
        s.flow_plan.unwrap().installed_per_tunnel.get(&iface(&b)),
        Some(&1),
        "its rules are planned again"
    );
    // It does not linger as leaving once a round after it left confirmed its rules gone.
    let only_a = std::slice::from_ref(&a);
    step(&mut state, Some(only_a), &ovs, &applied(&[&a]), t0);
    let s = step(&mut state, Some(only_a), &ovs, &applied(&[&a]), t0);
    assert_eq!(names(&s.ovs_ports), ["a"]);
}

#[test]
fn the_finalizer_is_released_only_after_port_and_rules_are_gone() {
    let t0 = Instant::now();
    let a = tp("a", true, false);
    let deleted = tp("c", true, true);
    let objects = vec![a.clone(), deleted.clone()];
    let with_port = observed(&[&a, &deleted], PortState::Ready);
    let without_port = observed(&[&a], PortState::Ready);
    let mut disconnected = without_port.clone();
    disconnected.connected = false;
    let cases = [
        (
            "port and rules there",
            &with_port,
            applied(&[&a, &deleted]),
            false,
        ),
        ("port there, rules gone", &with_port, applied(&[&a]), false),
        (
            "port gone, rules there",
            &without_port,
            applied(&[&a, &deleted]),
            false,
        ),
        (
            "nothing confirmed yet",
            &without_port,
            SyncStatus::default(),
            false,
        ),
        ("both gone", &without_port, applied(&[&a]), true),
        ("OVSDB unreachable", &disconnected, applied(&[&a]), false),
    ];
    for (name, ovs, flows, release) in cases {
        let mut state = agent();
        // Seen first before the flow sync's round of this case.
        step(
            &mut state,
            Some(&objects),
            &with_port,
            &SyncStatus::default(),
            t0,
        );
        let s = step(&mut state, Some(&objects), ovs, &flows, t0);
        assert_eq!(s.release_finalizer == ["c"], release, "{name}: {s:?}");
        assert!(
            !s.active.contains("c"),
            "{name}: a deleted one is never active"
        );
    }
    // While its rules may be in OVS, its port stays even if this process never saw it
    // active (an agent restarted during a deletion).
    let s = step(
        &mut agent(),
        Some(&objects),
        &with_port,
        &applied(&[&a, &deleted]),
        t0,
    );
    assert_eq!(names(&s.ovs_ports), ["a", "c"]);
    // Once a flow round after it was first seen confirms its rules gone, the port goes.
    let mut state = agent();
    step(
        &mut state,
        Some(&objects),
        &with_port,
        &SyncStatus::default(),
        t0,
    );
    let s = step(&mut state, Some(&objects), &with_port, &applied(&[&a]), t0);
    assert_eq!(names(&s.ovs_ports), ["a"]);
}

/// A confirmed plan older than the tunnel's departure proves nothing: a later plan with
/// its rules may still be on its way to OVS. Only a round completed after it left counts.
#[test]
fn only_a_flow_round_after_a_tunnel_left_confirms_its_rules_gone() {
    let t0 = Instant::now();
    let (a, x) = (tp("a", true, false), tp("x", true, false));
    let ovs = observed(&[&a, &x], PortState::Ready);
    let old = applied(&[&a]); // confirmed before x's rules were even planned
    let mut state = agent();
    step(&mut state, Some(&[a.clone(), x.clone()]), &ovs, &old, t0);
    // x leaves while the plan with its rules is still being applied: the old confirmed
    // plan (without x) must not let its port go.
    let only_a = std::slice::from_ref(&a);
    let s = step(&mut state, Some(only_a), &ovs, &old, t0);
    assert_eq!(
        names(&s.ovs_ports),
        ["a", "x"],
        "not confirmed after x left"
    );
    // The round that applied the plan with x's rules completes after it left: still there.
    let s = step(&mut state, Some(only_a), &ovs, &applied(&[&a, &x]), t0);
    assert_eq!(names(&s.ovs_ports), ["a", "x"]);
    // The next round confirms the plan without x: now the port goes.
    let s = step(&mut state, Some(only_a), &ovs, &applied(&[&a]), t0);
    assert_eq!(names(&s.ovs_ports), ["a"]);
}

/// Two TunnelPorts naming one tunnel (a hand-made duplicate): the loser has no port and no
/// rules of its own, so deleting either one finishes.
#[test]
fn deleting_a_duplicate_or_its_winner_finishes() {
    let t0 = Instant::now();
    let winner = tp("a", true, false);
    let mut loser = tp("b", true, false);
    loser.spec = winner.spec.clone();
    let interface = iface(&winner);
    let mut ovs = observed(&[&winner], PortState::Ready);
    ovs.ports.insert(
        "b".into(),
        PortReport {
            interface_name: interface.clone(),
            ofport: None,
            state: PortState::Invalid("same OVS port as TunnelPort a".into()),
            bfd: None,
        },
    );
    let rules = applied(&[&winner]);
    let plan = step(
        &mut agent(),
        Some(&[winner.clone(), loser.clone()]),
        &ovs,
        &rules,
        t0,
    )
    .flow_plan
    .unwrap();
    assert_eq!(
        plan.installed_per_tunnel.get(&interface),
        Some(&1),
        "the winner's rules only"
    );
    // The duplicate deleted: released although its interface's rules stay (the winner's).
    let mut deleted = loser.clone();
    deleted.metadata.deletion_timestamp = tp("z", true, true).metadata.deletion_timestamp;
    let mut without_b = ovs.clone();
    without_b.ports.remove("b");
    let mut state = agent();
    step(
        &mut state,
        Some(&[winner.clone(), deleted.clone()]),
        &without_b,
        &SyncStatus::default(),
        t0,
    );
    let s = step(
        &mut state,
        Some(&[winner.clone(), deleted]),
        &without_b,
        &applied(&[&winner]),
        t0,
    );
    assert_eq!(s.release_finalizer, ["b"]);
}

/// Once a deleted TunnelPort's rules are confirmed gone, later steps with no new flow round
/// (a quiet bridge) neither take its port back nor hold its finalizer.
#[test]
fn a_confirmed_deletion_stays_confirmed_on_a_quiet_bridge() {
    let t0 = Instant::now();
    let a = tp("a", true, false);
    let mut x = tp("x", true, false);
    let mut state = agent();
    let with_x = observed(&[&a, &x], PortState::Ready);
    let before = applied(&[&a, &x]);
    step(
        &mut state,
        Some(&[a.clone(), x.clone()]),
        &with_x,
        &before,
        t0,
    );
    x.metadata.deletion_timestamp = tp("z", true, true).metadata.deletion_timestamp;
    let objects = [a.clone(), x.clone()];
    let s = step(&mut state, Some(&objects), &with_x, &before, t0);
    assert_eq!(
        names(&s.ovs_ports),
        ["a", "x"],
        "its rules may still be there"
    );
    let quiet = applied(&[&a]);
    let s = step(&mut state, Some(&objects), &with_x, &quiet, t0);
    assert_eq!(
        names(&s.ovs_ports),
        ["a"],
        "rules confirmed gone: the port may go"
    );
    let without_x = observed(&[&a], PortState::Ready);
    for round in 0..3 {
        let s = step(&mut state, Some(&objects), &without_x, &quiet, t0);
        assert_eq!(names(&s.ovs_ports), ["a"], "step {round}");
        assert_eq!(s.release_finalizer, ["x"], "step {round}");
    }
}

#[test]
fn a_delete_before_ovsdb_was_ever_seen_touches_nothing() {
    let t0 = Instant::now();
    let deleted = tp("c", true, true);
    let never_seen = Observed::default();
    let mut state = agent();
    let s = step(
        &mut state,
        Some(std::slice::from_ref(&deleted)),
        &never_seen,
        &SyncStatus::default(),
        t0,
    );
    assert_eq!(s.flow_plan, None, "no plan before OVSDB was seen");
    assert!(s.release_finalizer.is_empty());
    assert_eq!(names(&s.ovs_ports), ["c"], "its port is not removed blind");
    // Unknown desired set: nothing at all.
    let s = step(&mut state, None, &never_seen, &SyncStatus::default(), t0);
    assert_eq!((s.ovs_ports, s.flow_plan), (None, None));
}

#[test]
fn ovsdb_down_within_and_past_the_grace_period() {
    let t0 = Instant::now();
    let a = tp("a", true, false);
    let up = observed(&[&a], PortState::Ready);
    let mut down = up.clone();
    down.connected = false;
    let ms = Duration::from_millis;
    let mut state = agent();
    let objects = std::slice::from_ref(&a);
    let none = SyncStatus::default();
    let cases = [
        ("connected", &up, ms(0), false, None),
        (
            "just lost",
            &down,
            ms(100),
            false,
            Some(ms(100) + OVSDB_GRACE),
        ),
        (
            "within the grace period",
            &down,
            ms(5000),
            false,
            Some(ms(100) + OVSDB_GRACE),
        ),
        ("past it", &down, ms(5100), true, None),
        ("back", &up, ms(6000), false, None),
        (
            "lost again: a new grace period",
            &down,
            ms(7000),
            false,
            Some(ms(7000) + OVSDB_GRACE),
        ),
    ];
    for (name, ovs, at, unavailable, wake) in cases {
        let s = step(&mut state, Some(objects), ovs, &none, t0 + at);
        assert_eq!(s.ovs_unavailable, unavailable, "{name}");
        assert_eq!(s.wake_at, wake.map(|w| t0 + w), "{name}");
        assert!(
            s.flow_plan.is_some(),
            "{name}: OVSDB was seen once: plans go on"
        );
    }
}

#[test]
fn phases() {
    let cases = [
        (false, false, true, Phase::NeedsFinalizer),
        (false, false, false, Phase::Active),
        (true, false, true, Phase::Active),
        (
            true,
            true,
            true,
            Phase::Deleting {
                holds_finalizer: true,
            },
        ),
        (
            false,
            true,
            true,
            Phase::Deleting {
                holds_finalizer: false,
            },
        ),
    ];
    for (finalizer, deleting, mode, want) in cases {
        assert_eq!(phase(&tp("a", finalizer, deleting), mode), want);
    }
}
