//! What the OVS benchmarks share (included by path from `examples/` and `benches/`).

use remote_device_operator::ovs::DesiredTunnel;

/// The value after `--name` on the command line, or `default`.
pub fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `ovs-vsctl` arguments adding tunnel `d` to `bridge` exactly as the agent would (same
/// name, type and options): the baseline's half of a like-for-like comparison.
pub fn vsctl_add_port(bridge: &str, d: &DesiredTunnel) -> Vec<String> {
    let mut args = vec![
        "add-port".to_string(),
        bridge.to_string(),
        d.interface_name.clone(),
        "--".to_string(),
        "set".to_string(),
        "Interface".to_string(),
        d.interface_name.clone(),
        format!("type={}", d.tunnel_type),
    ];
    args.extend(d.options.iter().map(|(k, v)| format!("options:{k}={v}")));
    args
}
