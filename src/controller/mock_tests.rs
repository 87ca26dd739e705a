//! The I/O shell against kube's mock client (tower-test): every request's method, path,
//! query and body is checked, one scenario per reconcile path.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower_test::mock::{self, SendResponse};

use super::reconcile::{Action, Snapshot, decide};
use super::tests::{at, device, node, settle};
use super::{Pacing, Settings, Writer, drive, start_watchers};
use crate::api::OVS_CLEANUP_FINALIZER;
use crate::telemetry::{ErrorKind, Metrics, WriteKind};

type Handle = mock::Handle<Request<Body>, Response<Body>>;

const TP: &str = "/apis/remotedevice.io/v1alpha1/tunnelports";
const EVENTS_DEFAULT: &str = "/apis/events.k8s.io/v1/namespaces/default/events";
const SSA_QUERY: &[(&str, &str)] = &[
    ("fieldManager", "remote-device-operator"),
    ("force", "true"),
];

fn mock_client() -> (Client, Handle) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "default"), handle)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// One request as the mock API server saw it.
struct Seen {
    method: Method,
    path: String,
    query: BTreeMap<String, String>,
    content_type: Option<String>,
    body: Value,
    respond: SendResponse<Response<Body>>,
}

impl Seen {
    fn expect(&self, method: Method, path: &str, query: &[(&str, &str)]) {
        assert_eq!(
            (&self.method, self.path.as_str()),
            (&method, path),
            "unexpected request {} {} {:?}",
            self.method,
            self.path,
            self.query
        );
        let want: BTreeMap<String, String> = query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(self.query, want, "query of {} {}", self.method, self.path);
    }

    fn reply(self, status: u16, body: Value) {
        let response = Response::builder()
            .status(StatusCode::from_u16(status).unwrap())
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(&body).unwrap()))
            .unwrap();
        self.respond.send_response(response);
    }

    fn fail(self, code: u16, reason: &str) {
        let status = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("mock says {reason}"), "reason": reason, "code": code
        });
        self.reply(code, status);
    }

    /// Answers with the request body itself plus server fields, as an apply would.
    fn echo(self, uid: &str) {
        let mut body = self.body.clone();
        body["metadata"]["uid"] = json!(uid);
        body["metadata"]["resourceVersion"] = json!("8");
        body["metadata"]["generation"] = json!(1);
        self.reply(200, body);
    }
}

async fn next(handle: &mut Handle) -> Seen {
    try_next(handle, Duration::from_secs(30))
        .await
        .expect("no request within 30 s, or the client is gone")
}

/// The next request, if one comes within `wait` (`None` too once the client is gone).
async fn try_next(handle: &mut Handle, wait: Duration) -> Option<Seen> {
    let (request, respond) = tokio::time::timeout(wait, handle.next_request())
        .await
        .ok()??;
    let (parts, body) = request.into_parts();
    let bytes = body.collect_bytes().await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    let query = parts
        .uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    Some(Seen {
        method: parts.method,
        path: parts.uri.path().to_string(),
        query,
        content_type: parts
            .headers
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string()),
        body,
        respond,
    })
}

/// Asserts the mock API server gets no request for `wait` (virtual time).
async fn assert_quiet(handle: &mut Handle, wait: Duration) {
    if let Ok(Some((request, _))) = tokio::time::timeout(wait, handle.next_request()).await {
        panic!("unexpected request {} {}", request.method(), request.uri());
    }
}

fn check_event(seen: &Seen, path: &str, type_: &str, reason: &str, kind: &str, name: &str) {
    seen.expect(Method::POST, path, &[]);
    let b = &seen.body;
    assert_eq!(b["type"], json!(type_), "{b}");
    assert_eq!(b["reason"], json!(reason), "{b}");
    assert_eq!(b["reportingController"], json!("remote-device-operator"));
    assert_eq!(b["reportingInstance"], json!("test-replica"));
    assert_eq!(b["regarding"]["kind"], json!(kind), "{b}");
    assert_eq!(b["regarding"]["name"], json!(name), "{b}");
    assert!(b["note"].as_str().is_some_and(|n| !n.is_empty()), "{b}");
}

fn writer(client: Client, metrics: &Metrics) -> Writer {
    Writer::new(
        client,
        "test-replica".into(),
        metrics.clone(),
        Duration::from_secs(2),
    )
    // One write at a time: these tests check each request in order.
    .with_pacing(Pacing::serial())
}

/// A running `drive` loop over a fixed snapshot, and the handles a test steers it by.
struct Driving {
    task: tokio::task::JoinHandle<()>,
    trigger: Arc<Notify>,
    leader: watch::Sender<bool>,
    cancel: CancellationToken,
}

fn start_drive(
    client: Client,
    metrics: &Metrics,
    snap: Snapshot,
    leading: bool,
    settings: Settings,
) -> Driving {
    let w = writer(client, metrics);
    let trigger = Arc::new(Notify::new());
    let (leader, leader_rx) = watch::channel(leading);
    let cancel = CancellationToken::new();
    let task = {
        let (trigger, metrics, cancel) = (trigger.clone(), metrics.clone(), cancel.clone());
        tokio::spawn(async move {
            drive(
                || snap.clone(),
                &w,
                &trigger,
                leader_rx,
                &settings,
                &metrics,
                &cancel,
            )
            .await
        })
    };
    Driving {
        task,
        trigger,
        leader,
        cancel,
    }
}

impl Driving {
    async fn stop(self) {
        self.cancel.cancel();
        self.task.await.unwrap();
    }
}

fn first_snapshot() -> Snapshot {
    Snapshot {
        devices: vec![device("t1", "srv", "192.0.2.10", 5001, "52:54:00:00:00:01")],
        nodes: vec![node("n1", "10.1.0.1"), node("n2", "10.1.0.2")],
        tunnel_ports: vec![],
    }
}

fn settled(snapshot: &Snapshot) -> Snapshot {
    let mut snap = snapshot.clone();
    let d = decide(&snap, at(100));
    settle(&mut snap, &d);
    snap
}

#[tokio::test]
async fn first_apply_writes_tunnel_ports_events_and_status() {
    let (client, mut handle) = mock_client();
    let metrics = Metrics::new();
    let snap = first_snapshot();
    let decisions = decide(&snap, at(100));
    let w = writer(client, &metrics);
    let run = tokio::spawn(async move { w.execute(&decisions).await });

    for node in ["n1", "n2"] {
        let name = format!("{node}.vxlan.192-0-2-10");
        let seen = next(&mut handle).await;
        seen.expect(Method::PATCH, &format!("{TP}/{name}"), SSA_QUERY);
        assert_eq!(
            seen.content_type.as_deref(),
            Some("application/apply-patch+yaml")
        );
        assert_eq!(
            seen.body,
            json!({
                "apiVersion": "remotedevice.io/v1alpha1",
                "kind": "TunnelPort",
                "metadata": {
                    "name": name,
                    "labels": {
                        "app.kubernetes.io/managed-by": "remote-device-operator",
                        "remotedevice.io/node": node
                    },
                    "ownerReferences": [
                        {"apiVersion": "v1", "kind": "Node", "name": node, "uid": format!("uid-{node}")}
                    ]
                },
                "spec": {
                    "nodeName": node,
                    "remoteIP": "192.0.2.10",
                    "tunnelType": "vxlan",
                    "localIP": if node == "n1" { "10.1.0.1" } else { "10.1.0.2" },
                    "devices": [{
                        "namespace": "t1", "name": "srv", "macAddress": "52:54:00:00:00:01",
                        "vni": 5001, "ips": ["10.0.0.50"]
                    }]
                }
            })
        );
        seen.echo(&format!("uid-{name}"));
        let event = next(&mut handle).await;
        check_event(
            &event,
            EVENTS_DEFAULT,
            "Normal",
            "TunnelPortCreated",
            "TunnelPort",
            &name,
        );
        assert_eq!(event.body["regarding"]["uid"], json!(format!("uid-{name}")));
        event.reply(201, json!({}));
    }

    let seen = next(&mut handle).await;
    seen.expect(
        Method::PATCH,
        "/apis/remotedevice.io/v1alpha1/namespaces/t1/remotedevices/srv/status",
        SSA_QUERY,
    );
    assert_eq!(
        seen.content_type.as_deref(),
        Some("application/apply-patch+yaml")
    );
    assert_eq!(
        seen.body,
        json!({
            "apiVersion": "remotedevice.io/v1alpha1",
            "kind": "RemoteDevice",
            "status": {
                "observedGeneration": 1,
                "conditions": [{
                    "type": "Ready", "status": "False", "reason": "TunnelsPending",
                    "message": "0/2 nodes ready; waiting for n1, n2.",
                    "observedGeneration": 1,
                    "lastTransitionTime": "1970-01-01T00:01:40Z"
                }],
                "readyNodes": 0,
                "totalNodes": 2,
                "ready": "0/2"
            }
        })
    );
    let device = serde_json::to_value(&snap.devices[0]).unwrap();
    seen.reply(200, device);

    assert_eq!(run.await.unwrap().unwrap().writes, 3);
    assert_quiet(&mut handle, Duration::from_millis(50)).await;
    assert_eq!(metrics.writes(WriteKind::Apply), 2);
    assert_eq!(metrics.writes(WriteKind::Event), 2);
    assert_eq!(metrics.writes(WriteKind::Status), 1);
}

/// An update of a stored TunnelPort goes out only once its content stayed the same for
/// the settle time; the rest of the pass is not held up by it.
#[tokio::test]
async fn an_update_waits_until_it_settled() {
    let (client, mut handle) = mock_client();
    let metrics = Metrics::new();
    let mut snap = settled(&first_snapshot());
    let second = device("t1", "srv2", "192.0.2.10", 5001, "52:54:00:00:00:02");
    let second_json = serde_json::to_value(&second).unwrap();
    snap.devices.push(second);
    let decisions = decide(&snap, at(200));
    let updates = decisions
        .actions
        .iter()
        .filter(|a| matches!(a, Action::Apply { create: false, .. }))
        .count();
    assert_eq!(updates, 2, "both nodes' TunnelPorts carry the new device");
    let settle = Duration::from_millis(300);
    let w = writer(client, &metrics).with_pacing(Pacing {
        update_settle: settle,
        update_max_wait: Duration::from_secs(5),
        ..Pacing::serial()
    });
    // Answers every request; returns the paths seen.
    async fn answer(handle: &mut Handle, device: &Value) -> Vec<String> {
        let mut paths = Vec::new();
        while let Some(seen) = try_next(handle, Duration::from_millis(100)).await {
            paths.push(seen.path.clone());
            if seen.path.starts_with(TP) {
                seen.echo("uid-x");
            } else if seen.path.ends_with("/status") {
                seen.reply(200, device.clone());
            } else {
                seen.reply(201, json!({}));
            }
        }
        paths
    }
    let started = std::time::Instant::now();
    let first = {
        let (w, decisions) = (w.clone(), decisions.clone());
        tokio::spawn(async move { w.execute(&decisions).await })
    };
    let paths = answer(&mut handle, &second_json).await;
    let done = first.await.unwrap().unwrap();
    assert!(
        paths.iter().all(|p| !p.starts_with(TP)),
        "an unsettled update went out: {paths:?}"
    );
    assert!(
        paths.iter().any(|p| p.ends_with("srv2/status")),
        "{paths:?}"
    );
    let due = done.held_until.expect("the held update is due later");
    assert!(due >= started + settle && due <= std::time::Instant::now() + settle);

    tokio::time::sleep_until(due.into()).await;
    let again = tokio::spawn(async move { w.execute(&decisions).await });
    let paths = answer(&mut handle, &second_json).await;
    again.await.unwrap().unwrap();
    let applied = paths.iter().filter(|p| p.starts_with(TP)).count();
    assert_eq!(applied, 2, "settled: both updates go out ({paths:?})");
}

/// The first pass's decisions with one device on three nodes, and the device as JSON.
fn three_nodes_first_pass() -> (super::PassDecisions, Value) {
    let mut snap = first_snapshot();
    snap.nodes.push(node("n3", "10.1.0.3"));
    let decisions = decide(&snap, at(100));
    (decisions, serde_json::to_value(&snap.devices[0]).unwrap())
}

#[tokio::test(start_paused = true)]
async fn writes_of_a_phase_run_side_by_side_within_the_bound() {
    let (client, mut handle) = mock_client();
    let metrics = Metrics::new();
    let (decisions, device) = three_nodes_first_pass();
    let w = writer(client, &metrics).with_pacing(Pacing {
        max_in_flight: 2,
        ..Pacing::serial()
    });
    let run = tokio::spawn(async move { w.execute(&decisions).await });
    // The mock answers the oldest open request whenever the writer sends nothing more.
    let mut open: Vec<Seen> = Vec::new();
    let (mut most_open, mut applied) = (0, 0);
    loop {
        match try_next(&mut handle, Duration::from_millis(100)).await {
            Some(seen) => {
                if seen.path.ends_with("/status") {
                    assert_eq!(
                        applied, 3,
                        "the status phase started before the applies ended"
                    );
                }
                open.push(seen);
                most_open = most_open.max(open.len());
                assert!(open.len() <= 2, "more than 2 writes in flight");
            }
            None if open.is_empty() => break,
            None => {
                let seen = open.remove(0);
                if seen.path.starts_with(TP) {
                    applied += 1;
                    let uid = format!("uid-{}", seen.path);
                    seen.echo(&uid);
                } else if seen.path.ends_with("/status") {
                    seen.reply(200, device.clone());
                } else {
                    seen.reply(201, json!({}));
                }
            }
        }
    }
    assert_eq!(run.await.unwrap().unwrap().writes, 4);
    assert_eq!(most_open, 2, "the applies never ran side by side");
    assert_eq!(metrics.writes(WriteKind::Apply), 3);
    assert_eq!(metrics.writes(WriteKind::Event), 3);
}

#[tokio::test(start_paused = true)]
async fn events_over_the_budget_are_dropped_and_counted() {
    let (client, mut handle) = mock_client();
    let metrics = Metrics::new();
    let (decisions, device) = three_nodes_first_pass();
    let w = writer(client, &metrics).with_pacing(Pacing {
        events_per_second: 1.0,
        event_burst: 1.0,
        ..Pacing::serial()
    });
    let run = tokio::spawn(async move { w.execute(&decisions).await });
    let mut events = 0;
    while let Some(seen) = try_next(&mut handle, Duration::from_millis(100)).await {
        if seen.path.starts_with(TP) {
            seen.echo("uid-x");
        } else if seen.path.ends_with("/status") {
            seen.reply(200, device.clone());
        } else {
            events += 1;
            seen.reply(201, json!({}));
        }
    }
    assert_eq!(
        run.await.unwrap().unwrap().writes,
        4,
        "the writes all went out"
    );
    assert_eq!(events, 1, "one event in the budget");
    assert_eq!(metrics.events_dropped(), 2);
}

#[tokio::test(start_paused = true)]
async fn noop_resync_makes_no_write() {
    let (client, mut handle) = mock_client();
    let metrics = Metrics::new();
    let snap = settled(&first_snapshot());
    let d = start_drive(
        client,
        &metrics,
        snap,
        true,
        Settings {
            resync: Duration::from_secs(60),
            ..Settings::default()
        },
    );
    // Watch events and several resync periods pass; nothing may be written.
    for _ in 0..3 {
        d.trigger.notify_one();
        assert_quiet(&mut handle, Duration::from_secs(70)).await;
    }
    assert!(
        metrics.reconciles() >= 6,
        "passes ran: {}",
        metrics.reconciles()
    );
    d.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_event_after_quiet_passes_at_once_and_a_burst_is_gathered() {
    let (client, _handle) = mock_client();
    let metrics = Metrics::new();
    let d = start_drive(
        client,
        &metrics,
        settled(&first_snapshot()),
        true,
        Settings::default(),
    );
    let passes_after = |wait_ms| {
        let metrics = metrics.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(wait_ms)).await;
            metrics.reconciles()
        }
    };
    assert_eq!(passes_after(1).await, 1, "the first pass runs at once");
    // A lone event after a quiet spell: its pass does not wait for the debounce.
    tokio::time::sleep(Duration::from_secs(1)).await;
    d.trigger.notify_one();
    assert_eq!(passes_after(1).await, 2, "a lone event waited");
    // Events soon after that pass are a burst: one pass, 50 ms after the last of them.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        d.trigger.notify_one();
    }
    assert_eq!(
        passes_after(49).await,
        2,
        "the burst did not wait for quiet"
    );
    assert_eq!(passes_after(2).await, 3, "the burst made one pass");
    d.stop().await;
}

/// Quiet is counted from the end of the last pass: an event that came while a pass was
/// writing is gathered after it, however long the pass took.
#[tokio::test(start_paused = true)]
async fn an_event_during_a_long_pass_is_gathered_after_it() {
    let (client, mut handle) = mock_client();
    let metrics = Metrics::new();
    // Never settled: every pass writes again, so each pass shows as requests.
    let snap = first_snapshot();
    let device = serde_json::to_value(&snap.devices[0]).unwrap();
    let d = start_drive(client, &metrics, snap, true, Settings::default());
    let answer = |seen: Seen| {
        if seen.method == Method::POST {
            seen.reply(201, json!({}));
        } else if seen.path.contains("/remotedevices/") {
            seen.reply(200, device.clone());
        } else {
            let uid = format!("uid-{}", seen.path.rsplit('/').next().unwrap_or_default());
            seen.echo(&uid);
        }
    };
    // The first pass's first write takes 100 ms; an event comes meanwhile.
    let first = next(&mut handle).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    d.trigger.notify_one();
    answer(first);
    while let Some(seen) = try_next(&mut handle, Duration::from_millis(1)).await {
        answer(seen);
    }
    assert_eq!(metrics.reconciles(), 1, "the first pass ended");
    // The pass ended 1 ms ago: the next one comes after 50 ms of quiet from there.
    let waited = Instant::now();
    let _second = next(&mut handle).await;
    assert_eq!(waited.elapsed(), Duration::from_millis(49));
    d.stop().await;
}

#[tokio::test]
async fn last_device_deleted_deletes_its_tunnel_ports_only() {
    let (client, mut handle) = mock_client();
    let metrics = Metrics::new();
    let mut start = first_snapshot();
    start.devices.push(device(
        "t2",
        "other",
        "192.0.2.20",
        6001,
        "52:54:00:00:00:02",
    ));
    let mut snap = settled(&start);
    snap.devices
        .retain(|d| d.metadata.name.as_deref() != Some("srv"));
    let decisions = decide(&snap, at(200));
    let w = writer(client, &metrics);
    let run = tokio::spawn(async move { w.execute(&decisions).await });

    for node in ["n1", "n2"] {
        let name = format!("{node}.vxlan.192-0-2-10");
        let seen = next(&mut handle).await;
        seen.expect(Method::DELETE, &format!("{TP}/{name}"), &[]);
        assert_eq!(
            seen.body,
            json!({"preconditions": {"uid": format!("uid-{name}")}})
        );
        seen.reply(
            200,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
        );
        let event = next(&mut handle).await;
        check_event(
            &event,
            EVENTS_DEFAULT,
            "Normal",
            "TunnelPortDeleted",
            "TunnelPort",
            &name,
        );
        event.reply(201, json!({}));
    }
    assert_eq!(run.await.unwrap().unwrap().writes, 2);
    // The other device's TunnelPorts and status are left alone.
    assert_quiet(&mut handle, Duration::from_millis(50)).await;
    assert_eq!(metrics.writes(WriteKind::Delete), 2);
}

#[tokio::test]
async fn node_deleted_releases_finalizer_deletes_and_updates_status() {
    let (client, mut handle) = mock_client();
    let metrics = Metrics::new();
    let mut snap = settled(&first_snapshot());
    snap.nodes
        .retain(|n| n.metadata.name.as_deref() != Some("n2"));
    let decisions = decide(&snap, at(200));
    let w = writer(client, &metrics);
    let run = tokio::spawn(async move { w.execute(&decisions).await });
    let name = "n2.vxlan.192-0-2-10";

    let seen = next(&mut handle).await;
    seen.expect(
        Method::PATCH,
        &format!("{TP}/{name}"),
        &[("fieldManager", "remote-device-operator")],
    );
    assert_eq!(
        seen.content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    assert_eq!(
        seen.body,
        json!({"metadata": {"finalizers": [], "resourceVersion": "7"}})
    );
    let port = snap
        .tunnel_ports
        .iter()
        .find(|t| t.metadata.name.as_deref() == Some(name))
        .unwrap();
    assert_eq!(
        port.metadata.finalizers,
        Some(vec![OVS_CLEANUP_FINALIZER.to_string()])
    );
    seen.reply(200, serde_json::to_value(port).unwrap());

    let seen = next(&mut handle).await;
    seen.expect(Method::DELETE, &format!("{TP}/{name}"), &[]);
    assert_eq!(
        seen.body,
        json!({"preconditions": {"uid": format!("uid-{name}")}})
    );
    seen.reply(200, serde_json::to_value(port).unwrap());
    let event = next(&mut handle).await;
    check_event(
        &event,
        EVENTS_DEFAULT,
        "Normal",
        "TunnelPortDeleted",
        "TunnelPort",
        name,
    );
    assert!(
        event.body["note"]
            .as_str()
            .unwrap()
            .starts_with("Node n2 is gone")
    );
    event.reply(201, json!({}));

    let seen = next(&mut handle).await;
    seen.expect(
        Method::PATCH,
        "/apis/remotedevice.io/v1alpha1/namespaces/t1/remotedevices/srv/status",
        SSA_QUERY,
    );
    assert_eq!(seen.body["status"]["totalNodes"], json!(1));
    assert_eq!(seen.body["status"]["ready"], json!("0/1"));
    seen.reply(200, serde_json::to_value(&snap.devices[0]).unwrap());

    assert_eq!(run.await.unwrap().unwrap().writes, 3);
    assert_quiet(&mut handle, Duration::from_millis(50)).await;
    assert_eq!(metrics.writes(WriteKind::ReleaseFinalizer), 1);
}

#[tokio::test]
async fn invalid_device_gets_condition_and_event_but_no_tunnel_port() {
    let (client, mut handle) = mock_client();
    let metrics = Metrics::new();
    let mut snap = first_snapshot();
    snap.devices[0].spec.mac_address = "01:00:5e:00:00:01".into();
    let decisions = decide(&snap, at(100));
    assert_eq!(decisions.actions.len(), 1);
    let w = writer(client, &metrics);
    let run = tokio::spawn(async move { w.execute(&decisions).await });

    let seen = next(&mut handle).await;
    seen.expect(
        Method::PATCH,
        "/apis/remotedevice.io/v1alpha1/namespaces/t1/remotedevices/srv/status",
        SSA_QUERY,
    );
    let condition = &seen.body["status"]["conditions"][0];
    assert_eq!(condition["reason"], json!("InvalidSpec"));
    assert_eq!(condition["status"], json!("False"));
    let message = condition["message"].as_str().unwrap().to_string();
    assert!(
        message.starts_with("Invalid spec: spec.macAddress"),
        "{message}"
    );
    assert_eq!(seen.body["status"]["ready"], json!("0/0"));
    seen.reply(200, serde_json::to_value(&snap.devices[0]).unwrap());

    let event = next(&mut handle).await;
    check_event(
        &event,
        "/apis/events.k8s.io/v1/namespaces/t1/events",
        "Warning",
        "InvalidSpec",
        "RemoteDevice",
        "srv",
    );
    assert_eq!(event.body["regarding"]["namespace"], json!("t1"));
    assert_eq!(event.body["regarding"]["uid"], json!("uid-t1-srv"));
    assert_eq!(event.body["note"], json!(message));
    event.reply(201, json!({}));
    assert_eq!(run.await.unwrap().unwrap().writes, 1);
    assert_quiet(&mut handle, Duration::from_millis(50)).await;
}

/// 409 on one object, then 500, then a timeout: each failed pass is retried only after
/// the backoff delay, which doubles; once the writes go through, the loop goes quiet.
#[tokio::test(start_paused = true)]
async fn conflict_server_error_and_timeout_are_retried_with_backoff() {
    let (client, mut handle) = mock_client();
    let metrics = Metrics::new();
    let snap = first_snapshot();
    let d = start_drive(
        client,
        &metrics,
        snap,
        true,
        Settings {
            resync: Duration::from_secs(3600),
            backoff_min: Duration::from_millis(500),
            ..Settings::default()
        },
    );
    let n1 = format!("{TP}/n1.vxlan.192-0-2-10");
    let n2 = format!("{TP}/n2.vxlan.192-0-2-10");

    // Pass 1: 409 on n1 concerns that object only, so n2 is still tried; its 500 ends the pass.
    let seen = next(&mut handle).await;
    seen.expect(Method::PATCH, &n1, SSA_QUERY);
    seen.fail(409, "Conflict");
    let seen = next(&mut handle).await;
    seen.expect(Method::PATCH, &n2, SSA_QUERY);
    seen.fail(500, "InternalError");
    let failed_at = Instant::now();

    // Pass 2 after ≥ 500 ms: n1 gets no answer; the write times out (2 s).
    let seen = next(&mut handle).await;
    assert!(
        failed_at.elapsed() >= Duration::from_millis(500),
        "{:?}",
        failed_at.elapsed()
    );
    assert!(
        failed_at.elapsed() < Duration::from_millis(1000),
        "{:?}",
        failed_at.elapsed()
    );
    seen.expect(Method::PATCH, &n1, SSA_QUERY);
    let asked_at = Instant::now();
    let _unanswered = seen.respond;

    // Pass 3 after the timeout plus the doubled delay (1 s).
    let seen = next(&mut handle).await;
    assert!(
        asked_at.elapsed() >= Duration::from_secs(3),
        "{:?}",
        asked_at.elapsed()
    );
    seen.expect(Method::PATCH, &n1, SSA_QUERY);
    seen.echo("uid-1");
    let event = next(&mut handle).await;
    event.reply(201, json!({}));
    let seen = next(&mut handle).await;
    seen.expect(Method::PATCH, &n2, SSA_QUERY);
    seen.echo("uid-2");
    let event = next(&mut handle).await;
    event.reply(201, json!({}));
    let seen = next(&mut handle).await;
    seen.expect(
        Method::PATCH,
        "/apis/remotedevice.io/v1alpha1/namespaces/t1/remotedevices/srv/status",
        SSA_QUERY,
    );
    seen.reply(
        200,
        serde_json::to_value(first_snapshot().devices[0].clone()).unwrap(),
    );

    // Success: no retry until the next trigger, so no hot loop.
    assert_quiet(&mut handle, Duration::from_secs(600)).await;
    assert_eq!(metrics.errors(ErrorKind::Conflict), 1);
    assert_eq!(metrics.errors(ErrorKind::Server), 1);
    assert_eq!(metrics.errors(ErrorKind::Timeout), 1);
    assert_eq!(metrics.reconciles(), 3);
    d.stop().await;
}

#[tokio::test(start_paused = true)]
async fn follower_writes_nothing_until_it_leads() {
    let (client, mut handle) = mock_client();
    let metrics = Metrics::new();
    let snap = first_snapshot();
    let d = start_drive(client, &metrics, snap, false, Settings::default());
    d.trigger.notify_one();
    assert_quiet(&mut handle, Duration::from_secs(30)).await;
    assert_eq!(metrics.reconciles(), 0);
    d.leader.send(true).unwrap();
    let seen = next(&mut handle).await;
    seen.expect(
        Method::PATCH,
        &format!("{TP}/n1.vxlan.192-0-2-10"),
        SSA_QUERY,
    );
    d.stop().await;
}

fn list(kind: &str, api_version: &str, items: Vec<Value>) -> Value {
    json!({
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"resourceVersion": "10"},
        "items": items
    })
}

/// The caches report synced only once every initial list is complete, so nothing can be
/// deleted on the strength of a half-filled cache; TunnelPorts are watched by label.
#[tokio::test(start_paused = true)]
async fn caches_sync_only_after_every_list() {
    let (client, mut handle) = mock_client();
    let metrics = Metrics::new();
    let trigger = Arc::new(Notify::new());
    let cancel = CancellationToken::new();
    let (caches, watchers) = start_watchers(&client, trigger.clone(), metrics, cancel.clone());

    let snap = settled(&first_snapshot());
    let mut held_node_list = None;
    let mut watches = Vec::new();
    while held_node_list.is_none() || watches.len() < 2 {
        let seen = next(&mut handle).await;
        assert_eq!(seen.method, Method::GET);
        if seen.query.get("watch").map(String::as_str) == Some("true") {
            watches.push(seen.respond);
            continue;
        }
        match seen.path.as_str() {
            "/apis/remotedevice.io/v1alpha1/remotedevices" => {
                seen.expect(Method::GET, &seen.path.clone(), &[("limit", "500")]);
                let items = snap
                    .devices
                    .iter()
                    .map(|d| serde_json::to_value(d).unwrap())
                    .collect();
                seen.reply(
                    200,
                    list("RemoteDeviceList", "remotedevice.io/v1alpha1", items),
                );
            }
            TP => {
                seen.expect(
                    Method::GET,
                    TP,
                    &[
                        (
                            "labelSelector",
                            "app.kubernetes.io/managed-by=remote-device-operator",
                        ),
                        ("limit", "500"),
                    ],
                );
                let mut items: Vec<Value> = snap
                    .tunnel_ports
                    .iter()
                    .map(|t| serde_json::to_value(t).unwrap())
                    .collect();
                // A stale managed port on a node that the (not yet listed) Node cache holds.
                let mut stale = snap.tunnel_ports[0].clone();
                stale.metadata.name = Some("n1.vxlan.198-51-100-1".into());
                stale.spec.remote_ip = "198.51.100.1".into();
                items.push(serde_json::to_value(stale).unwrap());
                seen.reply(
                    200,
                    list("TunnelPortList", "remotedevice.io/v1alpha1", items),
                );
            }
            "/api/v1/nodes" => {
                seen.expect(Method::GET, "/api/v1/nodes", &[("limit", "500")]);
                held_node_list = Some(seen);
            }
            other => panic!("unexpected GET {other}"),
        }
    }
    let synced = tokio::time::timeout(Duration::from_secs(10), caches.wait_synced()).await;
    assert!(synced.is_err(), "synced before the Node list arrived");
    assert!(caches.snapshot().nodes.is_empty());

    let mut items: Vec<Value> = snap
        .nodes
        .iter()
        .map(|n| serde_json::to_value(n).unwrap())
        .collect();
    // Bulk the planner never reads, which the cache must not keep.
    items[0]["spec"] = json!({"podCIDR": "10.244.0.0/24"});
    items[0]["status"]["images"] = json!([{"names": ["registry.example/big:1"], "sizeBytes": 1}]);
    held_node_list
        .unwrap()
        .reply(200, list("NodeList", "v1", items));
    caches.wait_synced().await.unwrap();
    let now_synced = caches.snapshot();
    assert_eq!(now_synced.nodes.len(), 2);
    for n in &now_synced.nodes {
        assert!(n.spec.is_none(), "{n:?}");
        let status = n.status.as_ref().unwrap();
        assert!(status.images.is_none(), "{n:?}");
        assert_eq!(
            status.addresses.as_ref().unwrap().len(),
            1,
            "addresses kept"
        );
    }
    let decisions = decide(&now_synced, at(200));
    let deletes: Vec<&Action> = decisions
        .actions
        .iter()
        .filter(|a| matches!(a, Action::Delete { .. }))
        .collect();
    assert_eq!(deletes.len(), 1, "{:?}", decisions.actions);
    assert!(matches!(deletes[0], Action::Delete { name, .. } if name == "n1.vxlan.198-51-100-1"));
    cancel.cancel();
    watchers.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn losing_the_lease_mid_pass_stops_the_writes() {
    let (client, mut handle) = mock_client();
    let metrics = Metrics::new();
    let snap = first_snapshot();
    let d = start_drive(client, &metrics, snap, true, Settings::default());
    let seen = next(&mut handle).await;
    seen.expect(
        Method::PATCH,
        &format!("{TP}/n1.vxlan.192-0-2-10"),
        SSA_QUERY,
    );
    d.leader.send(false).unwrap();
    // Let the loop see the change, then answer: the pass must not go on to n2.
    tokio::time::sleep(Duration::from_millis(1)).await;
    seen.echo("uid-1");
    d.trigger.notify_one();
    assert_quiet(&mut handle, Duration::from_secs(600)).await;
    d.stop().await;
}
