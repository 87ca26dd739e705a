//! A RemoteDevice's status, computed from the plan and the TunnelPorts the agents report
//! on. Pure: the same inputs give the same status, so a resync with nothing new writes
//! nothing.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;

use crate::api::conditions::{self, NODES_SKIPPED, REACHABLE, READY, device_reason, tunnel_reason};
use crate::api::validate;
use crate::api::{
    DeviceKey, RemoteDevice, RemoteDeviceStatus, TunnelDevice, TunnelPort, device_bfd,
};
use crate::planner::{DeviceOutcome, FastHash};

/// How many node names a message lists before it says "and N more".
const LIST_NODES: usize = 5;

/// Start of the `NodesSkipped` message naming the nodes skipped because the device's VTEP
/// is their own tunnel IP.
pub const SELF_TUNNEL_NOTE: &str = "Skipped nodes whose own tunnel IP is the VTEP:";

/// Whether a TunnelPort's agent reported, for its current generation, that OVS refused it.
pub fn tunnel_port_failed(port: &TunnelPort) -> Option<String> {
    let status = port.status.as_ref()?;
    if status.observed_generation.is_none()
        || status.observed_generation != port.metadata.generation
    {
        return None;
    }
    let ready = status.conditions.iter().find(|c| c.type_ == READY)?;
    let failed = ready.status == "False"
        && (ready.reason == tunnel_reason::OVS_ERROR
            || ready.reason == tunnel_reason::FOREIGN_PORT);
    failed.then(|| {
        if ready.message.is_empty() {
            ready.reason.clone()
        } else {
            ready.message.clone()
        }
    })
}

/// Whether a TunnelPort runs BFD and its agent reports the remote VTEP `Reachable`. The
/// condition describes the live session, not one generation of the spec, so it counts
/// also while the agent catches up with a new device list.
pub fn tunnel_port_reachable(port: &TunnelPort) -> bool {
    port.spec.bfd.is_some()
        && port
            .status
            .as_ref()
            .is_some_and(|s| conditions::is_true(&s.conditions, REACHABLE))
}

/// `a, b, c` or `a, b, c, d, e and 3 more`.
fn list_nodes<S: AsRef<str>>(nodes: &[S]) -> String {
    let shown: Vec<&str> = nodes.iter().take(LIST_NODES).map(AsRef::as_ref).collect();
    let mut text = shown.join(", ");
    if nodes.len() > LIST_NODES {
        text.push_str(&format!(" and {} more", nodes.len() - LIST_NODES));
    }
    text
}

/// The entry of device `key` in a TunnelPort's device list. Lists are sorted by
/// namespace/name (the planner writes them so), which makes this a binary search; a list
/// someone else reordered is searched linearly.
fn find_device<'a>(devices: &'a [TunnelDevice], key: &DeviceKey) -> Option<&'a TunnelDevice> {
    let wanted = (key.namespace.as_str(), key.name.as_str());
    match devices.binary_search_by(|d| (d.namespace.as_str(), d.name.as_str()).cmp(&wanted)) {
        Ok(i) => Some(&devices[i]),
        Err(_) => devices
            .iter()
            .find(|d| (d.namespace.as_str(), d.name.as_str()) == wanted),
    }
}

/// What a device's status needs to know of one desired TunnelPort, worked out once per
/// pass rather than once per device and node.
#[derive(Clone, Debug)]
pub struct PortView<'a> {
    /// The planned object.
    pub desired: &'a TunnelPort,
    /// The object in the cache, if any.
    pub stored: Option<&'a TunnelPort>,
    /// Whether the stored device list is exactly the planned one (the usual case), so
    /// every planned device is carried without looking it up.
    pub devices_match: bool,
    /// Stored and Ready for its current generation.
    pub ready: bool,
    /// What OVS said when it refused the port (current generation).
    pub failed: Option<String>,
    /// Stored, runs BFD, and its agent reports the remote VTEP `Reachable`.
    pub reachable: bool,
}

/// One [`PortView`] per desired TunnelPort name, and the verdicts worked out from them.
#[derive(Debug, Default)]
pub struct PortViews<'a> {
    by_name: HashMap<&'a str, PortView<'a>, FastHash>,
    /// Verdicts that hold for every device of a (tunnel, selector) group, by the address
    /// of the group's shared node → TunnelPort map (alive for the whole pass, so never
    /// reused) and whether nodes were skipped. All devices of a group land on the same
    /// ports, so at 1000 nodes × 10 000 devices this turns 10 million lookups into one
    /// walk per group. `None`: some port on the way needs each device looked up.
    shared: RefCell<HashMap<(usize, bool), Option<Verdict>>>,
}

impl<'a> PortViews<'a> {
    fn get(&self, name: &str) -> Option<&PortView<'a>> {
        self.by_name.get(name)
    }
}

/// One [`PortView`] per desired TunnelPort name.
pub fn port_views<'a>(
    desired: &BTreeMap<&'a str, &'a Arc<TunnelPort>>,
    stored: &BTreeMap<&'a str, &'a TunnelPort>,
) -> PortViews<'a> {
    let by_name = desired
        .iter()
        .map(|(name, want)| {
            let want: &'a TunnelPort = want;
            let have = stored.get(name).copied();
            let view = PortView {
                desired: want,
                stored: have,
                devices_match: have.is_some_and(|h| h.spec.devices == want.spec.devices),
                ready: have.is_some_and(TunnelPort::is_ready),
                failed: have.and_then(tunnel_port_failed),
                reachable: have.is_some_and(tunnel_port_reachable),
            };
            (*name, view)
        })
        .collect();
    PortViews {
        by_name,
        shared: RefCell::default(),
    }
}

impl PortView<'_> {
    /// Whether [`PortView::carries`] gives the same answer for every device: nothing is
    /// stored, or the stored list is exactly the planned one.
    fn carries_any_alike(&self) -> bool {
        self.stored.is_none() || self.devices_match
    }

    /// Whether the stored object carries exactly the planned entry of device `key`.
    fn carries(&self, key: &DeviceKey) -> bool {
        let Some(stored) = self.stored else {
            return false;
        };
        if self.devices_match {
            return true;
        }
        match find_device(&self.desired.spec.devices, key) {
            Some(want) => find_device(&stored.spec.devices, key) == Some(want),
            None => false,
        }
    }
}

/// The status `device` should have: `Ready`, and `NodesSkipped` while selected nodes are
/// left out because the device's VTEP is their own tunnel IP.
///
/// `ports` describes every desired TunnelPort by name. A node counts as ready when its
/// stored TunnelPort carries exactly the planned entry of this device and the agent
/// reported Ready for that generation.
pub fn device_status(
    device: &RemoteDevice,
    outcome: &DeviceOutcome,
    ports: &PortViews<'_>,
    now: Timestamp,
) -> RemoteDeviceStatus {
    let generation = device.metadata.generation;
    let previous = device
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let verdict = readiness(&DeviceKey::of(device), outcome, ports);
    let mut conditions = vec![conditions::condition(
        previous,
        READY,
        verdict.ok,
        verdict.reason,
        verdict.message,
        generation,
        now,
    )];
    if let DeviceOutcome::Planned {
        self_tunnel_nodes, ..
    } = outcome
        && !self_tunnel_nodes.is_empty()
    {
        conditions.push(conditions::condition(
            previous,
            NODES_SKIPPED,
            true,
            device_reason::SELF_TUNNEL,
            format!("{SELF_TUNNEL_NOTE} {}.", list_nodes(self_tunnel_nodes)),
            generation,
            now,
        ));
    }
    let ready = u32::try_from(verdict.ready).unwrap_or(u32::MAX);
    let total = u32::try_from(verdict.total).unwrap_or(u32::MAX);
    // Only for a planned device that runs BFD: otherwise there is nothing to count.
    let reachable = (matches!(outcome, DeviceOutcome::Planned { .. })
        && device_bfd(&device.spec).is_some())
    .then(|| u32::try_from(verdict.reachable).unwrap_or(u32::MAX));
    RemoteDeviceStatus {
        observed_generation: generation,
        conditions,
        ready_nodes: ready,
        total_nodes: total,
        ready: Some(format!("{ready}/{total}")),
        reachable_nodes: reachable,
        reachable: reachable.map(|r| format!("{r}/{total}")),
    }
}

/// Whether going from `old` to `new` only moves the counts along: the same generation and
/// node total, the same conditions (type, status, reason; only `Ready`'s message may
/// differ). Such an update may wait a while — during a rollout the Ready count of every
/// device changes with each agent's report, and writing each step would crowd out the
/// TunnelPort writes the user is waiting for. Turning Ready, failing or a new node set is
/// never progress only.
pub fn progress_only(old: Option<&RemoteDeviceStatus>, new: &RemoteDeviceStatus) -> bool {
    let Some(old) = old else {
        return false;
    };
    let same_condition = |a: &Condition, b: &Condition| {
        a.type_ == b.type_
            && a.status == b.status
            && a.reason == b.reason
            && a.observed_generation == b.observed_generation
            && (a.message == b.message || a.type_ == READY)
    };
    old.observed_generation == new.observed_generation
        && old.total_nodes == new.total_nodes
        && old.conditions.len() == new.conditions.len()
        && old
            .conditions
            .iter()
            .zip(&new.conditions)
            .all(|(a, b)| same_condition(a, b))
}

/// The `Ready` condition's verdict and the node counts.
#[derive(Clone, Debug)]
struct Verdict {
    ok: bool,
    reason: &'static str,
    message: String,
    ready: usize,
    total: usize,
    /// Nodes whose TunnelPort carrying the device runs BFD and reports it Reachable.
    reachable: usize,
}

fn readiness(key: &DeviceKey, outcome: &DeviceOutcome, ports: &PortViews<'_>) -> Verdict {
    let refused = |reason, message| Verdict {
        ok: false,
        reason,
        message,
        ready: 0,
        total: 0,
        reachable: 0,
    };
    match outcome {
        DeviceOutcome::Invalid(errors) => refused(
            device_reason::INVALID_SPEC,
            format!("Invalid spec: {}", validate::join(errors)),
        ),
        DeviceOutcome::Conflict { message, .. } => {
            refused(device_reason::CONFLICT, message.clone())
        }
        DeviceOutcome::Planned {
            tunnel_ports,
            self_tunnel_nodes,
        } => {
            let some_skipped = !self_tunnel_nodes.is_empty();
            let shared = (Arc::as_ptr(tunnel_ports) as usize, some_skipped);
            let known = ports.shared.borrow().get(&shared).cloned();
            match known {
                Some(Some(verdict)) => verdict,
                Some(None) => planned_readiness(key, tunnel_ports, some_skipped, ports),
                None => {
                    let verdict = planned_readiness(key, tunnel_ports, some_skipped, ports);
                    let alike = tunnel_ports
                        .values()
                        .all(|name| ports.get(name).is_none_or(PortView::carries_any_alike));
                    let keep = alike.then(|| verdict.clone());
                    ports.shared.borrow_mut().insert(shared, keep);
                    verdict
                }
            }
        }
    }
}

/// Readiness of a planned device: every node whose TunnelPort carries it and is Ready.
fn planned_readiness(
    key: &DeviceKey,
    tunnel_ports: &BTreeMap<String, String>,
    some_skipped: bool,
    ports: &PortViews<'_>,
) -> Verdict {
    let total = tunnel_ports.len();
    let mut ready_nodes = Vec::new();
    let mut waiting = Vec::new();
    let mut failed = Vec::new();
    let mut reachable = 0;
    for (node, name) in tunnel_ports {
        let view = ports.get(name.as_str());
        let carried = view.is_some_and(|v| v.carries(key));
        if carried && view.is_some_and(|v| v.reachable) {
            reachable += 1;
        }
        match view {
            Some(v) if carried && v.ready => ready_nodes.push(node.as_str()),
            Some(v) if carried => match &v.failed {
                Some(why) => failed.push(format!("{node} ({why})")),
                None => waiting.push(node.as_str()),
            },
            _ => waiting.push(node.as_str()),
        }
    }
    let ready = ready_nodes.len();
    let (ok, reason, message) = if total == 0 && some_skipped {
        let message = "No node needs a tunnel to this VTEP.".to_string();
        (false, device_reason::NO_MATCHING_NODES, message)
    } else if total == 0 {
        let message = "The node selector matches no node.".to_string();
        (false, device_reason::NO_MATCHING_NODES, message)
    } else if !failed.is_empty() {
        let message = format!(
            "{ready}/{total} nodes ready; OVS refused the tunnel on {}.",
            list_nodes(&failed)
        );
        (false, device_reason::TUNNEL_FAILED, message)
    } else if ready == total {
        (
            true,
            device_reason::READY,
            format!("{ready}/{total} nodes ready."),
        )
    } else {
        let message = format!(
            "{ready}/{total} nodes ready; waiting for {}.",
            list_nodes(&waiting)
        );
        (false, device_reason::PENDING, message)
    };
    Verdict {
        ok,
        reason,
        message,
        ready,
        total,
        reachable,
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

    use super::*;
    use crate::api::{DeviceBfd, TunnelBfd, TunnelPortStatus};
    use crate::controller::tests::{at, device, node, stored};
    use crate::planner::plan_tunnels;

    fn condition(type_: &str, status: &str) -> Condition {
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: "R".into(),
            message: String::new(),
            observed_generation: Some(1),
            last_transition_time: Time(at(5)),
        }
    }

    /// A stored TunnelPort with the agent's report: Ready True, and Reachable as given.
    fn reported(desired: &TunnelPort, reachable: Option<&str>) -> TunnelPort {
        let mut tp = stored(desired);
        let mut conditions = vec![condition(READY, "True")];
        conditions.extend(reachable.map(|s| condition(REACHABLE, s)));
        tp.status = Some(TunnelPortStatus {
            observed_generation: tp.metadata.generation,
            conditions,
            ofport: Some(1),
            ..TunnelPortStatus::default()
        });
        tp
    }

    /// Devices of one group share a verdict only while no port needs them looked up one
    /// by one: when a stored list lags behind for one device, each device gets its own
    /// count, whichever device is asked first.
    #[test]
    fn a_group_shares_its_verdict_only_when_every_port_carries_it_alike() {
        let nodes = [node("n1", "198.51.100.1"), node("n2", "198.51.100.2")];
        let a = device("t1", "a", "192.0.2.10", 5001, "52:54:00:00:00:01");
        let b = device("t1", "b", "192.0.2.10", 5002, "52:54:00:00:00:02");
        let devices = [a.clone(), b.clone()];
        let plan = plan_tunnels(&devices, &nodes);
        let desired: BTreeMap<&str, &Arc<TunnelPort>> = plan
            .tunnel_ports
            .iter()
            .map(|tp| (tp.metadata.name.as_deref().unwrap(), tp))
            .collect();
        // (stored lists as planned, expected ready counts of a and b).
        let cases = [(true, ["2/2", "2/2"]), (false, ["2/2", "1/2"])];
        for (alike, want) in cases {
            let stored: Vec<TunnelPort> = plan
                .tunnel_ports
                .iter()
                .enumerate()
                .map(|(i, tp)| {
                    let mut tp = reported(tp, None);
                    if !alike && i == 1 {
                        // n2's stored list still has b's old VNI.
                        Arc::make_mut(&mut tp.spec.devices)[1].vni = 4999;
                    }
                    tp
                })
                .collect();
            let have: BTreeMap<&str, &TunnelPort> = stored
                .iter()
                .map(|tp| (tp.metadata.name.as_deref().unwrap(), tp))
                .collect();
            for order in [[0, 1], [1, 0]] {
                let views = port_views(&desired, &have);
                let mut got = [String::new(), String::new()];
                for i in order {
                    let d = &devices[i];
                    let outcome = &plan.devices[&DeviceKey::of(d)];
                    got[i] = device_status(d, outcome, &views, at(100)).ready.unwrap();
                }
                assert_eq!(got, want, "alike {alike}, order {order:?}");
            }
        }
    }

    /// `reachable` counts the nodes whose tunnel carrying the device runs BFD and reports
    /// Reachable=True, out of every node that should reach it; unset without BFD.
    #[test]
    fn reachable_counts_nodes_whose_tunnel_reports_the_vtep_reachable() {
        let nodes = [
            node("n1", "198.51.100.1"),
            node("n2", "198.51.100.2"),
            node("n3", "198.51.100.3"),
        ];
        let with_bfd = |bfd: Option<DeviceBfd>| {
            let mut d = device("t1", "d1", "192.0.2.10", 5001, "52:54:00:00:00:01");
            d.spec.bfd = bfd;
            d
        };
        let on = Some(DeviceBfd {
            enabled: Some(true),
            ..DeviceBfd::default()
        });
        // Per case: the device's bfd, the Reachable status per node's stored TunnelPort
        // (None: no condition), whether the stored object runs BFD → (reachableNodes,
        // reachable).
        type Case = (
            Option<DeviceBfd>,
            [Option<&'static str>; 3],
            bool,
            Option<u32>,
            Option<&'static str>,
        );
        let cases: Vec<Case> = vec![
            (None, [None, None, None], false, None, None),
            // BFD off for the device: nothing counted even if a tunnel reports True (it
            // runs BFD for another device on it).
            (None, [Some("True"); 3], true, None, None),
            (on.clone(), [None, None, None], true, Some(0), Some("0/3")),
            (
                on.clone(),
                [Some("True"), Some("False"), Some("Unknown")],
                true,
                Some(1),
                Some("1/3"),
            ),
            (on.clone(), [Some("True"); 3], true, Some(3), Some("3/3")),
            // A stored TunnelPort that does not run BFD (yet) does not count.
            (on.clone(), [Some("True"); 3], false, Some(0), Some("0/3")),
        ];
        for (i, (bfd, reach, stored_bfd, nodes_want, text_want)) in cases.into_iter().enumerate() {
            let d = with_bfd(bfd);
            let plan = plan_tunnels(std::slice::from_ref(&d), &nodes);
            assert_eq!(plan.tunnel_ports.len(), 3);
            let stored: Vec<TunnelPort> = plan
                .tunnel_ports
                .iter()
                .zip(reach)
                .map(|(tp, r)| {
                    let mut tp = reported(tp, r);
                    tp.spec.bfd = stored_bfd.then_some(TunnelBfd {
                        min_rx_ms: 1000,
                        min_tx_ms: 1000,
                    });
                    tp
                })
                .collect();
            let desired: BTreeMap<&str, &Arc<TunnelPort>> = plan
                .tunnel_ports
                .iter()
                .map(|tp| (tp.metadata.name.as_deref().unwrap(), tp))
                .collect();
            let have: BTreeMap<&str, &TunnelPort> = stored
                .iter()
                .map(|tp| (tp.metadata.name.as_deref().unwrap(), tp))
                .collect();
            let views = port_views(&desired, &have);
            let outcome = &plan.devices[&DeviceKey::of(&d)];
            let status = device_status(&d, outcome, &views, at(100));
            assert_eq!(status.ready.as_deref(), Some("3/3"), "case {i}");
            assert_eq!(status.reachable_nodes, nodes_want, "case {i}");
            assert_eq!(status.reachable.as_deref(), text_want, "case {i}");
        }
        // An invalid device has nothing to count.
        let mut bad = with_bfd(on);
        bad.spec.vni = 0;
        let plan = plan_tunnels(std::slice::from_ref(&bad), &nodes);
        let outcome = &plan.devices[&DeviceKey::of(&bad)];
        let status = device_status(&bad, outcome, &PortViews::default(), at(100));
        assert_eq!((status.reachable_nodes, status.reachable), (None, None));
    }

    #[test]
    fn only_moving_counts_is_progress() {
        let cond = |type_: &str, status: &str, reason: &str, message: &str| Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: message.into(),
            observed_generation: Some(1),
            last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                Timestamp::UNIX_EPOCH,
            ),
        };
        let st = |ready: u32, total: u32, conditions: Vec<Condition>| RemoteDeviceStatus {
            observed_generation: Some(1),
            conditions,
            ready_nodes: ready,
            total_nodes: total,
            ready: Some(format!("{ready}/{total}")),
            ..RemoteDeviceStatus::default()
        };
        let waiting = |m: &str| cond(READY, "False", "Pending", m);
        let skipped = |m: &str| cond(NODES_SKIPPED, "True", device_reason::SELF_TUNNEL, m);
        let base = st(2, 20, vec![waiting("waiting for 18 nodes")]);
        let mut next_generation = st(3, 20, vec![waiting("waiting for 17 nodes")]);
        next_generation.observed_generation = Some(2);
        let cases = [
            ("no status yet", None, base.clone(), false),
            (
                "count moves",
                Some(&base),
                st(3, 20, vec![waiting("waiting for 17 nodes")]),
                true,
            ),
            ("nothing moves", Some(&base), base.clone(), true),
            (
                "turns ready",
                Some(&base),
                st(20, 20, vec![cond(READY, "True", "Ready", "all")]),
                false,
            ),
            (
                "fails",
                Some(&base),
                st(2, 20, vec![cond(READY, "False", "TunnelFailed", "n1")]),
                false,
            ),
            (
                "node set grows",
                Some(&base),
                st(2, 21, vec![waiting("waiting for 19 nodes")]),
                false,
            ),
            ("new generation", Some(&base), next_generation, false),
            (
                "a node skipped",
                Some(&base),
                st(2, 20, vec![waiting("waiting for 18 nodes"), skipped("n9")]),
                false,
            ),
        ];
        for (name, old, new, want) in cases {
            assert_eq!(progress_only(old, &new), want, "{name}");
        }
        let with_skip = st(2, 20, vec![waiting("a"), skipped("n9")]);
        let other_skip = st(3, 20, vec![waiting("b"), skipped("n8")]);
        assert!(
            !progress_only(Some(&with_skip), &other_skip),
            "other nodes skipped is news (it has an event)"
        );
    }
}
