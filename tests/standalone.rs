//! Standalone mode against a real OVS: manifests in a directory → tunnel ports and rules,
//! following changes to the directory; with a VtepGateway there, the switch's
//! hardware_vtep database too (a bare ovsdb-server serving vtep.db: what is written, not
//! packets — `tests/vtep_dataplane.rs` has the packets).

/// The parts of `support` used here (not all of it: this crate needs no cluster).
#[allow(dead_code)]
mod support {
    #[path = "netns.rs"]
    pub mod netns;
    #[path = "sandbox.rs"]
    pub mod sandbox;
    #[path = "vtep.rs"]
    pub mod vtep;
}

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use remote_device_operator::agent::OvsArgs;
use remote_device_operator::standalone::{self, StandaloneArgs};
use support::sandbox::{Datapath, Sandbox};
use support::vtep::{SWITCH, VtepDb};
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
        secrets_dir: None,
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
        {
            let header: Vec<&str> = last_table
                .lines()
                .next()
                .unwrap()
                .split_whitespace()
                .collect();
            let ready = header.iter().position(|c| *c == "READY").unwrap();
            last_table
                .lines()
                .skip(1)
                .all(|l| l.split_whitespace().nth(ready) == Some("True"))
        },
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

const LS: &str = "rdo-vni-5001";
/// A logical switch someone else made on the switch.
const BY_HAND: &str = "by-hand";

/// tor-server-1 of the examples, plugged into port p1 of the gateway.
const ATTACHED: &str = "\
apiVersion: remotedevice.io/v1alpha1
kind: RemoteDevice
metadata: {name: tor-server-1, namespace: tenant-a}
spec:
  vtepIP: 192.168.100.2
  vni: 5001
  macAddress: '52:54:00:aa:00:01'
  attachment: {port: p1}
";

fn gateway(endpoint: &str) -> String {
    format!(
        "apiVersion: remotedevice.io/v1alpha1\nkind: VtepGateway\nmetadata: {{name: {SWITCH}}}\n\
         spec: {{endpoint: '{endpoint}', tunnelIPs: [192.168.100.2]}}\n"
    )
}

/// A directory with the example nodes, the attached device and a gateway at `db`.
fn gateway_dir(db: &VtepDb) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    std::fs::copy(
        root.join("nodes/kind-nodes.yaml"),
        dir.path().join("kind-nodes.yaml"),
    )
    .unwrap();
    std::fs::write(dir.path().join("device.yaml"), ATTACHED).unwrap();
    std::fs::write(dir.path().join("gateway.yaml"), gateway(&db.tcp_endpoint())).unwrap();
    dir
}

fn lines(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

type SwitchRows = (Vec<String>, Vec<String>, Vec<String>);

/// Our rows as `vtep-ctl` shows them: logical switches, p1's bindings, the remote MACs of
/// the first logical switch (the flood list: `unknown-dst -> ...`); not [`BY_HAND`].
/// Three separate reads: while the gateway is changing the switch, a logical switch listed
/// by the first can be gone by the third, so a failed read is an error the caller may retry.
fn switch_rows(db: &VtepDb) -> Result<SwitchRows, String> {
    let ls: Vec<String> = lines(&db.vtep_ctl(&["list-ls"])?)
        .into_iter()
        .filter(|l| l != BY_HAND)
        .collect();
    let bindings = lines(&db.vtep_ctl(&["list-bindings", SWITCH, "p1"])?);
    let flood = match ls.first() {
        Some(ls) => lines(&db.vtep_ctl(&["list-remote-macs", ls])?)
            .into_iter()
            .filter(|l| l.contains(" -> "))
            .collect(),
        None => vec![],
    };
    Ok((ls, bindings, flood))
}

/// The last VtepGateway table in what standalone printed: its data rows, as cells.
fn last_gateway_rows(printed: &str) -> Vec<Vec<String>> {
    let Some(table) = printed
        .rsplit("\n\n")
        .find(|t| t.starts_with("NAME") && t.contains("ENDPOINT"))
    else {
        return vec![];
    };
    table
        .lines()
        .skip(1)
        .take_while(|l| !l.is_empty())
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_waits_for_the_gateway_too_and_programs_its_switch() {
    let sandbox = Sandbox::start(Datapath::Dummy).unwrap();
    let db = VtepDb::start("192.168.100.2", &["p1"]);
    let dir = gateway_dir(&db);
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
    assert_eq!(
        last_gateway_rows(&printed),
        vec![vec![
            SWITCH.to_string(),
            db.tcp_endpoint(),
            SWITCH.into(),
            "1".into(),
            "True".into(),
            "True".into()
        ]],
        "{printed}"
    );
    // kind-worker has no tunnel-IP annotation: its InternalIP is its VTEP.
    let (ls, bindings, flood) = switch_rows(&db).unwrap();
    assert_eq!(ls, [LS], "{printed}");
    assert_eq!(bindings, [format!("0000 {LS}")]);
    assert_eq!(flood, ["unknown-dst -> vxlan_over_ipv4/172.18.0.3"]);
    assert_eq!(ports(&sandbox).len(), 1, "the node side too");
}

/// `Write` into a buffer the test can read while standalone runs.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Shared {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

async fn wait_for(what: &str, out: &Shared, check: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !check() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}; standalone printed:\n{}",
            out.text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_follows_the_directory_and_is_emptied_when_it_leaves_it() {
    let sandbox = Sandbox::start(Datapath::Dummy).unwrap();
    let db = VtepDb::start("192.168.100.2", &["p1"]);
    let dir = gateway_dir(&db);
    // An ssl: gateway without --secrets-dir: said once, and the other one still runs.
    std::fs::write(
        dir.path().join("tor2.yaml"),
        "apiVersion: remotedevice.io/v1alpha1\nkind: VtepGateway\nmetadata: {name: tor2}\n\
         spec: {endpoint: 'ssl:192.0.2.20:6640', tlsSecretName: tor2-client, tunnelIPs: [192.168.100.20]}\n",
    )
    .unwrap();
    let shutdown = CancellationToken::new();
    let out = Shared::default();
    let run = tokio::spawn({
        let (args, shutdown, mut out) = (
            args(dir.path(), &sandbox, false),
            shutdown.clone(),
            out.clone(),
        );
        async move { standalone::run(args, shutdown, &mut out).await }
    });
    // A torn read (the gateway changed the switch between vtep-ctl calls) just polls again.
    let programmed = || {
        switch_rows(&db).ok()
            == Some((
                vec![LS.to_string()],
                vec![format!("0000 {LS}")],
                vec!["unknown-dst -> vxlan_over_ipv4/172.18.0.3".to_string()],
            ))
    };
    let empty = || switch_rows(&db).ok() == Some((vec![], vec![], vec![]));
    let ready = |vnis: &str| {
        let out = out.clone();
        let vnis = vnis.to_string();
        move || {
            last_gateway_rows(&out.text())
                .iter()
                .any(|r| r[0] == SWITCH && r[3] == vnis && r[4..] == ["True", "True"])
        }
    };
    wait_for("the switch programmed", &out, programmed).await;
    wait_for("tor1 Ready with one VNI", &out, ready("1")).await;
    // A row of someone else: never touched, also while ours go.
    db.vtep_ctl(&["add-ls", BY_HAND]).unwrap();

    // The device goes: its logical switch, binding and flood list go; the gateway stays.
    std::fs::remove_file(dir.path().join("device.yaml")).unwrap();
    wait_for("our rows gone", &out, empty).await;
    wait_for("tor1 Ready with no VNI", &out, ready("0")).await;
    wait_for("no tunnel port", &out, || ports(&sandbox).is_empty()).await;

    // Back.
    std::fs::write(dir.path().join("device.yaml"), ATTACHED).unwrap();
    wait_for("the switch programmed again", &out, programmed).await;

    // The gateway leaves the directory: our rows are taken off first, then it stops.
    std::fs::remove_file(dir.path().join("gateway.yaml")).unwrap();
    wait_for("our rows gone with the gateway", &out, empty).await;
    wait_for("the writer stopped", &out, || {
        out.text()
            .contains("gateway tor1: our rows are off its switch; writer stopped")
    })
    .await;
    assert_eq!(
        ports(&sandbox).len(),
        1,
        "the node keeps its tunnel to the device"
    );
    assert_eq!(lines(&db.vtep_ctl(&["list-ls"]).unwrap()), [BY_HAND]);

    shutdown.cancel();
    run.await.unwrap().unwrap();
    let printed = out.text();
    let tls = "gateway tor2: not connected: TLSSecretUnavailable: Secret tor2-client: standalone mode reads it from --secrets-dir DIR as DIR/tor2-client/{tls.key,tls.crt,ca.crt}";
    assert_eq!(printed.matches(tls).count(), 1, "said once: {printed}");
    assert!(
        printed.contains("gateway tor1: gone from the directory; taking our rows off its switch"),
        "{printed}"
    );
}
