//! The agent's Kubernetes side: watch this node's TunnelPorts, keep the finalizer, feed the
//! node loop, write status. Decisions come from [`super::decide`]; this is the I/O.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::api::conditions::{READY, tunnel_reason};
use crate::api::{NODE_LABEL, OVS_CLEANUP_FINALIZER, TunnelPort, TunnelPortStatus, names};
use crate::telemetry::{ErrorKind, Health, Metrics, TunnelPortState, WriteKind};

use super::decide::{Decisions, decide};
use super::node::NodeHandle;

/// Field manager of the agent's server-side-apply status writes.
pub const AGENT_MANAGER: &str = "remote-device-operator-agent";
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
) -> kube::Result<()> {
    let name = tp.metadata.name.as_deref().unwrap_or_default();
    let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": tp.metadata.resource_version}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map(drop)
}

/// Adds the agent's finalizer (before the OVS port is created).
pub async fn add_finalizer(api: &Api<TunnelPort>, tp: &TunnelPort) -> kube::Result<()> {
    let mut finalizers = tp.metadata.finalizers.clone().unwrap_or_default();
    finalizers.push(OVS_CLEANUP_FINALIZER.to_string());
    set_finalizers(api, tp, finalizers).await
}

/// Removes the agent's finalizer (after the OVS port and its rules are gone).
pub async fn release_finalizer(api: &Api<TunnelPort>, tp: &TunnelPort) -> kube::Result<()> {
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
) -> kube::Result<()> {
    let body = json!({
        "apiVersion": "remotedevice.io/v1alpha1",
        "kind": "TunnelPort",
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(AGENT_MANAGER).force(),
        &Patch::Apply(body),
    )
    .await
    .map(drop)
}

/// One write, bounded in time: a hung request must not stall the loop (or shutdown).
async fn bounded(
    timeout: Duration,
    write: impl Future<Output = kube::Result<()>>,
) -> Result<(), (ErrorKind, String)> {
    match tokio::time::timeout(timeout, write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err((ErrorKind::of(&e), e.to_string())),
        Err(_) => Err((ErrorKind::Timeout, format!("no answer within {timeout:?}"))),
    }
}

/// Carries out one round's writes, each bounded by `timeout`. Returns whether all
/// succeeded; failures are logged, counted, and the next round decides again from fresh
/// state.
pub async fn apply(
    api: &Api<TunnelPort>,
    objects: &[TunnelPort],
    decisions: &Decisions,
    written: &mut BTreeMap<String, TunnelPortStatus>,
    metrics: &Metrics,
    timeout: Duration,
) -> bool {
    let by_name: BTreeMap<&str, &TunnelPort> = objects
        .iter()
        .filter_map(|tp| Some((tp.metadata.name.as_deref()?, tp)))
        .collect();
    let mut ok = true;
    let mut record = |result: Result<(), (ErrorKind, String)>,
                      kind: WriteKind,
                      name: &str,
                      what: &str| match result {
        Ok(()) => {
            metrics.write(kind);
            true
        }
        Err((error_kind, e)) => {
            metrics.error(error_kind);
            tracing::warn!(tunnelport = %name, error = %e, "{what} failed");
            ok = false;
            false
        }
    };
    for name in &decisions.add_finalizer {
        if let Some(tp) = by_name.get(name.as_str()) {
            let result = bounded(timeout, add_finalizer(api, tp)).await;
            record(
                result,
                WriteKind::AddFinalizer,
                name,
                "adding the finalizer",
            );
        }
    }
    for name in &decisions.release_finalizer {
        if let Some(tp) = by_name.get(name.as_str()) {
            let result = bounded(timeout, release_finalizer(api, tp)).await;
            if record(
                result,
                WriteKind::ReleaseFinalizer,
                name,
                "releasing the finalizer",
            ) {
                tracing::info!(tunnelport = %name, "OVS port and rules removed; finalizer released");
            }
        }
    }
    for (name, status) in &decisions.status {
        // The watch may not have shown our last write yet; don't send it twice.
        if written.get(name) == Some(status) {
            continue;
        }
        let result = bounded(timeout, write_status(api, name, status)).await;
        if record(result, WriteKind::Status, name, "writing status") {
            written.insert(name.clone(), status.clone());
        }
    }
    written.retain(|name, _| by_name.contains_key(name.as_str()));
    ok
}

/// This node's TunnelPorts by state, from the status just decided (or the one stored).
fn state_counts(
    node: &str,
    objects: &[TunnelPort],
    decisions: &Decisions,
) -> Vec<(TunnelPortState, i64)> {
    let decided: BTreeMap<&str, &TunnelPortStatus> = decisions
        .status
        .iter()
        .map(|(n, s)| (n.as_str(), s))
        .collect();
    let mut counts = Vec::new();
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
        counts.push((state, 1));
    }
    counts
}

/// Runs the agent's API side until `shutdown`. If the API server is unreachable the node
/// loop keeps the last desired set, so OVS is left as it is.
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
        .default_backoff()
        .boxed();
    let mut view = handle.view.clone();
    let mut recheck = tokio::time::interval(RECHECK);
    let mut written: BTreeMap<String, TunnelPortStatus> = BTreeMap::new();
    let mut retry = RETRY_MIN;
    let mut retry_at: Option<tokio::time::Instant> = None;
    let mut ready = false;
    let mut reconnects = 0;
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
                Some(Ok(_)) => {}
                None => return,
            },
            r = view.changed() => if r.is_err() { return },
            _ = recheck.tick() => {}
            _ = sleep_until(retry_at) => { retry_at = None; }
        }
        // Our own last status write stands in for what the watch has not shown yet, so a
        // round right after a write neither repeats it nor restarts lastTransitionTime.
        let objects: Option<Vec<TunnelPort>> = ready.then(|| {
            store
                .state()
                .iter()
                .map(|tp| {
                    let mut tp = (**tp).clone();
                    if let Some(status) = tp.metadata.name.as_ref().and_then(|n| written.get(n)) {
                        tp.status = Some(status.clone());
                    }
                    tp
                })
                .collect()
        });
        let current = view.borrow_and_update().clone();
        let started = std::time::Instant::now();
        let decisions = decide(&node, objects.as_deref(), &current, Timestamp::now());
        for _ in reconnects..current.ovs.reconnects {
            metrics.ovsdb_reconnected();
        }
        reconnects = current.ovs.reconnects;
        // Ready to serve once it knows its TunnelPorts and can reach OVSDB.
        health.set_ready(ready && current.ovs.connected);
        if let Some(objects) = &objects {
            metrics.set_tunnel_ports(&state_counts(&node, objects, &decisions));
        }
        if let Some(desired) = &decisions.desired {
            handle.desired.send_if_modified(|d| {
                if d.as_ref() == Some(desired) {
                    return false;
                }
                *d = Some(desired.clone());
                true
            });
        }
        if retry_at.is_some() {
            continue;
        }
        let objects = objects.unwrap_or_default();
        let all_ok = tokio::select! {
            _ = shutdown.cancelled() => return,
            ok = apply(&api, &objects, &decisions, &mut written, metrics, api_timeout) => ok,
        };
        metrics.reconciled(started.elapsed());
        if all_ok {
            retry = RETRY_MIN;
        } else {
            retry_at = Some(tokio::time::Instant::now() + retry);
            retry = (retry * 2).min(RETRY_MAX);
        }
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
