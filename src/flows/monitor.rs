//! What one flow monitor event (`ovs-ofctl monitor <bridge> watch:!initial`) says: whether
//! it is one of those the loop's last bundle caused. The flow sync dumps the bridge only
//! after an event that is not, so its own bundles no longer cost a full dump each (1 565
//! dumps of up to a few thousand flows, ~90 ms each, in one 20-node bench run; 150 in
//! one run with this).
//!
//! ovs-ofctl prints an event as
//! `event=<ADDED|MODIFIED|DELETED> [reason=…] table=<t> [idle_timeout=…] [hard_timeout=…]
//! cookie=<c> <match> [actions=<a>]`: without the priority (its formatter leaves it out)
//! and without `actions=` when there are none (drop). So an event is matched to a line of
//! the bundle by cookie, table and match (and actions for an add), and each line of the
//! bundle accounts for one event only: a copy of a flow the bundle added, at another
//! priority, is a second event and counts as a change. A deleted flow with a foreign
//! cookie is not ours and changes nothing of ours. Anything else, or anything not
//! understood, counts as a change: the cost of a wrong "change" is one dump, of a wrong
//! "ours" a drift left until the quiet check.

use std::collections::HashMap;

use super::diff::{FlowDiff, parse_u64};
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
#[derive(Debug)]
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
            // `%#x`: a zero cookie prints as `0`.
            Some(("cookie", c)) => cookie = Some(parse_u64(c)?),
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

/// Where one event is looked for: cookie, table, match.
type Place = (u64, u8, Match);

/// The events a bundle is expected to cause, each accounted for once.
#[derive(Debug, Default)]
pub struct Expected {
    /// Flows added (or replaced): their actions, per place.
    added: HashMap<Place, Vec<String>>,
    /// Flows deleted, per place.
    deleted: HashMap<Place, usize>,
}

impl Expected {
    /// The events applying `delta` causes.
    pub fn of(delta: &FlowDiff) -> Self {
        let mut expected = Expected::default();
        for flow in &delta.add {
            let place = (flow.cookie, flow.table, Match::parse(&flow.matches));
            expected
                .added
                .entry(place)
                .or_default()
                .push(flow.actions.clone());
        }
        for flow in &delta.delete {
            let place = (flow.cookie, flow.table, Match::parse(&flow.matches));
            *expected.deleted.entry(place).or_default() += 1;
        }
        expected
    }

    /// Whether the event on `line` is one of the expected ones (then it is taken off) or
    /// the deletion of a flow that is not ours; `false` means the bridge may have
    /// changed otherwise.
    pub fn account_for(&mut self, line: &str) -> bool {
        let Some(event) = parse(line) else {
            return false;
        };
        let owned = event.cookie & COOKIE_MASK == COOKIE_TAG;
        match event.kind {
            Kind::Gone if !owned => return true,
            Kind::Now if event.timeouts => return false,
            _ => {}
        }
        let place = (event.cookie, event.table, Match::parse(event.matches));
        match event.kind {
            Kind::Now => {
                let actions = event.actions.unwrap_or("");
                let Some(added) = self.added.get_mut(&place) else {
                    return false;
                };
                let Some(i) = added.iter().position(|a| same_actions(actions, a)) else {
                    return false;
                };
                added.swap_remove(i);
                true
            }
            Kind::Gone => match self.deleted.get_mut(&place) {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    true
                }
                _ => false,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flows::{Flow, ObservedFlow};

    fn added(cookie: u64, table: u8, priority: u16, matches: &str, actions: &str) -> Flow {
        Flow {
            cookie,
            table,
            priority,
            matches: matches.into(),
            actions: actions.into(),
        }
    }

    fn deleted(cookie: u64, table: u8, priority: u16, matches: &str) -> ObservedFlow {
        ObservedFlow {
            cookie,
            table,
            priority,
            matches: matches.into(),
            actions: "drop".into(),
            attributes: vec![],
        }
    }

    /// A bundle that adds an egress rule, an ingress rule, a drop rule and one rule at
    /// two priorities, and deletes two rules.
    fn expected() -> Expected {
        let (c1, c2, c9) = (
            0x5244_4f46_0000_0001,
            0x5244_4f46_0000_0002,
            0x5244_4f46_0000_0009,
        );
        Expected::of(&FlowDiff {
            add: vec![
                added(
                    c1,
                    230,
                    100,
                    "reg6=0x1001,dl_dst=52:54:00:00:00:50",
                    "set_field:0x3->reg7,output:3",
                ),
                added(
                    c1,
                    0,
                    50,
                    "in_port=3",
                    "set_field:0x1001->reg6,resubmit(,230)",
                ),
                added(c2, 0, 60005, "in_port=4", "drop"),
                added(c2, 231, 10, "reg6=0x1002", "output:5"),
                added(c2, 231, 20, "reg6=0x1002", "output:5"),
            ],
            delete: vec![
                deleted(c9, 0, 60010, "in_port=9"),
                deleted(c1, 230, 100, "reg6=0x1001,dl_dst=52:54:00:00:00:99"),
            ],
        })
    }

    #[test]
    fn a_bundles_own_events_are_accounted_for_once_each_and_nothing_else_is() {
        let mut expected = expected();
        // Lines as ovs-ofctl 3.1 (`-O OpenFlow14 --no-names monitor`) prints them, in
        // order: each is judged after the ones before it.
        let cases = [
            // The bundle's adds, one in another spelling of the same actions; a drop
            // rule prints no actions; an add that replaced a flow may show as modified.
            (
                " event=ADDED table=230 cookie=0x52444f4600000001 reg6=0x1001,dl_dst=52:54:00:00:00:50 actions=load:0x3->NXM_NX_REG7[],output:3",
                true,
            ),
            (
                "event=MODIFIED table=0 cookie=0x52444f4600000001 in_port=3 actions=set_field:0x1001->reg6,resubmit(,230)",
                true,
            ),
            (
                " event=ADDED table=0 cookie=0x52444f4600000002 in_port=4",
                true,
            ),
            // Each line accounts for one event: a second report of the same flow (a
            // copy at another priority, say) is a change.
            (
                " event=ADDED table=0 cookie=0x52444f4600000002 in_port=4",
                false,
            ),
            (
                " event=ADDED table=0 cookie=0x52444f4600000001 in_port=3 actions=set_field:0x1001->reg6,resubmit(,230)",
                false,
            ),
            // Two lines at one place (two priorities): two events.
            (
                " event=ADDED table=231 cookie=0x52444f4600000002 reg6=0x1002 actions=output:5",
                true,
            ),
            (
                " event=ADDED table=231 cookie=0x52444f4600000002 reg6=0x1002 actions=output:5",
                true,
            ),
            (
                " event=ADDED table=231 cookie=0x52444f4600000002 reg6=0x1002 actions=output:5",
                false,
            ),
            // The bundle's deletes, once each.
            (
                " event=DELETED reason=delete table=0 cookie=0x52444f4600000009 in_port=9 actions=drop",
                true,
            ),
            (
                " event=DELETED reason=delete table=0 cookie=0x52444f4600000009 in_port=9 actions=drop",
                false,
            ),
            (
                " event=DELETED reason=delete table=230 cookie=0x52444f4600000001 reg6=0x1001,dl_dst=52:54:00:00:00:99 actions=output:3",
                true,
            ),
            // A foreign flow deleted (a zero cookie prints as `0`).
            (
                " event=DELETED reason=delete table=0 cookie=0 actions=NORMAL",
                true,
            ),
            (
                " event=DELETED reason=delete table=0 cookie=0x1 in_port=3 actions=drop",
                true,
            ),
            // Someone else's changes.
            (
                " event=MODIFIED table=230 cookie=0x52444f4600000001 reg6=0x1001,dl_dst=52:54:00:00:00:50",
                false,
            ),
            (
                " event=DELETED reason=delete table=0 cookie=0x52444f4600000001 in_port=3 actions=set_field:0x1001->reg6,resubmit(,230)",
                false,
            ),
            (
                " event=ADDED table=0 cookie=0 in_port=3 actions=drop",
                false,
            ),
            (
                " event=ADDED table=231 cookie=0x52444f4600000001 reg6=0x1001 actions=output:3",
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
        for (line, ours) in cases {
            assert_eq!(expected.account_for(line), ours, "{line}");
        }
    }

    #[test]
    fn an_add_with_a_timeout_or_other_actions_is_not_the_bundles() {
        let mut expected = expected();
        let own = " event=ADDED table=0 cookie=0x52444f4600000001 in_port=3 actions=set_field:0x1001->reg6,resubmit(,230)";
        for line in [
            " event=ADDED table=0 cookie=0x52444f4600000001 idle_timeout=10 in_port=3 actions=set_field:0x1001->reg6,resubmit(,230)",
            " event=ADDED table=0 cookie=0x52444f4600000001 in_port=3 actions=drop",
        ] {
            assert!(!expected.account_for(line), "{line}");
        }
        // Neither used the line up: the bundle's own event still matches it.
        assert!(expected.account_for(own));
    }

    #[test]
    fn nothing_is_expected_of_an_empty_bundle() {
        let mut expected = Expected::default();
        assert!(!expected.account_for(" event=ADDED table=0 cookie=0x52444f4600000002 in_port=4"));
        assert!(expected.account_for(" event=DELETED reason=delete table=0 cookie=0 in_port=4"));
    }
}
