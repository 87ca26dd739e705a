//! One JSON-RPC session with an OVSDB server.
//!
//! A reader task splits incoming bytes into messages ([`Framer`]), hands replies to the
//! caller waiting on that id (any number of requests may be in flight), answers the
//! server's `echo` at once and forwards notifications (monitor updates) in order to an
//! unbounded channel, so no update is ever dropped. A writer task owns the write half.
//! On TCP, a quiet peer is probed with our own `echo` and the session is closed when it
//! does not answer. When the session ends, every waiting request fails: a `transact`
//! with [`OvsdbError::OutcomeUnknown`] (it may or may not have committed), anything else
//! with [`OvsdbError::Disconnected`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::codec::Framer;
use super::monitor::{MonitorRequest, UpdateFormat, requests_json};
use super::ops::{OpResult, Operation, TransactError, parse_transact_result};
use super::tls::TlsFiles;

/// Where the server listens, spelled as `ovs-vsctl --db` spells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `unix:/path/to/db.sock`
    Unix(PathBuf),
    /// `tcp:host:port` (`tcp:[::1]:6640` for IPv6).
    Tcp(String),
    /// `ssl:host:port`: TLS with a client certificate ([`ClientOptions::tls`]).
    Ssl(String),
}

/// Splits `HOST:PORT` (`[v6]:PORT`) into a socket address string.
fn host_port(rest: &str, scheme: &str) -> Result<String, String> {
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| format!("expected {scheme}:HOST:PORT"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err("empty host".into());
    }
    let port: u16 = port
        .parse()
        .map_err(|_| "port is not a number 0-65535".to_string())?;
    Ok(if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    })
}

impl Endpoint {
    /// The host part of a TCP or SSL address (without IPv6 brackets).
    fn host(addr: &str) -> &str {
        let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
        host.trim_start_matches('[').trim_end_matches(']')
    }
}

impl FromStr for Endpoint {
    type Err = OvsdbError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| OvsdbError::Endpoint(format!("{s:?}: {why}"));
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(bad("empty socket path"));
            }
            return Ok(Endpoint::Unix(PathBuf::from(path)));
        }
        if let Some(rest) = s.strip_prefix("tcp:") {
            return host_port(rest, "tcp")
                .map(Endpoint::Tcp)
                .map_err(|e| bad(&e));
        }
        if let Some(rest) = s.strip_prefix("ssl:") {
            return host_port(rest, "ssl")
                .map(Endpoint::Ssl)
                .map_err(|e| bad(&e));
        }
        Err(bad("expected unix:PATH, tcp:HOST:PORT or ssl:HOST:PORT"))
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "unix:{}", p.display()),
            Endpoint::Tcp(a) => write!(f, "tcp:{a}"),
            Endpoint::Ssl(a) => write!(f, "ssl:{a}"),
        }
    }
}

/// Errors of the OVSDB client.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OvsdbError {
    /// The endpoint string is not understood.
    #[error("bad OVSDB endpoint {0}")]
    Endpoint(String),
    /// Connecting failed.
    #[error("connecting to {endpoint}: {message}")]
    Connect {
        /// The endpoint.
        endpoint: String,
        /// The OS error.
        message: String,
    },
    /// The session is closed (before or while the request was sent).
    #[error("OVSDB session closed: {0}")]
    Disconnected(String),
    /// The session closed after a transaction was sent and before its reply: it may or
    /// may not have been committed. Re-read the database before retrying.
    #[error("OVSDB transaction outcome unknown: {0}")]
    OutcomeUnknown(String),
    /// The server answered with a JSON-RPC error; the session lives on.
    #[error("OVSDB {method} failed: {error}")]
    Rpc {
        /// The method called.
        method: String,
        /// The `error` member of the reply.
        error: Value,
    },
    /// The transaction was refused and rolled back.
    #[error("OVSDB transaction refused: {0}")]
    Transact(#[from] TransactError),
    /// The server sent something this client does not understand.
    #[error("OVSDB protocol error: {0}")]
    Protocol(String),
}

/// A notification from the server (`update`, `update2`, ...).
#[derive(Clone, Debug, PartialEq)]
pub struct Notification {
    /// Method name.
    pub method: String,
    /// Params.
    pub params: Value,
}

/// Tuning of a session.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Send our own `echo` after this long without hearing from the server, and close
    /// the session when another interval passes in silence. `None` = never probe.
    pub probe_interval: Option<Duration>,
    /// Key, certificate and CA for `ssl:` endpoints (required there, ignored elsewhere).
    pub tls: Option<TlsFiles>,
}

impl ClientOptions {
    /// Defaults for an endpoint: probe every 5 s on TCP (as ovsdb-server does), never
    /// on a Unix socket (local peers die visibly).
    pub fn for_endpoint(endpoint: &Endpoint) -> Self {
        ClientOptions {
            probe_interval: match endpoint {
                Endpoint::Tcp(_) | Endpoint::Ssl(_) => Some(Duration::from_secs(5)),
                Endpoint::Unix(_) => None,
            },
            tls: None,
        }
    }
}

type Reply = Result<Value, Value>;

/// A JSON-RPC request, encoded straight from its typed parameters.
#[derive(Serialize)]
struct Request<'a, P> {
    id: u64,
    method: &'a str,
    params: &'a P,
}

/// `transact`'s parameters: the database, then the operations.
struct TransactParams<'a> {
    db: &'a str,
    ops: &'a [Operation],
}

impl Serialize for TransactParams<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(self.ops.len() + 1))?;
        seq.serialize_element(self.db)?;
        for op in self.ops {
            seq.serialize_element(op)?;
        }
        seq.end()
    }
}

struct Shared {
    pending: Mutex<HashMap<u64, oneshot::Sender<Reply>>>,
    closed: CancellationToken,
    reason: Mutex<Option<String>>,
}

impl Shared {
    fn close(&self, reason: String) {
        {
            let mut r = self.reason.lock().unwrap_or_else(|e| e.into_inner());
            if r.is_none() {
                *r = Some(reason);
            }
        }
        self.closed.cancel();
        // Dropping the senders wakes every waiter with "closed".
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    fn reason(&self) -> String {
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or_else(|| "closed".to_string())
    }
}

struct Inner {
    shared: Arc<Shared>,
    tx: mpsc::UnboundedSender<Vec<u8>>,
    next_id: AtomicU64,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shared.close("client dropped".to_string());
    }
}

/// A handle to one session; cheap to clone. The session ends when every handle is
/// dropped, on [`Client::close`], or when the peer goes away.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

/// Id of our own keepalive echo (never used for real requests).
const PROBE_ID: &str = "rdo-probe";

impl Client {
    /// Connects; returns the client and the channel of the server's notifications.
    pub async fn connect(
        endpoint: &Endpoint,
        options: ClientOptions,
    ) -> Result<(Client, mpsc::UnboundedReceiver<Notification>), OvsdbError> {
        let err = |e: std::io::Error| OvsdbError::Connect {
            endpoint: endpoint.to_string(),
            message: e.to_string(),
        };
        let (read, write): (
            Box<dyn AsyncRead + Send + Unpin>,
            Box<dyn AsyncWrite + Send + Unpin>,
        ) = match endpoint {
            Endpoint::Unix(path) => {
                let s = tokio::net::UnixStream::connect(path).await.map_err(err)?;
                let (r, w) = s.into_split();
                (Box::new(r), Box::new(w))
            }
            Endpoint::Tcp(addr) => {
                let s = tokio::net::TcpStream::connect(addr).await.map_err(err)?;
                // Requests are small and latency matters more than packing.
                let _ = s.set_nodelay(true);
                let (r, w) = s.into_split();
                (Box::new(r), Box::new(w))
            }
            Endpoint::Ssl(addr) => {
                let s = connect_tls(endpoint, addr, options.tls.as_ref()).await?;
                let (r, w) = tokio::io::split(s);
                (Box::new(r), Box::new(w))
            }
        };
        Ok(Self::from_stream(read, write, options))
    }

    /// Runs a session over an already connected byte stream.
    pub fn from_stream(
        read: Box<dyn AsyncRead + Send + Unpin>,
        write: Box<dyn AsyncWrite + Send + Unpin>,
        options: ClientOptions,
    ) -> (Client, mpsc::UnboundedReceiver<Notification>) {
        let shared = Arc::new(Shared {
            pending: Mutex::new(HashMap::new()),
            closed: CancellationToken::new(),
            reason: Mutex::new(None),
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let (ntx, nrx) = mpsc::unbounded_channel();
        tokio::spawn(writer(write, rx, shared.clone()));
        tokio::spawn(reader(read, tx.clone(), ntx, shared.clone(), options));
        let client = Client {
            inner: Arc::new(Inner {
                shared,
                tx,
                next_id: AtomicU64::new(1),
            }),
        };
        (client, nrx)
    }

    /// Whether the session has ended.
    pub fn is_closed(&self) -> bool {
        self.inner.shared.closed.is_cancelled()
    }

    /// Resolves when the session ends (the disconnect signal).
    pub fn closed(&self) -> tokio_util::sync::WaitForCancellationFutureOwned {
        self.inner.shared.closed.clone().cancelled_owned()
    }

    /// Why the session ended (`None` while open).
    pub fn close_reason(&self) -> Option<String> {
        self.is_closed().then(|| self.inner.shared.reason())
    }

    /// Ends the session.
    pub fn close(&self) {
        self.inner.shared.close("closed by client".to_string());
    }

    /// Sends a request and waits for its reply. `Ok(None)` from the inner result means
    /// the session closed after the request was queued.
    async fn request(
        &self,
        method: &str,
        params: &(impl Serialize + Sync),
    ) -> Result<Option<Reply>, OvsdbError> {
        let shared = &self.inner.shared;
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let bytes = serde_json::to_vec(&Request { id, method, params })
            .map_err(|e| OvsdbError::Protocol(e.to_string()))?;
        let (otx, orx) = oneshot::channel();
        shared
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, otx);
        // Nobody will answer a request the closed session never sent.
        let abandon = || {
            shared
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
            OvsdbError::Disconnected(shared.reason())
        };
        // The session may have closed before the insert.
        if shared.closed.is_cancelled() {
            return Err(abandon());
        }
        if self.inner.tx.send(bytes).is_err() {
            return Err(abandon());
        }
        Ok(orx.await.ok())
    }

    /// Calls `method`; a JSON-RPC error is returned as [`OvsdbError::Rpc`].
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, OvsdbError> {
        match self.request(method, &params).await? {
            Some(Ok(v)) => Ok(v),
            Some(Err(error)) => Err(OvsdbError::Rpc {
                method: method.to_string(),
                error,
            }),
            None => Err(OvsdbError::Disconnected(self.inner.shared.reason())),
        }
    }

    /// `list_dbs`.
    pub async fn list_dbs(&self) -> Result<Vec<String>, OvsdbError> {
        let v = self.call("list_dbs", json!([])).await?;
        serde_json::from_value(v.clone())
            .map_err(|_| OvsdbError::Protocol(format!("list_dbs result {v}")))
    }

    /// `get_schema`.
    pub async fn get_schema(&self, db: &str) -> Result<Value, OvsdbError> {
        self.call("get_schema", json!([db])).await
    }

    /// `echo`: a round trip.
    pub async fn echo(&self) -> Result<(), OvsdbError> {
        self.call("echo", json!(["rdo"])).await.map(drop)
    }

    /// `transact`: runs `ops` atomically. A refused transaction is
    /// [`OvsdbError::Transact`]; a lost reply is [`OvsdbError::OutcomeUnknown`].
    pub async fn transact(&self, db: &str, ops: &[Operation]) -> Result<Vec<OpResult>, OvsdbError> {
        match self
            .request("transact", &TransactParams { db, ops })
            .await?
        {
            Some(Ok(v)) => parse_transact_result(&v, ops.len())
                .map_err(|e| OvsdbError::Protocol(e.to_string()))?
                .map_err(OvsdbError::Transact),
            Some(Err(error)) => Err(OvsdbError::Rpc {
                method: "transact".into(),
                error,
            }),
            None => Err(OvsdbError::OutcomeUnknown(self.inner.shared.reason())),
        }
    }

    /// Starts a monitor: `monitor_cond` (updates arrive as `update2`), or plain
    /// `monitor` (`update`) when the server does not know `monitor_cond`. Returns the
    /// format and the initial contents, to be applied with
    /// [`super::monitor::Replica::apply`].
    pub async fn monitor(
        &self,
        db: &str,
        monitor_id: &str,
        requests: &[MonitorRequest],
    ) -> Result<(UpdateFormat, Value), OvsdbError> {
        let reqs = requests_json(requests);
        match self
            .call("monitor_cond", json!([db, monitor_id, reqs]))
            .await
        {
            Ok(v) => Ok((UpdateFormat::Update2, v)),
            Err(OvsdbError::Rpc { error, .. }) if is_unknown_method(&error) => {
                let v = self.call("monitor", json!([db, monitor_id, reqs])).await?;
                Ok((UpdateFormat::Update, v))
            }
            Err(e) => Err(e),
        }
    }

    /// Starts a plain `monitor` (RFC 7047) even when `monitor_cond` is available.
    pub async fn monitor_legacy(
        &self,
        db: &str,
        monitor_id: &str,
        requests: &[MonitorRequest],
    ) -> Result<Value, OvsdbError> {
        self.call("monitor", json!([db, monitor_id, requests_json(requests)]))
            .await
    }
}

/// TCP connect + TLS handshake for an `ssl:` endpoint.
async fn connect_tls(
    endpoint: &Endpoint,
    addr: &str,
    files: Option<&TlsFiles>,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, OvsdbError> {
    let fail = |message: String| OvsdbError::Connect {
        endpoint: endpoint.to_string(),
        message,
    };
    let files = files.ok_or_else(|| {
        fail("ssl: needs a private key, a certificate and a CA certificate".into())
    })?;
    let config = super::tls::client_config(files).map_err(fail)?;
    let name = rustls::pki_types::ServerName::try_from(Endpoint::host(addr).to_string())
        .map_err(|e| fail(format!("server name: {e}")))?;
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| fail(super::tls::explain(&e)))
}

fn is_unknown_method(error: &Value) -> bool {
    let text = match error {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    text.contains("unknown method")
}

async fn writer(
    mut write: Box<dyn AsyncWrite + Send + Unpin>,
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
    shared: Arc<Shared>,
) {
    let mut batch = Vec::new();
    loop {
        let first = tokio::select! {
            m = rx.recv() => m,
            _ = shared.closed.cancelled() => None,
        };
        let Some(first) = first else { break };
        batch.clear();
        batch.extend_from_slice(&first);
        // Coalesce what is already queued into one write.
        while let Ok(more) = rx.try_recv() {
            batch.extend_from_slice(&more);
        }
        if let Err(e) = write.write_all(&batch).await {
            shared.close(format!("write: {e}"));
            break;
        }
    }
    let _ = write.shutdown().await;
}

async fn reader(
    mut read: Box<dyn AsyncRead + Send + Unpin>,
    tx: mpsc::UnboundedSender<Vec<u8>>,
    notifications: mpsc::UnboundedSender<Notification>,
    shared: Arc<Shared>,
    options: ClientOptions,
) {
    let mut framer = Framer::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut last_heard = Instant::now();
    let mut probe_sent = false;
    let reason = loop {
        let probe_at = options.probe_interval.map(|i| last_heard + i);
        let n = tokio::select! {
            _ = shared.closed.cancelled() => break None,
            r = read.read(&mut buf) => r,
            _ = async {
                match probe_at {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            } => {
                if probe_sent {
                    break Some("server did not answer echo".to_string());
                }
                probe_sent = true;
                // Count from now so the peer gets a full interval to answer.
                last_heard = Instant::now();
                let msg = json!({"id": PROBE_ID, "method": "echo", "params": []});
                let _ = tx.send(msg.to_string().into_bytes());
                continue;
            }
        };
        let n = match n {
            Ok(0) => break Some("connection closed by server".to_string()),
            Ok(n) => n,
            Err(e) => break Some(format!("read: {e}")),
        };
        last_heard = Instant::now();
        probe_sent = false;
        framer.push(&buf[..n]);
        let mut failed = None;
        loop {
            match framer.next_message() {
                Ok(Some(msg)) => {
                    if let Err(e) = dispatch(msg, &tx, &notifications, &shared) {
                        failed = Some(e);
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    failed = Some(format!("framing: {e}"));
                    break;
                }
            }
        }
        if let Some(why) = failed {
            break Some(why);
        }
    };
    if let Some(reason) = reason {
        tracing::debug!(%reason, "OVSDB session ended");
        shared.close(reason);
    }
}

/// Routes one incoming message. An error closes the session.
fn dispatch(
    msg: Value,
    tx: &mpsc::UnboundedSender<Vec<u8>>,
    notifications: &mpsc::UnboundedSender<Notification>,
    shared: &Shared,
) -> Result<(), String> {
    let Value::Object(mut o) = msg else {
        return Err(format!("message is not an object: {msg}"));
    };
    let id = o.remove("id").unwrap_or(Value::Null);
    if let Some(method) = o.remove("method") {
        let method = method
            .as_str()
            .ok_or_else(|| format!("method is not a string: {method}"))?
            .to_string();
        let params = o.remove("params").unwrap_or(Value::Null);
        if id.is_null() {
            // Nobody listening any more is not an error of the session.
            let _ = notifications.send(Notification { method, params });
            return Ok(());
        }
        let reply = if method == "echo" {
            json!({"id": id, "result": params, "error": null})
        } else {
            json!({"id": id, "result": null, "error": "unknown method"})
        };
        let _ = tx.send(reply.to_string().into_bytes());
        return Ok(());
    }
    let error = o.remove("error").unwrap_or(Value::Null);
    let result = o.remove("result").unwrap_or(Value::Null);
    let Some(id) = id.as_u64() else {
        // Replies to our keepalive echo (or ids we never used) need no routing.
        return Ok(());
    };
    let waiter = shared
        .pending
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&id);
    if let Some(w) = waiter {
        let _ = w.send(if error.is_null() {
            Ok(result)
        } else {
            Err(error)
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ovsdb::{Condition, Datum};

    #[test]
    fn transact_request_is_db_then_operations() {
        let ops = [
            Operation::Comment("hi".into()),
            Operation::Delete {
                table: "Port".into(),
                conditions: vec![Condition::eq("name", Datum::string("p"))],
            },
        ];
        let params = TransactParams {
            db: "Open_vSwitch",
            ops: &ops,
        };
        let bytes = serde_json::to_vec(&Request {
            id: 7,
            method: "transact",
            params: &params,
        })
        .unwrap();
        let got: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            got,
            json!({"id": 7, "method": "transact", "params": ["Open_vSwitch",
                {"op": "comment", "comment": "hi"},
                {"op": "delete", "table": "Port", "where": [["name", "==", "p"]]}]})
        );
    }

    #[test]
    fn endpoints() {
        assert_eq!(
            "unix:/run/db.sock".parse::<Endpoint>().unwrap(),
            Endpoint::Unix("/run/db.sock".into())
        );
        assert_eq!(
            "tcp:127.0.0.1:6640".parse::<Endpoint>().unwrap(),
            Endpoint::Tcp("127.0.0.1:6640".into())
        );
        assert_eq!(
            "tcp:[::1]:6640".parse::<Endpoint>().unwrap(),
            Endpoint::Tcp("[::1]:6640".into())
        );
        assert_eq!(
            "tcp:[::1]:6640".parse::<Endpoint>().unwrap().to_string(),
            "tcp:[::1]:6640"
        );
        assert_eq!(
            "ssl:10.0.0.2:6640".parse::<Endpoint>().unwrap(),
            Endpoint::Ssl("10.0.0.2:6640".into())
        );
        assert_eq!(
            "ssl:[fd00::2]:6640"
                .parse::<Endpoint>()
                .unwrap()
                .to_string(),
            "ssl:[fd00::2]:6640"
        );
        assert_eq!(Endpoint::host("[fd00::2]:6640"), "fd00::2");
        for bad in [
            "",
            "unix:",
            "tcp:host",
            "tcp::6640",
            "tcp:h:99999",
            "ssl:h",
            "ssl::1",
            "/x",
        ] {
            assert!(bad.parse::<Endpoint>().is_err(), "{bad}");
        }
    }

    /// A scripted peer over an in-memory pipe.
    fn pair() -> (
        Client,
        mpsc::UnboundedReceiver<Notification>,
        tokio::io::DuplexStream,
    ) {
        let (ours, theirs) = tokio::io::duplex(1 << 20);
        let (r, w) = tokio::io::split(ours);
        let (c, n) = Client::from_stream(
            Box::new(r),
            Box::new(w),
            ClientOptions {
                probe_interval: None,
                tls: None,
            },
        );
        (c, n, theirs)
    }

    async fn read_msgs(
        peer: &mut tokio::io::DuplexStream,
        framer: &mut Framer,
        n: usize,
    ) -> Vec<Value> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while out.len() < n {
            while let Some(m) = framer.next_message().unwrap() {
                out.push(m);
            }
            if out.len() >= n {
                break;
            }
            let k = peer.read(&mut buf).await.unwrap();
            assert!(k > 0, "client closed");
            framer.push(&buf[..k]);
        }
        out
    }

    #[tokio::test]
    async fn replies_in_one_write_out_of_order_and_errors_keep_the_session() {
        let (c, mut notes, mut peer) = pair();
        let c1 = c.clone();
        let c2 = c.clone();
        let a = tokio::spawn(async move { c1.call("a", json!([])).await });
        let b = tokio::spawn(async move { c2.call("b", json!([])).await });
        let mut f = Framer::new();
        let msgs = read_msgs(&mut peer, &mut f, 2).await;
        let id_of = |m: &str| {
            msgs.iter()
                .find(|x| x["method"] == m)
                .map(|x| x["id"].clone())
                .unwrap()
        };
        // Both replies plus an echo request and a notification in one write, reversed.
        let blob = format!(
            "{}{}{}{}",
            json!({"id": id_of("b"), "result": null, "error": "unknown method"}),
            json!({"id": "echo", "method": "echo", "params": [1]}),
            json!({"id": null, "method": "update2", "params": ["m", {}]}),
            json!({"id": id_of("a"), "result": {"ok": "x\"}"}, "error": null}),
        );
        peer.write_all(blob.as_bytes()).await.unwrap();
        assert_eq!(a.await.unwrap().unwrap(), json!({"ok": "x\"}"}));
        let err = b.await.unwrap().unwrap_err();
        assert!(
            matches!(err, OvsdbError::Rpc { ref method, .. } if method == "b"),
            "{err}"
        );
        let echo = read_msgs(&mut peer, &mut f, 1).await;
        assert_eq!(echo[0], json!({"id": "echo", "result": [1], "error": null}));
        assert_eq!(notes.recv().await.unwrap().method, "update2");
        // Still alive after the error.
        let c3 = c.clone();
        let d = tokio::spawn(async move { c3.list_dbs().await });
        let m = read_msgs(&mut peer, &mut f, 1).await;
        peer.write_all(
            json!({"id": m[0]["id"], "result": ["Open_vSwitch"], "error": null})
                .to_string()
                .as_bytes(),
        )
        .await
        .unwrap();
        assert_eq!(d.await.unwrap().unwrap(), vec!["Open_vSwitch".to_string()]);
        assert!(!c.is_closed());
    }

    #[tokio::test]
    async fn lost_transact_reply_is_outcome_unknown_and_closed_is_signalled() {
        let (c, _notes, mut peer) = pair();
        let c1 = c.clone();
        let t =
            tokio::spawn(async move { c1.transact("db", &[Operation::Comment("x".into())]).await });
        let mut f = Framer::new();
        let m = read_msgs(&mut peer, &mut f, 1).await;
        assert_eq!(m[0]["method"], "transact");
        assert_eq!(
            m[0]["params"],
            json!(["db", {"op": "comment", "comment": "x"}])
        );
        drop(peer);
        assert!(matches!(
            t.await.unwrap(),
            Err(OvsdbError::OutcomeUnknown(_))
        ));
        c.closed().await;
        assert!(c.close_reason().unwrap().contains("closed by server"));
        assert!(matches!(c.echo().await, Err(OvsdbError::Disconnected(_))));
    }

    #[tokio::test]
    async fn monitor_falls_back_to_plain_monitor() {
        let (c, _notes, mut peer) = pair();
        let reqs = [MonitorRequest::new("Bridge", &["name"])];
        let m = tokio::spawn(async move { c.monitor("db", "m1", &reqs).await });
        let mut f = Framer::new();
        let first = read_msgs(&mut peer, &mut f, 1).await;
        assert_eq!(first[0]["method"], "monitor_cond");
        assert_eq!(
            first[0]["params"],
            json!(["db", "m1", {"Bridge": [{"columns": ["name"]}]}])
        );
        let reply = json!({"id": first[0]["id"], "result": null, "error": "unknown method"});
        peer.write_all(reply.to_string().as_bytes()).await.unwrap();
        let second = read_msgs(&mut peer, &mut f, 1).await;
        assert_eq!(second[0]["method"], "monitor");
        assert_eq!(second[0]["params"], first[0]["params"]);
        let reply = json!({"id": second[0]["id"], "result": {"Bridge": {}}, "error": null});
        peer.write_all(reply.to_string().as_bytes()).await.unwrap();
        let (format, initial) = m.await.unwrap().unwrap();
        assert_eq!(format, UpdateFormat::Update);
        assert_eq!(initial, json!({"Bridge": {}}));
    }

    #[tokio::test]
    async fn garbage_from_the_server_closes_the_session() {
        let (c, _notes, mut peer) = pair();
        peer.write_all(b"]").await.unwrap();
        c.closed().await;
        assert!(c.close_reason().unwrap().contains("framing"));
    }

    #[tokio::test(start_paused = true)]
    async fn quiet_peer_is_probed_then_dropped() {
        let (ours, mut theirs) = tokio::io::duplex(1 << 16);
        let (r, w) = tokio::io::split(ours);
        let (c, _n) = Client::from_stream(
            Box::new(r),
            Box::new(w),
            ClientOptions {
                probe_interval: Some(Duration::from_secs(5)),
                tls: None,
            },
        );
        let mut f = Framer::new();
        let probe = read_msgs(&mut theirs, &mut f, 1).await;
        assert_eq!(probe[0]["method"], "echo");
        assert_eq!(probe[0]["id"], PROBE_ID);
        // Answering keeps it up through another interval.
        theirs
            .write_all(
                json!({"id": PROBE_ID, "result": [], "error": null})
                    .to_string()
                    .as_bytes(),
            )
            .await
            .unwrap();
        let probe = read_msgs(&mut theirs, &mut f, 1).await;
        assert_eq!(probe[0]["method"], "echo");
        assert!(!c.is_closed());
        // Not answering ends it.
        c.closed().await;
        assert!(c.close_reason().unwrap().contains("echo"));
    }
}
