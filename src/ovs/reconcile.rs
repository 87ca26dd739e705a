//! The reconcile loop: keeps this node's OVS tunnel ports equal to the desired set.
//!
//! ```text
//! desired (watch) ─┐
//!                  ├─► plan (pure diff) ─► one transact ─► ovsdb-server ─► vswitchd
//! monitor replica ─┘                                          │
//!        ▲                                                    ▼
//!        └──────────── update2 (ofport, error) ◄──────────────┘ ──► observed (watch)
//! ```
//!
//! - Desired state comes from a `watch` channel so the Kubernetes watch, the standalone
//!   mode and tests can all feed it: `None` = not yet completely known (nothing is ever
//!   deleted then), `Some(list)` = the complete set of this node's TunnelPorts.
//! - Every event (monitor update, desired change, transaction reply, connect/disconnect)
//!   re-runs the diff against the replica; when it is not empty, its operations go to the
//!   server as one transaction. Only one transaction is in flight; after its reply the
//!   updates it caused (sent by the server before the reply) are applied first, so the
//!   next diff never repeats it. Drift (someone deleting or editing an owned port) shows
//!   up as a monitor update and is undone by the next transaction, within milliseconds.
//! - A refused transaction is retried with backoff (100 ms doubling to 5 s), or at once
//!   when the desired set changes; a lost reply (outcome unknown) needs nothing special: the
//!   session reconnects, rebuilds the replica from the server and the diff tells what is
//!   still missing. Port names are unique in OVS (an index), so a retry can never create
//!   a duplicate.
//! - `observed` is re-sent after every event (and every 30 s), also when nothing changed,
//!   so status is re-read from the replica, never cached. A monitor update that arrives
//!   while our own transaction is in flight is published with the transaction's reply,
//!   which follows it at once. While disconnected it keeps the last reports with
//!   `connected = false`: only trust a TunnelPort's absence from `ports` when connected.
//! - BFD: `bfd_status` comes with the monitor updates like everything else (no polling);
//!   each report is damped ([`super::bfd::BfdDamper`]) before it is published, and the loop
//!   wakes up by itself when a damped judgement expires (a flapping tunnel's hold, a new
//!   session's grace).
//! - Shutdown (the cancellation token) returns at once and deletes nothing.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::api::TunnelPort;
use crate::backoff::Backoff;
use crate::ovsdb::{Endpoint, OpResult, OvsdbError, Session, SessionConfig, SessionEvent};

use super::bfd::BfdDamper;
use super::diff::{DesiredSet, LocalPort, PortReport, PortState, diff_port_set};
use super::model::{OvsView, monitor_requests};

/// Where OVS is and which bridge the tunnels go on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OvsConfig {
    /// OVSDB endpoint as `ovs-vsctl --db` spells it (`unix:/var/run/openvswitch/db.sock`,
    /// `tcp:127.0.0.1:6640`).
    pub endpoint: String,
    /// Integration bridge (created with `fail_mode=secure` when missing).
    pub bridge: String,
}

impl OvsConfig {
    /// A config.
    pub fn new(endpoint: impl Into<String>, bridge: impl Into<String>) -> Self {
        OvsConfig {
            endpoint: endpoint.into(),
            bridge: bridge.into(),
        }
    }
}

/// What the loop sees in OVS; re-sent after every event.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    /// Whether a monitored OVSDB session is up (else `ports` is the last known state).
    pub connected: bool,
    /// Per TunnelPort name: every desired one, and every owned port still in OVS. A
    /// TunnelPort absent here while `connected` has no OVS port.
    pub ports: BTreeMap<String, PortReport>,
    /// Ports on the bridge that the agent does not own (workload ports), with ofports.
    pub local_ports: Vec<LocalPort>,
    /// Reconnections after the first connection.
    pub reconnects: u64,
    /// Transactions sent so far.
    pub transactions: u64,
    /// Whether the last diff was empty: OVS matches the desired set (ofports may still be
    /// pending).
    pub in_sync: bool,
    /// The last refused transaction or connection failure, if the latest attempt failed.
    pub last_error: Option<String>,
    /// Per TunnelPort: times its port, Ready before, had to be created again (someone
    /// deleted it, or vswitchd lost it). Only grows.
    pub port_repairs: BTreeMap<String, u64>,
}

/// Errors that stop the loop (everything else is retried).
#[derive(Debug, thiserror::Error)]
pub enum OvsError {
    /// The configuration cannot work.
    #[error("invalid OVS configuration: {0}")]
    Config(String),
}

const DATABASE: &str = "Open_vSwitch";
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);
const REREAD: Duration = Duration::from_secs(30);

type Txn = Pin<Box<dyn Future<Output = Result<Vec<OpResult>, OvsdbError>> + Send>>;

/// Runs until `shutdown` is cancelled. Returns an error only for an unusable config.
pub async fn run(
    config: OvsConfig,
    desired: watch::Receiver<Option<Vec<TunnelPort>>>,
    observed: watch::Sender<Observed>,
    shutdown: CancellationToken,
) -> Result<(), OvsError> {
    let endpoint = usable_endpoint(&config)?;
    let session = Session::new(SessionConfig::new(endpoint, DATABASE, monitor_requests()));
    let mut r = Reconciler::new(session, config.bridge, desired, observed);
    // Status is also re-read on a timer, not only when OVS says something changed.
    let mut reread = tokio::time::interval(REREAD);
    reread.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    loop {
        r.plan_unless_deferred();
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            changed = r.desired_rx.changed(), if r.desired_open => {
                r.desired_changed(changed.is_ok());
            }
            event = r.session.next_event() => r.session_event(event),
            result = in_flight(&mut r.txn), if r.txn.is_some() => r.txn_done(result),
            _ = reread.tick() => {}
            _ = retry_due(r.retry_at), if r.retry_at.is_some() && r.txn.is_none() => {
                r.retry_at = None;
            }
            _ = wake_at(r.damper.next_change()) => {}
        }
    }
}

/// The endpoint, once the config is known to be usable.
fn usable_endpoint(config: &OvsConfig) -> Result<Endpoint, OvsError> {
    let endpoint: Endpoint = config
        .endpoint
        .parse()
        .map_err(|e: OvsdbError| OvsError::Config(e.to_string()))?;
    let bridge = &config.bridge;
    if bridge.is_empty()
        || bridge.len() > crate::api::names::MAX_INTERFACE_NAME
        || bridge.contains(['/', ' ', ':'])
    {
        return Err(OvsError::Config(format!(
            "bridge name {bridge:?}: 1-15 characters, no '/', ':' or spaces"
        )));
    }
    Ok(endpoint)
}

/// The transaction in flight (only polled while there is one).
async fn in_flight(txn: &mut Option<Txn>) -> Result<Vec<OpResult>, OvsdbError> {
    txn.as_mut().expect("guarded").await
}

/// Until the retry is due (only polled while one is pending).
async fn retry_due(at: Option<Instant>) {
    tokio::time::sleep_until(at.expect("guarded")).await
}

/// Until `at`, or for ever when there is nothing to wait for.
async fn wake_at(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn read_desired(desired: &mut watch::Receiver<Option<Vec<TunnelPort>>>) -> DesiredSet {
    DesiredSet::new(desired.borrow_and_update().as_deref())
}

/// The loop's state between events.
/// Counts a repair for every TunnelPort whose port was Ready in the last published state
/// and is about to be created again.
fn count_repairs(
    state: &mut Observed,
    previous: &BTreeMap<String, PortReport>,
    created: &[String],
) {
    for (name, report) in previous {
        if report.state == PortState::Ready && created.contains(&report.interface_name) {
            *state.port_repairs.entry(name.clone()).or_default() += 1;
        }
    }
}

struct Reconciler {
    session: Session,
    bridge: String,
    desired_rx: watch::Receiver<Option<Vec<TunnelPort>>>,
    /// `false` once the feeder is gone: the last desired set is kept.
    desired_open: bool,
    desired: DesiredSet,
    observed_tx: watch::Sender<Observed>,
    /// What was last published.
    observed: Observed,
    /// At most one transaction in flight.
    txn: Option<Txn>,
    /// When a refused transaction may be retried.
    retry_at: Option<Instant>,
    /// Delays between refused transactions (no jitter: one client, its own OVSDB).
    retry: Backoff,
    /// Set when a monitor update arrives while our transaction is in flight: its reply
    /// follows at once, so planning is deferred to it (and the CPU left to OVS).
    defer: bool,
    /// Damps the BFD reports before they are published.
    damper: BfdDamper,
    /// The replica read as typed rows, kept up to date by the rows each update touched.
    view: OvsView,
}

impl Reconciler {
    fn new(
        session: Session,
        bridge: String,
        mut desired_rx: watch::Receiver<Option<Vec<TunnelPort>>>,
        observed_tx: watch::Sender<Observed>,
    ) -> Self {
        Reconciler {
            session,
            bridge,
            desired: read_desired(&mut desired_rx),
            desired_rx,
            desired_open: true,
            observed_tx,
            observed: Observed::default(),
            txn: None,
            retry_at: None,
            retry: Backoff::new(RETRY_MIN, RETRY_MAX),
            defer: false,
            damper: BfdDamper::default(),
            view: OvsView::default(),
        }
    }

    /// After every event: plans and publishes, unless the event was a monitor update
    /// that our in-flight transaction's reply is about to follow.
    fn plan_unless_deferred(&mut self) {
        let deferred = std::mem::take(&mut self.defer) && self.txn.is_some();
        if !deferred {
            let free = self.txn.is_none() && self.retry_at.is_none_or(|t| Instant::now() >= t);
            self.publish(free);
        }
    }

    /// Plans against the replica and publishes what OVS shows; when `free` (no
    /// transaction in flight, no retry pending) and OVS differs, starts the transaction.
    fn publish(&mut self, free: bool) {
        let state = &mut self.observed;
        state.connected = self.session.is_connected();
        state.reconnects = self.session.connects().saturating_sub(1);
        state.in_sync &= state.connected;
        if state.connected {
            let started = Instant::now();
            let touched = self.session.take_touched();
            self.view.update(self.session.replica(), touched);
            let view_us = started.elapsed().as_micros() as u64;
            let p = diff_port_set(&self.desired, &self.view, &self.bridge);
            tracing::debug!(
                view_us,
                elapsed_us = started.elapsed().as_micros() as u64,
                ops = p.ops.len(),
                "planned"
            );
            let previous = std::mem::replace(&mut state.ports, p.ports);
            self.damper.apply(&mut state.ports, Instant::now());
            state.local_ports = p.local_ports;
            state.in_sync = p.ops.is_empty();
            if free
                && !p.ops.is_empty()
                && let Some(client) = self.session.client().cloned()
            {
                count_repairs(state, &previous, &p.changes.create);
                tracing::info!(
                    create = p.changes.create.len(),
                    update = p.changes.update.len(),
                    delete = p.changes.delete.len(),
                    bfd = p.changes.bfd.len(),
                    create_bridge = p.changes.create_bridge,
                    "reconciling OVS"
                );
                state.transactions += 1;
                let ops = p.ops;
                self.txn = Some(Box::pin(async move {
                    let sent = Instant::now();
                    let reply = client.transact(DATABASE, &ops).await;
                    tracing::debug!(
                        elapsed_us = sent.elapsed().as_micros() as u64,
                        ops = ops.len(),
                        "transaction replied"
                    );
                    reply
                }));
            }
        }
        self.observed_tx.send_replace(self.observed.clone());
    }

    /// A new desired set is planned at once, even while a retry is pending.
    fn desired_changed(&mut self, still_open: bool) {
        let started = Instant::now();
        self.desired = read_desired(&mut self.desired_rx);
        tracing::debug!(
            elapsed_us = started.elapsed().as_micros() as u64,
            tunnels = self.desired.tunnels.len(),
            "desired set read"
        );
        if !still_open {
            // The feeder is gone: keep the last desired state.
            self.desired_open = false;
        }
        self.retry_at = None;
    }

    fn session_event(&mut self, event: SessionEvent) {
        match event {
            SessionEvent::Connected => {
                tracing::info!(bridge = %self.bridge, "OVSDB connected, replica resynced");
                self.observed.last_error = None;
            }
            SessionEvent::Updated => self.defer = true,
            SessionEvent::Disconnected(why) => {
                tracing::warn!(%why, "OVSDB session lost");
            }
            SessionEvent::ConnectFailed(why) => {
                tracing::warn!(%why, "OVSDB connect failed");
                self.observed.last_error = Some(why);
            }
        }
    }

    /// The transaction's reply: success resets the backoff, a refusal schedules a retry.
    fn txn_done(&mut self, result: Result<Vec<OpResult>, OvsdbError>) {
        self.txn = None;
        // The server sent this transaction's updates before its reply.
        let started = Instant::now();
        let n = self.session.drain();
        tracing::debug!(
            elapsed_us = started.elapsed().as_micros() as u64,
            updates = n,
            "drained"
        );
        match result {
            Ok(_) => {
                self.retry.reset();
                self.retry_at = None;
                self.observed.last_error = None;
            }
            Err(OvsdbError::OutcomeUnknown(why)) | Err(OvsdbError::Disconnected(why)) => {
                // The reconnect resync shows what committed.
                tracing::warn!(%why, "OVS transaction outcome unknown");
            }
            Err(e) => {
                let delay = self.retry.next_delay();
                tracing::warn!(error = %e, retry_ms = delay.as_millis() as u64,
                    "OVS transaction refused");
                self.observed.last_error = Some(e.to_string());
                self.retry_at = Some(Instant::now() + delay);
            }
        }
    }
}
