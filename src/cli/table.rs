//! Tables shaped like `kubectl get tunnelports` and `kubectl get vtepgateways`.

use std::borrow::Borrow;
use std::fmt::Write;

use crate::api::conditions::{READY, find};
use crate::api::{TunnelPort, VtepGateway};
use crate::vtep::CONNECTED;

/// Left-aligned columns separated by three spaces, like kubectl prints them.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let last = cells.len() - 1;
        for (i, cell) in cells.iter().enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                let _ = write!(out, "{cell:<width$}   ", width = widths[i]);
            }
        }
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

/// TunnelPorts as `kubectl get tunnelports` shows them; the status columns (OFPORT,
/// READY, REACHABLE) only when `with_status`, since a plan has no status yet.
pub fn tunnel_ports(ports: &[impl Borrow<TunnelPort>], with_status: bool) -> String {
    let mut header = vec!["NAME", "NODE", "REMOTE", "TYPE", "DEVICES"];
    if with_status {
        header.extend(["OFPORT", "READY", "REACHABLE"]);
    }
    let rows: Vec<Vec<String>> = ports
        .iter()
        .map(Borrow::borrow)
        .map(|tp: &TunnelPort| {
            let mut row = vec![
                tp.metadata.name.clone().unwrap_or_default(),
                tp.spec.node_name.clone(),
                tp.spec.remote_ip.clone(),
                match tp.spec.dst_port {
                    Some(port) => format!("{}:{port}", tp.spec.tunnel_type),
                    None => tp.spec.tunnel_type.to_string(),
                },
                tp.spec.devices.len().to_string(),
            ];
            if with_status {
                let status = tp.status.clone().unwrap_or_default();
                row.push(
                    status
                        .ofport
                        .map_or_else(|| "<none>".into(), |p| p.to_string()),
                );
                for type_ in [READY, crate::api::conditions::REACHABLE] {
                    let c = status.conditions.iter().find(|c| c.type_ == type_);
                    row.push(c.map_or_else(|| "<none>".into(), |c| c.status.clone()));
                }
            }
            row
        })
        .collect();
    render(&header, &rows)
}

/// VtepGateways as `kubectl get vtepgateways` shows them, without AGE: NAME, ENDPOINT,
/// SWITCH (the Physical_Switch found), VNIS (logical switches managed there), CONNECTED,
/// READY; `<none>` where the status has nothing yet.
pub fn vtep_gateways(gateways: &[VtepGateway]) -> String {
    let header = ["NAME", "ENDPOINT", "SWITCH", "VNIS", "CONNECTED", "READY"];
    let none = || "<none>".to_string();
    let rows: Vec<Vec<String>> = gateways
        .iter()
        .map(|gw| {
            let status = gw.status.as_ref();
            let conditions = status.map(|s| s.conditions.as_slice()).unwrap_or_default();
            let state =
                |type_: &str| find(conditions, type_).map_or_else(none, |c| c.status.clone());
            vec![
                gw.metadata.name.clone().unwrap_or_default(),
                gw.spec.endpoint.clone(),
                status
                    .and_then(|s| s.physical_switch.clone())
                    .unwrap_or_else(none),
                status.map_or_else(none, |s| s.logical_switch_count.to_string()),
                state(CONNECTED),
                state(READY),
            ]
        })
        .collect();
    render(&header, &rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{VtepGatewaySpec, VtepGatewayStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
    use k8s_openapi::jiff::Timestamp;

    fn gateway(name: &str, status: Option<VtepGatewayStatus>) -> VtepGateway {
        let mut gw = VtepGateway::new(
            name,
            VtepGatewaySpec {
                endpoint: "ssl:10.254.0.2:6641".into(),
                tls_secret_name: Some("tor1-client".into()),
                tunnel_ips: vec!["192.168.100.2".into()],
                physical_switch: None,
            },
        );
        gw.status = status;
        gw
    }

    fn condition(type_: &str, status: &str) -> Condition {
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: "R".into(),
            message: String::new(),
            observed_generation: None,
            last_transition_time: Time(Timestamp::UNIX_EPOCH),
        }
    }

    #[test]
    fn gateway_columns() {
        for (status, row) in [
            (
                None,
                [
                    "tor1",
                    "ssl:10.254.0.2:6641",
                    "<none>",
                    "<none>",
                    "<none>",
                    "<none>",
                ],
            ),
            (
                Some(VtepGatewayStatus {
                    conditions: vec![condition(CONNECTED, "False"), condition(READY, "False")],
                    ..VtepGatewayStatus::default()
                }),
                [
                    "tor1",
                    "ssl:10.254.0.2:6641",
                    "<none>",
                    "0",
                    "False",
                    "False",
                ],
            ),
            (
                Some(VtepGatewayStatus {
                    conditions: vec![condition(READY, "True"), condition(CONNECTED, "True")],
                    physical_switch: Some("tor1".into()),
                    logical_switch_count: 2,
                    ..VtepGatewayStatus::default()
                }),
                ["tor1", "ssl:10.254.0.2:6641", "tor1", "2", "True", "True"],
            ),
        ] {
            let out = vtep_gateways(&[gateway("tor1", status)]);
            let lines: Vec<&str> = out.lines().collect();
            assert_eq!(lines.len(), 2, "{out}");
            assert_eq!(
                lines[0].split_whitespace().collect::<Vec<_>>(),
                ["NAME", "ENDPOINT", "SWITCH", "VNIS", "CONNECTED", "READY"]
            );
            assert_eq!(
                lines[1].split_whitespace().collect::<Vec<_>>(),
                row,
                "{out}"
            );
        }
    }

    #[test]
    fn columns_align() {
        let out = render(
            &["NAME", "X"],
            &[
                vec!["a-long-name".into(), "1".into()],
                vec!["b".into(), "22".into()],
            ],
        );
        assert_eq!(out, "NAME          X\na-long-name   1\nb             22\n");
    }
}
