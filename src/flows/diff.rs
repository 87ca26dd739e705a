//! Desired flows vs the owned flows OVS shows → one atomic bundle.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;

use super::desired::{Flow, FlowKey, FlowPlan};
use super::typed::same_actions;
use super::{COOKIE_MASK, COOKIE_TAG};

/// Fields `dump-flows` prints before the match that are not match fields. Any of them on
/// an owned flow means someone changed it (we never set them), so it gets rewritten.
const FLOW_ATTRIBUTES: &[&str] = &[
    "idle_timeout",
    "hard_timeout",
    "importance",
    "send_flow_rem",
    "check_overlap",
    "reset_counts",
    "no_packet_counts",
    "no_byte_counts",
    "duration",
    "n_packets",
    "n_bytes",
    "idle_age",
    "hard_age",
];

/// One flow as `ovs-ofctl --no-stats dump-flows` printed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedFlow {
    /// Cookie.
    pub cookie: u64,
    /// Table id.
    pub table: u8,
    /// Priority.
    pub priority: u16,
    /// Match fields as printed.
    pub matches: String,
    /// Actions as printed.
    pub actions: String,
    /// Flow attributes other than cookie/table/priority (timeouts, flags), as printed.
    pub attributes: Vec<String>,
}

impl ObservedFlow {
    /// Its identity.
    pub fn key(&self) -> FlowKey {
        FlowKey::new(self.table, self.priority, &self.matches)
    }
}

/// `dump-flows` output that could not be understood.
#[derive(Debug, thiserror::Error)]
#[error("cannot parse dump-flows line {line:?}: {reason}")]
pub struct ParseError {
    /// The line.
    pub line: String,
    /// What is wrong with it.
    pub reason: String,
}

/// A number as OVS prints it: hex with `0x`, else decimal.
pub(super) fn parse_u64(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// Parses `ovs-ofctl -O OpenFlow14 --no-stats --no-names dump-flows` output. Header lines
/// (`OFPST_FLOW reply ...`) are skipped.
pub fn parse_dump(text: &str) -> Result<Vec<ObservedFlow>, ParseError> {
    let mut flows = Vec::new();
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() || line.contains(" reply (") {
            continue;
        }
        let err = |reason: &str| ParseError {
            line: line.to_string(),
            reason: reason.to_string(),
        };
        let (head, actions) = line
            .split_once(" actions=")
            .or_else(|| line.strip_prefix("actions=").map(|a| ("", a)))
            .ok_or_else(|| err("no actions"))?;
        let mut flow = ObservedFlow {
            cookie: 0,
            table: 0,
            priority: 32768,
            matches: String::new(),
            actions: actions.trim().to_string(),
            attributes: Vec::new(),
        };
        let mut matches = Vec::new();
        for field in head
            .split([',', ' '])
            .map(str::trim)
            .filter(|f| !f.is_empty())
        {
            let (name, value) = field.split_once('=').unwrap_or((field, ""));
            match name {
                "cookie" => flow.cookie = parse_u64(value).ok_or_else(|| err("bad cookie"))?,
                "table" => flow.table = value.parse().map_err(|_| err("bad table"))?,
                "priority" => flow.priority = value.parse().map_err(|_| err("bad priority"))?,
                _ if FLOW_ATTRIBUTES.contains(&name) => flow.attributes.push(field.to_string()),
                _ => matches.push(field),
            }
        }
        flow.matches = matches.join(",");
        flows.push(flow);
    }
    Ok(flows)
}

/// What must change so that the owned flows equal the plan.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowDiff {
    /// Flows to add, or to replace (an `add` of an existing match replaces its actions
    /// and cookie).
    pub add: Vec<Flow>,
    /// Owned flows to remove (no longer desired).
    pub delete: Vec<ObservedFlow>,
}

impl FlowDiff {
    /// Whether OVS already matches the plan.
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.delete.is_empty()
    }

    /// Number of flow changes.
    pub fn len(&self) -> usize {
        self.add.len() + self.delete.len()
    }

    /// The input of `ovs-ofctl --bundle add-flows`: one `add` or `delete_strict` line
    /// per change. Deletes carry the exact cookie, so only our own flow can go.
    pub fn bundle_text(&self) -> String {
        let mut out = String::new();
        for flow in &self.delete {
            let _ = write!(
                out,
                "delete_strict cookie={:#x}/-1,table={},priority={}",
                flow.cookie, flow.table, flow.priority
            );
            if !flow.matches.is_empty() {
                out.push(',');
                out.push_str(&flow.matches);
            }
            out.push('\n');
        }
        for flow in &self.add {
            out.push_str("add ");
            out.push_str(&flow.to_ofctl());
            out.push('\n');
        }
        out
    }
}

/// Compares the plan with the observed flows. Observed flows without our cookie tag are
/// ignored (never touched); an observed owned flow is kept only when its cookie is the
/// plan's, it has no attributes, and its match and actions mean what the plan's do
/// (compared as [typed](super::typed) values, whatever the spelling).
pub fn diff(plan: &FlowPlan, observed: &[ObservedFlow]) -> FlowDiff {
    let mut out = FlowDiff::default();
    let wanted: HashMap<FlowKey, &Flow> = plan.flows().map(|f| (f.key(), f)).collect();
    let mut seen: HashMap<FlowKey, &ObservedFlow> = HashMap::new();
    for flow in observed {
        if flow.cookie & COOKIE_MASK != COOKIE_TAG {
            continue;
        }
        let key = flow.key();
        if wanted.contains_key(&key) {
            seen.insert(key, flow);
        } else {
            out.delete.push(flow.clone());
        }
    }
    for want in plan.flows() {
        let same = seen.get(&want.key()).is_some_and(|have| {
            have.cookie == want.cookie
                && have.attributes.is_empty()
                && same_actions(&have.actions, &want.actions)
        });
        if !same {
            out.add.push(want.clone());
        }
    }
    out
}

/// The change from a plan OVS is known to hold (`from`) to a new one (`to`), without
/// looking at OVS: what the sync applies when only the desired state moved. Deletes carry
/// the old flows' cookies; adding an existing flow or deleting a missing one is harmless,
/// so this is safe even if someone changed the bridge meanwhile (the next full check
/// repairs that).
///
/// Only owners whose flows differ are looked at: a flow identity belongs to one owner, so
/// a flow that moved between owners shows in both owners' entries.
pub fn diff_plans(to: &FlowPlan, from: &FlowPlan) -> FlowDiff {
    let (mut before, mut after): (BTreeMap<&FlowKey, &Flow>, BTreeMap<&FlowKey, &Flow>) =
        Default::default();
    let mut old = from.owners.iter().peekable();
    let mut new = to.owners.iter().peekable();
    loop {
        let (o, n) = match (old.peek(), new.peek()) {
            (None, None) => break,
            (Some((ko, _)), Some((kn, _))) => match ko.cmp(kn) {
                Ordering::Less => (old.next(), None),
                Ordering::Greater => (None, new.next()),
                Ordering::Equal => (old.next(), new.next()),
            },
            (Some(_), None) => (old.next(), None),
            (None, Some(_)) => (None, new.next()),
        };
        let (o, n) = (o.map(|(_, f)| f), n.map(|(_, f)| f));
        if let (Some(o), Some(n)) = (o, n)
            && (Arc::ptr_eq(o, n) || o == n)
        {
            continue;
        }
        before.extend(o.into_iter().flat_map(|f| f.flows.iter()));
        after.extend(n.into_iter().flat_map(|f| f.flows.iter()));
    }
    let mut out = FlowDiff::default();
    for (key, old) in &before {
        if !after.contains_key(key) {
            out.delete.push(ObservedFlow {
                cookie: old.cookie,
                table: old.table,
                priority: old.priority,
                matches: old.matches.clone(),
                actions: old.actions.clone(),
                attributes: Vec::new(),
            });
        }
    }
    for (key, new) in &after {
        if before.get(key) != Some(new) {
            out.add.push((*new).clone());
        }
    }
    out
}
