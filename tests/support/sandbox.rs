//! A throw-away Open vSwitch: `ovsdb-server` + `ovs-vswitchd` (userspace) in a temp dir.
//!
//! Used by tests and benchmarks (which include this file by path) so that none of them
//! touches a system OVS. Not part of the library: production code never starts OVS. The
//! daemons are stopped by the pids in their pidfiles (never by name) when the sandbox is
//! dropped, also when a test fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Which datapath the sandbox's vswitchd gives every bridge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Datapath {
    /// `--enable-dummy=override`: every bridge is dummy; needs nothing from the kernel.
    Dummy,
    /// The userspace `netdev` datapath: real tap devices, real packets.
    Netdev,
}

/// A running OVS in its own directory.
#[derive(Debug)]
pub struct Sandbox {
    dir: PathBuf,
    /// Port of the TCP remote on 127.0.0.1, when started with one.
    tcp_port: Option<u16>,
}

/// How to start a sandbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// Datapath of every bridge.
    pub datapath: Datapath,
    /// Also listen on TCP (`ptcp:0:127.0.0.1`, a free port chosen by the kernel).
    pub tcp: bool,
}

/// Errors starting a sandbox.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A command could not be run or failed.
    #[error("{command}: {message}")]
    Command {
        /// The command line.
        command: String,
        /// What went wrong (stderr or the spawn error).
        message: String,
    },
    /// The temp directory could not be made.
    #[error("sandbox directory: {0}")]
    Io(#[from] std::io::Error),
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Runs an OVS program with every OVS directory pointed at `dir`.
pub fn run(program: &str, args: &[&str], dir: &Path) -> Result<String, SandboxError> {
    let command = format!("{program} {}", args.join(" "));
    let output = Command::new(program)
        .args(args)
        .env("OVS_RUNDIR", dir)
        .env("OVS_LOGDIR", dir)
        .env("OVS_DBDIR", dir)
        .env("OVS_SYSCONFDIR", dir)
        .output()
        .map_err(|e| SandboxError::Command {
            command: command.clone(),
            message: e.to_string(),
        })?;
    if !output.status.success() {
        let message = String::from_utf8_lossy(&output.stderr).trim().to_string();
        return Err(SandboxError::Command { command, message });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

impl Sandbox {
    /// Starts ovsdb-server and ovs-vswitchd in a fresh directory under the temp dir.
    pub fn start(datapath: Datapath) -> Result<Self, SandboxError> {
        Self::start_with(Options {
            datapath,
            tcp: false,
        })
    }

    /// Starts a sandbox with `options`.
    pub fn start_with(options: Options) -> Result<Self, SandboxError> {
        let datapath = options.datapath;
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("rdo-ovs-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        // From here on Drop cleans up whatever has started.
        let mut sandbox = Sandbox {
            dir,
            tcp_port: None,
        };
        let d = sandbox.dir.to_string_lossy().to_string();
        let db = format!("{d}/conf.db");
        run(
            "ovsdb-tool",
            &["create", &db, "/usr/share/openvswitch/vswitch.ovsschema"],
            &sandbox.dir,
        )?;
        sandbox.start_ovsdb(options.tcp.then_some(0))?;
        if options.tcp {
            sandbox.tcp_port = Some(sandbox.read_tcp_port()?);
        }
        run(
            "ovs-vsctl",
            &[&format!("--db=unix:{d}/db.sock"), "--no-wait", "init"],
            &sandbox.dir,
        )?;
        sandbox.start_vswitchd(datapath, false)?;
        Ok(sandbox)
    }

    /// Starts ovs-vswitchd; `system_routes`: read the routes of the network namespace it
    /// runs in (right only in a namespace of the test's own).
    fn start_vswitchd(&self, datapath: Datapath, system_routes: bool) -> Result<(), SandboxError> {
        let d = self.dir.display().to_string();
        let dummy = match datapath {
            Datapath::Dummy => "--enable-dummy=override",
            Datapath::Netdev => "--enable-dummy",
        };
        let mut args = vec![
            format!("unix:{d}/db.sock"),
            dummy.to_string(),
            "--disable-system".to_string(),
            format!("--pidfile={d}/ovs-vswitchd.pid"),
            format!("--unixctl={d}/ovs-vswitchd.ctl"),
            format!("--log-file={d}/ovs-vswitchd.log"),
            "--detach".to_string(),
            "--no-chdir".to_string(),
        ];
        if !system_routes {
            args.insert(3, "--disable-system-route".to_string());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run("ovs-vswitchd", &args, &self.dir).map(drop)
    }

    /// Restarts ovs-vswitchd (netdev) reading the routes of the network namespace this
    /// thread is in: OVS accepts a tunnel's `local_ip` only when its route table knows the
    /// address as local, and only kernel routes are marked local. Call it inside a
    /// namespace of the test's own.
    pub fn restart_vswitchd_with_system_routes(&self) -> Result<(), SandboxError> {
        stop_pidfile(&self.dir.join("ovs-vswitchd.pid"));
        self.start_vswitchd(Datapath::Netdev, true)
    }

    /// The sandbox directory (OVS_RUNDIR: sockets, pidfiles, logs, `<bridge>.mgmt`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The OVSDB endpoint, spelled as ovs-vsctl spells it: `unix:<dir>/db.sock`.
    pub fn endpoint(&self) -> String {
        format!("unix:{}/db.sock", self.dir.display())
    }

    /// The OpenFlow management socket of `bridge`, for `ovs-ofctl`.
    pub fn mgmt(&self, bridge: &str) -> String {
        format!("unix:{}/{bridge}.mgmt", self.dir.display())
    }

    /// Runs `ovs-vsctl --db=<endpoint> ARGS...` and returns its stdout.
    pub fn vsctl(&self, args: &[&str]) -> Result<String, SandboxError> {
        let db = format!("--db={}", self.endpoint());
        let mut all = vec![db.as_str()];
        all.extend_from_slice(args);
        run("ovs-vsctl", &all, &self.dir)
    }

    /// Runs `ovs-ofctl ARGS...` with OVS_RUNDIR set to the sandbox.
    pub fn ofctl(&self, args: &[&str]) -> Result<String, SandboxError> {
        run("ovs-ofctl", args, &self.dir)
    }

    /// Runs `ovs-appctl -t <dir>/ovs-vswitchd.ctl ARGS...`.
    pub fn appctl(&self, args: &[&str]) -> Result<String, SandboxError> {
        let target = format!("{}/ovs-vswitchd.ctl", self.dir.display());
        let mut all = vec!["-t", target.as_str()];
        all.extend_from_slice(args);
        run("ovs-appctl", &all, &self.dir)
    }

    /// The TCP endpoint (`tcp:127.0.0.1:PORT`) when started with `tcp: true`.
    pub fn tcp_endpoint(&self) -> Option<String> {
        self.tcp_port.map(|p| format!("tcp:127.0.0.1:{p}"))
    }

    /// Stops ovsdb-server only (to test reconnects); `restart_ovsdb` brings it back.
    pub fn stop_ovsdb(&self) {
        stop_pidfile(&self.dir.join("ovsdb-server.pid"));
    }

    /// Kills ovsdb-server with SIGKILL (no goodbye on any session), by its pid.
    pub fn kill_ovsdb(&self) {
        let pidfile = self.dir.join("ovsdb-server.pid");
        if let Some(pid) = read_pid(&pidfile) {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).output();
            wait_gone(pid, Duration::from_secs(5));
        }
        let _ = std::fs::remove_file(pidfile);
    }

    /// Starts ovsdb-server again on the same database, socket and TCP port.
    pub fn restart_ovsdb(&self) -> Result<(), SandboxError> {
        self.start_ovsdb(self.tcp_port)
    }

    fn start_ovsdb(&self, tcp_port: Option<u16>) -> Result<(), SandboxError> {
        let d = self.dir.to_string_lossy().to_string();
        let mut args = vec![
            format!("{d}/conf.db"),
            format!("--remote=punix:{d}/db.sock"),
            "--remote=db:Open_vSwitch,Open_vSwitch,manager_options".to_string(),
            format!("--pidfile={d}/ovsdb-server.pid"),
            format!("--unixctl={d}/ovsdb-server.ctl"),
            format!("--log-file={d}/ovsdb-server.log"),
            "--detach".to_string(),
            "--no-chdir".to_string(),
        ];
        if let Some(port) = tcp_port {
            args.push(format!("--remote=ptcp:{port}:127.0.0.1"));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run("ovsdb-server", &args, &self.dir).map(drop)
    }

    /// The port ovsdb-server chose for `ptcp:0`, from its log ("listening on port N").
    fn read_tcp_port(&self) -> Result<u16, SandboxError> {
        let log = self.dir.join("ovsdb-server.log");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let port = text
                .lines()
                .filter_map(|l| l.split("listening on port ").nth(1))
                .filter_map(|p| p.trim().parse::<u16>().ok())
                .next_back();
            if let Some(port) = port {
                return Ok(port);
            }
            if Instant::now() > deadline {
                return Err(SandboxError::Command {
                    command: "ovsdb-server --remote=ptcp:0:127.0.0.1".into(),
                    message: format!("no listening port in {}", log.display()),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn read_pid(pidfile: &Path) -> Option<u32> {
    std::fs::read_to_string(pidfile).ok()?.trim().parse().ok()
}

/// Whether `pid` still runs. A zombie counts as gone: detached daemons are reparented to
/// pid 1, which in a container may reap them late or never.
fn alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, Some('Z') | Some('X') | None)
}

fn wait_gone(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while alive(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

/// Sends SIGTERM to the pid in `pidfile` and waits (briefly) for it to exit.
fn stop_pidfile(pidfile: &Path) {
    let Some(pid) = read_pid(pidfile) else {
        return;
    };
    if !alive(pid) {
        let _ = std::fs::remove_file(pidfile);
        return;
    }
    let _ = Command::new("kill").arg(pid.to_string()).output();
    if !wait_gone(pid, Duration::from_secs(5)) {
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).output();
        wait_gone(pid, Duration::from_secs(1));
    }
    let _ = std::fs::remove_file(pidfile);
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        stop_pidfile(&self.dir.join("ovs-vswitchd.pid"));
        stop_pidfile(&self.dir.join("ovsdb-server.pid"));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
