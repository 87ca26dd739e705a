//! BFD (RFC 5880) on the tunnels: what a RemoteDevice asks for, what a TunnelPort carries
//! to the agent, and what the agent reports back.
//!
//! OVS runs BFD per tunnel interface (`bfd:enable=true`, state in `bfd_status`); its
//! control packets travel inside the tunnel with VNI 0, so the tunnel keeps
//! `options:key=flow`. OVS's defaults are a 1000 ms receive interval and a detection
//! multiplier of 3: a dead VTEP is noticed after about 3 s.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::RemoteDeviceSpec;

/// Default of `minRxMs` and `minTxMs`, in milliseconds (OVS's `bfd:min_rx` default).
pub const DEFAULT_BFD_INTERVAL_MS: u32 = 1000;
/// Smallest BFD interval accepted, in milliseconds.
pub const MIN_BFD_INTERVAL_MS: u32 = 100;
/// Largest BFD interval accepted, in milliseconds.
pub const MAX_BFD_INTERVAL_MS: u32 = 60_000;
/// OVS's detection multiplier (`bfd:mult`, left at its default): a session goes down after
/// this many receive intervals without a control packet.
pub const BFD_DETECT_MULTIPLIER: u32 = 3;

/// Longest `state` / `remoteState` in a TunnelPort's `status.bfd`.
pub const MAX_BFD_STATE_LEN: usize = 32;
/// Longest `diagnostic` in a TunnelPort's `status.bfd`.
pub const MAX_BFD_DIAGNOSTIC_LEN: usize = 128;

/// BFD on the tunnels that carry a RemoteDevice.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceBfd {
    /// Run BFD on every node's tunnel to this device's VTEP. Default: true when the device
    /// has an `attachment` (it sits behind a managed VtepGateway, whose switch the operator
    /// also tells to run BFD), false otherwise (an unmanaged VTEP may not speak BFD, and
    /// the tunnel would show unreachable for ever).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Shortest interval, in milliseconds, at which the node offers to receive BFD control
    /// packets (OVS `bfd:min_rx`), 100..60000; default 1000. A VTEP is declared down after
    /// 3 intervals without one.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "optional_integer"
    )]
    #[schemars(range(min = 100, max = 60000))]
    pub min_rx_ms: Option<u32>,
    /// Shortest interval, in milliseconds, at which the node is willing to send BFD control
    /// packets (OVS `bfd:min_tx`), 100..60000; default 1000.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "optional_integer"
    )]
    #[schemars(range(min = 100, max = 60000))]
    pub min_tx_ms: Option<u32>,
}

/// BFD on one tunnel, as the controller asks the node's agent for it: present = on.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct TunnelBfd {
    /// OVS `bfd:min_rx`, in milliseconds: the fastest any device on the tunnel asks for.
    #[schemars(range(min = 100, max = 60000))]
    pub min_rx_ms: u32,
    /// OVS `bfd:min_tx`, in milliseconds: the fastest any device on the tunnel asks for.
    #[schemars(range(min = 100, max = 60000))]
    pub min_tx_ms: u32,
}

impl TunnelBfd {
    /// The OVS Interface `bfd` column for these timers.
    pub fn ovs_column(&self) -> std::collections::BTreeMap<String, String> {
        [
            ("enable", "true".to_string()),
            ("min_rx", self.min_rx_ms.to_string()),
            ("min_tx", self.min_tx_ms.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// About how long a dead remote takes to be noticed: the receive interval times OVS's
    /// multiplier (the remote may send slower than we offer to receive; then it is longer).
    pub fn detection_time_ms(&self) -> u64 {
        u64::from(self.min_rx_ms.max(self.min_tx_ms)) * u64::from(BFD_DETECT_MULTIPLIER)
    }
}

/// The BFD a device asks for, with the defaults applied: `None` = off. Off by default
/// unless the device has a gateway `attachment`.
pub fn device_bfd(spec: &RemoteDeviceSpec) -> Option<TunnelBfd> {
    let bfd = spec.bfd.clone().unwrap_or_default();
    if !bfd.enabled.unwrap_or(spec.attachment.is_some()) {
        return None;
    }
    Some(TunnelBfd {
        min_rx_ms: bfd.min_rx_ms.unwrap_or(DEFAULT_BFD_INTERVAL_MS),
        min_tx_ms: bfd.min_tx_ms.unwrap_or(DEFAULT_BFD_INTERVAL_MS),
    })
}

/// BFD of one tunnel from what the devices it carries ask for: on when any of them has it
/// on; each timer the smallest (fastest) asked for, so no device gets slower detection
/// than it asked for.
pub fn tunnel_bfd(asks: impl IntoIterator<Item = Option<TunnelBfd>>) -> Option<TunnelBfd> {
    asks.into_iter().flatten().reduce(|a, b| TunnelBfd {
        min_rx_ms: a.min_rx_ms.min(b.min_rx_ms),
        min_tx_ms: a.min_tx_ms.min(b.min_tx_ms),
    })
}

/// The BFD session of a tunnel as OVS reports it (`bfd_status`), in the TunnelPort status.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TunnelBfdStatus {
    /// Local session state: `admin_down`, `down`, `init` or `up`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub state: Option<String>,
    /// The remote VTEP's session state, as it last told us.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub remote_state: Option<String>,
    /// Why the local session last changed state (RFC 5880 4.1, in OVS's words, e.g.
    /// `Control Detection Time Expired`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub diagnostic: Option<String>,
    /// OVS's own count of changes of the session's forwarding state since BFD started on
    /// the interface (`bfd_status:flap_count`). While the tunnel is reported `Flapping`,
    /// these fields keep the values of the moment the flapping was detected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flap_count: Option<u64>,
}

/// An optional integer read as the API server reads it: `null` is unset, and a number
/// with a zero fraction (`1000.0`) is an integer.
fn optional_integer<'de, D>(d: D) -> Result<Option<u32>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    use serde::de::Error;
    let Some(number) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    let value: Option<i128> = if let Some(u) = number.as_u64() {
        Some(u.into())
    } else if let Some(i) = number.as_i64() {
        Some(i.into())
    } else {
        number
            .as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 1e30)
            .map(|f| f as i128)
    };
    let value = value
        .ok_or_else(|| D::Error::custom(format!("invalid type: {number} is not an integer")))?;
    u32::try_from(value).map(Some).map_err(|_| {
        D::Error::custom(format!(
            "invalid value: {value} is out of range {MIN_BFD_INTERVAL_MS}..{MAX_BFD_INTERVAL_MS}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(rx: u32, tx: u32) -> TunnelBfd {
        TunnelBfd {
            min_rx_ms: rx,
            min_tx_ms: tx,
        }
    }

    /// What the devices on a tunnel ask for → what the tunnel runs.
    #[test]
    fn a_tunnel_runs_bfd_when_any_device_asks_with_the_fastest_timers() {
        let cases: Vec<(Vec<Option<TunnelBfd>>, Option<TunnelBfd>)> = vec![
            (vec![], None),
            (vec![None], None),
            (vec![None, None], None),
            (vec![Some(t(1000, 1000))], Some(t(1000, 1000))),
            (vec![None, Some(t(300, 1000)), None], Some(t(300, 1000))),
            // Each timer on its own: the fastest receive and the fastest send.
            (
                vec![Some(t(300, 1000)), Some(t(1000, 200))],
                Some(t(300, 200)),
            ),
            (
                vec![Some(t(500, 500)), None, Some(t(60000, 100))],
                Some(t(500, 100)),
            ),
        ];
        for (i, (asks, want)) in cases.into_iter().enumerate() {
            let forward = tunnel_bfd(asks.clone());
            assert_eq!(forward, want, "case {i}");
            assert_eq!(
                tunnel_bfd(asks.into_iter().rev()),
                want,
                "case {i} reversed"
            );
        }
    }

    #[test]
    fn a_device_runs_bfd_by_default_only_behind_a_managed_gateway() {
        let spec = |extra: serde_json::Value| -> RemoteDeviceSpec {
            let mut v = serde_json::json!({
                "vtepIP": "192.0.2.50", "vni": 5001, "macAddress": "52:54:00:00:00:01",
            });
            v.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            serde_json::from_value(v).unwrap()
        };
        let attached = serde_json::json!({"attachment": {"port": "eth1"}});
        let cases: Vec<(serde_json::Value, Option<TunnelBfd>)> = vec![
            (serde_json::json!({}), None),
            (attached.clone(), Some(t(1000, 1000))),
            (serde_json::json!({"bfd": {}}), None),
            (
                serde_json::json!({"bfd": {"enabled": true}}),
                Some(t(1000, 1000)),
            ),
            (serde_json::json!({"bfd": {"minRxMs": 300}}), None),
            (
                serde_json::json!({"bfd": {"enabled": true, "minRxMs": 300, "minTxMs": 200.0}}),
                Some(t(300, 200)),
            ),
            (
                serde_json::json!({"attachment": {"port": "eth1"}, "bfd": {"enabled": false}}),
                None,
            ),
            (
                serde_json::json!({"attachment": {"port": "eth1"}, "bfd": {"minTxMs": 100}}),
                Some(t(1000, 100)),
            ),
        ];
        for (i, (extra, want)) in cases.into_iter().enumerate() {
            assert_eq!(device_bfd(&spec(extra)), want, "case {i}");
        }
        assert_eq!(t(1000, 1000).detection_time_ms(), 3000);
        assert_eq!(
            t(300, 200).ovs_column(),
            [("enable", "true"), ("min_rx", "300"), ("min_tx", "200")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        );
    }
}
