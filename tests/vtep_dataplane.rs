//! The proof: a real packet between a pod behind a node's userspace OVS and a device on a
//! port of an emulated hardware VTEP, where the switch is configured ONLY by the gateway
//! writer (over `ssl:`) and the node only by the node loop.
//!
//! ```text
//!  ns A (pod)             ns H (node: userspace OVS)                 ns T (emulated ToR, ovs-vtep)        ns C (device)
//!  eth0 10.0.0.10 ─ veth ─ pod0 [br-int] vxlan(key=flow)             [tor1] p1 ─────────── veth ───────── eth0 10.0.0.50
//!                          [br-phy] 192.168.100.1 ─ phy0 ═══ veth ═══ up0 [br-phy] 192.168.100.2
//!                                                                    mgmt0 10.254.0.2 ssl:6641 ─ veth ─ ns M (writer)
//! ```
//! Apply → ping both ways; delete the device (from the fabric state and from the node's
//! TunnelPorts) → ping fails and the switch holds none of our rows; apply again → ping.

mod support;

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use remote_device_operator::api::TunnelPort;
use remote_device_operator::manifests::Manifests;
use remote_device_operator::standalone;
use remote_device_operator::vtep::{
    Attachment, FabricState, GatewayObserved, SegmentInput, plan_fabric,
};
use support::netns::{Netns, require_root_and_tools};
use support::node_loop::NodeLoop;
use support::ovs::node_bridges;
use support::sandbox::{Datapath, Sandbox};
use support::vtep::{Gateway, Pki, Tor, TorOptions};

const NODE_VTEP: &str = "192.168.100.1";
const TOR_VTEP: &str = "192.168.100.2";
const VNI: u32 = 5001;
const POD_IP: &str = "10.0.0.10";
const POD_MAC: &str = "52:54:00:00:10:10";
const DEVICE_IP: &str = "10.0.0.50";
const DEVICE_MAC: &str = "52:54:00:00:50:01";

const MANIFESTS: &str = r#"
apiVersion: remotedevice.io/v1alpha1
kind: RemoteDevice
metadata: {name: bare-metal-1, namespace: tenant-a}
spec:
  vtepIP: 192.168.100.2
  vni: 5001
  macAddress: "52:54:00:00:50:01"
  ips: [10.0.0.50]
---
apiVersion: v1
kind: Node
metadata:
  name: node-h
  annotations: {remotedevice.io/tunnel-ip: 192.168.100.1}
"#;

/// Torn down in a safe order: OVS daemons first, then taps, then namespaces.
struct Topology {
    sandbox: Option<Sandbox>,
    tor: Option<Tor>,
    host: Netns,
    pod: Netns,
    device: Netns,
}

impl Drop for Topology {
    fn drop(&mut self) {
        drop(self.sandbox.take());
        drop(self.tor.take());
        for tap in ["br-int", "br-phy"] {
            let _ = support::netns::run("ip", &["-n", self.host.name(), "link", "del", tap]);
        }
    }
}

fn mac_of(ns: &Netns, dev: &str) -> String {
    ns.exec("cat", &[&format!("/sys/class/net/{dev}/address")])
        .expect("mac")
        .trim()
        .to_string()
}

impl Topology {
    fn sb(&self) -> &Sandbox {
        self.sandbox.as_ref().expect("sandbox")
    }

    fn tor(&self) -> &Tor {
        self.tor.as_ref().expect("tor")
    }

    fn build(pki: &Pki) -> Topology {
        let mut topo = Topology {
            sandbox: None,
            tor: None,
            host: Netns::new("dh"),
            pod: Netns::new("da"),
            device: Netns::new("dc"),
        };
        let (h, a) = (&topo.host, &topo.pod);
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
        a.ip(&[
            "link", "set", "eth0", "address", POD_MAC, "mtu", "1450", "up",
        ]);
        a.ip(&["addr", "add", &format!("{POD_IP}/24"), "dev", "eth0"]);
        a.exec("ethtool", &["-K", "eth0", "tx", "off"])
            .expect("ethtool");
        h.ip(&["link", "set", "pod0", "up"]);
        let tor = Tor::start(TorOptions {
            tag: "dt",
            tunnel_ip: TOR_VTEP,
            ports: vec![("p1", Some(&topo.device))],
            uplink: Some((&topo.host, "phy0")),
            pki: Some(pki),
        });
        let c = &topo.device;
        c.ip(&[
            "link", "set", "eth0", "address", DEVICE_MAC, "mtu", "1450", "up",
        ]);
        c.ip(&["addr", "add", &format!("{DEVICE_IP}/24"), "dev", "eth0"]);
        c.exec("ethtool", &["-K", "eth0", "tx", "off"])
            .expect("ethtool");
        let h = &topo.host;
        h.exec("ethtool", &["-K", "phy0", "tx", "off"])
            .expect("ethtool");
        h.ip(&["link", "set", "phy0", "up"]);
        topo.tor = Some(tor);
        topo.sandbox = Some(topo.node_ovs());
        topo.underlay();
        topo
    }

    /// The node's OVS in ns H, reading ns H's routes (a tunnel's local_ip must be known as
    /// local to OVS, and only kernel routes are marked local).
    fn node_ovs(&self) -> Sandbox {
        let sb = self
            .host
            .enter(|| Sandbox::start(Datapath::Netdev))
            .expect("OVS sandbox");
        self.host
            .enter(|| sb.restart_vswitchd_with_system_routes())
            .expect("restart vswitchd");
        sb
    }

    fn underlay(&self) {
        let (sb, h) = (self.sb(), &self.host);
        node_bridges(sb, h, NODE_VTEP);
        // Both ends know each other's VTEP MAC: no first packets lost to ARP.
        let tor_mac = mac_of(&self.tor().ns, "br-phy");
        sb.appctl(&["tnl/neigh/set", "br-phy", TOR_VTEP, &tor_mac])
            .expect("neigh");
        self.tor().seed_neighbour(NODE_VTEP, &mac_of(h, "br-phy"));
    }
}

/// The node's TunnelPort for the device, through the planner as standalone mode does.
fn tunnel_ports() -> Vec<TunnelPort> {
    let mut manifests = Manifests::default();
    manifests.add_text(Path::new("vtep_dataplane.yaml"), MANIFESTS);
    assert!(manifests.rejected.is_empty(), "{:?}", manifests.rejected);
    let planned = standalone::plan_node(&manifests, "node-h", &[]);
    assert_eq!(planned.tunnel_ports.len(), 1, "{:?}", planned.problems);
    planned.tunnel_ports
}

/// The gateway's desired state: the device on p1 (untagged), the node in the flood set,
/// the pod's MAC behind the node.
fn fabric() -> FabricState {
    let seg = SegmentInput {
        attachments: vec![Attachment {
            port: "p1".into(),
            vlan: 0,
            macs: vec![DEVICE_MAC.into()],
        }],
        node_vteps: vec![NODE_VTEP.parse::<IpAddr>().unwrap()],
        workload_macs: vec![(POD_MAC.into(), NODE_VTEP.parse().unwrap())],
    };
    plan_fabric(&[(VNI, seg)].into())
}

fn synced(o: &GatewayObserved) -> bool {
    o.connected && o.in_sync && o.conflicts.is_empty() && o.pending.is_empty()
}

/// One answer within `tries` seconds (the switch needs a poll or two to apply a change).
fn ping(from: &Netns, target: &str, tries: u32) -> bool {
    (0..tries).any(|_| from.exec("ping", &["-c", "1", "-W", "1", target]).is_ok())
}

fn apply(topo: &Topology, node: &NodeLoop, gw: &mut Gateway, when: &str) {
    let started = Instant::now();
    gw.converge(
        Some(fabric()),
        "switch programmed",
        Duration::from_secs(15),
        synced,
    );
    node.converge(tunnel_ports(), "tunnel port up", |v| {
        v.ovs.connected
            && v.ovs
                .ports
                .values()
                .any(|p| p.ofport.is_some_and(|o| o > 0))
            && v.flows_current()
    });
    assert!(
        ping(&topo.pod, DEVICE_IP, 20),
        "pod → device after {when}; {}",
        topo.tor().log_tail()
    );
    eprintln!(
        "{when}: first pod → device reply after {:?}",
        started.elapsed()
    );
    assert!(ping(&topo.device, POD_IP, 10), "device → pod after {when}");
}

#[test]
fn pod_reaches_a_device_on_a_hardware_vtep_programmed_by_the_writer() {
    if !require_root_and_tools(&["ip", "ethtool", "ping", "vtep-ctl", "openssl"]) {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let pki = Pki::make(scratch.path());
    let topo = Topology::build(&pki);
    let node = NodeLoop::start(topo.sb());
    let mut gw = Gateway::spawn(
        topo.tor(),
        topo.tor().ssl_endpoint(),
        Some(pki.client("ca.pem")),
    );

    apply(&topo, &node, &mut gw, "apply");

    // Delete the device: from the gateway's state and from the node's TunnelPorts.
    gw.converge(
        Some(FabricState::default()),
        "ours gone from the switch",
        Duration::from_secs(20),
        |o| synced(o) && o.managed.is_empty(),
    );
    node.converge(vec![], "tunnel port gone", |v| {
        v.ovs.connected && v.ovs.ports.is_empty()
    });
    let tor = topo.tor();
    assert_eq!(tor.vtep_ctl(&["list-ls"]).unwrap().trim(), "");
    assert_eq!(
        tor.vtep_ctl(&["list-bindings", "tor1", "p1"])
            .unwrap()
            .trim(),
        ""
    );
    for table in ["Ucast_Macs_Remote", "Mcast_Macs_Remote"] {
        assert_eq!(
            tor.vtep_ctl(&["--columns=_uuid", "list", table])
                .unwrap()
                .trim(),
            "",
            "{table}"
        );
    }
    assert!(
        !ping(&topo.pod, DEVICE_IP, 2),
        "ping must fail after delete"
    );

    apply(&topo, &node, &mut gw, "re-apply");
}
