//! A whole installation on a real control plane: the CRDs, the chart's RBAC and admission
//! policy (from `helm template`), the controller and one agent per node as the built
//! binary — each under its chart ServiceAccount with a TokenRequest token (an agent's
//! bound to a Pod on its node, so it carries the node claim) — and each node with its own
//! real OVS.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::sandbox::{Datapath, Sandbox};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, DeleteParams, ListParams};
use kube::{Client, ResourceExt};
use remote_device_operator::api::{RemoteDevice, TunnelPort};
use serde_json::{Value, json};

use super::envtest::{
    ControlPlane, Options, Proc, apply_value, install_crds, pod_on_node, service_account_token,
    tail,
};

/// The release namespace of the chart.
pub const RELEASE_NS: &str = "remote-device-operator";
/// The tenant namespace of the devices.
pub const TENANT: &str = "tenant-a";
const RELEASE: &str = "rdo";

/// What the tests take from the rendered chart.
pub struct Chart {
    /// Every object, except helm test hooks.
    pub objects: Vec<Value>,
    /// The controller container's args.
    pub controller_args: Vec<String>,
    /// The agent container's args.
    pub agent_args: Vec<String>,
    /// The controller's ServiceAccount.
    pub controller_sa: String,
    /// The agent's ServiceAccount.
    pub agent_sa: String,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `helm template` of the chart, with the admission policy (as on a cluster that serves
/// ValidatingAdmissionPolicy).
pub fn render_chart() -> Chart {
    let helm = std::env::var_os("HELM")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".tools/bin/helm"));
    let scratch = tempfile::tempdir().unwrap();
    let out = Command::new(&helm)
        .args([
            "template",
            RELEASE,
            &root()
                .join("charts/remote-device-operator")
                .display()
                .to_string(),
            "--namespace",
            RELEASE_NS,
            "--api-versions",
            "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy",
        ])
        .env("HELM_CACHE_HOME", scratch.path().join("cache"))
        .env("HELM_CONFIG_HOME", scratch.path().join("config"))
        .env("HELM_DATA_HOME", scratch.path().join("data"))
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "helm at {}: {e} (run scripts/install-helm.sh)",
                helm.display()
            )
        });
    assert!(out.status.success(), "helm template: {out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let mut objects = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(&text) {
        let value: Value = serde::Deserialize::deserialize(doc).unwrap();
        if value.is_null()
            || value
                .pointer("/metadata/annotations/helm.sh~1hook")
                .is_some()
        {
            continue;
        }
        objects.push(value);
    }
    let container_args = |kind: &str| -> Vec<String> {
        let object = objects
            .iter()
            .find(|o| o["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} in the chart"));
        serde_json::from_value(object["spec"]["template"]["spec"]["containers"][0]["args"].clone())
            .unwrap()
    };
    let account = |kind: &str| -> String {
        let object = objects.iter().find(|o| o["kind"] == kind).unwrap();
        object["spec"]["template"]["spec"]["serviceAccountName"]
            .as_str()
            .unwrap()
            .to_string()
    };
    Chart {
        controller_args: container_args("Deployment"),
        agent_args: container_args("DaemonSet"),
        controller_sa: account("Deployment"),
        agent_sa: account("DaemonSet"),
        objects,
    }
}

/// The container args with the metrics endpoint moved to a free loopback port.
fn local_args(args: &[String]) -> Vec<String> {
    args.iter()
        .map(|a| {
            if a.starts_with("--metrics-addr") {
                "--metrics-addr=127.0.0.1:0".to_string()
            } else {
                a.clone()
            }
        })
        .collect()
}

/// One node: its OVS and its agent.
pub struct NodeRig {
    /// The agent, while it runs (dropped first: it stops before its OVS).
    pub agent: Option<Proc>,
    /// The node's own OVS.
    pub sandbox: Sandbox,
    kubeconfig: PathBuf,
    logs: Vec<PathBuf>,
}

/// The installation.
pub struct Cluster {
    // Drop order: components, then OVS, then the control plane.
    /// Controllers by identity.
    pub controllers: BTreeMap<String, Proc>,
    /// Nodes by name.
    pub nodes: BTreeMap<String, NodeRig>,
    /// The control plane.
    pub cp: ControlPlane,
    /// A client in `system:masters`.
    pub admin: Client,
    /// The rendered chart.
    pub chart: Chart,
    logs: Vec<PathBuf>,
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_remote-device-operator")
}

impl Cluster {
    /// A control plane with CRDs, the release and tenant namespaces and the chart's objects
    /// applied; `None` when the tier is skipped here.
    pub async fn start(options: Options) -> Option<Cluster> {
        let cp = ControlPlane::start(options).await?;
        let admin = cp.admin().await;
        install_crds(&admin).await;
        for ns in [RELEASE_NS, TENANT] {
            apply_value(
                &admin,
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
            )
            .await;
        }
        let chart = render_chart();
        for object in &chart.objects {
            apply_value(&admin, object.clone()).await;
        }
        Some(Cluster {
            controllers: BTreeMap::new(),
            nodes: BTreeMap::new(),
            cp,
            admin,
            chart,
            logs: Vec::new(),
        })
    }

    /// Creates Node `name` (labels, tunnel IP annotation), its OVS, and starts its agent.
    pub async fn add_node(&mut self, name: &str, labels: &[(&str, &str)], tunnel_ip: &str) {
        let sandbox = Sandbox::start(Datapath::Dummy).expect("OVS sandbox");
        self.add_node_with_sandbox(name, labels, tunnel_ip, sandbox)
            .await;
    }

    /// [`Cluster::add_node`] with an OVS the test built (e.g. a netdev datapath inside a
    /// network namespace, for real packets); the agent reaches it over its unix socket.
    pub async fn add_node_with_sandbox(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        tunnel_ip: &str,
        sandbox: Sandbox,
    ) {
        self.create_node(name, labels, tunnel_ip).await;
        let pod = pod_on_node(
            &self.admin,
            RELEASE_NS,
            &format!("agent-{name}"),
            &self.chart.agent_sa,
            name,
        )
        .await;
        let token =
            service_account_token(&self.admin, RELEASE_NS, &self.chart.agent_sa, Some(&pod)).await;
        let kubeconfig = self.cp.write_kubeconfig(&format!("agent-{name}"), &token);
        self.nodes.insert(
            name.to_string(),
            NodeRig {
                agent: None,
                sandbox,
                kubeconfig,
                logs: Vec::new(),
            },
        );
        self.start_agent(name);
    }

    /// Creates (or updates) the Node object.
    pub async fn create_node(&self, name: &str, labels: &[(&str, &str)], tunnel_ip: &str) {
        let labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
        apply_value(
            &self.admin,
            json!({
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "labels": labels,
                    "annotations": { "remotedevice.io/tunnel-ip": tunnel_ip },
                },
            }),
        )
        .await;
    }

    /// Sets a Node's labels (replacing the ones the tests gave it).
    pub async fn relabel_node(&self, name: &str, labels: &[(&str, &str)]) {
        let nodes: Api<Node> = Api::all(self.admin.clone());
        let node = nodes.get(name).await.unwrap();
        let ip = node
            .annotations()
            .get("remotedevice.io/tunnel-ip")
            .cloned()
            .unwrap_or_default();
        self.create_node(name, labels, &ip).await;
    }

    /// Starts (again) the agent of node `name`.
    pub fn start_agent(&mut self, name: &str) {
        let args = local_args(&self.chart.agent_args);
        let rig = self.nodes.get_mut(name).expect("a node");
        let mut c = Command::new(bin());
        c.args(&args)
            .env("KUBECONFIG", &rig.kubeconfig)
            .env("RUST_LOG", log_filter())
            .env("RDO_NODE_NAME", name)
            .env("RDO_OVSDB_ENDPOINT", rig.sandbox.endpoint())
            .env("RDO_OVS_BRIDGE", "br-int")
            .env("RDO_OVS_RUNDIR", rig.sandbox.dir());
        let log = rig
            .sandbox
            .dir()
            .join(format!("agent-{}.log", rig.logs.len()));
        rig.logs.push(log.clone());
        self.logs.push(log.clone());
        rig.agent = Some(Proc::spawn(&format!("agent {name}"), c, &log));
    }

    /// Stops the agent of node `name` with SIGKILL.
    pub fn kill_agent(&mut self, name: &str) {
        if let Some(mut agent) = self.nodes.get_mut(name).and_then(|r| r.agent.take()) {
            agent.kill();
        }
    }

    /// Starts a controller replica under the chart's ServiceAccount.
    pub async fn start_controller(&mut self, identity: &str) {
        let token =
            service_account_token(&self.admin, RELEASE_NS, &self.chart.controller_sa, None).await;
        let kubeconfig = self
            .cp
            .write_kubeconfig(&format!("controller-{identity}"), &token);
        let mut c = Command::new(bin());
        c.args(local_args(&self.chart.controller_args))
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", log_filter())
            .env("RDO_POD_NAMESPACE", RELEASE_NS)
            .env("RDO_POD_NAME", identity);
        let log = self
            .cp
            .dir
            .path()
            .join(format!("controller-{identity}-{}.log", self.logs.len()));
        self.logs.push(log.clone());
        self.controllers.insert(
            identity.to_string(),
            Proc::spawn(&format!("controller {identity}"), c, &log),
        );
    }

    /// Applies RemoteDevice `name` in the tenant namespace.
    pub async fn apply_device(&self, name: &str, spec: Value) {
        apply_value(
            &self.admin,
            json!({
                "apiVersion": "remotedevice.io/v1alpha1",
                "kind": "RemoteDevice",
                "metadata": { "name": name, "namespace": TENANT },
                "spec": spec,
            }),
        )
        .await;
    }

    /// Deletes RemoteDevice `name`.
    pub async fn delete_device(&self, name: &str) {
        let devices: Api<RemoteDevice> = Api::namespaced(self.admin.clone(), TENANT);
        devices
            .delete(name, &DeleteParams::default())
            .await
            .unwrap_or_else(|e| panic!("delete device {name}: {e}"));
    }

    /// RemoteDevice `name`.
    pub async fn device(&self, name: &str) -> RemoteDevice {
        let devices: Api<RemoteDevice> = Api::namespaced(self.admin.clone(), TENANT);
        devices.get(name).await.unwrap()
    }

    /// Every TunnelPort.
    pub async fn tunnel_ports(&self) -> Vec<TunnelPort> {
        let api: Api<TunnelPort> = Api::all(self.admin.clone());
        api.list(&ListParams::default()).await.unwrap().items
    }

    /// The tunnel ports the agent owns in node `name`'s OVS.
    pub fn ovs_ports(&self, name: &str) -> BTreeSet<String> {
        let sandbox = &self.nodes[name].sandbox;
        sandbox
            .vsctl(&["list-ports", "br-int"])
            .unwrap_or_default()
            .lines()
            .filter(|p| p.starts_with("rd"))
            .map(str::to_string)
            .collect()
    }

    /// The OpenFlow rules the agent owns on node `name`'s bridge that mention `text`.
    pub fn owned_flows_with(&self, name: &str, text: &str) -> usize {
        let sandbox = &self.nodes[name].sandbox;
        sandbox
            .ofctl(&[
                "dump-flows",
                &sandbox.mgmt("br-int"),
                "cookie=0x52444f4600000000/0xffffffff00000000",
            ])
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("cookie=") && l.contains(text))
            .count()
    }

    /// The OpenFlow rules the agent owns on node `name`'s bridge.
    pub fn owned_flows(&self, name: &str) -> usize {
        self.owned_flows_with(name, "")
    }

    /// Waits until the TunnelPorts are exactly one per (node, remote VTEP) in `want`, each
    /// Ready with the ofport its own node's OVS gave the tunnel, and no node's OVS holds
    /// any other owned tunnel port. Returns how long that took.
    pub async fn wait_converged(&self, want: &[(&str, &str)], limit: Duration) -> Duration {
        let want: BTreeSet<(String, String)> = want
            .iter()
            .map(|(n, r)| (n.to_string(), r.to_string()))
            .collect();
        let started = std::time::Instant::now();
        loop {
            let ports = self.tunnel_ports().await;
            if self.converged(&ports, &want) {
                return started.elapsed();
            }
            if started.elapsed() > limit {
                let seen: Vec<_> = ports
                    .iter()
                    .map(|t| (&t.metadata.name, &t.metadata.deletion_timestamp, &t.status))
                    .collect();
                let ovs: BTreeMap<&String, BTreeSet<String>> =
                    self.nodes.keys().map(|n| (n, self.ovs_ports(n))).collect();
                panic!(
                    "not converged after {limit:?} on {want:?}\nTunnelPorts: {seen:#?}\nOVS: {ovs:?}\n{}",
                    self.log_tails()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn converged(&self, ports: &[TunnelPort], want: &BTreeSet<(String, String)>) -> bool {
        let have: BTreeSet<(String, String)> = ports
            .iter()
            .map(|tp| (tp.spec.node_name.clone(), tp.spec.remote_ip.clone()))
            .collect();
        if have != *want {
            return false;
        }
        let mut in_ovs: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for tp in ports {
            let Some(status) = tp.status.as_ref() else {
                return false;
            };
            let ready = status
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            let (Some(interface), Some(rig)) = (
                status.interface_name.as_deref(),
                self.nodes.get(&tp.spec.node_name),
            ) else {
                return false;
            };
            let ofport = rig
                .sandbox
                .vsctl(&["get", "Interface", interface, "ofport"])
                .ok()
                .and_then(|o| o.trim().parse::<i64>().ok());
            if !ready || tp.metadata.deletion_timestamp.is_some() || ofport.is_none() {
                return false;
            }
            if status.ofport != ofport {
                return false;
            }
            in_ovs
                .entry(tp.spec.node_name.clone())
                .or_default()
                .insert(interface.to_string());
        }
        self.nodes
            .keys()
            .all(|name| self.ovs_ports(name) == in_ovs.remove(name).unwrap_or_default())
    }

    /// The last lines of every component's log.
    pub fn log_tails(&self) -> String {
        self.logs
            .iter()
            .map(|p| {
                format!(
                    "--- {}\n{}",
                    p.display(),
                    tail(&std::fs::read_to_string(p).unwrap_or_default(), 25)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Lines of any component's log that show a request the API server refused
    /// (authentication, RBAC, the admission policy, validation).
    pub fn refused_requests(&self) -> Vec<String> {
        let marks = [
            "code: 401",
            "code: 403",
            "code: 422",
            "Forbidden",
            "forbidden",
            "Unauthorized",
        ];
        self.logs
            .iter()
            .flat_map(|p| {
                std::fs::read_to_string(p)
                    .unwrap_or_default()
                    .lines()
                    .filter(|l| marks.iter().any(|m| l.contains(m)))
                    .map(|l| format!("{}: {l}", file_name(p)))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Every log line of every component that contains `text`.
    pub fn log_lines(&self, text: &str) -> Vec<String> {
        self.logs
            .iter()
            .flat_map(|p| {
                std::fs::read_to_string(p)
                    .unwrap_or_default()
                    .lines()
                    .filter(|l| l.contains(text))
                    .map(|l| format!("{}: {l}", file_name(p)))
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default()
}

/// A RemoteDevice spec behind `vtep` on `vni` with a MAC derived from `n`.
pub fn device_spec(vtep: &str, vni: u32, n: u8, selector: Option<Value>) -> Value {
    let mut spec = json!({
        "vtepIP": vtep,
        "vni": vni,
        "macAddress": format!("52:54:00:00:01:{n:02x}"),
        "ips": [format!("10.20.0.{n}")],
    });
    if let Some(selector) = selector {
        spec["nodeSelector"] = selector;
    }
    spec
}

/// The components' `RUST_LOG`: `info`, or `RDO_BENCH_RUST_LOG` to read a bench's timeline
/// at debug level.
fn log_filter() -> String {
    std::env::var("RDO_BENCH_RUST_LOG").unwrap_or_else(|_| "info".into())
}
