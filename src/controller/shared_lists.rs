//! One copy of each distinct device list in the TunnelPort cache.
//!
//! Every node's TunnelPort to a VTEP carries the same devices, and each object read from
//! the API server arrives with its own copy: at 1000 nodes × 100 VTEPs × 10 devices that
//! is a million entries for a hundred distinct lists. The cache swaps each arriving list
//! for the equal one it already holds, so the planner's and the store's lists stay as
//! many as there are distinct ones.

use std::collections::HashSet;
use std::sync::Arc;

use crate::api::{TunnelDevice, TunnelPort};

/// The set is never pruned below this many lists: a prune walks the whole set. Pruning
/// is lazy, so the set holds at most about twice the live distinct lists plus this.
const PRUNE_FLOOR: usize = 64;

/// The distinct device lists the cache holds.
#[derive(Debug, Default)]
pub struct SharedLists {
    lists: HashSet<Arc<Vec<TunnelDevice>>>,
    /// Size after the last prune; the next one runs when the set has doubled since.
    pruned_at: usize,
}

impl SharedLists {
    /// Replaces `port`'s device list with the equal one already held, or keeps it as the
    /// one to share from now on.
    pub fn share(&mut self, port: &mut TunnelPort) {
        let list = &mut port.spec.devices;
        if let Some(held) = self.lists.get(list) {
            *list = Arc::clone(held);
            return;
        }
        self.lists.insert(Arc::clone(list));
        if self.lists.len() >= PRUNE_FLOOR.max(2 * self.pruned_at) {
            self.prune();
        }
    }

    /// Forgets lists nothing but this set holds any more (their ports were deleted or
    /// changed).
    fn prune(&mut self) {
        self.lists.retain(|l| Arc::strong_count(l) > 1);
        self.pruned_at = self.lists.len();
    }

    /// How many distinct lists are held.
    pub fn len(&self) -> usize {
        self.lists.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.lists.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{TunnelPortSpec, TunnelType};

    fn port(node: &str, vnis: &[u32]) -> TunnelPort {
        let devices = vnis
            .iter()
            .map(|v| TunnelDevice {
                namespace: "t".into(),
                name: format!("d{v}"),
                mac_address: "52:54:00:00:00:01".into(),
                vni: *v,
                ips: vec![],
                local_vlan: None,
            })
            .collect();
        TunnelPort::new(
            &format!("{node}.vxlan.192-0-2-10"),
            TunnelPortSpec {
                node_name: node.into(),
                remote_ip: "192.0.2.10".into(),
                tunnel_type: TunnelType::Vxlan,
                dst_port: None,
                local_ip: None,
                devices: Arc::new(devices),
                bfd: None,
            },
        )
    }

    #[test]
    fn equal_lists_become_one_and_different_ones_stay_apart() {
        let mut shared = SharedLists::default();
        let (mut a, mut b, mut c) = (port("n1", &[1, 2]), port("n2", &[1, 2]), port("n3", &[3]));
        for p in [&mut a, &mut b, &mut c] {
            shared.share(p);
        }
        assert!(Arc::ptr_eq(&a.spec.devices, &b.spec.devices));
        assert!(!Arc::ptr_eq(&a.spec.devices, &c.spec.devices));
        assert_eq!((a.spec.devices.len(), c.spec.devices.len()), (2, 1));
        assert_eq!(shared.len(), 2);
    }

    #[test]
    fn lists_no_port_holds_are_forgotten() {
        let mut shared = SharedLists::default();
        // Many ports, each replaced by a port with a new list (a device list that keeps
        // changing): the set stays bounded by what is alive.
        let mut alive = Vec::new();
        for v in 0..1000u32 {
            let mut p = port("n1", &[v + 1]);
            shared.share(&mut p);
            alive = vec![p];
        }
        assert_eq!(alive.len(), 1);
        assert!(
            shared.len() <= 2 * PRUNE_FLOOR,
            "held {} lists for 1 alive port",
            shared.len()
        );
        // A held list is still shared after a prune.
        let mut again = port("n2", &[1000]);
        shared.share(&mut again);
        assert!(Arc::ptr_eq(&again.spec.devices, &alive[0].spec.devices));
    }
}
