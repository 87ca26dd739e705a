//! TunnelPort status from what OVS shows: a pure function, re-run on every change.
//!
//! Two conditions: `Ready` (the port has an ofport and the rules are installed) and
//! `Reachable` (the BFD session to the remote VTEP, as the OVS loop judged it after
//! damping flaps; see [`crate::ovs::bfd`]).

use k8s_openapi::jiff::Timestamp;

use crate::api::conditions::{
    REACHABLE, READY, condition, diagnostic_reason, reachable_reason, tri_state_condition,
    tunnel_reason,
};
use crate::api::{
    MAX_BFD_DIAGNOSTIC_LEN, MAX_BFD_STATE_LEN, TunnelBfdStatus, TunnelPort, TunnelPortStatus,
};
use crate::flows::DeviceState;
use crate::ovs::bfd::{FLAP_HOLD, FLAP_WINDOW};
use crate::ovs::{BfdHealth, BfdReport, PortState};
use crate::telemetry::TunnelReachability;

use super::node::NodeView;

/// The status the agent reports for `tp`, from the node loop's view. Conditions keep their
/// `lastTransitionTime` while their status holds, so an unchanged situation gives an
/// identical status (and no write).
pub fn tunnel_port_status(tp: &TunnelPort, view: &NodeView, now: Timestamp) -> TunnelPortStatus {
    let name = tp.metadata.name.as_deref().unwrap_or_default();
    let previous = tp
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let report = view.ovs.ports.get(name);
    // Devices whose rules OVS confirmed (the applied plan), not merely planned ones.
    let installed = view
        .flows
        .applied
        .as_ref()
        .zip(report)
        .and_then(|(plan, r)| plan.installed_per_tunnel.get(&r.interface_name).copied());

    let (ready, reason, message) = if let Some(failed) = &view.failed {
        (false, tunnel_reason::OVS_UNAVAILABLE, failed.clone())
    } else if view.ovs_unavailable {
        let why = view
            .ovs
            .last_error
            .clone()
            .unwrap_or_else(|| "not connected yet".into());
        (
            false,
            tunnel_reason::OVS_UNAVAILABLE,
            format!("cannot reach OVSDB: {why}"),
        )
    } else {
        match report.map(|r| &r.state) {
            None => (
                false,
                tunnel_reason::PENDING,
                "the OVS port is not created yet".to_string(),
            ),
            Some(PortState::Pending) => (
                false,
                tunnel_reason::PENDING,
                "waiting for OVS to give the port an ofport".into(),
            ),
            Some(PortState::OvsError(m)) | Some(PortState::Invalid(m)) => {
                (false, tunnel_reason::OVS_ERROR, m.clone())
            }
            Some(PortState::ForeignConflict(m)) => (false, tunnel_reason::FOREIGN_PORT, m.clone()),
            Some(PortState::Ready) => flow_readiness(tp, view, installed),
        }
    };
    let generation = tp.metadata.generation;
    let reach = reachability(tp, view);
    TunnelPortStatus {
        observed_generation: generation,
        conditions: vec![
            condition(
                previous,
                READY,
                ready,
                reason,
                message.clone(),
                generation,
                now,
            ),
            tri_state_condition(
                previous,
                REACHABLE,
                reach.status,
                &reach.reason,
                reach.message,
                generation,
                now,
            ),
        ],
        bfd: reach.session,
        ofport: report.and_then(|r| r.ofport),
        interface_name: report.map(|r| r.interface_name.clone()),
        devices: Some(installed.unwrap_or(0)),
        message: (!ready).then_some(message),
    }
}

/// What the `Reachable` condition says, and the session shown with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reachability {
    /// True, False, or Unknown (`None`).
    pub status: Option<bool>,
    /// CamelCase reason.
    pub reason: String,
    /// In words.
    pub message: String,
    /// The session as OVS shows it (while BFD runs).
    pub session: Option<TunnelBfdStatus>,
}

/// The `Reachable` verdict for `tp` from the node loop's view: Unknown without BFD or
/// before the session has an answer, True while up, False when down (the BFD diagnostic
/// as reason) or flapping.
pub fn reachability(tp: &TunnelPort, view: &NodeView) -> Reachability {
    let name = tp.metadata.name.as_deref().unwrap_or_default();
    let unknown = |reason: &str, message: String| Reachability {
        status: None,
        reason: reason.to_string(),
        message,
        session: None,
    };
    let Some(timers) = tp.spec.bfd else {
        return unknown(
            reachable_reason::BFD_DISABLED,
            "BFD is off on this tunnel (no device it carries asks for it)".into(),
        );
    };
    if view.failed.is_some() || view.ovs_unavailable {
        return unknown(
            reachable_reason::OVS_UNAVAILABLE,
            "cannot reach OVSDB to read the BFD session".into(),
        );
    }
    // A report with other timers is the same session, being retimed.
    let Some(bfd) = view.ovs.ports.get(name).and_then(|r| r.bfd.as_ref()) else {
        return unknown(
            reachable_reason::BFD_PENDING,
            "BFD is being set up on the OVS interface".into(),
        );
    };
    let session = Some(session_status(bfd));
    let remote = &tp.spec.remote_ip;
    let detection = timers.detection_time_ms() as f64 / 1000.0;
    let described = describe(bfd);
    let (status, reason, message) = match &bfd.health {
        BfdHealth::Pending => (
            None,
            reachable_reason::BFD_PENDING.to_string(),
            format!("waiting for the first BFD answer from {remote}"),
        ),
        BfdHealth::Up => (
            Some(true),
            reachable_reason::BFD_UP.to_string(),
            format!(
                "BFD session to {remote} up; a failure is detected within about {detection:.1} s"
            ),
        ),
        BfdHealth::Down => (
            Some(false),
            diagnostic_reason(bfd.session.diagnostic.as_deref().unwrap_or_default()),
            format!("BFD session to {remote} {described}"),
        ),
        BfdHealth::Flapping { flaps } => (
            Some(false),
            reachable_reason::FLAPPING.to_string(),
            format!(
                "BFD session to {remote} flapped {flaps} times within {} s (when seen: {described}); \
                 reported as flapping until it holds for {} s",
                FLAP_WINDOW.as_secs(),
                FLAP_HOLD.as_secs()
            ),
        ),
    };
    Reachability {
        status,
        reason,
        message,
        session,
    }
}

/// `down (remote down): Control Detection Time Expired`.
fn describe(bfd: &BfdReport) -> String {
    let s = &bfd.session;
    let state = s.state.as_deref().unwrap_or("without a state");
    let mut text = state.to_string();
    if let Some(remote) = &s.remote_state {
        text.push_str(&format!(" (remote {remote})"));
    }
    if let Some(diagnostic) = &s.diagnostic {
        text.push_str(&format!(": {diagnostic}"));
    }
    text
}

/// The session for the status, each string cut to the schema's bound (a longer one would
/// make every status write of the TunnelPort fail).
fn session_status(bfd: &BfdReport) -> TunnelBfdStatus {
    let bounded =
        |s: &Option<String>, max: usize| s.as_ref().map(|s| s.chars().take(max).collect());
    TunnelBfdStatus {
        state: bounded(&bfd.session.state, MAX_BFD_STATE_LEN),
        remote_state: bounded(&bfd.session.remote_state, MAX_BFD_STATE_LEN),
        diagnostic: bounded(&bfd.session.diagnostic, MAX_BFD_DIAGNOSTIC_LEN),
        flap_count: bfd.session.flap_count,
    }
}

/// Per active TunnelPort of the view with an OVS port, its reachability for the metrics.
pub fn reachability_states(view: &NodeView) -> Vec<(String, TunnelReachability)> {
    let unknown = view.failed.is_some() || view.ovs_unavailable;
    view.active
        .iter()
        .filter_map(|name| {
            let report = view.ovs.ports.get(name)?;
            let state = match report.bfd.as_ref().map(|b| &b.health) {
                _ if unknown => TunnelReachability::Unknown,
                None => TunnelReachability::Disabled,
                Some(BfdHealth::Pending) => TunnelReachability::Pending,
                Some(BfdHealth::Up) => TunnelReachability::Up,
                Some(BfdHealth::Down) => TunnelReachability::Down,
                Some(BfdHealth::Flapping { .. }) => TunnelReachability::Flapping,
            };
            Some((name.clone(), state))
        })
        .collect()
}

/// Keeps the `tunnel_reachable` metric following the node loop's view, until `shutdown`.
pub async fn report_reachability(
    mut view: tokio::sync::watch::Receiver<NodeView>,
    metrics: crate::telemetry::Metrics,
    shutdown: tokio_util::sync::CancellationToken,
) {
    loop {
        let states = reachability_states(&view.borrow_and_update());
        metrics.set_tunnel_reachability(&states);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = view.changed() => if changed.is_err() { return },
        }
    }
}

/// A port that OVS numbered is Ready once the flow sync confirmed the rules of every
/// device on it.
fn flow_readiness(
    tp: &TunnelPort,
    view: &NodeView,
    installed: Option<u32>,
) -> (bool, &'static str, String) {
    let ofport = view
        .ovs
        .ports
        .get(tp.metadata.name.as_deref().unwrap_or_default())
        .and_then(|r| r.ofport)
        .unwrap_or(-1);
    let rejected: Vec<String> = tp
        .spec
        .devices
        .iter()
        .filter_map(|d| {
            let plan = view.plan.as_ref()?;
            let key = crate::api::DeviceKey {
                namespace: d.namespace.clone(),
                name: d.name.clone(),
            };
            match plan.devices.get(&key) {
                Some(DeviceState::Rejected { reason }) => Some(format!("{key}: {reason}")),
                _ => None,
            }
        })
        .collect();
    if let Some(error) = &view.flows.error {
        return (
            false,
            tunnel_reason::OVS_ERROR,
            format!("forwarding rules not applied: {error}"),
        );
    }
    if !rejected.is_empty() {
        return (
            false,
            tunnel_reason::OVS_ERROR,
            format!("no forwarding rules for {}", rejected.join("; ")),
        );
    }
    let interface = view
        .ovs
        .ports
        .get(tp.metadata.name.as_deref().unwrap_or_default())
        .map(|r| r.interface_name.as_str());
    let keys: Vec<crate::api::DeviceKey> = tp
        .spec
        .devices
        .iter()
        .map(|d| crate::api::DeviceKey {
            namespace: d.namespace.clone(),
            name: d.name.clone(),
        })
        .collect();
    if !interface.is_some_and(|i| view.tunnel_flows_current(i, &keys)) {
        return (
            false,
            tunnel_reason::PENDING,
            "installing the forwarding rules".into(),
        );
    }
    let devices = installed.unwrap_or(0);
    (
        true,
        tunnel_reason::READY,
        format!("ofport {ofport}; forwarding rules for {devices} device(s) installed"),
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;
    use crate::api::conditions::find;
    use crate::api::{TunnelBfd, TunnelPortSpec, TunnelType};
    use crate::ovs::{BfdSession, Observed, PortReport};

    const TIMERS: TunnelBfd = TunnelBfd {
        min_rx_ms: 1000,
        min_tx_ms: 1000,
    };

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + second).unwrap()
    }

    fn tp(bfd: Option<TunnelBfd>) -> TunnelPort {
        let mut tp = TunnelPort::new(
            "n1.vxlan.192-0-2-10",
            TunnelPortSpec {
                node_name: "n1".into(),
                remote_ip: "192.0.2.10".into(),
                tunnel_type: TunnelType::Vxlan,
                dst_port: None,
                local_ip: None,
                devices: Default::default(),
                bfd,
            },
        );
        tp.metadata.generation = Some(2);
        tp
    }

    fn session(state: &str, diagnostic: &str, flaps: u64) -> BfdSession {
        BfdSession {
            state: Some(state.into()),
            forwarding: Some(state == "up"),
            diagnostic: Some(diagnostic.into()),
            remote_state: Some(state.into()),
            remote_diagnostic: None,
            flap_count: Some(flaps),
        }
    }

    /// The node loop's view with the tunnel's port Ready and its BFD report as given.
    fn view(bfd: Option<(BfdSession, BfdHealth)>) -> NodeView {
        let report = PortReport {
            interface_name: "rdv-0123456789a".into(),
            ofport: Some(3),
            state: PortState::Ready,
            bfd: bfd.map(|(session, health)| BfdReport {
                timers: TIMERS,
                session,
                health,
            }),
        };
        NodeView {
            ovs: Observed {
                connected: true,
                ports: BTreeMap::from([("n1.vxlan.192-0-2-10".to_string(), report)]),
                ..Observed::default()
            },
            active: ["n1.vxlan.192-0-2-10".to_string()].into(),
            ..NodeView::default()
        }
    }

    /// (TunnelPort bfd, view) → Reachable (status, reason) and the `bfd` status block.
    #[test]
    fn reachable_follows_the_bfd_session() {
        let down = session("down", "Control Detection Time Expired", 2);
        let mut unavailable = view(Some((session("up", "No Diagnostic", 1), BfdHealth::Up)));
        unavailable.ovs_unavailable = true;
        type Case = (
            &'static str,
            Option<TunnelBfd>,
            NodeView,
            &'static str,
            &'static str,
            Option<u64>,
        );
        let cases: Vec<Case> = vec![
            ("off", None, view(None), "Unknown", "BfdDisabled", None),
            // Off in the spec: a leftover report of the OVS loop does not count.
            (
                "off, report left",
                None,
                view(Some((down.clone(), BfdHealth::Down))),
                "Unknown",
                "BfdDisabled",
                None,
            ),
            (
                "not set up yet",
                Some(TIMERS),
                view(None),
                "Unknown",
                "BfdPending",
                None,
            ),
            (
                "no answer yet",
                Some(TIMERS),
                view(Some((BfdSession::default(), BfdHealth::Pending))),
                "Unknown",
                "BfdPending",
                None,
            ),
            (
                "up",
                Some(TIMERS),
                view(Some((session("up", "No Diagnostic", 1), BfdHealth::Up))),
                "True",
                "BfdUp",
                Some(1),
            ),
            (
                "down",
                Some(TIMERS),
                view(Some((down.clone(), BfdHealth::Down))),
                "False",
                "ControlDetectionTimeExpired",
                Some(2),
            ),
            (
                "neighbour down",
                Some(TIMERS),
                view(Some((
                    session("down", "Neighbor Signaled Session Down", 4),
                    BfdHealth::Down,
                ))),
                "False",
                "NeighborSignaledSessionDown",
                Some(4),
            ),
            (
                "flapping",
                Some(TIMERS),
                view(Some((down.clone(), BfdHealth::Flapping { flaps: 3 }))),
                "False",
                "Flapping",
                Some(2),
            ),
            (
                "OVSDB out of reach",
                Some(TIMERS),
                unavailable,
                "Unknown",
                "OvsUnavailable",
                None,
            ),
        ];
        for (what, bfd, view, status, reason, flaps) in cases {
            let s = tunnel_port_status(&tp(bfd), &view, at(0));
            let c = find(&s.conditions, REACHABLE).unwrap();
            assert_eq!(
                (c.status.as_str(), c.reason.as_str()),
                (status, reason),
                "{what}"
            );
            assert!(!c.message.is_empty(), "{what}");
            assert_eq!(c.observed_generation, Some(2), "{what}");
            assert_eq!(s.bfd.as_ref().and_then(|b| b.flap_count), flaps, "{what}");
            // Ready is the first condition, as before.
            assert_eq!(s.conditions[0].type_, READY, "{what}");
        }
    }

    /// lastTransitionTime of Reachable is the last change; the same session gives the
    /// same status (so nothing is written).
    #[test]
    fn an_unchanged_session_gives_an_identical_status() {
        let mut t = tp(Some(TIMERS));
        let up = view(Some((session("up", "No Diagnostic", 1), BfdHealth::Up)));
        let first = tunnel_port_status(&t, &up, at(0));
        t.status = Some(first.clone());
        assert_eq!(tunnel_port_status(&t, &up, at(50)), first);
        let down = view(Some((
            session("down", "Control Detection Time Expired", 2),
            BfdHealth::Down,
        )));
        let second = tunnel_port_status(&t, &down, at(60));
        let c = find(&second.conditions, REACHABLE).unwrap();
        assert_eq!(c.last_transition_time, Time(at(60)));
        assert_eq!(
            second.bfd,
            Some(TunnelBfdStatus {
                state: Some("down".into()),
                remote_state: Some("down".into()),
                diagnostic: Some("Control Detection Time Expired".into()),
                flap_count: Some(2),
            })
        );
        assert!(c.message.contains("192.0.2.10"), "{}", c.message);
    }

    #[test]
    fn metrics_states_from_the_view() {
        let cases = [
            (view(None), TunnelReachability::Disabled),
            (
                view(Some((BfdSession::default(), BfdHealth::Pending))),
                TunnelReachability::Pending,
            ),
            (
                view(Some((BfdSession::default(), BfdHealth::Up))),
                TunnelReachability::Up,
            ),
            (
                view(Some((BfdSession::default(), BfdHealth::Down))),
                TunnelReachability::Down,
            ),
            (
                view(Some((
                    BfdSession::default(),
                    BfdHealth::Flapping { flaps: 3 },
                ))),
                TunnelReachability::Flapping,
            ),
        ];
        for (view, state) in cases {
            assert_eq!(
                reachability_states(&view),
                vec![("n1.vxlan.192-0-2-10".to_string(), state)]
            );
        }
        let mut gone = view(None);
        gone.ovs.ports.clear();
        assert_eq!(reachability_states(&gone), vec![]);
    }
}
