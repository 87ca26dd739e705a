//! The agent's Kubernetes side against kube's mock client, with a real OVS where the
//! scenario needs one: every request is checked for method, path, query and body.

#[path = "support/sandbox.rs"]
#[allow(dead_code)]
mod sandbox;

use std::time::Duration;

use http::{Request, Response};
use kube::client::Body;
use kube::{Api, Client};
use remote_device_operator::agent::apiserver::{self, Round};
use remote_device_operator::agent::decide::decide_writes;
use remote_device_operator::agent::node::{self, Feed, NodeConfig};
use remote_device_operator::api::conditions::{READY, is_true};
use remote_device_operator::api::{
    OVS_CLEANUP_FINALIZER, TunnelDevice, TunnelPort, TunnelPortSpec, TunnelType,
};
use sandbox::{Datapath, Sandbox};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tower_test::mock;

type Handle = mock::Handle<Request<Body>, Response<Body>>;

fn mock_client() -> (Client, Handle) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "default"), handle)
}

fn tunnel_port(name: &str, finalizer: bool) -> TunnelPort {
    let mut tp = TunnelPort::new(
        name,
        TunnelPortSpec {
            node_name: "n1".into(),
            remote_ip: "192.0.2.10".into(),
            tunnel_type: TunnelType::Vxlan,
            dst_port: None,
            local_ip: None,
            devices: std::sync::Arc::new(vec![TunnelDevice {
                namespace: "t1".into(),
                name: "d1".into(),
                mac_address: "52:54:00:00:00:01".into(),
                vni: 5001,
                ips: vec![],
                local_vlan: None,
            }]),
            bfd: None,
        },
    );
    tp.metadata.resource_version = Some("7".into());
    tp.metadata.generation = Some(1);
    tp.metadata.uid = Some("uid-1".into());
    if finalizer {
        tp.metadata.finalizers = Some(vec![OVS_CLEANUP_FINALIZER.into()]);
    }
    tp
}

fn json_response(value: &Value) -> Response<Body> {
    Response::builder()
        .status(200)
        .body(Body::from(serde_json::to_vec(value).unwrap()))
        .unwrap()
}

/// Receives the next request and returns (method, path, query pairs, content type, body).
async fn next(
    handle: &mut Handle,
) -> (
    String,
    String,
    Vec<(String, String)>,
    String,
    Value,
    mock::SendResponse<Response<Body>>,
) {
    let (request, send) = tokio::time::timeout(Duration::from_secs(10), handle.next_request())
        .await
        .expect("a request within 10 s")
        .expect("the client is alive");
    let method = request.method().to_string();
    let path = request.uri().path().to_string();
    let query: Vec<(String, String)> = request
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_string(), v.replace("%2F", "/").replace("%3D", "="))
        })
        .collect();
    let content_type = request
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let bytes = request.into_body().collect_bytes().await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (method, path, query, content_type, body, send)
}

fn has(query: &[(String, String)], key: &str, value: &str) -> bool {
    query.iter().any(|(k, v)| k == key && v == value)
}

#[tokio::test]
async fn finalizer_and_status_writes() {
    let (client, mut handle) = mock_client();
    let api: Api<TunnelPort> = Api::all(client);
    let fresh = tunnel_port("n1.vxlan.192-0-2-10", false);

    let call = tokio::spawn({
        let (api, tp) = (api.clone(), fresh.clone());
        async move { apiserver::add_finalizer(&api, &tp).await }
    });
    let (method, path, query, ctype, body, send) = next(&mut handle).await;
    assert_eq!(
        (method.as_str(), path.as_str()),
        (
            "PATCH",
            "/apis/remotedevice.io/v1alpha1/tunnelports/n1.vxlan.192-0-2-10"
        )
    );
    assert_eq!(
        query,
        vec![(
            "fieldManager".to_string(),
            "remote-device-operator-agent".to_string()
        )]
    );
    assert_eq!(ctype, "application/merge-patch+json");
    assert_eq!(
        body,
        json!({"metadata": {"finalizers": [OVS_CLEANUP_FINALIZER], "resourceVersion": "7"}})
    );
    send.send_response(json_response(
        &serde_json::to_value(tunnel_port("n1.vxlan.192-0-2-10", true)).unwrap(),
    ));
    call.await.unwrap().unwrap();

    let mut status = remote_device_operator::api::TunnelPortStatus {
        ofport: Some(4),
        ..Default::default()
    };
    status.interface_name = Some("rdv-0123456789a".into());
    let call = tokio::spawn({
        let (api, status) = (api.clone(), status.clone());
        async move { apiserver::write_status(&api, "n1.vxlan.192-0-2-10", &status).await }
    });
    let (method, path, query, ctype, body, send) = next(&mut handle).await;
    assert_eq!(
        (method.as_str(), path.as_str()),
        (
            "PATCH",
            "/apis/remotedevice.io/v1alpha1/tunnelports/n1.vxlan.192-0-2-10/status"
        )
    );
    assert!(
        has(&query, "fieldManager", apiserver::AGENT_MANAGER) && has(&query, "force", "true"),
        "{query:?}"
    );
    assert_eq!(ctype, "application/apply-patch+yaml");
    assert_eq!(
        body,
        json!({"apiVersion": "remotedevice.io/v1alpha1", "kind": "TunnelPort",
               "status": {"ofport": 4, "interfaceName": "rdv-0123456789a"}})
    );
    send.send_response(json_response(
        &serde_json::to_value(tunnel_port("n1.vxlan.192-0-2-10", true)).unwrap(),
    ));
    call.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_conflict_or_server_error_is_reported_not_fatal() {
    let (client, mut handle) = mock_client();
    let api: Api<TunnelPort> = Api::all(client);
    let objects = vec![tunnel_port("a", false)];
    let decisions = remote_device_operator::agent::decide::AgentWrites {
        add_finalizer: vec!["a".into()],
        ..Default::default()
    };
    for (code, want) in [(409u16, Round::Conflicted), (500, Round::Failed)] {
        let call = tokio::spawn({
            let (api, objects, decisions) = (api.clone(), objects.clone(), decisions.clone());
            async move {
                apiserver::apply(
                    &api,
                    &objects,
                    &decisions,
                    &mut Default::default(),
                    &Default::default(),
                    Duration::from_secs(10),
                )
                .await
            }
        });
        let (method, path, _, _, _, send) = next(&mut handle).await;
        assert_eq!(
            (method.as_str(), path.as_str()),
            ("PATCH", "/apis/remotedevice.io/v1alpha1/tunnelports/a")
        );
        let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": "Conflict", "message": "try again"});
        send.send_response(
            Response::builder()
                .status(code)
                .body(Body::from(serde_json::to_vec(&status).unwrap()))
                .unwrap(),
        );
        if code == 409 {
            // The agent reads the object once; it was recreated meanwhile (another uid),
            // so it leaves it to the next round.
            let (method, path, _, _, _, send) = next(&mut handle).await;
            assert_eq!(
                (method.as_str(), path.as_str()),
                ("GET", "/apis/remotedevice.io/v1alpha1/tunnelports/a")
            );
            let mut recreated = tunnel_port("a", false);
            recreated.metadata.uid = Some("uid-2".into());
            send.send_response(
                Response::builder()
                    .status(200)
                    .body(Body::from(serde_json::to_vec(&recreated).unwrap()))
                    .unwrap(),
            );
        }
        assert_eq!(
            call.await.unwrap(),
            want,
            "a failed write is reported so the round is retried ({code})"
        );
    }
}

/// Runs the agent's decisions for `tp` against the node loop (as the Kubernetes side
/// does, without an API server) until `done` holds for a round.
async fn decide_until(
    node: &node::NodeHandle,
    tp: &TunnelPort,
    view: &mut tokio::sync::watch::Receiver<node::NodeView>,
    what: &str,
    done: impl Fn(&remote_device_operator::agent::decide::AgentWrites) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let d = decide_writes(
            "n1",
            Some(std::slice::from_ref(tp)),
            &view.borrow(),
            k8s_openapi::jiff::Timestamp::now(),
        );
        node.desired.send_if_modified(|current| {
            let changed = *current != d.desired;
            *current = d.desired.clone();
            changed
        });
        if done(&d) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never {what}: {:?}",
            d.status
        );
        let _ = tokio::time::timeout(Duration::from_millis(200), view.changed()).await;
    }
}

/// The delete path on a real OVS: the finalizer is released only after the OVS port and
/// its rules are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_tunnel_port_leaves_ovs_before_its_finalizer_is_released() {
    let sandbox = Sandbox::start(Datapath::Dummy).expect("OVS sandbox");
    let shutdown = CancellationToken::new();
    let node = node::spawn(
        NodeConfig {
            ovsdb: sandbox.endpoint(),
            bridge: "br-int".into(),
            ovs_rundir: sandbox.dir().to_path_buf(),
            feed: Feed::Agent { node: "n1".into() },
        },
        shutdown.clone(),
    );
    let mut view = node.view.clone();
    let live = tunnel_port("n1.vxlan.192-0-2-10", true);

    // Apply: the port appears and the status turns Ready.
    let now = k8s_openapi::jiff::Timestamp::now;
    decide_until(&node, &live, &mut view, "Ready", |d| {
        d.status.iter().any(|(_, s)| is_true(&s.conditions, READY))
    })
    .await;
    assert_eq!(
        sandbox
            .vsctl(&["list-ports", "br-int"])
            .unwrap()
            .lines()
            .count(),
        1
    );

    // Delete: while anything of the port is in OVS, the finalizer stays.
    let mut deleting = live.clone();
    deleting.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now()));
    decide_until(&node, &deleting, &mut view, "the finalizer released", |d| {
        !d.release_finalizer.is_empty()
    })
    .await;
    assert_eq!(
        sandbox.vsctl(&["list-ports", "br-int"]).unwrap().trim(),
        "",
        "port gone before release"
    );
    let flows = sandbox
        .ofctl(&[
            "dump-flows",
            &sandbox.mgmt("br-int"),
            "cookie=0x52444f4600000000/0xffffffff00000000",
        ])
        .unwrap();
    assert_eq!(
        flows.lines().filter(|l| l.contains("cookie=")).count(),
        0,
        "rules gone before release: {flows}"
    );

    // The release itself.
    let (client, mut handle) = mock_client();
    let api: Api<TunnelPort> = Api::all(client);
    let call = tokio::spawn({
        let tp = deleting.clone();
        async move { apiserver::release_finalizer(&api, &tp).await }
    });
    let (method, path, _, ctype, body, send) = next(&mut handle).await;
    assert_eq!(
        (method.as_str(), path.as_str()),
        (
            "PATCH",
            "/apis/remotedevice.io/v1alpha1/tunnelports/n1.vxlan.192-0-2-10"
        )
    );
    assert_eq!(ctype, "application/merge-patch+json");
    assert_eq!(
        body,
        json!({"metadata": {"finalizers": [], "resourceVersion": "7"}})
    );
    send.send_response(json_response(&serde_json::to_value(&deleting).unwrap()));
    call.await.unwrap().unwrap();

    shutdown.cancel();
    node.join().await;
}

/// The whole shell: it lists only its node's TunnelPorts (label selector), creates the
/// OVS port without waiting for its finalizer patch (held unanswered here until the port
/// is in OVS), then reports Ready with the ofport OVS gave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_lists_its_node_adds_finalizer_then_reports_ready() {
    let sandbox = Sandbox::start(Datapath::Dummy).expect("OVS sandbox");
    let shutdown = CancellationToken::new();
    let node = node::spawn(
        NodeConfig {
            ovsdb: sandbox.endpoint(),
            bridge: "br-int".into(),
            ovs_rundir: sandbox.dir().to_path_buf(),
            feed: Feed::Agent { node: "n1".into() },
        },
        shutdown.clone(),
    );
    let (client, mut handle) = mock_client();
    let api: Api<TunnelPort> = Api::all(client);
    let agent = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            apiserver::run(
                api,
                "n1".into(),
                &node,
                &Default::default(),
                &Default::default(),
                Duration::from_secs(10),
                shutdown,
            )
            .await;
            node
        }
    });

    let name = "n1.vxlan.192-0-2-10";
    let with_finalizer = tunnel_port(name, true);
    let mut held = Vec::new();
    let mut finalizer_added = false;
    let mut event_delivered = false;
    let mut port_while_finalizer_pending = false;
    let ready_body = loop {
        let (method, path, query, _, body, send) = next(&mut handle).await;
        match (method.as_str(), path.as_str()) {
            ("GET", "/apis/remotedevice.io/v1alpha1/tunnelports")
                if !has(&query, "watch", "true") =>
            {
                assert!(
                    has(&query, "labelSelector", "remotedevice.io/node=n1"),
                    "{query:?}"
                );
                let list = json!({"apiVersion": "remotedevice.io/v1alpha1", "kind": "TunnelPortList",
                    "metadata": {"resourceVersion": "7"}, "items": [tunnel_port(name, false)]});
                send.send_response(json_response(&list));
            }
            ("GET", "/apis/remotedevice.io/v1alpha1/tunnelports") => {
                assert!(
                    has(&query, "labelSelector", "remotedevice.io/node=n1"),
                    "{query:?}"
                );
                if finalizer_added && !event_delivered {
                    // The watch came back after our write: tell it now.
                    let event = json!({"type": "MODIFIED", "object": with_finalizer});
                    send.send_response(
                        Response::builder()
                            .body(Body::from(serde_json::to_vec(&event).unwrap()))
                            .unwrap(),
                    );
                    event_delivered = true;
                } else {
                    // Held open until there is something to tell.
                    held.push(send);
                }
            }
            ("PATCH", p) if p == format!("/apis/remotedevice.io/v1alpha1/tunnelports/{name}") => {
                assert_eq!(
                    body,
                    json!({"metadata": {"finalizers": [OVS_CLEANUP_FINALIZER], "resourceVersion": "7"}})
                );
                // The patch is not answered yet: the port must come anyway.
                let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
                while !port_while_finalizer_pending && tokio::time::Instant::now() < deadline {
                    port_while_finalizer_pending = !sandbox
                        .vsctl(&["list-ports", "br-int"])
                        .unwrap_or_default()
                        .trim()
                        .is_empty();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                finalizer_added = true;
                send.send_response(json_response(
                    &serde_json::to_value(&with_finalizer).unwrap(),
                ));
                // Answer the pending watch with the change.
                if let Some(watch) = held.pop() {
                    event_delivered = true;
                    let event = json!({"type": "MODIFIED", "object": with_finalizer});
                    watch.send_response(
                        Response::builder()
                            .body(Body::from(serde_json::to_vec(&event).unwrap()))
                            .unwrap(),
                    );
                }
            }
            ("PATCH", p)
                if p == format!("/apis/remotedevice.io/v1alpha1/tunnelports/{name}/status") =>
            {
                assert!(
                    has(&query, "fieldManager", apiserver::AGENT_MANAGER)
                        && has(&query, "force", "true")
                );
                send.send_response(json_response(
                    &serde_json::to_value(&with_finalizer).unwrap(),
                ));
                if body["status"]["conditions"][0]["status"] == "True" {
                    break body;
                }
            }
            other => panic!("unexpected request {other:?} {query:?} {body}"),
        }
    };
    assert!(
        finalizer_added && port_while_finalizer_pending,
        "the OVS port is created while its finalizer patch is pending"
    );
    assert_eq!(ready_body["status"]["conditions"][0]["reason"], "PortReady");
    assert!(
        ready_body["status"]["ofport"].as_i64().unwrap() > 0,
        "{ready_body}"
    );
    assert_eq!(
        sandbox
            .vsctl(&["list-ports", "br-int"])
            .unwrap()
            .lines()
            .count(),
        1
    );
    shutdown.cancel();
    drop(held);
    let node = agent.await.unwrap();
    node.join().await;
}

/// A node loop that cannot reach OVSDB (starting while ovsdb-server restarts) knows
/// neither ofports nor workload ports: it must not touch the rules OVS already has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_survive_a_start_without_ovsdb() {
    let sandbox = Sandbox::start(Datapath::Dummy).expect("OVS sandbox");
    sandbox.vsctl(&["add-br", "br-int"]).unwrap();
    let mgmt = sandbox.mgmt("br-int");
    // A rule owned by the operator, left by an earlier run.
    sandbox
        .ofctl(&["add-flow", &mgmt, "cookie=0x52444f4600000001,table=0,priority=60000,dl_dst=52:54:00:00:00:01,actions=drop"])
        .unwrap();
    let shutdown = CancellationToken::new();
    let node = node::spawn(
        NodeConfig {
            // Nothing listens here.
            ovsdb: format!("unix:{}/nothing.sock", sandbox.dir().display()),
            bridge: "br-int".into(),
            ovs_rundir: sandbox.dir().to_path_buf(),
            feed: Feed::Agent { node: "n1".into() },
        },
        shutdown.clone(),
    );
    node.desired
        .send_replace(Some(vec![tunnel_port("n1.vxlan.192-0-2-10", true)]));
    let mut view = node.view.clone();
    // Give the loops time for several rounds (the flow sync checks every second).
    let _ = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            let _ = view.changed().await;
        }
    })
    .await;
    assert!(
        view.borrow().plan.is_none(),
        "no plan before OVSDB was seen"
    );
    let flows = sandbox
        .ofctl(&[
            "dump-flows",
            &mgmt,
            "cookie=0x52444f4600000000/0xffffffff00000000",
        ])
        .unwrap();
    assert_eq!(
        flows.lines().filter(|l| l.contains("cookie=")).count(),
        1,
        "{flows}"
    );
    shutdown.cancel();
    node.join().await;
}
