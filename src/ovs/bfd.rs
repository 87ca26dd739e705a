//! BFD on the tunnel interfaces: what vswitchd reports in `bfd_status`, how it is judged,
//! and the damping of flapping tunnels.
//!
//! - A session is [`BfdHealth::Up`] when OVS says `state=up`, [`BfdHealth::Down`]
//!   otherwise (with OVS's diagnostic), [`BfdHealth::Pending`] before it has a state — and,
//!   for a session that has never been up, during [`pending_grace`] (OVS reports `down`
//!   the moment BFD starts, seconds before the first answer could arrive).
//! - **Damping** ([`BfdDamper`], pure, time passed in): a tunnel whose `flap_count` (OVS
//!   counts every change of the session's forwarding state) rose by [`FLAP_THRESHOLD`] or
//!   more within [`FLAP_WINDOW`] is [`BfdHealth::Flapping`] until it has gone
//!   [`FLAP_HOLD`] without a flap; meanwhile its report keeps the session as it was when
//!   the flapping was detected, so a flapping tunnel changes its report (and the
//!   TunnelPort status, and the API writes) a handful of times, not at every flap. The
//!   first rise to up after BFD starts is no flap.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use crate::api::TunnelBfd;

use super::diff::PortReport;

/// Flaps within [`FLAP_WINDOW`] that make a tunnel [`BfdHealth::Flapping`].
pub const FLAP_THRESHOLD: usize = 3;
/// The window in which [`FLAP_THRESHOLD`] flaps count as flapping.
pub const FLAP_WINDOW: Duration = Duration::from_secs(30);
/// How long a flapping tunnel must go without a flap before it is reported as it is.
pub const FLAP_HOLD: Duration = Duration::from_secs(30);
/// Least time a session that has never been up is [`BfdHealth::Pending`] (see
/// [`pending_grace`]).
pub const PENDING_GRACE_MIN: Duration = Duration::from_secs(10);

/// How long a session that has never been up stays Pending before it counts as down: at
/// least [`PENDING_GRACE_MIN`], and two detection times for slow timers.
pub fn pending_grace(timers: &TunnelBfd) -> Duration {
    PENDING_GRACE_MIN.max(Duration::from_millis(2 * timers.detection_time_ms()))
}

/// The BFD session of one interface as vswitchd reports it (`bfd_status`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BfdSession {
    /// `state`: `admin_down`, `down`, `init` or `up` (`None` before vswitchd wrote one).
    pub state: Option<String>,
    /// `forwarding`: whether OVS would forward over the tunnel.
    pub forwarding: Option<bool>,
    /// `diagnostic`: why the local session last changed state, in OVS's words.
    pub diagnostic: Option<String>,
    /// `remote_state`.
    pub remote_state: Option<String>,
    /// `remote_diagnostic`.
    pub remote_diagnostic: Option<String>,
    /// `flap_count`: changes of `forwarding` since BFD started on the interface.
    pub flap_count: Option<u64>,
}

impl BfdSession {
    /// Reads the `bfd_status` column.
    pub fn from_status(status: &BTreeMap<String, String>) -> Self {
        let text = |key: &str| status.get(key).filter(|v| !v.is_empty()).cloned();
        BfdSession {
            state: text("state"),
            forwarding: status.get("forwarding").map(|v| v == "true"),
            diagnostic: text("diagnostic"),
            remote_state: text("remote_state"),
            remote_diagnostic: text("remote_diagnostic"),
            flap_count: status.get("flap_count").and_then(|v| v.parse().ok()),
        }
    }

    /// Whether the session is up.
    pub fn is_up(&self) -> bool {
        self.state.as_deref() == Some("up")
    }
}

/// How a tunnel's BFD session is judged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BfdHealth {
    /// No state yet, or never up and still within [`pending_grace`].
    Pending,
    /// The session is up: the remote VTEP answers.
    Up,
    /// The session is not up; [`BfdSession::diagnostic`] says why.
    Down,
    /// It flapped this many times within [`FLAP_WINDOW`]; held until [`FLAP_HOLD`]
    /// without a flap.
    Flapping {
        /// Flaps counted when the flapping was detected.
        flaps: usize,
    },
}

/// BFD of one tunnel whose TunnelPort asks for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BfdReport {
    /// The timers the tunnel runs.
    pub timers: TunnelBfd,
    /// The session as OVS shows it (while [`BfdHealth::Flapping`]: as it was when the
    /// flapping was detected).
    pub session: BfdSession,
    /// The judgement.
    pub health: BfdHealth,
}

impl BfdReport {
    /// The undamped report of what OVS shows now (`status`: the interface's `bfd_status`,
    /// `None` when there is no interface yet); [`BfdDamper::apply`] refines it.
    pub fn observe(timers: TunnelBfd, status: Option<&BTreeMap<String, String>>) -> Self {
        let session = status.map(BfdSession::from_status).unwrap_or_default();
        let health = match session.state.as_deref() {
            None => BfdHealth::Pending,
            Some("up") => BfdHealth::Up,
            Some(_) => BfdHealth::Down,
        };
        BfdReport {
            timers,
            session,
            health,
        }
    }
}

/// What the damper remembers of one tunnel.
#[derive(Clone, Debug)]
struct Track {
    /// When the tunnel was first seen with BFD on (the start of the pending grace).
    since: Instant,
    /// Whether the session has been up since BFD started (or since the agent started).
    been_up: bool,
    /// The last `flap_count` seen.
    flap_count: Option<u64>,
    /// When the flaps within the window were counted (one entry per flap).
    flaps: VecDeque<Instant>,
    /// The last flap.
    last_flap: Option<Instant>,
    /// While flapping: the session when it was detected, and the flaps then.
    held: Option<(BfdSession, usize)>,
}

impl Track {
    fn new(now: Instant) -> Self {
        Track {
            since: now,
            been_up: false,
            flap_count: None,
            flaps: VecDeque::new(),
            last_flap: None,
            held: None,
        }
    }

    /// Takes in what OVS shows now and returns the damped report.
    fn update(&mut self, report: &BfdReport, now: Instant) -> BfdReport {
        let session = &report.session;
        match (self.flap_count, session.flap_count) {
            // The first view (also after an agent restart): a baseline, and a count above
            // 0 means the session has been up.
            (None, Some(count)) => self.been_up |= count > 0,
            (Some(before), Some(count)) if count > before => {
                // The first rise to up after BFD started is no flap.
                let mut flaps = count - before;
                if !self.been_up {
                    flaps -= 1;
                    self.been_up = true;
                }
                let flaps = usize::try_from(flaps).unwrap_or(usize::MAX);
                for _ in 0..flaps.min(FLAP_THRESHOLD) {
                    self.flaps.push_back(now);
                }
                if flaps > 0 {
                    self.last_flap = Some(now);
                }
            }
            // A lower count: BFD was restarted on the interface; a new baseline.
            _ => {}
        }
        if session.flap_count.is_some() {
            self.flap_count = session.flap_count;
        }
        self.been_up |= session.is_up();
        while self
            .flaps
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= FLAP_WINDOW)
        {
            self.flaps.pop_front();
        }
        if self.held.is_none() && self.flaps.len() >= FLAP_THRESHOLD {
            self.held = Some((session.clone(), self.flaps.len()));
        }
        if self.held.is_some() && self.hold_ends().is_some_and(|end| now >= end) {
            self.held = None;
        }
        let mut out = report.clone();
        if let Some((held, flaps)) = &self.held {
            out.session = held.clone();
            out.health = BfdHealth::Flapping { flaps: *flaps };
        } else if out.health == BfdHealth::Down
            && !self.been_up
            && now < self.since + pending_grace(&report.timers)
        {
            out.health = BfdHealth::Pending;
        }
        out
    }

    fn hold_ends(&self) -> Option<Instant> {
        self.last_flap.map(|t| t + FLAP_HOLD)
    }

    /// When the judgement changes with nothing new from OVS, if it will.
    fn next_change(&self, timers: &TunnelBfd, now: Instant) -> Option<Instant> {
        let at = if self.held.is_some() {
            self.hold_ends()?
        } else if !self.been_up {
            self.since + pending_grace(timers)
        } else {
            return None;
        };
        (at > now).then_some(at)
    }
}

/// Damps the BFD reports of a node's tunnels (see the module documentation). Pure: the
/// time is passed in.
#[derive(Clone, Debug, Default)]
pub struct BfdDamper {
    tunnels: BTreeMap<String, (Track, TunnelBfd)>,
    /// The earliest time a judgement changes without news from OVS.
    next: Option<Instant>,
}

impl BfdDamper {
    /// Replaces the BFD report of every TunnelPort in `ports` by its damped one; forgets
    /// the tunnels that no longer run BFD.
    pub fn apply(&mut self, ports: &mut BTreeMap<String, PortReport>, now: Instant) {
        self.tunnels
            .retain(|name, _| ports.get(name).is_some_and(|r| r.bfd.is_some()));
        self.next = None;
        for (name, report) in ports.iter_mut() {
            let Some(bfd) = report.bfd.as_mut() else {
                continue;
            };
            let (track, timers) = self
                .tunnels
                .entry(name.clone())
                .or_insert_with(|| (Track::new(now), bfd.timers));
            *timers = bfd.timers;
            *bfd = track.update(bfd, now);
            if let Some(at) = track.next_change(timers, now) {
                self.next = Some(self.next.map_or(at, |n| n.min(at)));
            }
        }
    }

    /// When [`Self::apply`] should run again although OVS said nothing new: a flapping
    /// tunnel's hold or a new session's grace ends.
    pub fn next_change(&self) -> Option<Instant> {
        self.next
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ovs::PortState;

    const TIMERS: TunnelBfd = TunnelBfd {
        min_rx_ms: 1000,
        min_tx_ms: 1000,
    };

    fn status(state: &str, diagnostic: &str, flaps: u64) -> BTreeMap<String, String> {
        [
            ("state", state.to_string()),
            ("forwarding", (state == "up").to_string()),
            ("diagnostic", diagnostic.to_string()),
            ("remote_state", state.to_string()),
            ("remote_diagnostic", "No Diagnostic".to_string()),
            ("flap_count", flaps.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    fn ports(status: Option<&BTreeMap<String, String>>) -> BTreeMap<String, PortReport> {
        let report = PortReport {
            interface_name: "rdv-0123456789a".into(),
            ofport: Some(1),
            state: PortState::Ready,
            bfd: Some(BfdReport::observe(TIMERS, status)),
        };
        BTreeMap::from([("tp".to_string(), report)])
    }

    /// What the damper says, second by second, for what OVS shows: the first rise to up
    /// is no flap; three flaps within 30 s are Flapping, held (with the session as it was)
    /// until 30 s without a flap; a session that never came up is Pending for 10 s.
    #[test]
    fn flapping_is_reported_once_and_held_until_the_tunnel_is_stable() {
        use BfdHealth::*;
        let up = |flaps| Some(status("up", "No Diagnostic", flaps));
        let down = |flaps| Some(status("down", "Control Detection Time Expired", flaps));
        let never = Some(status("down", "No Diagnostic", 0));
        // (second, bfd_status, health, flap_count in the report, next wake-up second)
        type Step = (
            u64,
            Option<BTreeMap<String, String>>,
            BfdHealth,
            Option<u64>,
            Option<u64>,
        );
        let steps: Vec<Step> = vec![
            (0, None, Pending, None, Some(10)),
            (1, never.clone(), Pending, Some(0), Some(10)),
            (3, up(1), Up, Some(1), None),
            // An outage and its repair: two flaps, no flapping.
            (10, down(2), Down, Some(2), None),
            (14, up(3), Up, Some(3), None),
            // The third flap within 30 s of the first: Flapping, the session held.
            (20, down(4), Flapping { flaps: 3 }, Some(4), Some(50)),
            (21, up(5), Flapping { flaps: 3 }, Some(4), Some(51)),
            (22, down(6), Flapping { flaps: 3 }, Some(4), Some(52)),
            (23, up(7), Flapping { flaps: 3 }, Some(4), Some(53)),
            // Stable since 23 s; held until 53 s.
            (40, up(7), Flapping { flaps: 3 }, Some(4), Some(53)),
            (52, up(7), Flapping { flaps: 3 }, Some(4), Some(53)),
            (53, up(7), Up, Some(7), None),
            // Two flaps long apart are no flapping.
            (60, down(8), Down, Some(8), None),
            (95, up(9), Up, Some(9), None),
            (130, down(10), Down, Some(10), None),
            // Several flaps between two looks count as several.
            (140, down(13), Flapping { flaps: 4 }, Some(13), Some(170)),
            (170, down(13), Down, Some(13), None),
        ];
        let t0 = Instant::now();
        let mut damper = BfdDamper::default();
        for (second, bfd_status, health, flaps, wake) in steps {
            let now = t0 + Duration::from_secs(second);
            let mut p = ports(bfd_status.as_ref());
            damper.apply(&mut p, now);
            let bfd = p["tp"].bfd.as_ref().unwrap();
            assert_eq!(
                (&bfd.health, bfd.session.flap_count),
                (&health, flaps),
                "at {second} s"
            );
            let next = damper
                .next_change()
                .map(|at| at.duration_since(t0).as_secs());
            assert_eq!(next, wake, "wake-up at {second} s");
        }
    }

    #[test]
    fn a_session_that_never_comes_up_is_down_after_the_grace() {
        let t0 = Instant::now();
        let mut damper = BfdDamper::default();
        let never = status("down", "No Diagnostic", 0);
        for (second, health) in [
            (0, BfdHealth::Pending),
            (9, BfdHealth::Pending),
            (10, BfdHealth::Down),
        ] {
            let mut p = ports(Some(&never));
            damper.apply(&mut p, t0 + Duration::from_secs(second));
            assert_eq!(
                p["tp"].bfd.as_ref().unwrap().health,
                health,
                "at {second} s"
            );
        }
        // Slow timers: two detection times (2 × 3 × 60 s).
        let slow = TunnelBfd {
            min_rx_ms: 60_000,
            min_tx_ms: 1000,
        };
        assert_eq!(pending_grace(&slow), Duration::from_secs(360));
    }

    /// After an agent restart the count OVS shows is a baseline, and a session that is
    /// down with flaps behind it has been up: it is Down at once, not Pending.
    #[test]
    fn the_first_look_is_a_baseline() {
        let t0 = Instant::now();
        let mut damper = BfdDamper::default();
        let mut p = ports(Some(&status("down", "Control Detection Time Expired", 40)));
        damper.apply(&mut p, t0);
        assert_eq!(p["tp"].bfd.as_ref().unwrap().health, BfdHealth::Down);
        let mut p = ports(Some(&status("up", "No Diagnostic", 41)));
        damper.apply(&mut p, t0 + Duration::from_secs(1));
        assert_eq!(p["tp"].bfd.as_ref().unwrap().health, BfdHealth::Up);
        // BFD off: forgotten; on again: a fresh start (Pending while not up yet).
        let mut off = ports(None);
        off.get_mut("tp").unwrap().bfd = None;
        damper.apply(&mut off, t0 + Duration::from_secs(2));
        assert!(damper.tunnels.is_empty());
        let mut p = ports(Some(&status("down", "No Diagnostic", 0)));
        damper.apply(&mut p, t0 + Duration::from_secs(3));
        assert_eq!(p["tp"].bfd.as_ref().unwrap().health, BfdHealth::Pending);
    }
}
