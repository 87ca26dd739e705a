//! Running the agent (node loop + Kubernetes side) against a sandbox OVS in a test.

use std::time::Duration;

use super::sandbox::Sandbox;
use kube::Api;
use remote_device_operator::agent::apiserver;
use remote_device_operator::agent::node::{self, Feed, NodeConfig, NodeHandle};
use remote_device_operator::api::TunnelPort;
use remote_device_operator::telemetry::Metrics;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// An agent for node `n1` running in the background.
pub struct RunningAgent {
    shutdown: CancellationToken,
    task: JoinHandle<NodeHandle>,
}

/// Starts the agent of node `n1` on `sandbox`'s `br-int`, talking to the API through `client`.
pub fn spawn_agent(
    client: kube::Client,
    sandbox: &Sandbox,
    metrics: Metrics,
    api_timeout: Duration,
) -> RunningAgent {
    let shutdown = CancellationToken::new();
    let config = NodeConfig {
        ovsdb: sandbox.endpoint(),
        bridge: "br-int".into(),
        ovs_rundir: sandbox.dir().to_path_buf(),
        feed: Feed::Agent { node: "n1".into() },
    };
    let node = node::spawn(config, shutdown.clone());
    let api = Api::<TunnelPort>::all(client);
    let token = shutdown.clone();
    let task = tokio::spawn(async move {
        apiserver::run(
            api,
            "n1".into(),
            &node,
            &metrics,
            &Default::default(),
            api_timeout,
            token,
        )
        .await;
        node
    });
    RunningAgent { shutdown, task }
}

impl RunningAgent {
    /// Stops the agent (OVS is left as it is) and waits until every task has ended.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let node = self.task.await.expect("the agent task ends cleanly");
        node.join().await;
    }
}
