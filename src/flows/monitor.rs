//! What one flow monitor event (`ovs-ofctl monitor <bridge> watch:!initial`) says about
//! the plan OVS is known to hold: whether the flow it reports is now as that plan has
//! it. The flow sync dumps the bridge only after an event that does not agree, so its own
//! bundles — every event of which shows a flow of the plan it just applied, or one it
//! removed — no longer cost a full dump each (1 565 dumps of up to a few thousand flows,
//! ~90 ms each, in one 20-node bench run).
//!
//! ovs-ofctl prints an event as
//! `event=<ADDED|MODIFIED|DELETED> [reason=…] table=<t> [idle_timeout=…] [hard_timeout=…]
//! cookie=<c> <match> [actions=<a>]`: without the priority (its formatter leaves it out)
//! and without `actions=` when there are none (drop). So a flow is found by cookie, table
//! and match; when the plan's owner of that cookie has two flows there that differ only
//! in priority, the event does not agree (a dump tells). Anything not understood does
//! not agree either: the cost of a wrong "disagrees" is one dump, of a wrong "agrees" a
//! drift left until the quiet check. What an event does not show at all (a flow added
//! at another priority with a planned flow's cookie, match and actions; flags or
//! importance edited alone) is such a drift.

use std::collections::HashMap;
use std::sync::Arc;

use super::desired::{Flow, FlowPlan, OwnedFlows};
use super::typed::{Match, same_actions};
use super::{COOKIE_MASK, COOKIE_TAG};

/// What happened to the flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Added, or changed: the event shows the flow as it is now.
    Now,
    /// Deleted: the event shows the flow as it was.
    Gone,
}

/// One event, as far as it is needed here.
#[derive(Debug, PartialEq)]
struct Event<'a> {
    kind: Kind,
    table: u8,
    cookie: u64,
    matches: &'a str,
    /// `None`: no `actions=` printed (the flow drops).
    actions: Option<&'a str>,
    /// A timeout was printed (we never set one).
    timeouts: bool,
}

/// Parses one event line; `None` for anything else or anything unexpected.
fn parse(line: &str) -> Option<Event<'_>> {
    let line = line.trim();
    let (head, actions) = match line.split_once(" actions=") {
        Some((head, actions)) => (head, Some(actions.trim())),
        None => (line, None),
    };
    let mut kind = None;
    let (mut table, mut cookie, mut matches, mut timeouts) = (None, None, None, false);
    for token in head.split_whitespace() {
        match token.split_once('=') {
            Some(("event", "ADDED" | "MODIFIED")) => kind = Some(Kind::Now),
            Some(("event", "DELETED")) => kind = Some(Kind::Gone),
            Some(("event", _)) => return None,
            Some(("reason", _)) => {}
            Some(("table", t)) => table = Some(t.parse().ok()?),
            Some(("cookie", c)) => {
                cookie = Some(u64::from_str_radix(c.strip_prefix("0x")?, 16).ok()?)
            }
            Some(("idle_timeout" | "hard_timeout", _)) => timeouts = true,
            // The match is the one token left (none when it matches everything).
            _ if matches.is_none() => matches = Some(token),
            _ => return None,
        }
    }
    Some(Event {
        kind: kind?,
        table: table?,
        cookie: cookie?,
        matches: matches.unwrap_or(""),
        actions,
        timeouts,
    })
}

/// A held plan's owners by cookie, built once per plan that events are judged against.
#[derive(Debug)]
pub struct PlanIndex {
    plan: Arc<FlowPlan>,
    owners: HashMap<u64, Arc<OwnedFlows>>,
}

impl PlanIndex {
    /// The index of `plan`.
    pub fn new(plan: &Arc<FlowPlan>) -> Self {
        let owners = plan
            .owners
            .values()
            .map(|o| (o.cookie, Arc::clone(o)))
            .collect();
        PlanIndex {
            plan: Arc::clone(plan),
            owners,
        }
    }

    /// Whether this is the index of `plan` (the same shared plan, not an equal one).
    pub fn is_of(&self, plan: &Arc<FlowPlan>) -> bool {
        Arc::ptr_eq(&self.plan, plan)
    }

    /// Whether the event on `line` leaves the flow it reports as the plan has it: an owned
    /// flow added or changed to exactly the plan's, or a flow deleted that the plan does
    /// not hold (foreign, or one of ours the plan dropped).
    pub fn agrees(&self, line: &str) -> bool {
        let Some(event) = parse(line) else {
            return false;
        };
        let planned = self.planned(&event);
        match event.kind {
            Kind::Now => {
                let [flow] = planned.as_slice() else {
                    return false;
                };
                !event.timeouts
                    && flow.cookie == event.cookie
                    && same_actions(event.actions.unwrap_or(""), &flow.actions)
            }
            Kind::Gone => planned.is_empty(),
        }
    }

    /// The plan's flows with the event's cookie, table and match (any priority).
    fn planned(&self, event: &Event<'_>) -> Vec<&Flow> {
        if event.cookie & COOKIE_MASK != COOKIE_TAG {
            return Vec::new();
        }
        let Some(owner) = self.owners.get(&event.cookie) else {
            return Vec::new();
        };
        let matches = Match::parse(event.matches);
        owner
            .flows
            .iter()
            .filter(|(key, _)| key.table == event.table && key.matches == matches)
            .map(|(_, flow)| flow)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flows::desired::Owner;

    const C1: u64 = 0x5244_4f46_0000_0001;
    const C2: u64 = 0x5244_4f46_0000_0002;

    fn flow(cookie: u64, table: u8, priority: u16, matches: &str, actions: &str) -> Flow {
        Flow {
            cookie,
            table,
            priority,
            matches: matches.into(),
            actions: actions.into(),
        }
    }

    /// A plan of two owners: C1 with an egress and an ingress rule, C2 with one drop rule
    /// and two rules that differ only in priority.
    fn index() -> PlanIndex {
        let owned = |cookie: u64, flows: Vec<Flow>| OwnedFlows {
            cookie,
            flows: flows.into_iter().map(|f| (f.key(), f)).collect(),
        };
        let mut plan = FlowPlan::default();
        plan.set_owner(
            &Owner::Tunnel("t1".into()),
            Some(owned(
                C1,
                vec![
                    flow(
                        C1,
                        230,
                        100,
                        "reg6=0x1001,dl_dst=52:54:00:00:00:50",
                        "set_field:0x3->reg7,output:3",
                    ),
                    flow(
                        C1,
                        0,
                        50,
                        "in_port=3",
                        "set_field:0x1001->reg6,resubmit(,230)",
                    ),
                ],
            )),
        );
        plan.set_owner(
            &Owner::Tunnel("t2".into()),
            Some(owned(
                C2,
                vec![
                    flow(C2, 0, 60005, "in_port=4", "drop"),
                    flow(C2, 231, 10, "reg6=0x1002", "output:5"),
                    flow(C2, 231, 20, "reg6=0x1002", "output:5"),
                ],
            )),
        );
        PlanIndex::new(&Arc::new(plan))
    }

    #[test]
    fn events_agree_only_when_the_flow_is_now_as_planned() {
        let index = index();
        // Lines as ovs-ofctl 3.1 (`-O OpenFlow14 --no-names monitor`) prints them.
        let cases = [
            // Our bundle's adds, in another spelling of the same actions.
            (
                " event=ADDED table=230 cookie=0x52444f4600000001 reg6=0x1001,dl_dst=52:54:00:00:00:50 actions=load:0x3->NXM_NX_REG7[],output:3",
                true,
            ),
            (
                " event=ADDED table=0 cookie=0x52444f4600000001 in_port=3 actions=set_field:0x1001->reg6,resubmit(,230)",
                true,
            ),
            (
                "event=MODIFIED table=0 cookie=0x52444f4600000001 in_port=3 actions=set_field:0x1001->reg6,resubmit(,230)",
                true,
            ),
            // A drop rule prints no actions.
            (
                " event=ADDED table=0 cookie=0x52444f4600000002 in_port=4",
                true,
            ),
            // Our bundle deleting what the plan dropped: a match, an owner, or a cookie
            // the plan no longer has; a foreign flow deleted.
            (
                " event=DELETED reason=delete table=230 cookie=0x52444f4600000001 reg6=0x1001,dl_dst=52:54:00:00:00:99 actions=output:3",
                true,
            ),
            (
                " event=DELETED reason=delete table=0 cookie=0x52444f4600000009 in_port=9 actions=drop",
                true,
            ),
            (
                " event=DELETED reason=delete table=0 cookie=0x1 in_port=3 actions=drop",
                true,
            ),
            // Someone else's change to a planned flow.
            (
                " event=MODIFIED table=230 cookie=0x52444f4600000001 reg6=0x1001,dl_dst=52:54:00:00:00:50",
                false,
            ),
            (
                " event=DELETED reason=delete table=0 cookie=0x52444f4600000001 in_port=3 actions=set_field:0x1001->reg6,resubmit(,230)",
                false,
            ),
            (
                " event=ADDED table=0 cookie=0x0 in_port=3 actions=drop",
                false,
            ),
            (
                " event=ADDED table=0 cookie=0x52444f4600000001 idle_timeout=10 in_port=3 actions=set_field:0x1001->reg6,resubmit(,230)",
                false,
            ),
            // Our cookie on a flow the plan does not have.
            (
                " event=ADDED table=231 cookie=0x52444f4600000001 reg6=0x1001 actions=output:3",
                false,
            ),
            (
                " event=ADDED table=0 cookie=0x52444f4600000009 in_port=9 actions=drop",
                false,
            ),
            // Two planned flows differ only in priority, which events do not show.
            (
                " event=ADDED table=231 cookie=0x52444f4600000002 reg6=0x1002 actions=output:5",
                false,
            ),
            (
                " event=DELETED reason=delete table=231 cookie=0x52444f4600000002 reg6=0x1002 actions=output:5",
                false,
            ),
            // Not understood.
            (" event=ABBREV xid=0x1234", false),
            (
                " event=ADDED table=x cookie=0x52444f4600000002 in_port=4",
                false,
            ),
            (" event=ADDED table=0 in_port=4", false),
            (
                " event=ADDED table=0 cookie=0x52444f4600000002 in_port=4 extra",
                false,
            ),
            ("NXST_FLOW_MONITOR reply (xid=0x0):", false),
        ];
        for (line, agrees) in cases {
            assert_eq!(index.agrees(line), agrees, "{line}");
        }
    }

    #[test]
    fn an_index_knows_its_own_plan() {
        let index = index();
        assert!(index.is_of(&index.plan.clone()));
        assert!(!index.is_of(&Arc::new((*index.plan).clone())));
    }
}
