//! The agent against a scripted API server and a real OVS, for what a real API server
//! cannot be made to do on cue: answer 409, 500, or not at all. The full cycle
//! apply → Ready → delete → gone runs on a real kube-apiserver (tests/envtest_cluster.rs).

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::agent::spawn_agent;
use support::fake_api::FakeApi;
use support::sandbox::{Datapath, Sandbox};

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

fn tunnel_port_manifest(name: &str) -> Value {
    json!({
        "apiVersion": "remotedevice.io/v1alpha1", "kind": "TunnelPort",
        "metadata": {"name": name, "labels": {"remotedevice.io/node": "n1", "app.kubernetes.io/managed-by": "remote-device-operator"}},
        "spec": {"nodeName": "n1", "remoteIP": "192.0.2.10", "tunnelType": "vxlan",
                 "devices": [{"namespace": "t1", "name": "d1", "macAddress": "52:54:00:00:00:01", "vni": 5001}]}
    })
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
/// A failing API server (server error, no answer at all) is retried with growing pauses —
/// no hot loop — until it answers; a conflict is retried at once on a freshly read
/// version (the watch may lag behind).
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
    // The conflict is retried at once on a fresh read; then the pauses double (0.5 s,
    // 1 s), and the hung request also waited out its 1 s timeout.
    let gaps: Vec<Duration> = attempts.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps[0] < Duration::from_millis(500), "gaps {gaps:?}");
    for (gap, least) in gaps.iter().zip([0, 500, 2000]) {
        assert!(*gap >= Duration::from_millis(least), "gaps {gaps:?}");
    }
    use remote_device_operator::telemetry::ErrorKind;
    // The conflict was settled by the re-read: not a failed write.
    assert_eq!(metrics.errors(ErrorKind::Conflict), 0);
    assert!(
        fake.log()
            .iter()
            .any(|r| r.method == "GET" && r.path.ends_with(name)),
        "the conflict made the agent read the object"
    );
    assert_eq!(metrics.errors(ErrorKind::Server), 1);
    assert_eq!(metrics.errors(ErrorKind::Timeout), 1);
    wait_for("Ready after the retries", || {
        find(&fake, "tunnelports", name)
            .is_some_and(|tp| tp["status"]["conditions"][0]["status"] == "True")
    })
    .await;
    agent.stop().await;
}
