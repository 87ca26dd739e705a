//! The node side as the agent and standalone mode run it — the node loop (OVSDB reconcile
//! of the tunnel ports + flow sync) — on its own runtime, for tests that drive it with
//! TunnelPorts and wait for what it sees.

use std::time::Duration;

use remote_device_operator::agent::node::{self, Feed, NodeConfig, NodeHandle, NodeView};
use remote_device_operator::api::TunnelPort;
use tokio_util::sync::CancellationToken;

use super::sandbox::Sandbox;

/// A running node loop on `br-int` of a sandbox (stopped on drop; OVS is left as it is).
pub struct NodeLoop {
    runtime: tokio::runtime::Runtime,
    handle: Option<NodeHandle>,
    cancel: CancellationToken,
}

impl Drop for NodeLoop {
    fn drop(&mut self) {
        self.cancel.cancel();
        if let Some(handle) = self.handle.take() {
            self.runtime.block_on(handle.join());
        }
    }
}

impl NodeLoop {
    /// Starts the loop, fed as standalone mode feeds it (no finalizers).
    pub fn start(sb: &Sandbox) -> NodeLoop {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let cancel = CancellationToken::new();
        let config = NodeConfig {
            ovsdb: sb.endpoint(),
            bridge: "br-int".into(),
            ovs_rundir: sb.dir().to_path_buf(),
            feed: Feed::Standalone,
        };
        let handle = runtime.block_on(async { node::spawn(config, cancel.clone()) });
        NodeLoop {
            runtime,
            handle: Some(handle),
            cancel,
        }
    }

    /// Hands the loop a desired set and waits (15 s at most) until `done` holds for what
    /// it sees; that view.
    pub fn converge(
        &self,
        desired: Vec<TunnelPort>,
        what: &str,
        done: impl Fn(&NodeView) -> bool,
    ) -> NodeView {
        let handle = self.handle.as_ref().unwrap();
        handle.desired.send_replace(Some(desired));
        let mut view = handle.view.clone();
        let reached = self.runtime.block_on(async {
            let waited =
                tokio::time::timeout(Duration::from_secs(15), view.wait_for(|v| done(v))).await;
            waited.ok().and_then(|r| r.ok()).map(|v| v.clone())
        });
        reached
            .unwrap_or_else(|| panic!("{what}: not reached; node view: {:?}", handle.view.borrow()))
    }
}
