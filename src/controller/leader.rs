//! Leader election on a Lease (kube-lease-manager), plus the rule it leaves to its user:
//! a replica that cannot renew its Lease stops leading before the Lease can expire, and
//! leads again once the API server is back and the Lease is (still or again) its own.
//!
//! kube-lease-manager's own `watch()` keeps reporting "leader" through any number of
//! failed renewals; after the Lease expired another replica may lead, and the two would
//! write at once as soon as the first one reaches the API server again.

use std::time::{Duration, Instant};

use kube::Client;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;

/// Where the Lease is and how it is held.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's identity in it.
    pub identity: String,
    /// Seconds a Lease is valid without renewal.
    pub duration_seconds: u64,
    /// Seconds before expiry at which the holder renews it.
    pub grace_seconds: u64,
}

impl LeaseConfig {
    /// A Lease held for 30 s and renewed 5 s before it expires (kube-lease-manager's
    /// defaults, and close to client-go's 15 s / 10 s in spirit: failover within 30 s).
    pub fn new(namespace: &str, name: &str, identity: &str) -> Self {
        LeaseConfig {
            namespace: namespace.to_string(),
            name: name.to_string(),
            identity: identity.to_string(),
            duration_seconds: 30,
            grace_seconds: 5,
        }
    }

    /// How long renewals may keep failing before this replica stops leading. A renewal is
    /// first tried `grace` before expiry, so half of that leaves time to stop writing while
    /// the Lease is still ours.
    pub fn step_down_after(&self) -> Duration {
        Duration::from_secs(self.grace_seconds) / 2
    }
}

/// Runs leader election until `cancel`: the receiver says whether this replica leads. On
/// cancel the Lease is released (when held), so another replica takes over at once.
pub fn spawn(
    client: Client,
    config: LeaseConfig,
    cancel: CancellationToken,
) -> (watch::Receiver<bool>, JoinHandle<()>) {
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(5));
        loop {
            let build = LeaseManagerBuilder::new(client.clone(), &config.name)
                .with_namespace(&config.namespace)
                .with_identity(&config.identity)
                .with_duration(config.duration_seconds)
                .with_grace(config.grace_seconds)
                .build();
            let manager = tokio::select! {
                _ = cancel.cancelled() => return,
                built = build => match built {
                    Ok(manager) => manager,
                    Err(e) => {
                        let delay = backoff.next_delay();
                        tracing::warn!(error = %e, retry_in = ?delay, lease = %config.name, "cannot set up leader election");
                        tokio::select! {
                            _ = cancel.cancelled() => return,
                            _ = tokio::time::sleep(delay) => continue,
                        }
                    }
                },
            };
            backoff.reset();
            if follow(&manager, &config, &tx, &mut backoff, &cancel).await {
                if *tx.borrow() {
                    match tokio::time::timeout(Duration::from_secs(5), manager.release()).await {
                        Ok(Ok(())) => tracing::info!("released the Lease"),
                        Ok(Err(e)) => tracing::warn!(error = %e, "could not release the Lease"),
                        Err(_) => tracing::warn!("releasing the Lease took over 5 s"),
                    }
                    tx.send_replace(false);
                }
                return;
            }
            // Stepped down: a fresh manager reports leadership anew once the API server
            // answers (the old one would go on believing it leads).
        }
    });
    (rx, task)
}

/// Follows one manager: publishes every change; returns `true` on cancel, `false` after
/// stepping down because renewals kept failing.
async fn follow(
    manager: &LeaseManager,
    config: &LeaseConfig,
    tx: &watch::Sender<bool>,
    backoff: &mut Backoff,
    cancel: &CancellationToken,
) -> bool {
    let mut failing_since: Option<Instant> = None;
    loop {
        let changed = tokio::select! {
            _ = cancel.cancelled() => return true,
            changed = manager.changed() => changed,
        };
        match changed {
            Ok(leading) => {
                failing_since = None;
                backoff.reset();
                tx.send_replace(leading);
            }
            Err(e) => {
                let since = *failing_since.get_or_insert_with(Instant::now);
                if *tx.borrow() && since.elapsed() >= config.step_down_after() {
                    tracing::warn!(error = %e, "cannot renew the Lease; stepping down before it expires");
                    tx.send_replace(false);
                    return false;
                }
                let delay = backoff.next_delay().min(config.step_down_after());
                tracing::warn!(error = %e, retry_in = ?delay, "leader election failed");
                tokio::select! {
                    _ = cancel.cancelled() => return true,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}
