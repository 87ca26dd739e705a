//! Bad input is refused twice: at admission (the generated CRD's OpenAPI schema and CEL
//! rules, evaluated here without a server) and by the Rust validation the controller and
//! `plan` run. Good input passes both, so neither side can pass by refusing everything.
//!
//! What stands in for the kube-apiserver here: YAML decoding, routing by apiVersion/kind,
//! object-name validation, defaulting, the structural schema (with `fieldValidation=Strict`,
//! kubectl's default, emulated by refusing unknown fields) and the CEL rules (kube-cel).

use std::path::{Path, PathBuf};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use kube::core::cel::{Validator, WarningKind, apply_defaults, compile_schema, estimate_rule_cost};
use remote_device_operator::api::{RemoteDevice, TunnelPort, VtepGateway};
use remote_device_operator::manifests::Manifests;
use serde_json::{Value, json};

fn schema_of(crd: &CustomResourceDefinition) -> Value {
    serde_json::to_value(
        &crd.spec.versions[0]
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema,
    )
    .unwrap()
}

/// The structural schema as a JSON Schema validator sees it, plus what the apiserver adds:
/// unknown fields are refused (strict field validation) below `spec`, and
/// `x-kubernetes-list-type: set` means unique items.
fn strict(schema: &Value, inside_spec: bool) -> Value {
    let mut out = schema.clone();
    if let Value::Object(map) = &mut out {
        if let Some(Value::Object(props)) = map.get_mut("properties") {
            for (name, sub) in props.iter_mut() {
                *sub = strict(sub, inside_spec || name == "spec");
            }
        }
        if let Some(items) = map.get_mut("items") {
            *items = strict(items, inside_spec);
        }
        if inside_spec
            && map.contains_key("properties")
            && !map.contains_key("additionalProperties")
        {
            map.insert("additionalProperties".into(), Value::Bool(false));
        }
        if map.get("x-kubernetes-list-type") == Some(&json!("set")) {
            map.insert("uniqueItems".into(), Value::Bool(true));
        }
    }
    out
}

/// Admission of one document as a kube-apiserver with the generated CRDs would do it.
fn admit(text: &str, crd: &CustomResourceDefinition) -> Result<(), Vec<String>> {
    let value: Value =
        serde_yaml_ng::from_str(text).map_err(|e| vec![format!("cannot decode: {e}")])?;
    let api_version = format!("{}/{}", crd.spec.group, crd.spec.versions[0].name);
    if value.get("apiVersion") != Some(&json!(api_version))
        || value.get("kind") != Some(&json!(crd.spec.names.kind))
    {
        return Err(vec![format!(
            "no matches for {:?} {:?}",
            value.get("apiVersion"),
            value.get("kind")
        )]);
    }
    let name_rule = json!({"type": "string", "maxLength": 253,
        "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"});
    let name = value
        .pointer("/metadata/name")
        .cloned()
        .unwrap_or(Value::Null);
    if !jsonschema::is_valid(&name_rule, &name) {
        return Err(vec![format!("metadata.name: invalid name {name}")]);
    }
    // ObjectMeta: label keys and values, annotation keys (checked in lower case by the
    // apiserver, hence A-Z in the prefix here; the 253-character prefix bound is not
    // emulated).
    let key = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$";
    let any_case_key = r"^([A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$";
    let meta_rule = json!({"type": "object", "properties": {
        "labels": {"type": "object", "propertyNames": {"pattern": key},
            "additionalProperties": {"type": "string", "pattern": r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$"}},
        "annotations": {"type": "object", "propertyNames": {"pattern": any_case_key}}
    }});
    let meta = value.get("metadata").cloned().unwrap_or(Value::Null);
    if !jsonschema::is_valid(&meta_rule, &meta) {
        return Err(vec![format!(
            "metadata: invalid labels or annotations in {meta}"
        )]);
    }
    let schema = schema_of(crd);
    let object = apply_defaults(&schema, &value);
    let validator =
        jsonschema::validator_for(&strict(&schema, false)).expect("the CRD schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(&object)
        .map(|e| format!("{}: {}", e.instance_path(), e))
        .collect();
    if !errors.is_empty() {
        return Err(errors);
    }
    Validator::new()
        .validate(&schema, &object, None)
        .map_err(|errors| errors.iter().map(ToString::to_string).collect())
}

/// The CRD a document would be created as: the VtepGateway one for a VtepGateway, else the
/// RemoteDevice one (which refuses any other kind).
fn crd_for(text: &str) -> CustomResourceDefinition {
    let value: Value = serde_yaml_ng::from_str(text).unwrap_or(Value::Null);
    if value.get("kind") == Some(&json!("VtepGateway")) {
        VtepGateway::crd()
    } else {
        RemoteDevice::crd()
    }
}

fn bad_manifests() -> Vec<PathBuf> {
    manifests_in("tests/manifests/bad")
}

fn manifests_in(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

#[test]
fn at_least_forty_adversarial_manifests_are_refused_at_admission() {
    let files = bad_manifests();
    assert!(
        files.len() >= 40,
        "only {} adversarial manifests",
        files.len()
    );
    let mut admitted = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        assert!(
            text.starts_with("# Rejected: "),
            "{}: say why it is refused in a first line `# Rejected: ...`",
            file.display()
        );
        match admit(&text, &crd_for(&text)) {
            Ok(()) => admitted.push(file.display().to_string()),
            Err(errors) => assert!(
                errors.iter().all(|e| !e.trim().is_empty()),
                "{}: {errors:?}",
                file.display()
            ),
        }
    }
    assert!(
        admitted.is_empty(),
        "admitted by schema + CEL: {admitted:#?}"
    );
}

#[test]
fn adversarial_manifests_are_refused_by_the_rust_validation_with_field_and_reason() {
    for file in bad_manifests() {
        let mut manifests = Manifests::default();
        manifests.add_text(&file, &std::fs::read_to_string(&file).unwrap());
        assert!(
            manifests.devices.is_empty() && manifests.gateways.is_empty(),
            "{} accepted",
            file.display()
        );
        assert!(
            !manifests.rejected.is_empty(),
            "{} neither accepted nor rejected",
            file.display()
        );
        for r in &manifests.rejected {
            assert!(
                !r.reason.trim().is_empty(),
                "{}: empty reason",
                file.display()
            );
            // Everything except undecodable YAML names the field at fault.
            if !r.reason.starts_with("not valid YAML") {
                assert!(r.field.is_some(), "{}: no field in {r}", file.display());
            }
        }
    }
}

#[test]
fn rust_messages_name_the_field_and_say_what_is_wrong() {
    let cases = [
        ("vtep-ipv4-mapped.yaml", "spec.vtepIP", "IPv4-mapped"),
        ("vtep-loopback.yaml", "spec.vtepIP", "loopback"),
        ("vni-2-pow-24.yaml", "spec.vni", "out of range"),
        ("mac-multicast.yaml", "spec.macAddress", "multicast"),
        ("gre-with-dst-port.yaml", "spec.dstPort", "gre"),
        ("ips-seventeen.yaml", "spec.ips", "at most 16"),
        ("unknown-field.yaml", "spec.vtep", "unknown field `vtep`"),
        ("spec-missing.yaml", "spec", "missing field `spec`"),
        ("mac-missing.yaml", "spec.macAddress", "missing field"),
        ("vni-string.yaml", "spec.vni", "invalid type"),
        ("not-a-remote-device.yaml", "kind", "ConfigMap"),
        (
            "selector-bad-operator.yaml",
            "spec.nodeSelector.matchExpressions[0].operator",
            "Equals",
        ),
    ];
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/manifests/bad");
    for (file, field, words) in cases {
        let mut manifests = Manifests::default();
        manifests.add_text(
            &dir.join(file),
            &std::fs::read_to_string(dir.join(file)).unwrap(),
        );
        let r = &manifests.rejected[0];
        assert_eq!(r.field.as_deref(), Some(field), "{file}: {r}");
        assert!(r.reason.contains(words), "{file}: {r}");
    }
}

#[test]
fn cel_messages_say_what_is_wrong() {
    let crd = RemoteDevice::crd();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/manifests/bad");
    for (file, words) in [
        ("vtep-ipv4-mapped.yaml", "IPv4-mapped"),
        ("vtep-loopback.yaml", "unicast"),
        ("gre-with-dst-port.yaml", "gre"),
        ("mac-zero.yaml", "all-zero"),
        ("selector-in-without-values.yaml", "need values"),
    ] {
        let errors = admit(&std::fs::read_to_string(dir.join(file)).unwrap(), &crd).unwrap_err();
        assert!(
            errors.iter().any(|e| e.contains(words)),
            "{file}: {errors:?}"
        );
    }
}

#[test]
fn examples_pass_admission_and_rust_validation() {
    let crd = RemoteDevice::crd();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut devices = 0;
    for file in std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()) {
        if file.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let value: Value = serde::Deserialize::deserialize(doc).unwrap();
            if value.get("kind") == Some(&json!("RemoteDevice")) {
                devices += 1;
                admit(&serde_yaml_ng::to_string(&value).unwrap(), &crd)
                    .unwrap_or_else(|e| panic!("{}: {e:?}", file.display()));
            }
        }
        let mut manifests = Manifests::default();
        manifests.add_text(&file, &text);
        assert!(manifests.rejected.is_empty(), "{:?}", manifests.rejected);
    }
    assert!(devices >= 4, "examples hold {devices} RemoteDevices");
}

#[test]
fn planned_tunnel_ports_pass_admission() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let manifests = remote_device_operator::manifests::read_paths(&[examples]).unwrap();
    let devices: Vec<RemoteDevice> = manifests.devices.into_iter().map(|(_, d)| d).collect();
    let plan = remote_device_operator::planner::plan_tunnels(&devices, &manifests.nodes);
    assert!(!plan.tunnel_ports.is_empty());
    let crd = TunnelPort::crd();
    for tp in &plan.tunnel_ports {
        admit(&serde_yaml_ng::to_string(tp).unwrap(), &crd)
            .unwrap_or_else(|e| panic!("{:?}: {e:?}", tp.metadata.name));
    }
}

/// Every CEL rule, with the bounds of the schema it sits in, fits the apiserver's cost
/// budget (an unbounded list or string would make a real apiserver refuse the CRD).
#[test]
fn every_cel_rule_fits_the_cost_budget() {
    fn walk(schema: &Value, rules: &mut usize, path: &str) {
        if let Some(list) = schema
            .get("x-kubernetes-validations")
            .and_then(Value::as_array)
        {
            let compiled = compile_schema(schema);
            for rule in list {
                let rule = rule["rule"].as_str().unwrap();
                *rules += 1;
                let warnings = estimate_rule_cost(rule, &compiled);
                assert!(
                    !warnings.iter().any(|w| w.kind == WarningKind::CostExceeded),
                    "{path}: {rule}: {warnings:?}"
                );
            }
        }
        for (name, sub) in schema
            .get("properties")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            walk(sub, rules, &format!("{path}.{name}"));
        }
        for key in ["items", "additionalProperties"] {
            if let Some(sub) = schema.get(key).filter(|s| s.is_object()) {
                walk(sub, rules, &format!("{path}[]"));
            }
        }
    }
    let mut rules = 0;
    walk(&schema_of(&RemoteDevice::crd()), &mut rules, "RemoteDevice");
    walk(&schema_of(&TunnelPort::crd()), &mut rules, "TunnelPort");
    walk(&schema_of(&VtepGateway::crd()), &mut rules, "VtepGateway");
    assert!(rules >= 16, "only {rules} CEL rules found");
}

/// Every adversarial VtepGateway and attachment manifest, with the field the Rust
/// validation names, words of its reason, and words of the admission error (a CEL message,
/// or the schema keyword that refuses it).
const GATEWAY_CASES: &[(&str, &str, &str, &str)] = &[
    (
        "gateway-endpoint-missing.yaml",
        "spec.endpoint",
        "missing field `endpoint`",
        "\"endpoint\" is a required property",
    ),
    (
        "gateway-endpoint-unix.yaml",
        "spec.endpoint",
        "tcp: or ssl:",
        "does not match",
    ),
    (
        "gateway-endpoint-no-port.yaml",
        "spec.endpoint",
        "has no port",
        "does not match",
    ),
    (
        "gateway-endpoint-port-zero.yaml",
        "spec.endpoint",
        "out of range 1..65535",
        "the port must be 1-65535",
    ),
    (
        "gateway-endpoint-port-too-big.yaml",
        "spec.endpoint",
        "out of range 1..65535",
        "the port must be 1-65535",
    ),
    (
        "gateway-endpoint-ipv6-unbracketed.yaml",
        "spec.endpoint",
        "IPv6 address in brackets",
        "does not match",
    ),
    (
        "gateway-endpoint-ipv4-in-brackets.yaml",
        "spec.endpoint",
        "without brackets",
        "must be an IPv6 address",
    ),
    (
        "gateway-endpoint-ipv6-invalid.yaml",
        "spec.endpoint",
        "not an IPv4 or IPv6 address",
        "must be an IPv6 address",
    ),
    (
        "gateway-endpoint-leading-zero.yaml",
        "spec.endpoint",
        "without leading zeros",
        "must be an IPv4 address",
    ),
    (
        "gateway-endpoint-host-underscore.yaml",
        "spec.endpoint",
        "not a DNS name",
        "does not match",
    ),
    (
        "gateway-endpoint-too-long.yaml",
        "spec.endpoint",
        "at most 270",
        "longer than 270",
    ),
    (
        "gateway-ssl-without-secret.yaml",
        "spec.tlsSecretName",
        "needs tlsSecretName",
        "an ssl: endpoint needs tlsSecretName",
    ),
    (
        "gateway-tcp-with-secret.yaml",
        "spec.tlsSecretName",
        "takes none",
        "a tcp: endpoint takes none",
    ),
    (
        "gateway-secret-name-invalid.yaml",
        "spec.tlsSecretName",
        "not a valid Secret name",
        "does not match",
    ),
    (
        "gateway-tunnel-ips-missing.yaml",
        "spec.tunnelIPs",
        "missing field `tunnelIPs`",
        "\"tunnelIPs\" is a required property",
    ),
    (
        "gateway-tunnel-ips-empty.yaml",
        "spec.tunnelIPs",
        "at least one",
        "less than 1 item",
    ),
    (
        "gateway-tunnel-ips-nine.yaml",
        "spec.tunnelIPs",
        "at most 8",
        "more than 8 items",
    ),
    (
        "gateway-tunnel-ips-string.yaml",
        "spec.tunnelIPs",
        "invalid type",
        "is not of type \"array\"",
    ),
    (
        "gateway-tunnel-ip-duplicate.yaml",
        "spec.tunnelIPs[1]",
        "more than once",
        "non-unique",
    ),
    (
        "gateway-tunnel-ip-ipv6.yaml",
        "spec.tunnelIPs[0]",
        "IPv6",
        "must be an IPv4 address",
    ),
    (
        "gateway-tunnel-ip-leading-zero.yaml",
        "spec.tunnelIPs[0]",
        "not an IPv4 or IPv6 address",
        "without leading zeros",
    ),
    (
        "gateway-tunnel-ip-loopback.yaml",
        "spec.tunnelIPs[0]",
        "loopback",
        "must be a unicast address",
    ),
    (
        "gateway-tunnel-ip-link-local.yaml",
        "spec.tunnelIPs[0]",
        "link-local",
        "must be a unicast address",
    ),
    (
        "gateway-tunnel-ip-multicast.yaml",
        "spec.tunnelIPs[0]",
        "multicast",
        "must be a unicast address",
    ),
    (
        "gateway-tunnel-ip-host-name.yaml",
        "spec.tunnelIPs[0]",
        "not an IPv4 or IPv6 address",
        "must be an IPv4 address",
    ),
    (
        "gateway-physical-switch-space.yaml",
        "spec.physicalSwitch",
        "without spaces",
        "does not match",
    ),
    (
        "gateway-physical-switch-empty.yaml",
        "spec.physicalSwitch",
        "must not be empty",
        "shorter than 1 character",
    ),
    (
        "gateway-physical-switch-too-long.yaml",
        "spec.physicalSwitch",
        "at most 253",
        "longer than 253",
    ),
    (
        "gateway-name-invalid.yaml",
        "metadata.name",
        "not a valid name",
        "invalid name",
    ),
    (
        "gateway-unknown-field.yaml",
        "spec.vtepIP",
        "unknown field `vtepIP`",
        "'vtepIP' was unexpected",
    ),
    (
        "gateway-wrong-version.yaml",
        "apiVersion",
        "is not a RemoteDevice or VtepGateway",
        "no matches",
    ),
    (
        "attachment-geneve.yaml",
        "spec.attachment",
        "needs tunnelType vxlan",
        "needs tunnelType vxlan",
    ),
    (
        "attachment-gre.yaml",
        "spec.attachment",
        "needs tunnelType vxlan",
        "needs tunnelType vxlan",
    ),
    (
        "attachment-ipv6-vtep.yaml",
        "spec.attachment",
        "needs an IPv4 vtepIP",
        "needs an IPv4 vtepIP",
    ),
    (
        "attachment-vlan-4096.yaml",
        "spec.attachment.vlan",
        "out of range 0..4095",
        "greater than the maximum of 4095",
    ),
    (
        "attachment-vlan-negative.yaml",
        "spec.attachment.vlan",
        "out of range",
        "less than the minimum of 0",
    ),
    (
        "attachment-port-missing.yaml",
        "spec.attachment.port",
        "missing field `port`",
        "\"port\" is a required property",
    ),
    (
        "attachment-port-empty.yaml",
        "spec.attachment.port",
        "must not be empty",
        "shorter than 1 character",
    ),
    (
        "attachment-port-space.yaml",
        "spec.attachment.port",
        "without spaces",
        "does not match",
    ),
    (
        "attachment-port-too-long.yaml",
        "spec.attachment.port",
        "at most 253",
        "longer than 253",
    ),
    (
        "attachment-unknown-field.yaml",
        "spec.attachment.vlans",
        "unknown field `vlans`",
        "'vlans' was unexpected",
    ),
    (
        "attachment-not-an-object.yaml",
        "spec.attachment",
        "invalid type",
        "is not of type \"object\"",
    ),
];

/// Each VtepGateway and attachment manifest is refused on both sides, for its one reason:
/// Rust names the field and says what is wrong, and admission says it too.
#[test]
fn gateway_and_attachment_manifests_are_refused_for_their_reason_on_both_sides() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/manifests/bad");
    let listed: Vec<&str> = GATEWAY_CASES.iter().map(|c| c.0).collect();
    for file in bad_manifests() {
        let name = file.file_name().unwrap().to_str().unwrap();
        if name.starts_with("gateway-") || name.starts_with("attachment-") {
            assert!(listed.contains(&name), "{name} is not in GATEWAY_CASES");
        }
    }
    let mut failures = Vec::new();
    for (file, field, rust_words, admission_words) in GATEWAY_CASES {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        let mut manifests = Manifests::default();
        manifests.add_text(&dir.join(file), &text);
        let found: Vec<String> = manifests.rejected.iter().map(ToString::to_string).collect();
        let named = manifests.rejected.len() == 1
            && manifests.rejected[0].field.as_deref() == Some(*field)
            && manifests.rejected[0].reason.contains(rust_words);
        if !named {
            failures.push(format!(
                "{file}: Rust: expected {field}: …{rust_words}…, got {found:?}"
            ));
        }
        match admit(&text, &crd_for(&text)) {
            Ok(()) => failures.push(format!("{file}: admitted")),
            Err(errors) if !errors.iter().any(|e| e.contains(admission_words)) => failures.push(
                format!("{file}: admission: expected …{admission_words}…, got {errors:?}"),
            ),
            Err(_) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The good VtepGateways and attached RemoteDevices pass admission and the Rust validation.
#[test]
fn good_gateways_and_attachments_pass_admission_and_rust_validation() {
    let mut gateways = 0;
    let mut devices = 0;
    for file in manifests_in("tests/manifests/good") {
        let text = std::fs::read_to_string(&file).unwrap();
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let value: Value = serde::Deserialize::deserialize(doc).unwrap();
            let doc = serde_yaml_ng::to_string(&value).unwrap();
            admit(&doc, &crd_for(&doc)).unwrap_or_else(|e| panic!("{}: {e:?}", file.display()));
        }
        let mut manifests = Manifests::default();
        manifests.add_text(&file, &text);
        assert!(manifests.rejected.is_empty(), "{:?}", manifests.rejected);
        gateways += manifests.gateways.len();
        devices += manifests
            .devices
            .iter()
            .filter(|(_, d)| d.spec.attachment.is_some())
            .count();
    }
    assert!(
        gateways >= 3 && devices >= 2,
        "{gateways} gateways, {devices} attached devices"
    );
}

/// Every adversarial BFD manifest, with the field the Rust validation names, words of its
/// reason, and words of the admission error.
const BFD_CASES: &[(&str, &str, &str, &str)] = &[
    (
        "bfd-min-rx-too-small.yaml",
        "spec.bfd.minRxMs",
        "out of range 100..60000",
        "less than the minimum of 100",
    ),
    (
        "bfd-min-rx-zero.yaml",
        "spec.bfd.minRxMs",
        "out of range 100..60000",
        "less than the minimum of 100",
    ),
    (
        "bfd-min-rx-negative.yaml",
        "spec.bfd.minRxMs",
        "out of range 100..60000",
        "less than the minimum of 100",
    ),
    (
        "bfd-min-tx-too-big.yaml",
        "spec.bfd.minTxMs",
        "out of range 100..60000",
        "greater than the maximum of 60000",
    ),
    (
        "bfd-min-tx-fraction.yaml",
        "spec.bfd.minTxMs",
        "not an integer",
        "is not of type \"integer\"",
    ),
    (
        "bfd-min-tx-string.yaml",
        "spec.bfd.minTxMs",
        "invalid type",
        "is not of type \"integer\"",
    ),
    (
        "bfd-enabled-string.yaml",
        "spec.bfd.enabled",
        "invalid type",
        "is not of type \"boolean\"",
    ),
    (
        "bfd-unknown-field.yaml",
        "spec.bfd.enable",
        "unknown field `enable`",
        "'enable' was unexpected",
    ),
    (
        "bfd-not-an-object.yaml",
        "spec.bfd",
        "invalid type",
        "is not of type \"object\"",
    ),
];

/// Each BFD manifest is refused on both sides, for its one reason.
#[test]
fn bfd_manifests_are_refused_for_their_reason_on_both_sides() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/manifests/bad");
    let listed: Vec<&str> = BFD_CASES.iter().map(|c| c.0).collect();
    for file in bad_manifests() {
        let name = file.file_name().unwrap().to_str().unwrap();
        if name.starts_with("bfd-") {
            assert!(listed.contains(&name), "{name} is not in BFD_CASES");
        }
    }
    let crd = RemoteDevice::crd();
    let mut failures = Vec::new();
    for (file, field, rust_words, admission_words) in BFD_CASES {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        let mut manifests = Manifests::default();
        manifests.add_text(&dir.join(file), &text);
        let found: Vec<String> = manifests.rejected.iter().map(ToString::to_string).collect();
        let named = manifests.rejected.len() == 1
            && manifests.rejected[0].field.as_deref() == Some(*field)
            && manifests.rejected[0].reason.contains(rust_words);
        if !named {
            failures.push(format!(
                "{file}: Rust: expected {field}: …{rust_words}…, got {found:?}"
            ));
        }
        match admit(&text, &crd) {
            Ok(()) => failures.push(format!("{file}: admitted")),
            Err(errors) if !errors.iter().any(|e| e.contains(admission_words)) => failures.push(
                format!("{file}: admission: expected …{admission_words}…, got {errors:?}"),
            ),
            Err(_) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// BFD at its bounds passes both sides, and the TunnelPorts planned from it (with BFD on,
/// the fastest timers) pass admission.
#[test]
fn bfd_at_its_bounds_passes_admission_and_rust_validation() {
    let text = r#"
apiVersion: remotedevice.io/v1alpha1
kind: RemoteDevice
metadata: {name: fast, namespace: tenant-a}
spec:
  vtepIP: 192.0.2.50
  vni: 5001
  macAddress: '52:54:00:00:00:01'
  bfd: {enabled: true, minRxMs: 100, minTxMs: 60000.0}
---
apiVersion: remotedevice.io/v1alpha1
kind: RemoteDevice
metadata: {name: attached, namespace: tenant-a}
spec:
  vtepIP: 192.0.2.50
  vni: 5002
  macAddress: '52:54:00:00:00:02'
  attachment: {port: eth1}
  bfd: {minRxMs: 60000, minTxMs: 100}
---
apiVersion: remotedevice.io/v1alpha1
kind: RemoteDevice
metadata: {name: off, namespace: tenant-a}
spec:
  vtepIP: 192.0.2.60
  vni: 5003
  macAddress: '52:54:00:00:00:03'
  bfd: {enabled: false}
---
apiVersion: v1
kind: Node
metadata: {name: n1, annotations: {remotedevice.io/tunnel-ip: 198.51.100.1}}
"#;
    let crd = RemoteDevice::crd();
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        let value: Value = serde::Deserialize::deserialize(doc).unwrap();
        if value.get("kind") == Some(&json!("RemoteDevice")) {
            admit(&serde_yaml_ng::to_string(&value).unwrap(), &crd).unwrap();
        }
    }
    let mut manifests = Manifests::default();
    manifests.add_text(Path::new("bfd.yaml"), text);
    assert!(manifests.rejected.is_empty(), "{:?}", manifests.rejected);
    let devices: Vec<RemoteDevice> = manifests.devices.into_iter().map(|(_, d)| d).collect();
    let plan = remote_device_operator::planner::plan_tunnels(&devices, &manifests.nodes);
    let bfd: Vec<Option<(u32, u32)>> = plan
        .tunnel_ports
        .iter()
        .map(|tp| tp.spec.bfd.map(|b| (b.min_rx_ms, b.min_tx_ms)))
        .collect();
    assert_eq!(bfd, vec![Some((100, 100)), None]);
    let crd = TunnelPort::crd();
    for tp in &plan.tunnel_ports {
        admit(&serde_yaml_ng::to_string(tp).unwrap(), &crd)
            .unwrap_or_else(|e| panic!("{:?}: {e:?}", tp.metadata.name));
    }
}
