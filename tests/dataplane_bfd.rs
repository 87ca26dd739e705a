//! BFD with real Open vSwitch on both ends of a tunnel: the remote VTEP's answers become
//! the TunnelPort's `Reachable` condition, and cutting the underlay turns it False within
//! about the detection time (3 × 1000 ms, OVS's defaults).
//!
//! ```text
//!  ns H (the node: userspace OVS, netdev)              ns T (the remote VTEP: a second userspace OVS)
//!  [br-int] tunnel rdv-… (vxlan, key=flow, bfd)        [br-vtep] vx-node (vxlan, remote_ip=.1, bfd:enable=true)
//!  [br-phy] 192.168.101.1 ── phy0 ══ veth ══ eth0 ── [br-phy] 192.168.101.2
//! ```
//! The node side is the real one: the RemoteDevice (with `bfd.enabled`) and the Node go
//! through the planner into the agent's node loop, which sets the Interface `bfd` column
//! and reads `bfd_status` from its OVSDB monitor; the status is what the agent would write.
//! Up → cut the underlay (the VTEP's end of the veth down) → False → restore → True; then
//! two more flaps within 30 s → `Flapping`, held through further flaps (no new status)
//! until the tunnel holds still for 30 s. Needs root; see `support::netns`.

mod support;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;
use remote_device_operator::agent::node::{self, Feed, NodeConfig, NodeHandle};
use remote_device_operator::agent::status::tunnel_port_status;
use remote_device_operator::api::conditions::{REACHABLE, find};
use remote_device_operator::api::{TunnelPort, TunnelPortStatus};
use remote_device_operator::manifests::Manifests;
use remote_device_operator::planner::plan_tunnels;
use support::netns::{Netns, require_root_and_tools};
use support::ovs::wait_ofport;
use support::sandbox::{Datapath, Sandbox};
use tokio_util::sync::CancellationToken;

const NODE_VTEP: &str = "192.168.101.1";
const REMOTE_VTEP: &str = "192.168.101.2";

/// The manifests a user would apply: a device behind the VTEP with BFD on (defaults:
/// 1000 ms, detection after 3 s), and this node with its underlay address as tunnel IP.
const MANIFESTS: &str = r#"
apiVersion: remotedevice.io/v1alpha1
kind: RemoteDevice
metadata: {name: bare-metal-1, namespace: tenant-a}
spec:
  vtepIP: 192.168.101.2
  vni: 5001
  macAddress: "52:54:00:00:50:01"
  bfd: {enabled: true}
---
apiVersion: v1
kind: Node
metadata:
  name: node-h
  annotations: {remotedevice.io/tunnel-ip: 192.168.101.1}
"#;

/// Everything the test created, torn down on drop (also on panic): the OVS daemons first
/// (they hold the taps and veth ends), then their tap devices, then the namespaces.
struct Topology {
    node_ovs: Option<Sandbox>,
    vtep_ovs: Option<Sandbox>,
    host: Netns,
    vtep: Netns,
}

impl Drop for Topology {
    fn drop(&mut self) {
        drop(self.node_ovs.take());
        drop(self.vtep_ovs.take());
        // The netdev datapath's tap devices may outlive vswitchd.
        for (ns, taps) in [
            (&self.host, ["br-int", "br-phy"]),
            (&self.vtep, ["br-vtep", "br-phy"]),
        ] {
            for tap in taps {
                let _ = support::netns::run("ip", &["-n", ns.name(), "link", "del", tap]);
            }
        }
    }
}

/// Starts a userspace OVS inside `ns` that reads the namespace's routes (OVS then knows
/// the VTEP address as local and the underlay route), with `br-phy` (netdev) holding the
/// uplink `uplink` and the address `ip/24`.
fn ovs_in(ns: &Netns, uplink: &str, ip: &str) -> Sandbox {
    let sb = ns
        .enter(|| {
            let sb = Sandbox::start(Datapath::Netdev)?;
            sb.restart_vswitchd_with_system_routes()?;
            Ok::<_, support::sandbox::SandboxError>(sb)
        })
        .expect("OVS sandbox");
    sb.vsctl(&[
        "add-br",
        "br-phy",
        "--",
        "set",
        "Bridge",
        "br-phy",
        "datapath_type=netdev",
        "--",
        "add-port",
        "br-phy",
        uplink,
    ])
    .expect("br-phy");
    wait_ofport(&sb, "br-phy");
    wait_ofport(&sb, uplink);
    ns.ip(&["addr", "add", &format!("{ip}/24"), "dev", "br-phy"]);
    ns.ip(&["link", "set", "br-phy", "up"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let routes = sb.appctl(&["ovs/route/show"]).unwrap_or_default();
        if routes.contains("dev br-phy") && routes.contains(ip) {
            return sb;
        }
        assert!(
            Instant::now() < deadline,
            "OVS never learned the underlay route: {routes}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Topology {
    fn node(&self) -> &Sandbox {
        self.node_ovs.as_ref().expect("node OVS")
    }

    fn remote(&self) -> &Sandbox {
        self.vtep_ovs.as_ref().expect("VTEP OVS")
    }

    fn build() -> Topology {
        let mut topo = Topology {
            node_ovs: None,
            vtep_ovs: None,
            host: Netns::new("bh"),
            vtep: Netns::new("bt"),
        };
        let (h, t) = (&topo.host, &topo.vtep);
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
        h.exec("ethtool", &["-K", "phy0", "tx", "off"])
            .expect("ethtool");
        t.exec("ethtool", &["-K", "eth0", "tx", "off"])
            .expect("ethtool");
        h.ip(&["link", "set", "phy0", "up"]);
        t.ip(&["link", "set", "eth0", "up"]);

        topo.node_ovs = Some(ovs_in(&topo.host, "phy0", NODE_VTEP));
        topo.vtep_ovs = Some(ovs_in(&topo.vtep, "eth0", REMOTE_VTEP));
        let (h, t) = (&topo.host, &topo.vtep);
        // The node's integration bridge, as the agent finds it on a node.
        topo.node()
            .vsctl(&[
                "add-br",
                "br-int",
                "--",
                "set",
                "Bridge",
                "br-int",
                "datapath_type=netdev",
                "fail-mode=secure",
            ])
            .expect("br-int");
        // The remote VTEP: a VXLAN port back to the node with BFD on (OVS's defaults).
        topo.remote()
            .vsctl(&[
                "add-br",
                "br-vtep",
                "--",
                "set",
                "Bridge",
                "br-vtep",
                "datapath_type=netdev",
                "fail-mode=secure",
                "--",
                "add-port",
                "br-vtep",
                "vx-node",
                "--",
                "set",
                "Interface",
                "vx-node",
                "type=vxlan",
                &format!("options:remote_ip={NODE_VTEP}"),
                &format!("options:local_ip={REMOTE_VTEP}"),
                "bfd:enable=true",
            ])
            .expect("br-vtep");
        wait_ofport(topo.remote(), "vx-node");
        // Pre-seed each side's neighbour, else the first packets are lost to ARP.
        topo.node()
            .appctl(&["tnl/neigh/set", "br-phy", REMOTE_VTEP, &t.mac("br-phy")])
            .expect("neighbour");
        topo.remote()
            .appctl(&["tnl/neigh/set", "br-phy", NODE_VTEP, &h.mac("br-phy")])
            .expect("neighbour");
        topo
    }

    /// Cuts (`false`) or restores (`true`) the underlay: the VTEP's end of the veth.
    fn underlay(&self, up: bool) {
        let state = if up { "up" } else { "down" };
        self.vtep.ip(&["link", "set", "eth0", state]);
    }

    /// What to look at when BFD does not do what it should.
    fn diagnostics(&self) -> String {
        let mut out = String::new();
        for (who, sb) in [("node", self.node()), ("VTEP", self.remote())] {
            let bfd = sb.appctl(&["bfd/show"]).unwrap_or_else(|e| e.to_string());
            let ifaces = sb
                .vsctl(&["--columns=name,bfd,bfd_status,options", "list", "Interface"])
                .unwrap_or_else(|e| e.to_string());
            let log =
                std::fs::read_to_string(sb.dir().join("ovs-vswitchd.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            out.push_str(&format!(
                "\n--- {who}: bfd/show\n{bfd}\n--- {who}: interfaces\n{ifaces}\n--- {who}: vswitchd log\n{}",
                tail.join("\n")
            ));
        }
        out
    }
}

/// The agent's node loop on the node's OVS, fed as standalone mode feeds it, on its own
/// runtime (stopped on drop; OVS is left as it is), with a watcher that takes in every
/// view as the agent's API loop does: it computes the TunnelPort's status and "writes"
/// it whenever it differs from the one on the object.
struct Agent {
    runtime: tokio::runtime::Runtime,
    handle: Option<NodeHandle>,
    cancel: CancellationToken,
    written: Arc<Mutex<Written>>,
}

/// What the agent would have written.
struct Written {
    tp: TunnelPort,
    writes: usize,
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.cancel.cancel();
        if let Some(handle) = self.handle.take() {
            self.runtime.block_on(handle.join());
        }
    }
}

impl Agent {
    fn start(sb: &Sandbox, tp: &TunnelPort) -> Agent {
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
        let written = Arc::new(Mutex::new(Written {
            tp: tp.clone(),
            writes: 0,
        }));
        let (mut view, w) = (handle.view.clone(), written.clone());
        runtime.spawn(async move {
            loop {
                let current = view.borrow_and_update().clone();
                {
                    let mut w = w.lock().unwrap();
                    let status = tunnel_port_status(&w.tp, &current, Timestamp::now());
                    if w.tp.status.as_ref() != Some(&status) {
                        w.writes += 1;
                        w.tp.status = Some(status);
                    }
                }
                if view.changed().await.is_err() {
                    return;
                }
            }
        });
        handle.desired.send_replace(Some(vec![tp.clone()]));
        Agent {
            runtime,
            handle: Some(handle),
            cancel,
            written,
        }
    }

    /// The status last written.
    fn status(&self) -> TunnelPortStatus {
        let w = self.written.lock().unwrap();
        w.tp.status.clone().unwrap_or_default()
    }

    /// Status writes so far.
    fn writes(&self) -> usize {
        self.written.lock().unwrap().writes
    }

    /// Waits (at most `limit`) until the written Reachable condition has `status` (and
    /// `reason`, when given); the time it took, or `None`.
    fn wait(&self, limit: Duration, status: &str, reason: Option<&str>) -> Option<Duration> {
        let started = Instant::now();
        while started.elapsed() < limit {
            let (s, r) = reachable(&self.status());
            if s == status && reason.is_none_or(|want| r == want) {
                return Some(started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

fn reachable(status: &TunnelPortStatus) -> (String, String) {
    find(&status.conditions, REACHABLE)
        .map(|c| (c.status.clone(), c.reason.clone()))
        .unwrap_or_default()
}

/// The TunnelPort the planner makes for this node from the manifests.
fn planned_tunnel_port() -> TunnelPort {
    let mut manifests = Manifests::default();
    manifests.add_text(Path::new("dataplane-bfd.yaml"), MANIFESTS);
    assert!(manifests.rejected.is_empty(), "{:?}", manifests.rejected);
    let devices: Vec<_> = manifests.devices.iter().map(|(_, d)| d.clone()).collect();
    let plan = plan_tunnels(&devices, &manifests.nodes);
    assert_eq!(plan.tunnel_ports.len(), 1, "{:?}", plan.devices);
    let tp = (*plan.tunnel_ports[0]).clone();
    assert!(tp.spec.bfd.is_some(), "the device asks for BFD");
    assert_eq!(tp.spec.local_ip.as_deref(), Some(NODE_VTEP));
    tp
}

#[test]
fn reachable_follows_the_underlay_and_flapping_is_damped() {
    if !require_root_and_tools(&["ip", "ethtool"]) {
        return;
    }
    let topo = Topology::build();
    let tp = planned_tunnel_port();
    let agent = Agent::start(topo.node(), &tp);
    let fail = |what: &str| -> ! {
        panic!(
            "{what}; last status {:?}{}",
            agent.status(),
            topo.diagnostics()
        )
    };

    // BFD comes up: Reachable True, and OVS's interface runs BFD with key=flow.
    let up = agent
        .wait(Duration::from_secs(30), "True", Some("BfdUp"))
        .unwrap_or_else(|| fail("Reachable never became True"));
    println!(
        "BFD up: Reachable=True {:.1} s after the TunnelPort was handed over",
        up.as_secs_f64()
    );
    let iface = agent.status().interface_name.expect("interface name");
    let columns = topo
        .node()
        .vsctl(&["get", "Interface", &iface, "bfd", "options:key"])
        .unwrap();
    assert!(
        columns.contains("enable=\"true\"") && columns.contains("min_rx=\"1000\""),
        "{columns}"
    );
    assert!(
        columns.contains("flow"),
        "the tunnel keeps key=flow: {columns}"
    );

    // Cut the underlay: False within about the detection time (3 s), with OVS's diagnostic.
    topo.underlay(false);
    let down = agent
        .wait(Duration::from_secs(20), "False", None)
        .unwrap_or_else(|| fail("Reachable never became False after the cut"));
    println!(
        "underlay cut: Reachable=False after {:.2} s (BFD detection time 3 s): {:?}",
        down.as_secs_f64(),
        reachable(&agent.status())
    );
    assert_eq!(
        reachable(&agent.status()).1,
        "ControlDetectionTimeExpired",
        "{:?}",
        agent.status()
    );
    assert!(down < Duration::from_secs(10), "took {down:?}");

    // Restore: True again.
    topo.underlay(true);
    let back = agent
        .wait(Duration::from_secs(20), "True", Some("BfdUp"))
        .unwrap_or_else(|| fail("Reachable never became True after the repair"));
    println!(
        "underlay restored: Reachable=True after {:.2} s",
        back.as_secs_f64()
    );
    assert!(back < Duration::from_secs(15), "took {back:?}");
    let flaps_before = agent.status().bfd.and_then(|b| b.flap_count);

    // Flapping: a third flap within 30 s is reported as such and held while the tunnel
    // keeps flapping, so the status (and the API writes) change only a few times.
    let before = agent.writes();
    topo.underlay(false);
    agent
        .wait(Duration::from_secs(20), "False", Some("Flapping"))
        .unwrap_or_else(|| fail("never Flapping after the third flap"));
    let held = agent.status();
    println!(
        "third flap within 30 s: Reachable=False Flapping ({:?})",
        held.bfd
    );
    for up in [true, false, true] {
        // Long enough for the BFD session to follow each change.
        std::thread::sleep(Duration::from_secs(5));
        topo.underlay(up);
    }
    std::thread::sleep(Duration::from_secs(5));
    let while_flapping = agent.writes() - before;
    assert_eq!(
        reachable(&agent.status()),
        ("False".to_string(), "Flapping".to_string()),
        "held while flapping"
    );
    assert_eq!(
        agent.status().bfd,
        held.bfd,
        "the session is held as it was"
    );
    // Stable (up) for 30 s: reported as it is again.
    let released = agent
        .wait(Duration::from_secs(60), "True", Some("BfdUp"))
        .unwrap_or_else(|| fail("never released from Flapping"));
    let total = agent.writes() - before;
    let flaps_after = agent.status().bfd.and_then(|b| b.flap_count);
    println!(
        "stable again: Reachable=True {:.1} s later; OVS flap_count {flaps_before:?} → \
         {flaps_after:?}; status writes from the third flap on: {total} ({while_flapping} \
         while flapping)",
        released.as_secs_f64()
    );
    assert!(
        flaps_after.unwrap_or(0) >= flaps_before.unwrap_or(0) + 4,
        "OVS counted the flaps: {flaps_before:?} → {flaps_after:?}"
    );
    assert!(
        total <= 4,
        "a flapping tunnel makes a handful of writes, not one per flap: {total}"
    );
}
