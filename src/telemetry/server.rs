//! The HTTP endpoints of both components: `/metrics`, `/healthz`, `/readyz`.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::Metrics;

/// Default of `--liveness-stall-seconds`: far above any healthy pass (bounded writes,
/// backoffs of at most a minute), so only a loop that is really stuck trips it.
pub const DEFAULT_LIVENESS_STALL: Duration = Duration::from_secs(300);

/// Readiness the component sets (caches synced, OVS reachable…) and the heartbeats of its
/// loops, which `/healthz` turns into liveness. Details are lines `/readyz` shows under its
/// verdict (degraded but still working parts, such as a flow monitor that is down).
#[derive(Clone)]
pub struct Health {
    ready: Arc<AtomicBool>,
    details: Arc<Mutex<BTreeMap<&'static str, String>>>,
    /// Per loop: since when it has had work pending without progress (`None`: idle or
    /// progressed since).
    loops: Arc<Mutex<BTreeMap<&'static str, Option<Instant>>>>,
    stall: Duration,
}

impl Default for Health {
    fn default() -> Self {
        Health::with_liveness_stall(DEFAULT_LIVENESS_STALL)
    }
}

/// The liveness verdict (pure): `Err` names every loop that has had work pending, with no
/// progress, for longer than `stall`. A loop that is idle, or that finishes passes even
/// if they fail, is alive: restarting the pod would not help it.
pub fn liveness(
    loops: &BTreeMap<&'static str, Option<Instant>>,
    now: Instant,
    stall: Duration,
) -> Result<(), String> {
    let stuck: Vec<String> = loops
        .iter()
        .filter_map(|(name, since)| {
            let waited = now.saturating_duration_since((*since)?);
            (waited > stall).then(|| {
                format!(
                    "{name}: work pending for {}s without progress (limit {}s)",
                    waited.as_secs(),
                    stall.as_secs()
                )
            })
        })
        .collect();
    if stuck.is_empty() {
        Ok(())
    } else {
        Err(stuck.join("\n"))
    }
}

impl Health {
    /// Health whose `/healthz` fails once a loop is stuck for longer than `stall`.
    pub fn with_liveness_stall(stall: Duration) -> Self {
        Health {
            ready: Arc::default(),
            details: Arc::default(),
            loops: Arc::default(),
            stall,
        }
    }

    /// Loop `what` has work due (a trigger arrived, a pass starts). The first call since
    /// its last progress starts the stall clock; later ones keep it.
    pub fn pending(&self, what: &'static str) {
        let mut loops = self.loops.lock().unwrap_or_else(|e| e.into_inner());
        loops
            .entry(what)
            .or_default()
            .get_or_insert_with(Instant::now);
    }

    /// Loop `what` is still working but moved forward (one write of a long pass): its stall
    /// clock starts again.
    pub fn advanced(&self, what: &'static str) {
        let mut loops = self.loops.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(pending) = loops.get_mut(what).filter(|p| p.is_some()) {
            *pending = Some(Instant::now());
        }
    }

    /// Loop `what` finished a pass (or found nothing to do): it is not stuck.
    pub fn progress(&self, what: &'static str) {
        let mut loops = self.loops.lock().unwrap_or_else(|e| e.into_inner());
        loops.insert(what, None);
    }

    /// The `/healthz` verdict now.
    pub fn live(&self) -> Result<(), String> {
        let loops = self.loops.lock().unwrap_or_else(|e| e.into_inner());
        liveness(&loops, Instant::now(), self.stall)
    }

    /// Shows `what: text` on `/readyz`, or removes the line with `None`.
    pub fn set_detail(&self, what: &'static str, text: Option<String>) {
        let mut details = self.details.lock().unwrap_or_else(|e| e.into_inner());
        match text {
            Some(text) => details.insert(what, text),
            None => details.remove(what),
        };
    }

    /// The `/readyz` body: the verdict, then one line per detail.
    pub fn report(&self) -> String {
        let mut out = String::from(if self.is_ready() {
            "ready\n"
        } else {
            "not ready\n"
        });
        let details = self.details.lock().unwrap_or_else(|e| e.into_inner());
        for (what, text) in details.iter() {
            out.push_str(&format!("{what}: {text}\n"));
        }
        out
    }

    /// Marks the component ready or not ready.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Whether the component said it is ready.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Metrics,
    health: Health,
}

fn router(metrics: Metrics, health: Health) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(live_handler))
        .route("/readyz", get(ready_handler))
        .with_state(AppState { metrics, health })
}

async fn metrics_handler(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}

async fn live_handler(State(state): State<AppState>) -> impl IntoResponse {
    match state.health.live() {
        Ok(()) => (StatusCode::OK, "ok\n".to_string()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("stalled\n{why}\n")),
    }
}

async fn ready_handler(State(state): State<AppState>) -> impl IntoResponse {
    let code = if state.health.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, state.health.report())
}

/// Binds one TCP listener. `[::]` is bound dual-stack (IPV6_V6ONLY off, whatever the
/// host's `net.ipv6.bindv6only` says), so IPv4 and IPv6 probes both reach it.
fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() && addr.ip().is_unspecified() {
        socket.set_only_v6(false)?;
    }
    // As tokio's own bind: a restarted pod must not wait for TIME_WAIT sockets.
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// Where to listen instead when binding `addr` failed with `error`: `[::]:P` on a host
/// without IPv6 (kernel booted with `ipv6.disable=1`: no AF_INET6 sockets, or no IPv6
/// address to bind) becomes `0.0.0.0:P`. Other failures (port taken, no permission) would
/// fail there too and are reported as they are.
pub fn ipv4_fallback(addr: SocketAddr, error: &std::io::Error) -> Option<SocketAddr> {
    use std::io::ErrorKind;
    let v6_any = addr.is_ipv6() && addr.ip().is_unspecified();
    let v6_missing = matches!(
        error.kind(),
        ErrorKind::AddrNotAvailable | ErrorKind::Unsupported
    ) || error.raw_os_error() == Some(EAFNOSUPPORT);
    (v6_any && v6_missing).then(|| SocketAddr::from((Ipv4Addr::UNSPECIFIED, addr.port())))
}

/// EAFNOSUPPORT on Linux (std maps it to no dedicated `ErrorKind`).
const EAFNOSUPPORT: i32 = 97;

/// Binds `addr`, or its IPv4 fallback (logged) when the host has no IPv6.
fn listen(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    match bind(addr) {
        Ok(listener) => Ok(listener),
        Err(e) => match ipv4_fallback(addr, &e) {
            Some(v4) => {
                tracing::warn!(%addr, error = %e, fallback = %v4, "IPv6 is not available; listening on IPv4 only");
                bind(v4).map_err(|e| anyhow::anyhow!("cannot listen on {v4} for /metrics: {e}"))
            }
            None => Err(anyhow::anyhow!("cannot listen on {addr} for /metrics: {e}")),
        },
    }
}

/// Binds `addr` and serves the endpoints until `shutdown` is cancelled. Returns the bound
/// address (useful with port 0) and the server task.
pub async fn serve(
    addr: SocketAddr,
    metrics: Metrics,
    health: Health,
    shutdown: CancellationToken,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let listener = listen(addr)?;
    let bound = listener.local_addr()?;
    let app = router(metrics, health);
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
    });
    Ok((bound, task))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).await.unwrap();
        out
    }

    async fn serve_on(addr: &str) -> (SocketAddr, CancellationToken, Health) {
        let health = Health::with_liveness_stall(Duration::from_millis(50));
        let token = CancellationToken::new();
        let (bound, _task) = serve(
            addr.parse().unwrap(),
            Metrics::new(),
            health.clone(),
            token.clone(),
        )
        .await
        .unwrap();
        (bound, token, health)
    }

    #[tokio::test]
    async fn the_default_address_answers_on_ipv4_and_ipv6() {
        let (bound, token, _) = serve_on("[::]:0").await;
        for host in ["127.0.0.1", "::1"] {
            let addr = SocketAddr::new(host.parse().unwrap(), bound.port());
            let r = get(addr, "/healthz").await;
            assert!(r.starts_with("HTTP/1.1 200"), "{host}: {r}");
        }
        token.cancel();
    }

    #[tokio::test]
    async fn an_ipv6_only_address_answers_on_ipv6() {
        let (bound, token, _) = serve_on("[::1]:0").await;
        assert!(get(bound, "/healthz").await.starts_with("HTTP/1.1 200"));
        let v4 = SocketAddr::new("127.0.0.1".parse().unwrap(), bound.port());
        assert!(tokio::net::TcpStream::connect(v4).await.is_err());
        token.cancel();
    }

    #[test]
    fn only_a_missing_ipv6_falls_back_to_ipv4() {
        use std::io::{Error, ErrorKind};
        let any6: SocketAddr = "[::]:8080".parse().unwrap();
        let any4: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let cases = [
            (any6, Error::from_raw_os_error(EAFNOSUPPORT), Some(any4)),
            (any6, Error::from(ErrorKind::AddrNotAvailable), Some(any4)),
            (any6, Error::from(ErrorKind::AddrInUse), None),
            (any6, Error::from(ErrorKind::PermissionDenied), None),
            (
                "[::1]:8080".parse().unwrap(),
                Error::from_raw_os_error(EAFNOSUPPORT),
                None,
            ),
            (any4, Error::from(ErrorKind::AddrNotAvailable), None),
        ];
        for (addr, error, want) in cases {
            assert_eq!(ipv4_fallback(addr, &error), want, "{addr} {error}");
        }
    }

    #[test]
    fn a_loop_that_advances_is_not_stalled() {
        let ms = Duration::from_millis;
        let health = Health::with_liveness_stall(ms(400));
        health.pending("pass");
        std::thread::sleep(ms(300));
        health.advanced("pass");
        std::thread::sleep(ms(150));
        assert!(health.live().is_ok(), "advanced 150 ms ago, pending 450 ms");
        std::thread::sleep(ms(300));
        assert!(health.live().is_err(), "no progress for 450 ms");
        health.progress("pass");
        health.advanced("pass");
        assert!(
            health.live().is_ok(),
            "advancing an idle loop does not make it pending"
        );
    }

    #[test]
    fn liveness_fails_only_for_work_pending_too_long() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let stall = s(300);
        // (loop → seconds since its work is pending, now, the start of the verdict)
        type Case = (
            &'static [(&'static str, Option<u64>)],
            u64,
            Option<&'static str>,
        );
        let cases: &[Case] = &[
            (&[], 1000, None),
            (&[("pass", None)], 1000, None),
            (&[("pass", Some(0))], 300, None),
            (
                &[("pass", Some(0))],
                301,
                Some("pass: work pending for 301s"),
            ),
            (
                &[("a", Some(100)), ("b", None)],
                401,
                Some("a: work pending for 301s"),
            ),
            (&[("a", Some(100)), ("b", Some(200))], 350, None),
        ];
        for (loops, now, want) in cases {
            let loops: BTreeMap<&'static str, Option<Instant>> = loops
                .iter()
                .map(|(n, since)| (*n, since.map(|x| t0 + s(x))))
                .collect();
            let got = liveness(&loops, t0 + s(*now), stall);
            match want {
                None => assert_eq!(got, Ok(()), "{loops:?} at {now}"),
                Some(w) => assert!(got.as_ref().is_err_and(|e| e.starts_with(w)), "{got:?}"),
            }
        }
    }

    #[tokio::test]
    async fn healthz_fails_while_a_loop_is_stuck() {
        let (addr, token, health) = serve_on("127.0.0.1:0").await;
        health.progress("pass");
        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
        health.pending("pass");
        tokio::time::sleep(Duration::from_millis(80)).await;
        health.pending("pass");
        let r = get(addr, "/healthz").await;
        assert!(r.starts_with("HTTP/1.1 503"), "{r}");
        assert!(r.contains("stalled\npass: work pending for"), "{r}");
        health.progress("pass");
        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
        token.cancel();
    }

    #[tokio::test]
    async fn endpoints_answer_and_server_stops_on_cancel() {
        let metrics = Metrics::new();
        metrics.ovsdb_reconnected();
        let health = Health::default();
        let token = CancellationToken::new();
        let (addr, task) = serve(
            "127.0.0.1:0".parse().unwrap(),
            metrics,
            health.clone(),
            token.clone(),
        )
        .await
        .unwrap();

        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 503"));
        health.set_ready(true);
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 200"));
        health.set_detail("flow monitor", Some("down: no socket".into()));
        let r = get(addr, "/readyz").await;
        assert!(
            r.starts_with("HTTP/1.1 200"),
            "a detail does not make it unready: {r}"
        );
        assert!(r.ends_with("ready\nflow monitor: down: no socket\n"), "{r}");
        health.set_detail("flow monitor", None);
        assert!(get(addr, "/readyz").await.ends_with("\r\n\r\nready\n"));
        let m = get(addr, "/metrics").await;
        assert!(m.starts_with("HTTP/1.1 200"), "{m}");
        assert!(
            m.contains("\nremote_device_operator_ovsdb_reconnects_total{component=\"test\"} 1\n"),
            "{m}"
        );
        assert!(get(addr, "/nope").await.starts_with("HTTP/1.1 404"));

        token.cancel();
        task.await.unwrap().unwrap();
    }
}
