//! Cluster scale on a real API server (`../shared/envtest`): N simulated nodes, each with
//! its own real OVS and agent, one controller, all under the chart's ServiceAccounts.
//!
//! `cargo bench --bench cluster -- [nodes] [devices] [vteps] [single_runs]`
//! (defaults 20 1000 100 10; needs `KUBEBUILDER_ASSETS`, etcd and helm like the envtest
//! tier — `scripts/hermetic.sh` gives it the same private namespace as the tests).
//!
//! It measures what the user waits for, from the start of `kubectl`:
//! 1. `kubectl apply -f` of `devices` RemoteDevices behind `vteps` VTEPs → every
//!    TunnelPort (nodes × VTEPs) exists with all its devices and is Ready; then checks
//!    every node's OVS holds exactly those ports with the ofports they report;
//! 2. `kubectl delete -f` of the same file → no TunnelPort left, no port in any OVS;
//! 3. `single_runs` times: one device selected onto 10 nodes → its 10 TunnelPorts Ready
//!    (each run a second after everything before it is gone).
//!
//! The baseline, measured in the same run on the same API server: the bench itself makes
//! the writes the flow cannot do without — per TunnelPort one apply, one finalizer patch
//! and one status patch, then a delete and a finalizer release — 32 at a time. The ratio
//! says how far the operator is above what the API server allows.
//!
//! It uses the binary cargo builds for it (`CARGO_BIN_EXE_…`), hence a bench, not an
//! example.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use remote_device_operator::api::{RemoteDevice, TunnelPort};
use serde_json::json;
use support::cluster::{Cluster, TENANT};
use support::envtest::Options;

const LIMIT: Duration = Duration::from_secs(900);
const FLOOR_IN_FLIGHT: usize = 32;
const FLOOR_FINALIZER: &str = "bench.remotedevice.io/floor";

struct Shape {
    nodes: usize,
    devices: usize,
    vteps: usize,
    single_runs: usize,
}

fn shape() -> Shape {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .map(|a| {
            a.parse()
                .expect("numeric arguments: nodes devices vteps single_runs")
        })
        .collect();
    let at = |i: usize, default: usize| args.get(i).copied().unwrap_or(default);
    Shape {
        nodes: at(0, 20),
        devices: at(1, 1000),
        vteps: at(2, 100).max(1),
        single_runs: at(3, 10),
    }
}

fn node_name(i: usize) -> String {
    format!("n{i:02}")
}

/// VTEP `v` (0-based) of the big run: 192.0.2.1 …, then 198.18.x.y beyond 200.
fn vtep(v: usize) -> String {
    if v < 200 {
        format!("192.0.2.{}", v + 1)
    } else {
        format!("198.18.{}.{}", v / 250, v % 250 + 1)
    }
}

/// The device file a user would write: devices grouped by VTEP (the ones behind one
/// top-of-rack switch together), each on its VTEP's VNI, unique MAC and IP.
fn device_file(shape: &Shape) -> String {
    let mut out = String::new();
    for i in 0..shape.devices {
        let v = i * shape.vteps / shape.devices.max(1);
        let (hi, lo) = (i / 250, i % 250 + 1);
        out.push_str(&format!(
            "---\napiVersion: remotedevice.io/v1alpha1\nkind: RemoteDevice\nmetadata:\n  name: d{i:05}\n  namespace: {TENANT}\nspec:\n  vtepIP: {}\n  vni: {}\n  macAddress: \"52:54:00:10:{hi:02x}:{lo:02x}\"\n  ips: [\"10.30.{hi}.{lo}\"]\n",
            vtep(v),
            5000 + v
        ));
    }
    out
}

/// Devices behind each VTEP in [`device_file`].
fn devices_per_vtep(shape: &Shape) -> BTreeMap<String, usize> {
    let mut per = BTreeMap::new();
    for i in 0..shape.devices {
        *per.entry(vtep(i * shape.vteps / shape.devices.max(1)))
            .or_default() += 1;
    }
    per
}

/// A watch of every TunnelPort, as the user's `kubectl get tunnelports -w` sees them.
fn watch_tunnel_ports(client: kube::Client) -> Store<TunnelPort> {
    let (store, writer) = reflector::store();
    let stream = reflector::reflector(
        writer,
        watcher(Api::<TunnelPort>::all(client), watcher::Config::default()),
    )
    .default_backoff()
    .touched_objects();
    tokio::spawn(async move {
        futures::pin_mut!(stream);
        while stream.next().await.is_some() {}
    });
    store
}

fn ready(tp: &TunnelPort) -> bool {
    let generation = tp.metadata.generation;
    tp.metadata.deletion_timestamp.is_none()
        && tp.status.as_ref().is_some_and(|s| {
            s.conditions.iter().any(|c| {
                c.type_ == "Ready" && c.status == "True" && c.observed_generation == generation
            })
        })
}

/// Counts of the watched TunnelPorts against the wanted (node, VTEP → devices).
#[derive(Default, Debug)]
struct Tally {
    /// Wanted ports complete, and whether Ready, by name.
    seen: Vec<(String, bool)>,
    /// Wanted ports that exist with all their devices.
    complete: usize,
    /// Of those, Ready for their generation.
    ready: usize,
    /// Ports that are not wanted.
    unwanted: usize,
}

fn tally(store: &Store<TunnelPort>, want: &BTreeMap<(String, String), usize>) -> Tally {
    let mut t = Tally::default();
    for tp in store.state() {
        let key = (tp.spec.node_name.clone(), tp.spec.remote_ip.clone());
        match want.get(&key) {
            Some(&n) if tp.spec.devices.len() == n => {
                t.complete += 1;
                t.ready += usize::from(ready(&tp));
                t.seen.push((tp.name_any(), ready(&tp)));
            }
            Some(_) => {}
            None => t.unwanted += 1,
        }
    }
    t
}

/// Milestones of one wait, measured from `start`.
#[derive(Default, Debug)]
struct Milestones {
    first_complete: Option<Duration>,
    all_complete: Option<Duration>,
    all_ready: Option<Duration>,
    /// Per port: from complete (all its devices) to Ready, as the watch showed it.
    complete_to_ready: Vec<Duration>,
}

impl Milestones {
    /// "p50 …, p90 …, max …" of the ports' complete → Ready times (the agents' share).
    fn agents_share(&self) -> String {
        let mut v = self.complete_to_ready.clone();
        if v.is_empty() {
            return "-".into();
        }
        v.sort();
        let at = |q: f64| v[((v.len() - 1) as f64 * q) as usize];
        format!(
            "p50 {:.2} s, p90 {:.2} s, max {:.2} s",
            at(0.5).as_secs_f64(),
            at(0.9).as_secs_f64(),
            at(1.0).as_secs_f64()
        )
    }
}

async fn wait_ready(
    store: &Store<TunnelPort>,
    want: &BTreeMap<(String, String), usize>,
    start: Instant,
    tick: Duration,
) -> Milestones {
    let mut m = Milestones::default();
    let mut completed: BTreeMap<String, Duration> = BTreeMap::new();
    let mut readied: BTreeMap<String, Duration> = BTreeMap::new();
    loop {
        let t = tally(store, want);
        let now = start.elapsed();
        for (name, is_ready) in &t.seen {
            let done = *completed.entry(name.clone()).or_insert(now);
            if *is_ready && !readied.contains_key(name) {
                readied.insert(name.clone(), now);
                m.complete_to_ready.push(now - done);
            }
        }
        if t.complete > 0 {
            m.first_complete.get_or_insert(now);
        }
        if t.complete == want.len() {
            m.all_complete.get_or_insert(now);
        }
        if t.ready == want.len() && t.unwanted == 0 {
            m.all_ready = Some(now);
            return m;
        }
        assert!(
            start.elapsed() < LIMIT,
            "not converged after {LIMIT:?}: {t:?} of {}",
            want.len()
        );
        tokio::time::sleep(tick).await;
    }
}

/// `kubectl apply -f file`, timed from its start, while the watch waits (checking every
/// `tick`) until `want` is Ready: how long kubectl took, and the milestones.
async fn apply_and_wait(
    cluster: &Cluster,
    store: &Store<TunnelPort>,
    want: &BTreeMap<(String, String), usize>,
    file: &str,
    tick: Duration,
) -> (Duration, Milestones) {
    let start = Instant::now();
    let watching = {
        let (store, want) = (store.clone(), want.clone());
        tokio::spawn(async move { wait_ready(&store, &want, start, tick).await })
    };
    let took = kubectl(cluster, &["apply", "-f", file]).await;
    (took, watching.await.expect("the wait"))
}

async fn wait_gone(store: &Store<TunnelPort>, start: Instant, tick: Duration) -> Duration {
    loop {
        if store.state().is_empty() {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < LIMIT,
            "TunnelPorts still there after {LIMIT:?}"
        );
        tokio::time::sleep(tick).await;
    }
}

/// Every node's owned tunnel ports in its OVS: name → ofport (one `ovs-vsctl` per node).
fn ovs_ports(cluster: &Cluster) -> BTreeMap<String, BTreeMap<String, i64>> {
    cluster
        .nodes
        .iter()
        .map(|(name, rig)| {
            let out = rig
                .sandbox
                .vsctl(&[
                    "--format=csv",
                    "--data=bare",
                    "--no-headings",
                    "--columns=name,ofport",
                    "list",
                    "Interface",
                ])
                .unwrap_or_default();
            let ports = out
                .lines()
                .filter_map(|l| {
                    let (n, p) = l.split_once(',')?;
                    n.starts_with("rd")
                        .then(|| (n.to_string(), p.trim().parse().unwrap_or(-1)))
                })
                .collect();
            (name.clone(), ports)
        })
        .collect()
}

/// Every TunnelPort is in its node's OVS with the ofport it reports, and nothing else is.
fn check_ovs(cluster: &Cluster, store: &Store<TunnelPort>) {
    let mut want: BTreeMap<String, BTreeMap<String, i64>> = cluster
        .nodes
        .keys()
        .map(|n| (n.clone(), BTreeMap::new()))
        .collect();
    for tp in store.state() {
        let status = tp.status.as_ref().expect("a status");
        want.entry(tp.spec.node_name.clone()).or_default().insert(
            status.interface_name.clone().expect("an interface"),
            status.ofport.expect("an ofport"),
        );
    }
    let have = ovs_ports(cluster);
    assert_eq!(have, want, "OVS differs from what the TunnelPorts report");
}

async fn kubectl(cluster: &Cluster, args: &[&str]) -> Duration {
    let start = Instant::now();
    let out = tokio::process::Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", cluster.cp.admin_kubeconfig())
        .output()
        .await
        .expect("kubectl runs");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    start.elapsed()
}

/// Lines of the controllers' logs containing `text`.
fn controller_lines(cluster: &Cluster, text: &str) -> usize {
    cluster
        .log_lines(text)
        .iter()
        .filter(|l| l.starts_with("controller-"))
        .count()
}

fn secs(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| format!("{:.2} s", d.as_secs_f64()))
}

/// The API server's floor for the flow's necessary writes, `count` TunnelPorts' worth.
async fn floor(client: &kube::Client, shape: &Shape) -> (Duration, Duration) {
    let api: Api<TunnelPort> = Api::all(client.clone());
    let per_vtep = devices_per_vtep(shape);
    let mut bodies = Vec::new();
    for n in 0..shape.nodes {
        for (v, (ip, count)) in per_vtep.iter().enumerate() {
            let name = format!("floor-{n:02}.vxlan.{}", ip.replace('.', "-"));
            let devices: Vec<_> = (0..*count)
                .map(|d| {
                    json!({"namespace": TENANT, "name": format!("f{v}-{d}"),
                "macAddress": format!("52:54:00:20:{:02x}:{:02x}", v % 256, d % 256),
                "vni": 5000 + v, "ips": [format!("10.40.{}.{}", v % 250, d % 250 + 1)]})
                })
                .collect();
            bodies.push((
                name.clone(),
                json!({
                    "apiVersion": "remotedevice.io/v1alpha1", "kind": "TunnelPort",
                    "metadata": {"name": name},
                    "spec": {"nodeName": format!("floor-{n:02}"), "remoteIP": ip,
                             "tunnelType": "vxlan", "localIP": format!("198.51.100.{}", n + 1),
                             "devices": devices}
                }),
            ));
        }
    }
    let ssa = PatchParams::apply("bench-floor").force();
    let merge = PatchParams::default();
    let start = Instant::now();
    futures::stream::iter(bodies.iter().map(|(name, body)| {
        let (api, ssa, merge) = (&api, &ssa, &merge);
        async move {
            api.patch(name, ssa, &Patch::Apply(body))
                .await
                .expect("floor apply");
            let fin = json!({"metadata": {"finalizers": [FLOOR_FINALIZER]}});
            api.patch(name, merge, &Patch::Merge(&fin))
                .await
                .expect("floor finalizer");
            let status = json!({"apiVersion": "remotedevice.io/v1alpha1", "kind": "TunnelPort",
                "status": {"interfaceName": "rdfloor", "ofport": 1}});
            api.patch_status(name, ssa, &Patch::Apply(&status))
                .await
                .expect("floor status");
        }
    }))
    .buffer_unordered(FLOOR_IN_FLIGHT)
    .collect::<Vec<()>>()
    .await;
    let up = start.elapsed();
    let start = Instant::now();
    futures::stream::iter(bodies.iter().map(|(name, _)| {
        let (api, merge) = (&api, &merge);
        async move {
            api.delete(name, &DeleteParams::default())
                .await
                .expect("floor delete");
            let fin = json!({"metadata": {"finalizers": null}});
            api.patch(name, merge, &Patch::Merge(&fin))
                .await
                .expect("floor release");
        }
    }))
    .buffer_unordered(FLOOR_IN_FLIGHT)
    .collect::<Vec<()>>()
    .await;
    (up, start.elapsed())
}

fn rss_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// CPU seconds used so far by every live process of this (private) PID namespace, by
/// component: the controller (by pid), the agents, and the rest by command name.
fn cpu_by_component(controller: u32) -> BTreeMap<String, f64> {
    let tick = 100.0; // USER_HZ on Linux
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = &stat[open + 1..close];
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        let used = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        // utime and stime are fields 14 and 15 of the line, 11 and 12 after the comm.
        let seconds = (used(11) + used(12)) / tick;
        let component = if pid == controller {
            "controller".to_string()
        } else if comm.starts_with("remote-device") {
            "agents".to_string()
        } else if pid == std::process::id() {
            "bench (watch, kubectl waits)".to_string()
        } else {
            comm.to_string()
        };
        *out.entry(component).or_default() += seconds;
    }
    out
}

/// CPU used between two [`cpu_by_component`] readings, largest first.
fn cpu_spent(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> String {
    let spent = grown(before, after, |_, v| v >= 0.05);
    let list: Vec<String> = spent.iter().map(|(k, v)| format!("{k} {v:.1}")).collect();
    list.join(", ")
}

/// What grew from `before` to `after`, kept where `keep` says, largest first.
fn grown<'a>(
    before: &BTreeMap<String, f64>,
    after: &'a BTreeMap<String, f64>,
    keep: impl Fn(&str, f64) -> bool,
) -> Vec<(&'a String, f64)> {
    let mut grown: Vec<(&String, f64)> = after
        .iter()
        .map(|(k, v)| (k, v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(k, v)| keep(k, *v))
        .collect();
    grown.sort_by(|a, b| b.1.total_cmp(&a.1));
    grown
}

/// The API server's own request counts (`apiserver_request_total`) by verb, resource and
/// subresource.
async fn api_requests(client: &kube::Client) -> BTreeMap<String, f64> {
    let request = http::Request::get("/metrics")
        .body(Vec::new())
        .expect("a request");
    let text = client.request_text(request).await.unwrap_or_default();
    let mut out = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
    {
        let (Some(open), Some((labels, value))) = (line.find('{'), line.rsplit_once(' ')) else {
            continue;
        };
        let label = |name: &str| {
            let key = format!("{name}=\"");
            labels[open..]
                .split_once(&key)
                .and_then(|(_, rest)| rest.split_once('"'))
                .map(|(v, _)| v.to_string())
                .unwrap_or_default()
        };
        let (verb, resource, sub) = (label("verb"), label("resource"), label("subresource"));
        if verb == "WATCH" || resource.is_empty() {
            continue;
        }
        let key = if sub.is_empty() {
            format!("{verb} {resource}")
        } else {
            format!("{verb} {resource}/{sub}")
        };
        *out.entry(key).or_default() += value.parse::<f64>().unwrap_or(0.0);
    }
    out
}

/// Requests between two [`api_requests`] readings, most first.
fn requests_made(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> String {
    let made = grown(before, after, |k, v| v >= 1.0 && !k.contains("leases"));
    let total: f64 = made.iter().map(|(_, v)| v).sum();
    let list: Vec<String> = made.iter().map(|(k, v)| format!("{k} {v:.0}")).collect();
    format!("{total:.0} ({})", list.join(", "))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let shape = shape();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(run(shape));
}

async fn run(shape: Shape) {
    let wall = Instant::now();
    let options = Options {
        controller_manager: true,
    };
    let Some(mut cluster) = Cluster::start(options).await else {
        eprintln!("bench cluster: no KUBEBUILDER_ASSETS (see ../shared/envtest); nothing measured");
        std::process::exit(2);
    };
    println!(
        "cluster bench: {} nodes, {} devices behind {} VTEPs → {} TunnelPorts",
        shape.nodes,
        shape.devices,
        shape.vteps,
        shape.nodes * shape.vteps.min(shape.devices)
    );
    let single_nodes = 10.min(shape.nodes);
    for i in 1..=shape.nodes {
        let labels: &[(&str, &str)] = if i <= single_nodes {
            &[("bench", "ten")]
        } else {
            &[]
        };
        cluster
            .add_node(&node_name(i), labels, &format!("198.51.100.{i}"))
            .await;
    }
    let store = watch_tunnel_ports(cluster.admin.clone());
    let dir = cluster.cp.dir.path().to_path_buf();
    let file = dir.join("devices.yaml");
    std::fs::write(&file, device_file(&shape)).expect("device file");
    let file = file.to_string_lossy().to_string();
    println!(
        "set up in {:.1} s (control plane, {} OVS and agents)",
        wall.elapsed().as_secs_f64(),
        shape.nodes
    );

    // Idle: the agents with no tunnel.
    let idle = Duration::from_secs(5);
    let cpu0 = cpu_by_component(0);
    tokio::time::sleep(idle).await;
    println!(
        "idle {idle:?}, no tunnel: CPU s {}",
        cpu_spent(&cpu0, &cpu_by_component(0))
    );

    // Baseline: kubectl alone, before any controller runs.
    let kubectl_alone = kubectl(&cluster, &["apply", "-f", &file]).await;
    let kubectl_alone_delete = kubectl(&cluster, &["delete", "-f", &file, "--wait=false"]).await;
    println!(
        "baseline: kubectl apply -f of {} devices with no controller running {:.2} s, delete {:.2} s",
        shape.devices,
        kubectl_alone.as_secs_f64(),
        kubectl_alone_delete.as_secs_f64()
    );

    let devices: Api<RemoteDevice> = Api::namespaced(cluster.admin.clone(), TENANT);
    while !devices
        .list(&Default::default())
        .await
        .expect("list devices")
        .items
        .is_empty()
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    cluster.start_controller("controller-a").await;
    let leading = Instant::now();
    while controller_lines(&cluster, "became the leader") == 0 {
        assert!(leading.elapsed() < Duration::from_secs(60), "no leader");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let controller_pid = cluster.controllers["controller-a"].pid();

    // Baseline: the necessary writes alone.
    let (floor_up, floor_down) = floor(&cluster.admin, &shape).await;
    wait_gone(&store, Instant::now(), Duration::from_millis(20)).await;

    // 1. apply.
    let want: BTreeMap<(String, String), usize> = (1..=shape.nodes)
        .flat_map(|n| {
            devices_per_vtep(&shape)
                .into_iter()
                .map(move |(ip, count)| ((node_name(n), ip), count))
        })
        .collect();
    let applies_before = controller_lines(&cluster, "applied TunnelPort");
    let cpu0 = cpu_by_component(controller_pid);
    let requests0 = api_requests(&cluster.admin).await;
    let (kubectl_apply, up) =
        apply_and_wait(&cluster, &store, &want, &file, Duration::from_millis(20)).await;
    let cpu_up = cpu_spent(&cpu0, &cpu_by_component(controller_pid));
    let requests_up = requests_made(&requests0, &api_requests(&cluster.admin).await);
    check_ovs(&cluster, &store);
    let applies = controller_lines(&cluster, "applied TunnelPort") - applies_before;
    let statuses = controller_lines(&cluster, "wrote RemoteDevice status");
    let ready_at = up.all_ready.expect("ready");
    println!(
        "\n1. kubectl apply -f ({} devices) → {} TunnelPorts Ready and in OVS",
        shape.devices,
        want.len()
    );
    println!(
        "   kubectl apply returned            {:>9}",
        secs(Some(kubectl_apply))
    );
    println!(
        "   first TunnelPort complete         {:>9}",
        secs(up.first_complete)
    );
    println!(
        "   all TunnelPorts complete (ctrl)   {:>9}",
        secs(up.all_complete)
    );
    println!(
        "   all Ready, OVS checked            {:>9}   target ≤ 15 s: {}",
        secs(Some(ready_at)),
        verdict(ready_at <= Duration::from_secs(15))
    );
    println!(
        "   controller applies                {applies:>9}   ({} TunnelPorts)",
        want.len()
    );
    println!("   device status writes              {statuses:>9}");
    println!(
        "   kubectl alone (no controller) took {:.2} s: kubectl here {:.2}× that",
        kubectl_alone.as_secs_f64(),
        kubectl_apply.as_secs_f64() / kubectl_alone.as_secs_f64()
    );
    println!(
        "   all Ready after kubectl returned  {:>9}   (target ≤ 15 s read this way: {})",
        secs(Some(ready_at.saturating_sub(kubectl_apply))),
        verdict(ready_at.saturating_sub(kubectl_apply) <= Duration::from_secs(15))
    );
    println!("   per port, complete → Ready        {}", up.agents_share());
    println!("   CPU s while converging: {cpu_up}");
    println!("   API requests (not watches, leases): {requests_up}");
    println!(
        "   baseline: {} × (apply + finalizer + status) by the bench, {FLOOR_IN_FLIGHT} in flight: {:.2} s → ratio {:.2}×",
        want.len(),
        floor_up.as_secs_f64(),
        ready_at.as_secs_f64() / floor_up.as_secs_f64()
    );

    // 2. delete.
    // Idle: every node with its tunnels, nothing changing.
    let cpu0 = cpu_by_component(controller_pid);
    tokio::time::sleep(idle).await;
    println!(
        "\nidle {idle:?} with {} tunnels per node: CPU s {}",
        shape.vteps,
        cpu_spent(&cpu0, &cpu_by_component(controller_pid))
    );

    let cpu0 = cpu_by_component(controller_pid);
    let requests0 = api_requests(&cluster.admin).await;
    let start = Instant::now();
    let kubectl_delete = kubectl(&cluster, &["delete", "-f", &file, "--wait=false"]).await;
    let gone = wait_gone(&store, start, Duration::from_millis(20)).await;
    let ovs_gone = loop {
        if ovs_ports(&cluster).values().all(BTreeMap::is_empty) {
            break start.elapsed();
        }
        assert!(start.elapsed() < LIMIT, "OVS ports left");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let cpu_down = cpu_spent(&cpu0, &cpu_by_component(controller_pid));
    let requests_down = requests_made(&requests0, &api_requests(&cluster.admin).await);
    println!("\n2. kubectl delete -f → every TunnelPort and OVS port gone");
    println!(
        "   kubectl delete returned           {:>9}",
        secs(Some(kubectl_delete))
    );
    println!(
        "   all TunnelPorts gone              {:>9}   target ≤ 15 s: {}",
        secs(Some(gone)),
        verdict(gone <= Duration::from_secs(15))
    );
    println!(
        "   all OVS ports gone (checked)      {:>9}",
        secs(Some(ovs_gone))
    );
    println!(
        "   baseline: {} × (delete + finalizer release) by the bench: {:.2} s → ratio {:.2}×",
        want.len(),
        floor_down.as_secs_f64(),
        gone.as_secs_f64() / floor_down.as_secs_f64()
    );
    println!("   CPU s until gone: {cpu_down}");
    println!("   API requests (not watches, leases): {requests_down}");

    // 3. one device onto 10 nodes.
    let mut from_kubectl = Vec::new();
    let mut from_return = Vec::new();
    for r in 0..shape.single_runs {
        // The device meets a settled cluster, as a user's would: the echoes of what came
        // before (the bulk delete, the previous run's device) are over.
        tokio::time::sleep(SETTLE_BETWEEN_SINGLE_RUNS).await;
        let ip = format!("203.0.113.{}", r + 1);
        let path = dir.join(format!("single-{r}.yaml"));
        std::fs::write(&path, format!(
            "apiVersion: remotedevice.io/v1alpha1\nkind: RemoteDevice\nmetadata:\n  name: single-{r}\n  namespace: {TENANT}\nspec:\n  vtepIP: {ip}\n  vni: 7000\n  macAddress: \"52:54:00:30:00:{r:02x}\"\n  ips: [\"10.50.0.{}\"]\n  nodeSelector:\n    matchLabels:\n      bench: ten\n", r + 1)).expect("file");
        let path = path.to_string_lossy().to_string();
        let want: BTreeMap<(String, String), usize> = (1..=single_nodes)
            .map(|n| ((node_name(n), ip.clone()), 1))
            .collect();
        let (returned, m) =
            apply_and_wait(&cluster, &store, &want, &path, Duration::from_millis(2)).await;
        let took = m.all_ready.expect("ready");
        from_kubectl.push(took);
        from_return.push(took.saturating_sub(returned));
        kubectl(&cluster, &["delete", "-f", &path, "--wait=false"]).await;
        wait_gone(&store, Instant::now(), Duration::from_millis(10)).await;
    }
    if !from_kubectl.is_empty() {
        let p50 = median(from_kubectl.clone());
        println!(
            "\n3. one device onto {single_nodes} nodes, {} runs → {single_nodes} TunnelPorts Ready",
            shape.single_runs
        );
        println!(
            "   p50 from kubectl start            {:>9}   target ≤ 300 ms: {}",
            format!("{} ms", p50.as_millis()),
            verdict(p50 <= Duration::from_millis(300))
        );
        println!(
            "   p50 from kubectl's return         {:>9}",
            format!("{} ms", median(from_return).as_millis())
        );
        println!(
            "   max from kubectl start            {:>9}",
            format!("{} ms", from_kubectl.iter().max().unwrap().as_millis())
        );
    }
    println!(
        "\ncontroller VmHWM {} MB, VmRSS {} MB; whole bench {:.0} s",
        rss_kb(controller_pid, "VmHWM:") / 1024,
        rss_kb(controller_pid, "VmRSS:") / 1024,
        wall.elapsed().as_secs_f64()
    );
    keep_logs();
}

/// Copies every component's log to `$RDO_BENCH_LOGS` (when set), for reading afterwards:
/// the private TMPDIR of `scripts/hermetic.sh` goes with its namespace. The components log
/// at `info`, or at `$RDO_BENCH_RUST_LOG` (e.g. `info,remote_device_operator=debug`).
fn keep_logs() {
    let (Some(to), Some(from)) = (
        std::env::var_os("RDO_BENCH_LOGS"),
        std::env::var_os("TMPDIR"),
    ) else {
        return;
    };
    let status = std::process::Command::new("cp")
        .arg("-r")
        .arg(&from)
        .arg(&to)
        .status();
    eprintln!("logs copied to {}: {status:?}", to.to_string_lossy());
}

/// Pause before each single-device run: a second is far longer than any echo of what came
/// before takes here (~100 ms), and short against a user's pace.
const SETTLE_BETWEEN_SINGLE_RUNS: Duration = Duration::from_secs(1);

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}
