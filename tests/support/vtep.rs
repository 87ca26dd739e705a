//! An emulated top-of-rack hardware VTEP for tests: Debian's `ovs-vtep` (package
//! `openvswitch-vtep`, needs `python3-openvswitch`) with its own ovsdb-server (conf.db +
//! vtep.db) and userspace ovs-vswitchd, all inside its own network namespace.
//!
//! ```text
//!  ns <ctl> (the controller)          ns <tor> (the switch)
//!  mgmt0 10.254.0.1 ── veth ───────── mgmt0 10.254.0.2  ovsdb-server tcp:6640 / ssl:6641
//!                                     [tor1]  device ports (each a veth, peer where asked)
//!                                     [br-phy] tunnel IP ── up0 ── veth ── (underlay ns)
//! ```
//! The namespaces are ours and fresh, so the fixed ports are free by construction.
//! Daemons are stopped by the pids in their pidfiles, never by name, on drop (also when a
//! test fails); the directory is a temp dir.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use remote_device_operator::ovsdb::TlsFiles;
use remote_device_operator::vtep::{FabricState, GatewayConfig, GatewayObserved, run};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::netns::Netns;

/// Address of the controller's end of the management link.
pub const CTL_MGMT_IP: &str = "10.254.0.1";
/// Address the switch's OVSDB listens on.
pub const TOR_MGMT_IP: &str = "10.254.0.2";
/// `tcp:` port of the switch's OVSDB.
pub const TCP_PORT: u16 = 6640;
/// `ssl:` port of the switch's OVSDB (when started with a PKI).
pub const SSL_PORT: u16 = 6641;

/// Runs a program with OVS_* pointing into `dir`; stdout or the error with stderr.
/// Runs an OVS program with every OVS directory pointed at `dir`.
pub fn ovs_run(dir: &Path, program: &str, args: &[&str]) -> Result<String, String> {
    super::sandbox::run(program, args, dir).map_err(|e| e.to_string())
}

fn must(dir: &Path, program: &str, args: &[&str]) -> String {
    ovs_run(dir, program, args).unwrap_or_else(|e| panic!("{e}"))
}

/// Certificates for `ssl:` made with openssl: a CA, the switch's and the controller's
/// certificate signed by it, and an unrelated CA.
pub struct Pki {
    /// Directory holding the PEM files.
    pub dir: PathBuf,
}

impl Pki {
    fn path(&self, f: &str) -> PathBuf {
        self.dir.join(f)
    }

    /// Makes the files in `dir`.
    pub fn make(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir).unwrap();
        let pki = Pki {
            dir: dir.to_path_buf(),
        };
        let p = |f: &str| pki.path(f).display().to_string();
        for ca in ["ca", "other-ca"] {
            must(
                dir,
                "openssl",
                &[
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-days",
                    "2",
                    "-subj",
                    &format!("/CN=rdo test {ca}"),
                    "-keyout",
                    &p(&format!("{ca}-key.pem")),
                    "-out",
                    &p(&format!("{ca}.pem")),
                ],
            );
        }
        // X.509 v3 leaf certificates (webpki refuses v1), without subjectAltName, as
        // ovs-pki makes them.
        let ext = pki.path("leaf.ext");
        std::fs::write(
            &ext,
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n\
             extendedKeyUsage=serverAuth,clientAuth\n",
        )
        .unwrap();
        for who in ["switch", "controller"] {
            must(
                dir,
                "openssl",
                &[
                    "req",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-subj",
                    &format!("/CN={who}"),
                    "-keyout",
                    &p(&format!("{who}-key.pem")),
                    "-out",
                    &p(&format!("{who}.csr")),
                ],
            );
            must(
                dir,
                "openssl",
                &[
                    "x509",
                    "-req",
                    "-in",
                    &p(&format!("{who}.csr")),
                    "-CA",
                    &p("ca.pem"),
                    "-CAkey",
                    &p("ca-key.pem"),
                    "-CAcreateserial",
                    "-days",
                    "2",
                    "-extfile",
                    &ext.display().to_string(),
                    "-out",
                    &p(&format!("{who}.pem")),
                ],
            );
        }
        pki
    }

    /// The controller's files, trusting `ca` (`ca.pem` or `other-ca.pem`).
    pub fn client(&self, ca: &str) -> TlsFiles {
        TlsFiles {
            private_key: self.path("controller-key.pem"),
            certificate: self.path("controller.pem"),
            ca_certificate: self.path(ca),
        }
    }
}

/// How to start a [`Tor`].
pub struct TorOptions<'a> {
    /// Short tag making the namespace names unique within the test binary.
    pub tag: &'a str,
    /// The switch's VTEP address (`tunnel_ips`), on br-phy.
    pub tunnel_ip: &'a str,
    /// Device-facing ports: name, and the namespace the veth peer (`eth0`) goes to
    /// (`None`: the peer stays in the switch's namespace, named `<port>x`).
    pub ports: Vec<(&'a str, Option<&'a Netns>)>,
    /// The underlay: the namespace where the uplink's peer goes (named `<uplink_peer>`).
    pub uplink: Option<(&'a Netns, &'a str)>,
    /// Also serve `ssl:` with these certificates.
    pub pki: Option<&'a Pki>,
}

/// A running emulated switch named `tor1`.
pub struct Tor {
    dir: tempfile::TempDir,
    /// The switch's namespace.
    pub ns: Netns,
    /// The controller's namespace (the management link's other end).
    pub ctl: Netns,
}

/// The Physical_Switch (and its OVS bridge) name.
pub const SWITCH: &str = "tor1";

impl Tor {
    /// Starts everything and waits until ovs-vtep has published every port.
    pub fn start(o: TorOptions) -> Tor {
        let tor = Tor {
            dir: tempfile::Builder::new()
                .prefix("rdo-tor-")
                .tempdir()
                .unwrap(),
            ns: Netns::new(&format!("{}t", o.tag)),
            ctl: Netns::new(&format!("{}m", o.tag)),
        };
        tor.links(&o);
        tor.ns.enter(|| tor.daemons(&o));
        tor.bridges(&o);
        tor.ns.enter(|| tor.start_ovs_vtep());
        for (port, _) in &o.ports {
            tor.wait_port(port);
        }
        tor
    }

    /// OVS_RUNDIR of the switch.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn d(&self) -> String {
        self.dir().display().to_string()
    }

    fn links(&self, o: &TorOptions) {
        let (t, c) = (&self.ns, &self.ctl);
        t.ip(&[
            "link",
            "add",
            "mgmt0",
            "type",
            "veth",
            "peer",
            "name",
            "mgmt0",
            "netns",
            c.name(),
        ]);
        t.ip(&["addr", "add", &format!("{TOR_MGMT_IP}/30"), "dev", "mgmt0"]);
        c.ip(&["addr", "add", &format!("{CTL_MGMT_IP}/30"), "dev", "mgmt0"]);
        t.ip(&["link", "set", "mgmt0", "up"]);
        c.ip(&["link", "set", "mgmt0", "up"]);
        for (port, peer_ns) in &o.ports {
            match peer_ns {
                Some(ns) => t.ip(&[
                    "link",
                    "add",
                    port,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    "eth0",
                    "netns",
                    ns.name(),
                ]),
                None => t.ip(&[
                    "link",
                    "add",
                    port,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    &format!("{port}x"),
                ]),
            };
            t.ip(&["link", "set", port, "up"]);
            if peer_ns.is_none() {
                t.ip(&["link", "set", &format!("{port}x"), "up"]);
            }
            let _ = t.exec("ethtool", &["-K", port, "tx", "off"]);
        }
        if let Some((ns, peer)) = o.uplink {
            t.ip(&[
                "link",
                "add",
                "up0",
                "type",
                "veth",
                "peer",
                "name",
                peer,
                "netns",
                ns.name(),
            ]);
            t.ip(&["link", "set", "up0", "up"]);
            let _ = t.exec("ethtool", &["-K", "up0", "tx", "off"]);
        }
    }

    /// ovsdb-server (conf.db + vtep.db) and ovs-vswitchd, run inside the switch's netns.
    fn daemons(&self, o: &TorOptions) {
        let (dir, d) = (self.dir(), self.d());
        must(
            dir,
            "ovsdb-tool",
            &[
                "create",
                &format!("{d}/conf.db"),
                "/usr/share/openvswitch/vswitch.ovsschema",
            ],
        );
        must(
            dir,
            "ovsdb-tool",
            &[
                "create",
                &format!("{d}/vtep.db"),
                "/usr/share/openvswitch/vtep.ovsschema",
            ],
        );
        let mut args = vec![
            format!("{d}/conf.db"),
            format!("{d}/vtep.db"),
            format!("--remote=punix:{d}/db.sock"),
            format!("--remote=ptcp:{TCP_PORT}:{TOR_MGMT_IP}"),
            format!("--pidfile={d}/ovsdb-server.pid"),
            format!("--unixctl={d}/ovsdb-server.ctl"),
            format!("--log-file={d}/ovsdb-server.log"),
            "--detach".into(),
            "--no-chdir".into(),
        ];
        if let Some(pki) = o.pki {
            let p = |f: &str| pki.path(f).display().to_string();
            args.push(format!("--remote=pssl:{SSL_PORT}:{TOR_MGMT_IP}"));
            args.push(format!("--private-key={}", p("switch-key.pem")));
            args.push(format!("--certificate={}", p("switch.pem")));
            args.push(format!("--ca-cert={}", p("ca.pem")));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        must(dir, "ovsdb-server", &args);
        must(
            dir,
            "ovs-vsctl",
            &[&format!("--db=unix:{d}/db.sock"), "--no-wait", "init"],
        );
        must(
            dir,
            "ovs-vswitchd",
            &[
                &format!("unix:{d}/db.sock"),
                "--enable-dummy",
                "--disable-system",
                &format!("--pidfile={d}/ovs-vswitchd.pid"),
                &format!("--unixctl={d}/ovs-vswitchd.ctl"),
                &format!("--log-file={d}/ovs-vswitchd.log"),
                "--detach",
                "--no-chdir",
            ],
        );
    }

    /// Runs `ovs-vsctl` on the switch's conf.db.
    pub fn vsctl(&self, args: &[&str]) -> Result<String, String> {
        let db = format!("--db=unix:{}/db.sock", self.d());
        let mut all = vec![db.as_str()];
        all.extend_from_slice(args);
        ovs_run(self.dir(), "ovs-vsctl", &all)
    }

    /// Runs `vtep-ctl` on the switch's vtep.db.
    pub fn vtep_ctl(&self, args: &[&str]) -> Result<String, String> {
        let db = format!("--db=unix:{}/db.sock", self.d());
        let mut all = vec![db.as_str()];
        all.extend_from_slice(args);
        ovs_run(self.dir(), "vtep-ctl", &all)
    }

    /// Runs `ovs-appctl` on the switch's vswitchd.
    pub fn appctl(&self, args: &[&str]) -> Result<String, String> {
        let t = format!("{}/ovs-vswitchd.ctl", self.d());
        let mut all = vec!["-t", t.as_str()];
        all.extend_from_slice(args);
        ovs_run(self.dir(), "ovs-appctl", &all)
    }

    fn bridges(&self, o: &TorOptions) {
        let mut args: Vec<String> = [
            "add-br",
            SWITCH,
            "--",
            "set",
            "Bridge",
            SWITCH,
            "datapath_type=netdev",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for (port, _) in &o.ports {
            args.extend(
                ["--", "add-port", SWITCH, port]
                    .iter()
                    .map(|s| s.to_string()),
            );
        }
        args.extend(
            [
                "--",
                "add-br",
                "br-phy",
                "--",
                "set",
                "Bridge",
                "br-phy",
                "datapath_type=netdev",
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        if o.uplink.is_some() {
            args.extend(
                ["--", "add-port", "br-phy", "up0"]
                    .iter()
                    .map(|s| s.to_string()),
            );
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.vsctl(&args).unwrap();
        self.wait(
            || self.ns.exec("ip", &["link", "show", "br-phy"]).is_ok(),
            "br-phy tap",
        );
        self.ns.ip(&[
            "addr",
            "add",
            &format!("{}/24", o.tunnel_ip),
            "dev",
            "br-phy",
        ]);
        self.ns.ip(&["link", "set", "br-phy", "up"]);
        let net = o
            .tunnel_ip
            .rsplit_once('.')
            .map(|(n, _)| format!("{n}.0/24"))
            .unwrap();
        // vswitchd may already know the route from the kernel; then this says so.
        let _ = self.appctl(&["ovs/route/add", &net, "br-phy"]);
        self.vtep_ctl(&[
            "add-ps",
            SWITCH,
            "--",
            "set",
            "Physical_Switch",
            SWITCH,
            &format!("tunnel_ips={}", o.tunnel_ip),
        ])
        .unwrap();
    }

    fn start_ovs_vtep(&self) {
        let d = self.d();
        // /usr/bin/python3: a python3 earlier on PATH may lack the `ovs` module.
        must(
            self.dir(),
            "/usr/bin/python3",
            &[
                "/usr/share/openvswitch/scripts/ovs-vtep",
                &format!("--pidfile={d}/ovs-vtep.pid"),
                "--detach",
                &format!("--log-file={d}/ovs-vtep.log"),
                "--no-chdir",
                SWITCH,
            ],
        );
    }

    /// Pre-seeds the MAC of a remote VTEP, so the first packets are not lost to ARP.
    pub fn seed_neighbour(&self, ip: &str, mac: &str) {
        self.appctl(&["tnl/neigh/set", "br-phy", ip, mac]).unwrap();
    }

    fn wait(&self, mut f: impl FnMut() -> bool, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !f() {
            assert!(
                Instant::now() < deadline,
                "emulated ToR: {what} never came; {}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Polls `f` until it returns something (15 s at most).
    pub fn wait_for<T>(&self, mut f: impl FnMut() -> Option<T>) -> T {
        let mut out = None;
        self.wait(
            || {
                out = f();
                out.is_some()
            },
            "condition",
        );
        out.expect("set by wait")
    }

    fn wait_port(&self, port: &str) {
        self.wait(
            || {
                self.vtep_ctl(&["list-ports", SWITCH])
                    .is_ok_and(|o| o.lines().any(|l| l == port))
            },
            &format!("Physical_Port {port}"),
        );
    }

    /// The last lines of ovs-vtep's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir().join("ovs-vtep.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().rev().take(15).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// `tcp:` endpoint of the switch's OVSDB, reachable from [`Tor::ctl`].
    pub fn tcp_endpoint(&self) -> String {
        format!("tcp:{TOR_MGMT_IP}:{TCP_PORT}")
    }

    /// `ssl:` endpoint (when started with a PKI).
    pub fn ssl_endpoint(&self) -> String {
        format!("ssl:{TOR_MGMT_IP}:{SSL_PORT}")
    }
}

fn pid_of(pidfile: &Path) -> Option<u32> {
    std::fs::read_to_string(pidfile).ok()?.trim().parse().ok()
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        let state = s
            .rsplit_once(')')
            .and_then(|(_, r)| r.trim_start().chars().next());
        !matches!(state, Some('Z') | Some('X') | None)
    })
}

/// SIGTERM by pidfile, then SIGKILL after 5 s.
fn stop(pidfile: &Path) {
    let Some(pid) = pid_of(pidfile) else { return };
    let _ = Command::new("kill").arg(pid.to_string()).output();
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    if alive(pid) {
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).output();
    }
}

impl Drop for Tor {
    fn drop(&mut self) {
        for daemon in ["ovs-vtep", "ovs-vswitchd", "ovsdb-server"] {
            stop(&self.dir().join(format!("{daemon}.pid")));
        }
        // The netdev datapath's taps may outlive vswitchd: delete every link we can see.
        if let Ok(links) = self.ns.exec("ip", &["-o", "link", "show"]) {
            for name in links.lines().filter_map(|l| l.split(": ").nth(1)) {
                let name = name.split('@').next().unwrap_or(name);
                if name != "lo" {
                    let _ = self.ns.exec("ip", &["link", "del", name]);
                }
            }
        }
    }
}

/// The gateway writer running on its own thread inside the controller's namespace (so
/// its sockets live there), with a current-thread runtime.
pub struct Gateway {
    /// Desired state (None = unknown).
    pub desired: watch::Sender<Option<FabricState>>,
    /// What the writer sees.
    pub observed: watch::Receiver<GatewayObserved>,
    cancel: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Moves the calling thread (for good) into network namespace `name`.
pub fn enter_netns(name: &str) {
    let target = File::open(format!("/run/netns/{name}")).expect("netns file");
    // SAFETY: a valid namespace fd; setns only affects the calling thread, which is ours.
    let rc = unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns into {name}");
}

impl Gateway {
    /// Starts the writer for `tor1` at `endpoint`, from the controller namespace of `tor`.
    pub fn spawn(tor: &Tor, endpoint: String, tls: Option<TlsFiles>) -> Gateway {
        let (desired, desired_rx) = watch::channel(None);
        let (observed_tx, observed) = watch::channel(GatewayObserved::default());
        let cancel = CancellationToken::new();
        let token = cancel.clone();
        let ns = tor.ctl.name().to_string();
        let config = GatewayConfig {
            endpoint,
            switch: SWITCH.into(),
            tls,
        };
        let thread = std::thread::spawn(move || {
            enter_netns(&ns);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                run(config, desired_rx, observed_tx, token)
                    .await
                    .expect("gateway config");
            });
        });
        Gateway {
            desired,
            observed,
            cancel,
            thread: Some(thread),
        }
    }

    /// Sets the desired state and waits (blocking) until `done` holds for what the writer sees.
    pub fn converge(
        &mut self,
        desired: Option<FabricState>,
        what: &str,
        timeout: Duration,
        done: impl Fn(&GatewayObserved) -> bool,
    ) -> GatewayObserved {
        self.desired.send_replace(desired);
        let deadline = Instant::now() + timeout;
        loop {
            {
                let o = self.observed.borrow_and_update();
                if done(&o) {
                    return o.clone();
                }
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not reached; writer sees {:#?}",
                self.observed.borrow()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.cancel.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A byte relay from a loopback port of the test's own network namespace to the switch's
/// OVSDB in its management namespace, for processes that must also reach the API server
/// on loopback (the controller binary). TLS passes through untouched, end to end. Threads
/// only: the accepting socket stays in the test's namespace, each outbound connection is
/// made from a thread moved into [`Tor::ctl`].
pub struct Relay {
    /// The local port.
    pub port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Relay {
    /// Relays `127.0.0.1:<port>` to `TOR_MGMT_IP:target_port`.
    pub fn start(tor: &Tor, target_port: u16) -> Relay {
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a relay port");
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let ns = tor.ctl.name().to_string();
        let flag = stop.clone();
        std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                let inbound = match listener.accept() {
                    Ok((s, _)) => s,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                    Err(_) => return,
                };
                let ns = ns.clone();
                let flag = flag.clone();
                std::thread::spawn(move || {
                    enter_netns(&ns);
                    let Ok(outbound) = std::net::TcpStream::connect((TOR_MGMT_IP, target_port))
                    else {
                        return;
                    };
                    inbound.set_nonblocking(false).unwrap();
                    pipe(inbound, outbound, flag);
                });
            }
        });
        Relay { port, stop }
    }

    /// The `scheme:` endpoint of the relay.
    pub fn endpoint(&self, scheme: &str) -> String {
        format!("{scheme}:127.0.0.1:{}", self.port)
    }
}

/// Copies both ways until either side closes or the relay stops.
fn pipe(
    a: std::net::TcpStream,
    b: std::net::TcpStream,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    use std::io::{Read, Write};
    use std::sync::atomic::Ordering;
    let copy = |mut from: std::net::TcpStream,
                mut to: std::net::TcpStream,
                stop: std::sync::Arc<std::sync::atomic::AtomicBool>| {
        from.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut buf = [0u8; 16384];
        loop {
            match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Both);
        let _ = from.shutdown(std::net::Shutdown::Both);
    };
    let (a2, b2) = (a.try_clone().unwrap(), b.try_clone().unwrap());
    let s2 = stop.clone();
    let t = std::thread::spawn(move || copy(a2, b2, s2));
    copy(b, a, stop);
    let _ = t.join();
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A bare `hardware_vtep` database, no switch behind it: an ovsdb-server serving vtep.db
/// on `tcp:127.0.0.1:<a port the kernel chose>` with the Physical_Switch [`SWITCH`] and
/// the given Physical_Ports, as a switch would publish them. Enough to see what a
/// writer writes, without root, namespaces or `ovs-vtep` (no packets flow). Stopped by its
/// pidfile on drop.
pub struct VtepDb {
    dir: tempfile::TempDir,
    port: u16,
}

impl VtepDb {
    /// Starts the server and publishes the switch with `tunnel_ip` and `ports`.
    pub fn start(tunnel_ip: &str, ports: &[&str]) -> VtepDb {
        let dir = tempfile::Builder::new()
            .prefix("rdo-vtepdb-")
            .tempdir()
            .unwrap();
        let d = dir.path().display().to_string();
        must(
            dir.path(),
            "ovsdb-tool",
            &[
                "create",
                &format!("{d}/vtep.db"),
                "/usr/share/openvswitch/vtep.ovsschema",
            ],
        );
        must(
            dir.path(),
            "ovsdb-server",
            &[
                &format!("{d}/vtep.db"),
                &format!("--remote=punix:{d}/db.sock"),
                "--remote=ptcp:0:127.0.0.1",
                &format!("--pidfile={d}/ovsdb-server.pid"),
                &format!("--unixctl={d}/ovsdb-server.ctl"),
                &format!("--log-file={d}/ovsdb-server.log"),
                "--detach",
                "--no-chdir",
            ],
        );
        let mut db = VtepDb { dir, port: 0 };
        db.port = db.read_port();
        let mut args = vec![
            "add-ps".to_string(),
            SWITCH.into(),
            "--".into(),
            "set".into(),
            "Physical_Switch".into(),
            SWITCH.into(),
            format!("tunnel_ips={tunnel_ip}"),
        ];
        for port in ports {
            args.extend([
                "--".into(),
                "add-port".into(),
                SWITCH.into(),
                port.to_string(),
            ]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        db.vtep_ctl(&args).unwrap();
        db
    }

    fn read_port(&self) -> u16 {
        let log = self.dir.path().join("ovsdb-server.log");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let port = text
                .lines()
                .filter_map(|l| l.split("listening on port ").nth(1))
                .find_map(|p| p.trim().parse::<u16>().ok());
            if let Some(port) = port {
                return port;
            }
            assert!(
                Instant::now() < deadline,
                "no listening port in {}",
                log.display()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `tcp:127.0.0.1:PORT`.
    pub fn tcp_endpoint(&self) -> String {
        format!("tcp:127.0.0.1:{}", self.port)
    }

    /// Runs `vtep-ctl` on the database.
    pub fn vtep_ctl(&self, args: &[&str]) -> Result<String, String> {
        let db = format!("--db=unix:{}/db.sock", self.dir.path().display());
        let mut all = vec![db.as_str()];
        all.extend_from_slice(args);
        ovs_run(self.dir.path(), "vtep-ctl", &all)
    }
}

impl Drop for VtepDb {
    fn drop(&mut self) {
        stop(&self.dir.path().join("ovsdb-server.pid"));
    }
}
