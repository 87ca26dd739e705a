//! Benchmark of the gateway side (not a timed test): `cargo run --release --example bench_vtep`.
//!
//! 1. Planning 100 VNIs × 100 node locators in one pass (planner + diff against an empty
//!    switch), target ≤ 200 ms.
//! 2. Change → committed: the writer, already in sync, gets one more node; time until the
//!    transaction is committed on a hardware_vtep ovsdb-server (the emulator's kind), target
//!    ≤ 100 ms; baseline = the same change written by one chained `vtep-ctl`.
//! 3. The full 100 × 100 state written by the writer vs. by one chained `vtep-ctl`.
//!
//! Step 1 also starts from the cluster objects the controller holds (one VtepGateway, 100
//! attached RemoteDevices, 100 TunnelPorts carrying them): `gateway_targets` is the part
//! of a controller pass that step 2's writer timing does not include.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use remote_device_operator::api::{
    GatewayAttachment, RemoteDevice, RemoteDeviceSpec, TunnelDevice, TunnelPort, TunnelPortSpec,
    TunnelType, VtepGateway, VtepGatewaySpec,
};
use remote_device_operator::vtep::{
    Attachment, GatewayConfig, GatewayInput, GatewayObserved, SegmentInput, VtepView,
    gateway_targets, plan, plan_fabric, run,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

fn node(i: u32) -> Ipv4Addr {
    Ipv4Addr::new(10, 1, (i / 250) as u8, (i % 250 + 1) as u8)
}

fn input(vnis: u32, nodes: u32) -> GatewayInput {
    (1..=vnis)
        .map(|v| {
            let seg = SegmentInput {
                attachments: vec![Attachment {
                    port: format!("p{v}"),
                    vlan: 0,
                    macs: vec![],
                }],
                node_vteps: (0..nodes).map(|n| IpAddr::V4(node(n))).collect(),
                workload_macs: vec![],
            };
            (5000 + v, seg)
        })
        .collect()
}

/// The cluster objects behind [`input`]: a gateway, one attached device per VNI, one
/// TunnelPort per node carrying every device.
fn objects(vnis: u32, nodes: u32) -> (VtepGateway, Vec<RemoteDevice>, Vec<TunnelPort>) {
    let gateway = VtepGateway::new(
        "tor1",
        VtepGatewaySpec {
            endpoint: "tcp:192.0.2.1:6640".into(),
            tls_secret_name: None,
            tunnel_ips: vec!["192.0.2.10".into()],
            physical_switch: None,
        },
    );
    let mac = |v: u32| format!("52:54:00:00:{:02x}:{:02x}", v >> 8, v & 0xff);
    let devices: Vec<RemoteDevice> = (1..=vnis)
        .map(|v| {
            let mut d = RemoteDevice::new(
                &format!("d{v}"),
                RemoteDeviceSpec {
                    vtep_ip: "192.0.2.10".into(),
                    tunnel_type: TunnelType::Vxlan,
                    vni: 5000 + v,
                    mac_address: mac(v),
                    ips: vec![],
                    dst_port: None,
                    local_vlan: None,
                    attachment: Some(GatewayAttachment {
                        port: format!("p{v}"),
                        vlan: None,
                    }),
                    node_selector: None,
                    bfd: None,
                },
            );
            d.metadata.namespace = Some("t".into());
            d
        })
        .collect();
    let carried: std::sync::Arc<Vec<TunnelDevice>> = std::sync::Arc::new(
        (1..=vnis)
            .map(|v| TunnelDevice {
                namespace: "t".into(),
                name: format!("d{v}"),
                mac_address: mac(v),
                vni: 5000 + v,
                ips: vec![],
                local_vlan: None,
            })
            .collect(),
    );
    let ports = (0..nodes)
        .map(|n| {
            TunnelPort::new(
                &format!("n{n}.vxlan.192-0-2-10"),
                TunnelPortSpec {
                    node_name: format!("n{n}"),
                    remote_ip: "192.0.2.10".into(),
                    tunnel_type: TunnelType::Vxlan,
                    dst_port: None,
                    local_ip: Some(node(n).to_string()),
                    devices: carried.clone(),
                    bfd: None,
                },
            )
        })
        .collect();
    (gateway, devices, ports)
}

fn sh(dir: &Path, program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .env("OVS_RUNDIR", dir)
        .env("OVS_LOGDIR", dir)
        .output()
        .expect(program);
    assert!(
        out.status.success(),
        "{program}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A hardware_vtep ovsdb-server with switch `tor1` and ports p1..p100, in a temp dir.
struct Server {
    dir: tempfile::TempDir,
}

impl Server {
    fn start(ports: u32) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        sh(
            dir.path(),
            "ovsdb-tool",
            &[
                "create",
                &format!("{d}/vtep.db"),
                "/usr/share/openvswitch/vtep.ovsschema",
            ],
        );
        sh(
            dir.path(),
            "ovsdb-server",
            &[
                &format!("{d}/vtep.db"),
                &format!("--remote=punix:{d}/db.sock"),
                &format!("--pidfile={d}/ovsdb-server.pid"),
                &format!("--unixctl={d}/ovsdb-server.ctl"),
                &format!("--log-file={d}/ovsdb-server.log"),
                "--detach",
                "--no-chdir",
            ],
        );
        let s = Server { dir };
        let mut args = vec!["add-ps".to_string(), "tor1".into()];
        for p in 1..=ports {
            args.extend([
                "--".into(),
                "add-port".into(),
                "tor1".into(),
                format!("p{p}"),
            ]);
        }
        s.vtep_ctl(&args.iter().map(String::as_str).collect::<Vec<_>>());
        s
    }

    fn vtep_ctl(&self, args: &[&str]) -> String {
        let db = format!("--db=unix:{}/db.sock", self.dir.path().display());
        let mut all = vec![db.as_str()];
        all.extend_from_slice(args);
        sh(self.dir.path(), "vtep-ctl", &all)
    }

    fn endpoint(&self) -> String {
        format!("unix:{}/db.sock", self.dir.path().display())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let pidfile = self.dir.path().join("ovsdb-server.pid");
        if let Ok(pid) = std::fs::read_to_string(pidfile) {
            let _ = Command::new("kill").arg(pid.trim()).output();
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The chained vtep-ctl that writes `vnis` × `nodes` (the baseline).
fn vtep_ctl_script(vnis: u32, nodes: u32, first_vni: u32) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    for v in 1..=vnis {
        let ls = format!("base-{}", first_vni + v);
        a.extend(["--", "add-ls", &ls, "--", "set", "Logical_Switch", &ls].map(String::from));
        a.push(format!("tunnel_key={}", first_vni + v));
        // VLAN 1: VLAN 0 of every port is bound by the writer already.
        a.extend(["--", "bind-ls", "tor1", &format!("p{v}"), "1", &ls].map(String::from));
        for n in 0..nodes {
            a.extend(
                [
                    "--",
                    "add-mcast-remote",
                    &ls,
                    "unknown-dst",
                    &node(n).to_string(),
                ]
                .map(String::from),
            );
        }
    }
    a
}

fn wait(rx: &mut watch::Receiver<GatewayObserved>, f: impl Fn(&GatewayObserved) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f(&rx.borrow_and_update()) {
        assert!(Instant::now() < deadline, "writer: {:?}", rx.borrow());
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    // 1. Planning.
    let server = Server::start(100);
    let big = input(100, 100);
    let t = Instant::now();
    let state = plan_fabric(&big);
    let planned = t.elapsed();
    // The switch as the writer sees it (switch + 100 ports), read through a real monitor.
    let view = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(read_view(&server.endpoint()));
    let t = Instant::now();
    let p = plan(Some(&state), &view, "tor1");
    let diffed = t.elapsed();
    println!(
        "plan 100 VNIs x 100 nodes: planner {:.2} ms + diff {:.2} ms = {:.2} ms ({} ops; target <= 200 ms)",
        ms(planned),
        ms(diffed),
        ms(planned + diffed),
        p.ops.len()
    );

    let (gw, devices, ports) = objects(100, 100);
    let t = Instant::now();
    let (targets, _) = gateway_targets(
        &[&gw],
        &devices.iter().collect::<Vec<_>>(),
        &ports.iter().collect::<Vec<_>>(),
    );
    let from_objects = t.elapsed();
    let t = Instant::now();
    let same = plan_fabric(&targets["tor1"].input);
    let replanned = t.elapsed();
    assert_eq!(same.segments.len(), 100);
    println!(
        "from cluster objects (1 gateway, 100 devices, 100 TunnelPorts): gateway_targets {:.2} ms + planner {:.2} ms + diff {:.2} ms = {:.2} ms (target <= 200 ms)",
        ms(from_objects),
        ms(replanned),
        ms(diffed),
        ms(from_objects + replanned + diffed)
    );

    // 2 and 3 with the writer.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (desired, desired_rx) = watch::channel(None);
    let (obs_tx, mut obs) = watch::channel(GatewayObserved::default());
    let cancel = CancellationToken::new();
    let config = GatewayConfig {
        endpoint: server.endpoint(),
        switch: "tor1".into(),
        tls: None,
    };
    rt.spawn(run(config, desired_rx, obs_tx, cancel.clone()));
    wait(&mut obs, |o| o.connected);
    let t = Instant::now();
    desired.send_replace(Some(state));
    wait(&mut obs, |o| o.in_sync);
    let full = t.elapsed();
    let t = Instant::now();
    let script = vtep_ctl_script(100, 100, 90000);
    server.vtep_ctl(&script.iter().map(String::as_str).collect::<Vec<_>>());
    let full_base = t.elapsed();
    println!(
        "write 100 x 100 state: writer {:.1} ms, one chained vtep-ctl {:.1} ms (ratio {:.2})",
        ms(full),
        ms(full_base),
        ms(full) / ms(full_base)
    );

    let mut samples = Vec::new();
    let mut base = Vec::new();
    for i in 0..20u32 {
        let mut inp = input(100, 100);
        inp.get_mut(&5001)
            .unwrap()
            .node_vteps
            .push(IpAddr::V4(Ipv4Addr::new(10, 9, 0, i as u8 + 1)));
        let n = obs.borrow().transactions;
        let t = Instant::now();
        desired.send_replace(Some(plan_fabric(&inp)));
        wait(&mut obs, |o| o.transactions > n && o.in_sync);
        samples.push(t.elapsed());
        let t = Instant::now();
        server.vtep_ctl(&[
            "add-mcast-remote",
            "base-90001",
            "unknown-dst",
            &format!("10.9.1.{}", i + 1),
        ]);
        base.push(t.elapsed());
    }
    samples.sort();
    base.sort();
    let (m, b) = (samples[samples.len() / 2], base[base.len() / 2]);
    println!(
        "change -> committed (one more node, 100x100 present): writer median {:.2} ms (max {:.2}), \
         vtep-ctl median {:.2} ms (ratio {:.2}; target <= 100 ms)",
        ms(m),
        ms(*samples.last().unwrap()),
        ms(b),
        ms(m) / ms(b)
    );
    cancel.cancel();
}

async fn read_view(endpoint: &str) -> VtepView {
    use remote_device_operator::ovsdb::{Session, SessionConfig, SessionEvent};
    let ep = endpoint.parse().unwrap();
    let mut s = Session::new(SessionConfig::new(
        ep,
        "hardware_vtep",
        remote_device_operator::vtep::monitor_requests(),
    ));
    loop {
        if s.next_event().await == SessionEvent::Connected {
            return VtepView::from_replica(s.replica());
        }
    }
}
