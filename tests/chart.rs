//! Checks of the Helm chart with a real helm binary (`.tools/bin/helm` from
//! `scripts/install-helm.sh`, or `$HELM`): lint, rendering with default values and with
//! every option set, the rendered manifests (hardening, probes, resources, RBAC exactly as
//! documented in docs/operations.md, CRDs identical to `crds/` and to the types), the
//! values schema, the agent's node-restriction policy evaluated with CEL, the admin knobs
//! (node selector, priority class, digest, resources, extra args/env, labels, affinity),
//! the metrics objects and dashboard, the coexistence examples, and the release workflow.
//!
//! A missing helm fails these tests instead of skipping them: a green run must mean the
//! chart was really checked.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use kube::core::cel::KubeCelExt;
use kube::core::cel::cel::{Context, Program, Value as CelValue};
use serde_json::{Value, json};

const RELEASE: &str = "rdo";
const NAMESPACE: &str = "rdo-system";
const VAP_API: &str = "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy";
const ALL_OPTIONS: &str = "ci/all-options-values.yaml";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn chart() -> PathBuf {
    root().join("charts/remote-device-operator")
}

fn helm() -> PathBuf {
    let helm = std::env::var_os("HELM")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".tools/bin/helm"));
    assert!(
        helm.is_file(),
        "helm not found at {} — run scripts/install-helm.sh (or set HELM); the chart checks \
         fail rather than skip without it",
        helm.display()
    );
    helm
}

/// Runs helm in the chart directory; Ok(stdout) or Err(stderr).
fn run_helm(args: &[&str]) -> Result<String, String> {
    let out = Command::new(helm())
        .args(args)
        .current_dir(chart())
        .env(
            "HELM_CACHE_HOME",
            std::env::temp_dir().join("rdo-helm-cache"),
        )
        .env(
            "HELM_CONFIG_HOME",
            std::env::temp_dir().join("rdo-helm-config"),
        )
        .env("HELM_DATA_HOME", std::env::temp_dir().join("rdo-helm-data"))
        .output()
        .expect("helm runs");
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).expect("helm prints UTF-8"))
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Every YAML document of a stream as JSON, empty documents dropped.
fn parse_stream(text: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|doc| {
            let value: serde_yaml_ng::Value =
                serde::Deserialize::deserialize(doc).expect("rendered YAML parses");
            serde_json::to_value(value).expect("YAML maps to JSON")
        })
        .filter(|v| !v.is_null())
        .collect()
}

fn template(extra: &[&str]) -> Result<Vec<Value>, String> {
    let mut args = vec!["template", RELEASE, ".", "-n", NAMESPACE, "--include-crds"];
    args.extend_from_slice(extra);
    run_helm(&args).map(|out| parse_stream(&out))
}

/// The three renderings every check runs over, computed once.
struct Renders {
    default: Vec<Value>,
    with_vap: Vec<Value>,
    all_options: Vec<Value>,
}

fn renders() -> &'static Renders {
    static RENDERS: OnceLock<Renders> = OnceLock::new();
    RENDERS.get_or_init(|| Renders {
        default: template(&[]).expect("default values render"),
        with_vap: template(&["--api-versions", VAP_API]).expect("renders with the VAP API"),
        all_options: template(&["-f", ALL_OPTIONS, "--api-versions", VAP_API])
            .expect("every option set renders"),
    })
}

fn all_renders() -> [(&'static str, &'static [Value]); 3] {
    let r = renders();
    [
        ("default", &r.default),
        ("with VAP API", &r.with_vap),
        ("all options", &r.all_options),
    ]
}

fn kind_of(doc: &Value) -> &str {
    doc["kind"].as_str().unwrap_or_default()
}

fn name_of(doc: &Value) -> &str {
    doc["metadata"]["name"].as_str().unwrap_or_default()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| kind_of(d) == kind && name_of(d) == name)
        .unwrap_or_else(|| panic!("no {kind} {name} rendered"))
}

fn kinds(docs: &[Value]) -> BTreeMap<String, usize> {
    let mut count = BTreeMap::new();
    for doc in docs {
        *count.entry(kind_of(doc).to_string()).or_insert(0) += 1;
    }
    count
}

#[test]
fn helm_lint_strict_passes_with_default_and_all_options() {
    run_helm(&["lint", "--strict", "."]).expect("helm lint --strict");
    run_helm(&["lint", "--strict", ".", "-f", ALL_OPTIONS])
        .expect("helm lint --strict (all options)");
}

#[test]
fn default_render_has_every_component_and_the_policy_only_where_served() {
    let r = renders();
    let expected: BTreeMap<String, usize> = [
        ("CustomResourceDefinition", 3),
        ("ServiceAccount", 2),
        ("ClusterRole", 2),
        ("ClusterRoleBinding", 2),
        ("Role", 1),
        ("RoleBinding", 1),
        ("Deployment", 1),
        ("DaemonSet", 1),
        // The controllers' metrics Service and the agents' headless one.
        ("Service", 2),
        ("PodDisruptionBudget", 1),
        ("Pod", 1),
    ]
    .into_iter()
    .map(|(k, n)| (k.to_string(), n))
    .collect();
    assert_eq!(
        kinds(&r.default),
        expected,
        "helm's default API set lacks VAP: no policy (nodeRestrictionPolicy auto); no monitors, no dashboard"
    );

    let mut with_policy = expected.clone();
    with_policy.insert("ValidatingAdmissionPolicy".into(), 1);
    with_policy.insert("ValidatingAdmissionPolicyBinding".into(), 1);
    assert_eq!(kinds(&r.with_vap), with_policy);

    let binding = find(
        &r.with_vap,
        "ValidatingAdmissionPolicyBinding",
        "rdo-remote-device-operator-agent-own-node",
    );
    assert_eq!(
        binding["spec"]["policyName"],
        "rdo-remote-device-operator-agent-own-node"
    );
    assert_eq!(binding["spec"]["validationActions"], json!(["Deny"]));
}

/// Leaf paths of a values tree (lists count as leaves).
fn leaves(value: &Value, prefix: &str, out: &mut BTreeMap<String, Value>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaves(v, &path, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.clone());
        }
    }
}

fn yaml_file(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("valid YAML");
    serde_json::to_value(yaml).expect("YAML maps to JSON")
}

#[test]
fn all_options_file_sets_every_option_and_the_render_follows_it() {
    let mut defaults = BTreeMap::new();
    leaves(&yaml_file(&chart().join("values.yaml")), "", &mut defaults);
    let mut set = BTreeMap::new();
    leaves(&yaml_file(&chart().join(ALL_OPTIONS)), "", &mut set);
    for (path, default) in &defaults {
        // Maps that default to {} are covered by their keys in the options file.
        let covered =
            set.contains_key(path) || set.keys().any(|k| k.starts_with(&format!("{path}.")));
        assert!(covered, "{ALL_OPTIONS} does not set {path}");
        if let Some(value) = set.get(path) {
            assert_ne!(value, default, "{ALL_OPTIONS} leaves {path} at its default");
        }
    }

    let docs = &renders().all_options;
    let kinds = kinds(docs);
    assert!(
        !kinds.contains_key("PodDisruptionBudget"),
        "PodDisruptionBudget rendered although switched off"
    );
    // controller.metricsService=false, but the ServiceMonitor needs the Service (and helm
    // test can use it); agent.metricsService=false drops the agents' Service.
    let services: Vec<&str> = docs
        .iter()
        .filter(|d| kind_of(d) == "Service")
        .map(name_of)
        .collect();
    assert_eq!(services, ["rdo-all-controller-metrics"]);
    for present in [
        "ServiceMonitor",
        "PodMonitor",
        "ConfigMap",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ] {
        assert_eq!(kinds.get(present), Some(&1), "{present} not rendered");
    }
    let deploy = find(docs, "Deployment", "rdo-all-controller");
    let spec = &deploy["spec"]["template"]["spec"];
    assert_eq!(deploy["spec"]["replicas"], 3);
    // spreadAcrossNodes=false: exactly the given affinity, no anti-affinity added.
    assert_eq!(
        spec["affinity"],
        yaml_file(&chart().join(ALL_OPTIONS))["controller"]["affinity"]
    );
    assert_eq!(spec["priorityClassName"], "system-cluster-critical");
    let c = &spec["containers"][0];
    assert_eq!(
        c["image"],
        "registry.example/rdo@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "the digest wins over the tag"
    );
    assert_eq!(c["imagePullPolicy"], "Always");
    assert_eq!(
        c["args"],
        json!([
            "controller",
            "--log-format=text",
            "--metrics-addr=[::]:9090",
            "--lease-name=rdo-leader",
            "--resync-seconds=120"
        ])
    );
    assert_eq!(env_map(c)["RDO_API_TIMEOUT_SECONDS"], "20");
    assert_eq!(spec["imagePullSecrets"], json!([{"name": "regcred"}]));
    // `kubernetes.io/os: null` removed the default key.
    assert_eq!(
        spec["nodeSelector"],
        json!({"node-role.kubernetes.io/control-plane": ""})
    );
    assert_eq!(c["resources"]["limits"]["memory"], "512Mi");
    assert_eq!(c["resources"]["requests"]["ephemeral-storage"], "64Mi");
    assert_eq!(c["resources"]["limits"]["ephemeral-storage"], "256Mi");
    assert_eq!(
        deploy["spec"]["template"]["metadata"]["labels"]["team"],
        "network"
    );

    let ds = find(docs, "DaemonSet", "rdo-all-agent");
    let spec = &ds["spec"]["template"]["spec"];
    assert_eq!(spec["priorityClassName"], "rdo-node-critical");
    assert_eq!(spec["tolerations"][0]["key"], "dedicated");
    assert_eq!(spec["nodeSelector"], json!({"remotedevice.io/ovs": "true"}));
    assert_eq!(
        spec["affinity"],
        yaml_file(&chart().join(ALL_OPTIONS))["agent"]["affinity"]
    );
    assert_eq!(
        ds["spec"]["template"]["metadata"]["labels"]["team"],
        "network"
    );
    let args = spec["containers"][0]["args"].as_array().unwrap();
    assert_eq!(args.last().unwrap(), "--api-timeout-seconds=20");
    let env = env_map(&spec["containers"][0]);
    assert_eq!(
        env["OVS_EXTRA"],
        json!({"fieldRef": {"fieldPath": "status.hostIP"}})
    );
    assert_eq!(env["RDO_OVS_BRIDGE"], "br-tun");
    assert_eq!(env["RUST_LOG"], "info,remote_device_operator=debug");
    assert_eq!(env["RDO_OVS_RUNDIR"], "/run/openvswitch");
    assert_eq!(env["RDO_OVSDB_ENDPOINT"], "unix:/run/openvswitch/db.sock");
    assert_eq!(spec["volumes"][0]["hostPath"]["path"], "/run/openvswitch");
    assert_eq!(
        spec["containers"][0]["volumeMounts"][0]["mountPath"],
        "/run/openvswitch"
    );

    let role = find(docs, "Role", "rdo-all-controller-leader-election");
    assert_eq!(role["rules"][1]["resourceNames"], json!(["rdo-leader"]));
}

fn env_map(container: &Value) -> BTreeMap<String, Value> {
    container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let value = e
                .get("value")
                .cloned()
                .unwrap_or_else(|| e["valueFrom"].clone());
            (e["name"].as_str().unwrap().to_string(), value)
        })
        .collect()
}

/// (kind, name, pod spec, is a helm hook) of every workload in a render.
fn pod_specs(docs: &[Value]) -> Vec<(String, String, &Value, bool)> {
    docs.iter()
        .filter_map(|d| {
            let spec = match kind_of(d) {
                "Deployment" | "DaemonSet" | "StatefulSet" | "Job" => {
                    &d["spec"]["template"]["spec"]
                }
                "Pod" => &d["spec"],
                _ => return None,
            };
            let hook = d["metadata"]["annotations"].get("helm.sh/hook").is_some();
            Some((kind_of(d).to_string(), name_of(d).to_string(), spec, hook))
        })
        .collect()
}

fn find_key<'a>(value: &'a Value, key: &str, path: String, out: &mut Vec<(String, &'a Value)>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let p = format!("{path}.{k}");
                if k == key {
                    out.push((p.clone(), v));
                }
                find_key(v, key, p, out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                find_key(v, key, format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn nothing_is_privileged_and_every_container_is_hardened() {
    for (render, docs) in all_renders() {
        for doc in docs {
            let mut hits = Vec::new();
            find_key(doc, "privileged", String::new(), &mut hits);
            for (path, v) in hits {
                assert_eq!(
                    v,
                    &json!(false),
                    "{render}: {} {}{path}",
                    kind_of(doc),
                    name_of(doc)
                );
            }
        }
        let specs = pod_specs(docs);
        assert!(specs.len() >= 2, "{render}: no workloads rendered");
        for (kind, name, spec, hook) in specs {
            let what = format!("{render}: {kind} {name}");
            for host in ["hostNetwork", "hostPID", "hostIPC"] {
                assert!(
                    spec.get(host).is_none_or(|v| v == false),
                    "{what} sets {host}"
                );
            }
            let pod_seccomp = &spec["securityContext"]["seccompProfile"]["type"];
            let containers: Vec<&Value> = ["initContainers", "containers", "ephemeralContainers"]
                .iter()
                .flat_map(|k| spec[k].as_array().into_iter().flatten())
                .collect();
            assert!(!containers.is_empty(), "{what} has no containers");
            for c in containers {
                let what = format!("{what} container {}", c["name"]);
                for kind in ["requests", "limits"] {
                    for res in ["cpu", "memory"] {
                        assert!(
                            c["resources"][kind][res].is_string()
                                || c["resources"][kind][res].is_number(),
                            "{what} lacks resources.{kind}.{res}"
                        );
                    }
                }
                // A helm test pod runs once and exits: liveness/readiness would mean nothing.
                if !hook {
                    for probe in ["livenessProbe", "readinessProbe"] {
                        assert!(
                            c[probe]["httpGet"]["path"].is_string(),
                            "{what} lacks {probe}"
                        );
                    }
                }
                let sc = &c["securityContext"];
                assert_eq!(sc["allowPrivilegeEscalation"], false, "{what}");
                assert_eq!(sc["privileged"], false, "{what}");
                assert_eq!(sc["readOnlyRootFilesystem"], true, "{what}");
                assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{what}");
                assert!(
                    sc["capabilities"].get("add").is_none(),
                    "{what} adds capabilities"
                );
                let seccomp = if sc["seccompProfile"]["type"].is_string() {
                    &sc["seccompProfile"]["type"]
                } else {
                    pod_seccomp
                };
                assert_eq!(seccomp, "RuntimeDefault", "{what}");
                let is_agent = kind == "DaemonSet";
                if is_agent {
                    // The one exception, explained in the template: uid 0 without capabilities.
                    assert_eq!(sc["runAsUser"], 0, "{what}");
                } else {
                    assert_eq!(sc["runAsNonRoot"], true, "{what} may run as root");
                    assert!(
                        sc["runAsUser"].as_i64().unwrap_or(0) > 0,
                        "{what} runs as uid 0"
                    );
                }
            }
            // Only the agent touches the host, and only the OVS run directory, read-only.
            let volumes = spec["volumes"].as_array().cloned().unwrap_or_default();
            let host_paths: Vec<&Value> = volumes
                .iter()
                .filter(|v| v.get("hostPath").is_some())
                .collect();
            if kind == "DaemonSet" {
                assert_eq!(host_paths.len(), 1, "{what}");
                let vol = host_paths[0]["name"].clone();
                let mount = spec["containers"][0]["volumeMounts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|m| m["name"] == vol)
                    .expect("hostPath is mounted");
                assert_eq!(
                    mount["readOnly"], true,
                    "{what} mounts the OVS run directory writable"
                );
                assert_eq!(mount["mountPath"], host_paths[0]["hostPath"]["path"]);
            } else {
                assert!(host_paths.is_empty(), "{what} mounts a hostPath");
            }
        }
    }
}

#[test]
fn components_are_wired_as_the_cli_contract_says() {
    let docs = &renders().default;
    let deploy = find(docs, "Deployment", "rdo-remote-device-operator-controller");
    let spec = &deploy["spec"]["template"]["spec"];
    assert_eq!(
        deploy["spec"]["replicas"], 2,
        "two replicas with leader election"
    );
    assert_eq!(
        spec["serviceAccountName"],
        "rdo-remote-device-operator-controller"
    );
    let c = &spec["containers"][0];
    assert_eq!(c["args"][0], "controller");
    let env = env_map(c);
    assert_eq!(
        env["RDO_POD_NAMESPACE"],
        json!({"fieldRef": {"fieldPath": "metadata.namespace"}})
    );
    assert_eq!(
        env["RDO_POD_NAME"],
        json!({"fieldRef": {"fieldPath": "metadata.name"}})
    );
    let lease_arg = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|a| a.as_str().and_then(|a| a.strip_prefix("--lease-name=")))
        .expect("--lease-name passed");
    let role = find(
        docs,
        "Role",
        "rdo-remote-device-operator-controller-leader-election",
    );
    assert_eq!(
        role["metadata"]["namespace"], NAMESPACE,
        "the Lease is in the release namespace"
    );
    assert_eq!(role["rules"][1]["resourceNames"], json!([lease_arg]));

    let ds = find(docs, "DaemonSet", "rdo-remote-device-operator-agent");
    let spec = &ds["spec"]["template"]["spec"];
    assert_eq!(
        spec["serviceAccountName"],
        "rdo-remote-device-operator-agent"
    );
    assert_eq!(
        spec["tolerations"],
        json!([{"operator": "Exists"}]),
        "runs on every node"
    );
    let c = &spec["containers"][0];
    assert_eq!(c["args"][0], "agent");
    let env = env_map(c);
    assert_eq!(
        env["RDO_NODE_NAME"],
        json!({"fieldRef": {"fieldPath": "spec.nodeName"}})
    );
    assert_eq!(
        env["RDO_OVSDB_ENDPOINT"],
        "unix:/var/run/openvswitch/db.sock"
    );
    assert_eq!(env["RDO_OVS_RUNDIR"], "/var/run/openvswitch");
    assert_eq!(env["RDO_OVS_BRIDGE"], "br-int");

    // Both metrics endpoints on the contract's port; the Service and helm test use it.
    for c in [&deploy["spec"]["template"]["spec"]["containers"][0], c] {
        assert!(
            c["args"]
                .as_array()
                .unwrap()
                .contains(&json!("--metrics-addr=[::]:8080"))
        );
        assert!(
            c["args"]
                .as_array()
                .unwrap()
                .contains(&json!("--log-format=json"))
        );
        assert_eq!(c["ports"][0]["containerPort"], 8080);
    }
    let svc = find(
        docs,
        "Service",
        "rdo-remote-device-operator-controller-metrics",
    );
    assert_eq!(
        svc["spec"]["selector"],
        deploy["spec"]["selector"]["matchLabels"]
    );
    let test_pod = docs.iter().find(|d| kind_of(d) == "Pod").unwrap();
    assert_eq!(test_pod["metadata"]["annotations"]["helm.sh/hook"], "test");
    let script = test_pod["spec"]["containers"][0]["args"][0]
        .as_str()
        .unwrap();
    assert!(script.contains("/dev/tcp/rdo-remote-device-operator-controller-metrics/8080"));
}

/// One RBAC grant, expanded per API group and resource.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Grant {
    role: String,
    api_group: String,
    resource: String,
    resource_names: String,
    verbs: String,
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

fn rendered_grants(docs: &[Value]) -> BTreeSet<Grant> {
    let prefix = "rdo-remote-device-operator-";
    let mut grants = BTreeSet::new();
    for doc in docs
        .iter()
        .filter(|d| matches!(kind_of(d), "ClusterRole" | "Role"))
    {
        let role = format!(
            "{} {}",
            kind_of(doc),
            name_of(doc).trim_start_matches(prefix)
        );
        for rule in doc["rules"].as_array().unwrap() {
            let mut verbs = strings(&rule["verbs"]);
            verbs.sort();
            for group in strings(&rule["apiGroups"]) {
                for resource in strings(&rule["resources"]) {
                    grants.insert(Grant {
                        role: role.clone(),
                        api_group: if group.is_empty() {
                            "core".into()
                        } else {
                            group.clone()
                        },
                        resource,
                        resource_names: strings(&rule["resourceNames"])
                            .join(",")
                            .replace("rdo-remote-device-operator-", "<fullname>-"),
                        verbs: verbs.join(","),
                    });
                }
            }
        }
    }
    grants
}

/// The table between `<!-- rbac:begin -->` and `<!-- rbac:end -->` in docs/operations.md.
fn documented_grants() -> BTreeSet<Grant> {
    let text =
        std::fs::read_to_string(root().join("docs/operations.md")).expect("docs/operations.md");
    let start = text.find("<!-- rbac:begin -->").expect("rbac:begin marker");
    let end = text.find("<!-- rbac:end -->").expect("rbac:end marker");
    text[start..end]
        .lines()
        .filter(|l| l.starts_with('|') && !l.contains("---") && !l.contains("API group"))
        .map(|line| {
            let cells: Vec<String> = line
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().trim_matches('`').to_string())
                .collect();
            assert!(cells.len() >= 5, "malformed RBAC row: {line}");
            let mut verbs: Vec<&str> = cells[4].split(',').map(str::trim).collect();
            verbs.sort();
            Grant {
                role: cells[0].clone(),
                api_group: cells[1].clone(),
                resource: cells[2].clone(),
                resource_names: if cells[3] == "any" {
                    String::new()
                } else {
                    cells[3].clone()
                },
                verbs: verbs.join(","),
            }
        })
        .collect()
}

#[test]
fn rbac_verbs_are_exactly_as_documented() {
    let documented = documented_grants();
    let rendered = rendered_grants(&renders().default);
    assert_eq!(
        rendered, documented,
        "rendered RBAC (left) differs from the table in docs/operations.md (right)"
    );
    // The agent's reach, spelled out: read TunnelPorts, patch them and their status.
    let agent: BTreeSet<(String, String)> = rendered
        .iter()
        .filter(|g| g.role.contains("agent"))
        .map(|g| (g.resource.clone(), g.verbs.clone()))
        .collect();
    let expected: BTreeSet<(String, String)> = [
        ("tunnelports", "get,list,watch"),
        ("tunnelports", "patch"),
        ("tunnelports/status", "patch"),
        ("events", "create,patch"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(agent, expected);
    assert!(
        rendered
            .iter()
            .all(|g| !g.verbs.contains('*') && g.resource != "*")
    );
}

#[test]
fn every_rbac_rule_has_a_comment_and_bindings_name_their_own_account() {
    for file in [
        "templates/controller-rbac.yaml",
        "templates/agent-rbac.yaml",
    ] {
        let text = std::fs::read_to_string(chart().join(file)).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if line.trim_start().starts_with("- apiGroups:") {
                assert!(
                    i > 0 && lines[i - 1].trim_start().starts_with('#'),
                    "{file}:{}: RBAC rule without a comment above it",
                    i + 1
                );
            }
        }
    }
    let docs = &renders().default;
    for doc in docs.iter().filter(|d| kind_of(d).ends_with("Binding")) {
        let role = doc["roleRef"]["name"].as_str().unwrap();
        let component = if role.contains("agent") {
            "agent"
        } else {
            "controller"
        };
        assert_eq!(
            doc["subjects"],
            json!([{
                "kind": "ServiceAccount",
                "name": format!("rdo-remote-device-operator-{component}"),
                "namespace": NAMESPACE
            }]),
            "{} {}",
            kind_of(doc),
            name_of(doc)
        );
    }
}

#[test]
fn chart_crds_are_identical_to_crds_dir_and_to_the_types() {
    let files = |dir: PathBuf| -> BTreeMap<String, String> {
        std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .map(|p| {
                (
                    p.file_name().unwrap().to_string_lossy().into_owned(),
                    std::fs::read_to_string(&p).unwrap(),
                )
            })
            .collect()
    };
    let in_chart = files(chart().join("crds"));
    let in_repo = files(root().join("crds"));
    assert_eq!(
        in_chart.keys().collect::<Vec<_>>(),
        in_repo.keys().collect::<Vec<_>>(),
        "charts/remote-device-operator/crds and crds/ hold different files"
    );
    for (name, text) in &in_repo {
        assert!(
            in_chart[name] == *text,
            "charts/remote-device-operator/crds/{name} differs from crds/{name}: cp crds/*.yaml charts/remote-device-operator/crds/"
        );
    }
    for (name, crd) in remote_device_operator::crd::all() {
        assert!(
            in_repo.get(name) == Some(&remote_device_operator::crd::to_yaml(&crd)),
            "crds/{name} is not what the types generate: regenerate with `remote-device-operator crd`"
        );
    }
    // And helm installs exactly these.
    let rendered: Vec<&Value> = renders()
        .default
        .iter()
        .filter(|d| kind_of(d) == "CustomResourceDefinition")
        .collect();
    let expected: Vec<Value> = in_repo.values().flat_map(|t| parse_stream(t)).collect();
    assert_eq!(rendered.len(), expected.len());
    for crd in expected {
        assert!(
            rendered.contains(&&crd),
            "helm does not install {}",
            name_of(&crd)
        );
    }
}

#[test]
fn values_that_violate_the_schema_are_refused() {
    // Control: the same command with valid values succeeds, so a refusal below is the schema's.
    template(&["--set", "controller.replicas=1"]).expect("valid values render");
    let cases: &[(&[&str], &str)] = &[
        (&["--set", "unknownOption=1"], "unknownOption"),
        (&["--set", "controller.privileged=true"], "privileged"),
        (
            &["--set", "agent.securityContext.runAsUser=1"],
            "securityContext",
        ),
        (&["--set", "controller.replicas=0"], "replicas"),
        (&["--set", "logFormat=xml"], "logFormat"),
        (&["--set", "logLevel=debug; rm -rf"], "logLevel"),
        (&["--set", "image.pullPolicy=Sometimes"], "pullPolicy"),
        (
            &["--set", "agent.ovsRundir=var/run/openvswitch"],
            "ovsRundir",
        ),
        (&["--set", "agent.ovsdbEndpoint=db.sock"], "ovsdbEndpoint"),
        (&["--set", "metricsPort=80"], "metricsPort"),
        (&["--set", "agent.bridge=a-bridge-name-too-long"], "bridge"),
        (
            &["--set", "agent.tolerations[0].operator=Maybe"],
            "operator",
        ),
        (&["--set", "controller.resources.limits.gpu=1"], "gpu"),
        (
            &["--set", "agent.nodeRestrictionPolicy=maybe"],
            "nodeRestrictionPolicy",
        ),
        // Requests stay mandatory (limits may go, see below).
        (&["--set", "agent.resources.requests.memory=null"], "memory"),
        (&["--set", "agent.resources.requests=null"], "requests"),
        (
            &["--set", "controller.resources.limits.hugepages-2Mi=1"],
            "hugepages",
        ),
        (&["--set", "image.digest=latest"], "digest"),
        (&["--set", "image.digest=sha256:abc"], "digest"),
        // The selector labels cannot be overridden through podLabels.
        (
            &["--set", "agent.podLabels.app\\.kubernetes\\.io/component=x"],
            "app.kubernetes.io/component",
        ),
        (&["--set", "controller.extraEnv[0].value=x"], "name"),
        (
            &["--set", "agent.extraEnv[0].name=A,agent.extraEnv[0].from=x"],
            "from",
        ),
        (&["--set", "agent.affinity.nodeAfinity.x=1"], "nodeAfinity"),
        (&["--set", "metrics.podMonitor.interval=often"], "interval"),
        (&["--set", "metrics.serviceMonitor.enabled=yes"], "enabled"),
        (&["--set", "metrics.dashboard.folder=x"], "folder"),
        (&["--set", "metrics.unknown=1"], "unknown"),
    ];
    for (args, mentions) in cases {
        let Err(err) = template(args) else {
            panic!("{args:?} must be refused by values.schema.json");
        };
        assert!(
            err.contains("schema") || err.contains(mentions),
            "{args:?}: refusal does not name the problem: {err}"
        );
        assert!(
            err.contains(mentions),
            "{args:?}: refusal does not mention {mentions}: {err}"
        );
    }
}

/// Every object schema with named properties refuses others; free-form maps say what values they hold.
fn assert_closed(schema: &Value, path: &str) {
    if let Value::Object(map) = schema {
        if map.contains_key("properties") {
            assert_eq!(
                map.get("additionalProperties"),
                Some(&json!(false)),
                "{path} is open"
            );
        } else if map.get("type") == Some(&json!("object")) {
            assert!(
                map.get("additionalProperties")
                    .is_some_and(Value::is_object),
                "{path}: a map without a value schema"
            );
        }
        for (k, v) in map {
            assert_closed(v, &format!("{path}/{k}"));
        }
    }
}

#[test]
fn values_schema_closes_every_object() {
    let text = std::fs::read_to_string(chart().join("values.schema.json")).unwrap();
    let schema: Value = serde_json::from_str(&text).expect("values.schema.json is JSON");
    assert_eq!(schema["additionalProperties"], false);
    assert_closed(&schema, "#");
    // The defaults themselves satisfy it (helm would refuse to render otherwise).
    let defaults = yaml_file(&chart().join("values.yaml"));
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(&defaults)
        .map(|e| e.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "values.yaml violates its schema: {errors:?}"
    );
}

/// The NOTES of `helm install --dry-run=client` (no cluster: helm's own API set).
fn install_notes(extra: &[&str]) -> String {
    let mut args = vec!["install", RELEASE, ".", "-n", NAMESPACE, "--dry-run=client"];
    args.extend_from_slice(extra);
    let out = run_helm(&args).expect("helm install --dry-run=client");
    out[out.find("NOTES:").expect("NOTES printed")..].to_string()
}

#[test]
fn notes_show_a_valid_remote_device_inline_and_how_to_watch_tunnelports() {
    let notes = install_notes(&[]);
    for needle in [
        "kubectl create namespace tenant-a",
        "kubectl apply -f - <<'EOF'",
        "kubectl get tunnelports",
        "kubectl describe tp",
        "helm test rdo -n rdo-system",
        // helm's client-side dry run has no VAP in its API set: the warning must show.
        "NOT limited to their",
        "agent.nodeRestrictionPolicy=always",
    ] {
        assert!(notes.contains(needle), "NOTES lack {needle:?}:\n{notes}");
    }
    assert!(
        !notes.contains("examples/"),
        "NOTES point at repository files, which a chart user does not have"
    );
    // The manifest between the heredoc markers, unindented so that a copy-paste works,
    // is a RemoteDevice the operator accepts.
    let start = notes.find("<<'EOF'\n").unwrap() + "<<'EOF'\n".len();
    let len = notes[start..]
        .find("\nEOF\n")
        .expect("heredoc ends with EOF");
    let manifest = &notes[start..start + len];
    let value: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(manifest).expect("inline manifest is YAML");
    let device: remote_device_operator::api::RemoteDevice =
        serde_yaml_ng::from_value(value).expect("inline manifest is a RemoteDevice");
    assert_eq!(device.metadata.namespace.as_deref(), Some("tenant-a"));
    let errors = remote_device_operator::api::validate::validate_spec(&device.spec);
    assert!(
        errors.is_empty(),
        "inline RemoteDevice is invalid: {errors:?}"
    );
    assert!(manifest.contains("apiVersion: remotedevice.io/v1alpha1"));
    assert!(manifest.contains("kind: RemoteDevice"));

    // With the policy asked for, no warning; without it, the warning names the value.
    let always = install_notes(&["--set", "agent.nodeRestrictionPolicy=always"]);
    assert!(!always.contains("WARNING"), "{always}");
    let never = install_notes(&["--set", "agent.nodeRestrictionPolicy=never"]);
    assert!(
        never.contains("agent.nodeRestrictionPolicy=never: agents are NOT limited"),
        "{never}"
    );
}

// ---- The node-restriction policy, evaluated with CEL as the API server would ----

struct Policy {
    match_conditions: Vec<String>,
    variables: Vec<(String, String)>,
    validations: Vec<(String, Option<String>, Option<String>)>,
    resources: Vec<String>,
    operations: Vec<String>,
}

fn policy() -> Policy {
    let vap = renders()
        .with_vap
        .iter()
        .find(|d| kind_of(d) == "ValidatingAdmissionPolicy")
        .expect("policy rendered where the API is served");
    let spec = &vap["spec"];
    assert_eq!(spec["failurePolicy"], "Fail");
    let rule = &spec["matchConstraints"]["resourceRules"][0];
    assert_eq!(rule["apiGroups"], json!(["remotedevice.io"]));
    Policy {
        match_conditions: spec["matchConditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["expression"].as_str().unwrap().to_string())
            .collect(),
        variables: spec["variables"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                (
                    v["name"].as_str().unwrap().to_string(),
                    v["expression"].as_str().unwrap().to_string(),
                )
            })
            .collect(),
        validations: spec["validations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                (
                    v["expression"].as_str().unwrap().to_string(),
                    v["message"].as_str().map(String::from),
                    v["messageExpression"].as_str().map(String::from),
                )
            })
            .collect(),
        resources: strings(&rule["resources"]),
        operations: strings(&rule["operations"]),
    }
}

#[derive(Debug, PartialEq)]
enum Decision {
    /// The policy does not apply (another user, another resource).
    NotMatched,
    Allowed,
    Denied(Vec<String>),
}

fn cel(value: &Value) -> CelValue {
    kube::core::cel::cel::to_value(value).expect("JSON converts to CEL")
}

fn compile(expr: &str) -> Program {
    Program::compile(expr).unwrap_or_else(|e| panic!("policy CEL does not compile: {expr}: {e:?}"))
}

fn evaluate(
    policy: &Policy,
    operation: &str,
    resource: &str,
    user: &str,
    node_claim: Option<&str>,
    old: Option<&Value>,
    new: Option<&Value>,
) -> Decision {
    let (res, sub) = resource.split_once('/').unwrap_or((resource, ""));
    if !policy.resources.iter().any(|r| r == resource)
        || !policy.operations.iter().any(|o| o == operation)
    {
        return Decision::NotMatched;
    }
    let mut user_info =
        json!({"username": user, "groups": ["system:serviceaccounts", "system:authenticated"]});
    if let Some(node) = node_claim {
        user_info["extra"] = json!({
            "authentication.kubernetes.io/node-name": [node],
            "authentication.kubernetes.io/pod-name": ["agent-xyz"],
        });
    }
    let name = new
        .or(old)
        .map(|o| name_of(o).to_string())
        .unwrap_or_default();
    let request = json!({
        "operation": operation,
        "name": name,
        "namespace": "",
        "resource": {"group": "remotedevice.io", "version": "v1alpha1", "resource": res},
        "subResource": sub,
        "userInfo": user_info,
    });
    let mut ctx = Context::default().with_all();
    ctx.add_variable_from_value("request", cel(&request));
    ctx.add_variable_from_value("object", new.map(cel).unwrap_or(CelValue::Null));
    ctx.add_variable_from_value("oldObject", old.map(cel).unwrap_or(CelValue::Null));

    for expr in &policy.match_conditions {
        match compile(expr).execute(&ctx) {
            Ok(CelValue::Bool(true)) => {}
            Ok(CelValue::Bool(false)) => return Decision::NotMatched,
            other => panic!("match condition {expr} gave {other:?}"),
        }
    }
    let mut variables: HashMap<String, CelValue> = HashMap::new();
    for (name, expr) in &policy.variables {
        ctx.add_variable_from_value("variables", variables.clone());
        let value = compile(expr)
            .execute(&ctx)
            .unwrap_or_else(|e| panic!("variable {name} fails: {e:?}"));
        variables.insert(name.clone(), value);
    }
    ctx.add_variable_from_value("variables", variables);

    let mut refusals = Vec::new();
    for (expr, message, message_expr) in &policy.validations {
        match compile(expr).execute(&ctx) {
            Ok(CelValue::Bool(true)) => {}
            // failurePolicy Fail: an error refuses, like false.
            result => {
                let text = message_expr
                    .as_ref()
                    .and_then(|m| match compile(m).execute(&ctx) {
                        Ok(CelValue::String(s)) => Some(s.to_string()),
                        _ => None,
                    })
                    .or_else(|| message.clone())
                    .unwrap_or_else(|| format!("{expr} gave {result:?}"));
                refusals.push(text);
            }
        }
    }
    if refusals.is_empty() {
        Decision::Allowed
    } else {
        Decision::Denied(refusals)
    }
}

const AGENT: &str = "system:serviceaccount:rdo-system:rdo-remote-device-operator-agent";
const CONTROLLER: &str = "system:serviceaccount:rdo-system:rdo-remote-device-operator-controller";

fn tunnel_port(node: &str, finalizers: &[&str]) -> Value {
    let mut tp = json!({
        "apiVersion": "remotedevice.io/v1alpha1",
        "kind": "TunnelPort",
        "metadata": {
            "name": format!("{node}-vxlan-192-168-100-2"),
            "generation": 1,
            "labels": {"remotedevice.io/node": node, "app.kubernetes.io/managed-by": "remote-device-operator"},
        },
        "spec": {
            "nodeName": node,
            "remoteIP": "192.168.100.2",
            "tunnelType": "vxlan",
            "devices": [{"namespace": "tenant-a", "name": "tor-server-1", "macAddress": "52:54:00:12:34:56", "vni": 5001}],
        },
    });
    if !finalizers.is_empty() {
        tp["metadata"]["finalizers"] = json!(finalizers);
    }
    tp
}

fn denied_with(decision: &Decision, fragment: &str) -> bool {
    matches!(decision, Decision::Denied(msgs) if msgs.iter().any(|m| m.contains(fragment)))
}

#[test]
fn node_restriction_policy_allows_an_agent_only_its_own_nodes_finalizer_and_status() {
    let p = policy();
    assert!(p.resources.contains(&"tunnelports".to_string()));
    assert!(p.resources.contains(&"tunnelports/status".to_string()));
    const FIN: &str = "remotedevice.io/ovs-cleanup";
    let own = tunnel_port("worker-1", &[]);
    let own_fin = tunnel_port("worker-1", &[FIN]);
    let agent =
        |op: &str, res: &str, claim: Option<&str>, old: Option<&Value>, new: Option<&Value>| {
            evaluate(&p, op, res, AGENT, claim, old, new)
        };
    let me = Some("worker-1");

    // Allowed: add and remove its finalizer, write status, on its own node.
    assert_eq!(
        agent("UPDATE", "tunnelports", me, Some(&own), Some(&own_fin)),
        Decision::Allowed
    );
    assert_eq!(
        agent("UPDATE", "tunnelports", me, Some(&own_fin), Some(&own)),
        Decision::Allowed
    );
    let mut with_status = own_fin.clone();
    with_status["status"] = json!({"ofport": 7, "observedGeneration": 1});
    assert_eq!(
        agent(
            "UPDATE",
            "tunnelports/status",
            me,
            Some(&own_fin),
            Some(&with_status)
        ),
        Decision::Allowed
    );
    // Keeping someone else's finalizer in place is fine.
    let shared_old = tunnel_port("worker-1", &["example.com/keep"]);
    let shared_new = tunnel_port("worker-1", &["example.com/keep", FIN]);
    assert_eq!(
        agent(
            "UPDATE",
            "tunnelports",
            me,
            Some(&shared_old),
            Some(&shared_new)
        ),
        Decision::Allowed
    );

    // Refused: another node's TunnelPort, its finalizer or its status.
    let other = tunnel_port("worker-2", &[]);
    let other_fin = tunnel_port("worker-2", &[FIN]);
    let d = agent("UPDATE", "tunnelports", me, Some(&other), Some(&other_fin));
    assert!(
        denied_with(
            &d,
            "may not write TunnelPort worker-2-vxlan-192-168-100-2 of node worker-2"
        ),
        "{d:?}"
    );
    let d = agent(
        "UPDATE",
        "tunnelports/status",
        me,
        Some(&other),
        Some(&other),
    );
    assert!(denied_with(&d, "of node worker-2"), "{d:?}");
    // Moving another node's TunnelPort to itself.
    let d = agent("UPDATE", "tunnelports", me, Some(&other), Some(&own));
    assert!(denied_with(&d, "of node worker-2"), "{d:?}");

    // Refused on its own node: spec, labels, foreign finalizers.
    let mut spec_changed = own_fin.clone();
    spec_changed["spec"]["devices"] = json!([]);
    assert!(denied_with(
        &agent(
            "UPDATE",
            "tunnelports",
            me,
            Some(&own_fin),
            Some(&spec_changed)
        ),
        "spec"
    ));
    let mut relabelled = own_fin.clone();
    relabelled["metadata"]["labels"]["remotedevice.io/node"] = json!("worker-2");
    assert!(denied_with(
        &agent(
            "UPDATE",
            "tunnelports",
            me,
            Some(&own_fin),
            Some(&relabelled)
        ),
        "labels"
    ));
    let mut annotated = own_fin.clone();
    annotated["metadata"]["annotations"] = json!({"x": "y"});
    assert!(denied_with(
        &agent(
            "UPDATE",
            "tunnelports",
            me,
            Some(&own_fin),
            Some(&annotated)
        ),
        "annotations"
    ));
    let d = agent(
        "UPDATE",
        "tunnelports",
        me,
        Some(&shared_new),
        Some(&own_fin),
    );
    assert!(denied_with(&d, "only its own finalizer"), "{d:?}");

    // Refused: no node claim in the token; create and delete at all.
    assert!(denied_with(
        &agent("UPDATE", "tunnelports", None, Some(&own), Some(&own_fin)),
        "no node claim"
    ));
    assert!(denied_with(
        &agent("CREATE", "tunnelports", me, None, Some(&own)),
        "only update"
    ));
    assert!(denied_with(
        &agent("DELETE", "tunnelports", me, Some(&own), None),
        "only update"
    ));

    // The policy leaves everyone else alone: the controller writes every node's TunnelPorts.
    let by = |user: &str| {
        evaluate(
            &p,
            "UPDATE",
            "tunnelports",
            user,
            None,
            Some(&other),
            Some(&spec_changed),
        )
    };
    assert_eq!(by(CONTROLLER), Decision::NotMatched);
    assert_eq!(
        by("system:serviceaccount:other-ns:rdo-remote-device-operator-agent"),
        Decision::NotMatched
    );
    assert_eq!(
        evaluate(
            &p,
            "UPDATE",
            "remotedevices",
            AGENT,
            me,
            Some(&own),
            Some(&own)
        ),
        Decision::NotMatched
    );
}

/// Words of `text` that look like `--set key=value`: the keys.
fn set_keys(text: &str) -> Vec<String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    words
        .windows(2)
        .filter(|w| w[0] == "--set")
        .filter_map(|w| w[1].split('=').next())
        .map(|k| k.trim_matches(|c| c == '"' || c == '\'').to_string())
        .collect()
}

/// Repository paths a text names (`hack/…`, `scripts/…`, `charts/…`, `docs/…`, `examples/…`).
fn repo_paths(text: &str) -> BTreeSet<String> {
    let mut paths = BTreeSet::new();
    for prefix in [
        "hack/",
        "scripts/",
        "charts/",
        "docs/",
        ".github/",
        "examples/",
    ] {
        for (i, _) in text.match_indices(prefix) {
            let before = text[..i].chars().last();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '/' || c == '.' || c == '-') {
                continue;
            }
            let path: String = text[i..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || "/._-".contains(*c))
                .collect();
            paths.insert(path.trim_end_matches(['.', '/']).to_string());
        }
    }
    paths
}

#[test]
fn kind_script_and_docs_use_only_what_the_chart_and_repository_provide() {
    let mut values = BTreeMap::new();
    leaves(&yaml_file(&chart().join("values.yaml")), "", &mut values);
    let docs = &renders().with_vap;
    for file in [
        "hack/kind-e2e.sh",
        "README.md",
        "docs/operations.md",
        "docs/coexistence.md",
        ".github/workflows/e2e.yml",
        ".github/workflows/release.yml",
    ] {
        let text = std::fs::read_to_string(root().join(file)).unwrap();
        for key in set_keys(&text) {
            assert!(
                values.contains_key(&key),
                "{file} sets {key}, which the chart does not have"
            );
        }
        for path in repo_paths(&text) {
            assert!(
                root().join(&path).exists(),
                "{file} names {path}, which does not exist"
            );
        }
        // Label selectors on the components must match the pods the chart renders.
        for component in ["controller", "agent"] {
            let selector = format!("app.kubernetes.io/component={component}");
            if text.contains(&selector) {
                let kind = if component == "agent" {
                    "DaemonSet"
                } else {
                    "Deployment"
                };
                let workload = docs.iter().find(|d| kind_of(d) == kind).unwrap();
                assert_eq!(
                    workload["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"],
                    component
                );
            }
        }
    }
    // Names the script and the docs use for objects of release "rdo".
    let script = std::fs::read_to_string(root().join("hack/kind-e2e.sh")).unwrap();
    assert!(script.contains("RELEASE=${RELEASE:-rdo}"));
    let policy = find(
        docs,
        "ValidatingAdmissionPolicy",
        "rdo-remote-device-operator-agent-own-node",
    );
    assert!(script.contains(&name_of(policy).replacen("rdo", "$RELEASE", 1)));
    let operations = std::fs::read_to_string(root().join("docs/operations.md")).unwrap();
    for (kind, name) in [
        ("Deployment", "rdo-remote-device-operator-controller"),
        ("Service", "rdo-remote-device-operator-controller-metrics"),
    ] {
        find(docs, kind, name);
        assert!(
            operations.contains(name),
            "docs/operations.md does not use {name}"
        );
    }
    let lease_arg = format!("--lease-name={}", "rdo-remote-device-operator-controller");
    let deploy = find(docs, "Deployment", "rdo-remote-device-operator-controller");
    assert!(
        deploy["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_array()
            .unwrap()
            .contains(&json!(lease_arg))
    );
    assert!(operations.contains("get lease rdo-remote-device-operator-controller"));
}

#[test]
fn image_is_multi_stage_locked_non_root_labelled_and_matches_the_chart() {
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let stages: Vec<&str> = dockerfile.split("\nFROM ").skip(1).collect();
    assert!(stages.len() >= 2, "the Dockerfile is not multi-stage");
    let build = stages[0];
    assert!(build.contains("cargo build --release --locked --bin remote-device-operator"));
    let runtime = stages.last().unwrap();
    assert!(runtime.contains(
        "COPY --from=build /out/remote-device-operator /usr/local/bin/remote-device-operator"
    ));
    assert!(runtime.contains("COPY --from=ovs-tools /usr/bin/ovs-ofctl /usr/bin/ovs-ofctl"));
    assert!(runtime.contains("ENTRYPOINT [\"/usr/local/bin/remote-device-operator\"]"));
    for label in [
        "title",
        "description",
        "source",
        "licenses",
        "version",
        "revision",
    ] {
        assert!(
            runtime.contains(&format!("org.opencontainers.image.{label}=")),
            "OCI label {label} missing"
        );
    }
    // The image's user is the one the chart runs the controller and the test pod as.
    let user = runtime
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("the runtime stage sets USER");
    assert_eq!(user.trim(), "65532:65532");
    let deploy = find(
        &renders().default,
        "Deployment",
        "rdo-remote-device-operator-controller",
    );
    let sc = &deploy["spec"]["template"]["spec"]["containers"][0]["securityContext"];
    assert_eq!(
        (sc["runAsUser"].as_i64(), sc["runAsGroup"].as_i64()),
        (Some(65532), Some(65532))
    );

    let ignore = std::fs::read_to_string(root().join(".dockerignore")).unwrap();
    for excluded in ["target/", ".git/", ".tools/"] {
        assert!(
            ignore.lines().any(|l| l == excluded),
            ".dockerignore lacks {excluded}"
        );
    }
    // One version: the crate, the chart's appVersion (default image tag) and the image label.
    let version = crate_version();
    let chart_yaml = yaml_file(&chart().join("Chart.yaml"));
    assert_eq!(chart_yaml["appVersion"], version.as_str());
    assert!(dockerfile.contains(&format!("ARG VERSION={version}")));
}

/// `version` of the `[package]` section of Cargo.toml (plain enough to read without a TOML parser).
fn crate_version() -> String {
    let text = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let package = text.split("[package]").nth(1).expect("[package] section");
    let line = package
        .lines()
        .find(|l| l.trim_start().starts_with("version"))
        .expect("package version");
    line.split('"').nth(1).expect("quoted version").to_string()
}

/// Deserializes `doc` as the Kubernetes type `K` and serializes it back: a field the type
/// does not know (a typo such as `readOnlyRootFilesytem`) is dropped on the way and shows
/// up as a difference.
fn round_trip<K: serde::de::DeserializeOwned + serde::Serialize>(
    doc: &Value,
) -> Result<Value, String> {
    let typed: K = serde_json::from_value(doc.clone()).map_err(|e| e.to_string())?;
    serde_json::to_value(typed).map_err(|e| e.to_string())
}

/// Paths where `a` has something `b` lacks or differs.
fn differences(a: &Value, b: &Value, path: String, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, v) in x {
                match y.get(k) {
                    Some(w) => differences(v, w, format!("{path}.{k}"), out),
                    None => out.push(format!("{path}.{k}")),
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                differences(v, w, format!("{path}[{i}]"), out);
            }
        }
        _ if a != b => out.push(path),
        _ => {}
    }
}

#[test]
fn every_rendered_field_is_a_real_kubernetes_field() {
    use k8s_openapi::api::admissionregistration::v1 as admission;
    use k8s_openapi::api::{
        apps::v1 as apps, core::v1 as core, policy::v1 as policy, rbac::v1 as rbac,
    };
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

    for (render, docs) in all_renders() {
        for doc in docs {
            let back = match kind_of(doc) {
                "CustomResourceDefinition" => round_trip::<CustomResourceDefinition>(doc),
                "ServiceAccount" => round_trip::<core::ServiceAccount>(doc),
                "Service" => round_trip::<core::Service>(doc),
                "ConfigMap" => round_trip::<core::ConfigMap>(doc),
                "ServiceMonitor" | "PodMonitor" => monitor_fields(doc),
                "Pod" => round_trip::<core::Pod>(doc),
                "Deployment" => round_trip::<apps::Deployment>(doc),
                "DaemonSet" => round_trip::<apps::DaemonSet>(doc),
                "PodDisruptionBudget" => round_trip::<policy::PodDisruptionBudget>(doc),
                "ClusterRole" => round_trip::<rbac::ClusterRole>(doc),
                "ClusterRoleBinding" => round_trip::<rbac::ClusterRoleBinding>(doc),
                "Role" => round_trip::<rbac::Role>(doc),
                "RoleBinding" => round_trip::<rbac::RoleBinding>(doc),
                "ValidatingAdmissionPolicy" => {
                    round_trip::<admission::ValidatingAdmissionPolicy>(doc)
                }
                "ValidatingAdmissionPolicyBinding" => {
                    round_trip::<admission::ValidatingAdmissionPolicyBinding>(doc)
                }
                other => panic!("{render}: no typed check for kind {other}"),
            };
            let back =
                back.unwrap_or_else(|e| panic!("{render}: {} {}: {e}", kind_of(doc), name_of(doc)));
            let mut diff = Vec::new();
            differences(doc, &back, String::new(), &mut diff);
            assert!(
                diff.is_empty(),
                "{render}: {} {} has fields Kubernetes does not know or spells differently: {diff:?}",
                kind_of(doc),
                name_of(doc)
            );
        }
    }
}

#[test]
fn chart_refuses_clusters_without_the_service_account_node_claim() {
    let err = template(&["--kube-version", "1.31.5"]).expect_err("1.31 must be refused");
    assert!(err.contains("requires kubeVersion: >=1.32.0-0"), "{err}");
    template(&["--kube-version", "1.32.0"]).expect("1.32 is accepted");
}

// ---- What a cluster admin expects: defaults and knobs ----

fn controller_of(docs: &[Value]) -> &Value {
    docs.iter()
        .find(|d| kind_of(d) == "Deployment")
        .expect("controller rendered")
}

fn agent_of(docs: &[Value]) -> &Value {
    docs.iter()
        .find(|d| kind_of(d) == "DaemonSet")
        .expect("agent rendered")
}

fn pod_spec(workload: &Value) -> &Value {
    &workload["spec"]["template"]["spec"]
}

#[test]
fn defaults_select_linux_nodes_and_make_the_agent_node_critical() {
    let docs = &renders().default;
    let controller = pod_spec(controller_of(docs));
    let agent = pod_spec(agent_of(docs));
    for spec in [controller, agent] {
        assert_eq!(spec["nodeSelector"], json!({"kubernetes.io/os": "linux"}));
    }
    // A tunnel agent evicted before the workloads cuts their traffic to remote devices.
    assert_eq!(agent["priorityClassName"], "system-node-critical");
    assert!(controller.get("priorityClassName").is_none());
    // The spread rule is there by default, and nothing else.
    assert_eq!(
        controller["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
            [0]["podAffinityTerm"]["topologyKey"],
        "kubernetes.io/hostname"
    );
    assert_eq!(controller["affinity"].as_object().unwrap().len(), 1);
    assert!(agent.get("affinity").is_none());
    // Nothing extra in args and env.
    assert_eq!(agent["containers"][0]["args"].as_array().unwrap().len(), 3);
    assert_eq!(
        controller["containers"][0]["args"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    // The agents' headless metrics Service selects exactly the agent pods.
    let svc = find(docs, "Service", "rdo-remote-device-operator-agent-metrics");
    assert_eq!(svc["spec"]["clusterIP"], "None");
    assert_eq!(svc["spec"]["ports"][0]["name"], "metrics");
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], "metrics");
    assert_eq!(
        svc["spec"]["selector"],
        agent_of(docs)["spec"]["selector"]["matchLabels"]
    );
    // Off by default: monitors (their CRDs may not exist) and the dashboard.
    for kind in ["ServiceMonitor", "PodMonitor", "ConfigMap"] {
        assert!(
            docs.iter().all(|d| kind_of(d) != kind),
            "{kind} rendered by default"
        );
    }
    // Dropping the default selector is possible (helm merges maps; null removes a key).
    let docs = template(&[
        "--set",
        "agent.nodeSelector.kubernetes\\.io/os=null",
        "--set",
        "agent.priorityClassName=",
    ])
    .unwrap();
    let agent = pod_spec(agent_of(&docs));
    assert!(agent.get("nodeSelector").is_none(), "{agent}");
    assert!(agent.get("priorityClassName").is_none());
}

#[test]
fn image_digest_wins_over_the_tag_everywhere() {
    const DIGEST: &str = "sha256:4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945";
    let docs = template(&[
        "--set",
        &format!("image.digest={DIGEST}"),
        "--set",
        "image.tag=9.9.9",
    ])
    .unwrap();
    let specs = pod_specs(&docs);
    assert_eq!(specs.len(), 3, "controller, agent and the helm test pod");
    for (kind, name, spec, _) in specs {
        assert_eq!(
            spec["containers"][0]["image"],
            format!("ghcr.io/remote-device-operator/remote-device-operator@{DIGEST}"),
            "{kind} {name}"
        );
    }
    // Without a digest: the tag, else the appVersion.
    let docs = template(&["--set", "image.tag=9.9.9"]).unwrap();
    assert_eq!(
        pod_spec(agent_of(&docs))["containers"][0]["image"],
        "ghcr.io/remote-device-operator/remote-device-operator:9.9.9"
    );
    let app_version = yaml_file(&chart().join("Chart.yaml"))["appVersion"].clone();
    assert_eq!(
        pod_spec(agent_of(&renders().default))["containers"][0]["image"],
        format!(
            "ghcr.io/remote-device-operator/remote-device-operator:{}",
            app_version.as_str().unwrap()
        )
    );
}

fn temp_values(name: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("rdo-chart-{}-{name}.yaml", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn resources_may_drop_the_cpu_limit_or_all_limits_and_add_ephemeral_storage() {
    // No CPU limit (CPU throttling of a latency-sensitive agent), memory limit kept.
    let docs = template(&["--set", "agent.resources.limits.cpu=null"]).unwrap();
    let resources = &pod_spec(agent_of(&docs))["containers"][0]["resources"];
    assert_eq!(resources["limits"], json!({"memory": "128Mi"}));
    assert_eq!(
        resources["requests"],
        json!({"cpu": "20m", "memory": "32Mi"})
    );

    // limits: null, and ephemeral-storage in requests, from a values file.
    let file = temp_values(
        "resources",
        "controller:\n  resources:\n    limits: null\n    requests:\n      ephemeral-storage: 50Mi\n\
         agent:\n  resources:\n    limits:\n      cpu: null\n      ephemeral-storage: 1Gi\n",
    );
    let docs = template(&["-f", file.to_str().unwrap()]).unwrap();
    std::fs::remove_file(&file).ok();
    let controller = &pod_spec(controller_of(&docs))["containers"][0]["resources"];
    assert!(controller.get("limits").is_none(), "{controller}");
    assert_eq!(
        controller["requests"],
        json!({"cpu": "50m", "memory": "64Mi", "ephemeral-storage": "50Mi"})
    );
    let agent = &pod_spec(agent_of(&docs))["containers"][0]["resources"];
    assert_eq!(
        agent["limits"],
        json!({"memory": "128Mi", "ephemeral-storage": "1Gi"})
    );
}

#[test]
fn extra_args_env_pod_labels_and_affinity_reach_the_pods() {
    let file = temp_values(
        "knobs",
        r#"
controller:
  extraArgs: ["--resync-seconds=60"]
  extraEnv:
    - name: RDO_API_TIMEOUT_SECONDS
      value: "30"
  podLabels:
    team: network
    app.kubernetes.io/part-of: overlay
  affinity:
    nodeAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
        nodeSelectorTerms:
          - matchExpressions:
              - {key: node-role.kubernetes.io/control-plane, operator: DoesNotExist}
agent:
  extraArgs: ["--api-timeout-seconds=20"]
  extraEnv:
    - name: CONFIG_FROM_SECRET
      valueFrom:
        secretKeyRef: {name: rdo, key: token, optional: true}
  podLabels:
    team: network
  affinity:
    nodeAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
        nodeSelectorTerms:
          - matchExpressions:
              - {key: remotedevice.io/bridge, operator: Exists}
"#,
    );
    let docs = template(&["-f", file.to_str().unwrap()]).unwrap();
    std::fs::remove_file(&file).ok();

    let controller = controller_of(&docs);
    let c = &pod_spec(controller)["containers"][0];
    assert_eq!(
        c["args"].as_array().unwrap().last().unwrap(),
        "--resync-seconds=60"
    );
    assert_eq!(env_map(c)["RDO_API_TIMEOUT_SECONDS"], "30");
    // The chart's env comes first and stays.
    assert_eq!(c["env"][0]["name"], "RUST_LOG");
    let labels = &controller["spec"]["template"]["metadata"]["labels"];
    assert_eq!(labels["team"], "network");
    assert_eq!(labels["app.kubernetes.io/part-of"], "overlay");
    // The selector still matches the pods.
    for (k, v) in controller["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap()
    {
        assert_eq!(&labels[k], v, "{k}");
    }
    // The node affinity is combined with the spread rule.
    let affinity = &pod_spec(controller)["affinity"];
    assert!(affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"].is_object());
    assert!(affinity["podAntiAffinity"].is_object(), "{affinity}");

    let agent = agent_of(&docs);
    let c = &pod_spec(agent)["containers"][0];
    assert_eq!(
        c["args"],
        json!([
            "agent",
            "--log-format=json",
            "--metrics-addr=[::]:8080",
            "--api-timeout-seconds=20"
        ])
    );
    assert_eq!(
        env_map(c)["CONFIG_FROM_SECRET"],
        json!({"secretKeyRef": {"name": "rdo", "key": "token", "optional": true}})
    );
    assert_eq!(env_map(c)["RDO_OVS_BRIDGE"], "br-int");
    assert_eq!(
        agent["spec"]["template"]["metadata"]["labels"]["team"],
        "network"
    );
    assert_eq!(
        pod_spec(agent)["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            ["nodeSelectorTerms"][0]["matchExpressions"][0]["key"],
        "remotedevice.io/bridge"
    );

    // A podAntiAffinity of the user's replaces the spread rule.
    let docs = template(&[
        "--set",
        "controller.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey=topology.kubernetes.io/zone",
        "--set",
        "controller.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].labelSelector.matchLabels.app=x",
    ])
    .unwrap();
    let anti = &pod_spec(controller_of(&docs))["affinity"]["podAntiAffinity"];
    assert!(
        anti.get("preferredDuringSchedulingIgnoredDuringExecution")
            .is_none()
    );
    assert_eq!(
        anti["requiredDuringSchedulingIgnoredDuringExecution"][0]["topologyKey"],
        "topology.kubernetes.io/zone"
    );
}

#[test]
fn node_restriction_policy_is_rendered_by_value_without_a_cluster() {
    let has_policy = |docs: &[Value]| {
        let policies = docs
            .iter()
            .filter(|d| {
                matches!(
                    kind_of(d),
                    "ValidatingAdmissionPolicy" | "ValidatingAdmissionPolicyBinding"
                )
            })
            .count();
        assert!(policies == 0 || policies == 2, "policy without binding");
        policies == 2
    };
    let with_api = ["--api-versions", VAP_API];
    for (value, without_cluster, with_vap_api) in [
        // auto (the default) asks helm's capabilities, which lack VAP without a cluster.
        (None, false, true),
        (Some("auto"), false, true),
        (Some("always"), true, true),
        (Some("never"), false, false),
        // The booleans of earlier chart versions.
        (Some("true"), false, true),
        (Some("false"), false, false),
    ] {
        let set = value.map(|v| format!("agent.nodeRestrictionPolicy={v}"));
        let mut args: Vec<&str> = Vec::new();
        if let Some(set) = &set {
            args.extend(["--set", set]);
        }
        assert_eq!(
            has_policy(&template(&args).unwrap()),
            without_cluster,
            "{value:?} without a cluster"
        );
        args.extend(with_api);
        assert_eq!(
            has_policy(&template(&args).unwrap()),
            with_vap_api,
            "{value:?} where the API is served"
        );
    }
    // `always` renders the same policy as a cluster that serves the API.
    let always = template(&["--set", "agent.nodeRestrictionPolicy=always"]).unwrap();
    let served = &renders().with_vap;
    for kind in [
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ] {
        let name = "rdo-remote-device-operator-agent-own-node";
        assert_eq!(find(&always, kind, name), find(served, kind, name));
    }
}

// ---- Metrics: Services, Prometheus Operator objects, the dashboard ----

/// The fields of monitoring.coreos.com/v1 ServiceMonitor and PodMonitor the chart may
/// render, with their JSON types (checked against prometheus-operator's CRDs,
/// example/prometheus-operator-crd/ at commit 6adcebc, with every object closed). There is
/// no Rust type for these kinds; a field outside this list fails the test.
fn monitor_fields(doc: &Value) -> Result<Value, String> {
    let endpoint = json!({
        "port": "string", "path": "string", "interval": "string", "scrapeTimeout": "string",
        "relabelings": [{"sourceLabels": ["string"], "targetLabel": "string", "action": "string"}],
    });
    let endpoints = if kind_of(doc) == "ServiceMonitor" {
        "endpoints"
    } else {
        "podMetricsEndpoints"
    };
    let shape = json!({
        "apiVersion": "string", "kind": "string",
        "metadata": {"name": "string", "namespace": "string", "labels": {"*": "string"}},
        "spec": {
            "selector": {"matchLabels": {"*": "string"}},
            "namespaceSelector": {"matchNames": ["string"]},
            endpoints: [endpoint],
        },
    });
    fn check(value: &Value, shape: &Value, path: &str, out: &mut Vec<String>) {
        match (value, shape) {
            (Value::Object(map), Value::Object(fields)) => {
                for (k, v) in map {
                    match fields.get(k).or_else(|| fields.get("*")) {
                        Some(s) => check(v, s, &format!("{path}.{k}"), out),
                        None => out.push(format!("{path}.{k}")),
                    }
                }
            }
            (Value::Array(items), Value::Array(item)) => {
                for (i, v) in items.iter().enumerate() {
                    check(v, &item[0], &format!("{path}[{i}]"), out);
                }
            }
            (Value::String(_), Value::String(t)) if t == "string" => {}
            _ => out.push(format!("{path} (wrong type)")),
        }
    }
    let mut bad = Vec::new();
    check(doc, &shape, "", &mut bad);
    if bad.is_empty() {
        Ok(doc.clone())
    } else {
        Err(format!("not ServiceMonitor/PodMonitor fields: {bad:?}"))
    }
}

#[test]
fn monitors_are_off_by_default_and_select_the_components_when_on() {
    let docs = template(&[
        "--set",
        "metrics.serviceMonitor.enabled=true,metrics.serviceMonitor.interval=15s",
        "--set",
        "metrics.serviceMonitor.labels.release=kube-prometheus-stack",
        "--set",
        "metrics.podMonitor.enabled=true,metrics.podMonitor.scrapeTimeout=5s",
        "--set",
        "metrics.podMonitor.labels.release=kube-prometheus-stack",
        // The ServiceMonitor needs the Service, so it stays although switched off.
        "--set",
        "controller.metricsService=false",
    ])
    .unwrap();
    let sm = find(
        &docs,
        "ServiceMonitor",
        "rdo-remote-device-operator-controller",
    );
    assert_eq!(sm["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(sm["metadata"]["namespace"], NAMESPACE);
    assert_eq!(sm["metadata"]["labels"]["release"], "kube-prometheus-stack");
    assert_eq!(
        sm["spec"]["namespaceSelector"]["matchNames"],
        json!([NAMESPACE])
    );
    let endpoint = &sm["spec"]["endpoints"][0];
    assert_eq!(endpoint["port"], "metrics");
    assert_eq!(endpoint["path"], "/metrics");
    assert_eq!(endpoint["interval"], "15s");
    assert!(endpoint.get("scrapeTimeout").is_none());
    // It selects the controllers' Service (by its labels), and that Service has the port.
    let svc = find(
        &docs,
        "Service",
        "rdo-remote-device-operator-controller-metrics",
    );
    for (k, v) in sm["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(&svc["metadata"]["labels"][k], v, "{k}");
    }
    let agent_svc = find(&docs, "Service", "rdo-remote-device-operator-agent-metrics");
    assert_ne!(
        agent_svc["metadata"]["labels"]["app.kubernetes.io/component"],
        sm["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"],
        "the ServiceMonitor must not also pick the agents' Service"
    );
    assert_eq!(svc["spec"]["ports"][0]["name"], "metrics");

    let pm = find(&docs, "PodMonitor", "rdo-remote-device-operator-agent");
    assert_eq!(pm["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(pm["metadata"]["labels"]["release"], "kube-prometheus-stack");
    assert_eq!(
        pm["spec"]["selector"]["matchLabels"],
        agent_of(&docs)["spec"]["selector"]["matchLabels"]
    );
    let endpoint = &pm["spec"]["podMetricsEndpoints"][0];
    assert_eq!(endpoint["port"], "metrics");
    assert_eq!(endpoint["interval"], "30s");
    assert_eq!(endpoint["scrapeTimeout"], "5s");
    assert_eq!(endpoint["relabelings"][0]["targetLabel"], "node");
    assert_eq!(
        pod_spec(agent_of(&docs))["containers"][0]["ports"][0]["name"],
        "metrics"
    );
    for doc in [sm, pm] {
        monitor_fields(doc).unwrap();
    }

    // Without the ServiceMonitor, controller.metricsService=false drops the Service and helm test.
    let docs = template(&["--set", "controller.metricsService=false"]).unwrap();
    assert!(
        docs.iter()
            .all(|d| name_of(d) != "rdo-remote-device-operator-controller-metrics")
    );
    assert!(docs.iter().all(|d| kind_of(d) != "Pod"));
}

/// The metric names the components export (one prefix, a `component` label on each).
const METRICS: &[&str] = &[
    "remote_device_operator_reconciles_total",
    "remote_device_operator_reconcile_errors_total",
    "remote_device_operator_reconcile_duration_seconds",
    "remote_device_operator_api_writes_total",
    "remote_device_operator_tunnelports",
    "remote_device_operator_ovsdb_reconnects_total",
    "remote_device_operator_flow_monitor_up",
    "remote_device_operator_build_info",
];

/// Every `expr` of a Grafana dashboard's panels.
fn dashboard_exprs(dashboard: &Value) -> Vec<String> {
    let mut hits = Vec::new();
    find_key(dashboard, "expr", String::new(), &mut hits);
    hits.into_iter()
        .map(|(_, v)| v.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn dashboard_uses_the_exported_metrics_and_ships_in_a_configmap_when_asked() {
    let text = std::fs::read_to_string(chart().join("files/dashboard.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&text).expect("files/dashboard.json is JSON");
    assert_eq!(dashboard["uid"], "remote-device-operator");
    let exprs = dashboard_exprs(&dashboard);
    assert!(exprs.len() >= 8, "{exprs:?}");
    let used: BTreeSet<String> = exprs
        .iter()
        .flat_map(|e| {
            e.match_indices("remote_device_operator_")
                .map(|(i, _)| {
                    e[i..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect::<String>()
                })
                .collect::<Vec<_>>()
        })
        .collect();
    for name in &used {
        // A histogram is queried through its _bucket series.
        let base = name.trim_end_matches("_bucket");
        assert!(
            METRICS.contains(&base),
            "dashboard queries unknown metric {name}"
        );
    }
    for name in METRICS {
        assert!(
            used.iter().any(|u| u.starts_with(name)),
            "dashboard never shows {name}"
        );
    }
    // Every panel queries through the data source variable.
    let mut panels = dashboard["panels"].as_array().unwrap().clone();
    assert!(!panels.is_empty());
    for panel in panels.drain(..) {
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "{}",
            panel["title"]
        );
    }

    let docs = template(&[
        "--set",
        "metrics.dashboard.enabled=true,metrics.dashboard.namespace=monitoring",
    ])
    .unwrap();
    let cm = find(&docs, "ConfigMap", "rdo-remote-device-operator-dashboard");
    assert_eq!(cm["metadata"]["namespace"], "monitoring");
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    let shipped: Value =
        serde_json::from_str(cm["data"]["remote-device-operator.json"].as_str().unwrap())
            .expect("the ConfigMap holds JSON");
    assert_eq!(shipped, dashboard);
}

// ---- Release: the workflow publishes what the chart installs by default ----

#[test]
fn release_workflow_publishes_the_charts_default_image_and_versions_the_chart_from_the_tag() {
    let workflow = yaml_file(&root().join(".github/workflows/release.yml"));
    assert_eq!(workflow["on"]["push"]["tags"], json!(["v*"]));
    let values = yaml_file(&chart().join("values.yaml"));
    assert_eq!(
        workflow["env"]["IMAGE"], values["image"]["repository"],
        "the workflow pushes another image than the chart installs"
    );
    assert_eq!(
        values["image"]["tag"], "",
        "the default tag is the appVersion"
    );
    assert_eq!(values["image"]["digest"], "");
    assert_eq!(
        workflow["env"]["CHART_REPOSITORY"],
        "oci://ghcr.io/remote-device-operator/charts"
    );

    let job = &workflow["jobs"]["release"];
    assert_eq!(job["permissions"]["id-token"], "write", "cosign keyless");
    assert_eq!(job["permissions"]["packages"], "write");
    let steps = job["steps"].as_array().unwrap();
    let step = |uses: &str| {
        steps
            .iter()
            .find(|s| s["uses"].as_str().is_some_and(|u| u.starts_with(uses)))
            .unwrap_or_else(|| panic!("no step uses {uses}"))
    };
    let script = |id_or_name: &str| {
        steps
            .iter()
            .find(|s| {
                s["id"] == id_or_name
                    || s["name"]
                        .as_str()
                        .is_some_and(|n| n.starts_with(id_or_name))
            })
            .and_then(|s| s["run"].as_str())
            .unwrap_or_else(|| panic!("no step {id_or_name}"))
            .to_string()
    };
    // Every action pinned to a major version.
    for s in steps.iter().filter_map(|s| s["uses"].as_str()) {
        let (_, version) = s
            .split_once('@')
            .unwrap_or_else(|| panic!("{s} is not pinned"));
        assert!(
            version.starts_with('v') && version[1..].chars().all(|c| c.is_ascii_digit()),
            "{s}: pin a major version"
        );
    }
    step("docker/setup-qemu-action");
    step("docker/setup-buildx-action");
    step("sigstore/cosign-installer");
    // The version is the tag without its "v"; the image is tagged with it.
    assert!(script("version").contains(r#"version="${GITHUB_REF_NAME#v}""#));
    let build = &step("docker/build-push-action")["with"];
    assert_eq!(build["platforms"], "linux/amd64,linux/arm64");
    assert_eq!(build["push"], true);
    assert_eq!(build["sbom"], true);
    assert_eq!(
        build["tags"],
        "${{ env.IMAGE }}:${{ steps.version.outputs.version }}"
    );
    assert!(
        build["build-args"]
            .as_str()
            .unwrap()
            .contains("VERSION=${{ steps.version.outputs.version }}")
    );
    assert!(script("Sign the image").contains(r#"cosign sign --yes "$IMAGE@$DIGEST""#));
    // The chart gets version and appVersion from the tag, so image.tag's default (the
    // appVersion) is exactly the tag pushed above.
    let package = steps
        .iter()
        .find(|s| {
            s["run"]
                .as_str()
                .is_some_and(|r| r.contains("helm package"))
        })
        .expect("a step packages the chart");
    assert_eq!(
        package["env"]["VERSION"],
        "${{ steps.version.outputs.version }}"
    );
    assert!(
        package["run"]
            .as_str()
            .unwrap()
            .contains(r#"--version "$VERSION" --app-version "$VERSION""#)
    );
    let push = script("Push and sign the chart");
    assert!(
        push.contains(
            r#"helm push "dist/remote-device-operator-$VERSION.tgz" "$CHART_REPOSITORY""#
        )
    );
    assert!(push.contains("cosign sign --yes"));

    // And that is what such a package renders: package with a version as the workflow
    // does, render the archive, find the image the workflow pushed for that tag.
    let dist = std::env::temp_dir().join(format!("rdo-chart-package-{}", std::process::id()));
    let dist_s = dist.to_str().unwrap();
    run_helm(&[
        "package",
        ".",
        "--version",
        "7.8.9-rc.1",
        "--app-version",
        "7.8.9-rc.1",
        "--destination",
        dist_s,
    ])
    .expect("helm package");
    let archive = dist.join("remote-device-operator-7.8.9-rc.1.tgz");
    let out = run_helm(&[
        "template",
        RELEASE,
        archive.to_str().unwrap(),
        "-n",
        NAMESPACE,
    ])
    .expect("the packaged chart renders");
    let docs = parse_stream(&out);
    std::fs::remove_dir_all(&dist).ok();
    assert_eq!(
        pod_spec(agent_of(&docs))["containers"][0]["image"],
        format!(
            "{}:7.8.9-rc.1",
            values["image"]["repository"].as_str().unwrap()
        )
    );
    // The labels carry the release's version too.
    assert!(out.contains("app.kubernetes.io/version: \"7.8.9-rc.1\""));
}

#[test]
fn coexistence_example_values_render_and_lint() {
    let dir = chart().join("examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "values-antrea.yaml",
            "values-kube-ovn.yaml",
            "values-ovn-kubernetes.yaml",
            "values-ovs-cni-kubevirt.yaml"
        ]
    );
    let guide = std::fs::read_to_string(root().join("docs/coexistence.md")).unwrap();
    for file in &files {
        let path = file.to_str().unwrap();
        let name = file.file_name().unwrap().to_string_lossy();
        assert!(
            guide.contains(&*name),
            "docs/coexistence.md does not explain {name}"
        );
        run_helm(&["lint", "--strict", ".", "-f", path]).expect("example values lint");
        let docs = template(&["-f", path]).expect("example values render");
        let values = yaml_file(file);
        let agent = pod_spec(agent_of(&docs));
        let env = env_map(&agent["containers"][0]);
        // None of them puts the agent on a CNI's own integration bridge.
        assert_ne!(env["RDO_OVS_BRIDGE"], "br-int", "{name}");
        assert_eq!(env["RDO_OVS_BRIDGE"], values["agent"]["bridge"], "{name}");
        // The socket is inside the mounted run directory.
        let rundir = values["agent"]["ovsRundir"]
            .as_str()
            .unwrap_or("/var/run/openvswitch");
        assert_eq!(agent["volumes"][0]["hostPath"]["path"], rundir, "{name}");
        assert_eq!(
            env["RDO_OVSDB_ENDPOINT"],
            format!("unix:{rundir}/db.sock"),
            "{name}: the endpoint must be the run directory's db.sock"
        );
    }
}
