//! A monitored session that survives the server: connect, monitor, keep a replica, and
//! after any disconnect reconnect with backoff and rebuild the replica from scratch.
//!
//! [`Session::next_event`] is the only driver; it is safe to use inside `tokio::select!`
//! (a reconnect interrupted there is simply started again, and the backoff deadline is
//! kept across calls).

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::client::{Client, ClientOptions, Endpoint, Notification, OvsdbError};
use super::monitor::{MonitorRequest, Replica, UpdateFormat, column_kinds};
use crate::backoff::Backoff;

/// Longest time for connect + get_schema + monitor before the attempt counts as failed.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// What to connect to and monitor.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// Server.
    pub endpoint: Endpoint,
    /// Database (`Open_vSwitch`).
    pub database: String,
    /// Tables and columns to replicate.
    pub monitor: Vec<MonitorRequest>,
    /// First reconnect delay; doubled after each failure up to `backoff_max`.
    pub backoff_min: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
    /// Session tuning (keepalive).
    pub client: ClientOptions,
}

impl SessionConfig {
    /// Defaults: backoff 250 ms to 8 s, keepalive as suits the endpoint.
    pub fn new(endpoint: Endpoint, database: &str, monitor: Vec<MonitorRequest>) -> Self {
        let client = ClientOptions::for_endpoint(&endpoint);
        SessionConfig {
            endpoint,
            database: database.to_string(),
            monitor,
            backoff_min: Duration::from_millis(250),
            backoff_max: Duration::from_secs(8),
            client,
        }
    }
}

/// What happened in [`Session::next_event`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionEvent {
    /// Connected and the replica rebuilt from the server's full contents.
    Connected,
    /// Monitor updates applied to the replica.
    Updated,
    /// The session ended; the replica is stale until the next `Connected`.
    Disconnected(String),
    /// A connection attempt failed; the next one waits for the backoff.
    ConnectFailed(String),
}

const MONITOR_ID: &str = "rdo";

struct Live {
    client: Client,
    notes: mpsc::UnboundedReceiver<Notification>,
    format: UpdateFormat,
}

/// A self-healing monitored session.
pub struct Session {
    config: SessionConfig,
    live: Option<Live>,
    replica: Replica,
    next_attempt: Instant,
    /// Jittered: a hardware VTEP's OVSDB serves every agent, and after it restarts they
    /// must not all reconnect in the same instant.
    backoff: Backoff,
    connects: u64,
}

impl Session {
    /// A session that connects on the first [`Session::next_event`].
    pub fn new(config: SessionConfig) -> Self {
        let backoff = Backoff::new(config.backoff_min, config.backoff_max).with_jitter();
        Session {
            config,
            live: None,
            replica: Replica::default(),
            next_attempt: Instant::now(),
            backoff,
            connects: 0,
        }
    }

    /// The replicated rows (stale while disconnected).
    pub fn replica(&self) -> &Replica {
        &self.replica
    }

    /// The rows the replica changed since the last call (`None`: read all of it, e.g. after
    /// a resync); see [`Replica::take_touched`].
    pub fn take_touched(&mut self) -> super::Touched {
        self.replica.take_touched()
    }

    /// The live client, for transactions.
    pub fn client(&self) -> Option<&Client> {
        self.live.as_ref().map(|l| &l.client)
    }

    /// Whether a monitored session is up.
    pub fn is_connected(&self) -> bool {
        self.live.as_ref().is_some_and(|l| !l.client.is_closed())
    }

    /// Successful connections so far (the first one included).
    pub fn connects(&self) -> u64 {
        self.connects
    }

    /// Waits for the next thing to happen.
    pub async fn next_event(&mut self) -> SessionEvent {
        let Some(live) = self.live.as_mut() else {
            tokio::time::sleep_until(self.next_attempt).await;
            // A server that accepts but never answers must not hang the session: unix
            // sockets get no keepalive probes.
            let attempt = tokio::time::timeout(CONNECT_TIMEOUT, self.connect()).await;
            let attempt = attempt.unwrap_or_else(|_| {
                Err(OvsdbError::Disconnected(format!(
                    "no answer to the handshake within {CONNECT_TIMEOUT:?}"
                )))
            });
            return match attempt {
                Ok(()) => SessionEvent::Connected,
                Err(e) => {
                    self.next_attempt = Instant::now() + self.backoff.next_delay();
                    SessionEvent::ConnectFailed(e.to_string())
                }
            };
        };
        enum Got {
            Note(Option<Notification>),
            Closed,
        }
        let closed = live.client.closed();
        let got = tokio::select! {
            // Updates first: those sent before a disconnect still count.
            biased;
            note = live.notes.recv() => Got::Note(note),
            _ = closed => Got::Closed,
        };
        match got {
            Got::Note(Some(n)) => match self.apply(n) {
                Ok(()) => {
                    self.drain();
                    SessionEvent::Updated
                }
                Err(e) => self.drop_live(e),
            },
            Got::Note(None) | Got::Closed => {
                let reason = self
                    .live
                    .as_ref()
                    .and_then(|l| l.client.close_reason())
                    .unwrap_or_default();
                self.drop_live(reason)
            }
        }
    }

    /// Applies every update already received, without waiting. Call it after a
    /// transaction's reply: the server sends the update for a transaction before its
    /// reply, so after this the replica includes the transaction.
    pub fn drain(&mut self) -> usize {
        let mut n = 0;
        loop {
            let Some(live) = self.live.as_mut() else {
                return n;
            };
            match live.notes.try_recv() {
                Ok(note) => {
                    if let Err(e) = self.apply(note) {
                        self.drop_live(e);
                        return n;
                    }
                    n += 1;
                }
                Err(_) => return n,
            }
        }
    }

    fn drop_live(&mut self, reason: String) -> SessionEvent {
        if let Some(l) = self.live.take() {
            l.client.close();
        }
        // Try again soon; a server that just restarted is usually back at once. The first
        // attempt after a drop waits the jittered minimum, the failures after it double.
        self.backoff.reset();
        self.next_attempt = Instant::now() + self.backoff.next_delay();
        self.backoff.reset();
        SessionEvent::Disconnected(reason)
    }

    fn apply(&mut self, note: Notification) -> Result<(), String> {
        let Some(live) = self.live.as_ref() else {
            return Ok(());
        };
        let expected = match live.format {
            UpdateFormat::Update2 => "update2",
            UpdateFormat::Update => "update",
        };
        if note.method != expected {
            return Ok(()); // e.g. "locked", "update3": not ours
        }
        let params = note.params.as_array();
        let (Some(id), Some(updates)) = (
            params.and_then(|p| p.first()),
            params.and_then(|p| p.get(1)),
        ) else {
            return Err(format!("malformed {expected}: {}", note.params));
        };
        if id.as_str() != Some(MONITOR_ID) {
            return Ok(());
        }
        let format = live.format;
        self.replica
            .apply(format, updates)
            .map_err(|e| format!("monitor update: {e}"))
    }

    async fn connect(&mut self) -> Result<(), OvsdbError> {
        let (client, notes) =
            Client::connect(&self.config.endpoint, self.config.client.clone()).await?;
        let schema = client.get_schema(&self.config.database).await?;
        let kinds = column_kinds(&schema).map_err(|e| OvsdbError::Protocol(e.to_string()))?;
        let (format, initial) = client
            .monitor(&self.config.database, MONITOR_ID, &self.config.monitor)
            .await?;
        // Full resync: the new replica is built only from the server's current contents.
        let mut replica = Replica::new(kinds);
        replica
            .apply(format, &initial)
            .map_err(|e| OvsdbError::Protocol(e.to_string()))?;
        self.replica = replica;
        self.live = Some(Live {
            client,
            notes,
            format,
        });
        self.backoff.reset();
        self.connects += 1;
        // Updates that raced the initial reply are already queued: apply them.
        self.drain();
        Ok(())
    }
}
