//! The effectful side: keep the owned flows of one bridge equal to the desired plan.
//!
//! A new desired plan is applied as its difference to the plan OVS holds, in one
//! `ovs-ofctl --bundle` transaction, so OVS never holds half a change. Every
//! `check_interval` (1 s by default) the loop also dumps the owned flows
//! (`dump-flows cookie=<tag>/<mask>`), diffs them against the plan and applies the
//! difference the same way, so a deleted or edited owned flow comes back within about one
//! interval.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr, Command};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::diff::{ParseError, diff, diff_plans, parse_dump};
use super::plan::FlowPlan;
use super::{COOKIE_MASK, COOKIE_TAG, OPENFLOW_VERSION};

/// Where and how to reach the bridge.
#[derive(Clone, Debug)]
pub struct FlowSyncConfig {
    /// The OpenFlow target for ovs-ofctl, e.g. `unix:/var/run/openvswitch/br-int.mgmt`.
    pub target: String,
    /// The ovs-ofctl program.
    pub ofctl: PathBuf,
    /// How often the owned flows are checked (dumped and diffed): every interval while
    /// the flow monitor is down or off, and at the next interval after the monitor
    /// reported any flow change on the bridge. Repairs happen within about one interval.
    pub check_interval: Duration,
    /// Watch the bridge's flow table with `ovs-ofctl monitor` so that a quiet bridge is
    /// not dumped every interval (a dump of 50 000 flows costs a few hundred ms).
    pub monitor: bool,
    /// With the monitor up and nothing reported, still check this often.
    pub quiet_check_interval: Duration,
    /// Longest time one ovs-ofctl call may take.
    pub command_timeout: Duration,
}

impl FlowSyncConfig {
    /// Config for `bridge` whose management socket lives in `ovs_rundir`
    /// (`<ovs_rundir>/<bridge>.mgmt`), checked every second.
    pub fn new(ovs_rundir: &Path, bridge: &str) -> Self {
        FlowSyncConfig {
            target: format!("unix:{}/{bridge}.mgmt", ovs_rundir.display()),
            ofctl: PathBuf::from("ovs-ofctl"),
            check_interval: Duration::from_secs(1),
            monitor: true,
            quiet_check_interval: Duration::from_secs(30),
            command_timeout: Duration::from_secs(30),
        }
    }
}

/// Errors of one sync round.
#[derive(Debug, thiserror::Error)]
pub enum FlowSyncError {
    /// ovs-ofctl could not be run, failed, or took too long.
    #[error("{command}: {message}")]
    Command {
        /// What was run.
        command: String,
        /// stderr or the reason.
        message: String,
    },
    /// The dump could not be parsed.
    #[error(transparent)]
    Parse(#[from] ParseError),
}

/// What one sync round did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncOutcome {
    /// Owned flows seen before the round.
    pub observed: usize,
    /// Flows added or replaced.
    pub added: usize,
    /// Flows deleted.
    pub deleted: usize,
}

/// What the loop last achieved, for the agent (status, finalizers) and for tests.
/// Receivers are notified when `applied` or `error` change or a repair happened; the
/// counters and `monitoring` update without waking anyone.
#[derive(Clone, Debug, Default)]
pub struct SyncStatus {
    /// The last plan that OVS was confirmed to hold in full (checked or applied in one
    /// bundle). A device missing from it has no flows left on the bridge.
    pub applied: Option<Arc<FlowPlan>>,
    /// The error of the last round, if it failed (cleared by the next success).
    pub error: Option<String>,
    /// Rounds that had to change something although the plan had not changed (drift).
    pub repairs: u64,
    /// Successful rounds.
    pub rounds: u64,
    /// Rounds that dumped the bridge's owned flows (the others applied a plan change).
    pub checks: u64,
    /// Whether the flow monitor is running (else every interval is a full check).
    pub monitoring: bool,
}

/// A running `ovs-ofctl monitor` (killed when dropped).
#[derive(Debug)]
struct Monitor {
    _child: Child,
    lines: Lines<BufReader<ChildStderr>>,
}

/// The next flow event of the monitor: `Some(line)`, or `None` when it ended. Pending
/// forever without a monitor. Cancel-safe (used in `select!`).
async fn next_event(monitor: &mut Option<Monitor>) -> Option<String> {
    let Some(m) = monitor else {
        return std::future::pending().await;
    };
    loop {
        match m.lines.next_line().await {
            Ok(Some(line)) if line.contains("event=") => return Some(line),
            Ok(Some(_)) => continue,
            Ok(None) | Err(_) => return None,
        }
    }
}

/// The flow sync of one bridge.
#[derive(Debug)]
pub struct FlowSync {
    config: FlowSyncConfig,
    status: watch::Sender<SyncStatus>,
}

impl FlowSync {
    /// A sync for `config`; nothing runs until [`FlowSync::run`].
    pub fn new(config: FlowSyncConfig) -> Self {
        FlowSync {
            config,
            status: watch::Sender::new(SyncStatus::default()),
        }
    }

    /// Follows what the loop achieved.
    pub fn status(&self) -> watch::Receiver<SyncStatus> {
        self.status.subscribe()
    }

    /// Keeps the bridge's owned flows equal to the latest desired plan until `cancel`.
    /// `None` means the desired state is not known yet: nothing is touched (never delete
    /// before knowing what should exist). Flows are left in place on cancel, so a restart
    /// of the agent does not interrupt traffic.
    pub async fn run(
        self,
        mut desired: watch::Receiver<Option<Arc<FlowPlan>>>,
        cancel: CancellationToken,
    ) {
        let mut ticker = tokio::time::interval(self.config.check_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sender_alive = true;
        // The plan OVS is known to hold (None after an error: then only a dump tells).
        let mut held: Option<Arc<FlowPlan>> = None;
        let mut monitor: Option<Monitor> = None;
        // Something may have changed on the bridge since the last check.
        let mut dirty = true;
        let mut last_check = Instant::now();
        loop {
            let full_check = tokio::select! {
                _ = cancel.cancelled() => return,
                changed = desired.changed(), if sender_alive => {
                    if changed.is_err() {
                        // Keep repairing with the last plan until cancelled.
                        sender_alive = false;
                    }
                    false
                }
                line = next_event(&mut monitor) => {
                    match line {
                        // Any flow event may concern us (a modify can even clear our
                        // cookie), so it only marks the table for the next tick.
                        Some(_) => dirty = true,
                        None => {
                            tracing::debug!("flow monitor ended; checking every interval");
                            monitor = None;
                            dirty = true;
                            self.status.send_if_modified(|s| {
                                s.monitoring = false;
                                false
                            });
                        }
                    }
                    continue;
                }
                _ = ticker.tick() => {
                    if self.config.monitor && monitor.is_none() {
                        monitor = self.start_monitor();
                        // Changes before it started went unseen.
                        dirty = true;
                        let up = monitor.is_some();
                        // Informational: updated without waking receivers.
                        self.status.send_if_modified(|s| {
                            s.monitoring = up;
                            false
                        });
                    }
                    let quiet_too_long = last_check.elapsed() >= self.config.quiet_check_interval;
                    if monitor.is_some() && !dirty && !quiet_too_long && held.is_some() {
                        continue;
                    }
                    true
                }
            };
            let Some(plan) = desired.borrow_and_update().clone() else {
                continue;
            };
            let same_plan = held.as_ref().is_some_and(|p| Arc::ptr_eq(p, &plan));
            if same_plan && !full_check {
                continue;
            }
            if full_check {
                dirty = false;
                last_check = Instant::now();
            }
            // A new plan is applied as the difference to the held one (no dump: cheap
            // and incremental); the periodic check dumps and repairs drift.
            let from = if full_check { None } else { held.clone() };
            let round = async {
                match &from {
                    Some(from) => self.apply_change(from, &plan).await,
                    None => self.sync_once(&plan).await,
                }
            };
            let result = tokio::select! {
                _ = cancel.cancelled() => return,
                r = round => r,
            };
            match result {
                Ok(outcome) => {
                    let changed = outcome.added + outcome.deleted > 0;
                    if changed {
                        tracing::info!(
                            added = outcome.added,
                            deleted = outcome.deleted,
                            flows = plan.len(),
                            drift = same_plan,
                            "applied flow bundle"
                        );
                    }
                    // Receivers (the agent recomputes on every notification) are woken
                    // only when something they act on changed, not for the counters of a
                    // quiet check.
                    self.status.send_if_modified(|s| {
                        let news = !s.applied.as_ref().is_some_and(|a| Arc::ptr_eq(a, &plan))
                            || s.error.is_some()
                            || (same_plan && changed);
                        s.applied = Some(plan.clone());
                        s.error = None;
                        s.rounds += 1;
                        if full_check {
                            s.checks += 1;
                        }
                        if same_plan && changed {
                            s.repairs += 1;
                        }
                        news
                    });
                    held = Some(plan);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "flow sync failed; retrying");
                    held = None;
                    dirty = true;
                    let message = e.to_string();
                    self.status.send_if_modified(|s| {
                        let news = s.error.as_deref() != Some(message.as_str());
                        s.error = Some(message);
                        news
                    });
                }
            }
        }
    }

    /// Starts `ovs-ofctl monitor <target> watch:!initial` (flow table changes made by
    /// anyone); `None` if it cannot be started (the loop then checks every interval).
    fn start_monitor(&self) -> Option<Monitor> {
        // ovs-ofctl prints the monitor's updates on stderr (unbuffered), its first reply
        // on stdout.
        let mut child = Command::new(&self.config.ofctl)
            .args(["monitor", &self.config.target, "watch:!initial"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| tracing::debug!(error = %e, "cannot start the flow monitor"))
            .ok()?;
        let stderr = child.stderr.take()?;
        Some(Monitor {
            _child: child,
            lines: BufReader::new(stderr).lines(),
        })
    }

    /// Applies the change from a plan OVS holds to a new one in one bundle, without
    /// dumping (the periodic [`FlowSync::sync_once`] catches anything else).
    pub async fn apply_change(
        &self,
        from: &FlowPlan,
        to: &FlowPlan,
    ) -> Result<SyncOutcome, FlowSyncError> {
        let delta = diff_plans(to, from);
        if !delta.is_empty() {
            self.apply_bundle(&delta.bundle_text()).await?;
        }
        Ok(SyncOutcome {
            observed: from.len(),
            added: delta.add.len(),
            deleted: delta.delete.len(),
        })
    }

    /// One round: dump the owned flows, diff, apply the difference in one bundle.
    pub async fn sync_once(&self, plan: &FlowPlan) -> Result<SyncOutcome, FlowSyncError> {
        let observed = self.dump_owned().await?;
        let delta = diff(plan, &observed);
        let outcome = SyncOutcome {
            observed: observed.len(),
            added: delta.add.len(),
            deleted: delta.delete.len(),
        };
        if !delta.is_empty() {
            self.apply_bundle(&delta.bundle_text()).await?;
        }
        Ok(outcome)
    }

    /// The owned flows as OVS shows them.
    pub async fn dump_owned(&self) -> Result<Vec<super::ObservedFlow>, FlowSyncError> {
        let filter = format!("cookie={COOKIE_TAG:#x}/{COOKIE_MASK:#x}");
        let text = self
            .ofctl(
                &[
                    "-O",
                    OPENFLOW_VERSION,
                    "--no-stats",
                    "--no-names",
                    "dump-flows",
                    &self.config.target,
                    &filter,
                ],
                None,
            )
            .await?;
        Ok(parse_dump(&text)?)
    }

    /// Applies `add`/`delete_strict` lines atomically (all or nothing).
    pub async fn apply_bundle(&self, lines: &str) -> Result<(), FlowSyncError> {
        self.ofctl(
            &[
                "-O",
                OPENFLOW_VERSION,
                "--bundle",
                "add-flows",
                &self.config.target,
                "-",
            ],
            Some(lines),
        )
        .await
        .map(drop)
    }

    async fn ofctl(&self, args: &[&str], stdin: Option<&str>) -> Result<String, FlowSyncError> {
        let command = format!("{} {}", self.config.ofctl.display(), args.join(" "));
        let fail = |message: String| FlowSyncError::Command {
            command: command.clone(),
            message,
        };
        let started = Instant::now();
        let mut child = Command::new(&self.config.ofctl)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| fail(e.to_string()))?;
        let input = stdin.map(|s| s.as_bytes().to_vec());
        let mut pipe = child.stdin.take();
        let io = async {
            if let (Some(mut pipe), Some(input)) = (pipe.take(), input) {
                // A write error shows up as the command's own failure below.
                let _ = pipe.write_all(&input).await;
            }
            child.wait_with_output().await
        };
        let output = tokio::time::timeout(self.config.command_timeout, io)
            .await
            .map_err(|_| fail(format!("no answer after {:?}", started.elapsed())))?
            .map_err(|e| fail(e.to_string()))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
            return Err(fail(if stderr.is_empty() {
                output.status.to_string()
            } else {
                stderr
            }));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}
