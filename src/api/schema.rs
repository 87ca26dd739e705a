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

/// A label key: optional DNS-subdomain prefix, then a name of at most 63 characters.
pub const LABEL_KEY_PATTERN: &str = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$";
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
                "maxProperties": 32,
                "additionalProperties": {
                    "type": "string",
                    "maxLength": 63,
                    "pattern": LABEL_VALUE_PATTERN
                },
                "x-kubernetes-validations": [{
                    "rule": "self.all(k, k.size() <= 317 && k.matches('".to_string() + LABEL_KEY_PATTERN + "'))",
                    "message": "keys must be valid label keys (optional DNS prefix and /, then at most 63 alphanumerics, -, _ or .)"
                }]
            },
            "matchExpressions": {
                "type": "array",
                "maxItems": 16,
                "x-kubernetes-list-type": "atomic",
                "items": {
                    "type": "object",
                    "required": ["key", "operator"],
                    "properties": {
                        "key": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": 317,
                            "pattern": LABEL_KEY_PATTERN
                        },
                        "operator": {
                            "type": "string",
                            "enum": ["In", "NotIn", "Exists", "DoesNotExist"]
                        },
                        "values": {
                            "type": "array",
                            "maxItems": 64,
                            "x-kubernetes-list-type": "atomic",
                            "items": {"type": "string", "maxLength": 63, "pattern": LABEL_VALUE_PATTERN}
                        }
                    },
                    "x-kubernetes-validations": [{
                        "rule": "(self.operator == 'In' || self.operator == 'NotIn') ? (has(self.values) && size(self.values) > 0) : (!has(self.values) || size(self.values) == 0)",
                        "message": "operators In and NotIn need values; Exists and DoesNotExist take none"
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
