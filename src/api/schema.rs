//! Hand-written schema fragments where the derived ones would be unbounded or too loose.
//!
//! A real kube-apiserver refuses CRDs whose CEL rules it estimates too costly, which
//! happens as soon as a rule can iterate an unbounded list or string: every list, map and
//! string here has a bound.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::{Schema, SchemaGenerator, json_schema};

use super::TunnelDevice;

/// Most devices one TunnelPort carries (keeps the object far below etcd's size limit).
pub const MAX_DEVICES_PER_TUNNEL: usize = 1024;
/// Most IP addresses of one device.
pub const MAX_DEVICE_IPS: usize = 16;
/// Most `matchLabels` entries of a node selector.
pub const MAX_SELECTOR_LABELS: usize = 32;
/// Most `matchExpressions` of a node selector.
pub const MAX_SELECTOR_EXPRESSIONS: usize = 16;
/// Most `values` of one selector expression.
pub const MAX_SELECTOR_VALUES: usize = 64;

/// A label key: optional DNS-subdomain prefix, then a name of at most 63 characters (the
/// prefix's own limit of 253 characters is [`LABEL_KEY_PREFIX_RULE`]: a regular expression
/// cannot bound both its length and its shape).
pub const LABEL_KEY_PATTERN: &str = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$";
/// CEL over a label key `k` that matches [`LABEL_KEY_PATTERN`]: its prefix, if any, has at
/// most 253 characters (the longest DNS subdomain).
pub const LABEL_KEY_PREFIX_RULE: &str = "(!K.contains('/') || K.matches('^[^/]{1,253}/'))";

fn prefix_rule(var: &str) -> String {
    LABEL_KEY_PREFIX_RULE.replace('K', var)
}
/// A label value: empty, or at most 63 characters starting and ending alphanumeric.
pub const LABEL_VALUE_PATTERN: &str = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$";

/// The IP addresses of a device: a set of at most 16 unicast addresses.
pub fn device_ips(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "maxItems": MAX_DEVICE_IPS,
        "x-kubernetes-list-type": "set",
        "items": {
            "type": "string",
            "minLength": 1,
            "maxLength": 45,
            "x-kubernetes-validations": [
                {
                    "rule": "isIP(self)",
                    "message": "must be an IPv4 or IPv6 address in canonical form (no leading zeros, no IPv4-mapped IPv6)"
                },
                {
                    "rule": "!isIP(self) || ip(self).isGlobalUnicast() || ip(self).isLinkLocalUnicast()",
                    "message": "must be a unicast address (not loopback, multicast, broadcast or unspecified)"
                },
                {
                    "rule": "!isIP(self) || ip.isCanonical(self)",
                    "message": "must be written in canonical form (lower case, zeros compressed, e.g. 2001:db8::1), so that the list holds each address once"
                }
            ]
        }
    })
}

/// A Kubernetes LabelSelector with every list, map and string bounded.
pub fn label_selector(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "description": "Label selector over Node labels (matchLabels and matchExpressions are ANDed).",
        "x-kubernetes-map-type": "atomic",
        "properties": {
            "matchLabels": {
                "type": "object",
                "description": "Labels a Node must carry with exactly these values.",
                "maxProperties": MAX_SELECTOR_LABELS,
                "additionalProperties": {
                    "type": "string",
                    "maxLength": 63,
                    "pattern": LABEL_VALUE_PATTERN
                },
                "x-kubernetes-validations": [{
                    "rule": "self.all(k, k.size() <= 317 && k.matches('".to_string() + LABEL_KEY_PATTERN + "') && " + &prefix_rule("k") + ")",
                    "message": "keys must be valid label keys (optional DNS prefix of at most 253 characters and /, then at most 63 alphanumerics, -, _ or .)"
                }]
            },
            "matchExpressions": {
                "type": "array",
                "description": "Requirements on Node labels; every one must hold.",
                "maxItems": MAX_SELECTOR_EXPRESSIONS,
                "x-kubernetes-list-type": "atomic",
                "items": {
                    "type": "object",
                    "required": ["key", "operator"],
                    "properties": {
                        "key": {
                            "type": "string",
                            "description": "The label key the requirement is about.",
                            "minLength": 1,
                            "maxLength": 317,
                            "pattern": LABEL_KEY_PATTERN,
                            "x-kubernetes-validations": [{
                                "rule": prefix_rule("self"),
                                "message": "the prefix of a label key (before /) must have at most 253 characters"
                            }]
                        },
                        "operator": {
                            "type": "string",
                            "description": "In, NotIn (the label's value is, is not among values), Exists or DoesNotExist (the key is, is not there).",
                            "enum": ["In", "NotIn", "Exists", "DoesNotExist"]
                        },
                        "values": {
                            "type": "array",
                            "description": "The values for In and NotIn; empty for Exists and DoesNotExist.",
                            "maxItems": MAX_SELECTOR_VALUES,
                            "x-kubernetes-list-type": "atomic",
                            "items": {"type": "string", "maxLength": 63, "pattern": LABEL_VALUE_PATTERN}
                        }
                    },
                    "x-kubernetes-validations": [{
                        "rule": "(self.operator == 'In' || self.operator == 'NotIn') ? (has(self.values) && size(self.values) > 0) : (!has(self.values) || size(self.values) == 0)",
                        "message": "operators In and NotIn need values; Exists and DoesNotExist take none",
                        "fieldPath": ".values"
                    }]
                }
            }
        }
    })
}

/// Status conditions: a list keyed by `type`.
pub fn conditions(generator: &mut SchemaGenerator) -> Schema {
    let item = generator.subschema_for::<Condition>();
    json_schema!({
        "type": "array",
        "maxItems": 8,
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"],
        "items": item
    })
}

/// The devices behind a tunnel: a list keyed by namespace and name.
pub fn devices(generator: &mut SchemaGenerator) -> Schema {
    let item = generator.subschema_for::<TunnelDevice>();
    json_schema!({
        "type": "array",
        "maxItems": MAX_DEVICES_PER_TUNNEL,
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["namespace", "name"],
        "items": item
    })
}

/// The tunnel IPs of a gateway: a set of 1 to 8 canonical unicast IPv4 addresses
/// (hardware_vtep carries only VXLAN over IPv4).
pub fn gateway_tunnel_ips(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "minItems": 1,
        "maxItems": super::MAX_GATEWAY_TUNNEL_IPS,
        "x-kubernetes-list-type": "set",
        "items": {
            "type": "string",
            "minLength": 7,
            "maxLength": 15,
            "x-kubernetes-validations": [
                {
                    "rule": "isIP(self) && ip(self).family() == 4",
                    "message": "must be an IPv4 address (hardware_vtep carries only VXLAN over IPv4), without leading zeros"
                },
                {
                    "rule": "!isIP(self) || ip(self).isGlobalUnicast()",
                    "message": "must be a unicast address (not loopback, multicast, broadcast, link-local or unspecified)"
                }
            ]
        }
    })
}
