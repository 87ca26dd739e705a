//! What must hold when parts of a cluster fail, on a real kube-apiserver (and, for
//! garbage collection, a real kube-controller-manager): a Node deleted, the leading
//! controller killed, the API server gone for a minute, watches expired by compaction.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Node};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, PostParams};
use support::cluster::{Cluster, RELEASE_NS, device_spec};
use support::envtest::{Options, wait_for};

const VTEP1: &str = "192.0.2.10";
const VTEP2: &str = "192.0.2.20";
const LIMIT: Duration = Duration::from_secs(30);

/// The OVS interface rows (name → uuid) and the number of owned flows of every node: what
/// must not change while the control plane misbehaves.
fn ovs_state(cluster: &Cluster) -> BTreeMap<String, (Vec<(String, String)>, usize)> {
    cluster
        .nodes
        .keys()
        .map(|node| {
            let sandbox = &cluster.nodes[node].sandbox;
            let rows = cluster
                .ovs_ports(node)
                .into_iter()
                .map(|port| {
                    let uuid = sandbox
                        .vsctl(&["get", "Interface", &port, "_uuid"])
                        .unwrap_or_default()
                        .trim()
                        .to_string();
                    (port, uuid)
                })
                .collect();
            (node.clone(), (rows, cluster.owned_flows(node)))
        })
        .collect()
}

/// The lease name the chart gives the controller.
fn lease_name(cluster: &Cluster) -> String {
    cluster
        .chart
        .controller_args
        .iter()
        .find_map(|a| a.strip_prefix("--lease-name="))
        .expect("the chart names the Lease")
        .to_string()
}

async fn holder(cluster: &Cluster) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(cluster.admin.clone(), RELEASE_NS);
    let lease = leases.get(&lease_name(cluster)).await.ok()?;
    lease.spec?.holder_identity
}

/// A Node deleted → its TunnelPorts are collected by the garbage collector (its agent is
/// gone with it, so the controller releases the finalizer); nothing changes on the other
/// nodes, not even a TunnelPort's resourceVersion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_node_loses_its_tunnel_ports_and_nothing_else_changes() {
    let Some(mut cluster) = Cluster::start(Options {
        controller_manager: true,
    })
    .await
    else {
        return;
    };
    cluster.add_node("n1", &[], "198.51.100.1").await;
    cluster.add_node("n2", &[], "198.51.100.2").await;
    cluster.start_controller("controller-a").await;
    cluster
        .apply_device("d1", device_spec(VTEP1, 5001, 1, None))
        .await;
    cluster
        .wait_converged(&[("n1", VTEP1), ("n2", VTEP1)], LIMIT)
        .await;
    let before: Vec<_> = cluster
        .tunnel_ports()
        .await
        .into_iter()
        .filter(|tp| tp.spec.node_name == "n1")
        .map(|tp| (tp.uid(), tp.resource_version()))
        .collect();
    let n1_before = ovs_state(&cluster)["n1"].clone();

    // The node goes away with its agent.
    cluster.kill_agent("n2");
    cluster.nodes.remove("n2");
    let nodes: Api<Node> = Api::all(cluster.admin.clone());
    nodes.delete("n2", &DeleteParams::default()).await.unwrap();
    cluster.wait_converged(&[("n1", VTEP1)], LIMIT).await;
    wait_for(LIMIT, "device status 1/1", || async {
        let status = cluster.device("d1").await.status?;
        (status.ready.as_deref() == Some("1/1")).then_some(())
    })
    .await;

    let after: Vec<_> = cluster
        .tunnel_ports()
        .await
        .into_iter()
        .map(|tp| (tp.uid(), tp.resource_version()))
        .collect();
    assert_eq!(after, before, "n1's TunnelPort untouched");
    assert_eq!(ovs_state(&cluster)["n1"], n1_before, "n1's OVS untouched");
    let refused = cluster.refused_requests();
    assert!(refused.is_empty(), "refused requests: {refused:#?}");
}

/// Two controller replicas: the leader killed → the other leads within the lease time
/// and carries out the change made meanwhile; every TunnelPort has one field manager.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_controller_takes_over_when_the_leader_dies() {
    let Some(mut cluster) = Cluster::start(Options::default()).await else {
        return;
    };
    cluster.add_node("n1", &[], "198.51.100.1").await;
    cluster.start_controller("controller-a").await;
    cluster.start_controller("controller-b").await;
    cluster
        .apply_device("d1", device_spec(VTEP1, 5001, 1, None))
        .await;
    cluster.wait_converged(&[("n1", VTEP1)], LIMIT).await;
    let leader = wait_for(LIMIT, "a Lease holder", || holder(&cluster)).await;
    let leases: Api<Lease> = Api::namespaced(cluster.admin.clone(), RELEASE_NS);
    let lease_seconds = leases
        .get(&lease_name(&cluster))
        .await
        .unwrap()
        .spec
        .and_then(|s| s.lease_duration_seconds)
        .expect("a lease duration");

    cluster
        .controllers
        .get_mut(&leader)
        .expect("the leader is one of ours")
        .kill();
    let killed = Instant::now();
    // A change while nobody leads.
    cluster
        .apply_device("d2", device_spec(VTEP2, 5002, 2, None))
        .await;
    cluster
        .wait_converged(
            &[("n1", VTEP1), ("n1", VTEP2)],
            Duration::from_secs(lease_seconds as u64) + LIMIT,
        )
        .await;
    let took = killed.elapsed();
    let new_leader = holder(&cluster).await.expect("a new leader");
    assert_ne!(new_leader, leader);
    eprintln!(
        "leader killed → pending change done by {new_leader} after {took:?} (lease {lease_seconds} s)"
    );
    assert!(
        took <= Duration::from_secs(lease_seconds as u64 + 10),
        "took {took:?} with a {lease_seconds} s lease"
    );
    for tp in cluster.tunnel_ports().await {
        let managers: Vec<String> = tp
            .managed_fields()
            .iter()
            .filter(|m| m.subresource.is_none())
            .filter_map(|m| m.manager.clone())
            .collect();
        assert!(
            managers
                .iter()
                .all(|m| m == "remote-device-operator" || m == "remote-device-operator-agent"),
            "{}: {managers:?}",
            tp.name_any()
        );
    }
    assert!(
        cluster.log_lines("Conflict").is_empty(),
        "{:#?}",
        cluster.log_lines("Conflict")
    );
}

/// The API server gone for 60 s while agents run: no OVS port or flow is removed, not even
/// by an agent (re)started meanwhile with its ports in OVS; once it is back, a device
/// deleted is cleaned up within 5 s, and the controller leads again (and says so).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_server_outage_removes_nothing_and_changes_flow_again_after_it() {
    let Some(mut cluster) = Cluster::start(Options::default()).await else {
        return;
    };
    cluster.add_node("n1", &[], "198.51.100.1").await;
    cluster.add_node("n2", &[], "198.51.100.2").await;
    cluster.start_controller("controller-a").await;
    cluster
        .apply_device("d1", device_spec(VTEP1, 5001, 1, None))
        .await;
    cluster
        .apply_device("d2", device_spec(VTEP2, 5002, 2, None))
        .await;
    let both = [("n1", VTEP1), ("n2", VTEP1), ("n1", VTEP2), ("n2", VTEP2)];
    cluster.wait_converged(&both, LIMIT).await;
    let steady = ovs_state(&cluster);

    cluster.cp.stop_apiserver();
    let down = Instant::now();
    let mut restarted = false;
    while down.elapsed() < Duration::from_secs(60) {
        if !restarted && down.elapsed() > Duration::from_secs(10) {
            // An agent that starts while the API server is away, with its ports in OVS.
            cluster.kill_agent("n2");
            cluster.start_agent("n2");
            restarted = true;
        }
        assert_eq!(ovs_state(&cluster), steady, "OVS changed during the outage");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    cluster.cp.start_apiserver().await;
    let back = Instant::now();
    cluster.delete_device("d2").await;
    let took = cluster
        .wait_converged(&[("n1", VTEP1), ("n2", VTEP1)], LIMIT)
        .await;
    // d2's MAC (device_spec's MAC for n = 2) is in none of the rules any more.
    for node in ["n1", "n2"] {
        assert!(cluster.owned_flows_with(node, "52:54:00:00:01:01") > 0);
        wait_for(LIMIT, "d2's rules gone", || async {
            (cluster.owned_flows_with(node, "52:54:00:00:01:02") == 0).then_some(())
        })
        .await;
    }
    let cleaned = back.elapsed();
    eprintln!(
        "API server back → device deleted → cleaned up in {took:?} ({cleaned:?} since ready)"
    );
    assert!(
        cleaned <= Duration::from_secs(5),
        "cleanup after the outage took {cleaned:?}\n{}",
        cluster.log_tails()
    );
    wait_for(LIMIT, "leadership regained and logged", || async {
        (cluster.log_lines("became the leader").len() >= 2).then_some(())
    })
    .await;
}

/// etcd compacted and the API server restarted: every watcher's resourceVersion is "too
/// old"; they relist, and no TunnelPort, OVS port or flow is deleted for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_expired_by_compaction_relist_without_deleting_anything() {
    let Some(mut cluster) = Cluster::start(Options::default()).await else {
        return;
    };
    cluster.add_node("n1", &[], "198.51.100.1").await;
    cluster.start_controller("controller-a").await;
    cluster
        .apply_device("d1", device_spec(VTEP1, 5001, 1, None))
        .await;
    cluster.wait_converged(&[("n1", VTEP1)], LIMIT).await;
    let ports_before: Vec<_> = cluster
        .tunnel_ports()
        .await
        .into_iter()
        .map(|tp| tp.uid())
        .collect();
    let ovs_before = ovs_state(&cluster);

    // Move the revision on, so every watcher's last resourceVersion is behind.
    let config_maps: Api<ConfigMap> = Api::namespaced(cluster.admin.clone(), RELEASE_NS);
    for i in 0..20 {
        let cm: ConfigMap = serde_json::from_value(serde_json::json!({
            "metadata": { "name": format!("churn-{i}") }, "data": { "i": i.to_string() },
        }))
        .unwrap();
        config_maps
            .create(&PostParams::default(), &cm)
            .await
            .unwrap();
    }
    let compacted = cluster.cp.compact_etcd();
    cluster.cp.stop_apiserver();
    cluster.cp.start_apiserver().await;
    eprintln!("etcd compacted at revision {compacted}, API server restarted");

    // The system still works after the relist…
    cluster
        .apply_device("d2", device_spec(VTEP2, 5002, 2, None))
        .await;
    cluster
        .wait_converged(&[("n1", VTEP1), ("n1", VTEP2)], LIMIT)
        .await;
    // …and deleted nothing on the way.
    let ports_after: Vec<_> = cluster
        .tunnel_ports()
        .await
        .into_iter()
        .filter(|tp| tp.spec.remote_ip == VTEP1)
        .map(|tp| tp.uid())
        .collect();
    assert_eq!(ports_after, ports_before);
    let (rows_before, _) = &ovs_before["n1"];
    let (rows_after, _) = &ovs_state(&cluster)["n1"];
    for row in rows_before {
        assert!(rows_after.contains(row), "{row:?} replaced: {rows_after:?}");
    }
    // The path under test was taken: some watcher was told its version was too old.
    let expired = cluster.log_lines("too old");
    assert!(
        !expired.is_empty(),
        "no watcher saw the expiry\n{}",
        cluster.log_tails()
    );
}
