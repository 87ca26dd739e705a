//! From cluster objects to what each gateway should hold (pure).
//!
//! - A RemoteDevice is *behind* a gateway when its `vtepIP` is one of the gateway's
//!   `tunnelIPs`; with an `attachment` it is bound there (port, VLAN) on its VNI.
//! - The flood list of a VNI on a gateway is the `localIP` of every TunnelPort that goes
//!   to one of the gateway's tunnel IPs over VXLAN and carries a device of that VNI: the
//!   TunnelPorts are the controller's own record of which node reaches which VTEP, so a
//!   node that joins, leaves or is relabelled changes them first and the locators follow.
//! - Two gateways claiming one tunnel IP: the older object keeps it (then the name
//!   decides), the other is told.
//!
//! Controller and standalone mode both call [`gateway_targets`].

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::api::validate::{join, validate_device, validate_gateway};
use crate::api::{DeviceKey, RemoteDevice, TunnelPort, TunnelType, VtepGateway};

use super::fabric::{Attachment, Bfd, FabricState, GatewayInput, plan_fabric_with_bfd};

impl GatewayTarget {
    /// What the switch should hold (the one place a target becomes a fabric state).
    pub fn desired(&self) -> FabricState {
        plan_fabric_with_bfd(&self.input, &self.bfd)
    }
}

/// Everything needed to run and describe one gateway's writer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GatewayTarget {
    /// The VtepGateway's name.
    pub name: String,
    /// Its `spec.endpoint`.
    pub endpoint: String,
    /// The Physical_Switch to program.
    pub switch: String,
    /// The Secret with the TLS material (`ssl:` only).
    pub tls_secret: Option<String>,
    /// Why the spec cannot be used (then no writer runs).
    pub invalid: Option<String>,
    /// What the planner is given.
    pub input: GatewayInput,
    /// Node VTEPs whose tunnel to the gateway runs BFD (from their TunnelPorts).
    pub bfd: BTreeMap<IpAddr, Bfd>,
    /// Devices bound on the gateway.
    pub devices: Vec<DeviceKey>,
    /// Devices or tunnel IPs that could not be taken, one line each.
    pub problems: Vec<String>,
}

/// A device with an attachment that no gateway answers for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unattached {
    /// The device.
    pub device: DeviceKey,
    /// Why.
    pub message: String,
}

/// Per gateway (by name) its target, plus the attached devices no gateway answers for.
pub fn gateway_targets(
    gateways: &[&VtepGateway],
    devices: &[&RemoteDevice],
    tunnel_ports: &[&TunnelPort],
) -> (BTreeMap<String, GatewayTarget>, Vec<Unattached>) {
    let mut targets = BTreeMap::new();
    // Oldest first, so the older gateway keeps a contested tunnel IP.
    let mut ordered: Vec<&VtepGateway> = gateways.to_vec();
    ordered.sort_by(|a, b| {
        let age = |g: &VtepGateway| g.metadata.creation_timestamp.as_ref().map(|t| t.0);
        age(a)
            .cmp(&age(b))
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
    let mut owner_of_ip: BTreeMap<IpAddr, String> = BTreeMap::new();
    for gw in ordered {
        let name = gw.metadata.name.clone().unwrap_or_default();
        let errors = validate_gateway(gw);
        let mut target = GatewayTarget {
            name: name.clone(),
            endpoint: gw.spec.endpoint.clone(),
            switch: gw.switch_name(),
            tls_secret: gw.spec.tls_secret_name.clone(),
            invalid: (!errors.is_empty()).then(|| join(&errors)),
            ..GatewayTarget::default()
        };
        if target.invalid.is_none() {
            for ip in gw.spec.tunnel_ips.iter().filter_map(|s| s.parse().ok()) {
                match owner_of_ip.get(&ip) {
                    Some(other) => target.problems.push(format!(
                        "tunnel IP {ip} is already claimed by VtepGateway {other}; not managed here"
                    )),
                    None => {
                        owner_of_ip.insert(ip, name.clone());
                    }
                }
            }
        }
        targets.insert(name, target);
    }

    let mut unattached = Vec::new();
    let mut sorted: Vec<&RemoteDevice> = devices.to_vec();
    sorted.sort_by_key(|d| DeviceKey::of(d));
    for device in sorted {
        let Some(attachment) = &device.spec.attachment else {
            continue;
        };
        let key = DeviceKey::of(device);
        let gateway = device
            .spec
            .vtep_ip
            .parse::<IpAddr>()
            .ok()
            .and_then(|ip| owner_of_ip.get(&ip));
        let Some(gateway) = gateway else {
            unattached.push(Unattached {
                device: key,
                message: format!(
                    "no VtepGateway has tunnel IP {}; the attachment is not programmed",
                    device.spec.vtep_ip
                ),
            });
            continue;
        };
        let target = targets.get_mut(gateway).expect("owners are targets");
        let errors = validate_device(device);
        if !errors.is_empty() {
            target
                .problems
                .push(format!("device {key}: {}", join(&errors)));
            continue;
        }
        target
            .input
            .entry(device.spec.vni)
            .or_default()
            .attachments
            .push(Attachment {
                port: attachment.port.clone(),
                vlan: attachment.vlan.unwrap_or(0),
                macs: vec![device.spec.mac_address.to_ascii_lowercase()],
            });
        target.devices.push(key);
    }

    for tp in tunnel_ports {
        if tp.metadata.deletion_timestamp.is_some() || tp.spec.tunnel_type != TunnelType::Vxlan {
            continue;
        }
        let gateway = tp
            .spec
            .remote_ip
            .parse::<IpAddr>()
            .ok()
            .and_then(|ip| owner_of_ip.get(&ip));
        let Some(target) = gateway.and_then(|g| targets.get_mut(g)) else {
            continue;
        };
        let Some(local) = tp.spec.local_ip.as_deref().and_then(|s| s.parse().ok()) else {
            target.problems.push(format!(
                "node {}: no known tunnel IP, so the switch cannot reach it",
                tp.spec.node_name
            ));
            continue;
        };
        if let Some(b) = &tp.spec.bfd {
            // Both ends of the tunnel run the same timers.
            target.bfd.insert(
                local,
                Bfd {
                    min_rx_ms: b.min_rx_ms,
                    min_tx_ms: b.min_tx_ms,
                },
            );
        }
        for device in tp.spec.devices.iter() {
            // Only VNIs with a binding here become segments; the rest is dropped by the planner.
            if let Some(segment) = target.input.get_mut(&device.vni)
                && !segment.node_vteps.contains(&local)
            {
                segment.node_vteps.push(local);
            }
        }
    }
    for target in targets.values_mut() {
        for segment in target.input.values_mut() {
            segment.node_vteps.sort();
        }
    }
    (targets, unattached)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{
        GatewayAttachment, RemoteDeviceSpec, TunnelDevice, TunnelPortSpec, VtepGatewaySpec,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;
    use std::sync::Arc;

    fn gw(name: &str, age: i64, ips: &[&str]) -> VtepGateway {
        let mut g = VtepGateway::new(
            name,
            VtepGatewaySpec {
                endpoint: "tcp:192.0.2.1:6640".into(),
                tls_secret_name: None,
                tunnel_ips: ips.iter().map(|s| s.to_string()).collect(),
                physical_switch: None,
            },
        );
        g.metadata.creation_timestamp = Some(Time(Timestamp::from_second(age).unwrap()));
        g
    }

    fn device(name: &str, vtep: &str, vni: u32, port: Option<&str>) -> RemoteDevice {
        let mut d = RemoteDevice::new(
            name,
            RemoteDeviceSpec {
                vtep_ip: vtep.into(),
                tunnel_type: TunnelType::Vxlan,
                vni,
                mac_address: "52:54:00:AA:00:01".into(),
                ips: vec![],
                dst_port: None,
                local_vlan: None,
                attachment: port.map(|p| GatewayAttachment {
                    port: p.into(),
                    vlan: Some(7),
                }),
                node_selector: None,
                bfd: None,
            },
        );
        d.metadata.namespace = Some("t".into());
        d
    }

    fn tp(node: &str, local: Option<&str>, remote: &str, vnis: &[u32]) -> TunnelPort {
        TunnelPort::new(
            &format!("{node}.{remote}"),
            TunnelPortSpec {
                node_name: node.into(),
                remote_ip: remote.into(),
                tunnel_type: TunnelType::Vxlan,
                dst_port: None,
                local_ip: local.map(str::to_string),
                devices: Arc::new(
                    vnis.iter()
                        .map(|v| TunnelDevice {
                            namespace: "t".into(),
                            name: format!("d{v}"),
                            mac_address: "52:54:00:aa:00:01".into(),
                            vni: *v,
                            ips: vec![],
                            local_vlan: None,
                        })
                        .collect(),
                ),
                bfd: None,
            },
        )
    }

    fn run(
        gws: &[VtepGateway],
        devs: &[RemoteDevice],
        tps: &[TunnelPort],
    ) -> (BTreeMap<String, GatewayTarget>, Vec<Unattached>) {
        let g: Vec<&VtepGateway> = gws.iter().collect();
        let d: Vec<&RemoteDevice> = devs.iter().collect();
        let t: Vec<&TunnelPort> = tps.iter().collect();
        gateway_targets(&g, &d, &t)
    }

    #[test]
    fn attached_devices_bind_and_tunnel_ports_become_the_flood_list() {
        let (targets, unattached) = run(
            &[gw("tor1", 1, &["192.0.2.10"])],
            &[
                device("a", "192.0.2.10", 5001, Some("p1")),
                // Behind the gateway but not attached: nothing to bind.
                device("b", "192.0.2.10", 5002, None),
            ],
            &[
                tp("n2", Some("198.51.100.2"), "192.0.2.10", &[5001, 5002]),
                {
                    let mut t = tp("n1", Some("198.51.100.1"), "192.0.2.10", &[5001]);
                    t.spec.bfd = Some(crate::api::TunnelBfd {
                        min_rx_ms: 300,
                        min_tx_ms: 500,
                    });
                    t
                },
                // To another VTEP: not this gateway's.
                tp("n3", Some("198.51.100.3"), "192.0.2.99", &[5001]),
            ],
        );
        assert!(unattached.is_empty());
        let t = &targets["tor1"];
        assert_eq!(t.switch, "tor1", "Physical_Switch defaults to the name");
        assert_eq!(t.input.len(), 1, "only the attached VNI: {:?}", t.input);
        let seg = &t.input[&5001];
        assert_eq!(seg.attachments[0].port, "p1");
        assert_eq!(seg.attachments[0].vlan, 7);
        assert_eq!(seg.attachments[0].macs, vec!["52:54:00:aa:00:01"]);
        let ips: Vec<String> = seg.node_vteps.iter().map(|i| i.to_string()).collect();
        assert_eq!(
            ips,
            vec!["198.51.100.1", "198.51.100.2"],
            "sorted, n3 excluded"
        );
        assert!(t.problems.is_empty(), "{:?}", t.problems);
        let bfd: Vec<(String, u32, u32)> = t
            .bfd
            .iter()
            .map(|(ip, b)| (ip.to_string(), b.min_rx_ms, b.min_tx_ms))
            .collect();
        assert_eq!(
            bfd,
            vec![("198.51.100.1".to_string(), 300, 500)],
            "n1's tunnel asks for BFD"
        );
        assert_eq!(t.desired().bfd.len(), 1);
    }

    #[test]
    fn contested_tunnel_ip_goes_to_the_older_gateway() {
        let (targets, _) = run(
            &[
                gw("young", 20, &["192.0.2.10"]),
                gw("old", 10, &["192.0.2.10"]),
            ],
            &[device("a", "192.0.2.10", 5001, Some("p1"))],
            &[],
        );
        assert_eq!(targets["old"].devices.len(), 1);
        assert!(targets["young"].devices.is_empty());
        assert!(targets["young"].problems[0].contains("already claimed by VtepGateway old"));
    }

    #[test]
    fn unmatched_attachments_nodes_without_ip_and_leaving_ports_are_reported_or_skipped() {
        let mut leaving = tp("n9", Some("198.51.100.9"), "192.0.2.10", &[5001]);
        leaving.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
        let (targets, unattached) = run(
            &[gw("tor1", 1, &["192.0.2.10"])],
            &[
                device("a", "192.0.2.10", 5001, Some("p1")),
                device("lost", "192.0.2.77", 5001, Some("p1")),
            ],
            &[tp("n1", None, "192.0.2.10", &[5001]), leaving],
        );
        assert_eq!(unattached.len(), 1);
        assert!(unattached[0].message.contains("192.0.2.77"));
        let t = &targets["tor1"];
        assert!(
            t.input[&5001].node_vteps.is_empty(),
            "n1 unknown, n9 leaving"
        );
        assert!(t.problems[0].contains("node n1: no known tunnel IP"));
    }

    #[test]
    fn an_invalid_gateway_runs_no_writer_and_takes_no_ip() {
        let mut bad = gw("bad", 1, &["192.0.2.10"]);
        bad.spec.endpoint = "udp:1.2.3.4:1".into();
        let (targets, unattached) =
            run(&[bad], &[device("a", "192.0.2.10", 5001, Some("p1"))], &[]);
        assert!(
            targets["bad"]
                .invalid
                .as_deref()
                .unwrap()
                .contains("spec.endpoint")
        );
        assert_eq!(unattached.len(), 1, "no gateway answers for its IP");
    }
}
