//! The HTTP endpoints of both components: `/metrics`, `/healthz`, `/readyz`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::Metrics;

/// Readiness the component sets (caches synced, OVS reachable…); liveness is implied by
/// the server answering at all. Details are lines `/readyz` shows under its verdict
/// (degraded but still working parts, such as a flow monitor that is down).
#[derive(Clone, Default)]
pub struct Health {
    ready: Arc<AtomicBool>,
    details: Arc<Mutex<BTreeMap<&'static str, String>>>,
}

impl Health {
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
        .route("/healthz", get(|| async { "ok\n" }))
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

async fn ready_handler(State(state): State<AppState>) -> impl IntoResponse {
    let code = if state.health.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, state.health.report())
}

/// Binds `addr` and serves the endpoints until `shutdown` is cancelled. Returns the bound
/// address (useful with port 0) and the server task.
pub async fn serve(
    addr: SocketAddr,
    metrics: Metrics,
    health: Health,
    shutdown: CancellationToken,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} for /metrics: {e}"))?;
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
