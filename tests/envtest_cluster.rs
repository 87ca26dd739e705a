//! The whole installation on a real kube-apiserver: the chart's RBAC and admission policy,
//! the controller and the agents as the built binary under the chart's ServiceAccounts
//! (TokenRequest tokens; an agent's bound to a Pod on its node), each node with its own
//! real OVS.

mod support;

use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use remote_device_operator::api::TunnelPort;
use serde_json::json;
use support::cluster::{Cluster, RELEASE_NS, device_spec};
use support::envtest::{Options, pod_on_node, service_account_token, wait_for};

const VTEP: &str = "192.0.2.10";
const LIMIT: Duration = Duration::from_secs(30);

fn edge() -> serde_json::Value {
    json!({ "matchLabels": { "role": "edge" } })
}

/// apply → every selected node's TunnelPort Ready with the ofport of its own OVS → device
/// status N/N → relabel nodes → delete the device → ports, rules and TunnelPorts gone; no
/// request refused in any log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_flow_under_the_charts_service_accounts() {
    let Some(mut cluster) = Cluster::start(Options::default()).await else {
        return;
    };
    cluster
        .add_node("n1", &[("role", "edge")], "198.51.100.1")
        .await;
    cluster
        .add_node("n2", &[("role", "edge")], "198.51.100.2")
        .await;
    cluster.add_node("n3", &[], "198.51.100.3").await;
    cluster.start_controller("controller-a").await;

    cluster
        .apply_device("d1", device_spec(VTEP, 5001, 1, Some(edge())))
        .await;
    let took = cluster
        .wait_converged(&[("n1", VTEP), ("n2", VTEP)], LIMIT)
        .await;
    eprintln!("apply → 2 TunnelPorts Ready in OVS: {took:?}");
    wait_for(LIMIT, "device status 2/2", || async {
        let status = cluster.device("d1").await.status?;
        (status.ready.as_deref() == Some("2/2")).then_some(())
    })
    .await;
    for node in ["n1", "n2"] {
        assert!(
            cluster.owned_flows(node) > 0,
            "{node} has the device's rules"
        );
    }
    assert_eq!(cluster.owned_flows("n3"), 0);

    // n3 joins the selection, n1 leaves it.
    cluster.relabel_node("n3", &[("role", "edge")]).await;
    cluster.relabel_node("n1", &[]).await;
    cluster
        .wait_converged(&[("n2", VTEP), ("n3", VTEP)], LIMIT)
        .await;
    wait_for(LIMIT, "n1's rules gone", || async {
        (cluster.owned_flows("n1") == 0).then_some(())
    })
    .await;
    assert!(cluster.owned_flows("n3") > 0);

    // Someone deletes n2's tunnel port behind the agent's back: it comes back, and the
    // agent says so in an Event on the TunnelPort.
    let lost = cluster
        .ovs_ports("n2")
        .into_iter()
        .next()
        .expect("n2's port");
    cluster.nodes["n2"]
        .sandbox
        .vsctl(&["del-port", "br-int", &lost])
        .unwrap();
    cluster
        .wait_converged(&[("n2", VTEP), ("n3", VTEP)], LIMIT)
        .await;
    let events: Api<Event> = Api::namespaced(cluster.admin.clone(), "default");
    wait_for(LIMIT, "a PortRepaired event on n2's TunnelPort", || async {
        let list = events.list(&Default::default()).await.ok()?;
        list.items
            .iter()
            .any(|e| {
                e.reason.as_deref() == Some("PortRepaired")
                    && e.regarding
                        .as_ref()
                        .and_then(|r| r.name.as_deref())
                        .is_some_and(|n| n.starts_with("n2."))
            })
            .then_some(())
    })
    .await;

    cluster.delete_device("d1").await;
    cluster.wait_converged(&[], LIMIT).await;
    for node in ["n1", "n2", "n3"] {
        wait_for(LIMIT, &format!("{node}'s rules gone"), || async {
            (cluster.owned_flows(node) == 0).then_some(())
        })
        .await;
    }
    let refused = cluster.refused_requests();
    assert!(refused.is_empty(), "refused requests: {refused:#?}");
}

/// An agent's token can write only its own node's TunnelPort status and its finalizer:
/// not another node's status, not a spec, no create or delete; a token without a node
/// claim is refused with the policy's message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fence_around_an_agents_token() {
    let Some(cluster) = Cluster::start(Options::default()).await else {
        return;
    };
    let admin = cluster.admin.clone();
    let ports: Api<TunnelPort> = Api::all(admin.clone());
    for node in ["n1", "n2"] {
        cluster.create_node(node, &[], "198.51.100.9").await;
        let tp: TunnelPort = serde_json::from_value(json!({
            "apiVersion": "remotedevice.io/v1alpha1",
            "kind": "TunnelPort",
            "metadata": { "name": format!("{node}.vxlan.192-0-2-10"), "labels": { "remotedevice.io/node": node } },
            "spec": { "nodeName": node, "remoteIP": VTEP, "tunnelType": "vxlan", "devices": [] },
        }))
        .unwrap();
        ports.create(&PostParams::default(), &tp).await.unwrap();
    }
    let sa = cluster.chart.agent_sa.clone();
    let pod = pod_on_node(&admin, RELEASE_NS, "agent-n1", &sa, "n1").await;
    let n1 = cluster
        .cp
        .client_for(&service_account_token(&admin, RELEASE_NS, &sa, Some(&pod)).await)
        .await;
    let unbound = cluster
        .cp
        .client_for(&service_account_token(&admin, RELEASE_NS, &sa, None).await)
        .await;
    let as_n1: Api<TunnelPort> = Api::all(n1);
    let as_unbound: Api<TunnelPort> = Api::all(unbound);
    let status = |node: &str| {
        json!({
            "apiVersion": "remotedevice.io/v1alpha1",
            "kind": "TunnelPort",
            "metadata": { "name": format!("{node}.vxlan.192-0-2-10") },
            "status": { "ofport": 7 },
        })
    };
    let ssa = PatchParams::apply("remote-device-operator-agent");
    let refused = |r: Result<TunnelPort, kube::Error>| -> (u16, String) {
        match r {
            Err(kube::Error::Api(s)) => (s.code, s.message),
            other => panic!("expected a refusal, got {other:?}"),
        }
    };

    // Allowed: its own node's status and its own finalizer.
    as_n1
        .patch_status("n1.vxlan.192-0-2-10", &ssa, &Patch::Apply(status("n1")))
        .await
        .expect("its own status");
    as_n1
        .patch(
            "n1.vxlan.192-0-2-10",
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "finalizers": ["remotedevice.io/ovs-cleanup"] } })),
        )
        .await
        .expect("its own finalizer");

    // Refused: another node's status.
    let (code, message) = refused(
        as_n1
            .patch_status("n2.vxlan.192-0-2-10", &ssa, &Patch::Apply(status("n2")))
            .await,
    );
    assert_eq!(code, 403, "{message}");
    assert!(
        message.contains("the agent of node n1 may not write TunnelPort"),
        "{message}"
    );
    // Refused: a spec change of its own TunnelPort.
    let (code, message) = refused(
        as_n1
            .patch(
                "n1.vxlan.192-0-2-10",
                &PatchParams::default(),
                &Patch::Merge(json!({ "spec": { "remoteIP": "192.0.2.99" } })),
            )
            .await,
    );
    assert_eq!(code, 403, "{message}");
    assert!(
        message.contains("may not change a TunnelPort's spec"),
        "{message}"
    );
    // Refused: another finalizer, a label.
    let (code, message) = refused(
        as_n1
            .patch(
                "n1.vxlan.192-0-2-10",
                &PatchParams::default(),
                &Patch::Merge(json!({ "metadata": { "labels": { "x": "y" } } })),
            )
            .await,
    );
    assert_eq!(code, 403, "{message}");
    // Refused by RBAC: create and delete.
    let new: TunnelPort = serde_json::from_value(json!({
        "apiVersion": "remotedevice.io/v1alpha1",
        "kind": "TunnelPort",
        "metadata": { "name": "n1.vxlan.192-0-2-11" },
        "spec": { "nodeName": "n1", "remoteIP": "192.0.2.11", "tunnelType": "vxlan", "devices": [] },
    }))
    .unwrap();
    let (code, message) = refused(as_n1.create(&PostParams::default(), &new).await);
    assert_eq!(code, 403, "{message}");
    match as_n1
        .delete("n1.vxlan.192-0-2-10", &DeleteParams::default())
        .await
    {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 403, "{}", s.message),
        other => panic!("delete allowed: {other:?}"),
    }
    // A token without a node claim: refused with the policy's message.
    let (code, message) = refused(
        as_unbound
            .patch_status("n1.vxlan.192-0-2-10", &ssa, &Patch::Apply(status("n1")))
            .await,
    );
    assert_eq!(code, 403, "{message}");
    assert!(message.contains("carries no node claim"), "{message}");
}
