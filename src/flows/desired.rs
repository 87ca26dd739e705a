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
    /// The devices behind the tunnel's remote VTEP that this node needs.
    pub devices: Vec<TunnelDevice>,
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
    fn of(vlan: Option<u16>) -> Self {
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

    fn conj_id(self) -> u32 {
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
    /// A remote device: its egress, ingress, responders and its match clauses.
    Device(DeviceKey),
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

/// The complete desired state of the owned flows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowPlan {
    /// Every owned flow by identity.
    pub flows: BTreeMap<FlowKey, Flow>,
    /// Cookie of every owner that has flows.
    pub cookies: BTreeMap<Owner, u64>,
    /// What became of each device in the input.
    pub devices: BTreeMap<DeviceKey, DeviceState>,
    /// Devices with flows, per tunnel port name (every input tunnel is listed).
    pub installed_per_tunnel: BTreeMap<String, u32>,
}

impl FlowPlan {
    /// The cookie of a device's flows, when it has flows.
    pub fn device_cookie(&self, namespace: &str, name: &str) -> Option<u64> {
        self.cookies
            .get(&Owner::Device(device_key(namespace, name)))
            .copied()
    }

    /// Whether this plan holds flows of the device (used to confirm a device's rules are
    /// gone: a plan that was applied and does not contain it).
    pub fn has_device(&self, namespace: &str, name: &str) -> bool {
        self.device_cookie(namespace, name).is_some()
    }

    /// Number of flows.
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    /// Whether the plan holds no flow.
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// The flows in `ovs-ofctl add-flows` file syntax (for baselines and debugging).
    pub fn to_ofctl_lines(&self) -> String {
        let mut out = String::new();
        for flow in self.flows.values() {
            out.push_str(&flow.to_ofctl());
            out.push('\n');
        }
        out
    }

    /// Shared, ready to put into a watch channel.
    pub fn into_shared(self) -> Arc<FlowPlan> {
        Arc::new(self)
    }
}

fn device_key(namespace: &str, name: &str) -> DeviceKey {
    DeviceKey {
        namespace: namespace.to_string(),
        name: name.to_string(),
    }
}

/// A device accepted for flows, with its parsed data.
struct UsableDevice {
    key: DeviceKey,
    mac: String,
    vni: u32,
    segment: Segment,
    ofport: i64,
    ipv4: Vec<IpAddr>,
    ipv6: Vec<IpAddr>,
}

impl UsableDevice {
    fn ips(&self) -> impl Iterator<Item = &IpAddr> {
        self.ipv4.iter().chain(&self.ipv6)
    }
}

/// A flow before cookies are assigned.
struct Draft {
    /// Index into the owners list.
    owner: usize,
    table: u8,
    priority: u16,
    matches: String,
    actions: String,
}

/// Computes the owned flows. Pure and deterministic: the same input (in any order) gives
/// the same plan. Devices are considered in (namespace, name) order; when two claim the
/// same MAC or IP in one segment, or the same (tunnel, VNI, MAC), the first one wins and
/// the other is [`DeviceState::Rejected`].
pub fn desired_flows(input: &FlowInput) -> FlowPlan {
    let mut out = FlowPlan::default();
    let tunnels = Tunnels::of(input);
    for t in &tunnels.sorted {
        out.installed_per_tunnel.insert(t.interface_name.clone(), 0);
    }
    let ports = local_ports(input, &tunnels);
    let accepted = admit_devices(&tunnels, &mut out);
    let (owners, drafts) = draft_flows(&accepted, &tunnels.valid, &ports);
    out.fill(owners, drafts);
    out
}

/// The input's tunnels: which may carry flows, and why the others may not.
struct Tunnels<'a> {
    /// Every tunnel, by name then ofport.
    sorted: Vec<&'a TunnelFlowsInput>,
    /// Tunnels that carry flows: name → ofport (a valid ofport belongs to one tunnel only).
    valid: BTreeMap<&'a str, i64>,
    /// Why a tunnel cannot carry flows, by name.
    problem: BTreeMap<&'a str, String>,
}

impl<'a> Tunnels<'a> {
    fn of(input: &'a FlowInput) -> Self {
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
    fn ofport(&self, tunnel: &TunnelFlowsInput) -> Result<i64, DeviceState> {
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
/// tunnel that gets no flows: delivering to it could loop between tunnels).
fn local_ports(input: &FlowInput, tunnels: &Tunnels) -> BTreeMap<Segment, BTreeSet<i64>> {
    let tunnel_ofports: BTreeSet<i64> = tunnels.sorted.iter().map(|t| t.ofport).collect();
    let mut ports: BTreeMap<Segment, BTreeSet<i64>> = BTreeMap::new();
    for p in &input.workload_ports {
        let usable = valid_ofport(p.ofport)
            && !tunnel_ofports.contains(&p.ofport)
            && p.vlan.is_none_or(|v| v <= MAX_VLAN);
        if usable {
            ports
                .entry(Segment::of(p.vlan))
                .or_default()
                .insert(p.ofport);
        }
    }
    ports
}

/// All (device, tunnel) pairs in a total order (down to the device data), so duplicates
/// resolve the same way whatever the input order.
fn device_pairs<'a>(
    tunnels: &[&'a TunnelFlowsInput],
) -> Vec<(&'a TunnelDevice, &'a TunnelFlowsInput)> {
    let mut pairs: Vec<(&TunnelDevice, &TunnelFlowsInput)> = tunnels
        .iter()
        .flat_map(|t| t.devices.iter().map(move |d| (d, *t)))
        .collect();
    pairs.sort_by(|(da, ta), (db, tb)| {
        (&da.namespace, &da.name, &ta.interface_name, ta.ofport, *da).cmp(&(
            &db.namespace,
            &db.name,
            &tb.interface_name,
            tb.ofport,
            *db,
        ))
    });
    pairs
}

/// Who took a (segment, MAC), (segment, IP), (ofport, VNI, MAC).
#[derive(Default)]
struct Claims {
    mac: BTreeMap<(Segment, String), DeviceKey>,
    ip: BTreeMap<(Segment, IpAddr), DeviceKey>,
    ingress: BTreeMap<(i64, u32, String), DeviceKey>,
}

impl Claims {
    /// Why `a` (behind `tunnel`) collides with a device accepted before, if it does.
    fn conflict(&self, a: &UsableDevice, tunnel: &str) -> Option<String> {
        if let Some(o) = self.mac.get(&(a.segment, a.mac.clone())) {
            return Some(format!(
                "MAC {} in {} is already used by {o}",
                a.mac, a.segment
            ));
        }
        if let Some((ip, o)) = a
            .ips()
            .find_map(|ip| self.ip.get(&(a.segment, *ip)).map(|o| (ip, o)))
        {
            return Some(format!("IP {ip} in {} is already used by {o}", a.segment));
        }
        self.ingress
            .get(&(a.ofport, a.vni, a.mac.clone()))
            .map(|o| {
                format!(
                    "MAC {} with VNI {} behind tunnel {tunnel} is already used by {o}",
                    a.mac, a.vni
                )
            })
    }

    fn claim(&mut self, a: &UsableDevice) {
        self.mac.insert((a.segment, a.mac.clone()), a.key.clone());
        for ip in a.ips() {
            self.ip.insert((a.segment, *ip), a.key.clone());
        }
        self.ingress
            .insert((a.ofport, a.vni, a.mac.clone()), a.key.clone());
    }
}

/// Decides every device's state (cookies are filled in later) and returns the accepted
/// ones in device order.
fn admit_devices(tunnels: &Tunnels, out: &mut FlowPlan) -> Vec<UsableDevice> {
    let mut accepted: Vec<UsableDevice> = Vec::new();
    let mut claims = Claims::default();
    for (device, tunnel) in device_pairs(&tunnels.sorted) {
        let key = device_key(&device.namespace, &device.name);
        if out.devices.contains_key(&key) {
            // Listed behind two tunnels (or twice): the first keeps its state.
            continue;
        }
        let state = match check_device(device, tunnel, tunnels) {
            Err(state) => state,
            Ok(a) => match claims.conflict(&a, &tunnel.interface_name) {
                Some(reason) => DeviceState::Rejected { reason },
                None => {
                    claims.claim(&a);
                    *out.installed_per_tunnel
                        .entry(tunnel.interface_name.clone())
                        .or_default() += 1;
                    accepted.push(a);
                    DeviceState::Installed { cookie: 0 }
                }
            },
        };
        out.devices.insert(key, state);
    }
    accepted
}

impl FlowPlan {
    /// Assigns the owners' cookies and fills in the flows, cookies and installed states.
    fn fill(&mut self, owners: Vec<Owner>, drafts: Vec<Draft>) {
        let cookies = assign_cookies(&owners);
        self.flows = drafts
            .into_iter()
            .map(|d| {
                let flow = Flow {
                    cookie: cookies[d.owner],
                    table: d.table,
                    priority: d.priority,
                    matches: d.matches,
                    actions: d.actions,
                };
                (flow.key(), flow)
            })
            .collect();
        self.cookies = owners.into_iter().zip(cookies).collect();
        for (key, state) in self.devices.iter_mut() {
            if let DeviceState::Installed { cookie } = state {
                *cookie = self.cookies[&Owner::Device(key.clone())];
            }
        }
    }
}

/// Cookies by owner index: owner hash, collisions resolved in owner order (deterministic).
fn assign_cookies(owners: &[Owner]) -> Vec<u64> {
    let mut order: Vec<usize> = (0..owners.len()).collect();
    order.sort_unstable_by(|a, b| owners[*a].cmp(&owners[*b]));
    let mut used: HashSet<u32> = HashSet::with_capacity(owners.len());
    let mut cookies = vec![0u64; owners.len()];
    for i in order {
        let mut id = owner_hash(&owners[i]);
        while id == 0 || used.contains(&id) {
            id = id.wrapping_add(1);
        }
        used.insert(id);
        cookies[i] = COOKIE_TAG | u64::from(id);
    }
    cookies
}

fn valid_ofport(ofport: i64) -> bool {
    (1..=MAX_PHYSICAL_OFPORT).contains(&ofport)
}

fn owner_hash(owner: &Owner) -> u32 {
    let digest = Sha256::digest(owner.label().as_bytes());
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// Parses and checks one device; `Err` carries the state of a device that gets no flows.
fn check_device(
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
        key: device_key(&device.namespace, &device.name),
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

/// Working state of [`draft_flows`].
#[derive(Default)]
struct Drafter {
    owners: Vec<Owner>,
    drafts: Vec<Draft>,
    /// Second-dimension clauses, merged by match: conj ids and contributing device owners.
    clauses: BTreeMap<String, (BTreeSet<u32>, BTreeSet<usize>)>,
    segments: BTreeSet<Segment>,
    segments_with_ipv6: BTreeSet<Segment>,
}

/// The owners (each once) and every flow, pointing at its owner by index.
fn draft_flows(
    accepted: &[UsableDevice],
    valid_tunnels: &BTreeMap<&str, i64>,
    ports: &BTreeMap<Segment, BTreeSet<i64>>,
) -> (Vec<Owner>, Vec<Draft>) {
    let mut d = Drafter::default();
    for a in accepted {
        d.device(a);
    }
    d.clause_flows();
    for segment in std::mem::take(&mut d.segments) {
        let no_ports = BTreeSet::new();
        d.segment(segment, ports.get(&segment).unwrap_or(&no_ports));
    }
    for (name, ofport) in valid_tunnels {
        let owner = d.owner(Owner::Tunnel(name.to_string()));
        let matches = format!("in_port={ofport}");
        d.push(
            owner,
            TABLE_CLASSIFY,
            PRIORITY_TUNNEL_DROP,
            matches,
            "drop".into(),
        );
    }
    (d.owners, d.drafts)
}

impl Drafter {
    fn owner(&mut self, owner: Owner) -> usize {
        self.owners.push(owner);
        self.owners.len() - 1
    }

    fn push(&mut self, owner: usize, table: u8, priority: u16, matches: String, actions: String) {
        self.drafts.push(Draft {
            owner,
            table,
            priority,
            matches,
            actions,
        });
    }

    /// A device's own flows (egress, responders, ingress) and its match clauses.
    fn device(&mut self, a: &UsableDevice) {
        let owner = self.owner(Owner::Device(a.key.clone()));
        self.segments.insert(a.segment);
        if !a.ipv6.is_empty() {
            self.segments_with_ipv6.insert(a.segment);
        }
        self.device_clauses(owner, a);
        let reg = in_segment(a.segment);
        let matches = format!("{reg},dl_dst={}", a.mac);
        let actions = format!("set_field:{:#x}->tun_id,output:{}", a.vni, a.ofport);
        self.push(owner, TABLE_FROM_LOCAL, PRIORITY_EGRESS, matches, actions);
        let arp = a.ipv4.iter().map(|ip| {
            let matches = format!("arp,{reg},arp_tpa={ip},arp_op=1");
            (matches, arp_responder(&a.mac, *ip))
        });
        let nd = a.ipv6.iter().map(|ip| {
            let matches = format!("icmp6,{reg},icmp_type=135,icmp_code=0,nd_target={ip}");
            (matches, nd_responder(&a.mac, *ip))
        });
        for (matches, actions) in arp.chain(nd) {
            self.push(
                owner,
                TABLE_FROM_LOCAL,
                PRIORITY_RESPONDER,
                matches,
                actions,
            );
        }
        let matches = format!("tun_id={:#x},in_port={},dl_src={}", a.vni, a.ofport, a.mac);
        let actions = enter_segment(a.segment, TABLE_TO_LOCAL);
        self.push(owner, TABLE_CLASSIFY, PRIORITY_INGRESS, matches, actions);
    }

    /// Registers a device's second-dimension clauses (its MAC, ARP and neighbour
    /// questions), merged by match with other devices' (see [`Drafter::clause_flows`]).
    fn device_clauses(&mut self, owner: usize, a: &UsableDevice) {
        let mac = std::iter::once(format!("dl_dst={}", a.mac));
        let arp = a.ipv4.iter().map(|ip| format!("arp,arp_tpa={ip},arp_op=1"));
        let nd = a
            .ipv6
            .iter()
            .map(|ip| format!("icmp6,icmp_type=135,nd_target={ip}"));
        for clause in mac.chain(arp).chain(nd) {
            let (conj_ids, devices) = self.clauses.entry(clause).or_default();
            conj_ids.insert(a.segment.conj_id());
            devices.insert(owner);
        }
    }

    /// The second-dimension clauses; one needed by several devices gets a shared owner.
    fn clause_flows(&mut self) {
        for (matches, (conj_ids, devices)) in std::mem::take(&mut self.clauses) {
            let owner = match devices.first() {
                Some(&only) if devices.len() == 1 => only,
                _ => self.owner(Owner::Shared(matches.clone())),
            };
            let actions = conj_ids
                .iter()
                .map(|id| format!("conjunction({id},2/2)"))
                .collect::<Vec<_>>()
                .join(",");
            self.push(owner, TABLE_CLASSIFY, PRIORITY_CLASSIFY, matches, actions);
        }
    }

    /// A segment's port clauses, its conjunction, the ND finisher and local delivery.
    fn segment(&mut self, segment: Segment, local: &BTreeSet<i64>) {
        let owner = self.owner(Owner::Segment(segment));
        let conj = segment.conj_id();
        for ofport in local {
            let (matches, actions) = (
                format!("in_port={ofport}"),
                format!("conjunction({conj},1/2)"),
            );
            self.push(owner, TABLE_CLASSIFY, PRIORITY_CLASSIFY, matches, actions);
        }
        let actions = enter_segment(segment, TABLE_FROM_LOCAL);
        self.push(
            owner,
            TABLE_CLASSIFY,
            PRIORITY_CLASSIFY,
            format!("conj_id={conj}"),
            actions,
        );
        if self.segments_with_ipv6.contains(&segment) {
            let matches = format!("icmp6,{},icmp_type=136", in_segment(segment));
            let actions = "move:NXM_OF_ETH_SRC[]->NXM_NX_ND_TLL[],IN_PORT".to_string();
            self.push(owner, TABLE_ND_REPLY, PRIORITY_DELIVER, matches, actions);
        }
        let deliver = if local.is_empty() {
            "drop".to_string()
        } else {
            let outputs: Vec<String> = local.iter().map(|p| format!("output:{p}")).collect();
            outputs.join(",")
        };
        self.push(
            owner,
            TABLE_TO_LOCAL,
            PRIORITY_DELIVER,
            in_segment(segment),
            deliver,
        );
    }
}
