//! Benchmark of one controller pass: how much the pure decisions (diff against the caches,
//! device status) add to planning itself, measured in the same run.
//!
//! `cargo run --release --example controller_pass [nodes] [devices] [vteps]`

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, NodeAddress, NodeStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use remote_device_operator::api::{DeviceKey, RemoteDevice, RemoteDeviceSpec, TunnelType};
use remote_device_operator::controller::reconcile::decide_with_plan;
use remote_device_operator::controller::{Action, Snapshot, decide};
use remote_device_operator::planner;

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
    let samples = (0..runs)
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(f());
            start.elapsed()
        })
        .collect();
    median(samples)
}

fn main() {
    let (nodes, devices, vteps) = (arg(1, 200), arg(2, 500), arg(3, 20));
    let now = Timestamp::from_second(1_000_000).unwrap();
    let node_objs: Vec<Node> = (0..nodes)
        .map(|i| Node {
            metadata: ObjectMeta {
                name: Some(format!("node-{i}")),
                uid: Some(format!("uid-node-{i}")),
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
        })
        .collect();
    let device_objs: Vec<RemoteDevice> = (0..devices)
        .map(|i| {
            let mut d = RemoteDevice::new(
                &format!("dev-{i}"),
                RemoteDeviceSpec {
                    vtep_ip: format!("192.0.2.{}", i % vteps + 1),
                    tunnel_type: TunnelType::Vxlan,
                    vni: 5000 + i as u32,
                    mac_address: format!("52:54:00:00:{:02x}:{:02x}", i / 256, i % 256),
                    ips: vec![],
                    dst_port: None,
                    local_vlan: None,
                    node_selector: None,
                    attachment: None,
                    bfd: None,
                },
            );
            d.metadata.namespace = Some("bench".into());
            d.metadata.generation = Some(1);
            d.metadata.creation_timestamp = Some(Time(now));
            d
        })
        .collect();

    let fresh = Snapshot {
        devices: device_objs,
        nodes: node_objs,
        tunnel_ports: vec![],
    };
    // The state after the first pass went through: every write is in the caches.
    let mut settled = fresh.clone();
    for action in decide(&fresh, now).actions {
        match action {
            Action::Apply { mut port, .. } => {
                port.metadata.uid = Some("uid".into());
                port.metadata.generation = Some(1);
                settled.tunnel_ports.push(port);
            }
            Action::DeviceStatus { key, status, .. } => {
                if let Some(d) = settled.devices.iter_mut().find(|d| DeviceKey::of(d) == key) {
                    d.status = Some(status);
                }
            }
            _ => {}
        }
    }
    assert!(
        decide(&settled, now).actions.is_empty(),
        "settled state must be a no-op"
    );

    let runs = 15;
    let plan_only = time(runs, || {
        planner::plan_tunnels(&settled.devices, &settled.nodes)
    });
    let noop = time(runs, || decide(&settled, now));
    let first = time(runs, || decide(&fresh, now));
    let settled_plan = planner::plan_tunnels(&settled.devices, &settled.nodes);
    let diff_only = time(runs, || decide_with_plan(&settled, &settled_plan, now));
    let ports = settled.tunnel_ports.len();
    let mut counts = BTreeMap::new();
    for a in decide(&fresh, now).actions {
        let kind = match a {
            Action::Apply { .. } => "apply",
            Action::DeviceStatus { .. } => "status",
            _ => "other",
        };
        *counts.entry(kind).or_insert(0) += 1;
    }
    println!(
        "{nodes} nodes, {devices} devices, {vteps} VTEPs -> {ports} TunnelPorts; first pass writes {counts:?}"
    );
    println!("median of {runs} runs:");
    println!("  plan only (baseline)        {plan_only:>10.2?}");
    println!(
        "  no-op pass (plan + diff)    {noop:>10.2?}  ratio {:.2}",
        noop.as_secs_f64() / plan_only.as_secs_f64()
    );
    println!(
        "  no-op diff alone            {diff_only:>10.2?}  ratio {:.2}",
        diff_only.as_secs_f64() / plan_only.as_secs_f64()
    );
    println!(
        "  first pass (plan + diff)    {first:>10.2?}  ratio {:.2}",
        first.as_secs_f64() / plan_only.as_secs_f64()
    );
}
