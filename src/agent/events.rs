//! Kubernetes Events the agent records, so that `kubectl events` shows what went wrong in
//! OVS and what the agent repaired: a TunnelPort turning `OvsError` or
//! `ForeignPortConflict`, flows repaired after drift, and the remote VTEP turning
//! unreachable, flapping or reachable again (BFD; at most one such event per TunnelPort
//! per [`REACHABILITY_EVENT_INTERVAL`], and the latest change is always told: one that
//! came too soon is recorded once the interval is over, if it still holds).
//!
//! [`decide_events`] (pure, time passed in) says which to record; [`publish`] records
//! them. Flow repairs are counted for the whole bridge (the flow sync does not say whose
//! flows drifted), so they are recorded on the Node rather than on every TunnelPort. A
//! port repair is counted by the OVS loop itself (`Observed::port_repairs`: a port that
//! was Ready and had to be created again — someone deleted it, or vswitchd lost it), so no
//! short-lived state between two rounds can be missed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Resource;
use kube::runtime::events::Recorder;

use crate::api::TunnelPort;
use crate::api::conditions::tunnel_reason;
use crate::ovs::bfd::{FLAP_HOLD, FLAP_WINDOW};
use crate::ovs::{BfdHealth, BfdReport, PortReport, PortState};

/// At most one event per object and reason in this time. A port flapping between Ready
/// and an error would otherwise make two API writes a second; 5 minutes still shows an
/// ongoing problem many times within an event's default lifetime (1 hour).
pub const EVENT_INTERVAL: Duration = Duration::from_secs(300);

/// Reason of the event for flows repaired on the node's bridge.
pub const FLOWS_REPAIRED: &str = "FlowsRepaired";
/// Reason of the event for a TunnelPort's OVS port put back after it was lost.
pub const PORT_REPAIRED: &str = "PortRepaired";
/// Reason of the event for a remote VTEP that answers BFD again.
pub const TUNNEL_REACHABLE: &str = "TunnelReachable";
/// Reason of the event for a remote VTEP whose BFD session went down.
pub const TUNNEL_UNREACHABLE: &str = "TunnelUnreachable";
/// Reason of the event for a tunnel whose BFD session flaps.
pub const TUNNEL_FLAPPING: &str = "TunnelFlapping";
/// At most one reachability event per TunnelPort in this time.
pub const REACHABILITY_EVENT_INTERVAL: Duration = Duration::from_secs(30);

/// Which object an event is about.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Subject {
    /// A TunnelPort of this node, by name.
    TunnelPort(String),
    /// This node (bridge-wide happenings).
    Node,
}

/// One event to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentEvent {
    /// The object it is about.
    pub subject: Subject,
    /// CamelCase reason.
    pub reason: &'static str,
    /// What happened, in words.
    pub note: String,
    /// Warning (something is wrong) or Normal.
    pub warning: bool,
}

/// What [`decide_events`] remembers between rounds.
#[derive(Clone, Debug, Default)]
pub struct EventMemory {
    /// TunnelPorts failing in the last round, with the reason.
    failing: BTreeMap<String, &'static str>,
    /// The flow sync's repair count in the last round.
    repairs: u64,
    /// The OVS loop's repair count per TunnelPort in the last round.
    port_repairs: BTreeMap<String, u64>,
    /// When each (object, reason) was last recorded.
    sent: BTreeMap<(Subject, &'static str), Instant>,
    /// Per TunnelPort running BFD: the reachability the last event told (none yet: up).
    told: BTreeMap<String, Reach>,
    /// When each TunnelPort's last reachability event was recorded.
    reach_sent: BTreeMap<String, Instant>,
}

/// What a reachability event tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reach {
    Up,
    Down,
    Flapping,
}

/// The event reason for a port state that deserves one.
fn failure_reason(state: &PortState) -> Option<&'static str> {
    match state {
        PortState::OvsError(_) => Some(tunnel_reason::OVS_ERROR),
        PortState::ForeignConflict(_) => Some(tunnel_reason::FOREIGN_PORT),
        _ => None,
    }
}

/// The events of this round: a TunnelPort newly failing (or failing for another reason),
/// its port put back (`port_repairs` grew), the flow repair count grew; each dropped when
/// the same object and reason had one less than [`EVENT_INTERVAL`] ago. `ports` is what
/// OVS shows per TunnelPort.
pub fn decide_events(
    memory: &mut EventMemory,
    ports: &BTreeMap<String, PortReport>,
    port_repairs: &BTreeMap<String, u64>,
    repairs: u64,
    now: Instant,
) -> Vec<AgentEvent> {
    let mut candidates = put_back(memory, ports, port_repairs);
    let mut failing = BTreeMap::new();
    for (name, report) in ports {
        let Some(reason) = failure_reason(&report.state) else {
            continue;
        };
        failing.insert(name.clone(), reason);
        if memory.failing.get(name) != Some(&reason) {
            candidates.push(AgentEvent {
                subject: Subject::TunnelPort(name.clone()),
                reason,
                note: report.state.message().unwrap_or_default().to_string(),
                warning: true,
            });
        }
    }
    memory.failing = failing;
    if repairs > memory.repairs {
        let n = repairs - memory.repairs;
        candidates.push(AgentEvent {
            subject: Subject::Node,
            reason: FLOWS_REPAIRED,
            note: format!(
                "put back the OpenFlow rules of the bridge after they drifted ({n} repair round(s))"
            ),
            warning: false,
        });
    }
    memory.repairs = repairs;
    memory
        .sent
        .retain(|_, at| now.saturating_duration_since(*at) < EVENT_INTERVAL);
    let mut events: Vec<AgentEvent> = candidates
        .into_iter()
        .filter(|e| {
            // A suppressed event does not restart the interval: the next one is due
            // `EVENT_INTERVAL` after the last one recorded.
            let key = (e.subject.clone(), e.reason);
            let due = !memory.sent.contains_key(&key);
            if due {
                memory.sent.insert(key, now);
            }
            due
        })
        .collect();
    events.extend(reachability_events(memory, ports, now));
    events
}

/// The reachability events of this round: per TunnelPort running BFD, one when its
/// judgement (up, down, flapping; pending tells nothing) differs from what the last one
/// told, unless one was recorded less than [`REACHABILITY_EVENT_INTERVAL`] ago — then
/// it waits for a later round, and is dropped if the tunnel is back to what was told.
fn reachability_events(
    memory: &mut EventMemory,
    ports: &BTreeMap<String, PortReport>,
    now: Instant,
) -> Vec<AgentEvent> {
    let runs_bfd = |name: &String| ports.get(name).is_some_and(|r| r.bfd.is_some());
    memory.told.retain(|name, _| runs_bfd(name));
    memory.reach_sent.retain(|name, at| {
        runs_bfd(name) && now.saturating_duration_since(*at) < REACHABILITY_EVENT_INTERVAL
    });
    let mut events = Vec::new();
    for (name, report) in ports {
        let Some(bfd) = &report.bfd else {
            continue;
        };
        let reach = match bfd.health {
            BfdHealth::Pending => continue,
            BfdHealth::Up => Reach::Up,
            BfdHealth::Down => Reach::Down,
            BfdHealth::Flapping { .. } => Reach::Flapping,
        };
        let told = memory.told.get(name).copied().unwrap_or(Reach::Up);
        if reach == told || memory.reach_sent.contains_key(name) {
            continue;
        }
        memory.told.insert(name.clone(), reach);
        memory.reach_sent.insert(name.clone(), now);
        events.push(reachability_event(name, &report.interface_name, bfd, reach));
    }
    events
}

fn reachability_event(name: &str, interface: &str, bfd: &BfdReport, reach: Reach) -> AgentEvent {
    let s = &bfd.session;
    let (reason, warning, note) = match reach {
        Reach::Up => (
            TUNNEL_REACHABLE,
            false,
            format!("BFD on {interface}: the session to the remote VTEP is up"),
        ),
        Reach::Down => (
            TUNNEL_UNREACHABLE,
            true,
            format!(
                "BFD on {interface}: the session to the remote VTEP is {} (remote {}): {}",
                s.state.as_deref().unwrap_or("down"),
                s.remote_state.as_deref().unwrap_or("unknown"),
                s.diagnostic.as_deref().unwrap_or("no diagnostic"),
            ),
        ),
        Reach::Flapping => (
            TUNNEL_FLAPPING,
            true,
            format!(
                "BFD on {interface}: the session to the remote VTEP flapped {} times within \
                 {} s; reported as flapping until it holds for {} s",
                match bfd.health {
                    BfdHealth::Flapping { flaps } => flaps,
                    _ => 0,
                },
                FLAP_WINDOW.as_secs(),
                FLAP_HOLD.as_secs()
            ),
        ),
    };
    AgentEvent {
        subject: Subject::TunnelPort(name.to_string()),
        reason,
        note,
        warning,
    }
}

/// TunnelPorts whose port the OVS loop created again since the last round.
fn put_back(
    memory: &mut EventMemory,
    ports: &BTreeMap<String, PortReport>,
    port_repairs: &BTreeMap<String, u64>,
) -> Vec<AgentEvent> {
    let events = port_repairs
        .iter()
        .filter(|(name, n)| **n > memory.port_repairs.get(*name).copied().unwrap_or(0))
        .map(|(name, _)| AgentEvent {
            subject: Subject::TunnelPort(name.clone()),
            reason: PORT_REPAIRED,
            note: match ports.get(name).and_then(|r| r.ofport) {
                Some(ofport) => {
                    format!("the OVS port was removed or lost; put it back (ofport {ofport})")
                }
                None => "the OVS port was removed or lost; putting it back".to_string(),
            },
            warning: false,
        })
        .collect();
    memory.port_repairs = port_repairs.clone();
    events
}

/// The object reference of an event's subject (TunnelPorts and Nodes are cluster-scoped:
/// their events land in `default`). `None` for a TunnelPort no longer known.
fn reference(subject: &Subject, node: &str, objects: &[TunnelPort]) -> Option<ObjectReference> {
    match subject {
        Subject::TunnelPort(name) => objects
            .iter()
            .find(|tp| tp.metadata.name.as_deref() == Some(name))
            .map(|tp| tp.object_ref(&())),
        Subject::Node => Some(ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node.to_string()),
            ..ObjectReference::default()
        }),
    }
}

/// Records the events in the background, each bounded by `timeout`: an event is a
/// courtesy, so a failure is logged and never retried, and it never holds up the loop.
pub fn publish(
    recorder: &Recorder,
    events: Vec<AgentEvent>,
    node: &str,
    objects: &[TunnelPort],
    timeout: Duration,
) {
    for event in events {
        let Some(reference) = reference(&event.subject, node, objects) else {
            continue;
        };
        let recorder = recorder.clone();
        tokio::spawn(async move {
            let ev = crate::events::event(event.warning, event.reason, &event.note);
            match tokio::time::timeout(timeout, recorder.publish(&ev, &reference)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, reason = event.reason, "recording an event failed")
                }
                Err(_) => tracing::warn!(reason = event.reason, "recording an event took too long"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(state: PortState) -> PortReport {
        PortReport {
            interface_name: "tun".into(),
            ofport: None,
            state,
            bfd: None,
        }
    }

    fn ports(states: &[(&str, PortState)]) -> BTreeMap<String, PortReport> {
        states
            .iter()
            .map(|(n, s)| (n.to_string(), port(s.clone())))
            .collect()
    }

    fn tp(name: &str) -> Subject {
        Subject::TunnelPort(name.into())
    }

    #[test]
    fn failures_and_repairs_are_recorded_at_most_once_per_interval() {
        let err = || PortState::OvsError("File exists".into());
        let foreign = || PortState::ForeignConflict("port a exists".into());
        let t0 = Instant::now();
        let s = Duration::from_secs;
        // One agent's rounds: (seconds, ports, repairs) → the events' (subject, reason).
        type Round = (
            u64,
            Vec<(&'static str, PortState)>,
            u64,
            Vec<(Subject, &'static str)>,
        );
        let rounds: Vec<Round> = vec![
            (0, vec![("a", PortState::Ready)], 0, vec![]),
            (1, vec![("a", err())], 0, vec![(tp("a"), "OvsError")]),
            // Still failing: nothing new.
            (2, vec![("a", err())], 0, vec![]),
            // Flaps back and forth within the interval: suppressed.
            (3, vec![("a", PortState::Ready)], 0, vec![]),
            (4, vec![("a", err())], 0, vec![]),
            // Another reason is another event; a second port its own.
            (
                5,
                vec![("a", foreign()), ("b", err())],
                0,
                vec![(tp("a"), "ForeignPortConflict"), (tp("b"), "OvsError")],
            ),
            // Pending and Invalid are not events.
            (
                6,
                vec![
                    ("a", PortState::Pending),
                    ("b", PortState::Invalid("x".into())),
                ],
                0,
                vec![],
            ),
            // Repairs grew: one event on the node; again within the interval: suppressed.
            (7, vec![], 2, vec![(Subject::Node, FLOWS_REPAIRED)]),
            (8, vec![], 3, vec![]),
            (9, vec![], 3, vec![]),
            // After the interval the same failure is recorded again.
            (302, vec![("a", err())], 3, vec![(tp("a"), "OvsError")]),
            (400, vec![], 4, vec![(Subject::Node, FLOWS_REPAIRED)]),
        ];
        let mut memory = EventMemory::default();
        for (at, states, repairs, want) in rounds {
            let none = BTreeMap::new();
            let got = decide_events(&mut memory, &ports(&states), &none, repairs, t0 + s(at));
            let got: Vec<(Subject, &str)> =
                got.into_iter().map(|e| (e.subject, e.reason)).collect();
            assert_eq!(got, want, "round at {at}s");
        }
    }

    #[test]
    fn an_event_says_what_ovs_said() {
        let mut memory = EventMemory::default();
        let got = decide_events(
            &mut memory,
            &ports(&[("a", PortState::OvsError("File exists".into()))]),
            &BTreeMap::new(),
            0,
            Instant::now(),
        );
        assert_eq!(
            got,
            vec![AgentEvent {
                subject: tp("a"),
                reason: "OvsError",
                note: "File exists".into(),
                warning: true,
            }]
        );
    }

    /// Reachability events follow the damped BFD judgement: one per change, at most one
    /// per TunnelPort per 30 s; a change that comes too soon is told once the interval is
    /// over if it still holds, and not at all if the tunnel went back in the meantime.
    #[test]
    fn reachability_changes_are_told_at_most_once_per_interval() {
        use crate::api::TunnelBfd;
        use crate::ovs::BfdSession;
        let bfd = |health: Option<BfdHealth>| {
            let mut p = port(PortState::Ready);
            p.bfd = health.map(|health| BfdReport {
                timers: TunnelBfd {
                    min_rx_ms: 1000,
                    min_tx_ms: 1000,
                },
                session: BfdSession {
                    state: Some("down".into()),
                    remote_state: Some("down".into()),
                    diagnostic: Some("Control Detection Time Expired".into()),
                    ..BfdSession::default()
                },
                health,
            });
            BTreeMap::from([("a".to_string(), p)])
        };
        use BfdHealth::*;
        let t0 = Instant::now();
        // (second, health of "a" (None: no BFD)) → the event reasons.
        let rounds: Vec<(u64, Option<BfdHealth>, Vec<&str>)> = vec![
            (0, Some(Pending), vec![]),
            // Up is what is assumed: no event for a tunnel coming up.
            (2, Some(Up), vec![]),
            (10, Some(Down), vec![TUNNEL_UNREACHABLE]),
            (11, Some(Down), vec![]),
            // Back up too soon: told once the interval is over.
            (15, Some(Up), vec![]),
            (39, Some(Up), vec![]),
            (40, Some(Up), vec![TUNNEL_REACHABLE]),
            // Flapping too soon, then back to what was told: nothing to tell.
            (50, Some(Flapping { flaps: 3 }), vec![]),
            (60, Some(Up), vec![]),
            (70, Some(Up), vec![]),
            (75, Some(Flapping { flaps: 3 }), vec![TUNNEL_FLAPPING]),
            (80, Some(Down), vec![]),
            (105, Some(Down), vec![TUNNEL_UNREACHABLE]),
            // BFD off: forgotten; a tunnel that starts down is told at once.
            (110, None, vec![]),
            (111, Some(Down), vec![TUNNEL_UNREACHABLE]),
        ];
        let mut memory = EventMemory::default();
        for (second, health, want) in rounds {
            let got = decide_events(
                &mut memory,
                &bfd(health),
                &BTreeMap::new(),
                0,
                t0 + Duration::from_secs(second),
            );
            assert!(got.iter().all(|e| e.subject == tp("a")));
            let got: Vec<&str> = got.iter().map(|e| e.reason).collect();
            assert_eq!(got, want, "at {second} s");
        }
        let note = decide_events(
            &mut EventMemory::default(),
            &bfd(Some(Down)),
            &BTreeMap::new(),
            0,
            t0,
        );
        assert_eq!(
            note[0].note,
            "BFD on tun: the session to the remote VTEP is down (remote down): \
             Control Detection Time Expired"
        );
        assert!(note[0].warning);
    }

    #[test]
    fn a_port_the_ovs_loop_put_back_is_a_repair() {
        let t0 = Instant::now();
        // (repair counts) → TunnelPorts with a PortRepaired event.
        type Round = (Vec<(&'static str, u64)>, Vec<&'static str>);
        let rounds: Vec<Round> = vec![
            (vec![], vec![]),
            (vec![("a", 1)], vec!["a"]),
            (vec![("a", 1)], vec![]),
            (vec![("a", 2), ("b", 1)], vec!["a", "b"]),
        ];
        let mut memory = EventMemory::default();
        for (i, (counts, want)) in rounds.into_iter().enumerate() {
            let counts = counts
                .into_iter()
                .map(|(n, c)| (n.to_string(), c))
                .collect();
            // Far apart, so the rate limit plays no part here.
            let at = t0 + EVENT_INTERVAL * (i as u32 + 1);
            let got = decide_events(&mut memory, &BTreeMap::new(), &counts, 0, at);
            let got: Vec<Subject> = got.into_iter().map(|e| e.subject).collect();
            let want: Vec<Subject> = want.into_iter().map(tp).collect();
            assert_eq!(got, want, "round {i}");
        }
    }
}
