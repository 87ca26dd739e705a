//! The proof: a real packet between a pod behind a node's userspace OVS and a device on a
//! port of an emulated hardware VTEP, where both ends are configured ONLY by the operator:
//! `standalone` mode on a directory holding the RemoteDevice (attached to port p1), the
//! Node and a VtepGateway (`ssl:`, its client certificate under `--secrets-dir` in the
//! layout of a mounted Secret). Nothing in this test writes to either OVSDB.
//!
//! ```text
//!  ns A (pod)             ns H (node: userspace OVS)                 ns T (emulated ToR, ovs-vtep)        ns C (device)
//!  eth0 10.0.0.10 ─ veth ─ pod0 [br-int] vxlan(key=flow)             [tor1] p1 ─────────── veth ───────── eth0 10.0.0.50
//!                          [br-phy] 192.168.100.1 ─ phy0 ═══ veth ═══ up0 [br-phy] 192.168.100.2
//!                              ▲ unix:db.sock, br-int.mgmt           mgmt0 10.254.0.2 ssl:6641
//!                              │                                       │ veth
//!                              └──── standalone (one thread in ns M) ── mgmt0 10.254.0.1
//! ```
//! The operator runs in-process on a thread moved into the ToR's management namespace M,
//! so its gateway writer reaches `ssl:10.254.0.2:6641`; the node's OVS lives in H but is
//! reached over its unix sockets (OVSDB and the OpenFlow management socket), which work
//! across network namespaces, as the agent reaches a node's OVS from its pod.
//!
//! Apply → ping both ways; delete the device's manifest → ping fails, the switch holds
//! none of our rows and the node no tunnel port; put it back → ping again.

/// The parts of `support` used here.
#[allow(dead_code)]
mod support {
    #[path = "netns.rs"]
    pub mod netns;
    #[path = "ovs.rs"]
    pub mod ovs;
    #[path = "sandbox.rs"]
    pub mod sandbox;
    #[path = "vtep.rs"]
    pub mod vtep;
}

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use remote_device_operator::agent::OvsArgs;
use remote_device_operator::standalone::{self, StandaloneArgs};
use support::netns::{Netns, require_root_and_tools};
use support::ovs::node_bridges;
use support::sandbox::{Datapath, Sandbox};
use support::vtep::{Pki, SWITCH, Tor, TorOptions, enter_netns};
use tokio_util::sync::CancellationToken;

const NODE_VTEP: &str = "192.168.100.1";
const TOR_VTEP: &str = "192.168.100.2";
const LS: &str = "rdo-vni-5001";
const POD_IP: &str = "10.0.0.10";
const POD_MAC: &str = "52:54:00:00:10:10";
const DEVICE_IP: &str = "10.0.0.50";
const DEVICE_MAC: &str = "52:54:00:00:50:01";

const NODE_NAME: &str = "node-h";
/// The TLS Secret of the gateway, as a directory under `--secrets-dir`.
const SECRET: &str = "tor1-client";

/// The device, plugged into port p1 (untagged) of the gateway whose tunnel IP is its VTEP.
const DEVICE: &str = r#"
apiVersion: remotedevice.io/v1alpha1
kind: RemoteDevice
metadata: {name: bare-metal-1, namespace: tenant-a}
spec:
  vtepIP: 192.168.100.2
  vni: 5001
  macAddress: "52:54:00:00:50:01"
  ips: [10.0.0.50]
  attachment: {port: p1}
"#;

const NODE: &str = r#"
apiVersion: v1
kind: Node
metadata:
  name: node-h
  annotations: {remotedevice.io/tunnel-ip: 192.168.100.1}
"#;

/// The VtepGateway for the emulated switch at `endpoint`.
fn gateway(endpoint: &str) -> String {
    format!(
        "apiVersion: remotedevice.io/v1alpha1\nkind: VtepGateway\nmetadata: {{name: {SWITCH}}}\n\
         spec:\n  endpoint: '{endpoint}'\n  tlsSecretName: {SECRET}\n  tunnelIPs: [{TOR_VTEP}]\n"
    )
}

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
        let tor_mac = self.tor().ns.mac("br-phy");
        sb.appctl(&["tnl/neigh/set", "br-phy", TOR_VTEP, &tor_mac])
            .expect("neigh");
        self.tor().seed_neighbour(NODE_VTEP, &h.mac("br-phy"));
    }
}

/// `Write` into a buffer the test reads while the operator runs.
#[derive(Clone, Default)]
struct Printed(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Printed {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Printed {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// The last block printed that `is` picks (tables and notes are separated by an
    /// empty line).
    fn last_block(&self, is: impl Fn(&str) -> bool) -> Option<String> {
        let text = self.text();
        text.rsplit("\n\n")
            .find(|t| is(t))
            .map(|t| t.trim_end().to_string())
    }
}

/// Whether `block` is a table whose second column is `column`.
fn table_of(block: &str, column: &str) -> bool {
    block
        .lines()
        .next()
        .is_some_and(|h| h.split_whitespace().take(2).eq(["NAME", column]))
}

/// The index of `name` in a table's header.
fn column(table: &str, name: &str) -> usize {
    table
        .lines()
        .next()
        .and_then(|h| h.split_whitespace().position(|c| c == name))
        .unwrap_or_else(|| panic!("no column {name} in {table}"))
}

/// The REACHABLE cell of the only tunnel port in the last tunnel-port table.
fn reachable(op: &Operator) -> Option<String> {
    let b = op.printed.last_block(|b| table_of(b, "NODE"))?;
    let at = column(&b, "REACHABLE");
    rows(&b).first().map(|r| r[at].clone())
}

/// The switch's BFD state towards the node (`bfd_status:state` of its Tunnel row).
fn switch_bfd_state(tor: &Tor) -> String {
    tor.vtep_ctl(&["--columns=bfd_status", "list", "Tunnel"])
        .unwrap_or_default()
}

/// A table's data rows, as cells.
fn rows(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect()
}

/// `remote-device-operator standalone -f <dir> --node-name node-h --secrets-dir <dir>`,
/// in-process on a thread of its own inside the ToR's management namespace.
struct Operator {
    printed: Printed,
    cancel: CancellationToken,
    thread: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
}

impl Operator {
    fn start(topo: &Topology, manifests: &Path, secrets: &Path) -> Operator {
        let sb = topo.sb();
        let args = StandaloneArgs {
            dir: manifests.to_path_buf(),
            node_name: NODE_NAME.into(),
            ovs: OvsArgs {
                ovsdb: sb.endpoint(),
                bridge: "br-int".into(),
                ovs_rundir: sb.dir().to_path_buf(),
            },
            poll: Duration::from_millis(100),
            once: false,
            secrets_dir: Some(secrets.to_path_buf()),
        };
        let printed = Printed::default();
        let cancel = CancellationToken::new();
        let ns = topo.tor().ctl.name().to_string();
        let thread = std::thread::spawn({
            let (mut out, cancel) = (printed.clone(), cancel.clone());
            move || {
                // Before the runtime exists, so everything it starts lives there too.
                enter_netns(&ns);
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(standalone::run(args, cancel, &mut out))
            }
        });
        Operator {
            printed,
            cancel,
            thread: Some(thread),
        }
    }

    /// Waits (`timeout` at most) until `done` holds.
    fn wait(&self, what: &str, timeout: Duration, done: impl Fn(&Operator) -> bool) {
        let deadline = Instant::now() + timeout;
        while !done(self) {
            assert!(
                !self.thread.as_ref().unwrap().is_finished(),
                "{what}: the operator stopped; it printed:\n{}",
                self.printed.text()
            );
            assert!(
                Instant::now() < deadline,
                "{what}: not reached in {timeout:?}; the operator printed:\n{}",
                self.printed.text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the last tables show `ports` tunnel ports, all Ready, and the gateway
    /// Connected and Ready with `vnis` logical switches.
    fn ready(&self, ports: usize, vnis: &str) -> bool {
        let tunnels = self
            .printed
            .last_block(|b| table_of(b, "NODE") || b.starts_with("No tunnel ports"))
            .is_some_and(|b| {
                let rows = rows(&b);
                match ports {
                    0 => b.starts_with("No tunnel ports"),
                    n => {
                        table_of(&b, "NODE") && {
                            let ready = column(&b, "READY");
                            rows.len() == n && rows.iter().all(|r| r[ready] == "True")
                        }
                    }
                }
            });
        let gateway = self
            .printed
            .last_block(|b| table_of(b, "ENDPOINT"))
            .is_some_and(|b| {
                let rows = rows(&b);
                rows.len() == 1
                    && rows[0][0] == SWITCH
                    && rows[0][3] == vnis
                    && rows[0][4..] == ["True", "True"]
            });
        tunnels && gateway
    }

    /// Stops the operator and returns what it printed.
    fn stop(mut self) -> String {
        self.cancel.cancel();
        let result = self.thread.take().unwrap().join().expect("operator thread");
        let printed = self.printed.text();
        result.unwrap_or_else(|e| panic!("operator: {e:#}; printed:\n{printed}"));
        printed
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.cancel.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn lines(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// The node's tunnel ports in OVS (the rest of br-int is the pod's port).
fn tunnel_ports(sb: &Sandbox) -> Vec<String> {
    lines(&sb.vsctl(&["list-ports", "br-int"]).unwrap_or_default())
        .into_iter()
        .filter(|p| p != "pod0")
        .collect()
}

/// One answer within `tries` seconds (the switch needs a poll or two to apply a change).
fn ping(from: &Netns, target: &str, tries: u32) -> bool {
    (0..tries).any(|_| from.exec("ping", &["-c", "1", "-W", "1", target]).is_ok())
}

/// What the operator wrote on the switch for the device: its logical switch, the binding
/// on p1, and the node in its flood list.
fn assert_programmed(tor: &Tor) {
    assert_eq!(lines(&tor.vtep_ctl(&["list-ls"]).unwrap()), [LS]);
    assert_eq!(
        tor.vtep_ctl(&["get", "Logical_Switch", LS, "tunnel_key"])
            .unwrap()
            .trim(),
        "5001"
    );
    assert_eq!(
        lines(&tor.vtep_ctl(&["list-bindings", SWITCH, "p1"]).unwrap()),
        [format!("0000 {LS}")]
    );
    let remote = lines(&tor.vtep_ctl(&["list-remote-macs", LS]).unwrap());
    assert!(
        remote.contains(&format!("unknown-dst -> vxlan_over_ipv4/{NODE_VTEP}")),
        "{remote:?}"
    );
}

/// None of our rows: no logical switch, no binding, no remote MAC (unicast or flood).
fn assert_none_of_ours(tor: &Tor) {
    assert_eq!(tor.vtep_ctl(&["list-ls"]).unwrap().trim(), "");
    assert_eq!(
        tor.vtep_ctl(&["list-bindings", SWITCH, "p1"])
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
}

fn apply(topo: &Topology, op: &Operator, when: &str) {
    let started = Instant::now();
    op.wait(
        &format!("{when}: tunnel port and gateway Ready"),
        Duration::from_secs(30),
        |op| op.ready(1, "1"),
    );
    assert_programmed(topo.tor());
    assert_eq!(tunnel_ports(topo.sb()).len(), 1);
    assert!(
        ping(&topo.pod, DEVICE_IP, 20),
        "pod → device after {when}; {}\noperator printed:\n{}",
        topo.tor().log_tail(),
        op.printed.text()
    );
    eprintln!(
        "{when}: first pod → device reply after {:?}",
        started.elapsed()
    );
    assert!(ping(&topo.device, POD_IP, 10), "device → pod after {when}");
}

/// `DIR/<secret>/{tls.key,tls.crt,ca.crt}`: the controller's key and certificate and the
/// CA, as a mounted Secret lays them out.
fn secrets_dir(pki: &Pki, root: &Path) -> PathBuf {
    let dir = root.join("secrets");
    std::fs::create_dir_all(dir.join(SECRET)).unwrap();
    let client = pki.client("ca.pem");
    for (from, to) in [
        (&client.private_key, "tls.key"),
        (&client.certificate, "tls.crt"),
        (&client.ca_certificate, "ca.crt"),
    ] {
        std::fs::copy(from, dir.join(SECRET).join(to)).unwrap();
    }
    dir
}

#[test]
fn pod_reaches_a_device_on_a_hardware_vtep_programmed_by_the_operator() {
    if !require_root_and_tools(&["ip", "ethtool", "ping", "vtep-ctl", "openssl"]) {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let pki = Pki::make(&scratch.path().join("pki"));
    let topo = Topology::build(&pki);
    let manifests = scratch.path().join("manifests");
    std::fs::create_dir(&manifests).unwrap();
    std::fs::write(manifests.join("node.yaml"), NODE).unwrap();
    std::fs::write(
        manifests.join("gateway.yaml"),
        gateway(&topo.tor().ssl_endpoint()),
    )
    .unwrap();
    std::fs::write(manifests.join("device.yaml"), DEVICE).unwrap();
    let secrets = secrets_dir(&pki, scratch.path());
    let op = Operator::start(&topo, &manifests, &secrets);

    apply(&topo, &op, "apply");

    // BFD (on by default for an attached device) runs between the node's tunnel and the
    // switch's: the operator told both ends. Cutting the underlay makes the tunnel
    // unreachable within BFD's detection time (3 x 1 s); restoring it makes it reachable.
    let started = Instant::now();
    op.wait("Reachable=True", Duration::from_secs(30), |op| {
        reachable(op).as_deref() == Some("True")
    });
    eprintln!("BFD with the emulated switch up: {:?}", started.elapsed());
    // ovs-vtep copies its session's state into the Tunnel row on its own schedule.
    topo.tor().wait_for(|| {
        let shown = switch_bfd_state(topo.tor());
        (shown.contains(" state=up")).then_some(())
    });
    topo.host.ip(&["link", "set", "phy0", "down"]);
    let cut = Instant::now();
    op.wait(
        "Reachable=False after the cut",
        Duration::from_secs(15),
        |op| reachable(op).as_deref() == Some("False"),
    );
    eprintln!("underlay cut: Reachable=False after {:?}", cut.elapsed());
    topo.host.ip(&["link", "set", "phy0", "up"]);
    let back = Instant::now();
    op.wait(
        "Reachable=True after the repair",
        Duration::from_secs(30),
        |op| reachable(op).as_deref() == Some("True"),
    );
    eprintln!(
        "underlay restored: Reachable=True after {:?}",
        back.elapsed()
    );
    assert!(ping(&topo.pod, DEVICE_IP, 10), "ping after the repair");

    // Delete the device's manifest: the node's tunnel port and our rows on the switch go.
    std::fs::remove_file(manifests.join("device.yaml")).unwrap();
    op.wait(
        "no tunnel port, gateway Ready with nothing of ours",
        Duration::from_secs(30),
        |op| op.ready(0, "0"),
    );
    assert_none_of_ours(topo.tor());
    assert_eq!(tunnel_ports(topo.sb()), Vec::<String>::new());
    assert!(
        !ping(&topo.pod, DEVICE_IP, 2),
        "ping must fail after delete"
    );

    std::fs::write(manifests.join("device.yaml"), DEVICE).unwrap();
    apply(&topo, &op, "re-apply");

    let printed = op.stop();
    assert!(!printed.contains("rejected"), "{printed}");
}
