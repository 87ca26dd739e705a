//! The `plan` and `crd` subcommands, run as a user runs them.

use std::path::Path;
use std::process::{Command, Output};

use remote_device_operator::api::TunnelPort;

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_remote-device-operator"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn crds_in_the_repository_are_what_crd_prints() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    for (file, crd) in remote_device_operator::crd::all() {
        let on_disk = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
        assert_eq!(
            on_disk,
            remote_device_operator::crd::to_yaml(&crd),
            "crds/{file} is stale: run `cargo run -- crd` and split it into crds/ (see README)"
        );
    }
    let printed = run(&["crd"]);
    assert!(printed.status.success());
    let joined: Vec<String> = remote_device_operator::crd::all()
        .iter()
        .map(|(f, _)| std::fs::read_to_string(dir.join(f)).unwrap())
        .collect();
    assert_eq!(text(&printed.stdout), joined.join("---\n"));
}

#[test]
fn plan_of_the_examples_prints_the_tunnel_ports() {
    let out = run(&["plan", "-f", "examples/"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let expected = "\
NAME                                                 NODE                 REMOTE          TYPE         DEVICES
kind-control-plane.vxlan.192-168-100-2               kind-control-plane   192.168.100.2   vxlan        2
kind-control-plane.vxlan.fd00-100-0-0-0-0-0-5.4790   kind-control-plane   fd00:100::5     vxlan:4790   1
kind-worker.geneve.192-168-100-3                     kind-worker          192.168.100.3   geneve       1
kind-worker.vxlan.192-168-100-2                      kind-worker          192.168.100.2   vxlan        2
kind-worker.vxlan.fd00-100-0-0-0-0-0-5.4790          kind-worker          fd00:100::5     vxlan:4790   1
kind-worker2.vxlan.192-168-100-2                     kind-worker2         192.168.100.2   vxlan        2
kind-worker2.vxlan.fd00-100-0-0-0-0-0-5.4790         kind-worker2         fd00:100::5     vxlan:4790   1
";
    assert_eq!(text(&out.stdout), expected);
    assert_eq!(text(&out.stderr), "");
}

#[test]
fn plan_as_yaml_gives_tunnel_port_objects() {
    let out = run(&[
        "plan",
        "-f",
        "examples/remote-device.yaml",
        "--nodes",
        "examples/nodes",
        "-o",
        "yaml",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ports: Vec<TunnelPort> = serde_yaml_ng::Deserializer::from_str(&text(&out.stdout))
        .map(|doc| serde::Deserialize::deserialize(doc).unwrap())
        .collect();
    assert_eq!(ports.len(), 3);
    assert!(
        ports
            .iter()
            .all(|tp| tp.spec.devices.len() == 1 && tp.spec.devices[0].name == "tor-server-1")
    );
}

#[test]
fn a_bad_manifest_is_named_with_field_and_reason_and_fails_the_run() {
    let out = run(&[
        "plan",
        "-f",
        "examples/remote-device.yaml",
        "-f",
        "tests/manifests/bad/vtep-loopback.yaml",
        "--nodes",
        "examples/nodes",
    ]);
    assert_eq!(out.status.code(), Some(1));
    // The good device is still planned.
    assert!(text(&out.stdout).contains("kind-worker.vxlan.192-168-100-2"));
    let err = text(&out.stderr);
    assert!(
        err.contains("rejected: tests/manifests/bad/vtep-loopback.yaml (document 1) tenant-a/bad-device: spec.vtepIP: \"127.0.0.1\" is a loopback address"),
        "{err}"
    );
}

#[test]
fn conflicts_and_self_tunnels_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let conflict = "\
apiVersion: remotedevice.io/v1alpha1
kind: RemoteDevice
metadata: {name: copy, namespace: tenant-b}
spec: {vtepIP: 192.168.100.9, vni: 5001, macAddress: '52:54:00:AA:00:01'}
---
apiVersion: remotedevice.io/v1alpha1
kind: RemoteDevice
metadata: {name: own-node, namespace: tenant-b}
spec: {vtepIP: 172.18.0.3, vni: 9, macAddress: '52:54:00:00:00:09'}
";
    std::fs::write(dir.path().join("conflict.yaml"), conflict).unwrap();
    let file = dir.path().join("conflict.yaml");
    let out = run(&[
        "plan",
        "-f",
        "examples/remote-device.yaml",
        "-f",
        file.to_str().unwrap(),
        "--nodes",
        "examples/nodes",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("tenant-b/copy: spec: conflict: VNI 5001 and MAC 52:54:00:aa:00:01 are already claimed by tenant-a/tor-server-1"), "{err}");
    assert!(
        err.contains("warning: tenant-b/own-node: node(s) kind-worker skipped"),
        "{err}"
    );
}

#[test]
fn a_missing_path_is_an_error_not_a_panic() {
    let out = run(&["plan", "-f", "no/such/dir"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).starts_with("error: no/such/dir: No such file"),
        "{}",
        text(&out.stderr)
    );
}
