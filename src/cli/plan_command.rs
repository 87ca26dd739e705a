//! `remote-device-operator plan`: what the controller would create, from manifests on disk.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use crate::api::DeviceKey;
use crate::api::validate::join;
use crate::manifests::{self, Manifests, Rejected, Source};
use crate::planner::{self, DeviceOutcome, TunnelPlan};

use super::table;

/// Output formats of `plan`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// A table like `kubectl get tunnelports`.
    Table,
    /// The TunnelPort objects, as YAML documents.
    Yaml,
}

/// Arguments of `plan`.
#[derive(Clone, Debug, clap::Args)]
pub struct PlanArgs {
    /// RemoteDevice manifests: files or directories (read recursively; .yaml, .yml, .json).
    /// Node manifests found there are used too. Repeatable.
    #[arg(
        short = 'f',
        long = "filename",
        required = true,
        value_name = "FILE_OR_DIR"
    )]
    pub files: Vec<PathBuf>,
    /// Node manifests (Node, NodeList or List, e.g. `kubectl get nodes -o yaml`) that
    /// say which nodes exist, their labels and tunnel IPs. Repeatable.
    #[arg(long, value_name = "FILE_OR_DIR")]
    pub nodes: Vec<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// Runs `plan`: prints the TunnelPorts to `out` and warnings and rejections to `err`.
/// Returns whether every manifest was accepted.
pub fn run(args: &PlanArgs, out: &mut impl Write, err: &mut impl Write) -> anyhow::Result<bool> {
    let mut paths = args.files.clone();
    paths.extend(args.nodes.iter().cloned());
    let manifests = manifests::read_paths(&paths)?;
    let devices: Vec<_> = manifests.devices.iter().map(|(_, d)| d.clone()).collect();
    let plan = planner::plan_tunnels(&devices, &manifests.nodes);

    match args.output {
        Output::Table if plan.tunnel_ports.is_empty() => {
            writeln!(out, "No TunnelPorts would be created.")?
        }
        Output::Table => write!(out, "{}", table::tunnel_ports(&plan.tunnel_ports, false))?,
        Output::Yaml => {
            for tp in &plan.tunnel_ports {
                write!(out, "---\n{}", serde_yaml_ng::to_string(tp)?)?;
            }
        }
    }

    if manifests.nodes.is_empty() {
        writeln!(
            err,
            "note: no Node manifests were given, so no node needs a tunnel; pass --nodes FILE (see examples/nodes/)"
        )?;
    }
    for warning in warnings(&plan) {
        writeln!(err, "warning: {warning}")?;
    }
    let rejected = rejected(&manifests, &plan);
    for r in &rejected {
        writeln!(err, "rejected: {r}")?;
    }
    Ok(rejected.is_empty())
}

/// Self-tunnels and node problems: reported, but nothing is rejected for them.
fn warnings(plan: &TunnelPlan) -> Vec<String> {
    let mut out = Vec::new();
    for (key, outcome) in &plan.devices {
        if let DeviceOutcome::Planned {
            self_tunnel_nodes, ..
        } = outcome
            && !self_tunnel_nodes.is_empty()
        {
            out.push(format!(
                "{key}: node(s) {} skipped: the device's VTEP is the node's own tunnel IP",
                self_tunnel_nodes.join(", ")
            ));
        }
    }
    out.extend(
        plan.node_issues
            .iter()
            .map(|i| format!("node {}: {}", i.node, i.message)),
    );
    out
}

/// Manifests rejected while reading, then devices the planner refused, each with its file.
fn rejected(manifests: &Manifests, plan: &TunnelPlan) -> Vec<Rejected> {
    let sources: BTreeMap<DeviceKey, &Source> = manifests
        .devices
        .iter()
        .map(|(s, d)| (DeviceKey::of(d), s))
        .collect();
    let mut out = manifests.rejected.clone();
    for (key, outcome) in &plan.devices {
        let (field, reason) = match outcome {
            DeviceOutcome::Planned { .. } => continue,
            DeviceOutcome::Invalid(errors) => (None, join(errors)),
            DeviceOutcome::Conflict { message, .. } => {
                (Some("spec".to_string()), format!("conflict: {message}"))
            }
        };
        if let Some(source) = sources.get(key) {
            out.push(Rejected {
                source: (*source).clone(),
                object: Some(key.to_string()),
                field,
                reason,
            });
        }
    }
    out
}
