//! Typed, normalised OpenFlow matches and actions, so that the desired flows and the
//! flows `ovs-ofctl dump-flows` prints compare by meaning, not by spelling.
//!
//! Both sides are parsed with the same rules:
//! - field names go through one alias table ([`FIELDS`]: `dl_dst` = `eth_dst` =
//!   `NXM_OF_ETH_DST`, `tun_id` = `tunnel_id` = `NXM_NX_TUN_ID`, `regN` = `NXM_NX_REGN`,
//!   ...), case-insensitively;
//! - values by the field's kind: numbers in decimal or hex (any case, with or without
//!   `0x`), MACs and IP addresses by value, masks and prefixes as bit masks (a full mask is
//!   no mask, masked-out value bits are cleared);
//! - protocol shorthands (`arp`, `icmp6`, `tcp`, ...) become their `eth_type`/`ip_proto`
//!   fields, and the generic `icmp_type`/`icmp_code` become the ICMPv4 or ICMPv6 field;
//! - the match is a set (field order does not matter); actions are a list (order does);
//! - `set_field`, `load` (whole field or a bit range), `set_tunnel`, `mod_dl_src`, ... are
//!   one action, as are `output:N`, `N` and `output:IN_PORT`/`IN_PORT`, `resubmit(,T)` and
//!   `resubmit(in_port,T)`; `drop` is the empty list.
//!
//! Anything else (unknown fields, unknown actions, values that do not parse) is kept as
//! normalised text (whitespace removed, lower-case), so it still compares, and nothing
//! here panics on any input.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::LazyLock;

/// How a field's values are written and how wide it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A number of this many bits.
    Num(u32),
    /// An Ethernet address (48 bits).
    Mac,
    /// An IPv4 address (32 bits).
    Ipv4,
    /// An IPv6 address (128 bits).
    Ipv6,
    /// An OpenFlow port: a number or a reserved name (`IN_PORT`, `LOCAL`, ...).
    Port,
}

impl Kind {
    fn bits(self) -> u32 {
        match self {
            Kind::Num(bits) => bits,
            Kind::Mac => 48,
            Kind::Ipv4 => 32,
            Kind::Ipv6 => 128,
            Kind::Port => 32,
        }
    }
}

/// Canonical field name, its kind, and its other spellings (lower-case; lookups ignore
/// case). The registers (`regN`, `NXM_NX_REGN`) follow them, see [`FieldId`].
const FIELDS: &[(&str, Kind, &[&str])] = &[
    (
        "in_port",
        Kind::Port,
        &["in_port_oxm", "nxm_of_in_port", "oxm_of_in_port"],
    ),
    (
        "eth_src",
        Kind::Mac,
        &["dl_src", "nxm_of_eth_src", "oxm_of_eth_src"],
    ),
    (
        "eth_dst",
        Kind::Mac,
        &["dl_dst", "nxm_of_eth_dst", "oxm_of_eth_dst"],
    ),
    (
        "eth_type",
        Kind::Num(16),
        &["dl_type", "nxm_of_eth_type", "oxm_of_eth_type"],
    ),
    ("vlan_tci", Kind::Num(16), &["nxm_of_vlan_tci"]),
    (
        "ip_src",
        Kind::Ipv4,
        &["nw_src", "nxm_of_ip_src", "oxm_of_ipv4_src"],
    ),
    (
        "ip_dst",
        Kind::Ipv4,
        &["nw_dst", "nxm_of_ip_dst", "oxm_of_ipv4_dst"],
    ),
    (
        "ip_proto",
        Kind::Num(8),
        &["nw_proto", "nxm_of_ip_proto", "oxm_of_ip_proto"],
    ),
    ("nw_ttl", Kind::Num(8), &["nxm_nx_ip_ttl"]),
    ("nw_tos", Kind::Num(8), &["nxm_of_ip_tos"]),
    (
        "ipv6_src",
        Kind::Ipv6,
        &["nxm_nx_ipv6_src", "oxm_of_ipv6_src"],
    ),
    (
        "ipv6_dst",
        Kind::Ipv6,
        &["nxm_nx_ipv6_dst", "oxm_of_ipv6_dst"],
    ),
    ("arp_op", Kind::Num(16), &["nxm_of_arp_op", "oxm_of_arp_op"]),
    ("arp_spa", Kind::Ipv4, &["nxm_of_arp_spa", "oxm_of_arp_spa"]),
    ("arp_tpa", Kind::Ipv4, &["nxm_of_arp_tpa", "oxm_of_arp_tpa"]),
    ("arp_sha", Kind::Mac, &["nxm_nx_arp_sha", "oxm_of_arp_sha"]),
    ("arp_tha", Kind::Mac, &["nxm_nx_arp_tha", "oxm_of_arp_tha"]),
    (
        "tp_src",
        Kind::Num(16),
        &[
            "tcp_src",
            "udp_src",
            "sctp_src",
            "nxm_of_tcp_src",
            "nxm_of_udp_src",
        ],
    ),
    (
        "tp_dst",
        Kind::Num(16),
        &[
            "tcp_dst",
            "udp_dst",
            "sctp_dst",
            "nxm_of_tcp_dst",
            "nxm_of_udp_dst",
        ],
    ),
    // Generic ICMP fields: resolved to the v4 or v6 field by the match's eth_type.
    ("icmp_type", Kind::Num(8), &[]),
    ("icmp_code", Kind::Num(8), &[]),
    (
        "icmpv4_type",
        Kind::Num(8),
        &["nxm_of_icmp_type", "oxm_of_icmpv4_type"],
    ),
    (
        "icmpv4_code",
        Kind::Num(8),
        &["nxm_of_icmp_code", "oxm_of_icmpv4_code"],
    ),
    (
        "icmpv6_type",
        Kind::Num(8),
        &["nxm_nx_icmpv6_type", "oxm_of_icmpv6_type"],
    ),
    (
        "icmpv6_code",
        Kind::Num(8),
        &["nxm_nx_icmpv6_code", "oxm_of_icmpv6_code"],
    ),
    (
        "nd_target",
        Kind::Ipv6,
        &["nxm_nx_nd_target", "oxm_of_ipv6_nd_target"],
    ),
    (
        "nd_sll",
        Kind::Mac,
        &["nxm_nx_nd_sll", "oxm_of_ipv6_nd_sll"],
    ),
    (
        "nd_tll",
        Kind::Mac,
        &["nxm_nx_nd_tll", "oxm_of_ipv6_nd_tll"],
    ),
    (
        "nd_reserved",
        Kind::Num(32),
        &["ericoxm_of_icmpv6_nd_reserved"],
    ),
    (
        "nd_options_type",
        Kind::Num(8),
        &["ericoxm_of_icmpv6_nd_options_type"],
    ),
    (
        "tun_id",
        Kind::Num(64),
        &["tunnel_id", "nxm_nx_tun_id", "oxm_of_tunnel_id"],
    ),
    ("tun_src", Kind::Ipv4, &["nxm_nx_tun_ipv4_src"]),
    ("tun_dst", Kind::Ipv4, &["nxm_nx_tun_ipv4_dst"]),
    ("metadata", Kind::Num(64), &["oxm_of_metadata"]),
    ("conj_id", Kind::Num(32), &["nxm_nx_conj_id"]),
    ("pkt_mark", Kind::Num(32), &["nxm_nx_pkt_mark"]),
    ("ct_mark", Kind::Num(32), &["nxm_nx_ct_mark"]),
    ("ct_zone", Kind::Num(16), &["nxm_nx_ct_zone"]),
];

/// The 32-bit registers (`regN`, `NXM_NX_REGN`).
const REGISTERS: [&str; 16] = [
    "reg0", "reg1", "reg2", "reg3", "reg4", "reg5", "reg6", "reg7", "reg8", "reg9", "reg10",
    "reg11", "reg12", "reg13", "reg14", "reg15",
];

/// Protocol shorthands of the match: `eth_type` and, for IP protocols, `ip_proto`.
const PROTOCOLS: &[(&str, u16, Option<u8>)] = &[
    ("ip", 0x0800, None),
    ("ipv6", 0x86dd, None),
    ("ip6", 0x86dd, None),
    ("icmp", 0x0800, Some(1)),
    ("icmp6", 0x86dd, Some(58)),
    ("tcp", 0x0800, Some(6)),
    ("tcp6", 0x86dd, Some(6)),
    ("udp", 0x0800, Some(17)),
    ("udp6", 0x86dd, Some(17)),
    ("sctp", 0x0800, Some(132)),
    ("sctp6", 0x86dd, Some(132)),
    ("arp", 0x0806, None),
    ("rarp", 0x8035, None),
    ("mpls", 0x8847, None),
    ("mplsm", 0x8848, None),
];

/// Reserved OpenFlow 1.0 port numbers by name (OpenFlow 1.1+ numbers `0xfffffff8..` are
/// mapped onto these).
const RESERVED_PORTS: &[(&str, u16)] = &[
    ("in_port", 0xfff8),
    ("table", 0xfff9),
    ("normal", 0xfffa),
    ("flood", 0xfffb),
    ("all", 0xfffc),
    ("controller", 0xfffd),
    ("local", 0xfffe),
    ("none", 0xffff),
    ("any", 0xffff),
];

const IN_PORT: u16 = 0xfff8;
/// `resubmit` to this table means "the current table", like no table.
const CURRENT_TABLE: u8 = 255;

/// A field of the alias table: an index into [`FIELDS`], then [`REGISTERS`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FieldId(u8);

impl FieldId {
    /// The canonical name.
    pub fn name(self) -> &'static str {
        self.def().0
    }

    fn kind(self) -> Kind {
        self.def().1
    }

    fn def(self) -> (&'static str, Kind) {
        let i = usize::from(self.0);
        match FIELDS.get(i) {
            Some(&(name, kind, _)) => (name, kind),
            None => {
                let register = REGISTERS.get(i - FIELDS.len()).copied();
                (register.unwrap_or("reg?"), Kind::Num(32))
            }
        }
    }
}

/// The id of a canonical name of [`FIELDS`] (checked when compiling).
const fn field_id(name: &str) -> FieldId {
    let mut i = 0;
    while i < FIELDS.len() {
        let (a, b) = (FIELDS[i].0.as_bytes(), name.as_bytes());
        if a.len() == b.len() {
            let mut j = 0;
            while j < a.len() && a[j] == b[j] {
                j += 1;
            }
            if j == a.len() {
                return FieldId(i as u8);
            }
        }
        i += 1;
    }
    panic!("not a canonical field name")
}

const ETH_TYPE: FieldId = field_id("eth_type");
const IP_PROTO: FieldId = field_id("ip_proto");
const ICMP_TYPE: FieldId = field_id("icmp_type");
const ICMP_CODE: FieldId = field_id("icmp_code");
const ICMPV4_TYPE: FieldId = field_id("icmpv4_type");
const ICMPV4_CODE: FieldId = field_id("icmpv4_code");
const ICMPV6_TYPE: FieldId = field_id("icmpv6_type");
const ICMPV6_CODE: FieldId = field_id("icmpv6_code");

/// Every spelling (lower-case) → its field.
type FieldTable = HashMap<String, FieldId, BuildHasherDefault<Fnv>>;

fn field_table() -> &'static FieldTable {
    static TABLE: LazyLock<FieldTable> = LazyLock::new(|| {
        let mut table = FieldTable::default();
        let mut id = 0u8;
        for &(name, _, aliases) in FIELDS {
            for spelling in std::iter::once(&name).chain(aliases) {
                table.insert(spelling.to_string(), FieldId(id));
            }
            id += 1;
        }
        for (n, name) in REGISTERS.iter().enumerate() {
            table.insert(name.to_string(), FieldId(id));
            table.insert(format!("nxm_nx_reg{n}"), FieldId(id));
            id += 1;
        }
        table
    });
    &TABLE
}

/// FNV-1a: the field table's keys are a fixed, short, trusted set, and the lookup is in
/// the planner's hot path (SipHash doubles the cost of parsing a match).
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// A field name: canonical when known, else normalised text.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Field {
    /// A field of the alias table.
    Known(FieldId),
    /// Any other field, lower-case.
    Other(String),
}

impl fmt::Debug for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::Known(id) => f.write_str(id.name()),
            Field::Other(name) => write!(f, "{name}?"),
        }
    }
}

impl Field {
    /// The field of any spelling.
    pub fn named(name: &str) -> Field {
        let table = field_table();
        let id = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            table.get(&name.to_ascii_lowercase())
        } else {
            table.get(name)
        };
        id.map_or_else(|| Field::Other(norm_text(name)), |id| Field::Known(*id))
    }

    fn kind(&self) -> Option<Kind> {
        match self {
            Field::Known(id) => Some(id.kind()),
            Field::Other(_) => None,
        }
    }
}

/// A normalised value.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Value {
    /// A number, MAC, IP address or port number, as bits.
    Bits(u128),
    /// Anything that did not parse as the field's kind, normalised text.
    Text(String),
}

/// One field of a match: value and mask (`None` = exact).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MatchField {
    /// Canonical field.
    pub field: Field,
    /// Its value (bits outside the mask cleared).
    pub value: Value,
    /// Its mask, when not all ones.
    pub mask: Option<u128>,
}

/// A match: its fields as a set (sorted, each once), kept as a compact one-to-one
/// encoding of them, so that a match costs one small allocation and maps keyed by
/// matches compare bytes, as fast as maps keyed by text.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Match {
    packed: Box<[u8]>,
}

impl Match {
    /// The match of these fields (in any order, repeats allowed).
    pub fn new(mut fields: Vec<MatchField>) -> Match {
        fields.sort_unstable();
        fields.dedup();
        Match {
            packed: pack(&fields),
        }
    }

    /// Parses `ovs-ofctl` match text (comma- or space-separated). Never fails: what is not
    /// understood is kept as text.
    pub fn parse(text: &str) -> Match {
        let mut fields = Vec::with_capacity(8);
        for token in text.split([',', ' ', '\t']).filter(|t| !t.is_empty()) {
            match token.split_once('=') {
                Some((name, value)) => fields.push(match_field(name.trim(), value.trim())),
                None => shorthand(token, &mut fields),
            }
        }
        resolve_icmp(&mut fields);
        Match::new(fields)
    }

    /// The fields, sorted.
    pub fn fields(&self) -> Vec<MatchField> {
        let mut bytes = &self.packed[..];
        std::iter::from_fn(|| unpack_field(&mut bytes)).collect()
    }

    /// Whether every field was understood (no text fallback).
    pub fn is_typed(&self) -> bool {
        self.fields()
            .iter()
            .all(|f| matches!(f.field, Field::Known(_)) && matches!(f.value, Value::Bits(_)))
    }
}

impl fmt::Debug for Match {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.fields()).finish()
    }
}

/// Fields as bytes: per field a tag and id or text, a tag and value, a tag and mask; bits
/// as a length and their big-endian bytes without leading zeros, text as a length and
/// its bytes. [`unpack_field`] reads it back.
fn pack(fields: &[MatchField]) -> Box<[u8]> {
    fn bits(out: &mut Vec<u8>, bits: u128) {
        let bytes = bits.to_be_bytes();
        let skip = (bits.leading_zeros() / 8) as usize;
        out.push((bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    fn text(out: &mut Vec<u8>, text: &str) {
        out.extend_from_slice(&(text.len() as u64).to_be_bytes());
        out.extend_from_slice(text.as_bytes());
    }
    let bits_len = |bits: u128| 2 + 16 - (bits.leading_zeros() / 8) as usize;
    let text_len = |text: &str| 9 + text.len();
    let len: usize = fields
        .iter()
        .map(|f| {
            let field = match &f.field {
                Field::Known(_) => 2,
                Field::Other(name) => text_len(name),
            };
            let value = match &f.value {
                Value::Bits(b) => bits_len(*b),
                Value::Text(t) => text_len(t),
            };
            field + value + f.mask.map_or(1, bits_len)
        })
        .sum();
    let mut out = Vec::with_capacity(len);
    for f in fields {
        match &f.field {
            Field::Known(id) => out.extend([0, id.0]),
            Field::Other(name) => {
                out.push(1);
                text(&mut out, name);
            }
        }
        match &f.value {
            Value::Bits(b) => {
                out.push(0);
                bits(&mut out, *b);
            }
            Value::Text(t) => {
                out.push(1);
                text(&mut out, t);
            }
        }
        match f.mask {
            None => out.push(0),
            Some(m) => {
                out.push(1);
                bits(&mut out, m);
            }
        }
    }
    out.into_boxed_slice()
}

/// The next field of [`pack`]'s bytes (`None` at the end).
fn unpack_field(bytes: &mut &[u8]) -> Option<MatchField> {
    fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, tail) = bytes.split_at_checked(n)?;
        *bytes = tail;
        Some(head)
    }
    fn tag(bytes: &mut &[u8]) -> Option<u8> {
        take(bytes, 1).map(|t| t[0])
    }
    fn bits(bytes: &mut &[u8]) -> Option<u128> {
        let n = usize::from(tag(bytes)?);
        let be = take(bytes, n.min(16))?;
        Some(be.iter().fold(0u128, |acc, b| (acc << 8) | u128::from(*b)))
    }
    fn text(bytes: &mut &[u8]) -> Option<String> {
        let len = u64::from_be_bytes(take(bytes, 8)?.try_into().ok()?);
        let raw = take(bytes, usize::try_from(len).ok()?)?;
        String::from_utf8(raw.to_vec()).ok()
    }
    let field = match tag(bytes)? {
        0 => Field::Known(FieldId(tag(bytes)?)),
        _ => Field::Other(text(bytes)?),
    };
    let value = match tag(bytes)? {
        0 => Value::Bits(bits(bytes)?),
        _ => Value::Text(text(bytes)?),
    };
    let mask = match tag(bytes)? {
        0 => None,
        _ => Some(bits(bytes)?),
    };
    Some(MatchField { field, value, mask })
}

fn match_field(name: &str, value: &str) -> MatchField {
    let field = Field::named(name);
    let (value, mask) = masked_value(field.kind(), value);
    MatchField { field, value, mask }
}

/// A protocol shorthand as its fields; an unknown bare word as a text field.
fn shorthand(token: &str, fields: &mut Vec<MatchField>) {
    let protocol = PROTOCOLS
        .iter()
        .find(|(name, ..)| name.eq_ignore_ascii_case(token));
    let Some(&(_, eth_type, proto)) = protocol else {
        fields.push(MatchField {
            field: Field::named(token),
            value: Value::Text(String::new()),
            mask: None,
        });
        return;
    };
    let exact = |field, value: u128| MatchField {
        field: Field::Known(field),
        value: Value::Bits(value),
        mask: None,
    };
    fields.push(exact(ETH_TYPE, eth_type.into()));
    fields.extend(proto.map(|p| exact(IP_PROTO, p.into())));
}

/// `icmp_type`/`icmp_code` mean the ICMPv6 fields in an IPv6 match, else the ICMPv4 ones.
fn resolve_icmp(fields: &mut [MatchField]) {
    let ipv6 = fields.iter().any(|f| {
        f.field == Field::Known(ETH_TYPE) && f.value == Value::Bits(0x86dd) && f.mask.is_none()
    });
    for f in fields.iter_mut() {
        let Field::Known(id) = f.field else {
            continue;
        };
        f.field = Field::Known(match (id, ipv6) {
            (ICMP_TYPE, true) => ICMPV6_TYPE,
            (ICMP_CODE, true) => ICMPV6_CODE,
            (ICMP_TYPE, false) => ICMPV4_TYPE,
            (ICMP_CODE, false) => ICMPV4_CODE,
            _ => continue,
        });
    }
}

/// One action, normalised.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    /// `output:P`, `P`, `IN_PORT`, `LOCAL`, ...
    Output(Value),
    /// `resubmit(P,T)` / `resubmit:P`; an empty port is `IN_PORT`, no table (or 255) is the
    /// current one.
    Resubmit {
        /// Port the packet is resubmitted as coming from.
        port: Value,
        /// Table; `None` = the current table.
        table: Option<u8>,
    },
    /// `set_field:V[/M]->F`, `load:V->F[a..b]`, `set_tunnel:V`, `mod_dl_src:V`, ...
    SetField {
        /// Canonical field.
        field: Field,
        /// Value, shifted into place for a bit range.
        value: Value,
        /// Bits written, when not the whole field.
        mask: Option<u128>,
    },
    /// `move:A[..]->B[..]`.
    Move {
        /// Source bits.
        src: Subfield,
        /// Destination bits.
        dst: Subfield,
    },
    /// `conjunction(id,k/n)`.
    Conjunction {
        /// Conjunction id.
        id: u32,
        /// This clause (1-based).
        clause: u8,
        /// Number of clauses.
        clauses: u8,
    },
    /// Anything else, normalised text.
    Other(String),
}

/// Bits of a field: `F[]` (the whole field, `bits: None`), `F[a..b]`, `F[a]`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Subfield {
    /// Canonical field.
    pub field: Field,
    /// First and last bit, when not the whole field.
    pub bits: Option<(u32, u32)>,
}

/// An action list.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Actions(pub Vec<Action>);

impl Actions {
    /// Parses `ovs-ofctl` action text (what follows `actions=`). Never fails: what is not
    /// understood is kept as text.
    pub fn parse(text: &str) -> Actions {
        Actions(
            split_top_level(text)
                .filter_map(|token| {
                    let token = norm_text(token);
                    if token.is_empty() || token == "drop" {
                        return None;
                    }
                    Some(action(&token).unwrap_or(Action::Other(token)))
                })
                .collect(),
        )
    }

    /// Whether every action was understood (no text fallback).
    pub fn is_typed(&self) -> bool {
        self.0.iter().all(|a| match a {
            Action::Output(port) | Action::Resubmit { port, .. } => matches!(port, Value::Bits(_)),
            Action::SetField { field, value, .. } => {
                matches!(field, Field::Known(_)) && matches!(value, Value::Bits(_))
            }
            Action::Move { src, dst } => {
                matches!(src.field, Field::Known(_)) && matches!(dst.field, Field::Known(_))
            }
            Action::Conjunction { .. } => true,
            Action::Other(_) => false,
        })
    }
}

/// Whether two action texts mean the same actions (equal text is the fast path).
pub fn same_actions(a: &str, b: &str) -> bool {
    a == b || Actions::parse(a) == Actions::parse(b)
}

/// Splits at commas outside parentheses and brackets.
pub(super) fn split_top_level(text: &str) -> impl Iterator<Item = &str> {
    let mut depth = 0usize;
    let mut start = 0;
    let mut parts = Vec::new();
    for (i, c) in text.char_indices() {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts.into_iter()
}

/// One action token (normalised text); `None` when it is not one of the understood forms.
fn action(token: &str) -> Option<Action> {
    let cut = token.find([':', '(']).unwrap_or(token.len());
    let (name, rest) = token.split_at(cut);
    let arg = rest.strip_prefix(':');
    let call = rest.strip_prefix('(').and_then(|r| r.strip_suffix(')'));
    match (name, arg, call) {
        ("output", Some(port), None) => Some(Action::Output(action_port(port)?)),
        ("resubmit", Some(port), None) => Some(Action::Resubmit {
            port: resubmit_port(port)?,
            table: None,
        }),
        ("resubmit", None, Some(args)) => resubmit(args),
        ("set_field", Some(arg), None) => set_field(arg),
        ("load", Some(arg), None) => load(arg),
        ("move", Some(arg), None) => {
            let (src, dst) = arg.split_once("->")?;
            Some(Action::Move {
                src: subfield(src)?,
                dst: subfield(dst)?,
            })
        }
        ("conjunction", None, Some(args)) => conjunction(args),
        (name, Some(arg), None) => legacy_set(name, arg),
        (_, None, None) => {
            let port = port_value(token);
            matches!(port, Value::Bits(_)).then_some(Action::Output(port))
        }
        _ => None,
    }
}

fn resubmit(args: &str) -> Option<Action> {
    let mut parts = args.split(',');
    let port = parts.next()?.trim();
    let table = parts.next().map(str::trim).unwrap_or("");
    if parts.next().is_some() {
        return None;
    }
    let port = resubmit_port(port)?;
    let table = match table {
        "" => None,
        t => Some(u8::try_from(parse_num(t)?).ok()?).filter(|t| *t != CURRENT_TABLE),
    };
    Some(Action::Resubmit { port, table })
}

/// An empty resubmit port is the packet's own `IN_PORT`.
fn resubmit_port(port: &str) -> Option<Value> {
    if port.is_empty() {
        Some(Value::Bits(IN_PORT.into()))
    } else {
        action_port(port)
    }
}

/// The port of an `output` or `resubmit`; `None` for a name holding a separator or
/// bracket, which no port name has and which printed back would split otherwise.
fn action_port(text: &str) -> Option<Value> {
    let port = port_value(text);
    match &port {
        Value::Text(name) if name.contains(['(', ')', '[', ']', ',']) => None,
        _ => Some(port),
    }
}

fn conjunction(args: &str) -> Option<Action> {
    let (id, clause) = args.split_once(',')?;
    let (k, n) = clause.split_once('/')?;
    Some(Action::Conjunction {
        id: u32::try_from(parse_num(id.trim())?).ok()?,
        clause: u8::try_from(parse_num(k.trim())?).ok()?,
        clauses: u8::try_from(parse_num(n.trim())?).ok()?,
    })
}

/// `set_field:V[/M]->F`.
fn set_field(arg: &str) -> Option<Action> {
    let (value, field) = arg.rsplit_once("->")?;
    let field = field.trim();
    let field = field.strip_suffix("[]").unwrap_or(field);
    // A name with brackets left (`x[][]`, `x[1]`) is not a whole field: kept as text, so
    // that printing it back cannot turn it into another name.
    if field.contains(['[', ']']) {
        return None;
    }
    let field = Field::named(field);
    let (value, mask) = masked_value(field.kind(), value.trim());
    Some(Action::SetField { field, value, mask })
}

/// `load:V->F[a..b]`: a `set_field` of the whole field, or of the range's bits.
fn load(arg: &str) -> Option<Action> {
    let (value, dst) = arg.rsplit_once("->")?;
    let dst = subfield(dst)?;
    // Bits of an unknown field cannot be compared with a set_field of it: keep as text.
    let width = dst.field.kind()?.bits();
    let Some((first, last)) = dst.bits else {
        let (value, mask) = masked_value(dst.field.kind(), value.trim());
        return Some(Action::SetField {
            field: dst.field,
            value,
            mask,
        });
    };
    let mask = ones(last - first + 1).checked_shl(first)?;
    let value = parse_num(value.trim())?.checked_shl(first)? & mask;
    Some(Action::SetField {
        field: dst.field,
        value: Value::Bits(value),
        mask: (mask != ones(width)).then_some(mask),
    })
}

/// The OpenFlow 1.0-style setters, as the `set_field` they are.
fn legacy_set(name: &str, arg: &str) -> Option<Action> {
    let field = match name {
        "set_tunnel" | "set_tunnel64" => "tun_id",
        "mod_dl_src" => "eth_src",
        "mod_dl_dst" => "eth_dst",
        "mod_nw_src" => "ip_src",
        "mod_nw_dst" => "ip_dst",
        "mod_nw_ttl" => "nw_ttl",
        "mod_tp_src" => "tp_src",
        "mod_tp_dst" => "tp_dst",
        _ => return None,
    };
    let field = Field::named(field);
    let (value, mask) = masked_value(field.kind(), arg.trim());
    Some(Action::SetField { field, value, mask })
}

/// `F`, `F[]`, `F[a..b]` or `F[a]`; a range covering a known field is the whole field.
fn subfield(text: &str) -> Option<Subfield> {
    let text = text.trim();
    let (name, range) = match text.split_once('[') {
        Some((name, rest)) => (name, Some(rest.strip_suffix(']')?)),
        None => (text, None),
    };
    let field = Field::named(name.trim());
    let bits = match range.map(str::trim) {
        None | Some("") => None,
        Some(range) => {
            let (first, last) = range.split_once("..").unwrap_or((range, range));
            let first = u32::try_from(parse_num(first.trim())?).ok()?;
            let last = u32::try_from(parse_num(last.trim())?).ok()?;
            if first > last || last >= field.kind().map_or(128, Kind::bits) {
                return None;
            }
            let whole = field
                .kind()
                .is_some_and(|k| first == 0 && last + 1 == k.bits());
            (!whole).then_some((first, last))
        }
    };
    Some(Subfield { field, bits })
}

/// A value with an optional `/mask` (or `/prefix` for addresses), parsed by kind. A full
/// mask is no mask; bits outside the mask are cleared.
fn masked_value(kind: Option<Kind>, text: &str) -> (Value, Option<u128>) {
    let fallback = || (Value::Text(norm_text(text)), None);
    let Some(kind) = kind else {
        return fallback();
    };
    let (value, mask) = match text.split_once('/') {
        Some((value, mask)) => (value, Some(mask)),
        None => (text, None),
    };
    let Some(value) = bits(kind, value) else {
        return fallback();
    };
    let full = ones(kind.bits());
    let mask = match mask.map(|m| mask_bits(kind, m)) {
        None => full,
        Some(Some(mask)) => mask & full,
        Some(None) => return fallback(),
    };
    let mask = (mask != full).then_some(mask);
    (Value::Bits(value & mask.unwrap_or(u128::MAX)), mask)
}

/// A value of this kind as bits (numbers are accepted for every kind, as `load` writes
/// them).
fn bits(kind: Kind, text: &str) -> Option<u128> {
    let text = text.trim();
    match kind {
        Kind::Mac if text.contains(':') => parse_mac(text),
        Kind::Ipv4 if text.contains('.') => {
            text.parse::<Ipv4Addr>().ok().map(|ip| u32::from(ip).into())
        }
        Kind::Ipv6 if text.contains(':') => text.parse::<Ipv6Addr>().ok().map(u128::from),
        Kind::Port => match port_value(text) {
            Value::Bits(port) => Some(port),
            Value::Text(_) => None,
        },
        _ => parse_num(text),
    }
}

/// A mask: like a value, or a prefix length for addresses (`/24`, `/64`).
fn mask_bits(kind: Kind, text: &str) -> Option<u128> {
    let text = text.trim();
    let is_prefix = matches!(kind, Kind::Ipv4 | Kind::Ipv6)
        && !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit());
    if !is_prefix {
        return bits(kind, text);
    }
    let width = kind.bits();
    let prefix: u32 = text.parse().ok().filter(|p| *p <= width)?;
    Some((ones(prefix) << (width - prefix).min(127)) & ones(width))
}

/// A port: a number (OpenFlow 1.1+ reserved numbers mapped onto 1.0's) or a reserved name.
fn port_value(text: &str) -> Value {
    let text = text.trim();
    if let Some(n) = parse_num(text) {
        let n = if (0xffff_fff8..=0xffff_ffff).contains(&n) {
            n - 0xffff_0000
        } else {
            n
        };
        return Value::Bits(n);
    }
    let name = norm_text(text);
    match RESERVED_PORTS
        .iter()
        .find(|(reserved, _)| *reserved == name)
    {
        Some(&(_, n)) => Value::Bits(n.into()),
        None => Value::Text(name),
    }
}

/// Decimal, or hex with `0x`/`0X` (any case of digits).
fn parse_num(text: &str) -> Option<u128> {
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            u128::from_str_radix(hex, 16).ok()
        }
        Some(_) => None,
        None if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => text.parse().ok(),
        None => None,
    }
}

/// `aa:bb:cc:dd:ee:ff` (any case) as 48 bits.
fn parse_mac(text: &str) -> Option<u128> {
    let mut out = 0u128;
    let mut octets = 0;
    for part in text.split(':') {
        if part.is_empty() || part.len() > 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        out = (out << 8) | u128::from(u8::from_str_radix(part, 16).ok()?);
        octets += 1;
    }
    (octets == 6).then_some(out)
}

/// The low `n` bits set (all 128 for `n >= 128`).
fn ones(n: u32) -> u128 {
    if n >= 128 {
        u128::MAX
    } else {
        (1u128 << n) - 1
    }
}

/// Text compared as text: without whitespace, lower-case.
fn norm_text(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// A canonical spelling that [`Match::parse`] reads back as the same value (for tests and
/// debugging; the bundle text is the planner's).
impl fmt::Display for Match {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, field) in self.fields().iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}=", field.field)?;
            write_masked(f, &field.value, field.mask)?;
        }
        Ok(())
    }
}

/// A canonical spelling that [`Actions::parse`] reads back as the same value.
impl fmt::Display for Actions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("drop");
        }
        for (i, action) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{action}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Output(port) => write!(f, "output:{port}"),
            Action::Resubmit { port, table: None } => write!(f, "resubmit:{port}"),
            Action::Resubmit {
                port,
                table: Some(table),
            } => write!(f, "resubmit({port},{table})"),
            Action::SetField { field, value, mask } => {
                f.write_str("set_field:")?;
                write_masked(f, value, *mask)?;
                write!(f, "->{field}")
            }
            Action::Move { src, dst } => write!(f, "move:{src}->{dst}"),
            Action::Conjunction {
                id,
                clause,
                clauses,
            } => write!(f, "conjunction({id},{clause}/{clauses})"),
            Action::Other(text) => f.write_str(text),
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::Known(id) => f.write_str(id.name()),
            Field::Other(name) => f.write_str(name),
        }
    }
}

impl fmt::Display for Subfield {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.bits {
            None => write!(f, "{}[]", self.field),
            Some((first, last)) => write!(f, "{}[{first}..{last}]", self.field),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Bits(bits) => write!(f, "{bits:#x}"),
            Value::Text(text) => f.write_str(text),
        }
    }
}

fn write_masked(f: &mut fmt::Formatter<'_>, value: &Value, mask: Option<u128>) -> fmt::Result {
    write!(f, "{value}")?;
    match mask {
        Some(mask) => write!(f, "/{mask:#x}"),
        None => Ok(()),
    }
}
