//! Standalone mode: the agent for a machine without Kubernetes.
//!
//! The same pipe as in a cluster with the API replaced by a directory: manifests →
//! [`crate::planner`] for this node → the node loop → OVS. The directory is re-read when a
//! file in it changes; the tunnel ports are printed like `kubectl get tunnelports`
//! whenever what OVS shows changes.
//!
//! A `VtepGateway` in the directory makes it program that switch too, as the controller
//! does ([`crate::controller::gateways`]): [`plan_gateways`] (pure) takes this node's
//! planned TunnelPorts as the flood list → [`crate::vtep::Fleet`] runs one writer per
//! gateway → the gateways are printed like `kubectl get vtepgateways` whenever their
//! status changes. `ssl:` credentials come from `--secrets-dir`, laid out as a mounted
//! Secret. A gateway removed from the directory first has our rows taken off its switch
//! (as the controller's finalizer does), then its writer stops.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use tokio_util::sync::CancellationToken;

use crate::agent::node::{self, Feed, NodeConfig, NodeView, OvsArgs};
use crate::agent::status::tunnel_port_status;
use crate::api::conditions::{READY, find, is_true};
use crate::api::{RemoteDevice, TunnelPort, VtepGateway};
use crate::cli::table;
use crate::controller::gateways::{TLS_CA, TLS_CERT, TLS_KEY, Want, want};
use crate::manifests::{self, Manifests};
use crate::ovsdb::TlsFiles;
use crate::planner;
use crate::vtep::status::reason;
use crate::vtep::{
    Blocked, CONNECTED, FabricState, Fleet, GatewayConfig, GatewayObserved, GatewayTarget,
    gateway_status, gateway_targets,
};

/// Arguments of `standalone`.
#[derive(Clone, Debug, clap::Args)]
pub struct StandaloneArgs {
    /// Directory (or file) of RemoteDevice manifests, optionally this node's Node
    /// manifest (labels, tunnel-IP annotation) and VtepGateways (switches to program
    /// too). Re-read whenever a file changes.
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
    /// Exit (0) as soon as every tunnel port and every VtepGateway is Ready, instead of
    /// following changes.
    #[arg(long)]
    pub once: bool,
    /// Where the TLS material of `ssl:` VtepGateways is: `DIR/<tlsSecretName>/tls.key`,
    /// `tls.crt` and `ca.crt` — exactly the layout of a Kubernetes Secret mounted as a
    /// volume at `DIR/<tlsSecretName>` (key, client certificate, CA of the switch). The
    /// files are read on every connect, so rotated files take effect at the next reconnect.
    #[arg(long, env = "RDO_SECRETS_DIR", value_name = "DIR")]
    pub secrets_dir: Option<PathBuf>,
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
        // The planner that shared them is gone: no copies are made.
        tunnel_ports: plan
            .tunnel_ports
            .into_iter()
            .map(Arc::unwrap_or_clone)
            .collect(),
        problems,
    }
}

/// One VtepGateway of the directory, as standalone mode runs it.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedGateway {
    /// The manifest.
    pub gateway: VtepGateway,
    /// What [`gateway_targets`] made of it.
    pub target: GatewayTarget,
    /// The writer's settings, or why no writer runs.
    pub writer: Result<GatewayConfig, Blocked>,
    /// What its switch should hold.
    pub desired: FabricState,
}

impl PlannedGateway {
    /// The gateway's name.
    pub fn name(&self) -> &str {
        &self.target.name
    }
}

/// What to hand the gateway writers, and what to tell the user.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GatewayPlan {
    /// Every gateway of the directory, by name.
    pub gateways: Vec<PlannedGateway>,
    /// One line per device or segment that cannot be programmed as asked.
    pub problems: Vec<String>,
}

/// The TLS Secrets named by the directory's gateways.
pub fn secret_names(manifests: &Manifests) -> BTreeSet<String> {
    manifests
        .gateways
        .iter()
        .filter_map(|(_, g)| g.spec.tls_secret_name.clone())
        .collect()
}

/// Finds each Secret's files under `dir` (`DIR/<name>/{tls.key,tls.crt,ca.crt}`, as a
/// mounted Secret lays them out): the paths once all three exist and are not empty, else
/// why not. Only looks at the files; the OVSDB client reads them when it connects.
pub fn read_secrets(
    dir: Option<&Path>,
    names: &BTreeSet<String>,
) -> BTreeMap<String, Result<TlsFiles, String>> {
    names
        .iter()
        .map(|name| {
            let found = match dir {
                None => Err(format!(
                    "standalone mode reads it from --secrets-dir DIR as DIR/{name}/{{{TLS_KEY},{TLS_CERT},{TLS_CA}}} (the layout of a mounted Secret); no --secrets-dir given"
                )),
                Some(dir) => secret_files(&dir.join(name)),
            };
            (name.clone(), found)
        })
        .collect()
}

fn secret_files(dir: &Path) -> Result<TlsFiles, String> {
    let file = |key: &str| {
        let path = dir.join(key);
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() && m.len() > 0 => Ok(path),
            Ok(m) if m.is_file() => Err(format!("{} is empty", path.display())),
            Ok(_) => Err(format!("{} is not a file", path.display())),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    };
    Ok(TlsFiles {
        private_key: file(TLS_KEY)?,
        certificate: file(TLS_CERT)?,
        ca_certificate: file(TLS_CA)?,
    })
}

/// Plans every gateway of the directory (pure): this node's planned `tunnel_ports` are the
/// TunnelPorts input, so the node's tunnel IP is the flood list of the VNIs it carries;
/// `secrets` is what [`read_secrets`] found for the TLS Secrets.
pub fn plan_gateways(
    manifests: &Manifests,
    tunnel_ports: &[TunnelPort],
    secrets: &BTreeMap<String, Result<TlsFiles, String>>,
) -> GatewayPlan {
    let gateways: Vec<&VtepGateway> = manifests.gateways.iter().map(|(_, g)| g).collect();
    let devices: Vec<&RemoteDevice> = manifests.devices.iter().map(|(_, d)| d).collect();
    let ports: Vec<&TunnelPort> = tunnel_ports.iter().collect();
    let (mut targets, unattached) = gateway_targets(&gateways, &devices, &ports);
    let mut problems: Vec<String> = unattached
        .iter()
        .map(|u| format!("device {}: {}", u.device, u.message))
        .collect();
    let mut planned = Vec::new();
    for gateway in gateways {
        let name = gateway.metadata.name.clone().unwrap_or_default();
        let Some(target) = targets.remove(&name) else {
            continue;
        };
        let tls = target
            .tls_secret
            .as_deref()
            .and_then(|s| secrets.get(s).cloned());
        let writer = match want(&target, tls) {
            Want::Run(config) => Ok(config),
            Want::Blocked(b) => Err(b),
        };
        let desired = target.desired();
        problems.extend(
            desired
                .problems
                .iter()
                .map(|p| format!("gateway {name}: {p}")),
        );
        planned.push(PlannedGateway {
            gateway: gateway.clone(),
            target,
            writer,
            desired,
        });
    }
    planned.sort_by(|a, b| a.target.name.cmp(&b.target.name));
    GatewayPlan {
        gateways: planned,
        problems,
    }
}

/// The gateways with the status their writers' observations give (pure; `observed` by
/// gateway name, absent = no writer yet).
pub fn gateways_with_status(
    plan: &GatewayPlan,
    observed: &BTreeMap<String, GatewayObserved>,
    now: Timestamp,
) -> Vec<VtepGateway> {
    plan.gateways
        .iter()
        .map(|g| {
            let mut gw = g.gateway.clone();
            let status = gateway_status(
                &gw,
                &g.target,
                g.writer.as_ref().err(),
                observed.get(g.name()),
                now,
            );
            gw.status = Some(status);
            gw
        })
        .collect()
}

/// What keeps each gateway from being connected or ready, one line each, in the words of
/// its conditions; the passing states of a healthy start (connecting, syncing) say nothing.
pub fn gateway_problems(gateways: &[VtepGateway]) -> Vec<String> {
    let mut out = Vec::new();
    for gw in gateways {
        let name = gw.metadata.name.as_deref().unwrap_or_default();
        let conditions = gw
            .status
            .as_ref()
            .map(|s| s.conditions.as_slice())
            .unwrap_or_default();
        let (Some(connected), Some(ready)) = (find(conditions, CONNECTED), find(conditions, READY))
        else {
            continue;
        };
        if connected.status != "True" {
            if connected.reason != reason::CONNECTING {
                out.push(format!(
                    "gateway {name}: not connected: {}: {}",
                    connected.reason, connected.message
                ));
            }
        } else if ready.status != "True" && ready.reason != reason::SYNCING {
            out.push(format!(
                "gateway {name}: not ready: {}: {}",
                ready.reason, ready.message
            ));
        }
    }
    out
}

/// Whether every gateway's status says Ready.
pub fn gateways_ready(gateways: &[VtepGateway]) -> bool {
    gateways.iter().all(|g| {
        g.status
            .as_ref()
            .is_some_and(|s| is_true(&s.conditions, READY))
    })
}

/// Whether a writer towards an empty desired state has taken all of our rows off its
/// switch.
pub fn drained(observed: &GatewayObserved) -> bool {
    observed.connected && observed.in_sync && observed.managed.is_empty()
}

/// What is printed for the gateways: the table, or a line once the last one is gone
/// (nothing at all while there never was one).
fn gateway_text(gateways: &[VtepGateway], printed: &str) -> String {
    match (gateways.is_empty(), printed.is_empty()) {
        (true, true) => String::new(),
        (true, false) => "No VtepGateways in the directory.\n".into(),
        (false, _) => table::vtep_gateways(gateways),
    }
}

/// Hands the fleet the plan: a writer per runnable gateway; a gateway that left the
/// directory keeps its writer, towards an empty state, until our rows are off its switch.
fn apply_gateways(
    fleet: &mut Fleet,
    previous: &GatewayPlan,
    next: &GatewayPlan,
    draining: &mut BTreeMap<String, GatewayConfig>,
    out: &mut impl Write,
) -> std::io::Result<()> {
    let mut keep = BTreeSet::new();
    for g in &next.gateways {
        draining.remove(g.name());
        if let Ok(config) = &g.writer {
            fleet.set(g.name(), config.clone(), Some(g.desired.clone()));
            keep.insert(g.name().to_string());
        }
    }
    for g in &previous.gateways {
        if next.gateways.iter().any(|n| n.name() == g.name()) {
            continue;
        }
        if let Ok(config) = &g.writer {
            writeln!(
                out,
                "gateway {}: gone from the directory; taking our rows off its switch",
                g.name()
            )?;
            fleet.set(g.name(), config.clone(), Some(FabricState::default()));
            draining.insert(g.name().to_string(), config.clone());
        }
    }
    keep.extend(draining.keys().cloned());
    fleet.retain(&keep);
    Ok(())
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

/// How a manifest file looked at one poll.
#[derive(Clone, Debug, PartialEq)]
struct FileStamp {
    len: u64,
    /// Device and inode: a file replaced by another differs in these.
    inode: (u64, u64),
    /// The inode's change time, which every write and every mtime change (`cp -p`,
    /// `rsync -a`, `tar x`, `touch -r`) moves to now and nothing can set back.
    changed: SystemTime,
    /// Only while `changed` is within [`RECENT`]: a same-size rewrite within one tick of
    /// a coarse clock is then still seen, and a file at rest is never read again.
    content: Option<Vec<u8>>,
}

/// How long after its last change a file's content is compared too.
const RECENT: Duration = Duration::from_secs(2);

/// What the directory holds, for telling a change: every manifest file's size, inode and
/// change time (and its content while that is recent). Reading every file in full every
/// poll cost more than 1 % of a core with 10 000 devices.
fn fingerprint(dir: &std::path::Path) -> Result<BTreeMap<PathBuf, FileStamp>, std::io::Error> {
    let mut out = BTreeMap::new();
    let now = SystemTime::now();
    for file in manifests::manifest_files(dir)? {
        let meta = std::fs::metadata(&file)?;
        let changed = SystemTime::UNIX_EPOCH
            + Duration::new(
                u64::try_from(meta.ctime()).unwrap_or(0),
                u32::try_from(meta.ctime_nsec()).unwrap_or(0),
            );
        let recent = now.duration_since(changed).unwrap_or_default() < RECENT;
        let content = if recent {
            Some(std::fs::read(&file)?)
        } else {
            None
        };
        out.insert(
            file,
            FileStamp {
                len: meta.len(),
                inode: (meta.dev(), meta.ino()),
                changed,
                content,
            },
        );
    }
    Ok(out)
}

/// Reads the manifests and plans this node, on a blocking thread: with thousands of
/// devices that takes tens of milliseconds, which on a runtime worker held up the OVSDB
/// session starting beside it.
async fn read_and_plan(
    args: &StandaloneArgs,
    previous: &[TunnelPort],
) -> std::io::Result<(Manifests, NodePlan)> {
    let (dir, node, previous) = (args.dir.clone(), args.node_name.clone(), previous.to_vec());
    let work = tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        let m = manifests::read_paths(std::slice::from_ref(&dir))?;
        let read_us = started.elapsed().as_micros() as u64;
        let plan = plan_node(&m, &node, &previous);
        tracing::debug!(
            read_us,
            planned_us = started.elapsed().as_micros() as u64 - read_us,
            tunnel_ports = plan.tunnel_ports.len(),
            "manifests read and planned"
        );
        Ok((m, plan))
    });
    match work.await {
        Ok(result) => result,
        // A panic in the planner stays a panic, not a read error.
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// Prints the lines of `next` that are not in `shown`, then remembers `next`.
fn print_new(
    out: &mut impl Write,
    shown: &mut Vec<String>,
    next: Vec<String>,
) -> std::io::Result<()> {
    for line in next.iter().filter(|l| !shown.contains(l)) {
        writeln!(out, "{line}")?;
    }
    *shown = next;
    Ok(())
}

/// Runs standalone mode until `shutdown` (or, with `--once`, until every port and every
/// gateway is Ready).
pub async fn run(
    args: StandaloneArgs,
    shutdown: CancellationToken,
    out: &mut (impl Write + Send),
) -> anyhow::Result<()> {
    let config = NodeConfig::new(&args.ovs, Feed::Standalone);
    // A child token: `--once` stops the loops without cancelling the caller's token.
    let stop = shutdown.child_token();
    let handle = node::spawn(config, stop.clone());
    let mut fleet = Fleet::new(stop.clone());
    let wake = fleet.wake();
    let mut view = handle.view.clone();
    let mut poll = tokio::time::interval(args.poll);
    let mut seen = None;
    let mut manifests: Option<Manifests> = None;
    let mut secrets = BTreeMap::new();
    let mut current = NodePlan {
        tunnel_ports: vec![],
        problems: vec![],
    };
    let mut gateways = GatewayPlan::default();
    let mut draining: BTreeMap<String, GatewayConfig> = BTreeMap::new();
    let mut problems: Vec<String> = vec![];
    let mut gateway_issues: Vec<String> = vec![];
    let mut printed = String::new();
    let mut printed_gateways = String::new();

    let result = loop {
        // Whether anything shown may have changed: a quiet poll renders nothing.
        let mut news = true;
        tokio::select! {
            _ = shutdown.cancelled() => break Ok(()),
            _ = poll.tick() => {
                let mut replan = false;
                let now = match fingerprint(&args.dir) {
                    Ok(f) => Some(f),
                    Err(e) => {
                        writeln!(out, "error: reading {}: {e}; keeping the last good state", args.dir.display())?;
                        seen.clone()
                    }
                };
                if now != seen {
                    seen = now;
                    match read_and_plan(&args, &current.tunnel_ports).await {
                        Ok((m, planned)) => {
                            current = planned;
                            handle.desired.send_replace(Some(current.tunnel_ports.clone()));
                            manifests = Some(m);
                            replan = true;
                        }
                        Err(e) => writeln!(out, "error: reading {}: {e}; keeping the last good state", args.dir.display())?,
                    }
                }
                if let Some(m) = &manifests {
                    // Secrets may appear, go or be fixed without any manifest changing.
                    let found = read_secrets(args.secrets_dir.as_deref(), &secret_names(m));
                    if found != secrets {
                        secrets = found;
                        replan = true;
                    }
                    if replan {
                        let next = plan_gateways(m, &current.tunnel_ports, &secrets);
                        let lines = current.problems.iter().chain(&next.problems).cloned().collect();
                        print_new(out, &mut problems, lines)?;
                        apply_gateways(&mut fleet, &gateways, &next, &mut draining, out)?;
                        gateways = next;
                    }
                }
                news = replan;
            }
            r = view.changed() => if r.is_err() { break Ok(()) },
            _ = wake.notified() => {}
        }
        if !news {
            continue;
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

        let observed: BTreeMap<String, GatewayObserved> = fleet
            .names()
            .filter_map(|n| fleet.observed(n).map(|o| (n.clone(), o)))
            .collect();
        for (name, _) in draining.clone() {
            if observed.get(&name).is_some_and(drained) {
                fleet.stop(&name);
                draining.remove(&name);
                writeln!(
                    out,
                    "gateway {name}: our rows are off its switch; writer stopped"
                )?;
            }
        }
        let rows = gateways_with_status(&gateways, &observed, Timestamp::now());
        let text = gateway_text(&rows, &printed_gateways);
        if text != printed_gateways && seen.is_some() {
            write!(out, "\n{text}")?;
            printed_gateways = text;
        }
        print_new(out, &mut gateway_issues, gateway_problems(&rows))?;
        out.flush()?;

        if args.once
            && seen.is_some()
            && all_ready
            && snapshot.flows_current()
            && gateways_ready(&rows)
            && draining.is_empty()
        {
            break Ok(());
        }
    };
    // Leave OVS and the switches as they are: stop the loops without touching anything.
    stop.cancel();
    fleet.stop_all();
    handle.join().await;
    result
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::vtep::{PortVlan, SwitchStatus};

    const NODE: &str = "
apiVersion: v1
kind: Node
metadata:
  name: n1
  annotations: {remotedevice.io/tunnel-ip: 192.168.100.1}
";
    const TCP_GATEWAY: &str = "
apiVersion: remotedevice.io/v1alpha1
kind: VtepGateway
metadata: {name: tor1}
spec: {endpoint: 'tcp:10.254.0.2:6640', tunnelIPs: [192.168.100.2]}
";
    const SSL_GATEWAY: &str = "
apiVersion: remotedevice.io/v1alpha1
kind: VtepGateway
metadata: {name: tor1}
spec:
  endpoint: 'ssl:10.254.0.2:6641'
  tlsSecretName: tor1-client
  tunnelIPs: [192.168.100.2]
  physicalSwitch: TOR-1
";
    const ATTACHED: &str = "
apiVersion: remotedevice.io/v1alpha1
kind: RemoteDevice
metadata: {name: server, namespace: tenant-a}
spec:
  vtepIP: 192.168.100.2
  vni: 5001
  macAddress: '52:54:00:00:50:01'
  attachment: {port: p1, vlan: 10}
";
    const UNATTACHED: &str = "
apiVersion: remotedevice.io/v1alpha1
kind: RemoteDevice
metadata: {name: plain, namespace: tenant-a}
spec: {vtepIP: 192.168.100.2, vni: 5002, macAddress: '52:54:00:00:50:02'}
";
    const ELSEWHERE: &str = "
apiVersion: remotedevice.io/v1alpha1
kind: RemoteDevice
metadata: {name: elsewhere, namespace: tenant-a}
spec:
  vtepIP: 192.168.100.9
  vni: 5003
  macAddress: '52:54:00:00:50:03'
  attachment: {port: p2}
";

    fn manifests(docs: &[&str]) -> Manifests {
        let mut m = Manifests::default();
        m.add_text(Path::new("test.yaml"), &docs.join("\n---\n"));
        assert!(m.rejected.is_empty(), "{:?}", m.rejected);
        m
    }

    fn files(dir: &str) -> TlsFiles {
        let dir = Path::new(dir);
        TlsFiles {
            private_key: dir.join("tls.key"),
            certificate: dir.join("tls.crt"),
            ca_certificate: dir.join("ca.crt"),
        }
    }

    /// One segment: (VNI, bindings, flood).
    type Seg = (u32, Vec<(&'static str, u16)>, Vec<&'static str>);
    /// What the secrets directory gave.
    type Secrets = BTreeMap<String, Result<TlsFiles, String>>;
    /// A gateway's writer settings, or why none runs.
    type Writer = Result<GatewayConfig, Blocked>;
    /// One planned gateway: name, writer, segments, problems of its target.
    type Planned = (&'static str, Writer, Vec<Seg>, Vec<&'static str>);
    /// A case of `plan_gateways_table`: what, documents, secrets, gateways, problems.
    type PlanCase<'a> = (
        &'a str,
        Vec<&'a str>,
        &'a Secrets,
        Vec<Planned>,
        Vec<&'a str>,
    );
    /// A case of `gateway_status_lines_and_readiness`: what, writer (None = as
    /// planned), observed, lines printed, ready, the CONNECTED and READY columns.
    type StatusCase<'a> = (
        &'a str,
        Option<Writer>,
        Option<GatewayObserved>,
        Vec<&'a str>,
        bool,
        &'a str,
    );

    #[test]
    fn plan_gateways_table() {
        let tls_ok = BTreeMap::from([("tor1-client".to_string(), Ok(files("/s/tor1-client")))]);
        let tls_bad = BTreeMap::from([("tor1-client".to_string(), Err("missing".to_string()))]);
        let none = BTreeMap::new();
        let tcp = |switch: &str| {
            Ok(GatewayConfig {
                endpoint: "tcp:10.254.0.2:6640".into(),
                switch: switch.into(),
                tls: None,
            })
        };
        let cases: Vec<PlanCase> = vec![
            (
                "no gateway: nothing",
                vec![NODE, ATTACHED],
                &none,
                vec![],
                vec![
                    "device tenant-a/server: no VtepGateway has tunnel IP 192.168.100.2; the attachment is not programmed",
                ],
            ),
            (
                "tcp: the device bound on its port, this node in the flood list",
                vec![NODE, TCP_GATEWAY, ATTACHED, UNATTACHED],
                &none,
                vec![(
                    "tor1",
                    tcp("tor1"),
                    vec![(5001, vec![("p1", 10)], vec!["192.168.100.1"])],
                    vec![],
                )],
                vec![],
            ),
            (
                "no device attached: an empty switch is desired",
                vec![NODE, TCP_GATEWAY, UNATTACHED],
                &none,
                vec![("tor1", tcp("tor1"), vec![], vec![])],
                vec![],
            ),
            (
                "no Node manifest: no tunnel IP to flood to, said so",
                vec![TCP_GATEWAY, ATTACHED],
                &none,
                vec![(
                    "tor1",
                    tcp("tor1"),
                    vec![(5001, vec![("p1", 10)], vec![])],
                    vec!["node n1: no known tunnel IP, so the switch cannot reach it"],
                )],
                vec![],
            ),
            (
                "an attachment behind no gateway is reported, the others still run",
                vec![NODE, TCP_GATEWAY, ATTACHED, ELSEWHERE],
                &none,
                vec![(
                    "tor1",
                    tcp("tor1"),
                    vec![(5001, vec![("p1", 10)], vec!["192.168.100.1"])],
                    vec![],
                )],
                vec![
                    "device tenant-a/elsewhere: no VtepGateway has tunnel IP 192.168.100.9; the attachment is not programmed",
                ],
            ),
            (
                "ssl: the Secret's files, the named Physical_Switch",
                vec![NODE, SSL_GATEWAY, ATTACHED],
                &tls_ok,
                vec![(
                    "tor1",
                    Ok(GatewayConfig {
                        endpoint: "ssl:10.254.0.2:6641".into(),
                        switch: "TOR-1".into(),
                        tls: Some(files("/s/tor1-client")),
                    }),
                    vec![(5001, vec![("p1", 10)], vec!["192.168.100.1"])],
                    vec![],
                )],
                vec![],
            ),
            (
                "ssl: the files cannot be used, no writer",
                vec![NODE, SSL_GATEWAY, ATTACHED],
                &tls_bad,
                vec![(
                    "tor1",
                    Err(Blocked::TlsSecret("Secret tor1-client: missing".into())),
                    vec![(5001, vec![("p1", 10)], vec!["192.168.100.1"])],
                    vec![],
                )],
                vec![],
            ),
            (
                "ssl: the Secret was not looked up",
                vec![NODE, SSL_GATEWAY],
                &none,
                vec![(
                    "tor1",
                    Err(Blocked::TlsSecret("Secret tor1-client not found".into())),
                    vec![],
                    vec![],
                )],
                vec![],
            ),
        ];
        for (what, docs, secrets, want_gateways, want_problems) in cases {
            let m = manifests(&docs);
            let node = plan_node(&m, "n1", &[]);
            let plan = plan_gateways(&m, &node.tunnel_ports, secrets);
            assert_eq!(plan.problems, want_problems, "{what}");
            assert_eq!(
                plan.gateways.len(),
                want_gateways.len(),
                "{what}: {plan:#?}"
            );
            for (got, (name, writer, segments, target_problems)) in
                plan.gateways.iter().zip(want_gateways)
            {
                assert_eq!(got.name(), name, "{what}");
                assert_eq!(got.writer, writer, "{what}");
                assert_eq!(got.target.problems, target_problems, "{what}");
                let segs: Vec<Seg> = got
                    .desired
                    .segments
                    .values()
                    .map(|s| {
                        (
                            s.vni,
                            s.bindings.iter().map(|b| (leak(&b.port), b.vlan)).collect(),
                            s.flood.iter().map(|ip| leak(&ip.to_string())).collect(),
                        )
                    })
                    .collect();
                assert_eq!(segs, segments, "{what}");
            }
        }
    }

    fn leak(s: &str) -> &'static str {
        Box::leak(s.to_string().into_boxed_str())
    }

    #[test]
    fn gateways_come_sorted_by_name() {
        let other = TCP_GATEWAY
            .replace("name: tor1", "name: a-tor")
            .replace("192.168.100.2", "192.168.100.7");
        let m = manifests(&[TCP_GATEWAY, &other]);
        let plan = plan_gateways(&m, &[], &BTreeMap::new());
        let names: Vec<&str> = plan.gateways.iter().map(|g| g.name()).collect();
        assert_eq!(names, ["a-tor", "tor1"]);
    }

    #[test]
    fn fingerprint_sees_same_size_rewrites_also_with_an_old_mtime() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("devices.yaml");
        let write = |text: &str, modified: SystemTime| {
            std::fs::write(&file, text).unwrap();
            std::fs::File::options()
                .write(true)
                .open(&file)
                .unwrap()
                .set_modified(modified)
                .unwrap();
        };
        // A same-size rewrite with the same mtime. (Here the nanosecond change time tells
        // too; the content is what tells on a filesystem with a coarse clock.)
        let tick = SystemTime::now();
        write("kind: A\n", tick);
        let first = fingerprint(dir.path()).unwrap();
        write("kind: B\n", tick);
        let second = fingerprint(dir.path()).unwrap();
        assert_ne!(first, second);
        assert!(first[&file].content.is_some());

        // A same-size rewrite that sets an old mtime (as `cp -p` does) changes the inode's
        // change time, which cannot be set back: still seen.
        let old = SystemTime::now() - Duration::from_secs(3600);
        write("kind: C\n", old);
        let copied = fingerprint(dir.path()).unwrap();
        assert_ne!(copied, second);
        assert!(
            copied[&file].content.is_some(),
            "changed just now: content compared"
        );
        assert_eq!(copied, fingerprint(dir.path()).unwrap());

        // At rest (both times older than RECENT) a file is not read: stat alone tells.
        std::thread::sleep(RECENT + Duration::from_millis(100));
        let at_rest = fingerprint(dir.path()).unwrap();
        assert_eq!(at_rest[&file].content, None);
        assert_eq!(at_rest, fingerprint(dir.path()).unwrap());
    }

    #[test]
    fn secrets_are_found_in_the_mounted_secret_layout() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for (name, keys) in [
            (
                "complete",
                &[("tls.key", "k"), ("tls.crt", "c"), ("ca.crt", "a")][..],
            ),
            ("no-ca", &[("tls.key", "k"), ("tls.crt", "c")][..]),
            (
                "empty-key",
                &[("tls.key", ""), ("tls.crt", "c"), ("ca.crt", "a")][..],
            ),
        ] {
            std::fs::create_dir(d.join(name)).unwrap();
            for (key, text) in keys {
                std::fs::write(d.join(name).join(key), text).unwrap();
            }
        }
        // A Secret volume's files are symlinks into `..data`.
        std::fs::create_dir_all(d.join("mounted/..data")).unwrap();
        for key in ["tls.key", "tls.crt", "ca.crt"] {
            std::fs::write(d.join("mounted/..data").join(key), "x").unwrap();
            std::os::unix::fs::symlink(format!("..data/{key}"), d.join("mounted").join(key))
                .unwrap();
        }
        let names: BTreeSet<String> = ["complete", "no-ca", "empty-key", "absent", "mounted"]
            .map(String::from)
            .into();
        let found = read_secrets(Some(d), &names);
        let at = |n: &str| files(&d.join(n).display().to_string());
        assert_eq!(found["complete"], Ok(at("complete")));
        assert_eq!(found["mounted"], Ok(at("mounted")));
        for (name, words) in [
            ("no-ca", "ca.crt: No such file"),
            ("empty-key", "tls.key is empty"),
            ("absent", "absent/tls.key: No such file"),
        ] {
            let err = found[name].clone().unwrap_err();
            assert!(err.contains(words), "{name}: {err}");
        }
        let without = read_secrets(None, &names);
        assert!(
            without["complete"]
                .clone()
                .unwrap_err()
                .contains("no --secrets-dir given"),
            "{without:?}"
        );
    }

    fn switch() -> Option<SwitchStatus> {
        Some(SwitchStatus {
            name: "tor1".into(),
            ..SwitchStatus::default()
        })
    }

    #[test]
    fn gateway_status_lines_and_readiness() {
        let synced = GatewayObserved {
            connected: true,
            switch: switch(),
            managed: [(5001, "rdo-vni-5001".to_string())].into(),
            in_sync: true,
            ..GatewayObserved::default()
        };
        let tls = Err(Blocked::TlsSecret(
            "Secret s: no --secrets-dir given".into(),
        ));
        let cases: Vec<StatusCase> = vec![
            ("not started yet", None, None, vec![], false, "False False"),
            (
                "TLS files missing",
                Some(tls),
                None,
                vec![
                    "gateway tor1: not connected: TLSSecretUnavailable: Secret s: no --secrets-dir given",
                ],
                false,
                "False False",
            ),
            (
                "connecting",
                None,
                Some(GatewayObserved::default()),
                vec![],
                false,
                "False False",
            ),
            (
                "connect failed",
                None,
                Some(GatewayObserved {
                    last_error: Some("connection refused".into()),
                    ..GatewayObserved::default()
                }),
                vec!["gateway tor1: not connected: ConnectFailed: connection refused"],
                false,
                "False False",
            ),
            (
                "no such Physical_Switch",
                None,
                Some(GatewayObserved {
                    connected: true,
                    ..GatewayObserved::default()
                }),
                vec![
                    "gateway tor1: not ready: SwitchNotFound: the database has no Physical_Switch named \"tor1\"; set spec.physicalSwitch",
                ],
                false,
                "True False",
            ),
            (
                "syncing says nothing",
                None,
                Some(GatewayObserved {
                    in_sync: false,
                    ..synced.clone()
                }),
                vec![],
                false,
                "True False",
            ),
            (
                "waiting for a port",
                None,
                Some(GatewayObserved {
                    pending: vec!["port p1 not on the switch".into()],
                    ..synced.clone()
                }),
                vec!["gateway tor1: not ready: Pending: port p1 not on the switch"],
                false,
                "True False",
            ),
            (
                "in sync",
                None,
                Some(synced.clone()),
                vec![],
                true,
                "True True",
            ),
        ];
        let m = manifests(&[NODE, TCP_GATEWAY, ATTACHED]);
        let node = plan_node(&m, "n1", &[]);
        let base = plan_gateways(&m, &node.tunnel_ports, &BTreeMap::new());
        for (what, writer, observed, lines, ready, columns) in cases {
            let mut plan = base.clone();
            if let Some(w) = writer {
                plan.gateways[0].writer = w;
            }
            let observed: BTreeMap<String, GatewayObserved> = observed
                .into_iter()
                .map(|o| ("tor1".to_string(), o))
                .collect();
            let rows = gateways_with_status(&plan, &observed, Timestamp::UNIX_EPOCH);
            assert_eq!(gateway_problems(&rows), lines, "{what}");
            assert_eq!(gateways_ready(&rows), ready, "{what}");
            let table = table::vtep_gateways(&rows);
            let cells: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
            assert_eq!(cells[4..].join(" "), columns, "{what}: {table}");
        }
    }

    #[test]
    fn drained_only_when_connected_in_sync_and_empty() {
        let empty = GatewayObserved {
            connected: true,
            in_sync: true,
            ..GatewayObserved::default()
        };
        for (what, o, want) in [
            ("empty and in sync", empty.clone(), true),
            (
                "disconnected",
                GatewayObserved {
                    connected: false,
                    ..empty.clone()
                },
                false,
            ),
            (
                "still writing",
                GatewayObserved {
                    in_sync: false,
                    ..empty.clone()
                },
                false,
            ),
            (
                "rows left",
                GatewayObserved {
                    managed: [(1, "rdo-vni-1".to_string())].into(),
                    ..empty.clone()
                },
                false,
            ),
        ] {
            assert_eq!(drained(&o), want, "{what}");
        }
    }

    #[test]
    fn gateway_text_says_nothing_until_there_is_a_gateway() {
        let m = manifests(&[TCP_GATEWAY]);
        let rows = gateways_with_status(
            &plan_gateways(&m, &[], &BTreeMap::new()),
            &BTreeMap::new(),
            Timestamp::UNIX_EPOCH,
        );
        assert_eq!(gateway_text(&[], ""), "");
        let table = gateway_text(&rows, "");
        assert!(table.starts_with("NAME"), "{table}");
        assert_eq!(
            gateway_text(&[], &table),
            "No VtepGateways in the directory.\n"
        );
    }

    #[test]
    fn a_device_deleted_leaves_the_gateway_wanting_an_empty_switch() {
        let before = manifests(&[NODE, TCP_GATEWAY, ATTACHED]);
        let after = manifests(&[NODE, TCP_GATEWAY]);
        let plan = |m: &Manifests| {
            let node = plan_node(m, "n1", &[]);
            plan_gateways(m, &node.tunnel_ports, &BTreeMap::new())
        };
        let seg = &plan(&before).gateways[0].desired.segments[&5001];
        assert_eq!(
            seg.bindings.iter().cloned().collect::<Vec<_>>(),
            [PortVlan {
                port: "p1".into(),
                vlan: 10
            }]
        );
        assert_eq!(
            seg.flood.iter().copied().collect::<Vec<_>>(),
            [Ipv4Addr::new(192, 168, 100, 1)]
        );
        assert_eq!(plan(&after).gateways[0].desired, FabricState::default());
    }
}
