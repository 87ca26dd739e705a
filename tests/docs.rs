//! The API reference in docs/api.md is generated from the CRDs (which are generated from
//! the types in src/api): its field tables must be exactly what the schemas say today.
//! After changing the types, regenerate with
//! `UPDATE_API_DOCS=1 cargo test --test docs`.

use std::path::PathBuf;

use serde_json::Value;

const BEGIN: &str = "<!-- generated:begin (UPDATE_API_DOCS=1 cargo test --test docs) -->";
const END: &str = "<!-- generated:end -->";

fn api_doc() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/api.md")
}

/// One documented field.
struct Field {
    path: String,
    kind: String,
    required: bool,
    rules: Vec<String>,
    description: String,
}

fn one_line(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

fn number(v: &Value) -> String {
    match v.as_f64() {
        Some(f) if f.fract() == 0.0 => format!("{}", f as i64),
        _ => v.to_string(),
    }
}

fn type_of(schema: &Value) -> String {
    match schema["type"].as_str() {
        Some("array") => format!("[]{}", type_of(&schema["items"])),
        Some("object") if schema["additionalProperties"].is_object() => {
            format!("map[string]{}", type_of(&schema["additionalProperties"]))
        }
        Some(t) => t.to_string(),
        None => "any".to_string(),
    }
}

fn rules_of(schema: &Value) -> Vec<String> {
    let mut rules = Vec::new();
    if let Some(values) = schema["enum"].as_array() {
        let names: Vec<String> = values
            .iter()
            .map(|v| format!("`{}`", v.as_str().unwrap_or_default()))
            .collect();
        rules.push(format!("one of {}", names.join(", ")));
    }
    if let Some(d) = schema.get("default") {
        rules.push(format!("default `{d}`"));
    }
    for (key, label) in [
        ("minimum", "≥"),
        ("maximum", "≤"),
        ("minLength", "length ≥"),
        ("maxLength", "length ≤"),
        ("minItems", "items ≥"),
        ("maxItems", "items ≤"),
        ("maxProperties", "keys ≤"),
    ] {
        if let Some(v) = schema.get(key) {
            rules.push(format!("{label} {}", number(v)));
        }
    }
    if let Some(p) = schema["pattern"].as_str() {
        rules.push(format!("pattern `{}`", p.replace('|', "\\|")));
    }
    if let Some(t) = schema["x-kubernetes-list-type"].as_str() {
        let keys = schema["x-kubernetes-list-map-keys"]
            .as_array()
            .map(|k| {
                let k: Vec<&str> = k.iter().filter_map(Value::as_str).collect();
                format!(" keyed by {}", k.join(", "))
            })
            .unwrap_or_default();
        rules.push(format!("list type {t}{keys}"));
    }
    for rule in schema["x-kubernetes-validations"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let field = rule["fieldPath"]
            .as_str()
            .map(|f| format!(" (on `{}`)", f.trim_start_matches('.')))
            .unwrap_or_default();
        rules.push(format!(
            "{}{field}",
            one_line(rule["message"].as_str().unwrap_or_default())
        ));
    }
    rules
}

fn walk(schema: &Value, path: &str, required: bool, out: &mut Vec<Field>) {
    let mut rules = rules_of(schema);
    // Rules on the items of a list of scalars belong to the list's row.
    if schema["type"] == "array" && schema["items"]["type"] != "object" {
        rules.extend(
            rules_of(&schema["items"])
                .into_iter()
                .map(|r| format!("each: {r}")),
        );
    }
    out.push(Field {
        path: path.to_string(),
        kind: type_of(schema),
        required,
        rules,
        description: one_line(schema["description"].as_str().unwrap_or_default()),
    });
    let object = if schema["type"] == "array" {
        &schema["items"]
    } else {
        schema
    };
    let prefix = if schema["type"] == "array" {
        format!("{path}[]")
    } else {
        path.to_string()
    };
    let required_names: Vec<&str> = object["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if let Some(props) = object["properties"].as_object() {
        for (name, child) in props {
            walk(
                child,
                &format!("{prefix}.{name}"),
                required_names.contains(&name.as_str()),
                out,
            );
        }
    }
}

/// Every field of every CRD, kind by kind, in schema order.
fn fields() -> Vec<(String, String, Vec<Field>)> {
    remote_device_operator::crd::all()
        .into_iter()
        .map(|(_, crd)| {
            let crd = serde_json::to_value(&crd).unwrap();
            let version = &crd["spec"]["versions"][0];
            let root = &version["schema"]["openAPIV3Schema"];
            let mut fields = Vec::new();
            for part in ["spec", "status"] {
                let required = root["required"]
                    .as_array()
                    .is_some_and(|r| r.iter().any(|n| n == part));
                walk(&root["properties"][part], part, required, &mut fields);
            }
            let kind = crd["spec"]["names"]["kind"].as_str().unwrap().to_string();
            let heading = format!(
                "{kind} ({}/{}, {}, short name `{}`)",
                crd["spec"]["group"].as_str().unwrap(),
                version["name"].as_str().unwrap(),
                if crd["spec"]["scope"] == "Namespaced" {
                    "namespaced"
                } else {
                    "cluster-scoped"
                },
                crd["spec"]["names"]["shortNames"][0].as_str().unwrap()
            );
            (kind, heading, fields)
        })
        .collect()
}

fn generate() -> String {
    let mut out = String::new();
    for (_, heading, fields) in fields() {
        out.push_str(&format!("\n### {heading}\n\n"));
        out.push_str("| Field | Type | Required | Validation | Description |\n");
        out.push_str("|---|---|---|---|---|\n");
        for f in fields {
            out.push_str(&format!(
                "| `{}` | {} | {} | {} | {} |\n",
                f.path,
                f.kind,
                if f.required { "yes" } else { "" },
                f.rules.join("; "),
                f.description
            ));
        }
    }
    out.push('\n');
    out
}

#[test]
fn api_reference_is_generated_from_the_current_types() {
    let path = api_doc();
    let doc = std::fs::read_to_string(&path).expect("docs/api.md");
    let start = doc.find(BEGIN).expect("generated:begin marker") + BEGIN.len();
    let end = doc.find(END).expect("generated:end marker");
    let generated = generate();
    if std::env::var_os("UPDATE_API_DOCS").is_some() {
        let updated = format!("{}{}{}", &doc[..start], generated, &doc[end..]);
        std::fs::write(&path, updated).expect("write docs/api.md");
        return;
    }
    assert!(
        doc[start..end] == generated,
        "docs/api.md is out of date with src/api: run `UPDATE_API_DOCS=1 cargo test --test docs`"
    );
}

#[test]
fn api_reference_names_every_property_path_of_every_kind() {
    let doc = std::fs::read_to_string(api_doc()).expect("docs/api.md");
    let mut count = 0;
    for (kind, _, fields) in fields() {
        assert!(
            doc.contains(&format!("### {kind} (")),
            "no section for {kind}"
        );
        for f in fields {
            assert!(
                doc.contains(&format!("| `{}` |", f.path)),
                "docs/api.md lacks {kind} {}",
                f.path
            );
            count += 1;
        }
    }
    // Every kind has a spec and a status with several fields each.
    assert!(count > 30, "only {count} fields found: the walk is broken");
}

#[test]
fn every_condition_reason_is_documented() {
    use remote_device_operator::api::conditions::{device_reason, tunnel_reason};
    let doc = std::fs::read_to_string(api_doc()).expect("docs/api.md");
    for reason in [
        device_reason::READY,
        device_reason::PENDING,
        device_reason::TUNNEL_FAILED,
        device_reason::INVALID_SPEC,
        device_reason::CONFLICT,
        device_reason::NO_MATCHING_NODES,
        tunnel_reason::READY,
        tunnel_reason::PENDING,
        tunnel_reason::OVS_ERROR,
        tunnel_reason::FOREIGN_PORT,
        tunnel_reason::OVS_UNAVAILABLE,
    ] {
        assert!(
            doc.contains(&format!("| `{reason}` |")),
            "docs/api.md does not explain reason {reason}"
        );
    }
}

/// The README and the docs hold no leftover placeholder, and every relative link in them
/// points at a file of the repository.
#[test]
fn docs_have_no_placeholders_and_no_dead_relative_links() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md")];
    for entry in std::fs::read_dir(root.join("docs")).unwrap() {
        files.push(entry.unwrap().path());
    }
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for word in ["PLACEHOLDER", "TODO", "FIXME", "XXX"] {
            assert!(!text.contains(word), "{} contains {word}", file.display());
        }
        // Markdown links: ](target) — only relative ones are checked.
        for part in text.split("](").skip(1) {
            let target = part.split(')').next().unwrap_or_default();
            let target = target.split('#').next().unwrap_or_default();
            // Skip URLs and what only looks like a link (a regex in a table).
            if target.is_empty() || target.contains([':', '{', '}', '[', ']', ' ', '\\', '^', '$'])
            {
                continue;
            }
            let path = file.parent().unwrap().join(target);
            assert!(
                path.exists(),
                "{} links to {target}, which does not exist",
                file.display()
            );
        }
    }
}
