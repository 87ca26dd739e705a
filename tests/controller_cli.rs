//! The `controller` subcommand as a process: flags, endpoints, JSON logs and a clean exit
//! on SIGTERM. The "API server" is a local socket that accepts and never answers, so the
//! controller stays unready while it waits — which is what /readyz must say.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_remote-device-operator");

/// Kills the child by its pid if the test fails before it exits.
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn http_get(addr: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn help_explains_every_flag_and_its_environment_variable() {
    let out = Command::new(BIN)
        .args(["controller", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "--lease-namespace",
        "[env: RDO_POD_NAMESPACE=]",
        "--lease-name",
        "remote-device-operator-controller",
        "--identity",
        "[env: RDO_POD_NAME=]",
        "--resync-seconds",
        "--api-timeout-seconds",
        "--log-format",
        "[env: RDO_LOG_FORMAT=]",
        "--metrics-addr",
        "[env: RDO_METRICS_ADDR=]",
        "[::]:8080",
        "--liveness-stall-seconds",
        "[env: RDO_LIVENESS_STALL_SECONDS=]",
        "[env: RDO_RESYNC_SECONDS=]",
        "[env: RDO_API_TIMEOUT_SECONDS=]",
        "[env: RDO_LEASE_NAME=]",
        "--api-max-in-flight",
        "[env: RDO_API_MAX_IN_FLIGHT=]",
        "--api-qps",
        "[env: RDO_API_QPS=]",
        "--api-burst",
        "--event-qps",
    ] {
        assert!(help.contains(needle), "{needle:?} missing from:\n{help}");
    }
    let bad = Command::new(BIN)
        .args(["controller", "--resync-seconds", "0"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--resync-seconds"));
}

#[test]
fn the_component_flags_are_not_offered_by_plan_and_crd() {
    for sub in ["plan", "crd"] {
        let out = Command::new(BIN).args([sub, "--help"]).output().unwrap();
        assert!(out.status.success());
        let help = String::from_utf8(out.stdout).unwrap();
        for flag in ["--log-format", "--metrics-addr", "--liveness-stall-seconds"] {
            assert!(!help.contains(flag), "{sub} offers {flag}:\n{help}");
        }
    }
    let out = Command::new(BIN)
        .args(["agent", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "[env: RDO_NODE_NAME=]",
        "[env: RDO_OVSDB_ENDPOINT=]",
        "[env: RDO_OVS_BRIDGE=]",
        "[env: RDO_OVS_RUNDIR=]",
        "--metrics-addr",
    ] {
        assert!(help.contains(needle), "{needle:?} missing from:\n{help}");
    }
    let out = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(
        help.contains("prefix RDO_") && help.contains("deprecation warning"),
        "{help}"
    );
}

#[test]
fn old_environment_names_conflicting_with_new_ones_are_refused() {
    let out = Command::new(BIN)
        .args(["agent"])
        .env("NODE_NAME", "a")
        .env("RDO_NODE_NAME", "b")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("NODE_NAME=\"a\" (deprecated) and RDO_NODE_NAME=\"b\" disagree"),
        "{stderr}"
    );
    // plan reads no environment: old names lying around do not matter there.
    let out = Command::new(BIN)
        .args(["crd"])
        .env("NODE_NAME", "a")
        .env("RDO_NODE_NAME", "b")
        .output()
        .unwrap();
    assert!(out.status.success());
}

#[test]
fn serves_endpoints_logs_json_and_exits_cleanly_on_sigterm() {
    // A silent API server: accepts connections and holds them.
    let api = TcpListener::bind("127.0.0.1:0").unwrap();
    let api_addr = api.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in api.incoming().flatten() {
            held.push(conn);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://{api_addr}\n\
             users:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\n\
             current-context: x\n"
        ),
    )
    .unwrap();

    let child = Command::new(BIN)
        .args([
            "controller",
            "--metrics-addr",
            "127.0.0.1:0",
            "--identity",
            "cli-test",
        ])
        .env("KUBECONFIG", &kubeconfig)
        .env("RDO_LOG_FORMAT", "json")
        // An old name: still read, with a deprecation warning.
        .env("RESYNC_SECONDS", "300")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = Reap(child);
    let stderr = child.0.stderr.take().unwrap();
    let (lines_tx, lines) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });

    let mut seen = Vec::new();
    let addr = loop {
        let line = lines
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("no 'serving' log line; saw {seen:#?}"));
        let value: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            value["level"].is_string() && value["timestamp"].is_string(),
            "{line}"
        );
        if value["message"] == "serving /metrics, /healthz and /readyz" {
            break value["addr"].as_str().unwrap().to_string();
        }
        seen.push(line);
    };

    assert!(
        seen.iter()
            .any(|l| l.contains("WARN") && l.contains("RESYNC_SECONDS is deprecated")),
        "{seen:#?}"
    );
    assert!(http_get(&addr, "/healthz").starts_with("HTTP/1.1 200"));
    assert!(
        http_get(&addr, "/readyz").starts_with("HTTP/1.1 503"),
        "not ready before the caches sync"
    );
    let metrics = http_get(&addr, "/metrics");
    for line in [
        "# TYPE remote_device_operator_reconciles counter",
        "# TYPE remote_device_operator_ovsdb_reconnects counter",
        "remote_device_operator_reconciles_total{component=\"controller\"} 0",
        "# TYPE remote_device_operator_build_info gauge",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in {metrics}");
    }

    let pid = child.0.id().to_string();
    let kill = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(kill.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "still running 15 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status:?}");
    let rest: Vec<String> = lines.try_iter().collect();
    assert!(
        rest.iter().any(|l| l.contains("SIGTERM received")),
        "{rest:#?}"
    );
}
