//! The agent's OVS side: the model of the rows it reads, the pure diff, and the reconcile
//! loop. See [`reconcile::run`] for the API the agent and the standalone mode use.

pub mod diff;
pub mod model;
pub mod reconcile;

pub use diff::{
    DesiredTunnel, LocalPort, OWNER, OWNER_KEY, Plan, PortReport, PortState, TUNNELPORT_KEY, plan,
};
pub use model::OvsView;
pub use reconcile::{Observed, OvsConfig, OvsError, run};
