//! Benchmark: the agent's one-transaction reconcile against `ovs-vsctl`, measured in one
//! run, each sample on a fresh OVS sandbox (ovsdb-server + ovs-vswitchd, dummy datapath).
//!
//! Run: `cargo run --release --example bench_ovs [-- --samples 5 --single-samples 30]`
//!
//! Every time is "until every port has an ofport" (vswitchd applied it): for the agent as
//! its monitor reports it, for ovs-vsctl by polling the database after the command (which
//! itself waits for vswitchd). The agent is already connected and in sync with an empty
//! desired set when the clock starts, as a running agent would be.

use std::time::{Duration, Instant};

use remote_device_operator::api::{TunnelPort, TunnelPortSpec, TunnelType};
use remote_device_operator::ovs::{DesiredTunnel, Observed, OvsConfig, PortState, run};
use remote_device_operator::ovsdb::{Client, ClientOptions, Condition, Datum, Endpoint, Operation};
#[path = "../tests/support/bench.rs"]
mod bench;
use bench::{arg, vsctl_add_port};
#[path = "../tests/support/sandbox.rs"]
#[allow(dead_code)]
mod sandbox;
use sandbox::{Datapath, Sandbox};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const BR: &str = "br-int";
const N: usize = 1000;

fn tunnel(i: usize) -> TunnelPort {
    TunnelPort::new(
        &format!("bench-{i}"),
        TunnelPortSpec {
            node_name: "bench".into(),
            remote_ip: format!("198.18.{}.{}", i / 250, i % 250 + 1),
            tunnel_type: TunnelType::Vxlan,
            dst_port: None,
            local_ip: None,
            devices: Default::default(),
            bfd: None,
        },
    )
}

/// ovs-vsctl arguments adding tunnel `i` exactly as the agent would (same name, options).
fn vsctl_add(i: usize) -> Vec<String> {
    let d = DesiredTunnel::from_tunnel_port(&tunnel(i)).expect("valid tunnel");
    vsctl_add_port(BR, &d)
}

fn fresh() -> Sandbox {
    let sb = Sandbox::start(Datapath::Dummy).expect("OVS is installed");
    sb.vsctl(&["add-br", BR]).expect("add-br");
    sb
}

async fn client(sb: &Sandbox) -> Client {
    let ep: Endpoint = sb.endpoint().parse().expect("endpoint");
    Client::connect(&ep, ClientOptions::for_endpoint(&ep))
        .await
        .expect("connect")
        .0
}

/// Polls until `n` vxlan interfaces have an ofport.
async fn wait_ofports(c: &Client, n: usize) {
    loop {
        let r = c
            .transact(
                "Open_vSwitch",
                &[Operation::Select {
                    table: "Interface".into(),
                    conditions: vec![Condition::eq("type", Datum::string("vxlan"))],
                    columns: Some(vec!["ofport".into()]),
                }],
            )
            .await
            .expect("select");
        let ready = r[0]
            .rows
            .as_ref()
            .map(|rows| {
                rows.iter()
                    .filter(|row| {
                        row.get("ofport")
                            .and_then(|d| d.as_i64())
                            .is_some_and(|p| p > 0)
                    })
                    .count()
            })
            .unwrap_or(0);
        if ready >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn vsctl(sb: &Sandbox, args: &[String]) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    sb.vsctl(&args).expect("ovs-vsctl");
}

struct Agent {
    desired: watch::Sender<Option<Vec<TunnelPort>>>,
    observed: watch::Receiver<Observed>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Agent {
    async fn start(sb: &Sandbox) -> Agent {
        let (desired, drx) = watch::channel(Some(Vec::new()));
        let (otx, observed) = watch::channel(Observed::default());
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let config = OvsConfig::new(sb.endpoint(), BR);
        let task = tokio::spawn(async move {
            run(config, drx, otx, token).await.expect("agent config");
        });
        let mut a = Agent {
            desired,
            observed,
            shutdown,
            task,
        };
        a.wait(|o| o.connected && o.in_sync).await;
        a
    }

    async fn wait(&mut self, pred: impl Fn(&Observed) -> bool) {
        loop {
            if pred(&self.observed.borrow_and_update()) {
                return;
            }
            self.observed.changed().await.expect("agent running");
        }
    }

    /// Sets the desired ports and waits until every one is Ready with an ofport.
    async fn converge(&mut self, ports: Vec<TunnelPort>) {
        let n = ports.len();
        self.desired.send_replace(Some(ports));
        self.wait(|o| {
            o.ports.len() == n
                && o.ports
                    .values()
                    .all(|r| r.state == PortState::Ready && r.ofport.is_some_and(|p| p > 0))
        })
        .await;
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    // RUST_LOG=remote_device_operator=debug shows where the agent's time goes.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let samples = arg("--samples", 5).max(1);
    let single_samples = arg("--single-samples", 30).max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(bench(samples, single_samples));
}

async fn bench(samples: usize, single_samples: usize) {
    let all: Vec<TunnelPort> = (0..N).map(tunnel).collect();
    println!(
        "bench_ovs: {N} vxlan tunnel ports, {samples} samples per scenario, fresh sandbox each"
    );

    // 1. The agent: 1000 ports from empty until every one has an ofport.
    let mut agent_1000 = Vec::new();
    let mut agent_commit = Vec::new();
    for _ in 0..samples {
        let sb = fresh();
        let mut agent = Agent::start(&sb).await;
        let t = Instant::now();
        agent.desired.send_replace(Some(all.clone()));
        // Committed: the agent's replica shows every port (ofports may still be pending).
        agent.wait(|o| o.transactions >= 1 && o.in_sync).await;
        agent_commit.push(t.elapsed());
        agent.converge(all.clone()).await;
        agent_1000.push(t.elapsed());
        agent.stop().await;
    }

    // 2. One chained ovs-vsctl adding the same 1000.
    let mut chained_1000 = Vec::new();
    for _ in 0..samples {
        let sb = fresh();
        let c = client(&sb).await;
        let mut args = Vec::new();
        for i in 0..N {
            if i > 0 {
                args.push("--".to_string());
            }
            args.extend(vsctl_add(i));
        }
        let t = Instant::now();
        vsctl(&sb, &args);
        wait_ofports(&c, N).await;
        chained_1000.push(t.elapsed());
    }

    // 3. Single ovs-vsctl add-port calls, sampled on a fresh bridge and extrapolated.
    let mut single = Vec::new();
    {
        let sb = fresh();
        let c = client(&sb).await;
        for i in 0..single_samples {
            let t = Instant::now();
            vsctl(&sb, &vsctl_add(i));
            wait_ofports(&c, i + 1).await;
            single.push(t.elapsed());
        }
    }
    let single_1000 = median(single.clone()) * N as u32;

    // 4. One port beside 1000 existing: the agent vs one ovs-vsctl add-port.
    let mut agent_one = Vec::new();
    let mut agent_one_commit = Vec::new();
    let mut drift = Vec::new();
    let mut drift_commit = Vec::new();
    {
        let sb = fresh();
        let mut agent = Agent::start(&sb).await;
        agent.converge(all.clone()).await;
        for s in 0..samples {
            let ports: Vec<TunnelPort> = (0..N + s + 1).map(tunnel).collect();
            let before = agent.observed.borrow().transactions;
            let t = Instant::now();
            agent.desired.send_replace(Some(ports.clone()));
            // The agent's own share: diff, transaction, commit, replica updated.
            agent.wait(|o| o.transactions > before && o.in_sync).await;
            agent_one_commit.push(t.elapsed());
            agent.converge(ports).await;
            agent_one.push(t.elapsed());
        }
        // Drift repair: a managed port deleted behind the agent's back.
        for s in 0..samples {
            let key = format!("bench-{s}");
            let name = DesiredTunnel::from_tunnel_port(&tunnel(s))
                .expect("valid")
                .interface_name;
            let before = agent.observed.borrow().transactions;
            sb.vsctl(&["--no-wait", "del-port", BR, &name])
                .expect("del-port");
            let t = Instant::now();
            agent.wait(|o| o.transactions > before && o.in_sync).await;
            drift_commit.push(t.elapsed());
            agent
                .wait(|o| {
                    o.transactions > before
                        && o.ports
                            .get(&key)
                            .is_some_and(|r| r.state == PortState::Ready)
                })
                .await;
            drift.push(t.elapsed());
        }
        agent.stop().await;
    }
    let mut vsctl_one = Vec::new();
    {
        let sb = fresh();
        let c = client(&sb).await;
        let mut args = Vec::new();
        for i in 0..N {
            if i > 0 {
                args.push("--".to_string());
            }
            args.extend(vsctl_add(i));
        }
        vsctl(&sb, &args);
        wait_ofports(&c, N).await;
        for s in 0..samples {
            let t = Instant::now();
            vsctl(&sb, &vsctl_add(N + s));
            wait_ofports(&c, N + s + 1).await;
            vsctl_one.push(t.elapsed());
        }
    }

    let (a, ch, one_a, one_v) = (
        median(agent_1000.clone()),
        median(chained_1000.clone()),
        median(agent_one.clone()),
        median(vsctl_one.clone()),
    );
    println!();
    println!("{:<58} {:>12}", "scenario (median)", "time");
    println!(
        "{:<58} {:>12}",
        "agent: 1000 ports from empty, all with ofports",
        ms(a)
    );
    println!(
        "{:<58} {:>12}",
        "  of which: until the transaction is committed",
        ms(median(agent_commit))
    );
    println!(
        "{:<58} {:>12}",
        "ovs-vsctl: 1000 ports in one chained command",
        ms(ch)
    );
    println!(
        "{:<58} {:>12}",
        format!("ovs-vsctl: one add-port (median of {single_samples} on a fresh bridge)"),
        ms(median(single))
    );
    println!(
        "{:<58} {:>12}",
        "ovs-vsctl: 1000 single add-ports (extrapolated ×1000)",
        ms(single_1000)
    );
    let one_commit = median(agent_one_commit);
    println!("{:<58} {:>12}", "agent: 1 port beside 1000", ms(one_a));
    println!(
        "{:<58} {:>12}",
        "  of which the agent's share: until committed",
        ms(one_commit)
    );
    println!(
        "{:<58} {:>12}",
        "  of which vswitchd's: committed → ofport",
        ms(one_a.saturating_sub(one_commit))
    );
    println!(
        "{:<58} {:>12}",
        "ovs-vsctl: 1 add-port beside 1000",
        ms(one_v)
    );
    println!(
        "{:<58} {:>12}",
        "agent: drift repair of a deleted port, committed (1000 present)",
        ms(median(drift_commit))
    );
    println!(
        "{:<58} {:>12}",
        "agent: drift repair of a deleted port, ofport back",
        ms(median(drift))
    );
    println!();
    let ratio = |x: Duration, y: Duration| x.as_secs_f64() / y.as_secs_f64();
    let line = |what: &str, r: f64, target: f64| {
        println!(
            "{what:<58} {r:>8.3}×  (target ≤ {target}×: {})",
            if r <= target { "met" } else { "MISSED" }
        );
    };
    line("agent 1000 / chained ovs-vsctl 1000", ratio(a, ch), 0.6);
    line(
        "agent 1000 / single ovs-vsctl ×1000 (extrapolated)",
        ratio(a, single_1000),
        0.1,
    );
    println!(
        "{:<58} {:>8.3}×",
        "agent 1 beside 1000 / ovs-vsctl add-port beside 1000",
        ratio(one_a, one_v)
    );
    let share = one_commit.as_secs_f64() * 1000.0;
    println!(
        "{:<58} {share:>7.1} ms  (target ≤ 10 ms: {})",
        "agent's share of 1 port beside 1000 (diff + transaction)",
        if share <= 10.0 { "met" } else { "MISSED" }
    );
}
