//! The pure flow planner: what OVS should hold, from devices, tunnel ofports and ports.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use sha2::{Digest, Sha256};

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

/// Identity of a flow in OpenFlow: table, priority and match. The match is kept as its
/// sorted fields so that OVS printing them in another order does not matter.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FlowKey {
    /// Table id.
    pub table: u8,
    /// Priority.
    pub priority: u16,
    /// Match fields, sorted, comma-joined.
    pub matches: String,
}

impl FlowKey {
    /// Key of a flow with this match text.
    pub fn new(table: u8, priority: u16, matches: &str) -> Self {
        FlowKey {
            table,
            priority,
            matches: normalize_match(matches),
        }
    }
}

/// Match fields sorted, so two spellings of the same match compare equal.
pub(crate) fn normalize_match(matches: &str) -> String {
    let mut fields: Vec<&str> = matches
        .split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .collect();
    fields.sort_unstable();
    fields.join(",")
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
            .get(&Owner::Device(DeviceKey {
                namespace: namespace.to_string(),
                name: name.to_string(),
            }))
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

    // Tunnels by name; a valid ofport can belong to one tunnel only.
    let mut tunnels: Vec<&TunnelFlowsInput> = input.tunnels.iter().collect();
    tunnels.sort_by(|a, b| (&a.interface_name, a.ofport).cmp(&(&b.interface_name, b.ofport)));
    let mut tunnel_by_ofport: BTreeMap<i64, &str> = BTreeMap::new();
    let mut valid_tunnels: BTreeMap<&str, i64> = BTreeMap::new();
    // Why a tunnel cannot carry flows, by name.
    let mut tunnel_problem: BTreeMap<&str, String> = BTreeMap::new();
    for t in &tunnels {
        out.installed_per_tunnel.insert(t.interface_name.clone(), 0);
        if !valid_ofport(t.ofport) {
            tunnel_problem.insert(
                &t.interface_name,
                format!(
                    "tunnel port {} has no valid ofport yet ({})",
                    t.interface_name, t.ofport
                ),
            );
            continue;
        }
        if let Some(other) = tunnel_by_ofport.get(&t.ofport) {
            tunnel_problem.insert(
                &t.interface_name,
                format!(
                    "tunnel port {} reports ofport {} which tunnel {other} already has",
                    t.interface_name, t.ofport
                ),
            );
            continue;
        }
        if valid_tunnels.contains_key(t.interface_name.as_str()) {
            // The same name twice: keep the first.
            continue;
        }
        tunnel_by_ofport.insert(t.ofport, &t.interface_name);
        valid_tunnels.insert(&t.interface_name, t.ofport);
    }

    // Local ports per segment; an ofport any tunnel reports is never a workload port
    // (even a tunnel that gets no flows: delivering to it could loop between tunnels).
    let tunnel_ofports: BTreeSet<i64> = tunnels.iter().map(|t| t.ofport).collect();
    let mut ports: BTreeMap<Segment, BTreeSet<i64>> = BTreeMap::new();
    for p in &input.workload_ports {
        if !valid_ofport(p.ofport) || tunnel_ofports.contains(&p.ofport) {
            continue;
        }
        if p.vlan.is_some_and(|v| v > MAX_VLAN) {
            continue;
        }
        ports
            .entry(Segment::of(p.vlan))
            .or_default()
            .insert(p.ofport);
    }

    // All (device, tunnel) pairs in device order.
    let mut pairs: Vec<(&TunnelDevice, &TunnelFlowsInput)> = tunnels
        .iter()
        .flat_map(|t| t.devices.iter().map(move |d| (d, *t)))
        .collect();
    // A total order (down to the device data), so duplicates resolve the same way
    // whatever the input order.
    pairs.sort_by(|(da, ta), (db, tb)| {
        (&da.namespace, &da.name, &ta.interface_name, ta.ofport, *da).cmp(&(
            &db.namespace,
            &db.name,
            &tb.interface_name,
            tb.ofport,
            *db,
        ))
    });

    let mut accepted: Vec<UsableDevice> = Vec::new();
    // Claims: who took a (segment, MAC), (segment, IP), (ofport, VNI, MAC).
    let mut mac_claims: BTreeMap<(Segment, String), DeviceKey> = BTreeMap::new();
    let mut ip_claims: BTreeMap<(Segment, IpAddr), DeviceKey> = BTreeMap::new();
    let mut ingress_claims: BTreeMap<(i64, u32, String), DeviceKey> = BTreeMap::new();
    for (device, tunnel) in pairs {
        let key = DeviceKey {
            namespace: device.namespace.clone(),
            name: device.name.clone(),
        };
        if out.devices.contains_key(&key) {
            // Listed behind two tunnels (or twice): the first keeps its state.
            continue;
        }
        let state = match check_device(device, tunnel, &valid_tunnels, &tunnel_problem) {
            Err(state) => state,
            Ok(a) => {
                let conflict = mac_claims
                    .get(&(a.segment, a.mac.clone()))
                    .map(|o| format!("MAC {} in {} is already used by {o}", a.mac, a.segment))
                    .or_else(|| {
                        a.ipv4.iter().chain(&a.ipv6).find_map(|ip| {
                            ip_claims
                                .get(&(a.segment, *ip))
                                .map(|o| format!("IP {ip} in {} is already used by {o}", a.segment))
                        })
                    })
                    .or_else(|| {
                        ingress_claims
                            .get(&(a.ofport, a.vni, a.mac.clone()))
                            .map(|o| {
                                format!(
                                    "MAC {} with VNI {} behind tunnel {} is already used by {o}",
                                    a.mac, a.vni, tunnel.interface_name
                                )
                            })
                    });
                match conflict {
                    Some(reason) => DeviceState::Rejected { reason },
                    None => {
                        mac_claims.insert((a.segment, a.mac.clone()), key.clone());
                        for ip in a.ipv4.iter().chain(&a.ipv6) {
                            ip_claims.insert((a.segment, *ip), key.clone());
                        }
                        ingress_claims.insert((a.ofport, a.vni, a.mac.clone()), key.clone());
                        *out.installed_per_tunnel
                            .entry(tunnel.interface_name.clone())
                            .or_default() += 1;
                        accepted.push(a);
                        // The cookie is filled in below.
                        DeviceState::Installed { cookie: 0 }
                    }
                }
            }
        };
        out.devices.insert(key, state);
    }

    let (owners, drafts) = draft_flows(&accepted, &valid_tunnels, &ports);

    // Cookies: owner hash, collisions resolved in owner order (deterministic).
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
    out.flows = drafts
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
    out.cookies = owners.into_iter().zip(cookies).collect();
    for (key, state) in out.devices.iter_mut() {
        if let DeviceState::Installed { cookie } = state {
            *cookie = out.cookies[&Owner::Device(key.clone())];
        }
    }
    out
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
    valid_tunnels: &BTreeMap<&str, i64>,
    tunnel_problem: &BTreeMap<&str, String>,
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
    if let Some(problem) = tunnel_problem.get(tunnel.interface_name.as_str()) {
        return Err(DeviceState::Pending {
            reason: problem.clone(),
        });
    }
    let Some(&ofport) = valid_tunnels.get(tunnel.interface_name.as_str()) else {
        return Err(DeviceState::Pending {
            reason: format!(
                "tunnel port {} has no valid ofport yet",
                tunnel.interface_name
            ),
        });
    };
    Ok(UsableDevice {
        key: DeviceKey {
            namespace: device.namespace.clone(),
            name: device.name.clone(),
        },
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

/// The owners (each once) and every flow, pointing at its owner by index.
fn draft_flows(
    accepted: &[UsableDevice],
    valid_tunnels: &BTreeMap<&str, i64>,
    ports: &BTreeMap<Segment, BTreeSet<i64>>,
) -> (Vec<Owner>, Vec<Draft>) {
    let mut drafts = Vec::new();
    let mut owners: Vec<Owner> = Vec::with_capacity(accepted.len() + 8);
    // Second-dimension clauses, merged by match: conj ids and contributing device owners.
    let mut clauses: BTreeMap<String, (BTreeSet<u32>, BTreeSet<usize>)> = BTreeMap::new();
    let mut segments: BTreeSet<Segment> = BTreeSet::new();
    let mut segments_with_ipv6: BTreeSet<Segment> = BTreeSet::new();

    for a in accepted {
        owners.push(Owner::Device(a.key.clone()));
        let owner = owners.len() - 1;
        let reg = a.segment.register();
        segments.insert(a.segment);
        if !a.ipv6.is_empty() {
            segments_with_ipv6.insert(a.segment);
        }
        let mut clause = |m: String| {
            let entry = clauses.entry(m).or_default();
            entry.0.insert(a.segment.conj_id());
            entry.1.insert(owner);
        };
        clause(format!("dl_dst={}", a.mac));
        for ip in &a.ipv4 {
            clause(format!("arp,arp_tpa={ip},arp_op=1"));
        }
        for ip in &a.ipv6 {
            clause(format!("icmp6,icmp_type=135,nd_target={ip}"));
        }
        drafts.push(Draft {
            owner,
            table: TABLE_FROM_LOCAL,
            priority: PRIORITY_EGRESS,
            matches: format!("{SEGMENT_REGISTER}={reg:#x},dl_dst={}", a.mac),
            actions: format!("set_field:{:#x}->tun_id,output:{}", a.vni, a.ofport),
        });
        for ip in &a.ipv4 {
            drafts.push(Draft {
                owner,
                table: TABLE_FROM_LOCAL,
                priority: PRIORITY_RESPONDER,
                matches: format!("arp,{SEGMENT_REGISTER}={reg:#x},arp_tpa={ip},arp_op=1"),
                actions: arp_responder(&a.mac, *ip),
            });
        }
        for ip in &a.ipv6 {
            drafts.push(Draft {
                owner,
                table: TABLE_FROM_LOCAL,
                priority: PRIORITY_RESPONDER,
                matches: format!(
                    "icmp6,{SEGMENT_REGISTER}={reg:#x},icmp_type=135,icmp_code=0,nd_target={ip}"
                ),
                actions: nd_responder(&a.mac, *ip),
            });
        }
        drafts.push(Draft {
            owner,
            table: TABLE_CLASSIFY,
            priority: PRIORITY_INGRESS,
            matches: format!("tun_id={:#x},in_port={},dl_src={}", a.vni, a.ofport, a.mac),
            actions: format!("load:{reg:#x}->{SEGMENT_REGISTER_NXM},resubmit(,{TABLE_TO_LOCAL})"),
        });
    }

    for (matches, (conj_ids, devices)) in clauses {
        let owner = if devices.len() == 1 {
            *devices.first().expect("one device")
        } else {
            owners.push(Owner::Shared(matches.clone()));
            owners.len() - 1
        };
        let actions = conj_ids
            .iter()
            .map(|id| format!("conjunction({id},2/2)"))
            .collect::<Vec<_>>()
            .join(",");
        drafts.push(Draft {
            owner,
            table: TABLE_CLASSIFY,
            priority: PRIORITY_CLASSIFY,
            matches,
            actions,
        });
    }

    for segment in segments {
        owners.push(Owner::Segment(segment));
        let owner = owners.len() - 1;
        let reg = segment.register();
        let local = ports.get(&segment).cloned().unwrap_or_default();
        for ofport in &local {
            drafts.push(Draft {
                owner,
                table: TABLE_CLASSIFY,
                priority: PRIORITY_CLASSIFY,
                matches: format!("in_port={ofport}"),
                actions: format!("conjunction({},1/2)", segment.conj_id()),
            });
        }
        drafts.push(Draft {
            owner,
            table: TABLE_CLASSIFY,
            priority: PRIORITY_CLASSIFY,
            matches: format!("conj_id={}", segment.conj_id()),
            actions: format!("load:{reg:#x}->{SEGMENT_REGISTER_NXM},resubmit(,{TABLE_FROM_LOCAL})"),
        });
        if segments_with_ipv6.contains(&segment) {
            drafts.push(Draft {
                owner,
                table: TABLE_ND_REPLY,
                priority: PRIORITY_DELIVER,
                matches: format!("icmp6,{SEGMENT_REGISTER}={reg:#x},icmp_type=136"),
                actions: "move:NXM_OF_ETH_SRC[]->NXM_NX_ND_TLL[],IN_PORT".to_string(),
            });
        }
        let deliver = if local.is_empty() {
            "drop".to_string()
        } else {
            local
                .iter()
                .map(|p| format!("output:{p}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        drafts.push(Draft {
            owner,
            table: TABLE_TO_LOCAL,
            priority: PRIORITY_DELIVER,
            matches: format!("{SEGMENT_REGISTER}={reg:#x}"),
            actions: deliver,
        });
    }

    for (name, ofport) in valid_tunnels {
        drafts.push(Draft {
            owner: {
                owners.push(Owner::Tunnel(name.to_string()));
                owners.len() - 1
            },
            table: TABLE_CLASSIFY,
            priority: PRIORITY_TUNNEL_DROP,
            matches: format!("in_port={ofport}"),
            actions: "drop".to_string(),
        });
    }
    (owners, drafts)
}
