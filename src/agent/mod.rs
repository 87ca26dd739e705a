//! The per-node agent: makes OVS match this node's TunnelPorts and reports status.
//!
//! - [`node`]: the node loop shared with the standalone mode (OVS ports + flows).
//! - [`status`], [`decide`]: pure decisions (status, finalizers, desired set).
//! - [`kube`]: the Kubernetes I/O around them.

pub mod decide;
pub mod kube;
pub mod node;
pub mod status;
#[cfg(test)]
mod tests;

pub use node::{NodeConfig, NodeHandle, NodeView};
