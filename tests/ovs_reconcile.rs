//! The reconcile loop against real OVS: each test starts its own ovsdb-server and
//! ovs-vswitchd (dummy datapath) in a temp dir; the sandbox stops them by pid on drop.

#[path = "support/sandbox.rs"]
#[allow(dead_code)]
mod sandbox;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use remote_device_operator::api::{TunnelId, TunnelPort, TunnelPortSpec, TunnelType};
use remote_device_operator::ovs::{Observed, OvsConfig, OvsError, PortState, run};
use sandbox::{Datapath, Options, Sandbox};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const BR: &str = "br-int";

fn sandbox() -> Sandbox {
    Sandbox::start_with(Options {
        datapath: Datapath::Dummy,
        tcp: false,
    })
    .expect("OVS is installed")
}

fn tp(
    name: &str,
    t: TunnelType,
    remote: &str,
    dst: Option<u16>,
    local: Option<&str>,
) -> TunnelPort {
    TunnelPort::new(
        name,
        TunnelPortSpec {
            node_name: "n1".into(),
            remote_ip: remote.into(),
            tunnel_type: t,
            dst_port: dst,
            local_ip: local.map(str::to_string),
            devices: Default::default(),
            bfd: None,
        },
    )
}

fn iface(t: &TunnelPort) -> String {
    TunnelId::of(&t.spec).unwrap().interface_name()
}

/// `n` vxlan tunnels to 198.18.x.y (the benchmarking range; nothing is sent).
fn many(prefix: &str, n: usize, offset: usize) -> Vec<TunnelPort> {
    (offset..offset + n)
        .map(|i| {
            tp(
                &format!("{prefix}-{i}"),
                TunnelType::Vxlan,
                &format!("198.18.{}.{}", i / 250, i % 250 + 1),
                None,
                None,
            )
        })
        .collect()
}

struct Agent {
    desired: watch::Sender<Option<Vec<TunnelPort>>>,
    observed: watch::Receiver<Observed>,
    shutdown: CancellationToken,
    task: Option<JoinHandle<Result<(), OvsError>>>,
}

impl Agent {
    fn start(endpoint: String, desired: Option<Vec<TunnelPort>>) -> Agent {
        let (dtx, drx) = watch::channel(desired);
        let (otx, orx) = watch::channel(Observed::default());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(
            OvsConfig::new(endpoint, BR),
            drx,
            otx,
            shutdown.clone(),
        ));
        Agent {
            desired: dtx,
            observed: orx,
            shutdown,
            task: Some(task),
        }
    }

    fn set(&self, desired: Vec<TunnelPort>) {
        self.desired.send_replace(Some(desired));
    }

    async fn wait(&mut self, what: &str, pred: impl Fn(&Observed) -> bool) -> Observed {
        let rx = &mut self.observed;
        let found = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                {
                    let o = rx.borrow_and_update();
                    if pred(&o) {
                        return o.clone();
                    }
                }
                rx.changed().await.expect("the agent stopped");
            }
        })
        .await;
        match found {
            Ok(o) => o,
            Err(_) => {
                let o = self.observed.borrow();
                let not_ready: Vec<_> = o
                    .ports
                    .iter()
                    .filter(|(_, r)| r.state != PortState::Ready)
                    .take(5)
                    .collect();
                panic!(
                    "timed out waiting for {what}: connected={} ports={} txns={} err={:?} e.g. {not_ready:?}",
                    o.connected,
                    o.ports.len(),
                    o.transactions,
                    o.last_error
                );
            }
        }
    }

    /// Waits until exactly `want` are reported, all Ready with an ofport, each on the
    /// interface its spec names. Matching names alone would accept the observation made
    /// before the latest `set` when a TunnelPort keeps its name but gets a new interface.
    async fn converge(&mut self, want: &[TunnelPort]) -> Observed {
        let want: BTreeMap<String, String> = want
            .iter()
            .map(|t| (t.metadata.name.clone().unwrap(), iface(t)))
            .collect();
        self.wait("convergence", move |o| {
            o.connected
                && o.ports.len() == want.len()
                && o.ports.iter().all(|(name, r)| {
                    want.get(name) == Some(&r.interface_name)
                        && r.state == PortState::Ready
                        && r.ofport.is_some_and(|p| p > 0)
                })
        })
        .await
    }

    async fn stop(mut self) {
        self.shutdown.cancel();
        let r = self.task.take().unwrap().await.unwrap();
        assert!(r.is_ok(), "{r:?}");
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

fn lines(s: String) -> Vec<String> {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// Every Port and Interface name in the database (any bridge), sorted.
fn all_rows(sb: &Sandbox) -> (Vec<String>, Vec<String>) {
    let mut ports = lines(
        sb.vsctl(&["--bare", "--columns=name", "list", "Port"])
            .unwrap(),
    );
    let mut ifaces = lines(
        sb.vsctl(&["--bare", "--columns=name", "list", "Interface"])
            .unwrap(),
    );
    ports.sort();
    ifaces.sort();
    (ports, ifaces)
}

/// Asserts OVS holds exactly `want` tunnel ports (plus the bridge's own port), no
/// duplicates, nothing leaked.
fn assert_exactly(sb: &Sandbox, want: &[TunnelPort], extra: &[&str]) {
    let mut expected: Vec<String> = want.iter().map(iface).collect();
    expected.push(BR.to_string());
    expected.extend(extra.iter().map(|s| s.to_string()));
    expected.sort();
    let (ports, ifaces) = all_rows(sb);
    assert_eq!(ports.len(), expected.len(), "Port rows");
    assert_eq!(ports, expected);
    assert_eq!(ifaces, expected);
}

fn get(sb: &Sandbox, table: &str, row: &str, col: &str) -> String {
    sb.vsctl(&["get", table, row, col])
        .unwrap()
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_updates_and_deletes_vxlan_geneve_and_gre_tunnels() {
    let sb = sandbox();
    let vx = tp("vx", TunnelType::Vxlan, "192.0.2.10", None, None);
    let gn = tp(
        "gn",
        TunnelType::Geneve,
        "192.0.2.11",
        Some(6082),
        Some("192.0.2.1"),
    );
    let gr = tp("gr", TunnelType::Gre, "2001:db8::11", None, None);
    let mut agent = Agent::start(
        sb.endpoint(),
        Some(vec![vx.clone(), gn.clone(), gr.clone()]),
    );
    let o = agent.converge(&[vx.clone(), gn.clone(), gr.clone()]).await;
    assert_eq!(
        o.transactions, 1,
        "bridge and three ports in one transaction"
    );
    assert_exactly(&sb, &[vx.clone(), gn.clone(), gr.clone()], &[]);
    assert_eq!(get(&sb, "Bridge", BR, "fail_mode"), "secure");
    assert_eq!(get(&sb, "Interface", &iface(&vx), "type"), "vxlan");
    assert_eq!(
        get(&sb, "Interface", &iface(&vx), "options"),
        r#"{key=flow, remote_ip="192.0.2.10"}"#
    );
    assert_eq!(get(&sb, "Interface", &iface(&gn), "type"), "geneve");
    assert_eq!(
        get(&sb, "Interface", &iface(&gn), "options"),
        r#"{dst_port="6082", key=flow, local_ip="192.0.2.1", remote_ip="192.0.2.11"}"#
    );
    assert_eq!(get(&sb, "Interface", &iface(&gr), "type"), "gre");
    assert_eq!(
        get(&sb, "Port", &iface(&gr), "external_ids"),
        r#"{"remotedevice.io/owner"=remote-device-operator, "remotedevice.io/tunnelport"=gr}"#
    );
    assert_eq!(
        o.ports["vx"].ofport.unwrap().to_string(),
        get(&sb, "Interface", &iface(&vx), "ofport")
    );

    // Update: a local IP for the vxlan tunnel changes it in place.
    let vx2 = tp(
        "vx",
        TunnelType::Vxlan,
        "192.0.2.10",
        None,
        Some("192.0.2.1"),
    );
    let before = agent.observed.borrow().transactions;
    agent.set(vec![vx2.clone(), gn.clone(), gr.clone()]);
    // In sync after a transaction sent since the change: in_sync alone may still be
    // the report from before it.
    agent
        .wait("local_ip applied", move |o| {
            o.in_sync
                && o.transactions > before
                && o.ports
                    .get("vx")
                    .is_some_and(|r| r.state == PortState::Ready)
        })
        .await;
    assert!(get(&sb, "Interface", &iface(&vx), "options").contains(r#"local_ip="192.0.2.1""#));
    // A new destination port is a new tunnel (new name): the old one goes.
    let gn2 = tp(
        "gn",
        TunnelType::Geneve,
        "192.0.2.11",
        None,
        Some("192.0.2.1"),
    );
    agent.set(vec![vx2.clone(), gn2.clone(), gr.clone()]);
    agent
        .converge(&[vx2.clone(), gn2.clone(), gr.clone()])
        .await;
    agent.wait("in sync", |o| o.in_sync).await;
    assert_exactly(&sb, &[vx2.clone(), gn2.clone(), gr.clone()], &[]);

    // Delete: only the gre tunnel stays.
    agent.set(vec![gr.clone()]);
    agent.converge(std::slice::from_ref(&gr)).await;
    assert_exactly(&sb, std::slice::from_ref(&gr), &[]);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_ports_in_one_pass() {
    let sb = sandbox();
    let want = many("t", 1000, 0);
    let mut agent = Agent::start(sb.endpoint(), Some(want.clone()));
    let o = agent.converge(&want).await;
    assert_eq!(
        o.transactions, 1,
        "one transaction for the bridge and 1000 ports"
    );
    assert_exactly(&sb, &want, &[]);
    let ofports: BTreeSet<i64> = o.ports.values().filter_map(|r| r.ofport).collect();
    assert_eq!(ofports.len(), 1000, "distinct ofports");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_repaired() {
    let sb = sandbox();
    let a = tp("a", TunnelType::Vxlan, "192.0.2.20", None, None);
    let b = tp("b", TunnelType::Geneve, "192.0.2.21", None, None);
    let want = vec![a.clone(), b.clone()];
    let mut agent = Agent::start(sb.endpoint(), Some(want.clone()));
    agent.converge(&want).await;

    // Someone deletes a managed port.
    let txns = agent.observed.borrow().transactions;
    sb.vsctl(&["del-port", BR, &iface(&a)]).unwrap();
    // The repair is usually done before the test sees the deletion in `observed`.
    agent
        .wait("the deletion repaired", |o| {
            o.transactions > txns && o.in_sync && o.ports["a"].state == PortState::Ready
        })
        .await;
    assert_exactly(&sb, &want, &[]);

    // Someone edits options and the type of a managed interface.
    let txns = agent.observed.borrow().transactions;
    sb.vsctl(&[
        "set",
        "Interface",
        &iface(&b),
        "options:remote_ip=203.0.113.99",
        "options:csum=true",
        "type=vxlan",
    ])
    .unwrap();
    agent
        .wait("the edit is undone", |o| {
            o.transactions > txns && o.in_sync && o.ports["b"].state == PortState::Ready
        })
        .await;
    assert_eq!(get(&sb, "Interface", &iface(&b), "type"), "geneve");
    assert_eq!(
        get(&sb, "Interface", &iface(&b), "options"),
        r#"{key=flow, remote_ip="192.0.2.21"}"#
    );
    // Someone moves the (same) port row to another bridge.
    sb.vsctl(&["add-br", "br-other"]).unwrap();
    let port = get(&sb, "Port", &iface(&a), "_uuid");
    let txns = agent.observed.borrow().transactions;
    sb.vsctl(&[
        "remove", "Bridge", BR, "ports", &port, "--", "add", "Bridge", "br-other", "ports", &port,
    ])
    .unwrap();
    agent
        .wait("moved back", |o| o.transactions > txns && o.in_sync)
        .await;
    assert_eq!(get(&sb, "Port", &iface(&a), "_uuid"), port, "the same row");
    assert_eq!(
        lines(sb.vsctl(&["port-to-br", &iface(&a)]).unwrap()),
        vec![BR.to_string()]
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_ports_are_never_touched() {
    let sb = sandbox();
    let clash_name = tp("clash-name", TunnelType::Vxlan, "192.0.2.30", None, None);
    let clash_tunnel = tp("clash-tunnel", TunnelType::Geneve, "192.0.2.31", None, None);
    let mine = tp("mine", TunnelType::Gre, "192.0.2.32", None, None);
    sb.vsctl(&["add-br", BR]).unwrap();
    sb.vsctl(&[
        "add-port",
        BR,
        "vm1",
        "tag=10",
        "--",
        "set",
        "Interface",
        "vm1",
        "type=internal",
    ])
    .unwrap();
    // A foreign port that happens to have our interface name.
    sb.vsctl(&[
        "add-port",
        BR,
        &iface(&clash_name),
        "--",
        "set",
        "Interface",
        &iface(&clash_name),
        "type=internal",
    ])
    .unwrap();
    // A foreign tunnel to the same place as one of ours.
    sb.vsctl(&[
        "add-port",
        BR,
        "their-gnv",
        "--",
        "set",
        "Interface",
        "their-gnv",
        "type=geneve",
        "options:remote_ip=192.0.2.31",
        "options:key=flow",
    ])
    .unwrap();
    let snapshot = |sb: &Sandbox| {
        ["vm1", "their-gnv", iface(&clash_name).as_str()]
            .iter()
            .map(|n| {
                (
                    get(sb, "Interface", n, "type"),
                    get(sb, "Interface", n, "options"),
                    get(sb, "Port", n, "tag"),
                    get(sb, "Port", n, "external_ids"),
                    get(sb, "Port", n, "_uuid"),
                )
            })
            .collect::<Vec<_>>()
    };
    let before = snapshot(&sb);

    let mut agent = Agent::start(
        sb.endpoint(),
        Some(vec![clash_name.clone(), clash_tunnel.clone(), mine.clone()]),
    );
    let o = agent
        .wait("mine ready, clashes reported", |o| {
            o.in_sync
                && o.ports
                    .get("mine")
                    .is_some_and(|r| r.state == PortState::Ready)
        })
        .await;
    assert!(
        matches!(o.ports["clash-name"].state, PortState::ForeignConflict(ref m) if m.contains("not managed")),
        "{:?}",
        o.ports["clash-name"]
    );
    assert!(
        matches!(o.ports["clash-tunnel"].state, PortState::ForeignConflict(ref m) if m.contains("their-gnv")),
        "{:?}",
        o.ports["clash-tunnel"]
    );
    let vm1 = o
        .local_ports
        .iter()
        .find(|p| p.name == "vm1")
        .expect("vm1 listed");
    assert_eq!(vm1.tag, Some(10));
    assert_eq!(vm1.interface_type, "internal");
    assert!(vm1.ofport > 0);
    assert!(
        o.local_ports
            .iter()
            .all(|p| p.name != iface(&mine) && p.name != BR)
    );

    // Nothing desired any more: ours goes, theirs stay exactly as they were.
    agent.set(vec![]);
    agent
        .wait("mine removed", |o| o.in_sync && o.ports.is_empty())
        .await;
    assert_eq!(snapshot(&sb), before);
    assert_exactly(&sb, &[], &["vm1", "their-gnv", &iface(&clash_name)]);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_ports_are_swept_only_once_desired_is_known_and_shutdown_deletes_nothing() {
    let sb = sandbox();
    let want = many("s", 3, 0);
    let mut first = Agent::start(sb.endpoint(), Some(want.clone()));
    first.converge(&want).await;
    first.stop().await;
    assert_exactly(&sb, &want, &[]);

    // A new agent that does not know its desired set yet deletes nothing.
    let mut second = Agent::start(sb.endpoint(), None);
    let o = second
        .wait("connected", |o| o.connected && o.ports.len() == 3)
        .await;
    assert!(o.ports.values().all(|r| r.state == PortState::Ready));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_exactly(&sb, &want, &[]);
    assert_eq!(second.observed.borrow().transactions, 0);

    // Once known, the stale ones go and vanish from the report.
    second.set(vec![want[1].clone()]);
    second.converge(&want[1..2]).await;
    assert_exactly(&sb, &want[1..2], &[]);
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ovsdb_server_killed_and_restarted_mid_run() {
    let sb = sandbox();
    let want = many("k", 300, 0);
    let mut agent = Agent::start(sb.endpoint(), Some(want.clone()));
    agent
        .wait("transaction sent", |o| o.transactions >= 1)
        .await;
    sb.kill_ovsdb();
    agent.wait("disconnect seen", |o| !o.connected).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    sb.restart_ovsdb().unwrap();
    let o = agent.converge(&want).await;
    assert!(o.reconnects >= 1, "{o:?}");
    agent.wait("in sync", |o| o.in_sync).await;
    assert_exactly(&sb, &want, &[]);

    // And it keeps working after the restart.
    let more = many("k", 310, 0);
    agent.set(more.clone());
    agent.converge(&more).await;
    assert_exactly(&sb, &more, &[]);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_killed_mid_reconcile_and_restarted_converges_exactly() {
    let sb = sandbox();
    let first_set = many("r", 1000, 0);
    let mut first = Agent::start(sb.endpoint(), Some(first_set));
    first
        .wait("transaction sent", |o| o.transactions >= 1)
        .await;
    // Killed: the task is dropped mid-flight, whatever it was doing.
    drop(first);

    let second_set: Vec<TunnelPort> = many("r", 500, 250)
        .into_iter()
        .chain(many("r", 100, 1000))
        .collect();
    let mut second = Agent::start(sb.endpoint(), Some(second_set.clone()));
    second.converge(&second_set).await;
    second.wait("in sync", |o| o.in_sync).await;
    assert_exactly(&sb, &second_set, &[]);
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_config_is_an_error() {
    let (_dtx, drx) = watch::channel(None);
    let (otx, _orx) = watch::channel(Observed::default());
    for (endpoint, bridge) in [
        ("db.sock", BR),
        ("tcp:host", BR),
        ("unix:/x", ""),
        ("unix:/x", "a-very-long-bridge-name"),
    ] {
        let r = run(
            OvsConfig::new(endpoint, bridge),
            drx.clone(),
            otx.clone(),
            CancellationToken::new(),
        )
        .await;
        assert!(
            matches!(r, Err(OvsError::Config(_))),
            "{endpoint} {bridge}: {r:?}"
        );
    }
}

/// The test sandbox itself: it starts a working OVS and leaves nothing behind.
#[test]
fn sandbox_starts_and_cleans_up() {
    let dir;
    {
        let sb = Sandbox::start(Datapath::Dummy)
            .expect("OVS is installed (scripts/test.sh installs it)");
        dir = sb.dir().to_path_buf();
        sb.vsctl(&["add-br", "br-test"]).unwrap();
        sb.vsctl(&[
            "add-port",
            "br-test",
            "p1",
            "--",
            "set",
            "Interface",
            "p1",
            "type=internal",
        ])
        .unwrap();
        // vswitchd assigns the ofport asynchronously.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let ofport = sb.vsctl(&["get", "Interface", "p1", "ofport"]).unwrap();
            if ofport.trim().parse::<i64>().is_ok_and(|p| p > 0) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "no ofport for p1");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(sb.ofctl(&["dump-flows", &sb.mgmt("br-test")]).is_ok());
    }
    assert!(!dir.exists(), "sandbox directory removed on drop");
}
