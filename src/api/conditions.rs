//! Condition types and reasons, and the pure bookkeeping of `lastTransitionTime`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// The one condition both kinds report.
pub const READY: &str = "Ready";
/// Condition type on a RemoteDevice: selected nodes left out, with the reason (today only
/// [`device_reason::SELF_TUNNEL`]). Present only while some are.
pub const NODES_SKIPPED: &str = "NodesSkipped";

/// Condition type on a TunnelPort: whether the remote VTEP answers BFD on the tunnel.
pub const REACHABLE: &str = "Reachable";

/// Reasons of a TunnelPort's `Reachable` condition. A False one that is not [`FLAPPING`]
/// is the BFD diagnostic in CamelCase ([`diagnostic_reason`]).
///
/// [`FLAPPING`]: reachable_reason::FLAPPING
pub mod reachable_reason {
    /// True: the BFD session is up.
    pub const BFD_UP: &str = "BfdUp";
    /// Unknown: no device on the tunnel asks for BFD.
    pub const BFD_DISABLED: &str = "BfdDisabled";
    /// Unknown: BFD is on, the session has not come up yet (or the port is being made).
    pub const BFD_PENDING: &str = "BfdPending";
    /// False: the session went down and up again too often; reported so until it holds.
    pub const FLAPPING: &str = "Flapping";
    /// Unknown: the agent cannot reach OVSDB, so it cannot tell.
    pub const OVS_UNAVAILABLE: &str = "OvsUnavailable";
}

/// A BFD diagnostic as OVS writes it (`Control Detection Time Expired`) as a condition
/// reason (`ControlDetectionTimeExpired`): each word capitalized, anything but letters and
/// digits dropped; `BfdDown` when nothing is left, or when it would start with a digit.
pub fn diagnostic_reason(diagnostic: &str) -> String {
    let reason: String = diagnostic
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut chars = w.chars();
            let first = chars.next().map(|c| c.to_ascii_uppercase());
            first.into_iter().chain(chars).collect::<String>()
        })
        .collect();
    if reason.starts_with(|c: char| c.is_ascii_alphabetic()) {
        reason
    } else {
        "BfdDown".to_string()
    }
}

/// Reasons of a RemoteDevice's `Ready` condition.
pub mod device_reason {
    /// Every selected node has the tunnel up with this device's rules.
    pub const READY: &str = "TunnelsReady";
    /// Some selected nodes have not reported the tunnel up yet.
    pub const PENDING: &str = "TunnelsPending";
    /// At least one node's agent reported that OVS refused the tunnel.
    pub const TUNNEL_FAILED: &str = "TunnelFailed";
    /// The spec is invalid; nothing is planned for it.
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// Another device claims the same (VNI, MAC), or maps the VNI to another VLAN.
    pub const CONFLICT: &str = "Conflict";
    /// The node selector matches no node (other than nodes whose own VTEP this is).
    pub const NO_MATCHING_NODES: &str = "NoMatchingNodes";
    /// `NodesSkipped`: the VTEP is the tunnel IP of these selected nodes themselves.
    pub const SELF_TUNNEL: &str = "SelfTunnel";
}

/// Reasons of a TunnelPort's `Ready` condition.
pub mod tunnel_reason {
    /// OVS gave the interface an ofport and the forwarding rules are installed.
    pub const READY: &str = "PortReady";
    /// The port is written; OVS has not given it an ofport yet.
    pub const PENDING: &str = "PortPending";
    /// OVS refused the interface (ofport -1 or the Interface `error` column).
    pub const OVS_ERROR: &str = "OvsError";
    /// A port this operator does not own stands in the way (same name or same tunnel).
    pub const FOREIGN_PORT: &str = "ForeignPortConflict";
    /// The agent cannot reach OVSDB.
    pub const OVS_UNAVAILABLE: &str = "OvsUnavailable";
}

/// The condition of `type_`, if present.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether the condition of `type_` is present with status `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == "True")
}

/// Builds a condition, keeping `lastTransitionTime` from `previous` when the status did
/// not change (Kubernetes API conventions), so a resync with nothing new writes nothing new.
pub fn condition(
    previous: &[Condition],
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    observed_generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    tri_state_condition(
        previous,
        type_,
        Some(status),
        reason,
        message,
        observed_generation,
        now,
    )
}

/// Like [`condition`], for a condition that may also be `Unknown` (`status: None`).
pub fn tri_state_condition(
    previous: &[Condition],
    type_: &str,
    status: Option<bool>,
    reason: &str,
    message: String,
    observed_generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    let text = match status {
        Some(true) => "True",
        Some(false) => "False",
        None => "Unknown",
    };
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == text)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    Condition {
        type_: type_.to_string(),
        status: text.to_string(),
        reason: reason.to_string(),
        message,
        observed_generation,
        last_transition_time,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).unwrap()
    }

    #[test]
    fn transition_time_kept_while_status_holds() {
        let first = condition(&[], READY, false, "A", "m".into(), Some(1), at(100));
        assert_eq!(first.last_transition_time, Time(at(100)));
        let same = condition(
            std::slice::from_ref(&first),
            READY,
            false,
            "B",
            "n".into(),
            Some(2),
            at(200),
        );
        assert_eq!(
            same.last_transition_time,
            Time(at(100)),
            "reason change is not a transition"
        );
        let flipped = condition(&[same], READY, true, "C", "o".into(), Some(2), at(300));
        assert_eq!(flipped.last_transition_time, Time(at(300)));
        assert!(is_true(&[flipped], READY));
    }

    #[test]
    fn unknown_is_a_status_of_its_own() {
        let c = |prev: &[Condition], status, t| {
            tri_state_condition(prev, REACHABLE, status, "R", String::new(), None, at(t))
        };
        let unknown = c(&[], None, 100);
        assert_eq!(unknown.status, "Unknown");
        let still = c(std::slice::from_ref(&unknown), None, 200);
        assert_eq!(still.last_transition_time, Time(at(100)));
        let up = c(&[still], Some(true), 300);
        assert_eq!(
            (up.status.as_str(), up.last_transition_time.0),
            ("True", at(300))
        );
        let down = c(&[up], Some(false), 400);
        assert_eq!(
            (down.status.as_str(), down.last_transition_time.0),
            ("False", at(400))
        );
    }

    #[test]
    fn bfd_diagnostics_become_reasons() {
        for (diagnostic, reason) in [
            (
                "Control Detection Time Expired",
                "ControlDetectionTimeExpired",
            ),
            (
                "Neighbor Signaled Session Down",
                "NeighborSignaledSessionDown",
            ),
            ("No Diagnostic", "NoDiagnostic"),
            ("Administratively Down", "AdministrativelyDown"),
            ("path-down", "PathDown"),
            ("", "BfdDown"),
            ("  ", "BfdDown"),
            ("9 lives", "BfdDown"),
        ] {
            assert_eq!(diagnostic_reason(diagnostic), reason, "{diagnostic:?}");
        }
    }
}
