//! Benchmark of one controller pass (plan + diff + device statuses), pure: no API server.
//! Prints the first pass, a no-op pass, a one-device change (planning alone and the whole
//! pass) and the process's memory, each against a baseline measured in the same run
//! (cloning the inputs, as the caches' snapshot does every pass) and against the targets.
//!
//! `cargo run --release --example controller_pass [nodes] [devices] [vteps] [selector_every] [runs]`
//!
//! `selector_every` = k > 0 gives every k-th device a node selector (`rack=rN`, nodes are
//! spread over 4 racks); 0 = no selectors.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, NodeAddress, NodeStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use remote_device_operator::api::{DeviceKey, RemoteDevice, RemoteDeviceSpec, TunnelType};
use remote_device_operator::controller::{Action, Snapshot, decide, decide_with_plan};
use remote_device_operator::planner::{self, Planner};

/// Issue 11's targets.
const PASS_TARGET: Duration = Duration::from_secs(1);
const CHANGE_PLAN_TARGET: Duration = Duration::from_millis(50);
const RSS_TARGET_MB: f64 = 300.0;
const RACKS: usize = 4;

fn arg(n: usize, default: usize) -> usize {
    std::env::args()
        .nth(n)
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> Duration {
    time_from(runs, &mut (), |_| {}, |_| f())
}

/// Median time of `f` on `state`, each run after an untimed `reset` of it.
fn time_from<S, T>(
    runs: usize,
    state: &mut S,
    mut reset: impl FnMut(&mut S),
    mut f: impl FnMut(&mut S) -> T,
) -> Duration {
    let samples = (0..runs)
        .map(|_| {
            reset(state);
            let start = Instant::now();
            std::hint::black_box(f(state));
            start.elapsed()
        })
        .collect();
    median(samples)
}

/// VmHWM and VmRSS of this process, in MB.
fn memory_mb() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

fn node(i: usize) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(format!("node-{i}")),
            uid: Some(format!("uid-node-{i}")),
            labels: Some(BTreeMap::from([(
                "rack".to_string(),
                format!("r{}", i % RACKS),
            )])),
            ..ObjectMeta::default()
        },
        status: Some(NodeStatus {
            addresses: Some(vec![NodeAddress {
                type_: "InternalIP".into(),
                address: format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256 + 1),
            }]),
            ..NodeStatus::default()
        }),
        ..Node::default()
    }
}

fn device(i: usize, vteps: usize, selector_every: usize, now: Timestamp) -> RemoteDevice {
    let node_selector =
        (selector_every > 0 && i.is_multiple_of(selector_every)).then(|| LabelSelector {
            match_labels: Some(BTreeMap::from([(
                "rack".to_string(),
                format!("r{}", (i / selector_every) % RACKS),
            )])),
            ..LabelSelector::default()
        });
    let mut d = RemoteDevice::new(
        &format!("dev-{i}"),
        RemoteDeviceSpec {
            vtep_ip: format!("192.0.{}.{}", 2 + (i % vteps) / 250, (i % vteps) % 250 + 1),
            tunnel_type: TunnelType::Vxlan,
            vni: 5000 + i as u32,
            mac_address: format!(
                "52:54:00:{:02x}:{:02x}:{:02x}",
                i / 65536,
                (i / 256) % 256,
                i % 256
            ),
            ips: vec![],
            dst_port: None,
            local_vlan: None,
            node_selector,
            attachment: None,
            bfd: None,
        },
    );
    d.metadata.namespace = Some("bench".into());
    d.metadata.generation = Some(1);
    d.metadata.creation_timestamp = Some(Time(now));
    d
}

/// The caches after `snapshot`'s writes went through (`snapshot` holds no TunnelPorts).
fn settle(snapshot: &Snapshot, now: Timestamp) -> Snapshot {
    let mut settled = snapshot.clone();
    let index: HashMap<DeviceKey, usize> = settled
        .devices
        .iter()
        .enumerate()
        .map(|(i, d)| (DeviceKey::of(d), i))
        .collect();
    for action in decide(snapshot, now).actions {
        match action {
            Action::Apply { port, .. } => {
                let mut port = Arc::unwrap_or_clone(port);
                port.metadata.uid = Some("uid".into());
                port.metadata.generation = Some(1);
                // One Apply per TunnelPort name in a pass: a plain push keeps this linear.
                settled.tunnel_ports.push(port);
            }
            Action::DeviceStatus { key, status, .. } => {
                if let Some(&i) = index.get(&key) {
                    settled.devices[i].status = Some(status);
                }
            }
            _ => {}
        }
    }
    settled
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

fn verdict(ok: bool) -> &'static str {
    if ok { "ok" } else { "MISSED" }
}

fn main() {
    let (nodes, devices, vteps) = (arg(1, 200), arg(2, 500), arg(3, 20));
    let (selector_every, runs) = (arg(4, 0), arg(5, 5).max(1));
    let now = Timestamp::from_second(1_000_000).unwrap();
    let fresh = Snapshot {
        devices: (0..devices)
            .map(|i| device(i, vteps, selector_every, now))
            .collect(),
        nodes: (0..nodes).map(node).collect(),
        tunnel_ports: vec![],
    };
    // VmRSS after each step, so the peak can be read apart.
    let mut steps = vec![("inputs", memory_mb().1)];
    let start = Instant::now();
    let first_actions = decide(&fresh, now).actions;
    let first_once = start.elapsed();
    steps.push(("first pass's writes held", memory_mb().1));
    let mut counts = BTreeMap::new();
    for a in &first_actions {
        let kind = match a {
            Action::Apply { .. } => "apply",
            Action::DeviceStatus { .. } => "status",
            _ => "other",
        };
        *counts.entry(kind).or_insert(0) += 1;
    }
    drop(first_actions);
    let settled = settle(&fresh, now);
    assert!(
        decide(&settled, now).actions.is_empty(),
        "settled state must be a no-op"
    );
    steps.push(("settled snapshot", memory_mb().1));
    // One device changes (a new IP): one TunnelPort list per node changes.
    let mut changed = settled.clone();
    changed.devices[devices / 2].spec.ips = vec!["198.51.100.7".into()];
    changed.devices[devices / 2].metadata.generation = Some(2);
    steps.push(("+ its changed copy", memory_mb().1));

    let clone_inputs = time(runs, || settled.clone());
    // The controller keeps one planner across passes (what the targets are about); a
    // fresh one is the cost of a pass that has nothing to go on, e.g. after a restart.
    let plan = |p: &mut Planner, s: &Snapshot| p.plan(&s.devices, &s.nodes, &s.tunnel_ports);
    let mut kept = Planner::default();
    drop(plan(&mut kept, &settled));
    steps.push(("+ the kept planner", memory_mb().1));
    let noop_plan = time(runs, || plan(&mut kept, &settled));
    let noop = time(runs, || {
        decide_with_plan(&settled, &plan(&mut kept, &settled), now)
    });
    // Every timed run is a real change: the planner is brought back to the settled
    // state, untimed, before it.
    let settle_planner = |p: &mut Planner| drop(plan(p, &settled));
    let change_plan = time_from(runs, &mut kept, settle_planner, |p| plan(p, &changed));
    let change = time_from(runs, &mut kept, settle_planner, |p| {
        decide_with_plan(&changed, &plan(p, &changed), now)
    });
    // The peak through the kept planner's passes, before a second planner is built.
    let (kept_hwm, _) = memory_mb();
    let fresh_change_plan = time(runs, || {
        planner::plan_tunnels_keeping(&changed.devices, &changed.nodes, &changed.tunnel_ports)
    });
    let change_writes = decide(&changed, now).actions.len();
    let (hwm, rss) = memory_mb();

    let ports = settled.tunnel_ports.len();
    println!(
        "{nodes} nodes, {devices} devices, {vteps} VTEPs, selector on every {selector_every}th device (0 = none) -> {ports} TunnelPorts"
    );
    println!("first pass writes {counts:?}; one-device change writes {change_writes}");
    println!("median of {runs} runs (ratio = against cloning the inputs, the baseline):");
    println!("  clone inputs (baseline)       {clone_inputs:>10.2?}");
    println!(
        "  first pass (once, cold)       {first_once:>10.2?}  ratio {:>6.2}  target {PASS_TARGET:?} {}",
        ratio(first_once, clone_inputs),
        verdict(first_once <= PASS_TARGET)
    );
    println!(
        "  no-op pass: planning          {noop_plan:>10.2?}  ratio {:>6.2}",
        ratio(noop_plan, clone_inputs)
    );
    println!(
        "  no-op pass: whole             {noop:>10.2?}  ratio {:>6.2}  target {PASS_TARGET:?} {}",
        ratio(noop, clone_inputs),
        verdict(noop <= PASS_TARGET)
    );
    println!(
        "  one-device change: planning   {change_plan:>10.2?}  ratio {:>6.2}  target {CHANGE_PLAN_TARGET:?} {}",
        ratio(change_plan, clone_inputs),
        verdict(change_plan <= CHANGE_PLAN_TARGET)
    );
    println!(
        "  one-device change: planning, fresh planner {fresh_change_plan:>10.2?}  ratio {:>6.2}",
        ratio(fresh_change_plan, clone_inputs)
    );
    println!(
        "  one-device change: whole      {change:>10.2?}  ratio {:>6.2}  target {PASS_TARGET:?} {}",
        ratio(change, clone_inputs),
        verdict(change <= PASS_TARGET)
    );
    let steps: Vec<String> = steps
        .iter()
        .map(|(what, mb)| format!("{what} {mb:.0}"))
        .collect();
    println!("  memory, VmRSS after each step (MB): {}", steps.join(", "));
    println!(
        "  memory: VmHWM {kept_hwm:.0} MB through the kept planner's passes  target {RSS_TARGET_MB} MB {}",
        verdict(kept_hwm <= RSS_TARGET_MB)
    );
    println!(
        "  memory: VmHWM {hwm:.0} MB, VmRSS {rss:.0} MB with a fresh planner's passes beside the kept one"
    );
}
