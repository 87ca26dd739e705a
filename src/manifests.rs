//! Reading RemoteDevice, VtepGateway and Node manifests from files, as `kubectl apply -f`
//! would.
//!
//! Used by `plan` and by `standalone`. Every document that is not a usable RemoteDevice,
//! VtepGateway or Node is reported with its file, field and reason; the good ones are still
//! returned.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Node;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::api::{DeviceKey, RemoteDevice, VtepGateway, validate};

/// Where a document came from: file and 1-based position in a multi-document stream.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Source {
    /// The file.
    pub file: PathBuf,
    /// 1-based index of the YAML document in the file.
    pub document: usize,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (document {})", self.file.display(), self.document)
    }
}

/// A document that was not accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    /// Where it came from.
    pub source: Source,
    /// `namespace/name` of the object (`name` of a cluster-scoped one), when it could be
    /// read.
    pub object: Option<String>,
    /// The offending field, when one can be named.
    pub field: Option<String>,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.source)?;
        if let Some(object) = &self.object {
            write!(f, " {object}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": {field}")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// Everything read from a set of manifests.
#[derive(Clone, Debug, Default)]
pub struct Manifests {
    /// RemoteDevices that parsed and passed validation, with where they came from.
    pub devices: Vec<(Source, RemoteDevice)>,
    /// VtepGateways that parsed and passed validation, with where they came from (without
    /// a namespace: they are cluster-scoped).
    pub gateways: Vec<(Source, VtepGateway)>,
    /// Nodes.
    pub nodes: Vec<Node>,
    /// Documents that were rejected.
    pub rejected: Vec<Rejected>,
}

/// Files under `path` that hold manifests (`.yaml`, `.yml`, `.json`), sorted; `path` itself
/// when it is a file.
pub fn manifest_files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let path = entry.path();
            // Hidden entries are skipped: a ConfigMap volume keeps every file twice, the
            // real one under `..data`; symlinked directories are not followed (no loops).
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            if entry.file_type()?.is_dir() {
                stack.push(path);
            } else if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml" | "json")
            ) {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Reads every manifest under each path (files or directories).
pub fn read_paths(paths: &[PathBuf]) -> std::io::Result<Manifests> {
    let mut out = Manifests::default();
    for path in paths {
        let named =
            |e: std::io::Error| std::io::Error::new(e.kind(), format!("{}: {e}", path.display()));
        for file in manifest_files(path).map_err(named)? {
            let text = std::fs::read_to_string(&file).map_err(named)?;
            out.add_text(&file, &text);
        }
    }
    out.reject_duplicates();
    Ok(out)
}

impl Manifests {
    /// Parses one file's text (one or more YAML or JSON documents).
    pub fn add_text(&mut self, file: &Path, text: &str) {
        for (index, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
            let source = Source {
                file: file.to_path_buf(),
                document: index + 1,
            };
            match serde::Deserialize::deserialize(doc) {
                Ok(Value::Null) => {}
                Ok(value) => self.add_value(source, value),
                Err(e) => {
                    self.rejected.push(Rejected {
                        source,
                        object: None,
                        field: None,
                        reason: format!("not valid YAML: {e}"),
                    });
                    // After a syntax error the stream cannot be resynchronised (and the
                    // iterator would yield the same error for ever).
                    break;
                }
            }
        }
    }

    fn add_value(&mut self, source: Source, value: Value) {
        let api_version = value
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let kind = value
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let object = if kind == "VtepGateway" {
            cluster_object_name(&value)
        } else {
            object_name(&value)
        };
        let reject = |field: Option<String>, reason: String| Rejected {
            source: source.clone(),
            object: object.clone(),
            field,
            reason,
        };
        match (api_version.as_str(), kind.as_str()) {
            ("remotedevice.io/v1alpha1", "RemoteDevice") => match strict::<RemoteDevice>(value) {
                Ok(device) => {
                    let errors = validate::validate_device(&device);
                    if errors.is_empty() {
                        self.devices.push((source, device));
                    } else {
                        self.rejected.extend(errors.into_iter().map(|e| reject(Some(e.field), e.message)));
                    }
                }
                Err((field, reason)) => self.rejected.push(reject(field, reason)),
            },
            ("remotedevice.io/v1alpha1", "VtepGateway") => match strict::<VtepGateway>(value) {
                Ok(mut gateway) => {
                    // Cluster-scoped: the API server clears a namespace given in the object.
                    gateway.metadata.namespace = None;
                    let errors = validate::validate_gateway(&gateway);
                    if errors.is_empty() {
                        self.gateways.push((source, gateway));
                    } else {
                        self.rejected.extend(errors.into_iter().map(|e| reject(Some(e.field), e.message)));
                    }
                }
                Err((field, reason)) => self.rejected.push(reject(field, reason)),
            },
            ("v1", "Node") => match typed::<Node>(value) {
                Ok(node) => self.nodes.push(node),
                Err((field, reason)) => self.rejected.push(reject(field, reason)),
            },
            // Namespaces travel with the devices so that `kubectl apply -f` works; nothing to plan.
            ("v1", "Namespace") => {}
            (_, "List")
            | ("remotedevice.io/v1alpha1", "RemoteDeviceList" | "VtepGatewayList")
            | ("v1", "NodeList") => {
                match value.get("items").and_then(Value::as_array) {
                    Some(items) => items.iter().cloned().for_each(|item| self.add_value(source.clone(), item)),
                    None => self.rejected.push(reject(Some("items".into()), "a List needs an items array".into())),
                }
            }
            (_, "") => self.rejected.push(reject(Some("kind".into()), "missing kind; expected RemoteDevice, VtepGateway or Node".into())),
            ("remotedevice.io/v1alpha1", other) | ("v1", other) => self.rejected.push(reject(
                Some("kind".into()),
                format!("{other} is not a RemoteDevice, VtepGateway or Node"),
            )),
            (other_version, other_kind) => self.rejected.push(reject(
                Some("apiVersion".into()),
                format!("{other_kind} of {other_version:?} is not a RemoteDevice or VtepGateway (remotedevice.io/v1alpha1) or Node (v1)"),
            )),
        }
    }

    /// A RemoteDevice defined twice (same namespace and name), or a VtepGateway (same
    /// name): the later file loses, as a second `kubectl apply` would silently overwrite the
    /// first.
    fn reject_duplicates(&mut self) {
        let mut seen = BTreeSet::new();
        let mut kept = Vec::new();
        for (source, device) in std::mem::take(&mut self.devices) {
            let key = DeviceKey::of(&device);
            if seen.insert(key.clone()) {
                kept.push((source, device));
            } else {
                self.rejected.push(Rejected {
                    source,
                    object: Some(key.to_string()),
                    field: Some("metadata.name".into()),
                    reason: "defined more than once; the first definition is used".into(),
                });
            }
        }
        self.devices = kept;
        let mut seen = BTreeSet::new();
        let mut kept = Vec::new();
        for (source, gateway) in std::mem::take(&mut self.gateways) {
            let name = gateway.metadata.name.clone().unwrap_or_default();
            if seen.insert(name.clone()) {
                kept.push((source, gateway));
            } else {
                self.rejected.push(Rejected {
                    source,
                    object: Some(name),
                    field: Some("metadata.name".into()),
                    reason: "defined more than once; the first definition is used".into(),
                });
            }
        }
        self.gateways = kept;
    }
}

/// `namespace/name` of a raw object, when present.
fn object_name(value: &Value) -> Option<String> {
    let meta = value.get("metadata")?;
    let name = meta.get("name")?.as_str()?;
    Some(match meta.get("namespace").and_then(Value::as_str) {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_string(),
    })
}

/// `name` of a raw cluster-scoped object, when present (a namespace given is ignored).
fn cluster_object_name(value: &Value) -> Option<String> {
    Some(value.get("metadata")?.get("name")?.as_str()?.to_string())
}

/// Like [`typed`], and also refuses fields the type does not know, as `kubectl apply`
/// (strict field validation) does. Only manifests are read this strictly: objects from the
/// API server may carry fields of a newer version, and must not break a watch.
fn strict<T: DeserializeOwned>(value: Value) -> Result<T, (Option<String>, String)> {
    let mut unknown = Vec::new();
    let object: T = typed(value.clone())?;
    let _: Result<T, _> = serde_ignored::deserialize(value, |path| unknown.push(path.to_string()));
    // apiVersion and kind were checked by the caller; the typed object does not keep them.
    match unknown
        .into_iter()
        .find(|p| p != "apiVersion" && p != "kind")
    {
        None => Ok(object),
        Some(path) => {
            let name = path.rsplit('.').next().unwrap_or(&path).to_string();
            Err((Some(field_path(&path)), format!("unknown field `{name}`")))
        }
    }
}

/// A path of `serde_ignored` (`spec.attachment.?.vlans`, `spec.ips.0.x`: `?` for an
/// `Option`, a number for a list index) spelled as a field path (`spec.attachment.vlans`,
/// `spec.ips[0].x`).
fn field_path(path: &str) -> String {
    let mut out = String::new();
    for segment in path.split('.').filter(|s| *s != "?") {
        if !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{segment}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(segment);
        }
    }
    out
}

/// Deserializes a typed object, naming the field that failed.
fn typed<T: DeserializeOwned>(value: Value) -> Result<T, (Option<String>, String)> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let reason = e.into_inner().to_string();
        // serde reports a missing field at its parent; name the field itself.
        let missing = reason
            .strip_prefix("missing field `")
            .and_then(|r| r.split('`').next());
        let field = match (path.as_str(), missing) {
            (".", Some(name)) => Some(name.to_string()),
            (".", None) => None,
            (parent, Some(name)) => Some(format!("{parent}.{name}")),
            (parent, None) => Some(parent.to_string()),
        };
        (field, reason)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_entries_and_symlinked_directories_are_skipped() {
        let dir = std::env::temp_dir().join(format!("rdo-manifests-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("..data")).unwrap();
        std::fs::write(dir.join("..data/a.yaml"), "").unwrap();
        std::os::unix::fs::symlink("..data/a.yaml", dir.join("a.yaml")).unwrap();
        std::os::unix::fs::symlink(".", dir.join("loop")).unwrap();
        let files = manifest_files(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(files.unwrap(), vec![dir.join("a.yaml")]);
    }

    const GATEWAYS: &str = r#"
apiVersion: remotedevice.io/v1alpha1
kind: VtepGateway
metadata:
  name: tor-1
  namespace: ignored
spec:
  endpoint: ssl:tor1.example.com:6640
  tlsSecretName: tor1-client-tls
  tunnelIPs: [192.0.2.10]
---
apiVersion: remotedevice.io/v1alpha1
kind: VtepGatewayList
items:
- apiVersion: remotedevice.io/v1alpha1
  kind: VtepGateway
  metadata: {name: tor-2}
  spec: {endpoint: "tcp:[2001:db8::2]:6640", tunnelIPs: [192.0.2.11], physicalSwitch: TOR-2}
- apiVersion: remotedevice.io/v1alpha1
  kind: VtepGateway
  metadata: {name: tor-3}
  spec: {endpoint: "tcp:192.0.2.12:6640", tunnelIPs: [192.0.2.12, 192.0.2.12]}
---
apiVersion: remotedevice.io/v1alpha1
kind: VtepGateway
metadata: {name: tor-4}
spec: {endpoint: "tcp:192.0.2.13:6640", tunnelIPs: [192.0.2.13], vlan: 5}
---
apiVersion: remotedevice.io/v1alpha1
kind: VtepGateway
metadata: {name: tor-1}
spec: {endpoint: "tcp:192.0.2.14:6640", tunnelIPs: [192.0.2.14]}
"#;

    #[test]
    fn gateways_are_read_validated_and_deduplicated() {
        let dir = std::env::temp_dir().join(format!("rdo-gateways-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("gateways.yaml"), GATEWAYS).unwrap();
        let read = read_paths(std::slice::from_ref(&dir));
        std::fs::remove_dir_all(&dir).unwrap();
        let m = read.unwrap();
        let names: Vec<String> = m
            .gateways
            .iter()
            .map(|(_, g)| g.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["tor-1", "tor-2"]);
        let (source, tor1) = &m.gateways[0];
        assert_eq!(source.document, 1);
        assert_eq!(tor1.metadata.namespace, None, "cluster-scoped");
        assert_eq!(
            tor1.spec.tls_secret_name.as_deref(),
            Some("tor1-client-tls")
        );
        assert_eq!(m.gateways[1].1.switch_name(), "TOR-2");
        let rejected: Vec<(Option<&str>, Option<&str>, usize)> = m
            .rejected
            .iter()
            .map(|r| (r.object.as_deref(), r.field.as_deref(), r.source.document))
            .collect();
        assert_eq!(
            rejected,
            [
                (Some("tor-3"), Some("spec.tunnelIPs[1]"), 2),
                (Some("tor-4"), Some("spec.vlan"), 3),
                (Some("tor-1"), Some("metadata.name"), 4),
            ],
            "{:#?}",
            m.rejected
        );
        assert!(
            m.rejected[0].reason.contains("more than once"),
            "{}",
            m.rejected[0]
        );
        assert!(
            m.rejected[1].reason.contains("unknown field"),
            "{}",
            m.rejected[1]
        );
        assert!(m.devices.is_empty());
    }

    #[test]
    fn unknown_fields_are_named_by_their_field_path() {
        assert_eq!(
            field_path("spec.attachment.?.vlans"),
            "spec.attachment.vlans"
        );
        assert_eq!(
            field_path("spec.nodeSelector.?.matchExpressions.?.0.extra"),
            "spec.nodeSelector.matchExpressions[0].extra"
        );
        assert_eq!(field_path("spec.vtep"), "spec.vtep");
    }

    #[test]
    fn broken_yaml_is_reported_once() {
        let mut m = Manifests::default();
        m.add_text(Path::new("x.yaml"), "a: [b: {\n---\nc: d\n");
        assert_eq!(m.rejected.len(), 1);
        assert!(
            m.rejected[0].reason.starts_with("not valid YAML"),
            "{:?}",
            m.rejected
        );
    }
}
