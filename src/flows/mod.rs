//! OpenFlow rules that carry local workloads' traffic to remote devices and back.
//!
//! Three layers, like the rest of the crate:
//! - [`desired_flows`] (pure): devices, tunnel ofports and local workload ports → the
//!   complete set of owned flows ([`FlowPlan`], kept per owner). The agent keeps a
//!   [`FlowPlanner`], the same planner with a memory, so a change costs what changed.
//! - [`diff`] (pure): desired flows vs the owned flows `ovs-ofctl dump-flows` shows (or
//!   [`diff_plans`]: vs the plan OVS is known to hold, owner by owner) → the lines of one
//!   atomic `ovs-ofctl --bundle` transaction. Both sides are compared as
//!   [`typed`] values (parsed, normalised matches and actions), so another spelling of
//!   the same flow by another OVS version is the same flow.
//! - [`sync`] (effectful): a loop that dumps, diffs and applies, on every change of the
//!   desired plan and whenever the flow monitor reports a change on the bridge (every
//!   second while the monitor is down), so drift is repaired quickly.
//!
//! The flow layout (tables, priorities, register, conjunctions) and the reasons for it
//! are described in `docs/forwarding.md`.

mod desired;
pub mod diff;
mod monitor;
mod planner;
pub mod sync;
#[cfg(test)]
mod tests;
pub mod typed;

pub use desired::{
    DeviceState, Flow, FlowInput, FlowKey, FlowPlan, OwnedFlows, Owner, Segment, TunnelFlowsInput,
    WorkloadPort, desired_flows,
};
pub use diff::{FlowDiff, ObservedFlow, diff, diff_plans, parse_dump};
pub use planner::FlowPlanner;
pub use sync::{FlowSync, FlowSyncConfig, FlowSyncError, MonitorState, SyncOutcome, SyncStatus};
pub use typed::{Action, Actions, Match};

/// High 32 bits of the cookie of every flow this agent owns ("RDOF").
pub const COOKIE_TAG: u64 = 0x5244_4f46_0000_0000;
/// Mask selecting [`COOKIE_TAG`]: `dump-flows cookie=<tag>/<mask>` lists exactly the owned
/// flows. The low 32 bits identify the owner (a device, a tunnel, a segment).
pub const COOKIE_MASK: u64 = 0xffff_ffff_0000_0000;

/// Table every packet enters; we only add precise flows above everybody's usual priorities.
pub const TABLE_CLASSIFY: u8 = 0;
/// Owned table for packets from a local workload port that are ours (device MAC or an
/// ARP/ND question about a device IP): responders and the tunnel egress.
pub const TABLE_FROM_LOCAL: u8 = 230;
/// Owned table delivering packets that came from a device to the local ports of its segment.
pub const TABLE_TO_LOCAL: u8 = 231;
/// Owned table finishing neighbour advertisements built by the responder (only reached
/// from it, so advertisements sent by workloads never get here).
pub const TABLE_ND_REPLY: u8 = 232;

/// Table 0: traffic from a tunnel, from a known device (tun_id + source MAC).
pub const PRIORITY_INGRESS: u16 = 60010;
/// Table 0: anything else arriving on one of our tunnel ports is dropped (no loops, no
/// spoofed sources).
pub const PRIORITY_TUNNEL_DROP: u16 = 60005;
/// Table 0: the conjunctive match (local port of a segment) × (device MAC / device IP).
pub const PRIORITY_CLASSIFY: u16 = 60000;
/// TABLE_FROM_LOCAL: ARP and neighbour answers (above plain unicast to the device MAC).
pub const PRIORITY_RESPONDER: u16 = 200;
/// TABLE_FROM_LOCAL: unicast to the device MAC → tunnel.
pub const PRIORITY_EGRESS: u16 = 100;
/// TABLE_TO_LOCAL: output to the segment's local ports.
pub const PRIORITY_DELIVER: u16 = 100;

/// The register carrying the segment between our tables (only ever written on packets
/// that our flows have taken over).
pub const SEGMENT_REGISTER: &str = "reg6";
/// Its NXM name, for `load:` actions.
pub const SEGMENT_REGISTER_NXM: &str = "NXM_NX_REG6[]";
/// Conjunction ids are `CONJ_ID_BASE + segment id`, far from small ids others may use.
pub const CONJ_ID_BASE: u32 = 0x5244_0000;

/// OpenFlow version for every ovs-ofctl call: bundles need 1.4, and using one version
/// for both writing and dumping keeps the printed form of our flows stable.
pub const OPENFLOW_VERSION: &str = "OpenFlow14";
