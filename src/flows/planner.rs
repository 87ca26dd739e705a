//! The flow planner kept between changes: [`desired_flows`](super::desired_flows) with a
//! memory, so that one device more beside 10 000 costs what that device costs.
//!
//! Every decision is the pure planner's: devices are admitted in (namespace, name) order,
//! the first to claim a MAC or IP in a segment (or an ingress match) wins. Whether a
//! device wins depends only on the devices it shares a claim with, so a change re-decides
//! the devices connected to the changed ones through shared claims and nothing else.
//! Owners whose flows may have moved are rebuilt and replace their entry only when their
//! flows differ, so the new plan shares everything else with the one before.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use super::desired::{
    Claim, Claims, OwnedFlows, Tunnels, UsableDevice, assign_cookies, check_device, clause_flow,
    device_clauses, device_flows, device_key, local_ports, owner_hash, segment_flows, tunnel_flows,
};
use super::{COOKIE_TAG, DeviceState, FlowInput, FlowPlan, Owner, Segment, TunnelFlowsInput};
use crate::api::{DeviceKey, TunnelDevice};

/// A fast, non-keyed hash for the planner's maps (their keys come from the node's own
/// TunnelPorts; SipHash was a tenth of a planning step).
#[derive(Clone, Copy, Default)]
struct Fx(u64);

impl Hasher for Fx {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_u8(&mut self, n: u8) {
        self.write_u64(u64::from(n));
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<Fx>>;

type Key = Arc<DeviceKey>;

/// A planner that remembers its last input and plan. `plan` of the same input always
/// gives the same plan as a fresh planner (and [`super::desired_flows`]) would.
#[derive(Clone, Debug, Default)]
pub struct FlowPlanner {
    /// The last plan.
    plan: FlowPlan,
    /// Every device of the last input by namespace and name (two levels, so that a device
    /// of the input is looked up by `&str` without building a key).
    devices: FxMap<String, FxMap<String, Planned>>,
    /// Usable devices (accepted or not) by each claim they make.
    claimants: FxMap<Claim, BTreeSet<Key>>,
    /// What the accepted devices use.
    uses: Uses,
    /// Every owner with flows, with its hash and cookie.
    owners: BTreeMap<Owner, OwnerId>,
    /// Owners per hash.
    hashes: FxMap<u32, u32>,
    /// Hashes more than one owner has, plus owners whose hash is 0: while there are any,
    /// cookies are assigned by probing in owner order, else each is its owner's hash.
    crowded: usize,
}

/// What one device was planned from, and what it became.
#[derive(Clone, Debug)]
struct Planned {
    key: Key,
    device: TunnelDevice,
    tunnel: String,
    port: Result<i64, DeviceState>,
    checked: Result<UsableDevice, DeviceState>,
    accepted: bool,
}

/// What the accepted devices use.
#[derive(Clone, Debug, Default)]
struct Uses {
    /// Second-dimension clauses: the devices that need each, with their segments.
    clauses: FxMap<String, BTreeMap<Key, Segment>>,
    /// Segments: how many devices are in each, how many of them with IPv6.
    segments: BTreeMap<Segment, SegmentUse>,
    /// Accepted devices per tunnel name.
    per_tunnel: FxMap<String, u32>,
}

#[derive(Clone, Copy, Debug, Default)]
struct SegmentUse {
    devices: u32,
    ipv6: u32,
}

#[derive(Clone, Copy, Debug)]
struct OwnerId {
    hash: u32,
    cookie: u64,
}

/// Owners to look at again in this pass, and clauses whose users changed.
#[derive(Default)]
struct Dirty {
    owners: BTreeSet<Owner>,
    clauses: BTreeSet<String>,
}

impl Uses {
    fn add(&mut self, u: &UsableDevice, tunnel: &str, dirty: &mut Dirty) {
        for clause in device_clauses(u) {
            self.clauses
                .entry(clause.clone())
                .or_default()
                .insert(u.key.clone(), u.segment);
            dirty.clauses.insert(clause);
        }
        let segment = self.segments.entry(u.segment).or_default();
        segment.devices += 1;
        segment.ipv6 += u32::from(!u.ipv6.is_empty());
        *self.per_tunnel.entry(tunnel.to_string()).or_default() += 1;
        dirty.owners.insert(Owner::Device(u.key.clone()));
    }

    fn remove(&mut self, u: &UsableDevice, tunnel: &str, dirty: &mut Dirty) {
        for clause in device_clauses(u) {
            if let Some(users) = self.clauses.get_mut(&clause) {
                users.remove(&u.key);
                if users.is_empty() {
                    self.clauses.remove(&clause);
                }
            }
            dirty.clauses.insert(clause);
        }
        if let Some(segment) = self.segments.get_mut(&u.segment) {
            segment.devices -= 1;
            segment.ipv6 -= u32::from(!u.ipv6.is_empty());
            if segment.devices == 0 {
                self.segments.remove(&u.segment);
            }
        }
        if let Some(n) = self.per_tunnel.get_mut(tunnel) {
            *n -= 1;
            if *n == 0 {
                self.per_tunnel.remove(tunnel);
            }
        }
        dirty.owners.insert(Owner::Device(u.key.clone()));
    }
}

/// A device's memory, borrowed from the map alone (so the planner's other fields stay
/// free to change beside it).
fn planned_mut<'a>(
    devices: &'a mut FxMap<String, FxMap<String, Planned>>,
    key: &Key,
) -> Option<&'a mut Planned> {
    devices.get_mut(&key.namespace)?.get_mut(&key.name)
}

type Chosen<'a> = FxMap<(&'a str, &'a str), (&'a TunnelDevice, &'a TunnelFlowsInput)>;

/// For every device key in the input, the (device, tunnel) listing that counts: the first
/// by (tunnel name, ofport, device data), so duplicates resolve the same way whatever the
/// input order.
fn chosen_listings<'a>(tunnels: &Tunnels<'a>) -> Chosen<'a> {
    let mut chosen = Chosen::default();
    for &t in &tunnels.sorted {
        for d in t.devices.iter() {
            let entry = chosen
                .entry((d.namespace.as_str(), d.name.as_str()))
                .or_insert((d, t));
            let earlier = (&entry.1.interface_name, entry.1.ofport, entry.0);
            if (&t.interface_name, t.ofport, d) < earlier {
                *entry = (d, t);
            }
        }
    }
    chosen
}

impl FlowPlanner {
    /// The plan for `input`, reusing what the last one decided for everything that did
    /// not change.
    pub fn plan(&mut self, input: &FlowInput) -> FlowPlan {
        let tunnels = Tunnels::of(input);
        let chosen = chosen_listings(&tunnels);
        let mut dirty = Dirty::default();
        let component = self.take_changes(&chosen, &tunnels, &mut dirty);
        self.admit(&component, &mut dirty);
        self.shared_clauses(&mut dirty);
        // Segments and tunnels are few: always looked at.
        let fixed = Owner::Tunnel(String::new())..Owner::Shared(String::new());
        dirty
            .owners
            .extend(self.owners.range(fixed).map(|(o, _)| o.clone()));
        dirty
            .owners
            .extend(self.uses.segments.keys().map(|s| Owner::Segment(*s)));
        dirty
            .owners
            .extend(tunnels.valid.keys().map(|n| Owner::Tunnel(n.to_string())));
        self.sync_owners(&mut dirty, &tunnels);
        let ports = local_ports(input, &tunnels);
        for owner in &dirty.owners {
            let flows = self.owned_flows(owner, &tunnels, &ports);
            if let (Owner::Device(key), Some(flows)) = (owner, &flows) {
                let state = DeviceState::Installed {
                    cookie: flows.cookie,
                };
                self.plan.devices.insert(key.clone(), state);
            }
            self.plan.set_owner(owner, flows);
        }
        self.plan.installed_per_tunnel = tunnels
            .sorted
            .iter()
            .map(|t| {
                let n = self.uses.per_tunnel.get(&t.interface_name).copied();
                (t.interface_name.clone(), n.unwrap_or(0))
            })
            .collect();
        self.plan.clone()
    }

    fn planned(&self, key: &Key) -> Option<&Planned> {
        self.devices.get(&key.namespace)?.get(&key.name)
    }

    /// Forgets every device whose listing changed or that left the input, takes in the
    /// new listings, and returns the devices whose admission must be decided again: the
    /// changed ones and all connected to them through shared claims (before or after).
    fn take_changes(
        &mut self,
        chosen: &Chosen,
        tunnels: &Tunnels,
        dirty: &mut Dirty,
    ) -> BTreeSet<Key> {
        let mut changed: Vec<Key> = Vec::new();
        for (&(namespace, name), &(device, tunnel)) in chosen {
            let known = self.devices.get(namespace).and_then(|m| m.get(name));
            let same = known.is_some_and(|p| {
                p.device == *device
                    && p.tunnel == tunnel.interface_name
                    && p.port == tunnels.ofport(tunnel)
            });
            if !same {
                let key =
                    known.map_or_else(|| Arc::new(device_key(namespace, name)), |p| p.key.clone());
                changed.push(key);
            }
        }
        for (namespace, names) in &self.devices {
            for (name, p) in names {
                if !chosen.contains_key(&(namespace.as_str(), name.as_str())) {
                    changed.push(p.key.clone());
                }
            }
        }
        let mut seeds: Vec<Claim> = Vec::new();
        let mut component = BTreeSet::new();
        for key in changed {
            if let Some(old) = self.forget(&key)
                && let Ok(u) = &old.checked
            {
                for claim in u.claims() {
                    self.unclaim(&claim, &key);
                    seeds.push(claim);
                }
                if old.accepted {
                    self.uses.remove(u, &old.tunnel, dirty);
                }
            }
            let Some(&(device, tunnel)) = chosen.get(&(key.namespace.as_str(), key.name.as_str()))
            else {
                self.plan.devices.remove(&key);
                dirty.owners.insert(Owner::Device(key));
                continue;
            };
            let checked = check_device(&key, device, tunnel, tunnels);
            if let Ok(u) = &checked {
                for claim in u.claims() {
                    self.claimants
                        .entry(claim.clone())
                        .or_default()
                        .insert(key.clone());
                    seeds.push(claim);
                }
            }
            let planned = Planned {
                key: key.clone(),
                device: device.clone(),
                tunnel: tunnel.interface_name.clone(),
                port: tunnels.ofport(tunnel),
                checked,
                accepted: false,
            };
            self.devices
                .entry(key.namespace.clone())
                .or_default()
                .insert(key.name.clone(), planned);
            component.insert(key);
        }
        // Everybody sharing a claim with the component, transitively.
        while let Some(claim) = seeds.pop() {
            for key in self.claimants.get(&claim).into_iter().flatten() {
                if component.contains(key) {
                    continue;
                }
                component.insert(key.clone());
                if let Some(Ok(u)) = self.planned(key).map(|p| &p.checked) {
                    seeds.extend(u.claims());
                }
            }
        }
        component
    }

    fn forget(&mut self, key: &Key) -> Option<Planned> {
        let names = self.devices.get_mut(&key.namespace)?;
        let old = names.remove(&key.name);
        if names.is_empty() {
            self.devices.remove(&key.namespace);
        }
        old
    }

    fn unclaim(&mut self, claim: &Claim, key: &Key) {
        if let Some(keys) = self.claimants.get_mut(claim) {
            keys.remove(key);
            if keys.is_empty() {
                self.claimants.remove(claim);
            }
        }
    }

    /// Decides the devices of `component` again, in device order, as the pure planner
    /// does (devices outside it share no claim with them, so cannot change the outcome).
    fn admit(&mut self, component: &BTreeSet<Key>, dirty: &mut Dirty) {
        for key in component {
            let Some(p) = planned_mut(&mut self.devices, key) else {
                continue;
            };
            if let (true, Ok(u)) = (p.accepted, &p.checked) {
                self.uses.remove(u, &p.tunnel, dirty);
            }
            p.accepted = false;
        }
        let mut claims = Claims::default();
        for key in component {
            let Some(p) = planned_mut(&mut self.devices, key) else {
                continue;
            };
            let state = match &p.checked {
                Err(state) => state.clone(),
                Ok(u) => match claims.conflict(u, &p.tunnel) {
                    Some(reason) => DeviceState::Rejected { reason },
                    None => {
                        claims.claim(u);
                        p.accepted = true;
                        self.uses.add(u, &p.tunnel, dirty);
                        // The cookie is filled in with its flows.
                        DeviceState::Installed { cookie: 0 }
                    }
                },
            };
            self.plan.devices.insert(key.clone(), state);
        }
    }

    /// A clause whose users changed moves between its only device and a shared owner:
    /// both must be looked at again.
    fn shared_clauses(&self, dirty: &mut Dirty) {
        for clause in std::mem::take(&mut dirty.clauses) {
            dirty.owners.insert(Owner::Shared(clause.clone()));
            if let Some(users) = self.uses.clauses.get(&clause) {
                dirty
                    .owners
                    .extend(users.keys().cloned().map(Owner::Device));
            }
        }
    }

    /// Whether an owner has flows now.
    fn exists(&self, owner: &Owner, tunnels: &Tunnels) -> bool {
        match owner {
            Owner::Device(key) => self.planned(key).is_some_and(|p| p.accepted),
            Owner::Shared(clause) => self.uses.clauses.get(clause).is_some_and(|u| u.len() > 1),
            Owner::Segment(segment) => self.uses.segments.contains_key(segment),
            Owner::Tunnel(name) => tunnels.valid.contains_key(name.as_str()),
        }
    }

    /// Brings the owner list up to date for the dirty owners and assigns cookies; owners
    /// whose cookie moved (a hash collision resolved differently) become dirty too.
    fn sync_owners(&mut self, dirty: &mut Dirty, tunnels: &Tunnels) {
        let was_crowded = self.crowded > 0;
        let mut moved = false;
        for owner in &dirty.owners {
            match (self.owners.contains_key(owner), self.exists(owner, tunnels)) {
                (false, true) => {
                    let hash = owner_hash(owner);
                    let n = self.hashes.entry(hash).or_default();
                    *n += 1;
                    self.crowded += usize::from(*n == 2) + usize::from(hash == 0);
                    let cookie = COOKIE_TAG | u64::from(hash);
                    self.owners.insert(owner.clone(), OwnerId { hash, cookie });
                    moved = true;
                }
                (true, false) => {
                    let Some(OwnerId { hash, .. }) = self.owners.remove(owner) else {
                        continue;
                    };
                    if let Some(n) = self.hashes.get_mut(&hash) {
                        *n -= 1;
                        self.crowded -= usize::from(*n == 1) + usize::from(hash == 0);
                        if *n == 0 {
                            self.hashes.remove(&hash);
                        }
                    }
                    moved = true;
                }
                _ => {}
            }
        }
        if !(moved && (was_crowded || self.crowded > 0)) {
            return;
        }
        let assigned = assign_cookies(self.owners.iter().map(|(o, id)| (o, id.hash)));
        let changed: Vec<(Owner, u64)> = assigned
            .into_iter()
            .filter(|(o, cookie)| self.owners[*o].cookie != *cookie)
            .map(|(o, cookie)| (o.clone(), cookie))
            .collect();
        for (owner, cookie) in changed {
            if let Some(id) = self.owners.get_mut(&owner) {
                id.cookie = cookie;
            }
            dirty.owners.insert(owner);
        }
    }

    /// An owner's flows now (`None`: it has none).
    fn owned_flows(
        &self,
        owner: &Owner,
        tunnels: &Tunnels,
        ports: &BTreeMap<Segment, BTreeSet<i64>>,
    ) -> Option<OwnedFlows> {
        let cookie = self.owners.get(owner)?.cookie;
        let drafts = match owner {
            Owner::Device(key) => {
                let u = self.planned(key)?.checked.as_ref().ok()?;
                let mut drafts = device_flows(u);
                for clause in device_clauses(u) {
                    let users = self.uses.clauses.get(&clause)?;
                    if users.len() == 1 {
                        drafts.push(clause_flow(&clause, users.values().copied()));
                    }
                }
                drafts
            }
            Owner::Shared(clause) => {
                let users = self.uses.clauses.get(clause)?;
                vec![clause_flow(clause, users.values().copied())]
            }
            Owner::Segment(segment) => {
                let no_ports = BTreeSet::new();
                let local = ports.get(segment).unwrap_or(&no_ports);
                let ipv6 = self.uses.segments.get(segment)?.ipv6 > 0;
                segment_flows(*segment, local, ipv6)
            }
            Owner::Tunnel(name) => tunnel_flows(*tunnels.valid.get(name.as_str())?),
        };
        Some(OwnedFlows::new(cookie, drafts))
    }
}
