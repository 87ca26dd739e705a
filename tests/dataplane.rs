//! A real packet from a workload to a remote device over the overlay, and gone again.
//!
//! ```text
//!  ns A (workload)          ns H (the node: userspace OVS, netdev datapath)        ns T (remote VTEP)           ns C (device)
//!  eth0 10.0.0.10 ── veth ── pod0 [br-int] tunnel(vxlan, key=flow)                  eth0 192.168.100.2            eth0 10.0.0.50
//!                                          [br-phy] 192.168.100.1 ── phy0 ── veth ── vx0 (VNI 5001) ─ br0 ─ dev0 ── veth
//! ```
//! The node side is the real one: the RemoteDevice and Node manifests go through the
//! planner (as in standalone mode) into the agent's node loop, which makes the tunnel
//! port with one OVSDB transaction and the rules with one OpenFlow bundle.
//! Apply a RemoteDevice → ping A→C (IPv4 through the ARP responder, IPv6 through the
//! neighbour responder); delete it → the tunnel port and every owned flow are gone and
//! ping fails; apply again → ping works again. Needs root; see `support::netns`.

mod support;

use std::net::IpAddr;
use std::path::Path;

use k8s_openapi::jiff::Timestamp;
use remote_device_operator::agent::node::NodeView;
use remote_device_operator::agent::status::tunnel_port_status;
use remote_device_operator::api::conditions::{READY, is_true};
use remote_device_operator::api::{TunnelId, TunnelType};
use remote_device_operator::flows::{COOKIE_MASK, COOKIE_TAG};
use remote_device_operator::manifests::Manifests;
use remote_device_operator::standalone;
use support::netns::{Netns, require_root_and_tools};
use support::node_loop::NodeLoop;
use support::ovs::node_bridges;
use support::sandbox::{Datapath, Sandbox};

const NODE_VTEP: &str = "192.168.100.1";
const REMOTE_VTEP: &str = "192.168.100.2";
const VNI: u32 = 5001;
const WORKLOAD_IP: &str = "10.0.0.10";
const WORKLOAD_IP6: &str = "fd00:5001::10";
const DEVICE_IP: &str = "10.0.0.50";
const DEVICE_IP6: &str = "fd00:5001::50";
const DEVICE_MAC: &str = "52:54:00:00:50:01";

/// Everything the test created; torn down in a safe order on drop (also on panic):
/// OVS first (it holds the taps and veth ends), then the namespaces with what is left.
struct Topology {
    sandbox: Option<Sandbox>,
    host: Netns,
    workload: Netns,
    vtep: Netns,
    device: Netns,
}

impl Drop for Topology {
    fn drop(&mut self) {
        drop(self.sandbox.take());
        // The netdev datapath's tap devices may outlive vswitchd.
        for tap in ["br-int", "br-phy"] {
            let _ = support::netns::run("ip", &["-n", self.host.name(), "link", "del", tap]);
        }
    }
}

impl Topology {
    fn sb(&self) -> &Sandbox {
        self.sandbox.as_ref().expect("sandbox")
    }

    fn build() -> Topology {
        let host = Netns::new("h");
        let workload = Netns::new("a");
        let vtep = Netns::new("t");
        let device = Netns::new("c");
        let mut topo = Topology {
            sandbox: None,
            host,
            workload,
            vtep,
            device,
        };
        let (h, a, t, c) = (&topo.host, &topo.workload, &topo.vtep, &topo.device);

        // Workload A: overlay MTU (1500 underlay − 50 VXLAN), no tx checksum offload
        // (OVS would drop its frames at decapsulation on the way back otherwise).
        h.ip(&[
            "link",
            "add",
            "pod0",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            a.name(),
        ]);
        a.ip(&["link", "set", "eth0", "mtu", "1450", "up"]);
        a.ip(&["addr", "add", &format!("{WORKLOAD_IP}/24"), "dev", "eth0"]);
        a.ip(&[
            "-6",
            "addr",
            "add",
            &format!("{WORKLOAD_IP6}/64"),
            "dev",
            "eth0",
            "nodad",
        ]);
        a.exec("ethtool", &["-K", "eth0", "tx", "off"])
            .expect("ethtool");
        h.ip(&["link", "set", "pod0", "up"]);

        // Underlay between the node and the remote VTEP.
        h.ip(&[
            "link",
            "add",
            "phy0",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            t.name(),
        ]);
        t.ip(&["link", "set", "eth0", "up"]);
        t.ip(&["addr", "add", &format!("{REMOTE_VTEP}/24"), "dev", "eth0"]);
        t.exec("ethtool", &["-K", "eth0", "tx", "off"])
            .expect("ethtool");
        h.ip(&["link", "set", "phy0", "up"]);

        // Remote VTEP: kernel VXLAN bridged to the device's veth.
        t.ip(&[
            "link",
            "add",
            "vx0",
            "type",
            "vxlan",
            "id",
            &VNI.to_string(),
            "local",
            REMOTE_VTEP,
            "remote",
            NODE_VTEP,
            "dstport",
            "4789",
            "nolearning",
        ]);
        t.ip(&["link", "add", "br0", "type", "bridge"]);
        t.ip(&[
            "link",
            "add",
            "dev0",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            c.name(),
        ]);
        t.ip(&["link", "set", "vx0", "master", "br0"]);
        t.ip(&["link", "set", "dev0", "master", "br0"]);
        for dev in ["vx0", "dev0", "br0"] {
            t.ip(&["link", "set", dev, "up"]);
        }
        c.ip(&[
            "link", "set", "eth0", "address", DEVICE_MAC, "mtu", "1450", "up",
        ]);
        c.ip(&["addr", "add", &format!("{DEVICE_IP}/24"), "dev", "eth0"]);
        c.ip(&[
            "-6",
            "addr",
            "add",
            &format!("{DEVICE_IP6}/64"),
            "dev",
            "eth0",
            "nodad",
        ]);

        // The node's OVS lives in ns H, so its taps and addresses stay there.
        let sb = h
            .enter(|| Sandbox::start(Datapath::Netdev))
            .expect("OVS sandbox");
        topo.sandbox = Some(sb);
        topo.vswitchd_with_system_routes();
        let (h, t) = (&topo.host, &topo.vtep);
        let sb = topo.sb();
        node_bridges(sb, h, NODE_VTEP);
        // Pre-seed the VTEP's MAC, else the first packets are lost while OVS resolves it.
        let vtep_mac = t
            .exec("cat", &["/sys/class/net/eth0/address"])
            .expect("mac")
            .trim()
            .to_string();
        sb.appctl(&["tnl/neigh/set", "br-phy", REMOTE_VTEP, &vtep_mac])
            .expect("neighbour");
        topo
    }
}

impl Topology {
    /// The sandbox starts vswitchd with `--disable-system-route` (right for a vswitchd in
    /// the host's namespace). Ours runs in ns H, whose routes are ours: restart it there
    /// reading them (see `Sandbox::restart_vswitchd_with_system_routes`).
    fn vswitchd_with_system_routes(&self) {
        self.host
            .enter(|| self.sb().restart_vswitchd_with_system_routes())
            .expect("restart vswitchd");
    }
}

/// The manifests a user would apply: the RemoteDevice behind the ToR VTEP, and this
/// node with its underlay address as tunnel IP.
const MANIFESTS: &str = r#"
apiVersion: remotedevice.io/v1alpha1
kind: RemoteDevice
metadata: {name: bare-metal-1, namespace: tenant-a}
spec:
  vtepIP: 192.168.100.2
  vni: 5001
  macAddress: "52:54:00:00:50:01"
  ips: [10.0.0.50, "fd00:5001::50"]
---
apiVersion: v1
kind: Node
metadata:
  name: node-h
  annotations: {remotedevice.io/tunnel-ip: 192.168.100.1}
"#;

fn tunnel_name() -> String {
    TunnelId::new(
        TunnelType::Vxlan,
        REMOTE_VTEP.parse::<IpAddr>().unwrap(),
        None,
    )
    .interface_name()
}

/// "Apply the RemoteDevice": plan for this node, hand the TunnelPort to the node loop, wait
/// until it is Ready (port numbered by OVS, the device's rules confirmed in OVS).
fn apply_device(node: &NodeLoop) -> NodeView {
    let mut manifests = Manifests::default();
    manifests.add_text(Path::new("dataplane.yaml"), MANIFESTS);
    assert!(manifests.rejected.is_empty(), "{:?}", manifests.rejected);
    let planned = standalone::plan_node(&manifests, "node-h", &[]);
    assert_eq!(planned.tunnel_ports.len(), 1, "{:?}", planned.problems);
    let tp = planned.tunnel_ports[0].clone();
    assert_eq!(tp.spec.local_ip.as_deref(), Some(NODE_VTEP));
    node.converge(vec![tp.clone()], "Ready", |v| {
        let status = tunnel_port_status(&tp, v, Timestamp::now());
        is_true(&status.conditions, READY)
    })
}

/// "Delete the RemoteDevice": the node's desired set becomes empty; wait until the port
/// and the rules are gone from OVS (what the agent waits for before its finalizer goes).
fn delete_device(node: &NodeLoop) {
    node.converge(vec![], "port and rules gone", |v| {
        v.ovs.connected
            && v.ovs.ports.is_empty()
            && v.flows_current()
            && v.flows
                .applied
                .as_ref()
                .is_some_and(|p| !p.has_device("tenant-a", "bare-metal-1"))
    });
}

/// The workload reaches the device over IPv4 (ARP answered by OVS) and IPv6 (neighbour
/// answered by OVS).
fn assert_reaches_device(topo: &Topology, when: &str) {
    for ip in [DEVICE_IP, DEVICE_IP6] {
        assert!(
            ping_ok(topo, ip, 10),
            "ping {ip} after {when}{}",
            diagnostics(topo)
        );
    }
}

/// Pings until one answer arrives (the first ones may be spent on neighbour discovery),
/// for at most `tries` seconds.
fn ping_ok(topo: &Topology, target: &str, tries: u32) -> bool {
    (0..tries).any(|_| {
        topo.workload
            .exec("ping", &["-c", "1", "-W", "1", target])
            .is_ok()
    })
}

/// What to look at when a ping fails: flows with counters, OVS routing state, neighbours.
fn diagnostics(topo: &Topology) -> String {
    let sb = topo.sb();
    let mut out = String::new();
    let mut add = |title: &str, text: Result<String, String>| {
        out.push_str(&format!("\n--- {title}\n{}", text.unwrap_or_else(|e| e)));
    };
    let err = |e: support::sandbox::SandboxError| e.to_string();
    add(
        "br-int flows",
        sb.ofctl(&["-O", "OpenFlow14", "dump-flows", &sb.mgmt("br-int")])
            .map_err(err),
    );
    let trace = format!(
        "in_port=pod0,icmp,dl_dst={DEVICE_MAC},nw_src={WORKLOAD_IP},nw_dst={DEVICE_IP},nw_ttl=64"
    );
    add(
        "trace to the device",
        sb.appctl(&["ofproto/trace", "br-int", &trace]).map_err(err),
    );
    add(
        "ports",
        sb.ofctl(&["show", &sb.mgmt("br-int")]).map_err(err),
    );
    add("ovs routes", sb.appctl(&["ovs/route/show"]).map_err(err));
    add(
        "tunnel neighbours",
        sb.appctl(&["tnl/neigh/show"]).map_err(err),
    );
    add(
        "tunnel ports",
        sb.appctl(&["tnl/ports/show", "-v"]).map_err(err),
    );
    add(
        "datapath flows",
        sb.appctl(&["dpctl/dump-flows", "-m"]).map_err(err),
    );
    add("workload neighbours", topo.workload.exec("ip", &["neigh"]));
    add("device neighbours", topo.device.exec("ip", &["neigh"]));
    add(
        "vtep fdb",
        topo.vtep.exec("bridge", &["fdb", "show", "dev", "vx0"]),
    );
    let log = std::fs::read_to_string(sb.dir().join("ovs-vswitchd.log")).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(30).collect();
    add(
        "vswitchd log (last lines)",
        Ok(tail.into_iter().rev().collect::<Vec<_>>().join("\n")),
    );
    out
}

fn owned_flows(topo: &Topology, cookie: u64, mask: u64) -> Vec<String> {
    topo.sb()
        .ofctl(&[
            "-O",
            "OpenFlow14",
            "--no-stats",
            "dump-flows",
            &topo.sb().mgmt("br-int"),
            &format!("cookie={cookie:#x}/{mask:#x}"),
        ])
        .expect("dump-flows")
        .lines()
        .filter(|l| l.contains("cookie="))
        .map(str::to_string)
        .collect()
}

#[test]
fn workload_reaches_remote_device_until_it_is_deleted() {
    if !require_root_and_tools(&["ip", "ethtool", "ping"]) {
        return;
    }
    let topo = Topology::build();
    let node = NodeLoop::start(topo.sb());

    // Apply: IPv4 (ARP answered by OVS) and IPv6 (neighbour answered by OVS) both work.
    let view = apply_device(&node);
    let applied = view.flows.applied.expect("rules confirmed in OVS");
    let cookie = applied.device_cookie("tenant-a", "bare-metal-1").unwrap();
    assert_reaches_device(&topo, "apply");
    let neigh = topo
        .workload
        .exec("ip", &["neigh", "show", DEVICE_IP])
        .unwrap();
    assert!(
        neigh.contains(DEVICE_MAC),
        "ARP answered with the device MAC: {neigh}"
    );
    assert!(!owned_flows(&topo, cookie, u64::MAX).is_empty());

    // Delete: no tunnel port, no flow with the device's cookie (nor any owned flow, it
    // was the only device), and the workload no longer reaches the device.
    delete_device(&node);
    let ports = topo.sb().vsctl(&["list-ports", "br-int"]).unwrap();
    assert!(!ports.contains(&tunnel_name()), "tunnel port gone: {ports}");
    assert_eq!(owned_flows(&topo, cookie, u64::MAX), Vec::<String>::new());
    assert_eq!(
        owned_flows(&topo, COOKIE_TAG, COOKIE_MASK),
        Vec::<String>::new()
    );
    assert!(!ping_ok(&topo, DEVICE_IP, 1), "ping must fail after delete");
    assert!(
        !ping_ok(&topo, DEVICE_IP6, 1),
        "ping6 must fail after delete"
    );

    // Apply again: works again.
    apply_device(&node);
    assert_reaches_device(&topo, "re-apply");
}
