//! Standalone mode against a real OVS: manifests in a directory → tunnel ports and rules,
//! following changes to the directory.

#[path = "support/sandbox.rs"]
#[allow(dead_code)]
mod sandbox;

use std::path::Path;
use std::time::Duration;

use remote_device_operator::agent::OvsArgs;
use remote_device_operator::standalone::{self, StandaloneArgs};
use sandbox::{Datapath, Sandbox};
use tokio_util::sync::CancellationToken;

fn args(dir: &Path, sandbox: &Sandbox, once: bool) -> StandaloneArgs {
    StandaloneArgs {
        dir: dir.to_path_buf(),
        node_name: "kind-worker".into(),
        ovs: OvsArgs {
            ovsdb: sandbox.endpoint(),
            bridge: "br-int".into(),
            ovs_rundir: sandbox.dir().to_path_buf(),
        },
        poll: Duration::from_millis(100),
        once,
    }
}

fn copy_examples(dir: &Path) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    for file in [
        "remote-device.yaml",
        "more-devices.yaml",
        "other-cloud-vm.yaml",
        "nodes/kind-nodes.yaml",
    ] {
        std::fs::copy(
            root.join(file),
            dir.join(Path::new(file).file_name().unwrap()),
        )
        .unwrap();
    }
}

fn ports(sandbox: &Sandbox) -> Vec<String> {
    let mut out: Vec<String> = sandbox
        .vsctl(&["list-ports", "br-int"])
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    out.sort();
    out
}

fn owned_flows(sandbox: &Sandbox) -> String {
    sandbox
        .ofctl(&[
            "dump-flows",
            &sandbox.mgmt("br-int"),
            "cookie=0x52444f4600000000/0xffffffff00000000",
        ])
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_makes_the_ports_of_this_node_and_prints_them_ready() {
    let sandbox = Sandbox::start(Datapath::Dummy).unwrap();
    let dir = tempfile::tempdir().unwrap();
    copy_examples(dir.path());
    let mut out = Vec::new();
    tokio::time::timeout(
        Duration::from_secs(20),
        standalone::run(
            args(dir.path(), &sandbox, true),
            CancellationToken::new(),
            &mut out,
        ),
    )
    .await
    .expect("ready within 20 s")
    .unwrap();
    let printed = String::from_utf8(out).unwrap();
    let last_table = printed.rsplit("\n\n").next().unwrap();
    // kind-worker is an edge node: the ToR, the edge router and the IPv6 VM.
    assert_eq!(last_table.lines().count(), 4, "{printed}");
    assert!(
        last_table.lines().skip(1).all(|l| l.ends_with("True")),
        "{printed}"
    );
    assert!(
        last_table.contains("kind-worker.geneve.192-168-100-3"),
        "{printed}"
    );
    assert_eq!(ports(&sandbox).len(), 3);
    let flows = owned_flows(&sandbox);
    assert!(
        flows.contains("dl_dst=52:54:00:aa:00:01") || flows.contains("52:54:00:aa:00:01"),
        "{flows}"
    );
    // Leaving does not touch OVS.
    assert_eq!(ports(&sandbox).len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_the_directory_deleting_the_last_device_removes_its_port_and_rules() {
    let sandbox = Sandbox::start(Datapath::Dummy).unwrap();
    let dir = tempfile::tempdir().unwrap();
    copy_examples(dir.path());
    let shutdown = CancellationToken::new();
    let run = tokio::spawn({
        let (args, shutdown) = (args(dir.path(), &sandbox, false), shutdown.clone());
        async move {
            let mut out = Vec::new();
            let result = standalone::run(args, shutdown, &mut out).await;
            (result, String::from_utf8(out).unwrap())
        }
    });
    let wait_for = |what: &str, check: &dyn Fn() -> bool| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !check() {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_for("three ports", &|| ports(&sandbox).len() == 3);
    let before = ports(&sandbox);
    wait_for("rules of the router", &|| {
        owned_flows(&sandbox).contains("52:54:00:bb:00:01")
    });

    // Delete the edge router (the only device behind 192.168.100.3) by rewriting the file.
    let path = dir.path().join("more-devices.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let kept: Vec<&str> = text
        .split("\n---\n")
        .filter(|d| !d.contains("edge-router"))
        .collect();
    std::fs::write(&path, kept.join("\n---\n")).unwrap();
    wait_for("the router's port to go", &|| ports(&sandbox).len() == 2);
    let after = ports(&sandbox);
    assert!(
        after.iter().all(|p| before.contains(p)),
        "the other ports stay: {before:?} → {after:?}"
    );
    assert!(!after.iter().any(|p| p.starts_with("rdg-")), "{after:?}");
    wait_for("the router's rules to go", &|| {
        !owned_flows(&sandbox).contains("52:54:00:bb:00:01")
    });
    assert!(
        owned_flows(&sandbox).contains("52:54:00:aa:00:01"),
        "other devices keep their rules"
    );

    // A broken manifest is reported and changes nothing.
    std::fs::write(dir.path().join("broken.yaml"), "apiVersion: remotedevice.io/v1alpha1\nkind: RemoteDevice\nmetadata: {name: x, namespace: t}\nspec: {vtepIP: 127.0.0.1, vni: 1, macAddress: '52:54:00:00:00:09'}\n").unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(ports(&sandbox), after);

    shutdown.cancel();
    let (result, printed) = run.await.unwrap();
    result.unwrap();
    assert!(
        printed.contains("spec.vtepIP: \"127.0.0.1\" is a loopback address"),
        "{printed}"
    );
    assert_eq!(ports(&sandbox), after, "nothing is deleted at shutdown");
}
