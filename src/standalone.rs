//! Standalone mode: the agent for a machine without Kubernetes.
//!
//! The same pipe as in a cluster with the API replaced by a directory: manifests →
//! [`crate::planner`] for this node → the node loop → OVS. The directory is re-read when a
//! file in it changes; the tunnel ports are printed like `kubectl get tunnelports`
//! whenever what OVS shows changes.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use tokio_util::sync::CancellationToken;

use crate::agent::node::{self, Feed, NodeConfig, NodeView, OvsArgs};
use crate::agent::status::tunnel_port_status;
use crate::api::TunnelPort;
use crate::api::conditions::{READY, is_true};
use crate::cli::table;
use crate::manifests::{self, Manifests};
use crate::planner;

/// Arguments of `standalone`.
#[derive(Clone, Debug, clap::Args)]
pub struct StandaloneArgs {
    /// Directory (or file) of RemoteDevice manifests, and optionally this node's Node
    /// manifest (labels, tunnel-IP annotation). Re-read whenever a file changes.
    #[arg(short = 'f', long = "filename", value_name = "DIR")]
    pub dir: PathBuf,
    /// This node's name (matched against Node manifests and device node selectors).
    #[arg(long, env = "RDO_NODE_NAME")]
    pub node_name: String,
    /// Where OVS is.
    #[command(flatten)]
    pub ovs: OvsArgs,
    /// How often the directory is checked for changes.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub poll: Duration,
    /// Exit (0) as soon as every tunnel port is Ready, instead of following changes.
    #[arg(long)]
    pub once: bool,
}

/// Parses `500ms`, `2s`, `1m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?}: expected a number with a unit, like 500ms or 2s"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" | "" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("{s:?}: unit must be ms, s or m")),
    }
}

/// What to hand the node loop for this node, and what to tell the user.
#[derive(Clone, Debug, PartialEq)]
pub struct NodePlan {
    /// This node's TunnelPorts.
    pub tunnel_ports: Vec<TunnelPort>,
    /// One line per rejected manifest or refused device.
    pub problems: Vec<String>,
}

/// Plans for one node from manifests (pure). Without a Node manifest of that name the node
/// has no labels and no known tunnel IP. Devices on the `previous` ports keep their claims
/// against newcomers (files carry no creation time).
pub fn plan_node(manifests: &Manifests, node_name: &str, previous: &[TunnelPort]) -> NodePlan {
    let mut nodes: Vec<Node> = manifests
        .nodes
        .iter()
        .filter(|n| n.metadata.name.as_deref() == Some(node_name))
        .cloned()
        .collect();
    if nodes.is_empty() {
        nodes.push(Node {
            metadata: ObjectMeta {
                name: Some(node_name.to_string()),
                ..ObjectMeta::default()
            },
            ..Node::default()
        });
    }
    let devices: Vec<_> = manifests.devices.iter().map(|(_, d)| d.clone()).collect();
    let plan = planner::plan_tunnels_keeping(&devices, &nodes, previous);
    let mut problems: Vec<String> = manifests
        .rejected
        .iter()
        .map(|r| format!("rejected: {r}"))
        .collect();
    for (key, outcome) in &plan.devices {
        match outcome {
            planner::DeviceOutcome::Planned {
                self_tunnel_nodes, ..
            } if !self_tunnel_nodes.is_empty() => problems.push(format!(
                "skipped: {key}: its VTEP is this node's own tunnel IP"
            )),
            planner::DeviceOutcome::Planned { .. } => {}
            planner::DeviceOutcome::Invalid(errors) => problems.push(format!(
                "rejected: {key}: {}",
                crate::api::validate::join(errors)
            )),
            planner::DeviceOutcome::Conflict { message, .. } => {
                problems.push(format!("rejected: {key}: conflict: {message}"))
            }
        }
    }
    problems.extend(
        plan.node_issues
            .iter()
            .map(|i| format!("node {}: {}", i.node, i.message)),
    );
    NodePlan {
        tunnel_ports: plan.tunnel_ports,
        problems,
    }
}

/// The tunnel ports with the status OVS shows, for printing.
pub fn with_status(ports: &[TunnelPort], view: &NodeView) -> Vec<TunnelPort> {
    let now = Timestamp::now();
    ports
        .iter()
        .map(|tp| {
            let mut tp = tp.clone();
            tp.status = Some(tunnel_port_status(&tp, view, now));
            tp
        })
        .collect()
}

/// What the directory holds: every manifest file with its content, so any change (also a
/// same-size rewrite within one mtime tick) is seen.
fn fingerprint(dir: &std::path::Path) -> Result<BTreeMap<PathBuf, Vec<u8>>, std::io::Error> {
    let mut out = BTreeMap::new();
    for file in manifests::manifest_files(dir)? {
        let content = std::fs::read(&file)?;
        out.insert(file, content);
    }
    Ok(out)
}

/// Runs standalone mode until `shutdown` (or, with `--once`, until every port is Ready).
pub async fn run(
    args: StandaloneArgs,
    shutdown: CancellationToken,
    out: &mut (impl Write + Send),
) -> anyhow::Result<()> {
    let config = NodeConfig::new(&args.ovs, Feed::Standalone);
    // A child token: `--once` stops the loops without cancelling the caller's token.
    let stop = shutdown.child_token();
    let handle = node::spawn(config, stop.clone());
    let mut view = handle.view.clone();
    let mut poll = tokio::time::interval(args.poll);
    let mut seen = None;
    let mut current = NodePlan {
        tunnel_ports: vec![],
        problems: vec![],
    };
    let mut printed = String::new();

    let result = loop {
        tokio::select! {
            _ = shutdown.cancelled() => break Ok(()),
            _ = poll.tick() => {
                let now = match fingerprint(&args.dir) {
                    Ok(f) => Some(f),
                    Err(e) => {
                        writeln!(out, "error: reading {}: {e}; keeping the last good state", args.dir.display())?;
                        seen.clone()
                    }
                };
                if now != seen {
                    seen = now;
                    match manifests::read_paths(std::slice::from_ref(&args.dir)) {
                        Ok(m) => {
                            let next = plan_node(&m, &args.node_name, &current.tunnel_ports);
                            for p in next.problems.iter().filter(|p| !current.problems.contains(p)) {
                                writeln!(out, "{p}")?;
                            }
                            current = next;
                            handle.desired.send_replace(Some(current.tunnel_ports.clone()));
                        }
                        Err(e) => writeln!(out, "error: reading {}: {e}; keeping the last good state", args.dir.display())?,
                    }
                }
            }
            r = view.changed() => if r.is_err() { break Ok(()) },
        }
        let snapshot = view.borrow_and_update().clone();
        if let Some(failed) = &snapshot.failed {
            break Err(anyhow::anyhow!("{failed}"));
        }
        let ports = with_status(&current.tunnel_ports, &snapshot);
        let text = if ports.is_empty() {
            "No tunnel ports on this node.\n".to_string()
        } else {
            table::tunnel_ports(&ports, true)
        };
        if text != printed && seen.is_some() {
            write!(out, "\n{text}")?;
            out.flush()?;
            printed = text;
        }
        let all_ready = ports.iter().all(|tp| {
            tp.status
                .as_ref()
                .is_some_and(|s| is_true(&s.conditions, READY))
        });
        if args.once && seen.is_some() && all_ready && snapshot.flows_current() {
            break Ok(());
        }
    };
    // Leave OVS as it is: stop the loops without touching anything.
    stop.cancel();
    handle.join().await;
    result
}
