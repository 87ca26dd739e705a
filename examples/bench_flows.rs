//! Benchmark: owned flows of 10 000 remote devices on a sandboxed OVS (dummy datapath).
//!
//! `cargo run --release --example bench_flows [-- DEVICES RUNS]`
//!
//! Prints medians of: the pure planner; installing every rule from an empty bridge in one
//! atomic bundle (our sync: dump + diff + bundle) against plain `ovs-ofctl add-flows` of
//! the same rules (the baseline) and raw `ovs-ofctl --bundle add-flows`; adding one device
//! beside the others as the agent does it (its planner kept between changes, the diff to
//! the held plan, a bundle of a handful of lines; each part timed) against `ovs-ofctl
//! add-flows` of that device's rules; and a full check (dump + diff) of a bridge
//! that needs nothing, which the sync loop runs when the flow monitor reports a change
//! (or every second without the monitor).

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use remote_device_operator::api::TunnelDevice;
use remote_device_operator::flows::{
    COOKIE_MASK, COOKIE_TAG, FlowInput, FlowPlan, FlowPlanner, FlowSync, FlowSyncConfig,
    TunnelFlowsInput, WorkloadPort, desired_flows, diff, diff_plans,
};
#[path = "../tests/support/sandbox.rs"]
#[allow(dead_code)]
mod sandbox;
use sandbox::{Datapath, Sandbox};

const BRIDGE: &str = "br-int";
const TUNNELS: u32 = 20;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn device(i: u32) -> TunnelDevice {
    let mut ips = vec![format!(
        "10.{}.{}.{}",
        64 + (i >> 16),
        (i >> 8) & 255,
        i & 255
    )];
    if i.is_multiple_of(10) {
        ips.push(format!("fd00::{:x}:{:x}", i >> 16, (i & 0xffff) + 1));
    }
    TunnelDevice {
        namespace: format!("tenant-{}", i % 50),
        name: format!("device-{i}"),
        mac_address: format!(
            "52:54:{:02x}:{:02x}:{:02x}:{:02x}",
            i >> 24,
            (i >> 16) & 255,
            (i >> 8) & 255,
            i & 255
        ),
        vni: 1000 + i % 100,
        ips,
        local_vlan: if i.is_multiple_of(5) { Some(100) } else { None },
    }
}

fn input(devices: u32, extra: bool, ofports: &[i64], ports: &[WorkloadPort]) -> FlowInput {
    let mut tunnels: Vec<TunnelFlowsInput> = ofports
        .iter()
        .enumerate()
        .map(|(t, &ofport)| TunnelFlowsInput {
            interface_name: format!("rdv-bench{t:02}"),
            ofport,
            devices: Default::default(),
        })
        .collect();
    for i in 0..devices {
        std::sync::Arc::make_mut(&mut tunnels[(i % TUNNELS) as usize].devices).push(device(i));
    }
    if extra {
        std::sync::Arc::make_mut(&mut tunnels[0].devices).push(device(devices + 1_000_000));
    }
    FlowInput {
        tunnels,
        workload_ports: ports.to_vec(),
    }
}

fn ofctl(sb: &Sandbox, args: &[&str], stdin: Option<&str>) -> Duration {
    let started = Instant::now();
    let mut child = Command::new("ovs-ofctl")
        .args(args)
        .env("OVS_RUNDIR", sb.dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ovs-ofctl");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "ovs-ofctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    started.elapsed()
}

fn clear_owned(sb: &Sandbox) {
    let filter = format!("cookie={COOKIE_TAG:#x}/{COOKIE_MASK:#x}");
    ofctl(sb, &["del-flows", &sb.mgmt(BRIDGE), &filter], None);
}

fn owned_count(sb: &Sandbox) -> usize {
    let filter = format!("cookie={COOKIE_TAG:#x}/{COOKIE_MASK:#x}");
    let out = sb
        .ofctl(&["dump-aggregate", &sb.mgmt(BRIDGE), &filter])
        .unwrap();
    out.split("flow_count=")
        .nth(1)
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let devices: u32 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let runs: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5);

    let sb = Sandbox::start(Datapath::Dummy).expect("OVS sandbox");
    let mut cmd: Vec<String> = vec![
        "add-br".into(),
        BRIDGE.into(),
        "--".into(),
        "set".into(),
        "Bridge".into(),
        BRIDGE.into(),
        "fail-mode=secure".into(),
    ];
    for t in 0..TUNNELS {
        let name = format!("rdv-bench{t:02}");
        cmd.extend(
            [
                "--",
                "add-port",
                BRIDGE,
                &name,
                "--",
                "set",
                "Interface",
                &name,
                "type=vxlan",
                &format!("options:remote_ip=198.51.100.{}", t + 1),
                "options:key=flow",
            ]
            .map(String::from),
        );
    }
    for (p, tag) in [
        ("pod1", None),
        ("pod2", None),
        ("pod3", Some(100)),
        ("pod4", Some(100)),
    ] {
        cmd.extend(["--", "add-port", BRIDGE, p].map(String::from));
        if let Some(tag) = tag {
            cmd.push(format!("tag={tag}"));
        }
        cmd.extend(["--", "set", "Interface", p, "type=internal"].map(String::from));
    }
    let refs: Vec<&str> = cmd.iter().map(String::as_str).collect();
    sb.vsctl(&refs).expect("bridge and ports");
    let ofport = |name: &str| -> i64 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = sb.vsctl(&["get", "Interface", name, "ofport"]).unwrap();
            if let Ok(p) = out.trim().parse::<i64>()
                && p > 0
            {
                return p;
            }
            assert!(Instant::now() < deadline, "no ofport for {name}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let tunnel_ofports: Vec<i64> = (0..TUNNELS)
        .map(|t| ofport(&format!("rdv-bench{t:02}")))
        .collect();
    let ports: Vec<WorkloadPort> = [
        ("pod1", None),
        ("pod2", None),
        ("pod3", Some(100)),
        ("pod4", Some(100)),
    ]
    .iter()
    .map(|(p, vlan)| WorkloadPort {
        ofport: ofport(p),
        vlan: *vlan,
    })
    .collect();

    let base_input = input(devices, false, &tunnel_ofports, &ports);
    let plus_input = input(devices, true, &tunnel_ofports, &ports);
    let mut plan_times = Vec::new();
    let mut base: FlowPlan = FlowPlan::default();
    for _ in 0..runs {
        let started = Instant::now();
        base = desired_flows(&base_input);
        plan_times.push(started.elapsed());
    }
    let plus = desired_flows(&plus_input);
    let installed = base
        .devices
        .values()
        .filter(|s| {
            matches!(
                s,
                remote_device_operator::flows::DeviceState::Installed { .. }
            )
        })
        .count();
    assert_eq!(installed, devices as usize, "every device gets flows");
    let file = base.to_ofctl_lines();
    let new_key = remote_device_operator::api::DeviceKey {
        namespace: device(devices + 1_000_000).namespace,
        name: device(devices + 1_000_000).name,
    };
    let new_cookie = plus
        .device_cookie(&new_key.namespace, &new_key.name)
        .unwrap_or_else(|| panic!("new device not installed: {:?}", plus.devices.get(&new_key)));
    let one_device_file: String = plus
        .flows()
        .filter(|f| f.cookie == new_cookie)
        .map(|f| f.to_ofctl() + "\n")
        .collect();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let sync = FlowSync::new(FlowSyncConfig::new(sb.dir(), BRIDGE));
    let mgmt = sb.mgmt(BRIDGE);

    // Full install, our way and the two ovs-ofctl ways.
    let (mut ours, mut plain, mut raw_bundle) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        clear_owned(&sb);
        let started = Instant::now();
        let out = rt.block_on(sync.sync_once(&base)).expect("install");
        ours.push(started.elapsed());
        assert_eq!(out.added, base.len());
        assert_eq!(owned_count(&sb), base.len());

        clear_owned(&sb);
        plain.push(ofctl(
            &sb,
            &["-O", "OpenFlow14", "add-flows", &mgmt, "-"],
            Some(&file),
        ));
        assert_eq!(owned_count(&sb), base.len());

        clear_owned(&sb);
        raw_bundle.push(ofctl(
            &sb,
            &["-O", "OpenFlow14", "--bundle", "add-flows", &mgmt, "-"],
            Some(&file),
        ));
        assert_eq!(owned_count(&sb), base.len());
    }

    // Steady state: the 1-second drift check when nothing changed.
    let mut check = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        let out = rt.block_on(sync.sync_once(&base)).expect("check");
        check.push(started.elapsed());
        assert_eq!((out.added, out.deleted), (0, 0));
    }

    // One more device beside the others, and back, as the agent does it: its planner
    // (kept between changes) plans the new input, the sync applies the change from the
    // held plan in one bundle. Timed apart: planning, the diff, the bundle (ovs-ofctl and
    // vswitchd). And the same change with a full dump + diff instead.
    let mut planner = FlowPlanner::default();
    let mut held = planner.plan(&base_input);
    let (mut add_one, mut add_one_dump, mut add_one_plain) = (Vec::new(), Vec::new(), Vec::new());
    let (mut plan_one, mut diff_one, mut bundle_one) = (Vec::new(), Vec::new(), Vec::new());
    let mut lines = 0;
    for _ in 0..runs {
        let started = Instant::now();
        let p = planner.plan(&plus_input);
        let planned = started.elapsed();
        let change = diff_plans(&p, &held);
        let diffed = started.elapsed();
        rt.block_on(sync.apply_bundle(&change.bundle_text()))
            .expect("add one");
        add_one.push(started.elapsed());
        plan_one.push(planned);
        diff_one.push(diffed - planned);
        bundle_one.push(started.elapsed() - diffed);
        lines = change.len();
        assert_eq!(
            p, plus,
            "the planner with memory plans what a fresh one does"
        );
        assert_eq!(owned_count(&sb), plus.len());
        held = planner.plan(&base_input);
        rt.block_on(sync.apply_change(&p, &held))
            .expect("remove it");
        assert_eq!(owned_count(&sb), base.len());

        let started = Instant::now();
        let out = rt.block_on(sync.sync_once(&plus)).expect("add one");
        add_one_dump.push(started.elapsed());
        assert_eq!(out.added + out.deleted, lines);
        rt.block_on(sync.sync_once(&base)).expect("remove it");
        add_one_plain.push(ofctl(
            &sb,
            &["-O", "OpenFlow14", "add-flows", &mgmt, "-"],
            Some(&one_device_file),
        ));
        rt.block_on(sync.sync_once(&base)).expect("remove it");
    }
    // The diff alone (pure), for the record.
    let observed: Vec<_> = rt.block_on(sync.dump_owned()).expect("dump");
    let started = Instant::now();
    let d = diff(&plus, &observed);
    let diff_time = started.elapsed();
    assert_eq!(d.len(), lines);

    let ours_m = median(ours);
    let plain_m = median(plain);
    println!(
        "bench_flows: {devices} devices behind {TUNNELS} tunnels, {} local ports, {} owned flows, {runs} runs, medians",
        ports.len(),
        base.len()
    );
    println!(
        "  plan from nothing (fresh planner, all devices)   {}",
        ms(median(plan_times))
    );
    println!(
        "  install all, atomic (sync: dump+diff+bundle)     {}",
        ms(ours_m)
    );
    println!(
        "  install all, ovs-ofctl add-flows (baseline)      {}  (ours = {:.2}x baseline)",
        ms(plain_m),
        ours_m.as_secs_f64() / plain_m.as_secs_f64()
    );
    println!(
        "  install all, ovs-ofctl --bundle add-flows (raw)  {}",
        ms(median(raw_bundle))
    );
    println!(
        "  add 1 device beside {devices}: plan + diff + bundle  {}  ({lines} bundle lines of {} flows; target <= 50 ms)",
        ms(median(add_one.clone())),
        plus.len()
    );
    println!(
        "    of which planning (planner with memory)        {}",
        ms(median(plan_one))
    );
    println!(
        "    of which the diff to the held plan             {}",
        ms(median(diff_one))
    );
    println!(
        "    of which the bundle (ovs-ofctl + vswitchd)     {}",
        ms(median(bundle_one))
    );
    println!(
        "  add 1 device beside {devices}: dump+diff+bundle      {}",
        ms(median(add_one_dump))
    );
    println!(
        "  add 1 device, ovs-ofctl add-flows of its rules   {}  (ours = {:.2}x)",
        ms(median(add_one_plain.clone())),
        median(add_one).as_secs_f64() / median(add_one_plain).as_secs_f64()
    );
    println!(
        "  diff alone for that change (pure)                {}",
        ms(diff_time)
    );
    println!(
        "  steady-state check, nothing to do (dump+diff)    {}",
        ms(median(check))
    );
}
