//! The thin I/O shell: carries out [`PassDecisions`] against the API server.

use std::mem::discriminant;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::events::{Recorder, Reporter};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

use crate::api::{DeviceKey, MANAGER, RemoteDevice, RemoteDeviceStatus, TunnelPort};
use crate::failure::ErrorKind;
use crate::telemetry::{Health, Metrics, WriteKind};

use super::reconcile::{Action, EventSpec, PassDecisions, event_reason, tunnel_summary};
use crate::pacing::{LastWrites, Pacer, Pacing, Settling, earliest, lock};

/// A failed write.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The API server answered with an error.
    #[error("{what}: {source}")]
    Api {
        /// Which write.
        what: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// No answer in time.
    #[error("{what}: no answer within {after:?}")]
    Timeout {
        /// Which write.
        what: String,
        /// The time limit.
        after: Duration,
    },
}

impl WriteError {
    /// The metrics label of this failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            WriteError::Timeout { .. } => ErrorKind::Timeout,
            WriteError::Api { source, .. } => ErrorKind::of(source),
        }
    }

    /// Whether the failure concerns this one object only (the next writes may succeed),
    /// as opposed to the API server being unwell (the next writes would fail too).
    pub fn object_specific(&self) -> bool {
        matches!(self.kind(), ErrorKind::Conflict | ErrorKind::Client)
    }

    /// Whether a new watch event should end the pause after this failure, instead of
    /// waiting it out: when it concerned one object (the other writes may succeed), or
    /// when the API server could not be reached at all (a watch event shows it is back —
    /// without this, a pause grown during an outage delays every change after it). A
    /// server that answered but is unwell (5xx, 429) or slow (timeout) waits out its
    /// pause, so a burst of events cannot hammer it.
    pub fn pause_ends_on_event(&self) -> bool {
        matches!(
            self.kind(),
            ErrorKind::Conflict | ErrorKind::Client | ErrorKind::Other
        )
    }
}

fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 404)
}

/// A write's outcome where "not found" means there is nothing left to do: `Ok(true)` when
/// the object is gone, `Ok(false)` when the write was made.
fn gone<T>(result: Result<T, WriteError>) -> Result<bool, WriteError> {
    match result {
        Ok(_) => Ok(false),
        Err(WriteError::Api { source, .. }) if is_not_found(&source) => Ok(true),
        Err(e) => Err(e),
    }
}

/// Carries out decisions; only the leader has one running.
#[derive(Clone)]
pub struct Writer {
    client: Client,
    recorder: Recorder,
    metrics: Metrics,
    timeout: Duration,
    /// Where each write of a pass is reported as progress, so a long first pass on a
    /// large cluster does not look stuck to the liveness probe.
    progress: Option<(Health, &'static str)>,
    pacing: Pacing,
    pacer: Arc<Pacer>,
    /// When each TunnelPort and device status was last written, to hold updates back.
    last_writes: Arc<Mutex<Written>>,
}

/// The writer's memory of its own writes.
#[derive(Debug)]
struct Written {
    /// TunnelPort updates waiting to settle, by name.
    ports: Settling<String, TunnelPort>,
    statuses: LastWrites<DeviceKey>,
}

impl Written {
    fn new(pacing: &Pacing) -> Self {
        Written {
            ports: Settling::new(pacing.update_settle, pacing.update_max_wait),
            statuses: LastWrites::new(pacing.progress_interval),
        }
    }
}

/// When a count-only status update held over the budget is tried again.
const PROGRESS_RETRY: Duration = Duration::from_secs(1);

/// What [`Writer::execute`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Executed {
    /// Writes made.
    pub writes: usize,
    /// When the earliest write held back (an unsettled TunnelPort, a count-only status)
    /// is due: a pass must run then.
    pub held_until: Option<Instant>,
}

/// The reference of a TunnelPort, for events (cluster-scoped: they land in `default`).
fn tunnel_port_reference(name: &str, uid: Option<String>) -> ObjectReference {
    ObjectReference {
        api_version: Some(TunnelPort::api_version(&()).into_owned()),
        kind: Some(TunnelPort::kind(&()).into_owned()),
        name: Some(name.to_string()),
        uid,
        ..ObjectReference::default()
    }
}

impl Writer {
    /// A writer that reports as `instance` in events and gives every request `timeout`.
    pub fn new(client: Client, instance: String, metrics: Metrics, timeout: Duration) -> Self {
        let reporter = Reporter {
            controller: MANAGER.to_string(),
            instance: Some(instance),
        };
        Writer {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            timeout,
            progress: None,
            pacer: Arc::new(Pacer::new(&Pacing::default())),
            pacing: Pacing::default(),
            last_writes: Arc::new(Mutex::new(Written::new(&Pacing::default()))),
        }
    }

    /// Paces the writes by `pacing` instead of the defaults.
    pub fn with_pacing(mut self, pacing: Pacing) -> Self {
        self.pacer = Arc::new(Pacer::new(&pacing));
        self.last_writes = Arc::new(Mutex::new(Written::new(&pacing)));
        self.pacing = pacing;
        self
    }

    /// Reports every successful write as progress of loop `what` on `health`.
    pub fn with_progress(mut self, health: Health, what: &'static str) -> Self {
        self.progress = Some((health, what));
        self
    }

    async fn timed<T>(
        &self,
        what: impl Fn() -> String,
        request: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, WriteError> {
        match tokio::time::timeout(self.timeout, request).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(source)) => Err(WriteError::Api {
                what: what(),
                source,
            }),
            Err(_) => Err(WriteError::Timeout {
                what: what(),
                after: self.timeout,
            }),
        }
    }

    /// Runs the actions phase by phase in [`decide`](super::decide)'s order (finalizer
    /// releases, applies, deletions, statuses); the writes of one phase run concurrently
    /// under the [`Pacing`] limits. Object-specific failures (409, other 4xx) are logged
    /// and the other writes still run; a server-wide failure (5xx, timeout, connection)
    /// starts no further write. Writes that have not settled are held back
    /// ([`Writer::hold_back`]). Returns what was done, or the first failure, so the caller
    /// retries with backoff.
    pub async fn execute(&self, decisions: &PassDecisions) -> Result<Executed, WriteError> {
        let (actions, held_until) = self.hold_back(&decisions.actions, Instant::now());
        let stop = AtomicBool::new(false);
        let mut first_error = None;
        let mut writes = 0;
        let same_phase = |a: &&Action, b: &&Action| discriminant(*a) == discriminant(*b);
        for phase in actions.chunk_by(same_phase) {
            // Boxed and collected first: a stream mapping borrowed actions through a
            // closure trips the compiler's Send check of the loop (rust-lang/rust#102211).
            let writes_of_phase: Vec<BoxFuture<'_, _>> = phase
                .iter()
                .map(|action| self.paced(action, &stop).boxed())
                .collect();
            let mut done = futures::stream::iter(writes_of_phase)
                .buffer_unordered(self.pacing.max_in_flight.max(1));
            while let Some(outcome) = done.next().await {
                match outcome {
                    // Not started: an earlier write found the server unwell.
                    None => {}
                    Some(Ok(())) => {
                        writes += 1;
                        if let Some((health, what)) = &self.progress {
                            health.advanced(what);
                        }
                    }
                    Some(Err(e)) => {
                        self.metrics.error(e.kind());
                        tracing::warn!(error = %e, kind = ?e.kind(), "write failed");
                        if !e.object_specific() {
                            stop.store(true, Ordering::Relaxed);
                        }
                        first_error.get_or_insert(e);
                    }
                }
            }
            if stop.load(Ordering::Relaxed) {
                break;
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(Executed { writes, held_until }),
        }
    }

    /// The actions to run now, and when the earliest held one is due: updates of
    /// TunnelPorts whose content has not settled yet (and creations, in a bulk change),
    /// and count-only device statuses written less than `progress_interval` ago or over
    /// their budget.
    fn hold_back<'a>(
        &self,
        actions: &'a [Action],
        now: Instant,
    ) -> (Vec<&'a Action>, Option<Instant>) {
        let mut last = lock(&self.last_writes);
        let mut held_until: Option<Instant> = None;
        let mut settling = std::collections::HashSet::new();
        let mut run = Vec::with_capacity(actions.len());
        let creates = actions
            .iter()
            .filter(|a| matches!(a, Action::Apply { create: true, .. }))
            .count();
        let bulk = creates > self.pacing.bulk_creates;
        for action in actions {
            let due = match action {
                Action::Apply { port, create } if bulk || !create => {
                    let name = port.metadata.name.clone().unwrap_or_default();
                    let due = last.ports.held_until(&name, port, now);
                    if due.is_some() {
                        settling.insert(name);
                    }
                    due
                }
                Action::DeviceStatus {
                    key,
                    progress_only: true,
                    ..
                } => last
                    .statuses
                    .held_until(key, now)
                    // Over the budget of count-only updates: a later pass tries again.
                    .or_else(|| (!self.pacer.progress_allowed()).then(|| now + PROGRESS_RETRY)),
                _ => None,
            };
            match due {
                Some(due) => held_until = Some(earliest(held_until, due)),
                None => run.push(action),
            }
        }
        // An update no longer decided (the port was deleted, or its content is stored
        // already) starts afresh if it comes back.
        last.ports.retain(|name| settling.contains(name));
        (run, held_until)
    }

    /// One write once the pacer admits it; `None` when a server-wide failure came first.
    async fn paced(&self, action: &Action, stop: &AtomicBool) -> Option<Result<(), WriteError>> {
        if stop.load(Ordering::Relaxed) {
            return None;
        }
        let _permit = self.pacer.admit().await;
        if stop.load(Ordering::Relaxed) {
            return None;
        }
        Some(self.execute_one(action).await)
    }

    async fn execute_one(&self, action: &Action) -> Result<(), WriteError> {
        match action {
            Action::ReleaseFinalizer {
                name,
                resource_version,
                keep,
            } => self.release_finalizer(name, resource_version, keep).await,
            Action::Apply { port, create } => self.apply(port, *create).await,
            Action::Delete { name, uid, note } => self.delete(name, uid, note).await,
            Action::DeviceStatus {
                key,
                status,
                reference,
                events,
                ..
            } => self.device_status(key, status, reference, events).await,
        }
    }

    fn tunnel_ports(&self) -> Api<TunnelPort> {
        Api::all(self.client.clone())
    }

    /// Removes the agent's finalizer from a TunnelPort whose node is gone.
    async fn release_finalizer(
        &self,
        name: &str,
        resource_version: &Option<String>,
        keep: &[String],
    ) -> Result<(), WriteError> {
        let patch = json!({
            "metadata": { "finalizers": keep, "resourceVersion": resource_version }
        });
        let params = PatchParams {
            field_manager: Some(MANAGER.to_string()),
            ..PatchParams::default()
        };
        let done = self
            .timed(
                || format!("releasing the finalizer of TunnelPort {name}"),
                self.tunnel_ports()
                    .patch(name, &params, &Patch::Merge(&patch)),
            )
            .await;
        if gone(done)? {
            return Ok(());
        }
        tracing::info!(tunnel_port = %name, "released the OVS cleanup finalizer: the node is gone");
        self.metrics.write(WriteKind::ReleaseFinalizer);
        Ok(())
    }

    /// Server-side apply of a desired TunnelPort; an event when it is new.
    async fn apply(&self, port: &TunnelPort, create: bool) -> Result<(), WriteError> {
        let name = port.name_any();
        let params = PatchParams::apply(MANAGER).force();
        let applied = self
            .timed(
                || format!("applying TunnelPort {name}"),
                self.tunnel_ports()
                    .patch(&name, &params, &Patch::Apply(port)),
            )
            .await?;
        self.metrics.write(WriteKind::Apply);
        tracing::info!(tunnel_port = %name, create, devices = port.spec.devices.len(), "applied TunnelPort");
        if create {
            let event = EventSpec {
                warning: false,
                reason: event_reason::CREATED,
                note: format!("Created the {}", tunnel_summary(port)),
            };
            let reference = tunnel_port_reference(&name, applied.metadata.uid.clone());
            self.publish(&event, &reference).await;
        }
        Ok(())
    }

    /// Deletes an undesired TunnelPort (only the object of that uid); an event says why.
    async fn delete(&self, name: &str, uid: &Option<String>, note: &str) -> Result<(), WriteError> {
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        let done = self
            .timed(
                || format!("deleting TunnelPort {name}"),
                self.tunnel_ports().delete(name, &params),
            )
            .await;
        if gone(done)? {
            return Ok(());
        }
        self.metrics.write(WriteKind::Delete);
        tracing::info!(tunnel_port = %name, "deleted TunnelPort: {note}");
        let event = EventSpec {
            warning: false,
            reason: event_reason::DELETED,
            note: note.to_string(),
        };
        self.publish(&event, &tunnel_port_reference(name, uid.clone()))
            .await;
        Ok(())
    }

    /// Server-side apply of a RemoteDevice's status, then its events.
    async fn device_status(
        &self,
        key: &DeviceKey,
        status: &RemoteDeviceStatus,
        reference: &ObjectReference,
        events: &[EventSpec],
    ) -> Result<(), WriteError> {
        let devices: Api<RemoteDevice> = Api::namespaced(self.client.clone(), &key.namespace);
        let body = crate::api::status_apply::<RemoteDevice>(status);
        let params = PatchParams::apply(MANAGER).force();
        let done = self
            .timed(
                || format!("writing the status of RemoteDevice {key}"),
                devices.patch_status(&key.name, &params, &body),
            )
            .await;
        // Deleted meanwhile: nothing left to report on.
        if gone(done)? {
            return Ok(());
        }
        self.metrics.write(WriteKind::Status);
        lock(&self.last_writes)
            .statuses
            .record(key.clone(), Instant::now());
        tracing::info!(device = %key, ready = status.ready.as_deref().unwrap_or_default(), "wrote RemoteDevice status");
        for event in events {
            self.publish(event, reference).await;
        }
        Ok(())
    }

    /// Publishes an event; failures are logged and counted, never retried, because an
    /// event is a courtesy and must not hold up reconciliation.
    async fn publish(&self, event: &EventSpec, reference: &ObjectReference) {
        if !self.pacer.event_allowed() {
            self.metrics.event_dropped();
            tracing::debug!(
                reason = event.reason,
                "event dropped: over the event budget"
            );
            return;
        }
        let ev = crate::events::event(event.warning, event.reason, &event.note);
        let done = self
            .timed(
                || format!("publishing event {}", event.reason),
                self.recorder.publish(&ev, reference),
            )
            .await;
        match done {
            Ok(()) => self.metrics.write(WriteKind::Event),
            Err(e) => {
                self.metrics.error(e.kind());
                tracing::warn!(error = %e, "event not published");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified() {
        let api = |code: u16| {
            kube::Error::Api(Box::new(kube::core::Status {
                code,
                ..kube::core::Status::default()
            }))
        };
        let cases = [
            (409, ErrorKind::Conflict),
            (429, ErrorKind::Server),
            (500, ErrorKind::Server),
            (503, ErrorKind::Server),
            (403, ErrorKind::Client),
            (422, ErrorKind::Client),
        ];
        for (code, kind) in cases {
            assert_eq!(ErrorKind::of(&api(code)), kind, "{code}");
        }
        assert!(is_not_found(&api(404)) && !is_not_found(&api(409)));
    }

    #[test]
    fn which_failures_end_their_pause_at_the_next_watch_event() {
        let api = |code: u16| WriteError::Api {
            what: "x".into(),
            source: kube::Error::Api(Box::new(kube::core::Status {
                code,
                ..kube::core::Status::default()
            })),
        };
        let unreachable = WriteError::Api {
            what: "x".into(),
            source: kube::Error::Service("connection refused".into()),
        };
        let timeout = WriteError::Timeout {
            what: "x".into(),
            after: Duration::from_secs(10),
        };
        let cases = [
            ("conflict", api(409), true),
            ("refused", api(422), true),
            ("no connection", unreachable, true),
            ("unwell server", api(503), false),
            ("throttled", api(429), false),
            ("slow server", timeout, false),
        ];
        for (name, error, ends) in cases {
            assert_eq!(error.pause_ends_on_event(), ends, "{name}");
        }
    }
}
