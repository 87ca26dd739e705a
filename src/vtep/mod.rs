//! Managing the remote end: a hardware VTEP (top-of-rack switch) programmed through its
//! OVSDB `hardware_vtep` database (`vtep(5)`), as ovn-controller-vtep and networking-l2gw
//! do.
//!
//! - [`fabric`] (pure): what the caller knows (per VNI: device attachments, node VTEPs,
//!   workload MACs) → the protocol-neutral desired [`FabricState`] of one gateway, which a
//!   later BGP-EVPN writer can consume unchanged.
//! - [`model`]: the hardware_vtep rows read from the monitor replica, typed.
//! - [`diff`] (pure): desired × observed → one transaction; ownership rules are there.
//! - [`writer`]: the loop over an OVSDB [`crate::ovsdb::Session`] that applies the diff on
//!   every change and reports what the switch shows.
//! - [`inputs`] (pure): VtepGateways, RemoteDevices and TunnelPorts → each gateway's
//!   target (connection settings and [`GatewayInput`]); shared by controller and standalone.
//! - [`status`] (pure): what a writer observed → the VtepGateway's status.
//! - [`fleet`]: one running writer per gateway, restarted when its settings change.
//!
//! ```no_run
//! use remote_device_operator::vtep::{GatewayConfig, GatewayObserved, plan_fabric, run};
//! use tokio::sync::watch;
//! use tokio_util::sync::CancellationToken;
//!
//! # async fn example(input: remote_device_operator::vtep::GatewayInput) {
//! let (desired, desired_rx) = watch::channel(None); // None = unknown: touch nothing
//! let (observed_tx, observed) = watch::channel(GatewayObserved::default());
//! let config = GatewayConfig { endpoint: "tcp:192.0.2.10:6640".into(), switch: "tor1".into(), tls: None };
//! let task = tokio::spawn(run(config, desired_rx, observed_tx, CancellationToken::new()));
//! desired.send_replace(Some(plan_fabric(&input))); // the complete desired state
//! # let _ = (task, observed);
//! # }
//! ```

pub mod diff;
pub mod fabric;
pub mod fleet;
pub mod inputs;
pub mod model;
pub mod status;
pub mod writer;

#[cfg(test)]
mod tests;

pub use diff::{OWNER, OWNER_KEY, VNI_KEY, VtepPlan, is_owned, logical_switch_name, plan};
pub use fabric::{
    Attachment, Bfd, FabricState, GatewayInput, Mac, PortVlan, Segment, SegmentInput, Vni,
    plan_fabric, plan_fabric_with_bfd,
};
pub use fleet::Fleet;
pub use inputs::{GatewayTarget, Unattached, gateway_targets};
pub use model::{DATABASE, VtepView, monitor_requests};
pub use status::{Blocked, CONNECTED, gateway_status};
pub use writer::{GatewayConfig, GatewayError, GatewayObserved, SwitchStatus, TunnelStatus, run};
