//! Components together against a scripted API server and a real OVS: the full cycle
//! apply → Ready → delete → gone.

mod support;

use std::time::Duration;

use remote_device_operator::sandbox::{Datapath, Sandbox};
use serde_json::{Value, json};
use support::agent::spawn_agent;
use support::fake_api::FakeApi;
use tokio_util::sync::CancellationToken;

async fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn ports(sandbox: &Sandbox) -> Vec<String> {
    sandbox
        .vsctl(&["list-ports", "br-int"])
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn tunnel_port_manifest(name: &str) -> Value {
    json!({
        "apiVersion": "remotedevice.io/v1alpha1", "kind": "TunnelPort",
        "metadata": {"name": name, "labels": {"remotedevice.io/node": "n1", "app.kubernetes.io/managed-by": "remote-device-operator"}},
        "spec": {"nodeName": "n1", "remoteIP": "192.0.2.10", "tunnelType": "vxlan",
                 "devices": [{"namespace": "t1", "name": "d1", "macAddress": "52:54:00:00:00:01", "vni": 5001}]}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_and_real_ovs_apply_ready_delete_gone() {
    let sandbox = Sandbox::start(Datapath::Dummy).unwrap();
    let fake = FakeApi::new();
    let name = "n1.vxlan.192-0-2-10";
    fake.apply(tunnel_port_manifest(name));
    // Another node's TunnelPort is none of this agent's business.
    let mut other = tunnel_port_manifest("n2.vxlan.192-0-2-10");
    other["metadata"]["labels"]["remotedevice.io/node"] = json!("n2");
    other["spec"]["nodeName"] = json!("n2");
    fake.apply(other);

    let agent = spawn_agent(
        fake.client(),
        &sandbox,
        Default::default(),
        Duration::from_secs(10),
    );

    let ready = |fake: &FakeApi| {
        fake.list("tunnelports").iter().any(|tp| {
            tp["metadata"]["name"] == name && tp["status"]["conditions"][0]["status"] == "True"
        })
    };
    wait_for("Ready", || ready(&fake)).await;
    let tp = fake
        .list("tunnelports")
        .into_iter()
        .find(|tp| tp["metadata"]["name"] == name)
        .unwrap();
    assert_eq!(
        tp["metadata"]["finalizers"],
        json!(["remotedevice.io/ovs-cleanup"])
    );
    assert_eq!(
        tp["status"]["observedGeneration"],
        tp["metadata"]["generation"]
    );
    assert_eq!(ports(&sandbox).len(), 1);
    assert_eq!(
        tp["status"]["interfaceName"].as_str(),
        Some(ports(&sandbox)[0].as_str())
    );
    let other = fake
        .list("tunnelports")
        .into_iter()
        .find(|tp| tp["spec"]["nodeName"] == "n2")
        .unwrap();
    assert!(
        other["status"].is_null() && other["metadata"]["finalizers"].is_null(),
        "{other}"
    );

    fake.delete("apis/remotedevice.io/v1alpha1", "tunnelports", None, name);
    wait_for("the TunnelPort to be gone", || {
        !fake
            .list("tunnelports")
            .iter()
            .any(|tp| tp["metadata"]["name"] == name)
    })
    .await;
    assert!(
        ports(&sandbox).is_empty(),
        "port removed before the object went"
    );

    // The release came only after the port was gone from OVS: the log shows the order.
    let log = fake.log();
    let adds = log
        .iter()
        .filter(|r| {
            r.method == "PATCH"
                && r.body["metadata"]["finalizers"] == json!(["remotedevice.io/ovs-cleanup"])
        })
        .count();
    assert_eq!(
        adds, 1,
        "the finalizer is added once, not again from a stale cache"
    );
    let release = log
        .iter()
        .rposition(|r| {
            r.method == "PATCH"
                && r.path.ends_with(name)
                && r.body["metadata"]["finalizers"] == json!([])
        })
        .expect("finalizer released");
    assert!(
        log[..release]
            .iter()
            .any(|r| r.method == "PATCH" && r.path.ends_with("/status"))
    );

    agent.stop().await;
}

fn node_manifest(name: &str, ip: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node",
           "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
           "status": {"addresses": [{"type": "InternalIP", "address": ip}]}})
}

fn device_manifest(name: &str, vtep: &str, vni: u32, mac: &str) -> Value {
    json!({"apiVersion": "remotedevice.io/v1alpha1", "kind": "RemoteDevice",
           "metadata": {"name": name, "namespace": "tenant-a"},
           "spec": {"vtepIP": vtep, "vni": vni, "macAddress": mac, "ips": ["10.0.0.50"]}})
}

fn find(fake: &FakeApi, plural: &str, name: &str) -> Option<Value> {
    fake.list(plural)
        .into_iter()
        .find(|o| o["metadata"]["name"] == name)
}

/// The user's loop, end to end without a cluster: a RemoteDevice is applied, the controller
/// writes the node's TunnelPort, the agent makes the OVS port and rules and reports Ready,
/// the device's status says 1/1; the device is deleted, the controller deletes the
/// TunnelPort, the agent removes port and rules and releases its finalizer, and the
/// object is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_agent_and_real_ovs_full_cycle() {
    use clap::Parser;
    use remote_device_operator::controller::{self, ControllerArgs};

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: ControllerArgs,
    }

    let sandbox = Sandbox::start(Datapath::Dummy).unwrap();
    let fake = FakeApi::new();
    fake.apply(node_manifest("n1", "198.51.100.1"));
    fake.apply(device_manifest(
        "tor-server-1",
        "192.0.2.10",
        5001,
        "52:54:00:aa:00:01",
    ));

    let shutdown = CancellationToken::new();
    let controller_args = Wrapper::parse_from([
        "test",
        "--identity",
        "test-controller",
        "--lease-namespace",
        "rdo",
    ])
    .args;
    let controller = tokio::spawn({
        let (client, shutdown) = (fake.client(), shutdown.clone());
        async move {
            controller::run(
                client,
                &controller_args,
                Default::default(),
                Default::default(),
                shutdown,
            )
            .await
        }
    });
    let agent = spawn_agent(
        fake.client(),
        &sandbox,
        Default::default(),
        Duration::from_secs(10),
    );

    let name = "n1.vxlan.192-0-2-10";
    wait_for("the TunnelPort Ready", || {
        find(&fake, "tunnelports", name)
            .is_some_and(|tp| tp["status"]["conditions"][0]["status"] == "True")
    })
    .await;
    wait_for("the device 1/1 ready", || {
        find(&fake, "remotedevices", "tor-server-1").is_some_and(|d| d["status"]["ready"] == "1/1")
    })
    .await;
    let tp = find(&fake, "tunnelports", name).unwrap();
    assert_eq!(tp["metadata"]["ownerReferences"][0]["kind"], "Node");
    assert_eq!(tp["spec"]["devices"][0]["name"], "tor-server-1");
    assert_eq!(ports(&sandbox).len(), 1);
    let device = find(&fake, "remotedevices", "tor-server-1").unwrap();
    assert_eq!(device["status"]["conditions"][0]["reason"], "TunnelsReady");
    let flows = sandbox
        .ofctl(&[
            "dump-flows",
            &sandbox.mgmt("br-int"),
            "cookie=0x52444f4600000000/0xffffffff00000000",
        ])
        .unwrap();
    assert!(flows.contains("52:54:00:aa:00:01"), "{flows}");

    fake.delete(
        "apis/remotedevice.io/v1alpha1",
        "remotedevices",
        Some("tenant-a"),
        "tor-server-1",
    );
    wait_for("the TunnelPort to be gone", || {
        find(&fake, "tunnelports", name).is_none()
    })
    .await;
    assert!(
        ports(&sandbox).is_empty(),
        "the OVS port left before the object"
    );
    let flows = sandbox
        .ofctl(&[
            "dump-flows",
            &sandbox.mgmt("br-int"),
            "cookie=0x52444f4600000000/0xffffffff00000000",
        ])
        .unwrap();
    assert!(
        !flows.contains("52:54:00:aa:00:01"),
        "no rule of the device is left: {flows}"
    );

    shutdown.cancel();
    controller.await.unwrap().unwrap();
    agent.stop().await;
}

/// A failing API server (conflict, server error, no answer at all) is retried with
/// growing pauses — no hot loop — until it answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_retries_failed_writes_with_backoff() {
    let sandbox = Sandbox::start(Datapath::Dummy).unwrap();
    let fake = FakeApi::new();
    let name = "n1.vxlan.192-0-2-10";
    fake.apply(tunnel_port_manifest(name));
    let path = format!("/tunnelports/{name}");
    fake.fail_next("PATCH", &path, 409, 1);
    fake.fail_next("PATCH", &path, 500, 1);
    fake.hang_next("PATCH", &path, 1);

    let metrics = remote_device_operator::telemetry::Metrics::new();
    let agent = spawn_agent(
        fake.client(),
        &sandbox,
        metrics.clone(),
        Duration::from_secs(1),
    );
    wait_for("the finalizer despite three failures", || {
        find(&fake, "tunnelports", name).is_some_and(|tp| !tp["metadata"]["finalizers"].is_null())
    })
    .await;
    let attempts: Vec<_> = fake
        .log()
        .into_iter()
        .filter(|r| r.method == "PATCH" && r.path.ends_with(name))
        .map(|r| r.at)
        .collect();
    assert_eq!(attempts.len(), 4, "three failures, then success");
    // Pauses double (0.5 s, 1 s, 2 s); the hung request also waited out its 1 s timeout.
    let gaps: Vec<Duration> = attempts.windows(2).map(|w| w[1] - w[0]).collect();
    for (gap, least) in gaps.iter().zip([500, 1000, 3000]) {
        assert!(*gap >= Duration::from_millis(least), "gaps {gaps:?}");
    }
    use remote_device_operator::telemetry::ErrorKind;
    assert_eq!(metrics.errors(ErrorKind::Conflict), 1);
    assert_eq!(metrics.errors(ErrorKind::Server), 1);
    assert_eq!(metrics.errors(ErrorKind::Timeout), 1);
    wait_for("Ready after the retries", || {
        find(&fake, "tunnelports", name)
            .is_some_and(|tp| tp["status"]["conditions"][0]["status"] == "True")
    })
    .await;
    agent.stop().await;
}
