//! Components together against a scripted API server and a real OVS: the full cycle
//! apply → Ready → delete → gone.

mod support;

use std::time::Duration;

use kube::Api;
use remote_device_operator::agent::kube as agent_kube;
use remote_device_operator::agent::node::{self, NodeConfig};
use remote_device_operator::api::TunnelPort;
use remote_device_operator::sandbox::{Datapath, Sandbox};
use serde_json::{Value, json};
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

    let shutdown = CancellationToken::new();
    let node = node::spawn(
        NodeConfig {
            ovsdb: sandbox.endpoint(),
            bridge: "br-int".into(),
            ovs_rundir: sandbox.dir().to_path_buf(),
        },
        shutdown.clone(),
    );
    let agent = tokio::spawn({
        let (api, shutdown) = (Api::<TunnelPort>::all(fake.client()), shutdown.clone());
        async move {
            agent_kube::run(api, "n1".into(), &node, shutdown).await;
            node
        }
    });

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

    shutdown.cancel();
    let node = agent.await.unwrap();
    node.join().await;
}
