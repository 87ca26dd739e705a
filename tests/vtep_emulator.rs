//! The gateway writer against the emulated hardware VTEP (`ovs-vtep`): it alone programs
//! the switch, removes a node from the flood set, removes everything of its own when the
//! last device goes, and never touches a row made by hand. Needs root and the
//! `openvswitch-vtep` + `python3-openvswitch` packages; see `support::vtep`.

mod support;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use remote_device_operator::ovsdb::{Client, ClientOptions, Endpoint, Operation, OvsdbError};
use remote_device_operator::vtep::{
    Attachment, FabricState, GatewayObserved, SegmentInput, plan_fabric,
};
use support::netns::require_root_and_tools;
use support::vtep::{Gateway, Pki, SWITCH, Tor, TorOptions, enter_netns};

const VNI: u32 = 5001;
const LS: &str = "rdo-vni-5001";

fn desired(nodes: &[&str]) -> FabricState {
    let seg = SegmentInput {
        attachments: vec![Attachment {
            port: "p1".into(),
            vlan: 0,
            macs: vec!["52:54:00:00:50:01".into()],
        }],
        node_vteps: nodes.iter().map(|n| n.parse::<IpAddr>().unwrap()).collect(),
        workload_macs: vec![],
    };
    let s = plan_fabric(&[(VNI, seg)].into());
    assert!(s.problems.is_empty(), "{:?}", s.problems);
    s
}

fn synced(o: &GatewayObserved) -> bool {
    o.connected && o.in_sync && o.conflicts.is_empty()
}

/// Our logical switch's flood list as the writer last saw it in the database.
fn flood_of(o: &GatewayObserved) -> Vec<&str> {
    o.flood
        .get(&VNI)
        .map(|ips| ips.iter().map(String::as_str).collect())
        .unwrap_or_default()
}

fn lines(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

fn needs() -> bool {
    require_root_and_tools(&["ip", "ethtool", "vtep-ctl", "ovsdb-server", "openssl"])
        && std::path::Path::new("/usr/share/openvswitch/scripts/ovs-vtep").exists()
}

/// Programs, shrinks, retires; checks exactly the rows `vtep-ctl` shows.
fn exercise(tor: &Tor, gw: &mut Gateway) {
    let started = Instant::now();
    // Unknown desired state: nothing written.
    gw.converge(None, "connected", Duration::from_secs(10), |o| {
        o.connected && o.switch.is_some()
    });
    assert_eq!(tor.vtep_ctl(&["list-ls"]).unwrap().trim(), "");

    // Each wait names what the database must show: `synced` alone also holds for the
    // report made before the writer read the new desired state.
    let o = gw.converge(
        Some(desired(&["192.168.100.1", "192.168.100.3"])),
        "programmed",
        Duration::from_secs(10),
        |o| synced(o) && flood_of(o) == ["192.168.100.1", "192.168.100.3"],
    );
    assert_eq!(o.managed.get(&VNI).map(String::as_str), Some(LS));
    eprintln!("programmed in {:?}", started.elapsed());
    assert_eq!(lines(&tor.vtep_ctl(&["list-ls"]).unwrap()), vec![LS]);
    assert_eq!(
        tor.vtep_ctl(&["get", "Logical_Switch", LS, "tunnel_key"])
            .unwrap()
            .trim(),
        "5001"
    );
    assert_eq!(
        lines(&tor.vtep_ctl(&["list-bindings", SWITCH, "p1"]).unwrap()),
        vec![format!("0000 {LS}")]
    );
    let remote = lines(&tor.vtep_ctl(&["list-remote-macs", LS]).unwrap());
    assert_eq!(
        remote,
        vec![
            "ucast-mac-remote".to_string(),
            "mcast-mac-remote".to_string(),
            "unknown-dst -> vxlan_over_ipv4/192.168.100.1".to_string(),
            "unknown-dst -> vxlan_over_ipv4/192.168.100.3".to_string(),
        ]
    );
    let status = o.switch.expect("switch status");
    assert_eq!(status.tunnel_ips, vec!["192.168.100.2".to_string()]);
    assert!(status.ports.iter().any(|p| p.name == "p1"), "{status:?}");

    // The switch took the binding up: its own row for our logical switch exists, so
    // retiring below has to wait for the switch to release it.
    let local = tor.wait_for(|| {
        let macs = tor.vtep_ctl(&["list-local-macs", LS]).unwrap_or_default();
        macs.contains("unknown-dst").then_some(macs)
    });
    assert!(local.contains("vxlan_over_ipv4/192.168.100.2"), "{local}");

    // Rows made by hand: another logical switch, bound on p1 VLAN 7.
    tor.vtep_ctl(&[
        "add-ls",
        "foreign",
        "--",
        "set",
        "Logical_Switch",
        "foreign",
        "tunnel_key=7777",
    ])
    .unwrap();
    tor.vtep_ctl(&["bind-ls", SWITCH, "p1", "7", "foreign"])
        .unwrap();

    // A node removed: its locator leaves the flood set.
    gw.converge(
        Some(desired(&["192.168.100.1"])),
        "node removed",
        Duration::from_secs(10),
        |o| synced(o) && flood_of(o) == ["192.168.100.1"],
    );
    let remote = lines(&tor.vtep_ctl(&["list-remote-macs", LS]).unwrap());
    assert_eq!(
        remote[2..],
        ["unknown-dst -> vxlan_over_ipv4/192.168.100.1".to_string()]
    );

    // Last device gone: none of ours remain (the switch releases the logical switch
    // within a poll or two of ovs-vtep); the foreign rows are untouched.
    let t = Instant::now();
    gw.converge(
        Some(FabricState::default()),
        "all ours gone",
        Duration::from_secs(20),
        |o| synced(o) && o.managed.is_empty() && o.pending.is_empty(),
    );
    eprintln!("retired in {:?}", t.elapsed());
    assert_eq!(lines(&tor.vtep_ctl(&["list-ls"]).unwrap()), vec!["foreign"]);
    assert_eq!(
        lines(&tor.vtep_ctl(&["list-bindings", SWITCH, "p1"]).unwrap()),
        vec!["0007 foreign"]
    );
    assert_eq!(
        tor.vtep_ctl(&["get", "Logical_Switch", "foreign", "tunnel_key"])
            .unwrap()
            .trim(),
        "7777"
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

#[test]
fn writer_alone_programs_the_emulated_switch_over_tcp() {
    if !needs() {
        return;
    }
    let tor = Tor::start(TorOptions {
        tag: "vw",
        tunnel_ip: "192.168.100.2",
        ports: vec![("p1", None)],
        uplink: None,
        pki: None,
    });
    let mut gw = Gateway::spawn(&tor, tor.tcp_endpoint(), None);
    exercise(&tor, &mut gw);
}

#[test]
fn writer_programs_the_emulated_switch_over_ssl() {
    if !needs() {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let pki = Pki::make(scratch.path());
    let tor = Tor::start(TorOptions {
        tag: "vs",
        tunnel_ip: "192.168.100.2",
        ports: vec![("p1", None)],
        uplink: None,
        pki: Some(&pki),
    });
    // The wrong CA: never connected, and the error says why.
    {
        let mut bad = Gateway::spawn(&tor, tor.ssl_endpoint(), Some(pki.client("other-ca.pem")));
        let o = bad.converge(None, "a clear TLS error", Duration::from_secs(10), |o| {
            o.last_error
                .as_deref()
                .is_some_and(|e| e.contains("not signed by the configured CA"))
        });
        assert!(!o.connected);
    }
    let mut gw = Gateway::spawn(&tor, tor.ssl_endpoint(), Some(pki.client("ca.pem")));
    exercise(&tor, &mut gw);
}

/// The OVSDB client alone over `ssl:` against the switch's ovsdb-server (`pssl:`):
/// list_dbs, a transaction; the wrong CA is a clear connect error.
#[test]
fn ovsdb_client_speaks_ssl_to_a_real_ovsdb_server() {
    if !needs() {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let pki = Pki::make(scratch.path());
    let tor = Tor::start(TorOptions {
        tag: "vc",
        tunnel_ip: "192.168.100.2",
        ports: vec![],
        uplink: None,
        pki: Some(&pki),
    });
    let ns = tor.ctl.name().to_string();
    let endpoint: Endpoint = tor.ssl_endpoint().parse().unwrap();
    let (good, bad) = (pki.client("ca.pem"), pki.client("other-ca.pem"));
    std::thread::spawn(move || {
        enter_netns(&ns);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut options = ClientOptions::for_endpoint(&endpoint);
            options.tls = Some(good);
            let (client, _notes) = Client::connect(&endpoint, options.clone()).await.unwrap();
            let dbs = client.list_dbs().await.unwrap();
            assert!(dbs.contains(&"hardware_vtep".to_string()), "{dbs:?}");
            let ops = [Operation::Select {
                table: "Physical_Switch".into(),
                conditions: vec![],
                columns: Some(vec!["name".into()]),
            }];
            let r = client.transact("hardware_vtep", &ops).await.unwrap();
            let names: Vec<_> = r[0]
                .rows
                .as_ref()
                .unwrap()
                .iter()
                .filter_map(|row| row["name"].as_str().map(str::to_string))
                .collect();
            assert_eq!(names, vec![SWITCH.to_string()]);
            options.tls = Some(bad);
            let err = Client::connect(&endpoint, options.clone())
                .await
                .err()
                .expect("refused");
            assert!(matches!(err, OvsdbError::Connect { .. }), "{err}");
            assert!(
                err.to_string().contains("not signed by the configured CA"),
                "{err}"
            );
            options.tls = None;
            let err = Client::connect(&endpoint, options)
                .await
                .err()
                .expect("refused");
            assert!(err.to_string().contains("needs a private key"), "{err}");
        });
    })
    .join()
    .expect("ssl client checks");
}
