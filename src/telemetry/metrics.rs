//! The Prometheus metrics of both components, in one registry.

use std::sync::Arc;
use std::time::Duration;

use std::fmt::Write as _;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

pub use crate::failure::ErrorKind;

/// Which kind of write went to the API server.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum WriteKind {
    /// Server-side apply of a TunnelPort.
    Apply,
    /// Deletion of a TunnelPort.
    Delete,
    /// Removal of the agent's finalizer (by the agent once the OVS port is gone, or by the
    /// controller when the TunnelPort's node is gone).
    ReleaseFinalizer,
    /// The agent's finalizer put on a TunnelPort (while its OVS port is created).
    AddFinalizer,
    /// Status of a RemoteDevice or TunnelPort.
    Status,
    /// A Kubernetes Event.
    Event,
}

/// State of a TunnelPort, as its Ready condition says.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
pub enum TunnelPortState {
    /// Ready for the current generation.
    Ready,
    /// Not reported yet, or not Ready for a reason that may pass.
    Pending,
    /// OVS refused the port.
    Failed,
}

impl TunnelPortState {
    /// Every state, so gauges of absent states are reset to zero.
    pub const ALL: [TunnelPortState; 3] = [
        TunnelPortState::Ready,
        TunnelPortState::Pending,
        TunnelPortState::Failed,
    ];
}

/// What a TunnelPort's BFD session says of the remote VTEP (its `Reachable` condition).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
pub enum TunnelReachability {
    /// The BFD session is up.
    Up,
    /// The BFD session is down.
    Down,
    /// The session flapped and is held as flapping until it is stable.
    Flapping,
    /// BFD is on; no answer yet.
    Pending,
    /// The tunnel runs no BFD.
    Disabled,
    /// OVSDB is out of reach: nothing is known.
    Unknown,
}

/// Lower-case label values, as Prometheus conventions have them.
macro_rules! label_values {
    ($($ty:ty { $($variant:ident => $text:literal),+ $(,)? })+) => {$(
        impl EncodeLabelValue for $ty {
            fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
                encoder.write_str(match self { $(<$ty>::$variant => $text),+ })
            }
        }
    )+};
}

label_values! {
    ErrorKind { Conflict => "conflict", Server => "server", Client => "client", Timeout => "timeout", Other => "other" }
    WriteKind { Apply => "apply", Delete => "delete", ReleaseFinalizer => "release_finalizer", AddFinalizer => "add_finalizer", Status => "status", Event => "event" }
    TunnelPortState { Ready => "ready", Pending => "pending", Failed => "failed" }
    TunnelReachability { Up => "up", Down => "down", Flapping => "flapping", Pending => "pending", Disabled => "disabled", Unknown => "unknown" }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: ErrorKind,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WriteLabel {
    kind: WriteKind,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabel {
    version: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TunnelLabel {
    tunnel_port: String,
    state: TunnelPortState,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReachLabel {
    tunnel_port: String,
    state: TunnelReachability,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: TunnelPortState,
}

/// Handles on every metric; cheap to clone, shared by the component and the HTTP server.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    reconciles: Counter,
    errors: Family<KindLabel, Counter>,
    duration: Histogram,
    writes: Family<WriteLabel, Counter>,
    tunnel_ports: Family<StateLabel, Gauge>,
    tunnel_state: Family<TunnelLabel, Gauge>,
    tunnel_reachable: Family<ReachLabel, Gauge>,
    ovsdb_reconnects: Counter,
    flow_monitor_up: Gauge,
    flow_monitor_failures: Counter,
    events_dropped: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Registers `metric` under `name` and hands it back.
fn registered<M: prometheus_client::registry::Metric + Clone>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    metric: M,
) -> M {
    registry.register(name, help, metric.clone());
    metric
}

/// `build_info{version}`: always 1, so dashboards can show which build runs.
fn register_build_info(registry: &mut Registry) {
    let build_info: Family<BuildLabel, Gauge> = registered(
        registry,
        "build_info",
        "Always 1; the labels say which build runs",
        Family::default(),
    );
    build_info
        .get_or_create(&BuildLabel {
            version: env!("CARGO_PKG_VERSION"),
        })
        .set(1);
}

/// Prefix of every metric name.
pub const METRIC_PREFIX: &str = "remote_device_operator";

impl Metrics {
    /// A fresh registry for tests and embedding, labelled `component="test"`.
    pub fn new() -> Self {
        Self::for_component("test")
    }

    /// A fresh registry with every metric registered, each name prefixed with
    /// [`METRIC_PREFIX`] and labelled `component` (the controller and the agent count
    /// different things under the same names), plus `build_info`.
    pub fn for_component(component: &'static str) -> Self {
        let mut registry = Registry::with_prefix_and_labels(
            METRIC_PREFIX,
            [(
                std::borrow::Cow::Borrowed("component"),
                std::borrow::Cow::Borrowed(component),
            )]
            .into_iter(),
        );
        register_build_info(&mut registry);
        let r = &mut registry;
        Metrics {
            reconciles: registered(
                r,
                "reconciles",
                "Reconcile passes run (successful or not)",
                Counter::default(),
            ),
            errors: registered(
                r,
                "reconcile_errors",
                "Failed reconcile passes and writes, by kind of failure",
                Family::default(),
            ),
            // 1 ms .. ~33 s.
            duration: registered(
                r,
                "reconcile_duration_seconds",
                "Duration of one reconcile pass",
                Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            ),
            writes: registered(
                r,
                "api_writes",
                "Successful writes to the Kubernetes API, by kind",
                Family::default(),
            ),
            tunnel_ports: registered(
                r,
                "tunnelports",
                "TunnelPorts by state of their Ready condition",
                Family::default(),
            ),
            // Per TunnelPort only where they are few: the agent (its node's tunnels).
            tunnel_state: registered(
                r,
                "tunnel_state",
                "1 for the state of each of this node's TunnelPorts (agent only)",
                Family::default(),
            ),
            tunnel_reachable: registered(
                r,
                "tunnel_reachable",
                "1 for the BFD state of each of this node's TunnelPorts: up, down, flapping, pending, disabled or unknown (agent only)",
                Family::default(),
            ),
            ovsdb_reconnects: registered(
                r,
                "ovsdb_reconnects",
                "Reconnections to ovsdb-server after the first connection",
                Counter::default(),
            ),
            flow_monitor_up: registered(
                r,
                "flow_monitor_up",
                "1 while the agent's ovs-ofctl flow monitor runs (else the owned flows are dumped every check interval)",
                Gauge::default(),
            ),
            flow_monitor_failures: registered(
                r,
                "flow_monitor_failures",
                "Times the agent's flow monitor could not start or ended",
                Counter::default(),
            ),
            events_dropped: registered(
                r,
                "events_dropped",
                "Kubernetes Events not published because they went over the event budget",
                Counter::default(),
            ),
            registry: Arc::new(registry),
        }
    }

    /// Counts one reconcile pass and its duration.
    pub fn reconciled(&self, took: Duration) {
        self.reconciles.inc();
        self.duration.observe(took.as_secs_f64());
    }

    /// Counts one failure.
    pub fn error(&self, kind: ErrorKind) {
        self.errors.get_or_create(&KindLabel { kind }).inc();
    }

    /// Counts one Event dropped over the event budget.
    pub fn event_dropped(&self) {
        self.events_dropped.inc();
    }

    /// Events dropped over the event budget so far.
    pub fn events_dropped(&self) -> u64 {
        self.events_dropped.get()
    }

    /// Counts one successful write.
    pub fn write(&self, kind: WriteKind) {
        self.writes.get_or_create(&WriteLabel { kind }).inc();
    }

    /// Sets the number of TunnelPorts in each state (states not given are set to 0).
    pub fn set_tunnel_ports(&self, counts: &[(TunnelPortState, i64)]) {
        for state in TunnelPortState::ALL {
            let n = counts
                .iter()
                .filter(|(s, _)| *s == state)
                .map(|(_, n)| n)
                .sum();
            self.tunnel_ports
                .get_or_create(&StateLabel { state })
                .set(n);
        }
    }

    /// Sets the state of each TunnelPort (and the totals per state); TunnelPorts not given
    /// disappear from the per-tunnel gauge.
    pub fn set_tunnel_states(&self, states: &[(String, TunnelPortState)]) {
        let counts: Vec<(TunnelPortState, i64)> = states.iter().map(|(_, s)| (*s, 1)).collect();
        self.set_tunnel_ports(&counts);
        self.tunnel_state.clear();
        for (name, state) in states {
            self.tunnel_state
                .get_or_create(&TunnelLabel {
                    tunnel_port: name.clone(),
                    state: *state,
                })
                .set(1);
        }
    }

    /// Sets the BFD state of each TunnelPort; TunnelPorts not given disappear from the gauge.
    pub fn set_tunnel_reachability(&self, states: &[(String, TunnelReachability)]) {
        self.tunnel_reachable.clear();
        for (name, state) in states {
            self.tunnel_reachable
                .get_or_create(&ReachLabel {
                    tunnel_port: name.clone(),
                    state: *state,
                })
                .set(1);
        }
    }

    /// Counts one reconnection to ovsdb-server.
    pub fn ovsdb_reconnected(&self) {
        self.ovsdb_reconnects.inc();
    }

    /// Sets whether the flow monitor runs and the number of its failures so far (a
    /// counter only grows: a smaller number is ignored).
    pub fn set_flow_monitor(&self, up: bool, failures: u64) {
        self.flow_monitor_up.set(i64::from(up));
        let seen = self.flow_monitor_failures.get();
        if failures > seen {
            self.flow_monitor_failures.inc_by(failures - seen);
        }
    }

    /// Reconcile passes so far.
    pub fn reconciles(&self) -> u64 {
        self.reconciles.get()
    }

    /// Failures of `kind` so far.
    pub fn errors(&self, kind: ErrorKind) -> u64 {
        self.errors.get_or_create(&KindLabel { kind }).get()
    }

    /// Successful writes of `kind` so far.
    pub fn writes(&self, kind: WriteKind) -> u64 {
        self.writes.get_or_create(&WriteLabel { kind }).get()
    }

    /// The OpenMetrics text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_every_metric_with_its_labels() {
        let m = Metrics::new();
        m.reconciled(Duration::from_millis(3));
        m.error(ErrorKind::Conflict);
        m.write(WriteKind::Apply);
        m.set_tunnel_states(&[("gone".into(), TunnelPortState::Ready)]);
        m.set_tunnel_states(&[("n1.vxlan.192-0-2-10".into(), TunnelPortState::Failed)]);
        m.set_tunnel_ports(&[(TunnelPortState::Ready, 2), (TunnelPortState::Failed, 1)]);
        m.set_tunnel_reachability(&[("gone".into(), TunnelReachability::Up)]);
        m.set_tunnel_reachability(&[
            ("n1.vxlan.192-0-2-10".into(), TunnelReachability::Flapping),
            ("n1.vxlan.192-0-2-11".into(), TunnelReachability::Disabled),
        ]);
        m.ovsdb_reconnected();
        m.set_flow_monitor(false, 2);
        m.set_flow_monitor(false, 1);
        let text = m.encode();
        let version = env!("CARGO_PKG_VERSION");
        for line in [
            "remote_device_operator_reconciles_total{component=\"test\"} 1".to_string(),
            "remote_device_operator_reconcile_errors_total{component=\"test\",kind=\"conflict\"} 1"
                .into(),
            "remote_device_operator_reconcile_duration_seconds_count{component=\"test\"} 1".into(),
            "remote_device_operator_api_writes_total{component=\"test\",kind=\"apply\"} 1".into(),
            "remote_device_operator_tunnelports{component=\"test\",state=\"ready\"} 2".into(),
            "remote_device_operator_tunnelports{component=\"test\",state=\"pending\"} 0".into(),
            "remote_device_operator_tunnelports{component=\"test\",state=\"failed\"} 1".into(),
            "remote_device_operator_ovsdb_reconnects_total{component=\"test\"} 1".into(),
            "remote_device_operator_flow_monitor_up{component=\"test\"} 0".into(),
            "remote_device_operator_tunnel_state{component=\"test\",tunnel_port=\"n1.vxlan.192-0-2-10\",state=\"failed\"} 1".into(),
            "remote_device_operator_flow_monitor_failures_total{component=\"test\"} 2".into(),
            "remote_device_operator_tunnel_reachable{component=\"test\",tunnel_port=\"n1.vxlan.192-0-2-10\",state=\"flapping\"} 1".into(),
            "remote_device_operator_tunnel_reachable{component=\"test\",tunnel_port=\"n1.vxlan.192-0-2-11\",state=\"disabled\"} 1".into(),
            format!(
                "remote_device_operator_build_info{{component=\"test\",version=\"{version}\"}} 1"
            ),
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line:?} missing in:\n{text}"
            );
        }
        assert!(!text.contains("tunnel_port=\"gone\""), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }
}
