//! Network namespaces for dataplane tests: created with unique names, deleted on drop
//! (also when the test fails), and a way to start processes inside one.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::Command;

/// Env var that lets a developer without root skip dataplane tests explicitly. CI runs as
/// root and never sets it, so there the tests always run.
pub const OPT_OUT_ENV: &str = "RDO_SKIP_DATAPLANE";

/// Whether the test may run here: `true` when root with the tools present; `false` only
/// when the opt-out variable is set; otherwise panics with what is missing.
pub fn require_root_and_tools(tools: &[&str]) -> bool {
    let opted_out = std::env::var_os(OPT_OUT_ENV).is_some_and(|v| !v.is_empty() && v != "0");
    let mut missing = Vec::new();
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        missing.push("root (network namespaces, veths, taps)".to_string());
    }
    for tool in tools {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            missing.push(format!("the `{tool}` command"));
        }
    }
    if missing.is_empty() {
        return true;
    }
    if opted_out {
        eprintln!(
            "SKIPPED (explicitly, {OPT_OUT_ENV} is set): needs {}",
            missing.join(", ")
        );
        return false;
    }
    panic!(
        "this dataplane test needs {} (scripts/test.sh installs iproute2, ethtool and \
         iputils-ping and CI runs it as root); set {OPT_OUT_ENV}=1 to skip it explicitly",
        missing.join(", ")
    );
}

/// Runs a command; returns stdout, or an error with the command and its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program} {}: {e}", args.join(" ")))?;
    if !out.status.success() {
        return Err(format!(
            "{program} {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Like [`run`], panicking with the message on failure (setup steps).
pub fn must(program: &str, args: &[&str]) -> String {
    run(program, args).unwrap_or_else(|e| panic!("{e}"))
}

/// A network namespace that is deleted when dropped.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `rdo-<pid>-<suffix>` with its loopback up.
    pub fn new(suffix: &str) -> Netns {
        let name = format!("rdo-{}-{suffix}", std::process::id());
        // A leftover of a crashed run with the same pid would make `add` fail.
        let _ = run("ip", &["netns", "del", &name]);
        must("ip", &["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n <ns> ARGS`, panicking on failure.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        must("ip", &all)
    }

    /// The MAC address of link `dev` in this namespace.
    #[allow(dead_code)] // not every test binary that includes this module needs it
    pub fn mac(&self, dev: &str) -> String {
        self.exec("cat", &[&format!("/sys/class/net/{dev}/address")])
            .expect("mac")
            .trim()
            .to_string()
    }

    /// `ip netns exec <ns> PROGRAM ARGS`.
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<String, String> {
        let mut all = vec!["netns", "exec", self.name.as_str(), program];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// Runs `f` with the calling thread inside this namespace, so that processes it
    /// starts (and their daemons) live there; the thread returns to its own namespace
    /// afterwards, also if `f` panics.
    pub fn enter<T>(&self, f: impl FnOnce() -> T) -> T {
        let own = File::open("/proc/thread-self/ns/net").expect("own netns");
        let target = File::open(format!("/run/netns/{}", self.name)).expect("netns file");
        struct Back(File);
        impl Drop for Back {
            fn drop(&mut self) {
                // SAFETY: a valid namespace fd; setns only affects this thread.
                let rc = unsafe { libc::setns(self.0.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "could not return to the original netns");
            }
        }
        // SAFETY: a valid namespace fd; setns only affects the calling thread.
        let rc = unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns into {}", self.name);
        let _back = Back(own);
        f()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = run("ip", &["netns", "del", &self.name]) {
            eprintln!("cleanup: {e}");
        }
    }
}
