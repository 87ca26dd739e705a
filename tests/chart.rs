//! Checks of the Helm chart with a real helm binary (`.tools/bin/helm` from
//! `scripts/install-helm.sh`, or `$HELM`): lint, rendering with default values and with
//! every option set, the rendered manifests (hardening, probes, resources, RBAC exactly as
//! documented in docs/operations.md, CRDs identical to `crds/` and to the types), the
//! values schema, and the agent's node-restriction policy evaluated with CEL.
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
    serde_yaml::Deserializer::from_str(text)
        .map(|doc| {
            let value: serde_yaml::Value =
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
        ("CustomResourceDefinition", 2),
        ("ServiceAccount", 2),
        ("ClusterRole", 2),
        ("ClusterRoleBinding", 2),
        ("Role", 1),
        ("RoleBinding", 1),
        ("Deployment", 1),
        ("DaemonSet", 1),
        ("Service", 1),
        ("PodDisruptionBudget", 1),
        ("Pod", 1),
    ]
    .into_iter()
    .map(|(k, n)| (k.to_string(), n))
    .collect();
    assert_eq!(
        kinds(&r.default),
        expected,
        "helm's default API set lacks VAP: no policy"
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
    let yaml: serde_yaml::Value = serde_yaml::from_str(&text).expect("valid YAML");
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
    for absent in [
        "Service",
        "PodDisruptionBudget",
        "Pod",
        "ValidatingAdmissionPolicy",
    ] {
        assert!(
            !kinds.contains_key(absent),
            "{absent} rendered although switched off"
        );
    }
    let deploy = find(docs, "Deployment", "rdo-all-controller");
    let spec = &deploy["spec"]["template"]["spec"];
    assert_eq!(deploy["spec"]["replicas"], 3);
    assert!(spec.get("affinity").is_none(), "spreadAcrossNodes=false");
    let c = &spec["containers"][0];
    assert_eq!(c["image"], "registry.example/rdo:1.2.3");
    assert_eq!(c["imagePullPolicy"], "Always");
    assert_eq!(
        c["args"],
        json!([
            "controller",
            "--log-format=text",
            "--metrics-addr=0.0.0.0:9090",
            "--lease-name=rdo-leader"
        ])
    );
    assert_eq!(spec["imagePullSecrets"], json!([{"name": "regcred"}]));
    assert_eq!(spec["nodeSelector"], json!({"kubernetes.io/os": "linux"}));
    assert_eq!(c["resources"]["limits"]["memory"], "512Mi");

    let ds = find(docs, "DaemonSet", "rdo-all-agent");
    let spec = &ds["spec"]["template"]["spec"];
    assert_eq!(spec["priorityClassName"], "system-node-critical");
    assert_eq!(spec["tolerations"][0]["key"], "dedicated");
    let env = env_map(&spec["containers"][0]);
    assert_eq!(env["OVS_BRIDGE"], "br-tun");
    assert_eq!(env["RUST_LOG"], "info,remote_device_operator=debug");
    assert_eq!(env["OVS_RUNDIR"], "/run/openvswitch");
    assert_eq!(env["OVSDB_ENDPOINT"], "unix:/run/openvswitch/db.sock");
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
        env["POD_NAMESPACE"],
        json!({"fieldRef": {"fieldPath": "metadata.namespace"}})
    );
    assert_eq!(
        env["POD_NAME"],
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
        env["NODE_NAME"],
        json!({"fieldRef": {"fieldPath": "spec.nodeName"}})
    );
    assert_eq!(env["OVSDB_ENDPOINT"], "unix:/var/run/openvswitch/db.sock");
    assert_eq!(env["OVS_RUNDIR"], "/var/run/openvswitch");
    assert_eq!(env["OVS_BRIDGE"], "br-int");

    // Both metrics endpoints on the contract's port; the Service and helm test use it.
    for c in [&deploy["spec"]["template"]["spec"]["containers"][0], c] {
        assert!(
            c["args"]
                .as_array()
                .unwrap()
                .contains(&json!("--metrics-addr=0.0.0.0:8080"))
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
        // `null` deletes a default: resources without limits.
        (&["--set", "agent.resources.limits=null"], "limits"),
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

#[test]
fn notes_tell_how_to_apply_the_example_and_watch_tunnelports() {
    let notes = run_helm(&["install", RELEASE, ".", "-n", NAMESPACE, "--dry-run=client"])
        .expect("helm install --dry-run=client");
    let notes = &notes[notes.find("NOTES:").expect("NOTES printed")..];
    for needle in [
        "kubectl apply -f examples/00-namespaces.yaml -f examples/remote-device.yaml",
        "kubectl get tunnelports",
        "kubectl describe tp",
        "helm test rdo -n rdo-system",
        // helm's client-side dry run has no VAP in its API set: the warning must show.
        "NOT limited to their",
    ] {
        assert!(notes.contains(needle), "NOTES lack {needle:?}:\n{notes}");
    }
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
        ".github/workflows/e2e.yml",
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
