//! A VtepGateway's status from what its writer observed (pure), so a resync that finds
//! nothing new produces an equal status and writes nothing.

use k8s_openapi::jiff::Timestamp;

use crate::api::conditions::{READY, condition};
use crate::api::{
    GatewayLogicalSwitch, GatewayPortStatus, GatewayTunnelStatus, VtepGateway, VtepGatewayStatus,
};

use super::inputs::GatewayTarget;
use super::writer::GatewayObserved;

/// Condition type: an OVSDB session with the switch is up.
pub const CONNECTED: &str = "Connected";

/// Reasons of the gateway's conditions.
pub mod reason {
    /// The session is up.
    pub const CONNECTED: &str = "Connected";
    /// No session yet, or it is being re-established.
    pub const CONNECTING: &str = "Connecting";
    /// The last connection attempt failed (the message says how).
    pub const CONNECT_FAILED: &str = "ConnectFailed";
    /// The spec cannot be used.
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// The TLS Secret is missing or incomplete.
    pub const TLS_SECRET: &str = "TLSSecretUnavailable";
    /// The switch holds what the RemoteDevices ask for.
    pub const IN_SYNC: &str = "InSync";
    /// Changes are being written.
    pub const SYNCING: &str = "Syncing";
    /// The database has no Physical_Switch of that name.
    pub const SWITCH_NOT_FOUND: &str = "SwitchNotFound";
    /// Foreign rows, or contested ports or tunnel IPs, keep something from being written.
    pub const CONFLICT: &str = "Conflict";
    /// Something waits for the switch (a port not there yet, a row still in use).
    pub const PENDING: &str = "Pending";
    /// The switch refused the last transaction.
    pub const REFUSED: &str = "TransactionRefused";
    /// Not connected, so nothing can be checked.
    pub const NOT_CONNECTED: &str = "NotConnected";
}

/// Longest list kept in the status (the CRD's bounds, with room to spare).
const MAX_ITEMS: usize = 1024;
/// Longest message.
const MAX_MESSAGE: usize = 2048;

fn clip(mut s: String) -> String {
    if s.len() > MAX_MESSAGE {
        let mut end = MAX_MESSAGE;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

/// What keeps the gateway from being ready before the writer even runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Blocked {
    /// The spec is invalid (message).
    InvalidSpec(String),
    /// The TLS Secret cannot be used (message).
    TlsSecret(String),
}

/// The status of `gateway`, given its target, what blocks its writer (if anything), and
/// what the writer observed (`None` = not started).
pub fn gateway_status(
    gateway: &VtepGateway,
    target: &GatewayTarget,
    blocked: Option<&Blocked>,
    observed: Option<&GatewayObserved>,
    now: Timestamp,
) -> VtepGatewayStatus {
    let previous = gateway
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let generation = gateway.metadata.generation;
    let default = GatewayObserved::default();
    let o = observed.unwrap_or(&default);
    let (connected, c_reason, c_message) = match (blocked, observed) {
        (Some(Blocked::InvalidSpec(m)), _) => (false, reason::INVALID_SPEC, m.clone()),
        (Some(Blocked::TlsSecret(m)), _) => (false, reason::TLS_SECRET, m.clone()),
        (None, Some(o)) if o.connected => (
            true,
            reason::CONNECTED,
            format!("OVSDB session to {} is up", target.endpoint),
        ),
        (
            None,
            Some(GatewayObserved {
                last_error: Some(e),
                ..
            }),
        ) => (false, reason::CONNECT_FAILED, e.clone()),
        _ => (
            false,
            reason::CONNECTING,
            format!("connecting to {}", target.endpoint),
        ),
    };
    let (ready, r_reason, r_message) = if !connected {
        (false, reason::NOT_CONNECTED, c_message.clone())
    } else if o.switch.is_none() {
        (
            false,
            reason::SWITCH_NOT_FOUND,
            format!(
                "the database has no Physical_Switch named {:?}; set spec.physicalSwitch",
                target.switch
            ),
        )
    } else if !o.conflicts.is_empty() || !target.problems.is_empty() {
        let all: Vec<&str> = o
            .conflicts
            .iter()
            .chain(&target.problems)
            .map(String::as_str)
            .collect();
        (false, reason::CONFLICT, all.join("; "))
    } else if let Some(e) = &o.last_error {
        (false, reason::REFUSED, e.clone())
    } else if !o.pending.is_empty() {
        (false, reason::PENDING, o.pending.join("; "))
    } else if !o.in_sync {
        (
            false,
            reason::SYNCING,
            "writing changes to the switch".into(),
        )
    } else {
        (
            true,
            reason::IN_SYNC,
            format!(
                "{} logical switch(es) for {} device(s) in sync",
                o.managed.len(),
                target.devices.len()
            ),
        )
    };
    let conditions = vec![
        condition(
            previous,
            CONNECTED,
            connected,
            c_reason,
            clip(c_message),
            generation,
            now,
        ),
        condition(
            previous,
            READY,
            ready,
            r_reason,
            clip(r_message),
            generation,
            now,
        ),
    ];
    let switch = o.switch.as_ref();
    VtepGatewayStatus {
        observed_generation: generation,
        conditions,
        physical_switch: switch.map(|s| s.name.clone()),
        ports: switch
            .map(|s| {
                s.ports
                    .iter()
                    .take(MAX_ITEMS)
                    .map(|p| GatewayPortStatus {
                        name: p.name.clone(),
                        bindings: p
                            .bindings
                            .iter()
                            .map(|(vlan, ls)| format!("{vlan}={ls}"))
                            .collect(),
                        faults: p.fault_status.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        logical_switch_count: u32::try_from(o.managed.len()).unwrap_or(u32::MAX),
        logical_switches: o
            .managed
            .iter()
            .take(MAX_ITEMS)
            .map(|(vni, name)| GatewayLogicalSwitch {
                name: name.clone(),
                vni: *vni,
                flood_vteps: o.flood.get(vni).cloned().unwrap_or_default(),
            })
            .collect(),
        tunnels: o
            .tunnels
            .iter()
            .take(MAX_ITEMS)
            .map(|t| GatewayTunnelStatus {
                local_ip: t.local_ip.clone(),
                remote_ip: t.remote_ip.clone(),
                bfd_state: t.bfd_status.get("state").cloned(),
                bfd_diagnostic: t
                    .bfd_status
                    .get("diagnostic")
                    .filter(|d| !d.is_empty() && d.as_str() != "No Diagnostic")
                    .cloned(),
            })
            .collect(),
        last_error: o.last_error.clone().map(clip),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::VtepGatewaySpec;
    use crate::api::conditions::find;
    use crate::vtep::writer::SwitchStatus;

    fn gateway() -> VtepGateway {
        let mut g = VtepGateway::new(
            "tor1",
            VtepGatewaySpec {
                endpoint: "tcp:192.0.2.1:6640".into(),
                tls_secret_name: None,
                tunnel_ips: vec!["192.0.2.10".into()],
                physical_switch: None,
            },
        );
        g.metadata.generation = Some(3);
        g
    }

    fn target() -> GatewayTarget {
        GatewayTarget {
            name: "tor1".into(),
            endpoint: "tcp:192.0.2.1:6640".into(),
            switch: "tor1".into(),
            ..GatewayTarget::default()
        }
    }

    fn synced() -> GatewayObserved {
        GatewayObserved {
            connected: true,
            switch: Some(SwitchStatus {
                name: "tor1".into(),
                ..SwitchStatus::default()
            }),
            managed: [(5001, "rdo-vni-5001".to_string())].into(),
            flood: [(5001, vec!["198.51.100.1".to_string()])].into(),
            in_sync: true,
            ..GatewayObserved::default()
        }
    }

    fn reasons(s: &VtepGatewayStatus) -> (String, String) {
        (
            find(&s.conditions, CONNECTED).unwrap().reason.clone(),
            find(&s.conditions, READY).unwrap().reason.clone(),
        )
    }

    #[test]
    fn reasons_follow_what_blocks_first() {
        let now = Timestamp::UNIX_EPOCH;
        type Case = (
            &'static str,
            Option<Blocked>,
            Option<GatewayObserved>,
            (&'static str, &'static str),
        );
        let cases: Vec<Case> = vec![
            (
                "not started",
                None,
                None,
                (reason::CONNECTING, reason::NOT_CONNECTED),
            ),
            (
                "invalid spec",
                Some(Blocked::InvalidSpec("spec.endpoint: bad".into())),
                None,
                (reason::INVALID_SPEC, reason::NOT_CONNECTED),
            ),
            (
                "secret",
                Some(Blocked::TlsSecret("Secret s not found".into())),
                Some(synced()),
                (reason::TLS_SECRET, reason::NOT_CONNECTED),
            ),
            (
                "connect failed",
                None,
                Some(GatewayObserved {
                    last_error: Some("connection refused".into()),
                    ..GatewayObserved::default()
                }),
                (reason::CONNECT_FAILED, reason::NOT_CONNECTED),
            ),
            (
                "no such switch",
                None,
                Some(GatewayObserved {
                    switch: None,
                    ..synced()
                }),
                (reason::CONNECTED, reason::SWITCH_NOT_FOUND),
            ),
            (
                "foreign row",
                None,
                Some(GatewayObserved {
                    conflicts: vec!["p1 VLAN 7 is bound to a foreign logical switch".into()],
                    ..synced()
                }),
                (reason::CONNECTED, reason::CONFLICT),
            ),
            (
                "refused",
                None,
                Some(GatewayObserved {
                    last_error: Some("constraint violation".into()),
                    ..synced()
                }),
                (reason::CONNECTED, reason::REFUSED),
            ),
            (
                "pending",
                None,
                Some(GatewayObserved {
                    pending: vec!["port p9 not on the switch yet".into()],
                    ..synced()
                }),
                (reason::CONNECTED, reason::PENDING),
            ),
            (
                "syncing",
                None,
                Some(GatewayObserved {
                    in_sync: false,
                    ..synced()
                }),
                (reason::CONNECTED, reason::SYNCING),
            ),
            (
                "in sync",
                None,
                Some(synced()),
                (reason::CONNECTED, reason::IN_SYNC),
            ),
        ];
        for (name, blocked, observed, (c, r)) in cases {
            let s = gateway_status(
                &gateway(),
                &target(),
                blocked.as_ref(),
                observed.as_ref(),
                now,
            );
            assert_eq!(reasons(&s), (c.to_string(), r.to_string()), "{name}");
            assert_eq!(s.observed_generation, Some(3), "{name}");
        }
    }

    #[test]
    fn in_sync_status_lists_what_the_switch_holds_and_is_stable() {
        let mut g = gateway();
        let first = gateway_status(&g, &target(), None, Some(&synced()), Timestamp::UNIX_EPOCH);
        assert_eq!(first.logical_switch_count, 1);
        assert_eq!(first.logical_switches[0].flood_vteps, vec!["198.51.100.1"]);
        assert_eq!(first.physical_switch.as_deref(), Some("tor1"));
        g.status = Some(first.clone());
        let later = Timestamp::from_second(100).unwrap();
        let again = gateway_status(&g, &target(), None, Some(&synced()), later);
        assert_eq!(again, first, "nothing new → an equal status (no write)");
    }

    #[test]
    fn target_problems_make_it_not_ready() {
        let t = GatewayTarget {
            problems: vec!["tunnel IP 192.0.2.10 is already claimed".into()],
            ..target()
        };
        let s = gateway_status(&gateway(), &t, None, Some(&synced()), Timestamp::UNIX_EPOCH);
        let ready = find(&s.conditions, READY).unwrap();
        assert_eq!(ready.reason, reason::CONFLICT);
        assert!(ready.message.contains("already claimed"));
    }
}
