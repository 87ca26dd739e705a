//! A real Kubernetes control plane for tests, the way controller-runtime's envtest does it:
//! etcd, kube-apiserver and (for garbage collection) kube-controller-manager from
//! `KUBEBUILDER_ASSETS`, each started in a temp dir on free loopback ports and stopped by
//! pid when the test ends, also when it fails.
//!
//! Without `KUBEBUILDER_ASSETS` the tier is skipped with one loud line, unless
//! `RDO_REQUIRE_ENVTEST=1` (set by the test command in CI), which makes that a failure.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::GroupVersionKind;
use kube::{Client, Config, ResourceExt};
use serde_json::json;

/// Field manager of what tests apply.
pub const TEST_MANAGER: &str = "envtest";

/// The assets directory, or `None` (after one loud line) when the tier cannot run here.
pub fn assets() -> Option<PathBuf> {
    let dir = std::env::var_os("KUBEBUILDER_ASSETS").map(PathBuf::from);
    let usable = dir
        .as_ref()
        .filter(|d| d.join("kube-apiserver").is_file() && d.join("etcd").exists());
    if usable.is_none() {
        let why = match &dir {
            None => "KUBEBUILDER_ASSETS is not set".to_string(),
            Some(d) => format!(
                "KUBEBUILDER_ASSETS={} has no kube-apiserver and etcd",
                d.display()
            ),
        };
        if std::env::var("RDO_REQUIRE_ENVTEST").as_deref() == Ok("1") {
            panic!("the real kube-apiserver tier must run here, but {why}");
        }
        static LOUD: Once = Once::new();
        LOUD.call_once(|| {
            eprintln!(
                "\n#### SKIPPED: real kube-apiserver tests: {why}. Enable them with \
                 `export KUBEBUILDER_ASSETS=$(../shared/envtest/unpack.sh)` or \
                 `export KUBEBUILDER_ASSETS=$(setup-envtest use -p path 1.36.x)` \
                 (and etcd on PATH or in that directory). ####\n"
            );
        });
    }
    usable.cloned()
}

/// Notes the running test (cargo names its thread after it) in `$RDO_ENVTEST_RAN`, so the
/// test command can say how many tests really ran on a real API server.
fn record_run() {
    let Some(path) = std::env::var_os("RDO_ENVTEST_RAN") else {
        return;
    };
    let name = std::thread::current().name().unwrap_or("?").to_string();
    let line = format!("{} {name}\n", std::env::args().next().unwrap_or_default());
    let _ = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(line.as_bytes()));
}

/// A free TCP port on 127.0.0.1 (the kernel's choice; released for the caller to bind).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A child process that is stopped by its pid when dropped (SIGTERM, then SIGKILL), and
/// also dies if the test's thread does (PR_SET_PDEATHSIG).
pub struct Proc {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Proc {
    /// Starts `command` with stdout and stderr in `log`.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> Proc {
        let out = std::fs::File::create(log).expect("log file");
        let err = out.try_clone().expect("log file");
        command.stdin(Stdio::null()).stdout(out).stderr(err);
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc {
            name: name.to_string(),
            child: Some(child),
            log: log.to_path_buf(),
        }
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log's path.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Whether it has exited.
    pub fn exited(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => !matches!(c.try_wait(), Ok(None)),
            None => true,
        }
    }

    /// SIGKILL, as a crash or a node failure would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and up to `grace` for a clean exit, then SIGKILL.
    pub fn stop(&mut self, grace: Duration) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        // SAFETY: signalling our own child by its pid.
        unsafe {
            libc::kill(c.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if !matches!(c.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("{} did not stop within {grace:?}; killing it", self.name);
        let _ = c.kill();
        let _ = c.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

/// Which parts to start.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Also kube-controller-manager with the garbage collector and namespace controllers.
    pub controller_manager: bool,
}

const ADMIN_TOKEN: &str = "envtest-admin-token";

/// A running control plane.
pub struct ControlPlane {
    // Field order is drop order: the controller manager and the API server stop first.
    controller_manager: Option<Proc>,
    apiserver: Option<Proc>,
    etcd: Option<Proc>,
    assets: PathBuf,
    /// The temp dir with every file and log (kept when `RDO_KEEP_ENVTEST` is set).
    pub dir: tempfile::TempDir,
    etcd_port: u16,
    etcd_peer_port: u16,
    /// The API server's secure port on 127.0.0.1.
    pub port: u16,
}

impl ControlPlane {
    /// Starts etcd and the API server (and the controller manager when asked), waits until
    /// the API server is ready; `None` when the tier is skipped here.
    pub async fn start(options: Options) -> Option<ControlPlane> {
        let assets = assets()?;
        let keep = std::env::var_os("RDO_KEEP_ENVTEST").is_some();
        let dir = tempfile::Builder::new()
            .prefix("rdo-envtest-")
            .disable_cleanup(keep)
            .tempdir()
            .expect("temp dir");
        if keep {
            eprintln!("envtest files in {}", dir.path().display());
        }
        let d = dir.path();
        std::fs::write(
            d.join("tokens.csv"),
            format!("{ADMIN_TOKEN},admin,admin,system:masters\n"),
        )
        .unwrap();
        let key = d.join("sa.key");
        run("openssl", &["genrsa", "-out", &s(&key), "2048"]);
        run(
            "openssl",
            &[
                "rsa",
                "-in",
                &s(&key),
                "-pubout",
                "-out",
                &s(&d.join("sa.pub")),
            ],
        );
        let mut cp = ControlPlane {
            controller_manager: None,
            apiserver: None,
            etcd: None,
            assets,
            etcd_port: free_port(),
            etcd_peer_port: free_port(),
            port: free_port(),
            dir,
        };
        cp.start_etcd();
        cp.start_apiserver().await;
        if options.controller_manager {
            cp.start_controller_manager();
        }
        record_run();
        Some(cp)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn start_etcd(&mut self) {
        let client = format!("http://127.0.0.1:{}", self.etcd_port);
        let peer = format!("http://127.0.0.1:{}", self.etcd_peer_port);
        let mut c = Command::new(self.assets.join("etcd"));
        c.args([
            "--data-dir",
            &s(&self.path("etcd")),
            "--listen-client-urls",
            &client,
            "--advertise-client-urls",
            &client,
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
            "--initial-cluster",
            &format!("default={peer}"),
            "--unsafe-no-fsync",
        ]);
        self.etcd = Some(Proc::spawn("etcd", c, &self.path("etcd.log")));
    }

    /// Starts the API server (again, after [`ControlPlane::stop_apiserver`]) on the same
    /// port and waits until it is ready.
    pub async fn start_apiserver(&mut self) {
        let d = self.dir.path();
        let mut c = Command::new(self.assets.join("kube-apiserver"));
        c.args([
            &format!("--etcd-servers=http://127.0.0.1:{}", self.etcd_port),
            "--bind-address=127.0.0.1",
            &format!("--secure-port={}", self.port),
            &format!("--cert-dir={}", s(&d.join("certs"))),
            &format!("--token-auth-file={}", s(&d.join("tokens.csv"))),
            "--authorization-mode=Node,RBAC",
            "--service-account-issuer=https://kubernetes.default.svc",
            &format!("--service-account-key-file={}", s(&d.join("sa.pub"))),
            &format!(
                "--service-account-signing-key-file={}",
                s(&d.join("sa.key"))
            ),
            "--service-cluster-ip-range=10.96.0.0/16",
            "--advertise-address=127.0.0.1",
            "--allow-privileged=true",
            // One relist after a compaction is what the watch-expiry test wants to see.
            "--watch-cache=true",
        ]);
        let log = self.path(&format!("kube-apiserver-{}.log", unique()));
        self.apiserver = Some(Proc::spawn("kube-apiserver", c, &log));
        self.wait_ready().await;
    }

    /// Stops the API server (SIGTERM); etcd keeps running.
    pub fn stop_apiserver(&mut self) {
        if let Some(p) = self.apiserver.as_mut() {
            p.stop(Duration::from_secs(10));
        }
    }

    fn start_controller_manager(&mut self) {
        let kubeconfig = self.write_kubeconfig("controller-manager", ADMIN_TOKEN);
        let mut c = Command::new(self.assets.join("kube-controller-manager"));
        c.args([
            &format!("--kubeconfig={}", s(&kubeconfig)),
            "--bind-address=127.0.0.1",
            "--secure-port=0",
            "--leader-elect=false",
            "--controllers=garbage-collector-controller,namespace-controller",
            &format!(
                "--service-account-private-key-file={}",
                s(&self.path("sa.key"))
            ),
        ]);
        self.controller_manager = Some(Proc::spawn(
            "kube-controller-manager",
            c,
            &self.path("kube-controller-manager.log"),
        ));
    }

    async fn wait_ready(&self) {
        let client = self.admin().await;
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let ready = client
                .request_text(http::Request::get("/readyz").body(Vec::new()).unwrap())
                .await;
            if matches!(&ready, Ok(body) if body.trim() == "ok") {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "kube-apiserver not ready after 90 s: {ready:?}\n{}",
                    tail(
                        &self.apiserver.as_ref().map(|p| p.log()).unwrap_or_default(),
                        40
                    )
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// A kubeconfig file for `token` (the server's self-signed certificate is not checked).
    pub fn write_kubeconfig(&self, name: &str, token: &str) -> PathBuf {
        let path = self.path(&format!("{name}.kubeconfig"));
        std::fs::write(&path, kubeconfig_yaml(self.port, token)).unwrap();
        path
    }

    /// A client authenticated as `token`.
    pub async fn client_for(&self, token: &str) -> Client {
        let kubeconfig = Kubeconfig::from_yaml(&kubeconfig_yaml(self.port, token)).unwrap();
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .unwrap();
        Client::try_from(config).unwrap()
    }

    /// A client in `system:masters`.
    pub async fn admin(&self) -> Client {
        self.client_for(ADMIN_TOKEN).await
    }

    /// A kubeconfig in `system:masters`.
    pub fn admin_kubeconfig(&self) -> PathBuf {
        self.write_kubeconfig("admin", ADMIN_TOKEN)
    }

    /// etcd's current revision.
    pub fn etcd_revision(&self) -> i64 {
        let reply = self.etcd_call("/v3/kv/range", &json!({ "key": "Lw==", "limit": 1 }));
        reply["header"]["revision"]
            .as_str()
            .and_then(|r| r.parse().ok())
            .unwrap_or_else(|| panic!("no revision in {reply}"))
    }

    /// Compacts etcd's history up to its current revision: any watch or list from an
    /// older resourceVersion is "too old" from now on.
    pub fn compact_etcd(&self) -> i64 {
        let revision = self.etcd_revision();
        self.etcd_call(
            "/v3/kv/compaction",
            &json!({ "revision": revision.to_string(), "physical": true }),
        );
        revision
    }

    /// One call to etcd's JSON gateway.
    fn etcd_call(&self, path: &str, body: &serde_json::Value) -> serde_json::Value {
        let body = body.to_string();
        let mut stream = TcpStream::connect(("127.0.0.1", self.etcd_port)).expect("etcd");
        write!(
            stream,
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).unwrap();
        let json = reply
            .find("\r\n\r\n")
            .and_then(|i| reply[i..].find('{').map(|j| &reply[i + j..]))
            .unwrap_or_else(|| panic!("etcd {path}: {reply}"));
        let mut values = serde_json::Deserializer::from_str(json).into_iter::<serde_json::Value>();
        values
            .next()
            .and_then(Result::ok)
            .unwrap_or_else(|| panic!("etcd {path}: {reply}"))
    }

    /// The API server's log (all of its runs).
    pub fn apiserver_log(&self) -> String {
        let mut out = String::new();
        if let Ok(entries) = std::fs::read_dir(self.dir.path()) {
            let mut logs: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.to_string_lossy().contains("kube-apiserver-"))
                .collect();
            logs.sort();
            for p in logs {
                out.push_str(&std::fs::read_to_string(p).unwrap_or_default());
            }
        }
        out
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn kubeconfig_yaml(port: u16, token: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: envtest\n  cluster:\n    server: https://127.0.0.1:{port}\n    insecure-skip-tls-verify: true\nusers:\n- name: user\n  user:\n    token: {token}\ncontexts:\n- name: envtest\n  context:\n    cluster: envtest\n    user: user\ncurrent-context: envtest\n"
    )
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(out.status.success(), "{program} {args:?}: {out:?}");
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Applies every object of a multi-document YAML text with server-side apply (the kind
/// is looked up by discovery), in order.
pub async fn apply_yaml(client: &Client, text: &str) -> Vec<DynamicObject> {
    let mut applied = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        let value: serde_json::Value =
            serde::Deserialize::deserialize(doc).expect("a YAML document");
        if value.is_null() {
            continue;
        }
        applied.push(apply_value(client, value).await);
    }
    applied
}

/// Applies one object given as JSON.
pub async fn apply_value(client: &Client, value: serde_json::Value) -> DynamicObject {
    let object: DynamicObject = serde_json::from_value(value).expect("an object");
    let types = object.types.clone().expect("apiVersion and kind");
    let gvk = GroupVersionKind::try_from(&types).expect("a valid apiVersion");
    let (resource, caps) = kube::discovery::pinned_kind(client, &gvk)
        .await
        .unwrap_or_else(|e| panic!("discovery of {gvk:?}: {e}"));
    let api: Api<DynamicObject> = match (caps.scope, object.namespace()) {
        (kube::discovery::Scope::Namespaced, Some(ns)) => {
            Api::namespaced_with(client.clone(), &ns, &resource)
        }
        (kube::discovery::Scope::Namespaced, None) => {
            Api::default_namespaced_with(client.clone(), &resource)
        }
        (kube::discovery::Scope::Cluster, _) => Api::all_with(client.clone(), &resource),
    };
    let name = object.name_any();
    api.patch(
        &name,
        &PatchParams::apply(TEST_MANAGER).force(),
        &Patch::Apply(&object),
    )
    .await
    .unwrap_or_else(|e| panic!("apply {} {name}: {e}", gvk.kind))
}

/// Installs the CRDs from `crds/` and waits until the API server serves them.
pub async fn install_crds(client: &Client) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    let mut names = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for object in apply_yaml(client, &text).await {
            names.push(object.name_any());
        }
    }
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for name in names {
        wait_for(
            Duration::from_secs(30),
            &format!("CRD {name} established"),
            || async {
                let crd = crds.get(&name).await.ok()?;
                let conditions = crd.status?.conditions?;
                conditions
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
                    .then_some(())
            },
        )
        .await;
    }
}

/// Polls `check` every 50 ms until it gives `Some`, or panics after `limit`.
pub async fn wait_for<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A token of ServiceAccount `namespace/name` from the TokenRequest API, bound to
/// `pod` when given (then it carries the pod's node in its node claim).
pub async fn service_account_token(
    admin: &Client,
    namespace: &str,
    name: &str,
    pod: Option<&Pod>,
) -> String {
    let api: Api<ServiceAccount> = Api::namespaced(admin.clone(), namespace);
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(3600),
            bound_object_ref: pod.map(|p| BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: p.metadata.name.clone(),
                uid: p.metadata.uid.clone(),
            }),
            ..TokenRequestSpec::default()
        }),
        ..TokenRequest::default()
    };
    let reply = api
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .unwrap_or_else(|e| panic!("token for {namespace}/{name}: {e}"));
    reply.status.and_then(|s| s.token).expect("a token")
}

/// Creates a Pod of ServiceAccount `sa` bound to `node` (it stays Pending: there is no
/// kubelet), for a token that carries the node claim.
pub async fn pod_on_node(admin: &Client, namespace: &str, name: &str, sa: &str, node: &str) -> Pod {
    let pods: Api<Pod> = Api::namespaced(admin.clone(), namespace);
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name, "namespace": namespace },
        "spec": {
            "serviceAccountName": sa,
            "automountServiceAccountToken": false,
            "nodeName": node,
            "containers": [{ "name": "agent", "image": "remote-device-operator:test" }],
        }
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod)
        .await
        .unwrap_or_else(|e| panic!("pod {namespace}/{name}: {e}"))
}

/// Labels of a Node manifest built by tests.
pub type Labels = BTreeMap<String, String>;
