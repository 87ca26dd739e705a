//! The agent's Kubernetes side: watch this node's TunnelPorts, keep the finalizer, feed the
//! node loop, write status. AgentWrites come from [`super::decide`]; this is the I/O.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::api::conditions::{READY, tunnel_reason};
use crate::api::{NODE_LABEL, OVS_CLEANUP_FINALIZER, TunnelPort, TunnelPortStatus, names};
use crate::failure::ErrorKind;
use crate::flows::{MonitorState, SyncStatus};
use crate::telemetry::{Health, Metrics, TunnelPortState, WriteKind};

use super::decide::{AgentWrites, decide_writes};
use super::events::{self, EventMemory, decide_events};
use super::node::{NodeHandle, NodeView};
use crate::backoff::Backoff;
use crate::pacing::{Settling, earliest, sleep_until};

/// Field manager of the agent's server-side-apply status writes.
pub const AGENT_MANAGER: &str = "remote-device-operator-agent";
/// The API loop's name in the liveness heartbeats.
pub const API_LOOP: &str = "agent-api";
/// How often status is recomputed even when nothing was reported to change.
const RECHECK: Duration = Duration::from_secs(10);
const RETRY_MIN: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// The label selector that picks this node's TunnelPorts.
pub fn node_selector(node: &str) -> String {
    format!("{NODE_LABEL}={}", names::node_label_value(node))
}

/// Sets the finalizer list. `resourceVersion` makes the write conditional: a concurrent
/// change gives 409, and the next round decides again from fresh state.
async fn set_finalizers(
    api: &Api<TunnelPort>,
    tp: &TunnelPort,
    finalizers: Vec<String>,
) -> kube::Result<TunnelPort> {
    let name = tp.metadata.name.as_deref().unwrap_or_default();
    let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": tp.metadata.resource_version}});
    // Named, so the object's managedFields say who holds the finalizer.
    let params = PatchParams {
        field_manager: Some(AGENT_MANAGER.to_string()),
        ..PatchParams::default()
    };
    api.patch(name, &params, &Patch::Merge(patch)).await
}

/// Adds the agent's finalizer (while the OVS port is being created). On a conflict it reads the
/// object once and tries again on that version: on a busy API server the watch can lag
/// seconds behind the controller's updates, and every round in between would conflict
/// again on the version the watch shows.
pub async fn add_finalizer(api: &Api<TunnelPort>, tp: &TunnelPort) -> kube::Result<TunnelPort> {
    let with_ours = |tp: &TunnelPort| {
        let mut finalizers = tp.metadata.finalizers.clone().unwrap_or_default();
        finalizers.push(OVS_CLEANUP_FINALIZER.to_string());
        finalizers
    };
    let conflict = match set_finalizers(api, tp, with_ours(tp)).await {
        Err(kube::Error::Api(status)) if status.code == 409 => kube::Error::Api(status),
        done => return done,
    };
    let fresh = api
        .get(tp.metadata.name.as_deref().unwrap_or_default())
        .await?;
    let has_ours = fresh
        .metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == OVS_CLEANUP_FINALIZER);
    // Another object by now (recreated) or going away: decide again from the watch.
    if fresh.metadata.uid != tp.metadata.uid || fresh.metadata.deletion_timestamp.is_some() {
        return Err(conflict);
    }
    if has_ours {
        return Ok(fresh);
    }
    set_finalizers(api, &fresh, with_ours(&fresh)).await
}

/// Removes the agent's finalizer (after the OVS port and its rules are gone).
pub async fn release_finalizer(api: &Api<TunnelPort>, tp: &TunnelPort) -> kube::Result<TunnelPort> {
    let finalizers = tp
        .metadata
        .finalizers
        .iter()
        .flatten()
        .filter(|f| *f != OVS_CLEANUP_FINALIZER)
        .cloned()
        .collect();
    set_finalizers(api, tp, finalizers).await
}

/// Writes status with server-side apply on the status subresource.
pub async fn write_status(
    api: &Api<TunnelPort>,
    name: &str,
    status: &TunnelPortStatus,
) -> kube::Result<TunnelPort> {
    api.patch_status(
        name,
        &PatchParams::apply(AGENT_MANAGER).force(),
        &crate::api::status_apply::<TunnelPort>(status),
    )
    .await
}

/// One write, bounded in time: a hung request must not stall the loop (or shutdown).
async fn bounded(
    timeout: Duration,
    write: impl Future<Output = kube::Result<TunnelPort>>,
) -> Result<TunnelPort, (ErrorKind, String)> {
    match tokio::time::timeout(timeout, write).await {
        Ok(Ok(object)) => Ok(object),
        Ok(Err(e)) => Err((ErrorKind::of(&e), e.to_string())),
        Err(_) => Err((ErrorKind::Timeout, format!("no answer within {timeout:?}"))),
    }
}

/// Objects as our own writes returned them, standing in for what the watch has not shown
/// yet: a round right after a write then neither repeats it (with a stale
/// resourceVersion, a certain 409) nor restarts a condition's lastTransitionTime.
#[derive(Debug, Default)]
pub struct OwnWrites {
    /// Name → (resourceVersion the watch showed when we wrote, the object we got back).
    entries: BTreeMap<String, (Option<String>, TunnelPort)>,
}

impl OwnWrites {
    fn record(&mut self, before: &TunnelPort, after: TunnelPort) {
        let name = before.metadata.name.clone().unwrap_or_default();
        let seen = match self.entries.remove(&name) {
            // Still ahead of the watch: keep the version the watch showed back then.
            Some((seen, _)) => seen,
            None => before.metadata.resource_version.clone(),
        };
        self.entries.insert(name, (seen, after));
    }

    /// The watch's objects with our newer writes laid over them. An entry is dropped as soon
    /// as the watch shows any other version than the one it showed when we wrote.
    pub fn overlay(&mut self, objects: Vec<TunnelPort>) -> Vec<TunnelPort> {
        let versions: BTreeMap<String, Option<String>> = objects
            .iter()
            .filter_map(|tp| {
                Some((
                    tp.metadata.name.clone()?,
                    tp.metadata.resource_version.clone(),
                ))
            })
            .collect();
        self.entries
            .retain(|name, (seen, _)| versions.get(name) == Some(seen));
        objects
            .into_iter()
            .map(
                |tp| match tp.metadata.name.as_ref().and_then(|n| self.entries.get(n)) {
                    Some((_, ours)) => ours.clone(),
                    None => tp,
                },
            )
            .collect()
    }
}

/// How a round's writes went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Round {
    /// Every write was made.
    Done,
    /// Some object had changed meanwhile (409): decide again soon on the newer version,
    /// without backoff (its watch event usually starts the next round at once).
    Conflicted,
    /// A write failed otherwise: retry with backoff.
    Failed,
}

/// Carries out one round's writes, each bounded by `timeout`. Failures are logged,
/// counted, and the next round decides again from fresh state.
pub async fn apply(
    api: &Api<TunnelPort>,
    objects: &[TunnelPort],
    decisions: &AgentWrites,
    own: &mut OwnWrites,
    metrics: &Metrics,
    timeout: Duration,
) -> Round {
    let by_name: BTreeMap<&str, &TunnelPort> = objects
        .iter()
        .filter_map(|tp| Some((tp.metadata.name.as_deref()?, tp)))
        .collect();
    let (mut failed, mut conflicted) = (false, false);
    // Some(true): written; Some(false): this object failed, go on with the others;
    // None: the server is unwell (5xx, no answer) — end the round, the retry is scheduled.
    let mut record = |result: Result<TunnelPort, (ErrorKind, String)>,
                      kind: WriteKind,
                      before: &TunnelPort,
                      what: &str| match result {
        Ok(after) => {
            metrics.write(kind);
            own.record(before, after);
            Some(true)
        }
        // Someone (the controller, during a rollout) wrote a newer version: no backoff —
        // backing off here held finalizers and status up for seconds while the
        // controller kept writing.
        Err((ErrorKind::Conflict, e)) => {
            metrics.error(ErrorKind::Conflict);
            conflicted = true;
            let name = before.metadata.name.as_deref().unwrap_or_default();
            tracing::info!(tunnelport = %name, error = %e, "{what}: the object changed meanwhile; deciding again on the newer version");
            Some(false)
        }
        Err((error_kind, e)) => {
            metrics.error(error_kind);
            let name = before.metadata.name.as_deref().unwrap_or_default();
            tracing::warn!(tunnelport = %name, error = %e, "{what} failed");
            failed = true;
            (!matches!(
                error_kind,
                ErrorKind::Server | ErrorKind::Timeout | ErrorKind::Other
            ))
            .then_some(false)
        }
    };
    let named = |names: &[String]| -> Vec<&TunnelPort> {
        names
            .iter()
            .filter_map(|n| by_name.get(n.as_str()).copied())
            .collect()
    };
    let adds = named(&decisions.add_finalizer)
        .into_iter()
        .map(|tp| (tp, bounded(timeout, add_finalizer(api, tp)).boxed()))
        .collect();
    let done = side_by_side(adds, |result, tp| {
        record(result, WriteKind::AddFinalizer, tp, "adding the finalizer")
    });
    if !done.await {
        return Round::Failed;
    }
    let releases = named(&decisions.release_finalizer)
        .into_iter()
        .map(|tp| (tp, bounded(timeout, release_finalizer(api, tp)).boxed()))
        .collect();
    let done = side_by_side(releases, |result, tp| {
        let outcome = record(
            result,
            WriteKind::ReleaseFinalizer,
            tp,
            "releasing the finalizer",
        );
        if outcome == Some(true) {
            let name = tp.metadata.name.as_deref().unwrap_or_default();
            tracing::info!(tunnelport = %name, "OVS port and rules removed; finalizer released");
        }
        outcome
    });
    if !done.await {
        return Round::Failed;
    }
    let statuses = decisions
        .status
        .iter()
        .filter_map(|(name, status)| {
            let tp = *by_name.get(name.as_str())?;
            Some((
                tp,
                bounded(timeout, write_status(api, name, status)).boxed(),
            ))
        })
        .collect();
    let done = side_by_side(statuses, |result, tp| {
        record(result, WriteKind::Status, tp, "writing status")
    });
    if !done.await {
        return Round::Failed;
    }
    match (failed, conflicted) {
        (true, _) => Round::Failed,
        (false, true) => Round::Conflicted,
        (false, false) => Round::Done,
    }
}

/// How long a "port pending" status waits for the port's ofport: OVS usually gives it
/// within a few hundred milliseconds, and then one status write (Ready) replaces two;
/// during a rollout on a busy node it can take seconds, and a status that only says
/// "pending" is not worth an API write each.
const PENDING_HOLD: Duration = Duration::from_secs(3);

/// Holds back statuses that only say the port is pending (`PortPending`), for at most
/// [`PENDING_HOLD`] per TunnelPort generation; returns when the earliest held one is due.
fn hold_pending(
    pending: &mut Settling<String, Option<i64>>,
    decisions: &mut AgentWrites,
    now: std::time::Instant,
) -> Option<std::time::Instant> {
    let mut due: Option<std::time::Instant> = None;
    let mut held = std::collections::HashSet::new();
    decisions.status.retain(|(name, status)| {
        let is_pending = status
            .conditions
            .iter()
            .any(|c| c.type_ == READY && c.reason == tunnel_reason::PENDING);
        let until = is_pending
            .then(|| pending.held_until(name, &status.observed_generation, now))
            .flatten();
        if let Some(until) = until {
            due = Some(earliest(due, until));
            held.insert(name.clone());
        }
        until.is_none()
    });
    pending.retain(|name| held.contains(name));
    due
}

/// Writes of one kind in flight at once: a node's 100 TunnelPorts get their finalizers and
/// status in a few round trips instead of 100, and the node still never holds more than a
/// handful of the API server's request slots.
const MAX_IN_FLIGHT: usize = 16;

/// The result of one write: the object back, or the kind of failure and its text.
type Outcome = Result<TunnelPort, (ErrorKind, String)>;

/// Runs one phase's writes side by side (at most [`MAX_IN_FLIGHT`]) and hands each result
/// to `record` in order. `record` says `None` when the server is unwell: the writes not
/// yet answered are dropped and this returns `false`.
async fn side_by_side<'a>(
    writes: Vec<(&'a TunnelPort, BoxFuture<'a, Outcome>)>,
    mut record: impl FnMut(Outcome, &TunnelPort) -> Option<bool>,
) -> bool {
    let (objects, requests): (Vec<_>, Vec<_>) = writes.into_iter().unzip();
    let mut results = futures::stream::iter(requests).buffered(MAX_IN_FLIGHT);
    for tp in objects {
        let Some(result) = results.next().await else {
            break;
        };
        if record(result, tp).is_none() {
            return false;
        }
    }
    true
}

/// The state of each of this node's TunnelPorts, from the status about to be written or
/// else the one it shows.
fn tunnel_states(
    node: &str,
    objects: &[TunnelPort],
    decisions: &AgentWrites,
) -> Vec<(String, TunnelPortState)> {
    let decided: BTreeMap<&str, &TunnelPortStatus> = decisions
        .status
        .iter()
        .map(|(n, s)| (n.as_str(), s))
        .collect();
    let mut states = Vec::new();
    for tp in objects.iter().filter(|tp| tp.spec.node_name == node) {
        let name = tp.metadata.name.as_deref().unwrap_or_default();
        let status = decided.get(name).copied().or(tp.status.as_ref());
        let ready = status.and_then(|s| s.conditions.iter().find(|c| c.type_ == READY));
        let state = match ready {
            Some(c) if c.status == "True" => TunnelPortState::Ready,
            Some(c)
                if c.reason == tunnel_reason::OVS_ERROR
                    || c.reason == tunnel_reason::FOREIGN_PORT =>
            {
                TunnelPortState::Failed
            }
            _ => TunnelPortState::Pending,
        };
        states.push((name.to_string(), state));
    }
    states
}

/// Shows the flow monitor's state in the metrics and on `/readyz` (a monitor that is down
/// degrades the agent — it dumps the flows every second — but does not make it unready).
fn report_flow_monitor(flows: &SyncStatus, metrics: &Metrics, health: &Health) {
    metrics.set_flow_monitor(flows.monitor.is_running(), flows.monitor_failures);
    let detail = match &flows.monitor {
        MonitorState::Off => None,
        MonitorState::Running => Some("running".to_string()),
        MonitorState::Down(reason) => Some(format!(
            "down ({reason}); dumping the flows every second instead"
        )),
    };
    health.set_detail("flow monitor", detail);
}

/// Hands the node loop the desired TunnelPorts, when they changed.
fn feed_desired(handle: &NodeHandle, decisions: &AgentWrites) {
    if let Some(desired) = &decisions.desired {
        handle.desired.send_if_modified(|d| {
            if d.as_ref() == Some(desired) {
                return false;
            }
            *d = Some(desired.clone());
            true
        });
    }
}

/// Runs the agent's API side until `shutdown`. If the API server is unreachable the node
/// loop keeps the last desired set, so OVS is left as it is. Every round is a heartbeat
/// on `health` ([`API_LOOP`]): a round that hangs shows on `/healthz`.
pub async fn run(
    api: Api<TunnelPort>,
    node: String,
    handle: &NodeHandle,
    metrics: &Metrics,
    health: &Health,
    api_timeout: Duration,
    shutdown: CancellationToken,
) {
    let (store, writer): (Store<TunnelPort>, _) = reflector::store();
    let config = watcher::Config::default().labels(&node_selector(&node));
    let mut events = reflector::reflector(writer, watcher(api.clone(), config))
        .backoff(crate::backoff::watch_backoff())
        .boxed();
    let mut view = handle.view.clone();
    let mut recheck = tokio::time::interval(RECHECK);
    let mut own = OwnWrites::default();
    let mut retry = Backoff::new(RETRY_MIN, RETRY_MAX);
    let mut retry_at: Option<tokio::time::Instant> = None;
    // A round soon after a conflict (in case no watch event brings one), or when a held
    // status is due.
    let mut again_at: Option<tokio::time::Instant> = None;
    let mut pending = Settling::new(PENDING_HOLD, PENDING_HOLD);
    // After a conflict, writes wait for the newer version's watch event (or `again_at`):
    // a round woken by OVS alone would repeat the write on the stale version.
    let mut after_conflict = false;
    let mut ready = false;
    let mut reconnects = 0;
    let mut agent_events = AgentEvents::new(&api, &node, api_timeout);
    let ready_wait = store.wait_until_ready();
    tokio::pin!(ready_wait);

    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = &mut ready_wait, if !ready => { ready = r.is_ok(); }
            event = events.next() => match event {
                Some(Err(e)) => {
                    metrics.error(ErrorKind::Other);
                    tracing::warn!(error = %e, "watching TunnelPorts failed; retrying");
                }
                Some(Ok(_)) => {
                    after_conflict = false;
                    // Take in every event already there before deciding: a burst of
                    // TunnelPort changes makes one round, not one each.
                    while let Some(Some(event)) = events.next().now_or_never() {
                        if let Err(e) = event {
                            metrics.error(ErrorKind::Other);
                            tracing::warn!(error = %e, "watching TunnelPorts failed; retrying");
                        }
                    }
                }
                None => return,
            },
            r = view.changed() => if r.is_err() { return },
            _ = recheck.tick() => {}
            _ = sleep_until(retry_at) => { retry_at = None; }
            _ = sleep_until(again_at) => { again_at = None; after_conflict = false; }
        }
        health.pending(API_LOOP);
        let objects =
            ready.then(|| own.overlay(store.state().iter().map(|tp| (**tp).clone()).collect()));
        let current = view.borrow_and_update().clone();
        let started = std::time::Instant::now();
        let mut decisions = decide_writes(&node, objects.as_deref(), &current, Timestamp::now());
        report(&current, ready, &mut reconnects, metrics, health);
        if let Some(objects) = &objects {
            metrics.set_tunnel_states(&tunnel_states(&node, objects, &decisions));
            agent_events.round(&node, objects, &current);
        }
        feed_desired(handle, &decisions);
        if let Some(due) = hold_pending(&mut pending, &mut decisions, std::time::Instant::now()) {
            again_at = Some(earliest(again_at, due.into()));
        }
        if retry_at.is_some() || after_conflict {
            health.progress(API_LOOP);
            continue;
        }
        let objects = objects.unwrap_or_default();
        let round = tokio::select! {
            _ = shutdown.cancelled() => return,
            round = apply(&api, &objects, &decisions, &mut own, metrics, api_timeout) => round,
        };
        metrics.reconciled(started.elapsed());
        health.progress(API_LOOP);
        let now = tokio::time::Instant::now();
        match round {
            Round::Done => retry.reset(),
            Round::Conflicted => {
                after_conflict = true;
                again_at = Some(earliest(again_at, now + RETRY_MIN));
            }
            Round::Failed => retry_at = Some(now + retry.next_delay()),
        }
    }
}

/// The agent's Events: what the view shows, rate-limited, published in the background.
struct AgentEvents {
    recorder: Recorder,
    memory: EventMemory,
    timeout: Duration,
}

impl AgentEvents {
    fn new(api: &Api<TunnelPort>, node: &str, timeout: Duration) -> Self {
        let reporter = Reporter {
            controller: AGENT_MANAGER.to_string(),
            instance: Some(node.to_string()),
        };
        AgentEvents {
            recorder: Recorder::new(api.clone().into_client(), reporter),
            memory: EventMemory::default(),
            timeout,
        }
    }

    /// Publishes the events this round's view calls for.
    fn round(&mut self, node: &str, objects: &[TunnelPort], view: &NodeView) {
        let now = std::time::Instant::now();
        let (ports, put_back) = (&view.ovs.ports, &view.ovs.port_repairs);
        let due = decide_events(&mut self.memory, ports, put_back, view.flows.repairs, now);
        events::publish(&self.recorder, due, node, objects, self.timeout);
    }
}

/// Health and metrics from the node loop's view: ready once the TunnelPorts are known and
/// OVSDB is reachable; OVSDB reconnects counted; the flow monitor's state.
fn report(view: &NodeView, ready: bool, reconnects: &mut u64, metrics: &Metrics, health: &Health) {
    for _ in *reconnects..view.ovs.reconnects {
        metrics.ovsdb_reconnected();
    }
    *reconnects = view.ovs.reconnects;
    health.set_ready(ready && view.ovs.connected);
    report_flow_monitor(&view.flows, metrics, health);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{TunnelPortSpec, TunnelType};

    fn tp(rv: &str, finalizer: bool) -> TunnelPort {
        let mut tp = TunnelPort::new(
            "a",
            TunnelPortSpec {
                node_name: "n1".into(),
                remote_ip: "192.0.2.10".into(),
                tunnel_type: TunnelType::Vxlan,
                dst_port: None,
                local_ip: None,
                devices: Default::default(),
                bfd: None,
            },
        );
        tp.metadata.resource_version = Some(rv.into());
        tp.metadata.finalizers = finalizer.then(|| vec![OVS_CLEANUP_FINALIZER.into()]);
        tp
    }

    #[test]
    fn a_pending_status_waits_a_moment_for_the_ofport() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
        let status = |reason: &str, generation: i64| TunnelPortStatus {
            observed_generation: Some(generation),
            conditions: vec![Condition {
                type_: READY.into(),
                status: if reason == tunnel_reason::READY {
                    "True"
                } else {
                    "False"
                }
                .into(),
                reason: reason.into(),
                message: String::new(),
                observed_generation: Some(generation),
                last_transition_time: Time(Timestamp::UNIX_EPOCH),
            }],
            ..TunnelPortStatus::default()
        };
        let writes = |list: &[(&str, &str, i64)]| AgentWrites {
            status: list
                .iter()
                .map(|(n, r, g)| (n.to_string(), status(r, *g)))
                .collect(),
            ..AgentWrites::default()
        };
        let names = |w: &AgentWrites| w.status.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        let t0 = std::time::Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut pending = Settling::new(PENDING_HOLD, PENDING_HOLD);
        let (p, r, e) = (
            tunnel_reason::PENDING,
            tunnel_reason::READY,
            tunnel_reason::OVS_ERROR,
        );

        let mut w = writes(&[("a", p, 1), ("b", r, 1), ("c", e, 1)]);
        assert_eq!(hold_pending(&mut pending, &mut w, ms(0)), Some(ms(3000)));
        assert_eq!(names(&w), ["b", "c"], "Ready and failures go out at once");
        // Ready within the hold: one write, nothing left waiting.
        let mut w = writes(&[("a", r, 1)]);
        assert_eq!(hold_pending(&mut pending, &mut w, ms(300)), None);
        assert_eq!(names(&w), ["a"]);
        // Still pending after the hold: written then.
        let mut w = writes(&[("d", p, 1)]);
        assert_eq!(hold_pending(&mut pending, &mut w, ms(400)), Some(ms(3400)));
        let mut w = writes(&[("d", p, 1)]);
        assert_eq!(hold_pending(&mut pending, &mut w, ms(3400)), None);
        assert_eq!(names(&w), ["d"]);
    }

    #[test]
    fn own_writes_stand_in_until_the_watch_moves_on() {
        let mut own = OwnWrites::default();
        own.record(&tp("1", false), tp("2", true));
        // The watch still shows version 1: our version 2 stands in.
        let seen = own.overlay(vec![tp("1", false)]);
        assert_eq!(seen[0].metadata.resource_version.as_deref(), Some("2"));
        // A second write on top keeps the version the watch showed at the first.
        own.record(&tp("2", true), tp("3", true));
        assert_eq!(
            own.overlay(vec![tp("1", false)])[0]
                .metadata
                .resource_version
                .as_deref(),
            Some("3")
        );
        // The watch moved (to ours or to someone else's): it is the truth again.
        let seen = own.overlay(vec![tp("4", false)]);
        assert_eq!(seen[0].metadata.resource_version.as_deref(), Some("4"));
        assert!(own.entries.is_empty());
    }
}
