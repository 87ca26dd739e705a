//! remote-device-operator: tunnels Open vSwitch nodes to devices behind remote VTEPs.
//!
//! RemoteDevices and Nodes go through the pure tunnel [`planner`] into desired TunnelPorts
//! (written by the controller); each node's agent feeds its TunnelPorts and what OVS shows
//! into the pure lifecycle step ([`agent::lifecycle`]), which decides the OVS tunnel ports
//! and OpenFlow rules to hold and what to report back as status. That last part is a
//! cycle by nature: what OVS confirmed decides what may be removed next.

pub mod agent;
pub mod api;
pub mod backoff;
pub mod cli;
pub mod controller;
pub mod crd;
pub mod envvars;
pub mod events;
pub mod failure;
pub mod flows;
pub mod manifests;
pub mod ovs;
pub mod ovsdb;
pub mod pacing;
pub mod planner;
pub mod standalone;
pub mod telemetry;
pub mod vtep;
