//! What the planner needs to know of a Node: name, labels, tunnel IPs.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Node;

use crate::api::TUNNEL_IP_ANNOTATION;
use crate::api::validate::parse_ip;

/// A node as the planner sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    /// Node name.
    pub name: String,
    /// Node UID, when known (objects from files may have none).
    pub uid: Option<String>,
    /// Node labels, for device node selectors.
    pub labels: BTreeMap<String, String>,
    /// The node's own tunnel (underlay) addresses.
    pub tunnel_ips: Vec<IpAddr>,
    /// Set when the annotation was present but unusable.
    pub issue: Option<NodeIssue>,
}

/// A node whose tunnel IP annotation could not be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeIssue {
    /// Node name.
    pub node: String,
    /// What is wrong, and what was used instead.
    pub message: String,
}

impl NodeInfo {
    /// Reads name, labels and tunnel IPs: the `remotedevice.io/tunnel-ip` annotation
    /// (comma-separated for dual stack) when present and valid, else the InternalIPs.
    pub fn from_node(node: &Node) -> Self {
        let name = node.metadata.name.clone().unwrap_or_default();
        let internal: Vec<IpAddr> = node
            .status
            .iter()
            .flat_map(|s| s.addresses.iter().flatten())
            .filter(|a| a.type_ == "InternalIP")
            .filter_map(|a| parse_ip(&a.address).ok())
            .collect();
        let annotation = node
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(TUNNEL_IP_ANNOTATION));
        let (tunnel_ips, issue) = match annotation {
            None => (internal, None),
            Some(value) => {
                let parsed: Result<Vec<IpAddr>, String> = value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(parse_ip)
                    .collect();
                match parsed {
                    Ok(ips) if !ips.is_empty() => (ips, None),
                    Ok(_) => {
                        let message = format!(
                            "annotation {TUNNEL_IP_ANNOTATION} is empty; using the InternalIP addresses"
                        );
                        (
                            internal,
                            Some(NodeIssue {
                                node: name.clone(),
                                message,
                            }),
                        )
                    }
                    Err(e) => {
                        let message = format!(
                            "annotation {TUNNEL_IP_ANNOTATION}: {e}; using the InternalIP addresses"
                        );
                        (
                            internal,
                            Some(NodeIssue {
                                node: name.clone(),
                                message,
                            }),
                        )
                    }
                }
            }
        };
        NodeInfo {
            uid: node.metadata.uid.clone(),
            labels: node.metadata.labels.clone().unwrap_or_default(),
            name,
            tunnel_ips,
            issue,
        }
    }
}
