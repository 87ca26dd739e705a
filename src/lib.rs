//! remote-device-operator: tunnels Open vSwitch nodes to devices behind remote VTEPs.
//!
//! Data flows one way: RemoteDevices and Nodes go through the pure [`plan`] into desired
//! TunnelPorts (written by the controller); each node's agent turns its TunnelPorts into
//! OVS tunnel ports and OpenFlow rules and reports what OVS shows back as status.

pub mod agent;
pub mod api;
pub mod backoff;
pub mod cli;
pub mod controller;
pub mod crd;
pub mod flows;
pub mod manifests;
pub mod ovs;
pub mod ovsdb;
pub mod plan;
pub mod sandbox;
pub mod standalone;
pub mod telemetry;
