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
//! - Shutdown (the cancellation token) returns at once and deletes nothing.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::api::TunnelPort;
use crate::ovsdb::{Endpoint, OpResult, OvsdbError, Session, SessionConfig, SessionEvent};

use super::diff::{DesiredSet, LocalPort, PortReport, diff_port_set};
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

/// Plans against the replica and publishes what OVS shows; when `free` (no transaction
/// in flight, no retry pending) and OVS differs, returns the transaction to run.
fn publish(
    state: &mut Observed,
    session: &Session,
    desired: &DesiredSet,
    bridge: &str,
    observed: &watch::Sender<Observed>,
    free: bool,
) -> Option<Txn> {
    let mut txn: Option<Txn> = None;
    state.connected = session.is_connected();
    state.reconnects = session.connects().saturating_sub(1);
    state.in_sync &= state.connected;
    if state.connected {
        let started = Instant::now();
        let view = OvsView::from_replica(session.replica());
        let p = diff_port_set(desired, &view, bridge);
        tracing::debug!(
            elapsed_us = started.elapsed().as_micros() as u64,
            ops = p.ops.len(),
            "planned"
        );
        state.ports = p.ports;
        state.local_ports = p.local_ports;
        state.in_sync = p.ops.is_empty();
        if free
            && !p.ops.is_empty()
            && let Some(client) = session.client().cloned()
        {
            tracing::info!(
                create = p.changes.create.len(),
                update = p.changes.update.len(),
                delete = p.changes.delete.len(),
                create_bridge = p.changes.create_bridge,
                "reconciling OVS"
            );
            state.transactions += 1;
            let ops = p.ops;
            txn = Some(Box::pin(
                async move { client.transact(DATABASE, &ops).await },
            ));
        }
    }
    observed.send_replace(state.clone());
    txn
}

/// Runs until `shutdown` is cancelled. Returns an error only for an unusable config.
pub async fn run(
    config: OvsConfig,
    mut desired: watch::Receiver<Option<Vec<TunnelPort>>>,
    observed: watch::Sender<Observed>,
    shutdown: CancellationToken,
) -> Result<(), OvsError> {
    let endpoint: Endpoint = config
        .endpoint
        .parse()
        .map_err(|e: OvsdbError| OvsError::Config(e.to_string()))?;
    let bridge = config.bridge.clone();
    if bridge.is_empty()
        || bridge.len() > crate::api::names::MAX_INTERFACE_NAME
        || bridge.contains(['/', ' ', ':'])
    {
        return Err(OvsError::Config(format!(
            "bridge name {bridge:?}: 1-15 characters, no '/', ':' or spaces"
        )));
    }
    let mut session = Session::new(SessionConfig::new(endpoint, DATABASE, monitor_requests()));
    let mut desired_open = true;
    let mut txn: Option<Txn> = None;
    let mut retry_at: Option<Instant> = None;
    let mut retry = RETRY_MIN;
    let mut state = Observed::default();
    let mut desired_set = DesiredSet::new(desired.borrow_and_update().as_deref());
    // Set when a monitor update arrives while our transaction is in flight: its reply
    // follows at once, so planning is deferred to it (and the CPU left to OVS).
    let mut defer = false;
    // Status is also re-read on a timer, not only when OVS says something changed.
    let mut reread = tokio::time::interval(REREAD);
    reread.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    loop {
        let deferred = std::mem::take(&mut defer) && txn.is_some();
        if !deferred {
            let free = txn.is_none() && retry_at.is_none_or(|t| Instant::now() >= t);
            let started = publish(&mut state, &session, &desired_set, &bridge, &observed, free);
            if let Some(t) = started {
                txn = Some(t);
            }
        }

        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            changed = desired.changed(), if desired_open => {
                desired_set = DesiredSet::new(desired.borrow_and_update().as_deref());
                if changed.is_err() {
                    // The feeder is gone: keep the last desired state.
                    desired_open = false;
                }
                retry_at = None;
            }
            event = session.next_event() => match event {
                SessionEvent::Connected => {
                    tracing::info!(bridge = %bridge, "OVSDB connected, replica resynced");
                    state.last_error = None;
                }
                SessionEvent::Updated => defer = true,
                SessionEvent::Disconnected(why) => {
                    tracing::warn!(%why, "OVSDB session lost");
                }
                SessionEvent::ConnectFailed(why) => {
                    tracing::warn!(%why, "OVSDB connect failed");
                    state.last_error = Some(why);
                }
            },
            result = async { txn.as_mut().expect("guarded").await }, if txn.is_some() => {
                txn = None;
                // The server sent this transaction's updates before its reply.
                let started = Instant::now();
                let n = session.drain();
                tracing::debug!(
                    elapsed_us = started.elapsed().as_micros() as u64,
                    updates = n,
                    "drained"
                );
                match result {
                    Ok(_) => {
                        retry = RETRY_MIN;
                        retry_at = None;
                        state.last_error = None;
                    }
                    Err(OvsdbError::OutcomeUnknown(why)) | Err(OvsdbError::Disconnected(why)) => {
                        // The reconnect resync shows what committed.
                        tracing::warn!(%why, "OVS transaction outcome unknown");
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, retry_ms = retry.as_millis() as u64,
                            "OVS transaction refused");
                        state.last_error = Some(e.to_string());
                        retry_at = Some(Instant::now() + retry);
                        retry = (retry * 2).min(RETRY_MAX);
                    }
                }
            }
            _ = reread.tick() => {}
            _ = async { tokio::time::sleep_until(retry_at.expect("guarded")).await },
                if retry_at.is_some() && txn.is_none() => {
                retry_at = None;
            }
        }
    }
}
