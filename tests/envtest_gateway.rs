//! The remote end on a real kube-apiserver: the controller binary (under the chart's
//! ServiceAccount and RBAC) programs an emulated hardware VTEP (Debian's `ovs-vtep`) from a
//! VtepGateway and RemoteDevices, and the switch's flood list follows nodes that join,
//! are relabelled and leave. Then the same over `ssl:` with the client certificate from a
//! Secret, and the gateway's deletion taking our rows off the switch.
//!
//! The switch's OVSDB lives in its own management namespace; the controller must also
//! reach the API server on loopback, so a byte relay ([`Relay`]) carries loopback
//! connections there (TLS passes through it end to end).

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Secret};
use kube::api::{Api, DeleteParams, PostParams};
use remote_device_operator::api::conditions::{REACHABLE, READY, find, is_true};
use remote_device_operator::api::{RemoteDevice, TunnelPort, VtepGateway};
use remote_device_operator::vtep::{CONNECTED, logical_switch_name};
use serde_json::json;
use support::cluster::{Cluster, RELEASE_NS, TENANT};
use support::envtest::{Options, apply_value, wait_for};
use support::netns::Netns;
use support::netns::require_root_and_tools;
use support::ovs::node_bridges;
use support::sandbox::{Datapath, Sandbox};
use support::vtep::{Pki, Relay, SSL_PORT, SWITCH, TCP_PORT, Tor, TorOptions};

const TOR_VTEP: &str = "192.168.200.2";
const VNI: u32 = 5001;
const LIMIT: Duration = Duration::from_secs(30);

fn gateway(endpoint: &str, secret: Option<&str>) -> serde_json::Value {
    let mut spec = json!({"endpoint": endpoint, "tunnelIPs": [TOR_VTEP]});
    if let Some(s) = secret {
        spec["tlsSecretName"] = json!(s);
    }
    json!({
        "apiVersion": "remotedevice.io/v1alpha1", "kind": "VtepGateway",
        "metadata": {"name": SWITCH}, "spec": spec,
    })
}

async fn apply_device(cluster: &Cluster) {
    apply_value(
        &cluster.admin,
        json!({
            "apiVersion": "remotedevice.io/v1alpha1", "kind": "RemoteDevice",
            "metadata": {"name": "bm1", "namespace": TENANT},
            "spec": {
                "vtepIP": TOR_VTEP, "vni": VNI, "macAddress": "52:54:00:00:50:01",
                "attachment": {"port": "p1", "vlan": 10},
                "nodeSelector": {"matchLabels": {"rack": "a"}},
            },
        }),
    )
    .await;
}

async fn current(cluster: &Cluster) -> Option<VtepGateway> {
    Api::<VtepGateway>::all(cluster.admin.clone())
        .get_opt(SWITCH)
        .await
        .ok()
        .flatten()
}

/// Waits until the gateway is Ready with exactly `flood` as the VNI's flood list, and
/// checks the switch's own database says the same.
async fn wait_flood(cluster: &Cluster, tor: &Tor, flood: &[&str]) {
    let want: Vec<String> = flood.iter().map(|s| s.to_string()).collect();
    let what = format!("gateway Ready with flood list {want:?}");
    wait_for(LIMIT, &what, || async {
        let gw = current(cluster).await?;
        let status = gw.status?;
        let ls = status.logical_switches.iter().find(|l| l.vni == VNI)?;
        (is_true(&status.conditions, READY)
            && status.observed_generation == gw.metadata.generation
            && ls.flood_vteps == want)
            .then_some(())
    })
    .await;
    let ls = logical_switch_name(VNI);
    let listed = tor
        .vtep_ctl(&["list-remote-macs", &ls])
        .unwrap_or_else(|e| panic!("{e}\n{}", cluster.log_tails()));
    let on_switch: BTreeSet<&str> = listed
        .lines()
        .filter(|l| l.contains("unknown-dst"))
        .flat_map(|l| l.split(|c: char| !(c.is_ascii_digit() || c == '.')))
        .filter(|w| w.matches('.').count() == 3)
        .collect();
    assert_eq!(
        on_switch,
        flood.iter().copied().collect(),
        "the switch's unknown-dst locators: {listed}\n{}",
        cluster.log_tails()
    );
}

/// What `kubectl get <resource>` shows: the API server's Table rendering.
async fn table(cluster: &Cluster, resource: &str) -> String {
    let request = http::Request::get(format!("/apis/remotedevice.io/v1alpha1/{resource}"))
        .header(
            "Accept",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        )
        .body(Vec::new())
        .unwrap();
    let table: serde_json::Value = cluster.admin.request(request).await.unwrap();
    let columns: Vec<String> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_uppercase())
        .collect();
    let mut out = columns.join("  ");
    for row in table["rows"].as_array().unwrap() {
        let cells: Vec<String> = row["cells"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.to_string().trim_matches('"').to_string())
            .collect();
        out.push('\n');
        out.push_str(&cells.join("  "));
    }
    out
}

fn ours_on_switch(tor: &Tor) -> Vec<String> {
    tor.vtep_ctl(&["list-ls"])
        .unwrap()
        .lines()
        .filter(|l| l.contains("rdo"))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_follows_nodes_over_tcp_and_ssl() {
    if !require_root_and_tools(&["ip", "vtep-ctl", "ovsdb-server", "openssl"]) {
        return;
    }
    let Some(mut cluster) = Cluster::start(Options::default()).await else {
        return;
    };
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = Pki::make(pki_dir.path());
    let tor = Tor::start(TorOptions {
        tag: "eg",
        tunnel_ip: TOR_VTEP,
        ports: vec![("p1", None)],
        uplink: None,
        pki: Some(&pki),
    });
    let tcp = Relay::start(&tor, TCP_PORT);
    let ssl = Relay::start(&tor, SSL_PORT);

    cluster
        .add_node("n1", &[("rack", "a")], "192.168.200.11")
        .await;
    cluster.start_controller("controller-a").await;
    apply_value(&cluster.admin, gateway(&tcp.endpoint("tcp"), None)).await;
    apply_device(&cluster).await;
    wait_flood(&cluster, &tor, &["192.168.200.11"]).await;
    let bindings = tor.vtep_ctl(&["list-bindings", SWITCH, "p1"]).unwrap();
    assert!(
        bindings
            .lines()
            .any(|l| l.trim_start().starts_with("0010") && l.contains(&logical_switch_name(VNI))),
        "p1 VLAN 10 bound to our logical switch: {bindings}"
    );
    let shown = table(&cluster, "vtepgateways").await;
    eprintln!("kubectl get vtepgateways:\n{shown}");
    assert!(shown.contains("READY") && shown.contains("True"), "{shown}");

    // A node joins, is relabelled out and back, and leaves: the locators follow.
    cluster
        .add_node("n2", &[("rack", "a")], "192.168.200.12")
        .await;
    wait_flood(&cluster, &tor, &["192.168.200.11", "192.168.200.12"]).await;
    cluster.relabel_node("n2", &[("rack", "b")]).await;
    wait_flood(&cluster, &tor, &["192.168.200.11"]).await;
    cluster.relabel_node("n2", &[("rack", "a")]).await;
    wait_flood(&cluster, &tor, &["192.168.200.11", "192.168.200.12"]).await;
    Api::<Node>::all(cluster.admin.clone())
        .delete("n2", &DeleteParams::default())
        .await
        .unwrap();
    wait_flood(&cluster, &tor, &["192.168.200.11"]).await;

    // ssl: first with a Secret that does not exist yet: said so, nothing else changes.
    apply_value(
        &cluster.admin,
        gateway(&ssl.endpoint("ssl"), Some("tor1-client")),
    )
    .await;
    wait_for(LIMIT, "Connected=False TLSSecretUnavailable", || async {
        let status = current(&cluster).await?.status?;
        let c = find(&status.conditions, CONNECTED)?;
        (c.status == "False" && c.reason == "TLSSecretUnavailable").then_some(())
    })
    .await;
    assert_eq!(ours_on_switch(&tor).len(), 1, "the switch keeps our rows");
    let files = pki.client("ca.pem");
    let read = |p: &std::path::Path| k8s_openapi::ByteString(std::fs::read(p).unwrap());
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("tor1-client".into()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(
            [
                ("tls.key".to_string(), read(&files.private_key)),
                ("tls.crt".to_string(), read(&files.certificate)),
                ("ca.crt".to_string(), read(&files.ca_certificate)),
            ]
            .into(),
        ),
        ..Default::default()
    };
    Api::<Secret>::namespaced(cluster.admin.clone(), RELEASE_NS)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    wait_for(LIMIT, "Connected over ssl:", || async {
        let status = current(&cluster).await?.status?;
        let c = find(&status.conditions, CONNECTED)?;
        (c.status == "True" && c.message.contains("ssl:")).then_some(())
    })
    .await;
    wait_flood(&cluster, &tor, &["192.168.200.11"]).await;

    // The last device of the VNI gone → its logical switch goes; back → it returns.
    Api::<RemoteDevice>::namespaced(cluster.admin.clone(), TENANT)
        .delete("bm1", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(LIMIT, "no logical switch of ours", || async {
        let status = current(&cluster).await?.status?;
        (is_true(&status.conditions, READY) && status.logical_switch_count == 0).then_some(())
    })
    .await;
    // An emptied list leaves the stored status too (a merge patch would keep the old one).
    let status = current(&cluster).await.and_then(|g| g.status).unwrap();
    assert!(
        status.logical_switches.is_empty(),
        "stale logical switches in the status: {:?}",
        status.logical_switches
    );
    assert!(
        ours_on_switch(&tor).is_empty(),
        "{:?}",
        ours_on_switch(&tor)
    );
    apply_device(&cluster).await;
    wait_flood(&cluster, &tor, &["192.168.200.11"]).await;

    // Deleting the gateway takes our rows off the switch before the object goes.
    Api::<VtepGateway>::all(cluster.admin.clone())
        .delete(SWITCH, &DeleteParams::default())
        .await
        .unwrap();
    wait_for(LIMIT, "the VtepGateway gone", || async {
        current(&cluster).await.is_none().then_some(())
    })
    .await;
    assert!(
        ours_on_switch(&tor).is_empty(),
        "{:?}",
        ours_on_switch(&tor)
    );
    let refused = cluster.refused_requests();
    assert!(refused.is_empty(), "requests refused: {refused:?}");
}

/// The TunnelPort of n1 towards the switch: its Reachable condition's status and reason.
async fn reachability(cluster: &Cluster) -> Option<(String, String)> {
    let tps: Vec<TunnelPort> = Api::<TunnelPort>::all(cluster.admin.clone())
        .list(&Default::default())
        .await
        .ok()?
        .items;
    let tp = tps.iter().find(|t| t.spec.remote_ip == BFD_TOR_VTEP)?;
    let c = find(&tp.status.as_ref()?.conditions, REACHABLE)?;
    Some((c.status.clone(), c.reason.clone()))
}

const BFD_TOR_VTEP: &str = "192.168.201.2";
const BFD_NODE_VTEP: &str = "192.168.201.1";

/// BFD between a node's real userspace OVS and the emulated switch, both configured by
/// the operator from one attached RemoteDevice: `kubectl get tunnelports` shows REACHABLE
/// True; the underlay cut → False with BFD's diagnostic, the device "0/1"; restored → True.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reachability_shows_in_kubectl_get_tunnelports() {
    if !require_root_and_tools(&["ip", "ethtool", "vtep-ctl", "ovsdb-server"]) {
        return;
    }
    let Some(mut cluster) = Cluster::start(Options::default()).await else {
        return;
    };
    let host = Netns::new("ebh");
    host.ip(&[
        "link", "add", "pod0", "type", "veth", "peer", "name", "pod0x",
    ]);
    host.ip(&["link", "set", "pod0", "up"]);
    host.ip(&["link", "set", "pod0x", "up"]);
    let tor = Tor::start(TorOptions {
        tag: "eb",
        tunnel_ip: BFD_TOR_VTEP,
        ports: vec![("p1", None)],
        uplink: Some((&host, "phy0")),
        pki: None,
    });
    host.exec("ethtool", &["-K", "phy0", "tx", "off"]).unwrap();
    host.ip(&["link", "set", "phy0", "up"]);
    let sandbox = host
        .enter(|| Sandbox::start(Datapath::Netdev))
        .expect("OVS sandbox");
    host.enter(|| sandbox.restart_vswitchd_with_system_routes())
        .expect("restart vswitchd");
    node_bridges(&sandbox, &host, BFD_NODE_VTEP);
    let tor_mac = tor.ns.mac("br-phy");
    sandbox
        .appctl(&["tnl/neigh/set", "br-phy", BFD_TOR_VTEP, &tor_mac])
        .unwrap();
    tor.seed_neighbour(BFD_NODE_VTEP, &host.mac("br-phy"));
    let relay = Relay::start(&tor, TCP_PORT);

    cluster
        .add_node_with_sandbox("n1", &[("rack", "a")], BFD_NODE_VTEP, sandbox)
        .await;
    cluster.start_controller("controller-a").await;
    let mut gw = gateway(&relay.endpoint("tcp"), None);
    gw["spec"]["tunnelIPs"] = json!([BFD_TOR_VTEP]);
    apply_value(&cluster.admin, gw).await;
    apply_value(
        &cluster.admin,
        json!({
            "apiVersion": "remotedevice.io/v1alpha1", "kind": "RemoteDevice",
            "metadata": {"name": "bm2", "namespace": TENANT},
            "spec": {"vtepIP": BFD_TOR_VTEP, "vni": 5002, "macAddress": "52:54:00:00:50:02",
                     "attachment": {"port": "p1"}},
        }),
    )
    .await;

    let applied = std::time::Instant::now();
    wait_for(LIMIT, "TunnelPort Reachable=True", || async {
        let (status, _) = reachability(&cluster).await?;
        (status == "True").then_some(())
    })
    .await;
    eprintln!("apply → Reachable=True: {:?}", applied.elapsed());
    let shown = table(&cluster, "tunnelports").await;
    eprintln!("kubectl get tunnelports:\n{shown}");
    let header: Vec<&str> = shown.lines().next().unwrap().split("  ").collect();
    let at = header
        .iter()
        .position(|c| *c == "REACHABLE")
        .expect("REACHABLE column");
    let row: Vec<&str> = shown.lines().nth(1).unwrap().split("  ").collect();
    assert_eq!(row[at], "True", "{shown}");
    wait_for(
        LIMIT,
        "the switch's tunnel BFD up on the VtepGateway",
        || async {
            let status = current(&cluster).await?.status?;
            status
                .tunnels
                .iter()
                .any(|t| t.remote_ip == BFD_NODE_VTEP && t.bfd_state.as_deref() == Some("up"))
                .then_some(())
        },
    )
    .await;
    wait_for(LIMIT, "device reachable 1/1", || async {
        let d = Api::<RemoteDevice>::namespaced(cluster.admin.clone(), TENANT)
            .get("bm2")
            .await
            .ok()?;
        (d.status?.reachable.as_deref() == Some("1/1")).then_some(())
    })
    .await;

    host.ip(&["link", "set", "phy0", "down"]);
    let cut = std::time::Instant::now();
    let (_, reason) = wait_for(LIMIT, "TunnelPort Reachable=False", || async {
        let (status, reason) = reachability(&cluster).await?;
        (status == "False").then_some(((), reason))
    })
    .await;
    eprintln!(
        "underlay cut → Reachable=False ({reason}) after {:?}",
        cut.elapsed()
    );
    let shown = table(&cluster, "tunnelports").await;
    eprintln!("kubectl get tunnelports:\n{shown}");
    wait_for(LIMIT, "device reachable 0/1", || async {
        let d = Api::<RemoteDevice>::namespaced(cluster.admin.clone(), TENANT)
            .get("bm2")
            .await
            .ok()?;
        (d.status?.reachable.as_deref() == Some("0/1")).then_some(())
    })
    .await;

    host.ip(&["link", "set", "phy0", "up"]);
    let back = std::time::Instant::now();
    wait_for(LIMIT, "TunnelPort Reachable=True again", || async {
        let (status, _) = reachability(&cluster).await?;
        (status == "True").then_some(())
    })
    .await;
    eprintln!(
        "underlay restored → Reachable=True after {:?}",
        back.elapsed()
    );
    let refused = cluster.refused_requests();
    assert!(refused.is_empty(), "requests refused: {refused:?}");
    drop(cluster);
    drop(tor);
}
