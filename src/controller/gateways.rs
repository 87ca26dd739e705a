//! The gateway loop: keeps every VtepGateway's switch matching the RemoteDevices and
//! TunnelPorts, and its status matching what the switch shows. Leader only, beside the
//! TunnelPort pass loop and fed by the same caches.
//!
//! ```text
//! caches (devices, TunnelPorts) ─┐
//! VtepGateways, TLS Secrets ─────┼─► gateway_targets (pure) ─► plan_fabric (pure) ─► Fleet
//!                                │                                                   │
//!                                └──── status (pure) ◄── observed ◄── writer per gateway
//! ```
//! - A finalizer ([`GATEWAY_FINALIZER`]) lets a deleted VtepGateway take our rows off its
//!   switch first. A gateway whose spec is invalid cannot be reached: its finalizer goes at
//!   once (nothing could be cleaned).
//! - The TLS Secret's PEMs are written to a private directory (0700, files 0600) that the
//!   OVSDB client reads on every connect, so a rotated Secret reaches the next reconnect.
//! - The status is written (server-side apply) only when it differs from the stored one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::api::{RemoteDevice, TunnelPort, VtepGateway};
use crate::ovsdb::TlsFiles;
use crate::pacing::gather_burst;
use crate::vtep::{Blocked, Fleet, GatewayConfig, GatewayTarget, gateway_status, gateway_targets};

use super::Caches;

/// Finalizer the controller puts on a VtepGateway so its rows leave the switch first.
pub const GATEWAY_FINALIZER: &str = "remotedevice.io/vtep-cleanup";

/// Quiet time gathered before a pass that follows the last one closely (short, as a change
/// must reach the switch fast); a change after a quiet spell this long goes at once...
const DEBOUNCE: Duration = Duration::from_millis(20);
/// ... and the longest wait for that quiet: during a bulk change, gathering delays a change
/// by at most this (the issue asks 100 ms for one change to reach the switch).
const DEBOUNCE_MAX: Duration = Duration::from_millis(50);
/// A pass runs at least this often (statuses, Secrets rotated in place).
const RESYNC: Duration = Duration::from_secs(30);

/// Keys of the TLS Secret.
pub const TLS_KEY: &str = "tls.key";
/// The client certificate.
pub const TLS_CERT: &str = "tls.crt";
/// The CA certificate.
pub const TLS_CA: &str = "ca.crt";

/// What one gateway wants this pass (pure).
#[derive(Debug, PartialEq)]
pub enum Want {
    /// Run the writer with this config towards the target.
    Run(GatewayConfig),
    /// No writer: why not.
    Blocked(Blocked),
}

/// Decides a gateway's writer from its target and its TLS material (pure; `tls` is
/// `Ok(files)` once the Secret's PEMs are on disk, or why they are not).
pub fn want(target: &GatewayTarget, tls: Option<Result<TlsFiles, String>>) -> Want {
    if let Some(why) = &target.invalid {
        return Want::Blocked(Blocked::InvalidSpec(why.clone()));
    }
    let tls = match (target.tls_secret.as_deref(), tls) {
        (None, _) => None,
        (Some(_), Some(Ok(files))) => Some(files),
        (Some(name), Some(Err(why))) => {
            return Want::Blocked(Blocked::TlsSecret(format!("Secret {name}: {why}")));
        }
        (Some(name), None) => {
            return Want::Blocked(Blocked::TlsSecret(format!("Secret {name} not found")));
        }
    };
    Want::Run(GatewayConfig {
        endpoint: target.endpoint.clone(),
        switch: target.switch.clone(),
        tls,
    })
}

/// The PEMs of a TLS Secret, or which key is missing (pure).
pub fn tls_material(secret: &Secret) -> Result<[(&'static str, Vec<u8>); 3], String> {
    let data = secret.data.as_ref();
    let get = |key: &'static str| {
        data.and_then(|d| d.get(key))
            .map(|b| (key, b.0.clone()))
            .filter(|(_, b)| !b.is_empty())
            .ok_or_else(|| format!("has no {key} (needs {TLS_KEY}, {TLS_CERT} and {TLS_CA})"))
    };
    Ok([get(TLS_KEY)?, get(TLS_CERT)?, get(TLS_CA)?])
}

/// Writes the Secret's PEMs under `dir/<gateway>/`, rewriting only what changed.
fn write_tls(dir: &Path, gateway: &str, secret: &Secret) -> Result<TlsFiles, String> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    let material = tls_material(secret)?;
    let sub = dir.join(gateway);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&sub)
        .map_err(|e| format!("cannot create {}: {e}", sub.display()))?;
    let _ = std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o700));
    for (key, bytes) in &material {
        let path = sub.join(key);
        if std::fs::read(&path).ok().as_deref() == Some(bytes.as_slice()) {
            continue;
        }
        let tmp = sub.join(format!(".{key}.new"));
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(bytes)?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(TlsFiles {
        private_key: sub.join(TLS_KEY),
        certificate: sub.join(TLS_CERT),
        ca_certificate: sub.join(TLS_CA),
    })
}

/// A reflector over `api` whose stream yields `()` per event (failures are logged; the
/// watch retries with backoff).
fn reflect<K>(api: Api<K>) -> (Store<K>, futures::stream::BoxStream<'static, ()>)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (store, stream) = super::reflect(api, watcher::Config::default(), |_| {});
    let stream = stream
        .filter_map(|event| async move {
            event
                .map_err(
                    |e| tracing::warn!(error = %e, "gateway watch failed; retrying with backoff"),
                )
                .ok()
        })
        .boxed();
    (store, stream)
}

/// One pass's inputs.
struct Pass<'a> {
    gateways: &'a [Arc<VtepGateway>],
    targets: &'a BTreeMap<String, GatewayTarget>,
    secrets: &'a Store<Secret>,
    secret_namespace: &'a str,
}

/// Runs until `cancel`; writes only while `leader` is true.
pub async fn run(
    client: Client,
    caches: Caches,
    secret_namespace: String,
    mut leader: watch::Receiver<bool>,
    cancel: CancellationToken,
) {
    let (gateways, gateway_events) = reflect(Api::<VtepGateway>::all(client.clone()));
    let (secrets, secret_events) =
        reflect(Api::<Secret>::namespaced(client.clone(), &secret_namespace));
    let tls_dir = std::env::temp_dir().join(format!("rdo-gateway-tls-{}", std::process::id()));
    let api: Api<VtepGateway> = Api::all(client);
    let mut fleet = Fleet::new(cancel.child_token());
    let wake = fleet.wake();
    let own = Arc::new(ClusterChanges::default());
    let forward = {
        let own = own.clone();
        let mut changes = caches.changes.clone();
        let mut events = futures::stream::select(gateway_events, secret_events);
        async move {
            loop {
                tokio::select! {
                    Some(()) = events.next() => own.mark(),
                    r = changes.changed() => {
                        if r.is_err() { return; }
                        own.mark();
                    }
                }
            }
        }
    };
    let forwarder = tokio::spawn(forward);
    if tokio::select! {
        _ = cancel.cancelled() => true,
        r = gateways.wait_until_ready() => r.is_err(),
    } {
        forwarder.abort();
        return;
    }
    let mut written: BTreeMap<String, crate::api::VtepGatewayStatus> = BTreeMap::new();
    // The targets are recomputed only when the cluster changed; a writer's observation
    // changing (frequent: BFD states, the switch's own rows) only refreshes statuses.
    let mut targets: Option<BTreeMap<String, GatewayTarget>> = None;
    loop {
        let Some(cluster_changed) = next_pass(&own, &wake, &mut leader, &cancel).await else {
            break;
        };
        if !*leader.borrow_and_update() {
            fleet.stop_all();
            written.clear();
            targets = None;
            continue;
        }
        let all = gateways.state();
        if cluster_changed || targets.is_none() {
            let gws: Vec<&VtepGateway> = all.iter().map(|g| &**g).collect();
            let devices = caches.devices.state();
            let ports = caches.tunnel_ports.state();
            let devices: Vec<&RemoteDevice> = devices.iter().map(|d| &**d).collect();
            let ports: Vec<&TunnelPort> = ports.iter().map(|t| &**t).collect();
            let (computed, unattached) = gateway_targets(&gws, &devices, &ports);
            for u in &unattached {
                tracing::debug!(device = %u.device, "{}", u.message);
            }
            targets = Some(computed);
        }
        let pass = Pass {
            gateways: &all,
            targets: targets.as_ref().expect("computed above"),
            secrets: &secrets,
            secret_namespace: &secret_namespace,
        };
        one_pass(&api, &pass, &tls_dir, &mut fleet, &mut written).await;
    }
    fleet.stop_all();
    forwarder.abort();
    let _ = std::fs::remove_dir_all(&tls_dir);
}

/// Changes of the cluster (devices, TunnelPorts, VtepGateways, Secrets): a wake-up, and a
/// mark that stays until a pass takes it — the wake-up alone can be taken by the gathering
/// of a pass that a writer's observation started, and its news with it.
#[derive(Default)]
struct ClusterChanges {
    notify: Notify,
    changed: AtomicBool,
}

impl ClusterChanges {
    fn mark(&self) {
        self.changed.store(true, Ordering::SeqCst);
        self.notify.notify_one();
    }

    /// Whether the cluster changed since the last call.
    fn take(&self) -> bool {
        self.changed.swap(false, Ordering::SeqCst)
    }
}

/// Waits for the next pass: a cluster change, a writer's observation (`wake`), a leadership
/// change or the resync, then gathers a burst ([`gather_burst`]). `Some(true)` when the
/// targets must be recomputed, `None` when the loop must end.
async fn next_pass(
    cluster: &ClusterChanges,
    wake: &Notify,
    leader: &mut watch::Receiver<bool>,
    cancel: &CancellationToken,
) -> Option<bool> {
    let idle_since = tokio::time::Instant::now();
    let replan = tokio::select! {
        _ = cancel.cancelled() => return None,
        _ = cluster.notify.notified() => false,
        _ = wake.notified() => false,
        r = leader.changed() => if r.is_err() { return None } else { true },
        _ = tokio::time::sleep(RESYNC) => true,
    };
    // Gathered on the wake-up alone: the mark keeps what the gathering takes up.
    if !gather_burst(&cluster.notify, idle_since, DEBOUNCE, DEBOUNCE_MAX, cancel).await {
        return None;
    }
    Some(replan | cluster.take())
}

async fn one_pass(
    api: &Api<VtepGateway>,
    pass: &Pass<'_>,
    tls_dir: &Path,
    fleet: &mut Fleet,
    written: &mut BTreeMap<String, crate::api::VtepGatewayStatus>,
) {
    let gateways: Vec<&VtepGateway> = pass.gateways.iter().map(|g| &**g).collect();
    let targets = pass.targets;
    let mut keep = BTreeSet::new();
    for gw in &gateways {
        let name = gw.name_any();
        let Some(target) = targets.get(&name) else {
            continue;
        };
        let deleting = gw.metadata.deletion_timestamp.is_some();
        let has_finalizer = gw.finalizers().iter().any(|f| f == GATEWAY_FINALIZER);
        if deleting && !has_finalizer {
            continue;
        }
        if !deleting
            && !has_finalizer
            && let Err(e) = set_finalizer(api, gw, true).await
        {
            tracing::warn!(gateway = %name, error = %e, "cannot add the cleanup finalizer");
            continue;
        }
        let tls = target.tls_secret.as_deref().map(|secret| {
            let key = reflector::ObjectRef::<Secret>::new(secret).within(pass.secret_namespace);
            match pass.secrets.get(&key) {
                Some(s) => write_tls(tls_dir, &name, &s),
                None => Err("not found in the controller's namespace".to_string()),
            }
        });
        let decision = want(target, tls);
        let blocked = match decision {
            Want::Run(config) => {
                // Deleting: the empty state takes every row of ours off the switch.
                let desired = if deleting {
                    Default::default()
                } else {
                    target.desired()
                };
                fleet.set(&name, config, Some(desired));
                keep.insert(name.clone());
                None
            }
            Want::Blocked(b) => Some(b),
        };
        let observed = fleet.observed(&name);
        if deleting {
            let clean = blocked.is_some()
                || observed
                    .as_ref()
                    .is_some_and(|o| o.connected && o.in_sync && o.managed.is_empty());
            if clean {
                match set_finalizer(api, gw, false).await {
                    Ok(()) => {
                        fleet.stop(&name);
                        keep.remove(&name);
                    }
                    Err(e) => {
                        tracing::warn!(gateway = %name, error = %e, "cannot remove the finalizer")
                    }
                }
            }
            continue;
        }
        let status = gateway_status(
            gw,
            target,
            blocked.as_ref(),
            observed.as_ref(),
            Timestamp::now(),
        );
        let stored = gw.status.as_ref();
        if stored != Some(&status) && written.get(&name) != Some(&status) {
            let params = PatchParams::apply(crate::api::MANAGER).force();
            let body = crate::api::status_apply::<VtepGateway>(&status);
            match api.patch_status(&name, &params, &body).await {
                Ok(_) => {
                    written.insert(name.clone(), status);
                }
                Err(e) => {
                    tracing::warn!(gateway = %name, error = %e, "cannot write gateway status")
                }
            }
        } else if stored == Some(&status) {
            written.insert(name.clone(), status);
        }
    }
    fleet.retain(&keep);
    written.retain(|n, _| keep.contains(n));
}

/// Adds or removes our finalizer, guarded by the object's resourceVersion so another
/// writer's finalizer list is never overwritten.
async fn set_finalizer(api: &Api<VtepGateway>, gw: &VtepGateway, on: bool) -> kube::Result<()> {
    let mut finalizers: Vec<String> = gw
        .finalizers()
        .iter()
        .filter(|f| *f != GATEWAY_FINALIZER)
        .cloned()
        .collect();
    if on {
        finalizers.push(GATEWAY_FINALIZER.to_string());
    }
    let patch = json!({
        "metadata": {
            "resourceVersion": gw.resource_version(),
            "finalizers": finalizers,
        }
    });
    api.patch(
        &gw.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    #[tokio::test(start_paused = true)]
    async fn a_cluster_change_gathered_behind_an_observation_still_replans() {
        use tokio::time::{Instant, sleep};
        let cancel = CancellationToken::new();
        let (_tx, mut leader) = watch::channel(true);
        let (cluster, wake) = (ClusterChanges::default(), Notify::new());
        // (ms before the observation, ms after it until the cluster change or none)
        // → (targets recomputed, ms until the pass)
        let cases = [
            (0, Some(5), (true, 25)),
            (0, None, (false, 20)),
            (30, None, (false, 30)),
        ];
        for (quiet_first, change_after, (replan, pass_at)) in cases {
            let started = Instant::now();
            let steer = async {
                sleep(Duration::from_millis(quiet_first)).await;
                wake.notify_one();
                if let Some(after) = change_after {
                    sleep(Duration::from_millis(after)).await;
                    cluster.mark();
                }
            };
            let (got, ()) = tokio::join!(next_pass(&cluster, &wake, &mut leader, &cancel), steer);
            assert_eq!(got, Some(replan), "{quiet_first} {change_after:?}");
            assert_eq!(started.elapsed(), Duration::from_millis(pass_at));
        }
        // A lone cluster change after a quiet spell: at once, and replanned.
        let started = Instant::now();
        let steer = async {
            sleep(Duration::from_millis(30)).await;
            cluster.mark();
        };
        let (got, ()) = tokio::join!(next_pass(&cluster, &wake, &mut leader, &cancel), steer);
        assert_eq!(got, Some(true));
        assert_eq!(started.elapsed(), Duration::from_millis(30));
        cancel.cancel();
        assert_eq!(next_pass(&cluster, &wake, &mut leader, &cancel).await, None);
    }

    #[test]
    fn want_needs_a_usable_spec_and_for_ssl_its_secret() {
        let target = GatewayTarget {
            endpoint: "ssl:192.0.2.1:6641".into(),
            switch: "tor1".into(),
            tls_secret: Some("s".into()),
            ..GatewayTarget::default()
        };
        let files = TlsFiles {
            private_key: "/k".into(),
            certificate: "/c".into(),
            ca_certificate: "/a".into(),
        };
        assert_eq!(
            want(&target, None),
            Want::Blocked(Blocked::TlsSecret("Secret s not found".into()))
        );
        assert!(matches!(
            want(&target, Some(Err("has no ca.crt".into()))),
            Want::Blocked(Blocked::TlsSecret(m)) if m == "Secret s: has no ca.crt"
        ));
        assert_eq!(
            want(&target, Some(Ok(files.clone()))),
            Want::Run(GatewayConfig {
                endpoint: "ssl:192.0.2.1:6641".into(),
                switch: "tor1".into(),
                tls: Some(files),
            })
        );
        let invalid = GatewayTarget {
            invalid: Some("spec.endpoint: bad".into()),
            ..target
        };
        assert!(matches!(
            want(&invalid, None),
            Want::Blocked(Blocked::InvalidSpec(_))
        ));
    }

    #[test]
    fn tls_material_names_the_missing_key() {
        let mut secret = Secret::default();
        assert!(tls_material(&secret).unwrap_err().contains("tls.key"));
        secret.data = Some(
            [
                (TLS_KEY.to_string(), ByteString(b"k".to_vec())),
                (TLS_CERT.to_string(), ByteString(b"c".to_vec())),
                (TLS_CA.to_string(), ByteString(Vec::new())),
            ]
            .into(),
        );
        assert!(tls_material(&secret).unwrap_err().contains("ca.crt"));
        let dir = tempfile::tempdir().unwrap();
        assert!(write_tls(dir.path(), "tor1", &secret).is_err());
        secret
            .data
            .as_mut()
            .unwrap()
            .insert(TLS_CA.into(), ByteString(b"a".to_vec()));
        let files = write_tls(dir.path(), "tor1", &secret).unwrap();
        assert_eq!(std::fs::read(&files.ca_certificate).unwrap(), b"a");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&files.private_key)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the key is readable by us only");
    }
}
