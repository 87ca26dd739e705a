//! The effectful side: keep the owned flows of one bridge equal to the desired plan.
//!
//! Every change of the desired plan, and every `check_interval` (1 s by default) in
//! between, the loop dumps the owned flows (`dump-flows cookie=<tag>/<mask>`), diffs them
//! against the plan and applies the difference in one `ovs-ofctl --bundle` transaction,
//! so OVS never holds half a change and a deleted or edited owned flow comes back within
//! about one interval.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::diff::{ParseError, diff, parse_dump};
use super::plan::FlowPlan;
use super::{COOKIE_MASK, COOKIE_TAG, OPENFLOW_VERSION};

/// Where and how to reach the bridge.
#[derive(Clone, Debug)]
pub struct FlowSyncConfig {
    /// The OpenFlow target for ovs-ofctl, e.g. `unix:/var/run/openvswitch/br-int.mgmt`.
    pub target: String,
    /// The ovs-ofctl program.
    pub ofctl: PathBuf,
    /// Longest time between two checks of the owned flows.
    pub check_interval: Duration,
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
        let mut last_plan: Option<Arc<FlowPlan>> = None;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                changed = desired.changed(), if sender_alive => {
                    if changed.is_err() {
                        // Keep repairing with the last plan until cancelled.
                        sender_alive = false;
                    }
                }
                _ = ticker.tick() => {}
            }
            let Some(plan) = desired.borrow_and_update().clone() else {
                continue;
            };
            let same_plan = last_plan.as_ref().is_some_and(|p| Arc::ptr_eq(p, &plan));
            let result = tokio::select! {
                _ = cancel.cancelled() => return,
                r = self.sync_once(&plan) => r,
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
                    self.status.send_modify(|s| {
                        s.applied = Some(plan.clone());
                        s.error = None;
                        s.rounds += 1;
                        if same_plan && changed {
                            s.repairs += 1;
                        }
                    });
                    last_plan = Some(plan);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "flow sync failed; retrying");
                    self.status.send_modify(|s| s.error = Some(e.to_string()));
                }
            }
        }
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
