//! Shared test support (each test crate uses only some of it).
#![allow(dead_code)]

pub mod agent;
pub mod cluster;
pub mod envtest;
pub mod fake_api;
pub mod netns;
pub mod node_loop;
pub mod ovs;
pub mod sandbox;
pub mod vtep;
