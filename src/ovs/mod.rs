//! The agent's OVS side: the model of the rows it reads ([`model`]), the pure diff
//! ([`diff`]) and the reconcile loop ([`reconcile::run`]).
//!
//! The loop is fed the node's desired TunnelPorts through a `watch` channel and reports
//! what OVS shows through another; the Kubernetes agent, the standalone mode and the
//! tests all drive it the same way:
//!
//! ```no_run
//! use remote_device_operator::ovs::{Observed, OvsConfig, PortState, run};
//! use tokio::sync::watch;
//! use tokio_util::sync::CancellationToken;
//!
//! # async fn example(tunnel_ports: Vec<remote_device_operator::api::TunnelPort>) {
//! // None until the complete desired set is known: nothing is deleted before that.
//! let (desired, desired_rx) = watch::channel(None);
//! let (observed_tx, mut observed) = watch::channel(Observed::default());
//! let shutdown = CancellationToken::new();
//! let config = OvsConfig::new("unix:/var/run/openvswitch/db.sock", "br-int");
//! let task = tokio::spawn(run(config, desired_rx, observed_tx, shutdown.clone()));
//!
//! desired.send_replace(Some(tunnel_ports));
//! while observed.changed().await.is_ok() {
//!     let o = observed.borrow_and_update();
//!     for (tunnel_port, report) in &o.ports {
//!         if report.state == PortState::Ready {
//!             println!("{tunnel_port}: {} ofport {:?}", report.interface_name, report.ofport);
//!         }
//!     }
//!     // `o.local_ports`: the workload ports on the bridge, for the flow rules.
//! }
//! shutdown.cancel(); // deletes nothing
//! let _ = task.await;
//! # }
//! ```

pub mod bfd;
pub mod diff;
pub mod model;
pub mod reconcile;

pub use bfd::{BfdDamper, BfdHealth, BfdReport, BfdSession};
pub use diff::{
    DesiredSet, DesiredTunnel, LocalPort, OWNER, OWNER_KEY, PortDiff, PortReport, PortState,
    TUNNELPORT_KEY, diff_port_set, diff_ports,
};
pub use model::OvsView;
pub use reconcile::{Observed, OvsConfig, OvsError, run};
