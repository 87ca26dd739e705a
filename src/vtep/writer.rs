//! The gateway writer: keeps one ToR's `hardware_vtep` database equal to the desired
//! [`FabricState`], the way [`crate::ovs::reconcile`] keeps a node's OVS.
//!
//! ```text
//! desired (watch) ─┐
//!                  ├─► diff (pure) ─► one transact ─► ToR ovsdb-server ─► switch
//! monitor replica ─┘                                      │
//!        ▲                                                ▼
//!        └────── update2 (ports, faults, Tunnel bfd_status) ──► observed (watch)
//! ```
//! - `None` desired = not completely known: nothing is written at all. The diff only runs
//!   on a replica rebuilt from the server's complete contents (after every (re)connect),
//!   so nothing is deleted before the first complete read of the switch.
//! - Every event re-runs the diff; one transaction in flight at a time; after its reply
//!   the updates it caused (sent before the reply) are applied first. A refused
//!   transaction (e.g. a `wait` that lost a race) is retried with backoff, or at once when
//!   the desired state changes; a lost reply needs nothing: the reconnect resync shows
//!   what committed.
//! - Shutdown deletes nothing.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::ovsdb::{
    Endpoint, OpResult, OvsdbError, Session, SessionConfig, SessionEvent, TlsFiles,
};

use super::diff::{self, VtepPlan};
use super::fabric::{FabricState, Vni};
use super::model::{DATABASE, VtepView, monitor_requests};

/// Which switch, where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayConfig {
    /// The ToR's OVSDB endpoint (`ssl:10.0.0.2:6640`, `tcp:...`, `unix:...`).
    pub endpoint: String,
    /// The Physical_Switch name.
    pub switch: String,
    /// Client key, certificate and CA for `ssl:` endpoints.
    pub tls: Option<TlsFiles>,
}

/// One physical port as the switch reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortStatus {
    /// Name.
    pub name: String,
    /// VLAN → logical switch name (ours and foreign).
    pub bindings: BTreeMap<u16, String>,
    /// `port_fault_status`.
    pub fault_status: Vec<String>,
}

/// The switch as it reports itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SwitchStatus {
    /// Physical_Switch name.
    pub name: String,
    /// Its description.
    pub description: String,
    /// VTEP addresses.
    pub tunnel_ips: Vec<String>,
    /// Management addresses.
    pub management_ips: Vec<String>,
    /// `switch_fault_status`.
    pub fault_status: Vec<String>,
    /// Its ports.
    pub ports: Vec<PortStatus>,
}

/// A tunnel the switch made, with its BFD state (read-only).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TunnelStatus {
    /// Local locator address.
    pub local_ip: String,
    /// Remote locator address.
    pub remote_ip: String,
    /// `bfd_status` (e.g. `state=up`).
    pub bfd_status: BTreeMap<String, String>,
}

/// What the writer sees; re-sent after every event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GatewayObserved {
    /// Whether a monitored session is up (else the rest is the last known state).
    pub connected: bool,
    /// The Physical_Switch, once seen.
    pub switch: Option<SwitchStatus>,
    /// Owned logical switches now in the database: VNI → name.
    pub managed: BTreeMap<Vni, String>,
    /// Their flood lists (`unknown-dst` locators) as the database holds them: VNI → IPs.
    pub flood: BTreeMap<Vni, Vec<String>>,
    /// Tunnels of the switch.
    pub tunnels: Vec<TunnelStatus>,
    /// Foreign rows in the way.
    pub conflicts: Vec<String>,
    /// Things waiting for the switch.
    pub pending: Vec<String>,
    /// Whether the last diff was empty.
    pub in_sync: bool,
    /// Transactions sent.
    pub transactions: u64,
    /// Reconnections after the first connection.
    pub reconnects: u64,
    /// The server's words for the last refused transaction or failed connect.
    pub last_error: Option<String>,
}

/// Errors that stop the writer (everything else is retried).
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The configuration cannot work.
    #[error("invalid gateway configuration: {0}")]
    Config(String),
}

/// The switch's self-report and tunnels, read from the view.
pub fn switch_status(view: &VtepView, switch: &str) -> (Option<SwitchStatus>, Vec<TunnelStatus>) {
    let Some(ps) = view.switch(switch) else {
        return (None, Vec::new());
    };
    let ls_name = |u: &crate::ovsdb::Uuid| {
        view.logical_switches
            .get(u)
            .map_or_else(|| u.0.clone(), |l| l.name.clone())
    };
    let ports = view
        .ports_of(ps)
        .values()
        .map(|p| PortStatus {
            name: p.name.clone(),
            bindings: p
                .vlan_bindings
                .iter()
                .map(|(v, u)| (*v, ls_name(u)))
                .collect(),
            fault_status: p.fault_status.clone(),
        })
        .collect();
    let ip = |u: &crate::ovsdb::Uuid| {
        view.locators
            .get(u)
            .map(|l| l.dst_ip.clone())
            .unwrap_or_default()
    };
    let tunnels = ps
        .tunnels
        .iter()
        .filter_map(|u| view.tunnels.get(u))
        .map(|t| TunnelStatus {
            local_ip: ip(&t.local),
            remote_ip: ip(&t.remote),
            bfd_status: t.bfd_status.clone(),
        })
        .collect();
    let status = SwitchStatus {
        name: ps.name.clone(),
        description: ps.description.clone(),
        tunnel_ips: ps.tunnel_ips.clone(),
        management_ips: ps.management_ips.clone(),
        fault_status: ps.fault_status.clone(),
        ports,
    };
    (Some(status), tunnels)
}

/// The `unknown-dst` locators of each owned logical switch, read from the view.
fn flood_lists(view: &VtepView, managed: &BTreeMap<Vni, String>) -> BTreeMap<Vni, Vec<String>> {
    managed
        .iter()
        .map(|(vni, name)| {
            let mut ips: Vec<String> = view
                .logical_switches
                .values()
                .filter(|ls| &ls.name == name)
                .flat_map(|ls| {
                    view.mcast_remote
                        .values()
                        .filter(move |m| m.logical_switch == ls.uuid && m.mac == diff::UNKNOWN_DST)
                })
                .flat_map(|m| view.locator_sets.get(&m.target).into_iter().flatten())
                .filter_map(|u| view.locators.get(u).map(|l| l.dst_ip.clone()))
                .collect();
            ips.sort();
            ips.dedup();
            (*vni, ips)
        })
        .collect()
}

const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);
const REREAD: Duration = Duration::from_secs(30);

type Txn = Pin<Box<dyn Future<Output = Result<Vec<OpResult>, OvsdbError>> + Send>>;

/// Diffs against the replica, publishes, and returns the transaction to run when `free`.
fn publish(
    state: &mut GatewayObserved,
    session: &Session,
    desired: Option<&FabricState>,
    switch: &str,
    observed: &watch::Sender<GatewayObserved>,
    free: bool,
) -> Option<Txn> {
    state.connected = session.is_connected();
    state.reconnects = session.connects().saturating_sub(1);
    state.in_sync &= state.connected;
    let mut txn: Option<Txn> = None;
    if state.connected {
        let view = VtepView::from_replica(session.replica());
        let plan: VtepPlan = diff::plan(desired, &view, switch);
        (state.switch, state.tunnels) = switch_status(&view, switch);
        state.flood = flood_lists(&view, &plan.managed);
        state.managed = plan.managed;
        state.conflicts = plan.conflicts;
        state.pending = plan.pending;
        state.in_sync = desired.is_some() && plan.ops.is_empty();
        if free
            && !plan.ops.is_empty()
            && let Some(client) = session.client().cloned()
        {
            tracing::info!(switch, changes = ?plan.changes, "reconciling hardware VTEP");
            state.transactions += 1;
            let ops = plan.ops;
            txn = Some(Box::pin(
                async move { client.transact(DATABASE, &ops).await },
            ));
        }
    }
    observed.send_replace(state.clone());
    txn
}

fn session_config(config: &GatewayConfig) -> Result<SessionConfig, GatewayError> {
    let endpoint: Endpoint = config
        .endpoint
        .parse()
        .map_err(|e: OvsdbError| GatewayError::Config(e.to_string()))?;
    if config.switch.is_empty() {
        return Err(GatewayError::Config("empty Physical_Switch name".into()));
    }
    let mut sc = SessionConfig::new(endpoint, DATABASE, monitor_requests());
    sc.client.tls = config.tls.clone();
    Ok(sc)
}

/// Runs until `shutdown` is cancelled. Returns an error only for an unusable config.
pub async fn run(
    config: GatewayConfig,
    mut desired: watch::Receiver<Option<FabricState>>,
    observed: watch::Sender<GatewayObserved>,
    shutdown: CancellationToken,
) -> Result<(), GatewayError> {
    let mut session = Session::new(session_config(&config)?);
    let switch = config.switch.clone();
    let mut desired_open = true;
    let mut txn: Option<Txn> = None;
    let mut retry_at: Option<Instant> = None;
    let mut retry = crate::backoff::Backoff::new(RETRY_MIN, RETRY_MAX);
    let mut state = GatewayObserved::default();
    let mut want = desired.borrow_and_update().clone();
    let mut reread = tokio::time::interval(REREAD);
    reread.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let free = txn.is_none() && retry_at.is_none_or(|t| Instant::now() >= t);
        if let Some(t) = publish(
            &mut state,
            &session,
            want.as_ref(),
            &switch,
            &observed,
            free,
        ) {
            txn = Some(t);
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            changed = desired.changed(), if desired_open => {
                want = desired.borrow_and_update().clone();
                desired_open = changed.is_ok();
                retry_at = None;
            }
            event = session.next_event() => on_event(event, &mut state),
            result = async { txn.as_mut().expect("guarded").await }, if txn.is_some() => {
                txn = None;
                session.drain();
                match result {
                    Ok(_) => {
                        retry.reset();
                        retry_at = None;
                        state.last_error = None;
                    }
                    Err(OvsdbError::OutcomeUnknown(why)) | Err(OvsdbError::Disconnected(why)) => {
                        tracing::warn!(%why, "hardware VTEP transaction outcome unknown");
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "hardware VTEP transaction refused");
                        state.last_error = Some(e.to_string());
                        retry_at = Some(Instant::now() + retry.next_delay());
                    }
                }
            }
            _ = reread.tick() => {}
            _ = async { tokio::time::sleep_until(retry_at.expect("guarded")).await },
                if retry_at.is_some() && txn.is_none() => retry_at = None,
        }
    }
}

fn on_event(event: SessionEvent, state: &mut GatewayObserved) {
    match event {
        SessionEvent::Connected => {
            tracing::info!("hardware VTEP connected, replica resynced");
            state.last_error = None;
        }
        SessionEvent::Updated => {}
        SessionEvent::Disconnected(why) => tracing::warn!(%why, "hardware VTEP session lost"),
        SessionEvent::ConnectFailed(why) => {
            tracing::warn!(%why, "hardware VTEP connect failed");
            state.last_error = Some(why);
        }
    }
}
