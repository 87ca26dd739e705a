//! Kubernetes Events the agent records, so that `kubectl events` shows what went wrong in
//! OVS and what the agent repaired: a TunnelPort turning `OvsError` or
//! `ForeignPortConflict`, and flows repaired after drift.
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
use crate::ovs::{PortReport, PortState};

/// At most one event per object and reason in this time. A port flapping between Ready
/// and an error would otherwise make two API writes a second; 5 minutes still shows an
/// ongoing problem many times within an event's default lifetime (1 hour).
pub const EVENT_INTERVAL: Duration = Duration::from_secs(300);

/// Reason of the event for flows repaired on the node's bridge.
pub const FLOWS_REPAIRED: &str = "FlowsRepaired";
/// Reason of the event for a TunnelPort's OVS port put back after it was lost.
pub const PORT_REPAIRED: &str = "PortRepaired";

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
    candidates
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
        .collect()
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
