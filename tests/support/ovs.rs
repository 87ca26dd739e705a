//! Small helpers around the OVS sandbox shared by the flow tests.

use std::time::{Duration, Instant};

use super::sandbox::Sandbox;

/// Waits until vswitchd has numbered `iface` and returns its ofport.
pub fn wait_ofport(sb: &Sandbox, iface: &str) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = sb.vsctl(&["get", "Interface", iface, "ofport"]).unwrap();
        if let Ok(p) = out.trim().parse::<i64>()
            && p > 0
        {
            return p;
        }
        assert!(Instant::now() < deadline, "no ofport for {iface}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The node's two bridges as the dataplane tests build them in the node's namespace `host`:
/// `br-int` (netdev, secure) with the workload port `pod0`, and `br-phy` (netdev) with the
/// uplink `phy0` and the node's VTEP address `vtep_ip/24`; returns once vswitchd has
/// numbered both and learned the route to the underlay (and the VTEP address as local,
/// which a tunnel with `local_ip` needs) from the namespace's kernel.
pub fn node_bridges(sb: &Sandbox, host: &super::netns::Netns, vtep_ip: &str) {
    sb.vsctl(&[
        "add-br",
        "br-int",
        "--",
        "set",
        "Bridge",
        "br-int",
        "datapath_type=netdev",
        "fail-mode=secure",
        "--",
        "add-port",
        "br-int",
        "pod0",
        "--",
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
        "phy0",
    ])
    .expect("bridges");
    wait_ofport(sb, "pod0");
    wait_ofport(sb, "br-phy");
    host.ip(&["addr", "add", &format!("{vtep_ip}/24"), "dev", "br-phy"]);
    host.ip(&["link", "set", "br-phy", "up"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let routes = sb.appctl(&["ovs/route/show"]).unwrap_or_default();
        if routes.contains("dev br-phy") && routes.contains(vtep_ip) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "OVS never learned the underlay route: {routes}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
