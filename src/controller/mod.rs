//! The controller: watches RemoteDevices, Nodes and its TunnelPorts, and keeps the
//! TunnelPorts and the devices' status what the planner says.
//!
//! The planner is global (every device × every node), so reconciliation is too: any
//! change triggers a pass (bursts gathered into one) that plans from the caches, decides
//! the writes in pure functions ([`reconcile`], [`status`]) and carries them out
//! ([`writer`]). Only the holder of the Lease writes; other replicas keep their caches
//! warm.

pub mod gateways;
pub mod leader;
pub mod reconcile;
pub mod shared_lists;
pub mod status;
pub mod writer;

use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::api::{MANAGED_BY_LABEL, MANAGER, RemoteDevice, TunnelPort};
use crate::failure::ErrorKind;
use crate::planner::Planner;
use crate::telemetry::{Health, Metrics};

pub use crate::backoff::Backoff;
pub use crate::pacing::Pacing;
use crate::pacing::{gather_burst, sleep_until, until_quiet};
pub use leader::LeaseConfig;
pub use reconcile::{Action, PassDecisions, Snapshot, decide, decide_with_plan};
pub use writer::{Executed, WriteError, Writer};

/// Flags of `remote-device-operator controller`.
#[derive(clap::Args, Clone, Debug)]
pub struct ControllerArgs {
    /// Namespace of the Lease used for leader election [default: the pod's own namespace
    /// (from its service account), else `default`].
    #[arg(long, env = "RDO_POD_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// Name of the Lease used for leader election; every replica must use the same one.
    #[arg(
        long,
        env = "RDO_LEASE_NAME",
        default_value = "remote-device-operator-controller"
    )]
    pub lease_name: String,
    /// Identity of this replica in the Lease and in events [default: the host name].
    #[arg(long, env = "RDO_POD_NAME")]
    pub identity: Option<String>,
    /// Seconds between full reconciles when nothing changes (a safety net; a pass that
    /// finds nothing to do writes nothing).
    #[arg(long, env = "RDO_RESYNC_SECONDS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub resync_seconds: u64,
    /// Seconds to wait for the API server to answer one write before retrying later.
    #[arg(long, env = "RDO_API_TIMEOUT_SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub api_timeout_seconds: u64,
    /// Writes to the API server in flight at once.
    #[arg(long, env = "RDO_API_MAX_IN_FLIGHT", default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub api_max_in_flight: u64,
    /// Writes started per second, sustained (client-side rate limit).
    #[arg(long, env = "RDO_API_QPS", default_value_t = 250, value_parser = clap::value_parser!(u64).range(1..))]
    pub api_qps: u64,
    /// Writes that may start at once after a quiet time (the rate limit's burst).
    #[arg(long, env = "RDO_API_BURST", default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..))]
    pub api_burst: u64,
    /// Kubernetes Events published per second, sustained (bursts of 5× that); Events over
    /// the budget are dropped and counted in `events_dropped_total`.
    #[arg(long, env = "RDO_EVENT_QPS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub event_qps: u64,
}

impl ControllerArgs {
    /// The identity: the flag, else the host name, else a fixed word.
    pub fn identity(&self) -> String {
        self.identity
            .clone()
            .filter(|s| !s.is_empty())
            .or_else(|| {
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .ok()
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
            })
            .unwrap_or_else(|| MANAGER.to_string())
    }

    /// The Lease's namespace: the flag, else the pod's namespace, else `default`.
    pub fn lease_namespace(&self) -> String {
        let pod = std::fs::read_to_string(SERVICE_ACCOUNT_NAMESPACE).ok();
        lease_namespace(self.lease_namespace.as_deref(), pod.as_deref())
    }

    /// Loop timings from the flags.
    pub fn settings(&self) -> Settings {
        Settings {
            resync: Duration::from_secs(self.resync_seconds),
            write_timeout: Duration::from_secs(self.api_timeout_seconds),
            pacing: Pacing {
                max_in_flight: usize::try_from(self.api_max_in_flight).unwrap_or(usize::MAX),
                writes_per_second: self.api_qps as f64,
                write_burst: self.api_burst as f64,
                events_per_second: self.event_qps as f64,
                event_burst: 5.0 * self.event_qps as f64,
                ..Pacing::default()
            },
            ..Settings::default()
        }
    }
}

/// Where Kubernetes mounts the pod's namespace (with its service account token).
const SERVICE_ACCOUNT_NAMESPACE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// The Lease's namespace (pure): the flag, else the pod's (file content), else `default`.
/// Empty values count as unset.
pub fn lease_namespace(flag: Option<&str>, pod_file: Option<&str>) -> String {
    [flag, pod_file.map(str::trim)]
        .into_iter()
        .flatten()
        .find(|s| !s.is_empty())
        .unwrap_or("default")
        .to_string()
}

/// Timings of the reconcile loop.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Quiet time gathered before a pass: an event within this long of the last pass
    /// (the rest of a `kubectl apply` of many devices) waits until no event came for this
    /// long, so a burst makes one more pass, not one per event. An event after a quiet
    /// spell this long starts a pass at once, except after a failed pass (always gathered).
    pub debounce: Duration,
    /// Longest wait for quiet: under a steady stream of events a pass still runs this
    /// often.
    pub debounce_max: Duration,
    /// A pass runs at least this often.
    pub resync: Duration,
    /// Time limit of one write.
    pub write_timeout: Duration,
    /// Delay after the first failed pass; doubles per failure up to `backoff_max`.
    pub backoff_min: Duration,
    /// Longest delay between failed passes.
    pub backoff_max: Duration,
    /// Limits of the writes.
    pub pacing: Pacing,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            debounce: Duration::from_millis(50),
            debounce_max: Duration::from_secs(1),
            resync: Duration::from_secs(300),
            write_timeout: Duration::from_secs(10),
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(60),
            pacing: Pacing::default(),
        }
    }
}

/// The three caches the controller plans from.
#[derive(Clone)]
pub struct Caches {
    /// Every RemoteDevice.
    pub devices: Store<RemoteDevice>,
    /// Every Node.
    pub nodes: Store<Node>,
    /// The TunnelPorts labelled as managed by this controller.
    pub tunnel_ports: Store<TunnelPort>,
    /// Marked changed on every watch event of the three (for loops beside the pass loop,
    /// such as the gateway loop, which must not take the pass loop's wake-ups).
    pub changes: watch::Receiver<()>,
}

impl Caches {
    /// Copies of everything the caches hold now.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            devices: self.devices.state().iter().map(|d| (**d).clone()).collect(),
            nodes: self.nodes.state().iter().map(|n| (**n).clone()).collect(),
            tunnel_ports: self
                .tunnel_ports
                .state()
                .iter()
                .map(|t| (**t).clone())
                .collect(),
        }
    }

    /// Waits until every cache holds a complete first list: before that, an object
    /// missing from a cache may exist, and deciding on it could delete live tunnels.
    pub async fn wait_synced(&self) -> anyhow::Result<()> {
        let synced = futures::future::try_join3(
            self.devices.wait_until_ready(),
            self.nodes.wait_until_ready(),
            self.tunnel_ports.wait_until_ready(),
        )
        .await;
        synced
            .map(|_| ())
            .map_err(|e| anyhow::anyhow!("a cache stopped before it synced: {e}"))
    }
}

/// Drops what the planner never reads from a Node (it needs name, uid, labels,
/// annotations, deletion time and addresses).
fn strip_node(node: &mut Node) {
    node.metadata.managed_fields = None;
    node.spec = None;
    if let Some(status) = node.status.as_mut() {
        *status = k8s_openapi::api::core::v1::NodeStatus {
            addresses: status.addresses.take(),
            ..Default::default()
        };
    }
}

/// A reflector over `api`: the store it fills (each object passed through `strip` first)
/// and the stream that drives it, yielding `()` per event, retried with the watch backoff.
pub(crate) fn reflect<K>(
    api: Api<K>,
    config: watcher::Config,
    strip: impl FnMut(&mut K) + Send + 'static,
) -> (
    Store<K>,
    impl Stream<Item = Result<(), watcher::Error>> + Send + 'static,
)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    let stream = watcher(api, config)
        .backoff(crate::backoff::watch_backoff())
        .modify(strip)
        .reflect(writer)
        .map(|event| event.map(|_| ()));
    (store, stream)
}

/// Starts the watchers feeding the caches. Every watch event pokes `trigger`. The
/// returned task runs until `cancel`.
pub fn start_watchers(
    client: &Client,
    trigger: Arc<Notify>,
    metrics: Metrics,
    cancel: CancellationToken,
) -> (Caches, tokio::task::JoinHandle<()>) {
    // The caches keep only what planning reads: managed fields are never needed, and a
    // Node's images and conditions are most of its size on a large cluster.
    let (devices, d) = reflect(
        Api::<RemoteDevice>::all(client.clone()),
        watcher::Config::default(),
        |d| d.metadata.managed_fields = None,
    );
    let (nodes, n) = reflect(
        Api::<Node>::all(client.clone()),
        watcher::Config::default(),
        strip_node,
    );
    let managed = format!("{MANAGED_BY_LABEL}={MANAGER}");
    let mut lists = shared_lists::SharedLists::default();
    let (tunnel_ports, t) = reflect(
        Api::<TunnelPort>::all(client.clone()),
        watcher::Config::default().labels(&managed),
        move |t| {
            t.metadata.managed_fields = None;
            lists.share(t);
        },
    );
    let mut events =
        futures::stream::select(futures::stream::select(d.boxed(), n.boxed()), t.boxed());
    let (changed, changes) = watch::channel(());
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                event = events.next() => match event {
                    Some(Ok(())) => {
                        trigger.notify_one();
                        changed.send_replace(());
                    }
                    Some(Err(e)) => {
                        metrics.error(ErrorKind::Other);
                        tracing::warn!(error = %e, "watch failed; retrying with backoff");
                    }
                    None => return,
                },
            }
        }
    });
    (
        Caches {
            devices,
            nodes,
            tunnel_ports,
            changes,
        },
        task,
    )
}

/// The reconcile loop's name in the liveness heartbeats.
pub const PASS_LOOP: &str = "controller-pass";

/// [`drive_reporting`] without liveness heartbeats (tests).
pub async fn drive(
    snapshot: impl Fn() -> Snapshot,
    writer: &Writer,
    trigger: &Notify,
    leader: watch::Receiver<bool>,
    settings: &Settings,
    metrics: &Metrics,
    cancel: &CancellationToken,
) {
    let health = Health::default();
    let telemetry = (metrics, &health);
    drive_reporting(
        snapshot, writer, trigger, leader, settings, telemetry, cancel,
    )
    .await
}

/// The reconcile loop: waits for a trigger (watch event, resync timer, leadership gained),
/// gathers a burst unless the trigger came after a quiet spell ([`wait_for_work`]), and —
/// when leading — decides and writes. A failed pass is retried after an exponential
/// backoff; nothing runs faster than that. Every pass is a heartbeat
/// on `health` ([`PASS_LOOP`]): pending when it starts, progress when it ends, so a pass
/// that hangs shows on `/healthz`.
pub async fn drive_reporting(
    snapshot: impl Fn() -> Snapshot,
    writer: &Writer,
    trigger: &Notify,
    mut leader: watch::Receiver<bool>,
    settings: &Settings,
    (metrics, health): (&Metrics, &Health),
    cancel: &CancellationToken,
) {
    let mut backoff = Backoff::new(settings.backoff_min, settings.backoff_max);
    // The first pass runs at once: the caches are synced, nothing else would start it.
    let mut due = true;
    // Node problems are logged when they change, not on every pass.
    let mut reported_issues = Vec::new();
    let mut was_leader = false;
    // When writes the writer held back are due.
    let mut held_until = None;
    // Kept across passes: only the tunnels whose devices changed are placed again.
    let mut planner = Planner::default();
    loop {
        if !due && !wait_for_work(trigger, &mut leader, held_until, settings, cancel).await {
            return;
        }
        due = false;
        held_until = None;
        health.pending(PASS_LOOP);
        let is_leader = *leader.borrow_and_update();
        if is_leader != was_leader {
            if is_leader {
                tracing::info!("became the leader; reconciling");
            } else {
                tracing::info!("no longer the leader; not writing");
            }
            was_leader = is_leader;
        }
        let snap = snapshot();
        let started = Instant::now();
        let planned = planner.plan(&snap.devices, &snap.nodes, &snap.tunnel_ports);
        let decisions = decide_with_plan(&snap, &planned, Timestamp::now());
        // The device outcomes are not needed while the writes are awaited.
        drop(planned);
        metrics.set_tunnel_ports(&decisions.tunnel_port_states);
        if !is_leader {
            health.progress(PASS_LOOP);
            continue;
        }
        if decisions.node_issues != reported_issues {
            for issue in &decisions.node_issues {
                tracing::warn!(node = %issue.node, "{}", issue.message);
            }
            reported_issues = decisions.node_issues.clone();
        }
        let result = tokio::select! {
            _ = cancel.cancelled() => return,
            // Another replica may lead now: stop writing at once.
            _ = leader.wait_for(|leading| !leading) => {
                tracing::warn!("lost the Lease during a pass; stopping its writes");
                health.progress(PASS_LOOP);
                continue;
            }
            result = writer.execute(&decisions) => result,
        };
        metrics.reconciled(started.elapsed());
        health.progress(PASS_LOOP);
        match result {
            Ok(done) => {
                backoff.reset();
                held_until = done.held_until.map(Instant::from_std);
                tracing::debug!(writes = done.writes, "reconciled");
            }
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::warn!(error = %e, retry_in = ?delay, "reconcile failed");
                if !pause_after_failure(&e, delay, trigger, settings, cancel).await {
                    return;
                }
                due = true;
            }
        }
    }
}

/// Waits for a reason to run a pass — a watch event, the resync timer, a leadership change,
/// held statuses falling due. One that comes after `debounce` of quiet since the last pass
/// starts a pass at once; one sooner (the rest of a `kubectl apply`, events that came
/// during the pass) gathers the burst first ([`gather_burst`]). `false` when the loop
/// must end.
async fn wait_for_work(
    trigger: &Notify,
    leader: &mut watch::Receiver<bool>,
    held_until: Option<Instant>,
    settings: &Settings,
    cancel: &CancellationToken,
) -> bool {
    // Called as a pass ends: the loop is idle from here.
    let idle_since = Instant::now();
    tokio::select! {
        _ = cancel.cancelled() => return false,
        _ = trigger.notified() => {}
        _ = tokio::time::sleep(settings.resync) => {}
        _ = sleep_until(held_until) => {}
        changed = leader.changed() => {
            if changed.is_err() {
                tracing::warn!("leader election stopped; no more writes");
                return false;
            }
        }
    }
    let (quiet, max_wait) = (settings.debounce, settings.debounce_max);
    gather_burst(trigger, idle_since, quiet, max_wait, cancel).await
}

/// The pause after a failed pass. A new watch event ends it when it shows the retry may
/// succeed (see [`WriteError::pause_ends_on_event`]); an unwell server waits it out.
/// `false` when the loop must end.
async fn pause_after_failure(
    error: &WriteError,
    delay: Duration,
    trigger: &Notify,
    settings: &Settings,
    cancel: &CancellationToken,
) -> bool {
    let interruptible = error.pause_ends_on_event();
    // A wake-up stored during the failed pass (its own writes echoed by the watch, say) is
    // no news: drop it, so only an event after the failure ends the pause.
    let _ = futures::FutureExt::now_or_never(trigger.notified());
    tokio::select! {
        _ = cancel.cancelled() => return false,
        _ = tokio::time::sleep(delay) => return true,
        _ = trigger.notified(), if interruptible => {}
    }
    // Always gathered: the event may be the first of a recovering server's burst.
    until_quiet(trigger, settings.debounce, settings.debounce_max, cancel).await
}

/// Runs the controller until `cancel`: watchers, leader election, reconcile loop.
pub async fn run(
    client: Client,
    args: &ControllerArgs,
    metrics: Metrics,
    health: Health,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let identity = args.identity();
    let settings = args.settings();
    let trigger = Arc::new(Notify::new());
    let (caches, watchers) =
        start_watchers(&client, trigger.clone(), metrics.clone(), cancel.clone());

    let lease_namespace = args.lease_namespace();
    let lease_ref = format!("{lease_namespace}/{}", args.lease_name);
    let lease_stop = CancellationToken::new();
    let (leader, lease_task) = leader::spawn(
        client.clone(),
        LeaseConfig::new(&lease_namespace, &args.lease_name, &identity),
        lease_stop.clone(),
    );

    tracing::info!(%identity, lease = %lease_ref, "waiting for the caches to sync");
    let outcome = tokio::select! {
        // A shutdown before the caches synced stops the watchers too, which then fails
        // the sync: the shutdown must win that race, it is a clean exit.
        biased;
        _ = cancel.cancelled() => Ok(()),
        synced = caches.wait_synced() => match synced {
            Ok(()) => {
                health.set_ready(true);
                tracing::info!("caches synced");
                let writer = Writer::new(client.clone(), identity, metrics.clone(), settings.write_timeout)
                    .with_pacing(settings.pacing.clone())
                    .with_progress(health.clone(), PASS_LOOP);
                let gateway_loop = tokio::spawn(gateways::run(
                    client.clone(),
                    caches.clone(),
                    lease_namespace.clone(),
                    leader.clone(),
                    cancel.child_token(),
                ));
                let snapshot = || caches.snapshot();
                let telemetry = (&metrics, &health);
                drive_reporting(snapshot, &writer, &trigger, leader.clone(), &settings, telemetry, &cancel).await;
                gateway_loop.abort();
                if cancel.is_cancelled() {
                    Ok(())
                } else {
                    // drive only returns early when leader election stopped: exit non-zero
                    // so the restart shows as a failure.
                    Err(anyhow::anyhow!("leader election on Lease {lease_ref} stopped"))
                }
            }
            Err(e) => Err(e),
        },
    };
    health.set_ready(false);
    // Releasing the Lease lets another replica take over at once instead of after it expires.
    lease_stop.cancel();
    if tokio::time::timeout(Duration::from_secs(10), lease_task)
        .await
        .is_err()
    {
        tracing::warn!("leader election did not stop in 10 s");
    }
    cancel.cancel();
    let _ = watchers.await;
    outcome
}

#[cfg(test)]
mod mock_tests;
#[cfg(test)]
mod tests;
