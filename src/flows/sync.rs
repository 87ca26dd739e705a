//! The effectful side: keep the owned flows of one bridge equal to the desired plan.
//!
//! A new desired plan is applied as its difference to the plan OVS holds, in one
//! `ovs-ofctl --bundle` transaction, so OVS never holds half a change. Every
//! `check_interval` (1 s by default) the loop also dumps the owned flows
//! (`dump-flows cookie=<tag>/<mask>`), diffs them against the plan and applies the
//! difference the same way, so a deleted or edited owned flow comes back within about one
//! interval. With the flow monitor (`ovs-ofctl monitor`) running, the bridge is only
//! dumped when the monitor reports a change other than those the loop's last bundle
//! caused ([`super::monitor`]), or every `quiet_check_interval`. Before the
//! first plan is known, the loop dumps once the monitor is subscribed, and checks the
//! first plan against that dump unless the monitor reported anything since (a restart
//! does not wait for a dump after planning).
//!
//! Every ovs-ofctl child runs with `--unixctl=none`: ovs-ofctl would otherwise create a
//! control socket in OVS's run directory, which the agent's pod mounts read-only and a
//! fresh machine may not have at all.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr, ChildStdout, Command};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::desired::FlowPlan;
use super::diff::{FlowDiff, ParseError, diff, diff_plans, parse_dump};
use super::monitor::Expected;
use super::{COOKIE_MASK, COOKIE_TAG, OPENFLOW_VERSION};
use crate::backoff::Backoff;

/// Where and how to reach the bridge.
#[derive(Clone, Debug)]
pub struct FlowSyncConfig {
    /// The OpenFlow target for ovs-ofctl, e.g. `unix:/var/run/openvswitch/br-int.mgmt`.
    pub target: String,
    /// The ovs-ofctl program.
    pub ofctl: PathBuf,
    /// How often the owned flows are checked (dumped and diffed): every interval while
    /// the flow monitor is down or off, and at the next interval after the monitor
    /// reported a flow change other than the loop's own. Repairs happen within about one
    /// interval.
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
            // The monitor reports every change; this only guards against one it missed.
            // Each check of 50 000 flows costs ~0.3 s of CPU, so every 30 s was 1 % of a
            // core on an idle node.
            quiet_check_interval: Duration::from_secs(300),
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
/// Receivers are notified when `applied`, `error` or `monitor` change or a repair happened;
/// the counters update without waking anyone.
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
    /// The flow monitor (while it is not running, every interval is a full check).
    pub monitor: MonitorState,
    /// Times the flow monitor failed to start or ended.
    pub monitor_failures: u64,
}

/// State of the flow monitor.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum MonitorState {
    /// Turned off in the config, or not started yet.
    #[default]
    Off,
    /// Running: a quiet bridge is not dumped.
    Running,
    /// It could not start or it ended, in ovs-ofctl's words; it is restarted with a
    /// doubling pause (up to [`MONITOR_RETRY_MAX`]).
    Down(String),
}

impl MonitorState {
    /// Whether the monitor is running.
    pub fn is_running(&self) -> bool {
        matches!(self, MonitorState::Running)
    }
}

/// Longest wait for a new monitor's first reply before an early dump is given up.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(2);
/// First pause before restarting a flow monitor that failed.
const MONITOR_RETRY_MIN: Duration = Duration::from_secs(1);
/// Longest pause between restarts of a failing flow monitor.
pub const MONITOR_RETRY_MAX: Duration = Duration::from_secs(60);

/// The ovs-ofctl option that keeps it from creating a control socket in OVS's run directory.
const NO_CONTROL_SOCKET: &str = "--unixctl=none";

/// A running `ovs-ofctl monitor` (killed when dropped).
#[derive(Debug)]
struct Monitor {
    child: Child,
    lines: Lines<BufReader<ChildStderr>>,
    /// Its first reply comes here once it is subscribed (nothing else does).
    replies: Lines<BufReader<ChildStdout>>,
    /// The last line that was not a flow event (ovs-ofctl's own complaint, if it ends).
    last_message: Option<String>,
}

/// What the monitor said.
enum MonitorEvent {
    /// A flow table change, as printed.
    Flow(String),
    /// It ended, with the reason in ovs-ofctl's words.
    Ended(String),
}

/// The next event of the monitor. Pending forever without a monitor. Cancel-safe (used in
/// `select!`): a line is consumed only when returned.
async fn next_event(monitor: &mut Option<Monitor>) -> MonitorEvent {
    let Some(m) = monitor else {
        return std::future::pending().await;
    };
    loop {
        match m.lines.next_line().await {
            Ok(Some(line)) if line.contains("event=") => return MonitorEvent::Flow(line),
            Ok(Some(line)) => {
                // Replies and progress lines are noise; keep the latest as the reason.
                if !line.trim().is_empty() && !line.contains("reply") {
                    m.last_message = Some(line.trim().to_string());
                }
            }
            Ok(None) | Err(_) => {
                let status = m.child.wait().await;
                let reason = match (m.last_message.take(), status) {
                    (Some(message), _) => message,
                    (None, Ok(status)) => format!("ovs-ofctl monitor exited ({status})"),
                    (None, Err(e)) => format!("ovs-ofctl monitor: {e}"),
                };
                return MonitorEvent::Ended(reason);
            }
        }
    }
}

/// When a failed flow monitor may be started again: a doubling pause from
/// [`MONITOR_RETRY_MIN`] up to [`MONITOR_RETRY_MAX`], forgotten once a monitor has run for
/// longer than the longest pause (so one that dies now and then is restarted quickly).
#[derive(Debug)]
struct MonitorRetry {
    backoff: Backoff,
    not_before: Option<Instant>,
    started: Option<Instant>,
}

impl Default for MonitorRetry {
    fn default() -> Self {
        MonitorRetry {
            backoff: Backoff::new(MONITOR_RETRY_MIN, MONITOR_RETRY_MAX),
            not_before: None,
            started: None,
        }
    }
}

impl MonitorRetry {
    /// Whether a start may be tried now; counts the try as a start.
    fn due(&mut self) -> bool {
        let now = Instant::now();
        if self.not_before.is_some_and(|t| now < t) {
            return false;
        }
        self.started = Some(now);
        true
    }

    /// Records a failure; returns the pause before the next start.
    fn failed(&mut self) -> Duration {
        let now = Instant::now();
        if self
            .started
            .is_some_and(|t| now.duration_since(t) > MONITOR_RETRY_MAX)
        {
            self.backoff.reset();
        }
        let pause = self.backoff.next_delay();
        self.not_before = Some(now + pause);
        pause
    }
}

/// Why [`FlowSync::run`] woke up.
enum Wake {
    Cancelled,
    /// A new desired plan (or its sender went away).
    PlanChanged,
    /// Time to check the bridge (dump and diff).
    Check,
    /// Nothing to do this time.
    Nothing,
}

/// Working state of [`FlowSync::run`].
struct LoopState {
    ticker: tokio::time::Interval,
    sender_alive: bool,
    /// The plan OVS is known to hold (None after an error: then only a dump tells).
    held: Option<Arc<FlowPlan>>,
    monitor: Option<Monitor>,
    /// Something may have changed on the bridge since the last check.
    dirty: bool,
    /// The owned flows dumped while the first plan was still being made, so that plan is
    /// checked without waiting for a dump (a warm restart). Taking it clears `dirty`, so it
    /// is still true to the bridge exactly while `dirty` stays false.
    early: Option<Vec<super::ObservedFlow>>,
    early_tried: bool,
    last_check: Instant,
    monitor_retry: MonitorRetry,
    /// The monitor events the last bundle is still to cause.
    expected: Expected,
}

impl LoopState {
    fn new(check_interval: Duration) -> Self {
        let mut ticker = tokio::time::interval(check_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        LoopState {
            ticker,
            sender_alive: true,
            held: None,
            monitor: None,
            dirty: true,
            early: None,
            early_tried: false,
            last_check: Instant::now(),
            monitor_retry: MonitorRetry::default(),
            expected: Expected::default(),
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
        let mut state = LoopState::new(self.config.check_interval);
        loop {
            let full_check = match self.wait(&mut state, &mut desired, &cancel).await {
                Wake::Cancelled => return,
                Wake::Nothing => continue,
                Wake::PlanChanged => false,
                Wake::Check => true,
            };
            let Some(plan) = desired.borrow_and_update().clone() else {
                if !state.early_tried {
                    state.early_tried = true;
                    state.early = tokio::select! {
                        _ = cancel.cancelled() => return,
                        d = self.early_dump(&mut state.monitor, desired.clone()) => d,
                    };
                    // The monitor, subscribed before the dump, reports anything later.
                    state.dirty &= state.early.is_none();
                }
                continue;
            };
            let same_plan = state.held.as_ref().is_some_and(|p| Arc::ptr_eq(p, &plan));
            if same_plan && !full_check {
                continue;
            }
            // A new plan is applied as the difference to the held one (no dump: cheap
            // and incremental); the periodic check dumps and repairs drift.
            let from = if full_check { None } else { state.held.clone() };
            // Without a held plan the round checks the bridge in full (against a fresh or
            // the early dump), so it counts as the check.
            let checks_bridge = from.is_none();
            let early = state.early.take().filter(|_| !state.dirty);
            if checks_bridge {
                state.dirty = false;
                state.last_check = Instant::now();
            }
            let result = tokio::select! {
                _ = cancel.cancelled() => return,
                r = self.round(from.as_deref(), early, &plan) => r,
            };
            match result {
                Ok((outcome, applied)) => {
                    self.succeeded(&plan, &outcome, same_plan, checks_bridge);
                    state.held = Some(plan);
                    // Only a running monitor reports them (one started later marks the
                    // table dirty anyway).
                    state.expected = match state.monitor {
                        Some(_) => Expected::of(&applied),
                        None => Expected::default(),
                    };
                }
                Err(e) => {
                    self.failed(&e);
                    state.held = None;
                    state.dirty = true;
                    state.expected = Expected::default();
                }
            }
        }
    }

    /// Waits for the next reason to act: a new plan, a tick (monitor restart and maybe a
    /// check), a monitor event (only marks the table), or cancellation.
    async fn wait(
        &self,
        state: &mut LoopState,
        desired: &mut watch::Receiver<Option<Arc<FlowPlan>>>,
        cancel: &CancellationToken,
    ) -> Wake {
        tokio::select! {
            // Monitor reports before a new plan: one that is waiting must mark the bridge
            // dirty (which voids the early dump) before that plan is checked.
            biased;
            _ = cancel.cancelled() => Wake::Cancelled,
            event = next_event(&mut state.monitor) => {
                match event {
                    // An event the last bundle caused changes nothing; any other may
                    // concern us (a modify can even clear our cookie), so it marks the
                    // table for the next tick.
                    MonitorEvent::Flow(line) => {
                        if !state.expected.account_for(&line) {
                            state.dirty = true;
                        }
                    }
                    MonitorEvent::Ended(reason) => {
                        state.monitor = None;
                        state.dirty = true;
                        self.monitor_down(reason, &mut state.monitor_retry);
                    }
                }
                Wake::Nothing
            }
            changed = desired.changed(), if state.sender_alive => {
                if changed.is_err() {
                    // Keep repairing with the last plan until cancelled.
                    state.sender_alive = false;
                }
                Wake::PlanChanged
            }
            _ = state.ticker.tick() => self.on_tick(state),
        }
    }

    /// A tick: (re)starts the monitor when due, and says whether to check the bridge (not
    /// when the running monitor saw nothing and the last check is recent enough).
    fn on_tick(&self, state: &mut LoopState) -> Wake {
        if self.config.monitor && state.monitor.is_none() && state.monitor_retry.due() {
            // Changes before it started went unseen.
            state.dirty = true;
            match self.start_monitor() {
                Ok(m) => {
                    state.monitor = Some(m);
                    self.set_monitor(MonitorState::Running);
                }
                Err(reason) => self.monitor_down(reason, &mut state.monitor_retry),
            }
        }
        let quiet_too_long = state.last_check.elapsed() >= self.config.quiet_check_interval;
        if state.monitor.is_some() && !state.dirty && !quiet_too_long && state.held.is_some() {
            Wake::Nothing
        } else {
            Wake::Check
        }
    }

    /// One round: the change from the held plan `from` (no dump: cheap and incremental),
    /// or (without one) a full check, against the `early` dump when there is one. Also
    /// returns the difference it applied, whose monitor events are then known for the
    /// loop's own.
    async fn round(
        &self,
        from: Option<&FlowPlan>,
        early: Option<Vec<super::ObservedFlow>>,
        plan: &FlowPlan,
    ) -> Result<(SyncOutcome, FlowDiff), FlowSyncError> {
        let (delta, observed) = match from {
            Some(from) => (diff_plans(plan, from), from.len()),
            None => self.against_bridge(plan, early).await?,
        };
        let outcome = self.apply_diff(&delta, observed).await?;
        Ok((outcome, delta))
    }

    /// Dumps the owned flows once the monitor is subscribed (so any change after the dump
    /// is reported); `None` without a monitor, when either fails, or when a plan arrives
    /// before the monitor is subscribed (the plan is not kept waiting for it).
    async fn early_dump(
        &self,
        monitor: &mut Option<Monitor>,
        mut desired: watch::Receiver<Option<Arc<FlowPlan>>>,
    ) -> Option<Vec<super::ObservedFlow>> {
        let m = monitor.as_mut()?;
        let subscribed = tokio::time::timeout(SUBSCRIBE_TIMEOUT, m.replies.next_line());
        tokio::select! {
            r = subscribed => match r {
                Ok(Ok(Some(line))) if line.contains("reply") => self.dump_owned().await.ok(),
                _ => None,
            },
            // A clone: the loop's own receiver still sees this change as new.
            _ = desired.changed() => None,
        }
    }

    /// Publishes a successful round. Receivers (the agent recomputes on every
    /// notification) are woken only when something they act on changed, not for the
    /// counters of a quiet check.
    fn succeeded(
        &self,
        plan: &Arc<FlowPlan>,
        outcome: &SyncOutcome,
        same_plan: bool,
        full_check: bool,
    ) {
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
        let repaired = same_plan && changed;
        self.status.send_if_modified(|s| {
            let news = !s.applied.as_ref().is_some_and(|a| Arc::ptr_eq(a, plan))
                || s.error.is_some()
                || repaired;
            s.applied = Some(plan.clone());
            s.error = None;
            s.rounds += 1;
            s.checks += u64::from(full_check);
            s.repairs += u64::from(repaired);
            news
        });
    }

    /// Publishes a failed round (woken only when the error is a new one).
    fn failed(&self, error: &FlowSyncError) {
        tracing::warn!(%error, "flow sync failed; retrying");
        let message = error.to_string();
        self.status.send_if_modified(|s| {
            let news = s.error.as_deref() != Some(message.as_str());
            s.error = Some(message);
            news
        });
    }

    /// Starts `ovs-ofctl monitor <target> watch:!initial` (flow table changes made by
    /// anyone), or says why it cannot be started. It speaks the version the bundles and
    /// dumps use, with port numbers, so its events print flows as the plan writes them.
    fn start_monitor(&self) -> Result<Monitor, String> {
        // ovs-ofctl prints the monitor's updates on stderr (unbuffered), its first reply
        // on stdout.
        let mut child = Command::new(&self.config.ofctl)
            .args([
                NO_CONTROL_SOCKET,
                "-O",
                OPENFLOW_VERSION,
                "--no-names",
                "monitor",
                &self.config.target,
                "watch:!initial",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.config.ofctl.display()))?;
        let (Some(stderr), Some(stdout)) = (child.stderr.take(), child.stdout.take()) else {
            return Err("ovs-ofctl monitor: no pipes".to_string());
        };
        Ok(Monitor {
            child,
            lines: BufReader::new(stderr).lines(),
            replies: BufReader::new(stdout).lines(),
            last_message: None,
        })
    }

    /// Publishes a new monitor state; receivers are woken only when it changed.
    fn set_monitor(&self, state: MonitorState) {
        self.status.send_if_modified(|s| {
            let news = s.monitor != state;
            s.monitor = state;
            news
        });
    }

    /// The monitor failed to start or ended: warn once per new reason (a monitor that
    /// keeps failing the same way is not a stream of warnings), count it, and restart it
    /// after a doubling pause.
    fn monitor_down(&self, reason: String, retry: &mut MonitorRetry) {
        let pause = retry.failed();
        let repeated =
            matches!(&self.status.borrow().monitor, MonitorState::Down(r) if *r == reason);
        if repeated {
            tracing::debug!(%reason, retry_in = ?pause, "flow monitor down again");
        } else {
            tracing::warn!(
                %reason,
                retry_in = ?pause,
                check_interval = ?self.config.check_interval,
                "flow monitor down; dumping the owned flows every check interval instead"
            );
        }
        self.status.send_modify(|s| s.monitor_failures += 1);
        self.set_monitor(MonitorState::Down(reason));
    }

    /// Applies the change from a plan OVS holds to a new one in one bundle, without
    /// dumping (the periodic [`FlowSync::sync_once`] catches anything else), as the
    /// loop's rounds do; for benchmarks and tools.
    pub async fn apply_change(
        &self,
        from: &FlowPlan,
        to: &FlowPlan,
    ) -> Result<SyncOutcome, FlowSyncError> {
        self.apply_diff(&diff_plans(to, from), from.len()).await
    }

    /// One round: dump the owned flows, diff, apply the difference in one bundle.
    pub async fn sync_once(&self, plan: &FlowPlan) -> Result<SyncOutcome, FlowSyncError> {
        self.check(plan, None).await
    }

    /// Diffs `plan` against the owned flows (`dumped`, or a dump now) and applies the
    /// difference in one bundle.
    async fn check(
        &self,
        plan: &FlowPlan,
        dumped: Option<Vec<super::ObservedFlow>>,
    ) -> Result<SyncOutcome, FlowSyncError> {
        let (delta, observed) = self.against_bridge(plan, dumped).await?;
        self.apply_diff(&delta, observed).await
    }

    /// The difference from the owned flows (`dumped`, or a dump now) to `plan`, and how
    /// many owned flows there were.
    async fn against_bridge(
        &self,
        plan: &FlowPlan,
        dumped: Option<Vec<super::ObservedFlow>>,
    ) -> Result<(FlowDiff, usize), FlowSyncError> {
        let observed = match dumped {
            Some(flows) => flows,
            None => self.dump_owned().await?,
        };
        Ok((diff(plan, &observed), observed.len()))
    }

    /// Applies a difference (when there is one) in one bundle.
    async fn apply_diff(
        &self,
        delta: &FlowDiff,
        observed: usize,
    ) -> Result<SyncOutcome, FlowSyncError> {
        if !delta.is_empty() {
            self.apply_bundle(&delta.bundle_text()).await?;
        }
        Ok(SyncOutcome {
            observed,
            added: delta.add.len(),
            deleted: delta.delete.len(),
        })
    }

    /// The owned flows as OVS shows them.
    pub async fn dump_owned(&self) -> Result<Vec<super::ObservedFlow>, FlowSyncError> {
        let started = Instant::now();
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
        let flows = parse_dump(&text)?;
        tracing::debug!(
            flows = flows.len(),
            elapsed_us = started.elapsed().as_micros() as u64,
            "dumped the owned flows"
        );
        Ok(flows)
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
            .arg(NO_CONTROL_SOCKET)
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
