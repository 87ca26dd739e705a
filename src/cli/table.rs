//! Tables shaped like `kubectl get tunnelports`.

use std::fmt::Write;

use crate::api::TunnelPort;
use crate::api::conditions::READY;

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
/// READY) only when `with_status`, since a plan has no status yet.
pub fn tunnel_ports(ports: &[TunnelPort], with_status: bool) -> String {
    let mut header = vec!["NAME", "NODE", "REMOTE", "TYPE", "DEVICES"];
    if with_status {
        header.extend(["OFPORT", "READY"]);
    }
    let rows: Vec<Vec<String>> = ports
        .iter()
        .map(|tp| {
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
                let ready = status.conditions.iter().find(|c| c.type_ == READY);
                row.push(ready.map_or_else(|| "<none>".into(), |c| c.status.clone()));
            }
            row
        })
        .collect();
    render(&header, &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

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
