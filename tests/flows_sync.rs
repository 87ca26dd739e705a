//! The flow sync against a real (dummy-datapath) Open vSwitch: the flows we write are the
//! flows OVS prints back, foreign flows are never touched, drift is repaired by the loop,
//! a removed device leaves no flow with its cookie, and a failing bundle changes nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

mod support;

use remote_device_operator::api::TunnelDevice;
use remote_device_operator::flows::{
    Actions, COOKIE_MASK, COOKIE_TAG, FlowInput, FlowPlan, FlowSync, FlowSyncConfig, Match,
    MonitorState, TunnelFlowsInput, WorkloadPort, desired_flows,
};
use support::ovs::wait_ofport;
use support::sandbox::{Datapath, Sandbox};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const BRIDGE: &str = "br-int";

fn device(name: &str, mac: &str, ips: &[&str], vlan: Option<u16>) -> TunnelDevice {
    TunnelDevice {
        namespace: "tenant".into(),
        name: name.into(),
        mac_address: mac.into(),
        vni: 5001,
        ips: ips.iter().map(|s| s.to_string()).collect(),
        local_vlan: vlan,
    }
}

struct Bridge {
    sb: Sandbox,
    tunnel: i64,
    pods: Vec<i64>,
}

fn bridge() -> Bridge {
    let sb = Sandbox::start(Datapath::Dummy).expect("OVS sandbox (is Open vSwitch installed?)");
    sb.vsctl(&[
        "add-br",
        BRIDGE,
        "--",
        "set",
        "Bridge",
        BRIDGE,
        "fail-mode=secure",
        "--",
        "add-port",
        BRIDGE,
        "pod1",
        "--",
        "set",
        "Interface",
        "pod1",
        "type=internal",
        "--",
        "add-port",
        BRIDGE,
        "pod2",
        "--",
        "set",
        "Interface",
        "pod2",
        "type=internal",
        "--",
        "add-port",
        BRIDGE,
        "rdv-test",
        "--",
        "set",
        "Interface",
        "rdv-test",
        "type=vxlan",
        "options:remote_ip=192.0.2.2",
        "options:key=flow",
    ])
    .unwrap();
    let tunnel = wait_ofport(&sb, "rdv-test");
    let pods = vec![wait_ofport(&sb, "pod1"), wait_ofport(&sb, "pod2")];
    Bridge { sb, tunnel, pods }
}

impl Bridge {
    fn config(&self) -> FlowSyncConfig {
        FlowSyncConfig::new(self.sb.dir(), BRIDGE)
    }

    fn plan(&self, devices: Vec<TunnelDevice>) -> FlowPlan {
        desired_flows(&FlowInput {
            tunnels: vec![TunnelFlowsInput {
                interface_name: "rdv-test".into(),
                ofport: self.tunnel,
                devices: std::sync::Arc::new(devices),
            }],
            workload_ports: vec![
                WorkloadPort {
                    ofport: self.pods[0],
                    vlan: None,
                },
                WorkloadPort {
                    ofport: self.pods[1],
                    vlan: Some(100),
                },
            ],
        })
    }

    fn dump(&self, filter: &str) -> Vec<String> {
        self.sb
            .ofctl(&[
                "-O",
                "OpenFlow14",
                "--no-stats",
                "dump-flows",
                &self.sb.mgmt(BRIDGE),
                filter,
            ])
            .unwrap()
            .lines()
            .filter(|l| l.contains("cookie="))
            .map(|l| l.trim().to_string())
            .collect()
    }

    fn owned(&self) -> Vec<String> {
        self.dump(&format!("cookie={COOKIE_TAG:#x}/{COOKIE_MASK:#x}"))
    }

    fn with_cookie(&self, cookie: u64) -> Vec<String> {
        self.dump(&format!("cookie={cookie:#x}/-1"))
    }

    /// Flows of somebody else: one at our table/priority/match shape but another cookie.
    fn add_foreign(&self) {
        for flow in [
            "cookie=0x1,priority=1,actions=NORMAL",
            "cookie=0x2,table=230,priority=100,reg6=0x1001,dl_dst=52:54:00:99:99:99,actions=drop",
        ] {
            self.sb
                .ofctl(&["add-flow", &self.sb.mgmt(BRIDGE), flow])
                .unwrap();
        }
    }

    fn foreign(&self) -> Vec<String> {
        let all = self.dump("");
        all.into_iter()
            .filter(|l| !l.contains("cookie=0x52444f46"))
            .collect()
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn written_flows_read_back_identically_and_foreign_flows_stay() {
    let br = bridge();
    br.add_foreign();
    let foreign_before = br.foreign();
    assert_eq!(foreign_before.len(), 2, "{foreign_before:?}");
    let sync = FlowSync::new(br.config());
    let p = br.plan(vec![
        device("d1", "52:54:00:00:00:50", &["10.0.0.50", "fd00::50"], None),
        device("d2", "52:54:00:00:00:51", &["10.0.1.51"], Some(100)),
    ]);
    rt().block_on(async {
        let first = sync.sync_once(&p).await.unwrap();
        assert_eq!(
            (first.observed, first.added, first.deleted),
            (0, p.len(), 0)
        );
        // Every flow as written reads back as the same typed flow (OVS 3.1 even prints it
        // as written): the next round finds nothing to do.
        let second = sync.sync_once(&p).await.unwrap();
        assert_eq!(
            (second.observed, second.added, second.deleted),
            (p.len(), 0, 0)
        );
        // And the typed parser understands all of OVS's spelling (no text fallback).
        for flow in sync.dump_owned().await.unwrap() {
            assert!(Match::parse(&flow.matches).is_typed(), "{flow:?}");
            assert!(Actions::parse(&flow.actions).is_typed(), "{flow:?}");
        }
    });
    assert_eq!(br.owned().len(), p.len());
    assert_eq!(br.foreign(), foreign_before, "foreign flows untouched");

    // Remove d1: exactly its flows go (its segment's too, it was the last untagged device).
    let d1 = p.device_cookie("tenant", "d1").unwrap();
    assert_eq!(br.with_cookie(d1).len(), 7, "{:?}", br.with_cookie(d1));
    let p2 = br.plan(vec![device(
        "d2",
        "52:54:00:00:00:51",
        &["10.0.1.51"],
        Some(100),
    )]);
    rt().block_on(async {
        let out = sync.sync_once(&p2).await.unwrap();
        assert_eq!(out.added, 0);
        assert_eq!(out.deleted, p.len() - p2.len());
    });
    assert!(br.with_cookie(d1).is_empty(), "{:?}", br.with_cookie(d1));
    assert_eq!(br.owned().len(), p2.len());
    assert_eq!(br.foreign(), foreign_before, "foreign flows untouched");

    // A tunnel without devices keeps only its drop rule.
    rt().block_on(async {
        sync.sync_once(&br.plan(vec![])).await.unwrap();
    });
    let left = br.owned();
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].ends_with(&format!(
        "priority=60005,in_port={} actions=drop",
        br.tunnel
    )));

    // Nothing desired (the tunnel is gone too): nothing owned is left, foreign flows stay.
    rt().block_on(async {
        sync.sync_once(&desired_flows(&FlowInput::default()))
            .await
            .unwrap();
    });
    assert!(br.owned().is_empty(), "{:?}", br.owned());
    assert_eq!(br.foreign(), foreign_before);
}

#[test]
fn loop_repairs_deleted_and_changed_flows_seen_by_the_monitor() {
    let br = bridge();
    loop_repairs(&br, br.config(), true);
}

/// The loop's own bundles do not make it dump the bridge: every event they cause shows a
/// flow as the plan just applied has it, or one that plan dropped. (A change by someone
/// else still does: `loop_repairs`.)
#[test]
fn the_loops_own_bundles_are_not_followed_by_a_dump() {
    let br = bridge();
    let (mut status, tx, cancel, runtime, task) = start_sync(br.config());
    let d1 = device("d1", "52:54:00:00:00:50", &["10.0.0.50"], None);
    let d2 = device("d2", "52:54:00:00:00:51", &["10.0.0.51"], Some(100));
    let plans = [
        vec![d1.clone()],
        vec![d1.clone(), d2.clone()],
        vec![d2],
        vec![],
    ];
    runtime.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(10),
            status.wait_for(|s| s.monitor.is_running()),
        )
        .await
        .expect("monitor running")
        .unwrap();
        for (i, devices) in plans.into_iter().enumerate() {
            let p = Arc::new(br.plan(devices));
            let checks = status.borrow().checks;
            send_until_applied(&tx, &mut status, &p).await;
            // Two check intervals: a dump would have come by now.
            tokio::time::sleep(Duration::from_millis(2500)).await;
            let dumps = status.borrow().checks - checks;
            // The first plan is checked against the bridge in full, once.
            let expected = u64::from(i == 0);
            assert_eq!(
                dumps, expected,
                "plan {i}: dumps after the loop's own bundle"
            );
            assert_eq!(br.owned().len(), p.len(), "plan {i}");
        }
        assert!(status.borrow().monitor.is_running());
        cancel.cancel();
        task.await.unwrap();
    });
}

#[test]
fn loop_repairs_deleted_and_changed_flows_without_monitor() {
    let br = bridge();
    let mut config = br.config();
    config.monitor = false;
    loop_repairs(&br, config, false);
}

/// As the agent's pod sees OVS: `OVS_RUNDIR` is the run directory, mounted read-only (the
/// chart's hostPath mount). Every ovs-ofctl the sync starts runs through a wrapper that
/// makes it so in a private mount namespace, and refuses to run if the directory is
/// writable after all. The monitor must still run (no control socket in the run dir).
#[test]
fn loop_repairs_with_the_ovs_run_directory_read_only() {
    let br = bridge();
    let scratch = tempfile::tempdir().unwrap();
    let rundir = br.sb.dir().display().to_string();
    let wrapper = script(
        scratch.path(),
        "ovs-ofctl-read-only-rundir",
        &format!(
            r#"#!/bin/sh
export OVS_RUNDIR='{rundir}'
exec unshare --mount --propagation private /bin/sh -c '
  mount --bind "$OVS_RUNDIR" "$OVS_RUNDIR" && mount -o remount,bind,ro "$OVS_RUNDIR" || exit 96
  if touch "$OVS_RUNDIR/.writable" 2>/dev/null; then echo "run dir is writable" >&2; exit 97; fi
  exec ovs-ofctl "$@"' sh "$@"
"#
        ),
    );
    let probe = std::process::Command::new(&wrapper)
        .arg("--version")
        .output()
        .unwrap();
    assert!(
        probe.status.success(),
        "the wrapper runs ovs-ofctl with a read-only run dir: {probe:?}"
    );
    let mut config = br.config();
    config.ofctl = wrapper;
    loop_repairs(&br, config, true);
    assert!(
        !br.sb.dir().join(".writable").exists(),
        "the run dir stayed read-only"
    );
}

/// Writes an executable shell script.
fn script(dir: &std::path::Path, name: &str, body: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// A monitor that cannot start: reported in ovs-ofctl's words, counted, retried with a
/// doubling pause (not every tick), and meanwhile the flows are still applied and checked.
#[test]
fn a_monitor_that_cannot_start_is_reported_and_retried_with_a_pause() {
    let br = bridge();
    let scratch = tempfile::tempdir().unwrap();
    let mut config = br.config();
    config.ofctl = script(
        scratch.path(),
        "ovs-ofctl-no-monitor",
        "#!/bin/sh\nfor a in \"$@\"; do [ \"$a\" = monitor ] && { echo 'ovs-ofctl: cannot monitor here' >&2; exit 1; }; done\nexec ovs-ofctl \"$@\"\n",
    );
    let sync = FlowSync::new(config);
    let mut status = sync.status();
    let p = Arc::new(br.plan(vec![device("d1", "52:54:00:00:00:50", &[], None)]));
    let (_tx, rx) = watch::channel(Some(p.clone()));
    let cancel = CancellationToken::new();
    let runtime = rt();
    let task = runtime.spawn(sync.run(rx, cancel.clone()));
    runtime.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(10),
            status.wait_for(|s| s.applied.is_some() && s.monitor_failures > 0),
        )
        .await
        .expect("plan applied and the monitor failure seen")
        .unwrap();
        assert_eq!(
            status.borrow().monitor,
            MonitorState::Down("ovs-ofctl: cannot monitor here".into())
        );
        tokio::time::sleep(Duration::from_millis(3500)).await;
        // Pauses of 1 s, 2 s, 4 s: at most three more tries in 3.5 s, not one per tick.
        let failures = status.borrow().monitor_failures;
        assert!((2..=4).contains(&failures), "{failures} tries");
        let checks = status.borrow().checks;
        assert!(checks >= 2, "checked every interval meanwhile ({checks})");
        cancel.cancel();
        task.await.unwrap();
    });
    assert_eq!(br.owned().len(), p.len());
}

type Started = (
    watch::Receiver<remote_device_operator::flows::SyncStatus>,
    watch::Sender<Option<Arc<FlowPlan>>>,
    CancellationToken,
    tokio::runtime::Runtime,
    tokio::task::JoinHandle<()>,
);

/// Hands the loop `plan` and waits until it reports OVS holds it.
async fn send_until_applied(
    tx: &watch::Sender<Option<Arc<FlowPlan>>>,
    status: &mut watch::Receiver<remote_device_operator::flows::SyncStatus>,
    plan: &Arc<FlowPlan>,
) {
    tx.send(Some(plan.clone())).unwrap();
    tokio::time::timeout(
        Duration::from_secs(10),
        status.wait_for(|s| s.applied.as_ref().is_some_and(|a| Arc::ptr_eq(a, plan))),
    )
    .await
    .expect("plan applied")
    .unwrap();
}

/// A flow sync running on a runtime of its own, its desired plan still unknown: its
/// status, the desired plan's sender, its cancel token, the runtime and the task.
fn start_sync(config: FlowSyncConfig) -> Started {
    let sync = FlowSync::new(config);
    let status = sync.status();
    let (tx, rx) = watch::channel(None);
    let cancel = CancellationToken::new();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let task = runtime.spawn(sync.run(rx, cancel.clone()));
    (status, tx, cancel, runtime, task)
}

fn loop_repairs(br: &Bridge, config: FlowSyncConfig, monitor: bool) {
    let p = Arc::new(br.plan(vec![device(
        "d1",
        "52:54:00:00:00:50",
        &["10.0.0.50"],
        None,
    )]));
    let (mut status, tx, cancel, runtime, task) = start_sync(config);
    runtime.block_on(async {
        // Unknown desired state: nothing is written.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(br.owned().is_empty());
        send_until_applied(&tx, &mut status, &p).await;
    });
    assert_eq!(status.borrow().monitor.is_running(), monitor);
    let reference = {
        let mut v = br.owned();
        v.sort();
        v
    };
    assert_eq!(reference.len(), p.len());
    let mgmt = br.sb.mgmt(BRIDGE);
    // An owned flow's copy one priority up: its monitor report looks like the flow's own
    // (reports print no priority), but no bundle of the loop caused it.
    let copy = reference
        .iter()
        .find(|f| f.contains("table=231, priority=100,"))
        .expect("a delivery flow")
        .replace(", ", ",")
        .replace(" actions=", ",actions=")
        .replace("priority=100,", "priority=101,");

    let cases: Vec<(&str, Vec<&str>)> = vec![
        (
            "delete one owned flow",
            vec![
                "--strict",
                "del-flows",
                &mgmt,
                "table=230,priority=100,reg6=0x1001,dl_dst=52:54:00:00:00:50",
            ],
        ),
        (
            "change an owned flow's actions",
            vec![
                "--strict",
                "mod-flows",
                &mgmt,
                "table=230,priority=100,reg6=0x1001,dl_dst=52:54:00:00:00:50,actions=drop",
            ],
        ),
        (
            "add a copy of an owned flow one priority up",
            vec!["add-flow", &mgmt, &copy],
        ),
        (
            "delete every owned flow",
            vec![
                "del-flows",
                &mgmt,
                "cookie=0x52444f4600000000/0xffffffff00000000",
            ],
        ),
    ];
    for (name, args) in cases {
        let repairs_before = status.borrow().repairs;
        br.sb.ofctl(&args).unwrap();
        let started = Instant::now();
        let mut now = br.owned();
        now.sort();
        assert_ne!(now, reference, "{name}: the change happened");
        loop {
            let mut now = br.owned();
            now.sort();
            if now == reference {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{name}: not repaired: {now:?} {:?}",
                {
                    let st = status.borrow();
                    (
                        st.checks,
                        st.rounds,
                        st.repairs,
                        st.monitor.clone(),
                        st.error.clone(),
                    )
                }
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("{name}: repaired after {:?}", started.elapsed());
        runtime.block_on(async {
            tokio::time::timeout(
                Duration::from_secs(5),
                status.wait_for(|s| s.repairs > repairs_before),
            )
            .await
            .expect("repair counted")
            .unwrap();
        });
    }

    // A quiet bridge: with the monitor nothing reports a change, so it is not dumped every
    // interval; without it, it is.
    std::thread::sleep(Duration::from_millis(1500));
    let checks_before = status.borrow().checks;
    std::thread::sleep(Duration::from_secs(3));
    let checks = status.borrow().checks - checks_before;
    if monitor {
        assert!(checks <= 1, "{checks} dumps of a quiet bridge in 3 s");
    } else {
        assert!(checks >= 2, "{checks} dumps in 3 s with a 1 s interval");
    }

    // A new plan (the device deleted) is applied by the loop as a difference: afterwards
    // OVS holds exactly the new plan and nothing with the device's cookie.
    let cookie = p.device_cookie("tenant", "d1").unwrap();
    let without = Arc::new(br.plan(vec![]));
    runtime.block_on(send_until_applied(&tx, &mut status, &without));
    assert!(br.with_cookie(cookie).is_empty());
    assert_eq!(br.owned().len(), without.len());

    // Cancel: the loop ends and leaves the flows in place.
    cancel.cancel();
    runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
    });
    assert_eq!(br.owned().len(), without.len());
}

#[test]
fn a_failing_bundle_changes_nothing_and_is_reported() {
    let br = bridge();
    let sync = FlowSync::new(br.config());
    let p = br.plan(vec![device(
        "d1",
        "52:54:00:00:00:50",
        &["10.0.0.50"],
        None,
    )]);
    rt().block_on(async {
        sync.sync_once(&p).await.unwrap();
        let before = br.owned();
        // A valid delete followed by a line the switch rejects (a group that does not
        // exist): the delete is rolled back with it.
        let err = sync
            .apply_bundle(
                "delete_strict cookie=0x52444f4600000000/0xffffffff00000000,table=231,priority=100,reg6=0x1001\n\
                 add cookie=0x52444f4600000001,table=5,priority=1,in_port=1,actions=group:99\n",
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains("OFPBAC_BAD_OUT_GROUP"), "{err}");
        assert_eq!(br.owned(), before, "all or nothing");
    });
    // A bridge that does not exist is an error, not a panic.
    let mut config = br.config();
    config.target = format!("unix:{}/br-missing.mgmt", br.sb.dir().display());
    let missing = FlowSync::new(config);
    rt().block_on(async {
        assert!(missing.sync_once(&p).await.is_err());
    });
}

/// What OVS does with packets (ofproto/trace): ours only when both the port's segment and
/// the device match; everything else reaches the flow that was there before (a foreign
/// priority-1 flow here), and unknown traffic from our tunnel is dropped.
#[test]
fn unmatched_traffic_keeps_its_previous_behaviour() {
    let br = bridge();
    br.sb
        .ofctl(&[
            "add-flow",
            &br.sb.mgmt(BRIDGE),
            "cookie=0xf0f0,priority=1,actions=NORMAL",
        ])
        .unwrap();
    let p = br.plan(vec![
        device("d1", "52:54:00:00:00:50", &["10.0.0.50"], None),
        device("d2", "52:54:00:00:00:51", &["10.0.1.51"], Some(100)),
    ]);
    rt().block_on(async {
        FlowSync::new(br.config()).sync_once(&p).await.unwrap();
    });
    let d1 = p.device_cookie("tenant", "d1").unwrap();
    let (pod1, pod2, tun) = (br.pods[0], br.pods[1], br.tunnel);
    let arp = |port: i64, tpa: &str| {
        format!(
            "in_port={port},arp,arp_op=1,dl_src=02:00:00:00:00:0a,dl_dst=ff:ff:ff:ff:ff:ff,\
             arp_spa=10.0.0.10,arp_tpa={tpa},arp_sha=02:00:00:00:00:0a"
        )
    };
    let unicast = |port: i64, dst: &str| {
        format!(
            "in_port={port},ip,dl_src=02:00:00:00:00:0a,dl_dst={dst},nw_src=10.0.0.10,nw_dst=10.0.0.50"
        )
    };
    let from_tunnel = |vni: u32, src: &str| {
        format!(
            "in_port={tun},tun_id={vni},ip,dl_src={src},dl_dst=02:00:00:00:00:0a,nw_src=10.0.0.50,nw_dst=10.0.0.10"
        )
    };
    // (packet, whose rule decides, text the decision must contain)
    let cases: Vec<(&str, String, &str, String)> = vec![
        (
            "local port → device of its segment",
            unicast(pod1, "52:54:00:00:00:50"),
            "ours",
            format!("output:{tun}"),
        ),
        (
            "port of another segment → device",
            unicast(pod2, "52:54:00:00:00:50"),
            "foreign",
            "NORMAL".into(),
        ),
        (
            "local port → unknown MAC",
            unicast(pod1, "52:54:00:00:00:99"),
            "foreign",
            "NORMAL".into(),
        ),
        (
            "ARP for a device IP",
            arp(pod1, "10.0.0.50"),
            "ours",
            "IN_PORT".into(),
        ),
        (
            "ARP for another IP",
            arp(pod1, "10.0.0.99"),
            "foreign",
            "NORMAL".into(),
        ),
        (
            "ARP for a device IP of another segment",
            arp(pod2, "10.0.0.50"),
            "foreign",
            "NORMAL".into(),
        ),
        (
            "tunnel, known device",
            from_tunnel(5001, "52:54:00:00:00:50"),
            "ours",
            format!("output:{pod1}"),
        ),
        (
            "tunnel, unknown source",
            from_tunnel(5001, "52:54:00:00:00:99"),
            "ours",
            "drop".into(),
        ),
        (
            "tunnel, wrong VNI",
            from_tunnel(9, "52:54:00:00:00:50"),
            "ours",
            "drop".into(),
        ),
    ];
    for (name, packet, whose, decision) in cases {
        let trace = br.sb.appctl(&["ofproto/trace", BRIDGE, &packet]).unwrap();
        let ours = trace.contains("cookie 0x52444f46");
        let foreign = trace.contains("cookie 0xf0f0");
        match whose {
            "ours" => assert!(ours && !foreign, "{name}: {trace}"),
            _ => assert!(foreign && !ours, "{name}: {trace}"),
        }
        assert!(
            trace.contains(&decision),
            "{name}: expected {decision}: {trace}"
        );
    }
    // The device rule that took its unicast carries the device's cookie.
    let trace = br
        .sb
        .appctl(&["ofproto/trace", BRIDGE, &unicast(pod1, "52:54:00:00:00:50")])
        .unwrap();
    assert!(trace.contains(&format!("cookie {d1:#x}")), "{trace}");
}

/// Runs one flow sync on `br` until it holds `plan`; `before_plan` runs while the sync is
/// up with the desired state still unknown (when it dumps the bridge ahead of the plan).
fn sync_until_applied(br: &Bridge, plan: &Arc<FlowPlan>, before_plan: impl FnOnce()) {
    let (mut status, tx, cancel, runtime, task) = start_sync(br.config());
    // Long enough for the monitor to subscribe and the early dump to finish.
    std::thread::sleep(Duration::from_millis(700));
    before_plan();
    // The monitor's report of what `before_plan` did has reached the loop.
    std::thread::sleep(Duration::from_millis(300));
    runtime.block_on(async {
        send_until_applied(&tx, &mut status, plan).await;
        cancel.cancel();
        task.await.unwrap();
    });
}

/// Every flow change on the bridge, as `ovs-ofctl monitor` reports it (stderr, unbuffered).
struct FlowChanges {
    child: std::process::Child,
    file: std::path::PathBuf,
}

impl FlowChanges {
    fn start(br: &Bridge) -> FlowChanges {
        let file = br.sb.dir().join("changes.txt");
        let child = std::process::Command::new("ovs-ofctl")
            .args([
                "--unixctl=none",
                "monitor",
                &br.sb.mgmt(BRIDGE),
                "watch:!initial",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&file).unwrap())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        FlowChanges { child, file }
    }

    fn count(&self) -> usize {
        std::fs::read_to_string(&self.file)
            .unwrap_or_default()
            .matches("event=")
            .count()
    }
}

impl Drop for FlowChanges {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_restart_on_flows_in_place_changes_nothing_and_a_change_meanwhile_is_repaired() {
    let br = bridge();
    let devices = || {
        vec![
            device("d1", "52:54:00:00:00:50", &["10.0.0.50"], None),
            device("d2", "52:54:00:00:00:51", &["10.0.0.51"], Some(100)),
        ]
    };
    let plan = Arc::new(br.plan(devices()));
    sync_until_applied(&br, &plan, || {});
    let mut reference = br.owned();
    reference.sort();
    assert_eq!(reference.len(), plan.len());

    // Restarted on the flows it left (a new, equal plan, as a restarted agent makes one):
    // checked against the dump it took while the plan was being made, nothing is written.
    let changes = FlowChanges::start(&br);
    sync_until_applied(&br, &Arc::new(br.plan(devices())), || {});
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(changes.count(), 0, "flow changes on a warm restart");

    // An owned flow deleted after that early dump, before the plan: the monitor's report
    // drops the dump, so the first round dumps again and puts the flow back at once.
    let mgmt = br.sb.mgmt(BRIDGE);
    sync_until_applied(&br, &Arc::new(br.plan(devices())), || {
        br.sb
            .ofctl(&[
                "--strict",
                "del-flows",
                &mgmt,
                "table=230,priority=100,reg6=0x1001,dl_dst=52:54:00:00:00:50",
            ])
            .unwrap();
        assert_ne!(br.owned().len(), reference.len(), "the flow was deleted");
    });
    let mut now = br.owned();
    now.sort();
    assert_eq!(now, reference, "the flow deleted before the plan is back");
}
