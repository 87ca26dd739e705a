//! The running gateway writers, one per VtepGateway, as the controller (leader only) and
//! standalone mode keep them: started when a gateway appears, restarted when its
//! connection settings change, stopped (deleting nothing) when it goes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::fabric::FabricState;
use super::writer::{GatewayConfig, GatewayObserved, run};

struct Running {
    config: GatewayConfig,
    desired: watch::Sender<Option<FabricState>>,
    observed: watch::Receiver<GatewayObserved>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// The writers, by gateway name.
pub struct Fleet {
    running: BTreeMap<String, Running>,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
}

impl Fleet {
    /// An empty fleet whose writers stop with `shutdown`.
    pub fn new(shutdown: CancellationToken) -> Self {
        Fleet {
            running: BTreeMap::new(),
            wake: Arc::new(Notify::new()),
            shutdown,
        }
    }

    /// Notified whenever any writer's observation changes.
    pub fn wake(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Makes `name` run with `config` towards `desired` (`None` = not completely known:
    /// the writer touches nothing). A changed config restarts the writer.
    pub fn set(&mut self, name: &str, config: GatewayConfig, desired: Option<FabricState>) {
        if let Some(r) = self.running.get(name)
            && r.config == config
            && !r.task.is_finished()
        {
            r.desired.send_if_modified(|d| {
                let changed = *d != desired;
                if changed {
                    *d = desired;
                }
                changed
            });
            return;
        }
        self.stop(name);
        let (desired_tx, desired_rx) = watch::channel(desired);
        let (observed_tx, observed) = watch::channel(GatewayObserved::default());
        let stop = self.shutdown.child_token();
        let wake = self.wake.clone();
        let mut seen = observed.clone();
        let writer_stop = stop.clone();
        let gateway = name.to_string();
        let writer_config = config.clone();
        let task = tokio::spawn(async move {
            let writer = run(writer_config, desired_rx, observed_tx, writer_stop);
            let forward = async {
                while seen.changed().await.is_ok() {
                    wake.notify_one();
                }
            };
            tokio::select! {
                result = writer => if let Err(e) = result {
                    tracing::warn!(%gateway, error = %e, "gateway writer stopped");
                },
                _ = forward => {}
            }
            wake.notify_one();
        });
        self.running.insert(
            name.to_string(),
            Running {
                config,
                desired: desired_tx,
                observed,
                stop,
                task,
            },
        );
    }

    /// Stops the writer of `name`, if any (its rows stay on the switch).
    pub fn stop(&mut self, name: &str) {
        if let Some(r) = self.running.remove(name) {
            r.stop.cancel();
        }
    }

    /// Stops every writer not in `keep`.
    pub fn retain(&mut self, keep: &BTreeSet<String>) {
        let gone: Vec<String> = self
            .running
            .keys()
            .filter(|n| !keep.contains(*n))
            .cloned()
            .collect();
        for name in gone {
            self.stop(&name);
        }
    }

    /// Stops every writer.
    pub fn stop_all(&mut self) {
        self.retain(&BTreeSet::new());
    }

    /// What the writer of `name` observes now.
    pub fn observed(&self, name: &str) -> Option<GatewayObserved> {
        self.running.get(name).map(|r| r.observed.borrow().clone())
    }

    /// Names of the running writers.
    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.running.keys()
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.stop_all();
    }
}
