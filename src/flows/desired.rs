//! The pure flow planner: what OVS should hold, from devices, tunnel ofports and ports.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::typed::Match;
use super::*;
use crate::api::validate::{format_mac, parse_device_ip, parse_mac};
use crate::api::{DeviceKey, TunnelDevice};

/// Highest ofport OpenFlow gives a real port (above are reserved numbers such as LOCAL).
const MAX_PHYSICAL_OFPORT: i64 = 0xfeff;
// The same limits as the API's (a TunnelPort may have been written by hand).
use crate::api::validate::{MAX_VLAN, MAX_VNI};

/// One tunnel port of this node and the devices behind it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TunnelFlowsInput {
    /// OVS port (and interface) name of the tunnel.
    pub interface_name: String,
    /// The ofport OVS gave it; only a valid one (1..=0xfeff) gets flows, so no flow ever
    /// points at a tunnel OVS has not numbered yet (or has refused, `-1`).
    pub ofport: i64,
    /// The devices behind the tunnel's remote VTEP that this node needs (the TunnelPort's
    /// own list, shared).
    pub devices: Arc<Vec<TunnelDevice>>,
}

/// A local workload port (any bridge port that is not one of our tunnels) and its OVS
/// Port `tag`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WorkloadPort {
    /// Its ofport (ports without a valid one are ignored).
    pub ofport: i64,
    /// The Port `tag`; `None` = untagged.
    pub vlan: Option<u16>,
}

/// Everything the planner looks at.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowInput {
    /// This node's tunnel ports with their devices.
    pub tunnels: Vec<TunnelFlowsInput>,
    /// Local workload ports.
    pub workload_ports: Vec<WorkloadPort>,
}

/// The local L2 segment a device serves: the workload ports with the same Port `tag`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Segment {
    /// Ports without a tag (devices without `localVlan`).
    Untagged,
    /// Ports with this tag.
    Vlan(u16),
}

impl Segment {
    pub(super) fn of(vlan: Option<u16>) -> Self {
        vlan.map_or(Segment::Untagged, Segment::Vlan)
    }

    /// 0..=4094 for VLANs, 4096 for untagged.
    fn id(self) -> u32 {
        match self {
            Segment::Untagged => 4096,
            Segment::Vlan(v) => u32::from(v),
        }
    }

    /// Value of the segment register (never 0, so a packet we did not touch never matches).
    fn register(self) -> u32 {
        self.id() + 1
    }

    pub(super) fn conj_id(self) -> u32 {
        CONJ_ID_BASE + self.id()
    }
}

impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Segment::Untagged => f.write_str("untagged"),
            Segment::Vlan(v) => write!(f, "vlan {v}"),
        }
    }
}

/// Who a flow belongs to; each owner has its own cookie, so its flows can be listed and
/// are removed with it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Owner {
    /// A remote device: its egress, ingress, responders and its match clauses. (Shared
    /// key: a plan is cloned per change, its owners and devices with it.)
    Device(Arc<DeviceKey>),
    /// A tunnel port: the rule dropping unknown traffic from it.
    Tunnel(String),
    /// A segment used by at least one device: its port clauses and local delivery.
    Segment(Segment),
    /// A match clause several devices need (same MAC or IP in two segments).
    Shared(String),
}

impl Owner {
    fn label(&self) -> String {
        match self {
            Owner::Device(k) => format!("device/{}/{}", k.namespace, k.name),
            Owner::Tunnel(t) => format!("tunnel/{t}"),
            Owner::Segment(s) => format!("segment/{}", s.id()),
            Owner::Shared(m) => format!("shared/{m}"),
        }
    }
}

/// Identity of a flow in OpenFlow: table, priority and match. The match is kept typed
/// and normalised ([`Match`]), so that OVS printing it in another order or spelling does
/// not matter.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FlowKey {
    /// Table id.
    pub table: u8,
    /// Priority.
    pub priority: u16,
    /// Match fields, parsed and normalised.
    pub matches: Match,
}

impl FlowKey {
    /// Key of a flow with this match text.
    pub fn new(table: u8, priority: u16, matches: &str) -> Self {
        FlowKey {
            table,
            priority,
            matches: Match::parse(matches),
        }
    }
}

/// One desired flow, written the way `ovs-ofctl -O OpenFlow14 dump-flows` prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flow {
    /// Full cookie ([`COOKIE_TAG`] | owner id).
    pub cookie: u64,
    /// Table id.
    pub table: u8,
    /// Priority.
    pub priority: u16,
    /// Match fields, comma-separated.
    pub matches: String,
    /// Actions, comma-separated.
    pub actions: String,
}

impl Flow {
    /// Its identity.
    pub fn key(&self) -> FlowKey {
        FlowKey::new(self.table, self.priority, &self.matches)
    }

    /// The flow in `ovs-ofctl add-flow` syntax.
    pub fn to_ofctl(&self) -> String {
        format!(
            "cookie={:#x},table={},priority={},{},actions={}",
            self.cookie, self.table, self.priority, self.matches, self.actions
        )
    }
}

/// What became of a device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceState {
    /// Its flows are in the plan, under this cookie.
    Installed {
        /// The device's cookie.
        cookie: u64,
    },
    /// Waits for its tunnel to get a valid ofport.
    Pending {
        /// Why.
        reason: String,
    },
    /// Cannot get flows (conflict with another device or bad data).
    Rejected {
        /// Why.
        reason: String,
    },
}

/// The flows of one owner, all under its cookie.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OwnedFlows {
    /// The owner's cookie ([`COOKIE_TAG`] | owner id).
    pub cookie: u64,
    /// Its flows by identity.
    pub flows: BTreeMap<FlowKey, Flow>,
}

impl OwnedFlows {
    /// The owner's flows from their drafts.
    pub(super) fn new(cookie: u64, drafts: Vec<Draft>) -> Self {
        let flows = drafts
            .into_iter()
            .map(|d| {
                let flow = Flow {
                    cookie,
                    table: d.table,
                    priority: d.priority,
                    matches: d.matches,
                    actions: d.actions,
                };
                (flow.key(), flow)
            })
            .collect();
        OwnedFlows { cookie, flows }
    }
}

/// The complete desired state of the owned flows, kept per owner: a change of one device
/// replaces that owner's entry only, so a new plan shares every other owner's flows with
/// the one before and two plans are compared owner by owner ([`super::diff_plans`]).
/// A flow identity ([`FlowKey`]) belongs to one owner only.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowPlan {
    /// Every owner that has flows, with them.
    pub owners: BTreeMap<Owner, Arc<OwnedFlows>>,
    /// What became of each device in the input.
    pub devices: BTreeMap<Arc<DeviceKey>, DeviceState>,
    /// Devices with flows, per tunnel port name (every input tunnel is listed).
    pub installed_per_tunnel: BTreeMap<String, u32>,
    /// Number of flows (kept, not counted).
    flow_count: usize,
}

impl FlowPlan {
    /// The cookie of an owner that has flows.
    pub fn cookie(&self, owner: &Owner) -> Option<u64> {
        self.owners.get(owner).map(|o| o.cookie)
    }

    /// The cookie of a device's flows, when it has flows.
    pub fn device_cookie(&self, namespace: &str, name: &str) -> Option<u64> {
        self.cookie(&Owner::Device(Arc::new(device_key(namespace, name))))
    }

    /// Whether this plan holds flows of the device (used to confirm a device's rules are
    /// gone: a plan that was applied and does not contain it).
    pub fn has_device(&self, namespace: &str, name: &str) -> bool {
        self.device_cookie(namespace, name).is_some()
    }

    /// Every flow, owner by owner.
    pub fn flows(&self) -> impl Iterator<Item = &Flow> {
        self.owners.values().flat_map(|o| o.flows.values())
    }

    /// The flow with this identity (looks through every owner: for tests and tools; the
    /// diff builds an index instead).
    pub fn flow(&self, key: &FlowKey) -> Option<&Flow> {
        self.owners.values().find_map(|o| o.flows.get(key))
    }

    /// Number of flows.
    pub fn len(&self) -> usize {
        self.flow_count
    }

    /// Whether the plan holds no flow.
    pub fn is_empty(&self) -> bool {
        self.flow_count == 0
    }

    /// The flows in `ovs-ofctl add-flows` file syntax (for baselines and debugging).
    pub fn to_ofctl_lines(&self) -> String {
        let mut out = String::new();
        for flow in self.flows() {
            out.push_str(&flow.to_ofctl());
            out.push('\n');
        }
        out
    }

    /// Shared, ready to put into a watch channel.
    pub fn into_shared(self) -> Arc<FlowPlan> {
        Arc::new(self)
    }

    /// Sets (or with `None` removes) an owner's flows, keeping the entry (and so the
    /// sharing with earlier plans) when they are the same.
    pub(super) fn set_owner(&mut self, owner: &Owner, flows: Option<OwnedFlows>) {
        match flows {
            Some(flows) => {
                if self.owners.get(owner).is_some_and(|o| **o == flows) {
                    return;
                }
                self.flow_count += flows.flows.len();
                if let Some(old) = self.owners.insert(owner.clone(), Arc::new(flows)) {
                    self.flow_count -= old.flows.len();
                }
            }
            None => {
                if let Some(old) = self.owners.remove(owner) {
                    self.flow_count -= old.flows.len();
                }
            }
        }
    }
}

pub(super) fn device_key(namespace: &str, name: &str) -> DeviceKey {
    DeviceKey {
        namespace: namespace.to_string(),
        name: name.to_string(),
    }
}

/// A device accepted for flows, with its parsed data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct UsableDevice {
    pub(super) key: Arc<DeviceKey>,
    pub(super) mac: String,
    pub(super) vni: u32,
    pub(super) segment: Segment,
    pub(super) ofport: i64,
    pub(super) ipv4: Vec<IpAddr>,
    pub(super) ipv6: Vec<IpAddr>,
}

impl UsableDevice {
    fn ips(&self) -> impl Iterator<Item = &IpAddr> {
        self.ipv4.iter().chain(&self.ipv6)
    }

    /// What it takes for itself: its MAC and IPs in its segment, its ingress match.
    pub(super) fn claims(&self) -> Vec<Claim> {
        let mut out = vec![Claim::Mac(self.segment, self.mac.clone())];
        out.extend(self.ips().map(|ip| Claim::Ip(self.segment, *ip)));
        out.push(Claim::Ingress(self.ofport, self.vni, self.mac.clone()));
        out
    }
}

/// A flow of an owner before its cookie is known.
#[derive(Clone, Debug)]
pub(super) struct Draft {
    table: u8,
    priority: u16,
    matches: String,
    actions: String,
}

impl Draft {
    fn new(table: u8, priority: u16, matches: String, actions: String) -> Self {
        Draft {
            table,
            priority,
            matches,
            actions,
        }
    }
}

/// Computes the owned flows. Pure and deterministic: the same input (in any order) gives
/// the same plan. Devices are considered in (namespace, name) order; when two claim the
/// same MAC or IP in one segment, or the same (tunnel, VNI, MAC), the first one wins and
/// the other is [`DeviceState::Rejected`]. (A fresh [`super::FlowPlanner`]; the agent
/// keeps one, so that a change costs in proportion to what changed.)
pub fn desired_flows(input: &FlowInput) -> FlowPlan {
    super::FlowPlanner::default().plan(input)
}

/// The input's tunnels: which may carry flows, and why the others may not.
pub(super) struct Tunnels<'a> {
    /// Every tunnel, by name then ofport.
    pub(super) sorted: Vec<&'a TunnelFlowsInput>,
    /// Tunnels that carry flows: name → ofport (a valid ofport belongs to one tunnel only).
    pub(super) valid: BTreeMap<&'a str, i64>,
    /// Why a tunnel cannot carry flows, by name.
    problem: BTreeMap<&'a str, String>,
}

impl<'a> Tunnels<'a> {
    pub(super) fn of(input: &'a FlowInput) -> Self {
        let mut sorted: Vec<&TunnelFlowsInput> = input.tunnels.iter().collect();
        sorted.sort_by(|a, b| (&a.interface_name, a.ofport).cmp(&(&b.interface_name, b.ofport)));
        let mut out = Tunnels {
            sorted,
            valid: BTreeMap::new(),
            problem: BTreeMap::new(),
        };
        let mut by_ofport: BTreeMap<i64, &str> = BTreeMap::new();
        for t in out.sorted.clone() {
            let name = t.interface_name.as_str();
            let problem = if !valid_ofport(t.ofport) {
                format!("tunnel port {name} has no valid ofport yet ({})", t.ofport)
            } else if let Some(other) = by_ofport.get(&t.ofport) {
                format!(
                    "tunnel port {name} reports ofport {} which tunnel {other} already has",
                    t.ofport
                )
            } else {
                // The same name twice: keep the first.
                if !out.valid.contains_key(name) {
                    by_ofport.insert(t.ofport, name);
                    out.valid.insert(name, t.ofport);
                }
                continue;
            };
            out.problem.insert(name, problem);
        }
        out
    }

    /// The ofport a device behind `tunnel` is sent to, or why it has to wait.
    pub(super) fn ofport(&self, tunnel: &TunnelFlowsInput) -> Result<i64, DeviceState> {
        let name = tunnel.interface_name.as_str();
        let reason = match (self.problem.get(name), self.valid.get(name)) {
            (Some(problem), _) => problem.clone(),
            (None, Some(&ofport)) => return Ok(ofport),
            (None, None) => format!("tunnel port {name} has no valid ofport yet"),
        };
        Err(DeviceState::Pending { reason })
    }
}

/// Local ports per segment. An ofport any tunnel reports is never a workload port (even a
/// tunnel that gets no flows: delivering to it could loop between tunnels), and an ofport
/// listed twice belongs to the segment of its first listing by tag (OVS gives a port one
/// tag; one flow identity per port clause).
pub(super) fn local_ports(
    input: &FlowInput,
    tunnels: &Tunnels,
) -> BTreeMap<Segment, BTreeSet<i64>> {
    let tunnel_ofports: BTreeSet<i64> = tunnels.sorted.iter().map(|t| t.ofport).collect();
    let mut sorted = input.workload_ports.clone();
    sorted.sort();
    let mut taken = BTreeSet::new();
    let mut ports: BTreeMap<Segment, BTreeSet<i64>> = BTreeMap::new();
    for p in sorted {
        let usable = valid_ofport(p.ofport)
            && !tunnel_ofports.contains(&p.ofport)
            && p.vlan.is_none_or(|v| v <= MAX_VLAN);
        if usable && taken.insert(p.ofport) {
            ports
                .entry(Segment::of(p.vlan))
                .or_default()
                .insert(p.ofport);
        }
    }
    ports
}

/// What a device takes for itself, so that no other device may have it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum Claim {
    /// Its MAC in its segment.
    Mac(Segment, String),
    /// One of its IPs in its segment.
    Ip(Segment, IpAddr),
    /// (tunnel ofport, VNI, MAC): what its ingress flow matches.
    Ingress(i64, u32, String),
}

/// Who took each claim, among devices accepted so far.
#[derive(Default)]
pub(super) struct Claims {
    taken: BTreeMap<Claim, Arc<DeviceKey>>,
}

impl Claims {
    /// Why `a` (behind `tunnel`) collides with a device accepted before, if it does: the
    /// first of its claims (MAC, then IPs, then ingress) someone else has.
    pub(super) fn conflict(&self, a: &UsableDevice, tunnel: &str) -> Option<String> {
        a.claims().into_iter().find_map(|claim| {
            let o = self.taken.get(&claim)?;
            Some(match claim {
                Claim::Mac(segment, mac) => {
                    format!("MAC {mac} in {segment} is already used by {o}")
                }
                Claim::Ip(segment, ip) => format!("IP {ip} in {segment} is already used by {o}"),
                Claim::Ingress(_, vni, mac) => format!(
                    "MAC {mac} with VNI {vni} behind tunnel {tunnel} is already used by {o}"
                ),
            })
        })
    }

    pub(super) fn claim(&mut self, a: &UsableDevice) {
        for claim in a.claims() {
            self.taken.insert(claim, a.key.clone());
        }
    }
}

/// Cookie ids by owner, for owners in order with their hashes: the hash, or on a
/// collision the next free id (deterministic: the earlier owner keeps its hash).
pub(super) fn assign_cookies<'a>(
    owners: impl Iterator<Item = (&'a Owner, u32)>,
) -> Vec<(&'a Owner, u64)> {
    let mut used: HashSet<u32> = HashSet::new();
    owners
        .map(|(owner, hash)| {
            let mut id = hash;
            while id == 0 || used.contains(&id) {
                id = id.wrapping_add(1);
            }
            used.insert(id);
            (owner, COOKIE_TAG | u64::from(id))
        })
        .collect()
}

fn valid_ofport(ofport: i64) -> bool {
    (1..=MAX_PHYSICAL_OFPORT).contains(&ofport)
}

pub(super) fn owner_hash(owner: &Owner) -> u32 {
    let digest = Sha256::digest(owner.label().as_bytes());
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// Parses and checks one device; `Err` carries the state of a device that gets no flows.
pub(super) fn check_device(
    key: &Arc<DeviceKey>,
    device: &TunnelDevice,
    tunnel: &TunnelFlowsInput,
    tunnels: &Tunnels,
) -> Result<UsableDevice, DeviceState> {
    let rejected = |reason: String| DeviceState::Rejected { reason };
    let mac = parse_mac(&device.mac_address)
        .map(format_mac)
        .map_err(|e| rejected(format!("macAddress: {e}")))?;
    if device.vni == 0 || device.vni > MAX_VNI {
        return Err(rejected(format!(
            "vni: {} is out of range 1..{MAX_VNI}",
            device.vni
        )));
    }
    if let Some(v) = device.local_vlan
        && v > MAX_VLAN
    {
        return Err(rejected(format!(
            "localVlan: {v} is out of range 0..{MAX_VLAN}"
        )));
    }
    let mut ipv4 = BTreeSet::new();
    let mut ipv6 = BTreeSet::new();
    for text in &device.ips {
        let ip = parse_device_ip(text).map_err(|e| rejected(format!("ips: {e}")))?;
        if ip.is_ipv4() {
            ipv4.insert(ip);
        } else {
            ipv6.insert(ip);
        }
    }
    let ofport = tunnels.ofport(tunnel)?;
    Ok(UsableDevice {
        key: key.clone(),
        mac,
        vni: device.vni,
        segment: Segment::of(device.local_vlan),
        ofport,
        ipv4: ipv4.into_iter().collect(),
        ipv6: ipv6.into_iter().collect(),
    })
}

fn arp_responder(mac: &str, ip: IpAddr) -> String {
    // Turn the request into the reply in place and send it back where it came from.
    format!(
        "move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],set_field:{mac}->eth_src,\
         set_field:2->arp_op,move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],\
         set_field:{mac}->arp_sha,move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],\
         set_field:{ip}->arp_spa,IN_PORT"
    )
}

fn nd_responder(mac: &str, ip: IpAddr) -> String {
    // Neighbour solicitation → advertisement in place (eth_src was set to the device MAC
    // first). The link-layer option becomes "target" here; its address is written in
    // TABLE_ND_REPLY, because OVS only allows setting nd_tll on a packet that already
    // matches as an advertisement. Flags S|O = 0x60000000.
    format!(
        "move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],set_field:{mac}->eth_src,\
         move:NXM_NX_IPV6_SRC[]->NXM_NX_IPV6_DST[],set_field:{ip}->ipv6_src,\
         set_field:255->nw_ttl,set_field:2->nd_options_type,\
         set_field:1610612736->nd_reserved,set_field:136->icmpv6_type,\
         resubmit(,{TABLE_ND_REPLY})"
    )
}

/// The match of packets carrying a segment in the register.
fn in_segment(segment: Segment) -> String {
    format!("{SEGMENT_REGISTER}={:#x}", segment.register())
}

/// Actions writing the segment into the register and continuing in `table`.
fn enter_segment(segment: Segment, table: u8) -> String {
    format!(
        "load:{:#x}->{SEGMENT_REGISTER_NXM},resubmit(,{table})",
        segment.register()
    )
}

/// A device's own flows: egress to its tunnel, ARP/ND responders, ingress from it.
pub(super) fn device_flows(a: &UsableDevice) -> Vec<Draft> {
    let reg = in_segment(a.segment);
    let mut out = vec![Draft::new(
        TABLE_FROM_LOCAL,
        PRIORITY_EGRESS,
        format!("{reg},dl_dst={}", a.mac),
        format!("set_field:{:#x}->tun_id,output:{}", a.vni, a.ofport),
    )];
    let arp = a.ipv4.iter().map(|ip| {
        let matches = format!("arp,{reg},arp_tpa={ip},arp_op=1");
        (matches, arp_responder(&a.mac, *ip))
    });
    let nd = a.ipv6.iter().map(|ip| {
        let matches = format!("icmp6,{reg},icmp_type=135,icmp_code=0,nd_target={ip}");
        (matches, nd_responder(&a.mac, *ip))
    });
    for (matches, actions) in arp.chain(nd) {
        out.push(Draft::new(
            TABLE_FROM_LOCAL,
            PRIORITY_RESPONDER,
            matches,
            actions,
        ));
    }
    out.push(Draft::new(
        TABLE_CLASSIFY,
        PRIORITY_INGRESS,
        format!("tun_id={:#x},in_port={},dl_src={}", a.vni, a.ofport, a.mac),
        enter_segment(a.segment, TABLE_TO_LOCAL),
    ));
    out
}

/// A device's second-dimension clauses (its MAC, ARP and neighbour questions). Devices of
/// several segments may need the same one: it is one flow listing each segment's
/// conjunction ([`clause_flow`]), owned by the device when it is the only one.
pub(super) fn device_clauses(a: &UsableDevice) -> Vec<String> {
    let mac = std::iter::once(format!("dl_dst={}", a.mac));
    let arp = a.ipv4.iter().map(|ip| format!("arp,arp_tpa={ip},arp_op=1"));
    let nd = a
        .ipv6
        .iter()
        .map(|ip| format!("icmp6,icmp_type=135,nd_target={ip}"));
    mac.chain(arp).chain(nd).collect()
}

/// The flow of one second-dimension clause, for the segments of the devices needing it.
pub(super) fn clause_flow(matches: &str, segments: impl Iterator<Item = Segment>) -> Draft {
    let conj_ids: BTreeSet<u32> = segments.map(Segment::conj_id).collect();
    let actions = conj_ids
        .iter()
        .map(|id| format!("conjunction({id},2/2)"))
        .collect::<Vec<_>>()
        .join(",");
    Draft::new(
        TABLE_CLASSIFY,
        PRIORITY_CLASSIFY,
        matches.to_string(),
        actions,
    )
}

/// A segment's port clauses, its conjunction, the ND finisher (when a device of it has
/// IPv6) and local delivery.
pub(super) fn segment_flows(segment: Segment, local: &BTreeSet<i64>, ipv6: bool) -> Vec<Draft> {
    let conj = segment.conj_id();
    let mut out: Vec<Draft> = local
        .iter()
        .map(|ofport| {
            Draft::new(
                TABLE_CLASSIFY,
                PRIORITY_CLASSIFY,
                format!("in_port={ofport}"),
                format!("conjunction({conj},1/2)"),
            )
        })
        .collect();
    out.push(Draft::new(
        TABLE_CLASSIFY,
        PRIORITY_CLASSIFY,
        format!("conj_id={conj}"),
        enter_segment(segment, TABLE_FROM_LOCAL),
    ));
    if ipv6 {
        out.push(Draft::new(
            TABLE_ND_REPLY,
            PRIORITY_DELIVER,
            format!("icmp6,{},icmp_type=136", in_segment(segment)),
            "move:NXM_OF_ETH_SRC[]->NXM_NX_ND_TLL[],IN_PORT".to_string(),
        ));
    }
    let deliver = if local.is_empty() {
        "drop".to_string()
    } else {
        let outputs: Vec<String> = local.iter().map(|p| format!("output:{p}")).collect();
        outputs.join(",")
    };
    out.push(Draft::new(
        TABLE_TO_LOCAL,
        PRIORITY_DELIVER,
        in_segment(segment),
        deliver,
    ));
    out
}

/// A tunnel's own flow: anything arriving on it that no device's ingress took is dropped.
pub(super) fn tunnel_flows(ofport: i64) -> Vec<Draft> {
    vec![Draft::new(
        TABLE_CLASSIFY,
        PRIORITY_TUNNEL_DROP,
        format!("in_port={ofport}"),
        "drop".into(),
    )]
}
