//! Jobs and the workflow runner (chat-workflows.md §9.5–9.8, websocket.md A.5/A.6, C.4–C.6, C.14): one
//! worker pool (`execution.max_concurrent_jobs`) shared by all runs, runs of one conversation strictly in
//! submission order, step timeouts, cancellation inside the running step (its `StepControl` is stopped and
//! the operation returns between two batches of rows), intermediate row progress, restart recovery and
//! graceful shutdown. Every event goes through `Hub::publish` from the blocking pool.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use tokio::sync::{watch, Semaphore};

use super::model::{new_job_id, now_ts, Job, WorkflowStep};
use super::queue::{ClaimedJob, JobFence, JobQueue, QueueSignal, QueueStats};
use super::workflow::{event_result, FileRef, Plan, StepContext, StepOutput};
use super::{Chat, ChatError};
use crate::engine::{Phase, ProgressSnapshot, StepControl, StopReason};
use crate::events::wire::{
    ActiveJob, ActiveJobStatus, ProgressEvent, ProgressPhase, RunKind, StepFailed, StepFailedCode, StepRef,
    StepResult, StepStatus, WireMessage, WorkflowCompleted, WorkflowFailed, WorkflowQueued, WorkflowStarted,
};
use crate::events::ActiveJobs;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `execute` (REST `/execute`) or `bot` (bot confirmations); only event texts differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    Execute,
    Bot,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Execute => "execute",
            JobKind::Bot => "bot",
        }
    }

    fn wire(self) -> RunKind {
        match self {
            JobKind::Execute => RunKind::Execute,
            JobKind::Bot => RunKind::Bot,
        }
    }

    fn started_message(self) -> &'static str {
        match self {
            JobKind::Execute => "Workflow execution started",
            JobKind::Bot => "🚀 Starting workflow execution...",
        }
    }

    fn completed_message(self) -> &'static str {
        match self {
            JobKind::Execute => "Workflow execution completed successfully",
            JobKind::Bot => "✅ Workflow completed successfully!",
        }
    }

    fn failed_message(self, error: &str) -> String {
        match self {
            JobKind::Execute => "Workflow execution failed".to_string(),
            JobKind::Bot => format!("❌ Workflow failed: {error}"),
        }
    }

    fn parse(kind: &str) -> JobKind {
        if kind == "bot" {
            JobKind::Bot
        } else {
            JobKind::Execute
        }
    }
}

/// The failing step of a run.
#[derive(Debug, Clone)]
pub struct FailedStep {
    pub index: usize,
    pub step_id: String,
    pub operation: String,
    pub error: String,
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub job_id: String,
    pub chat_id: String,
    pub kind: JobKind,
    /// `completed`, `failed` or `cancelled`.
    pub status: &'static str,
    /// Results of the completed steps (§8.5).
    pub results: Vec<Value>,
    /// Files produced by this run (`{file_path, download_url}`).
    pub output_files: Vec<Value>,
    /// `Workflow failed at step i/n: …`, `Workflow cancelled by user`, or an interruption text.
    pub error: Option<String>,
    pub failed_step: Option<FailedStep>,
    /// The job's `result` object (§9.7).
    pub result: Value,
}

/// Hooks for the submitter (the bot adds its messages and state transitions); called on the blocking pool.
pub trait JobObserver: Send + Sync {
    /// Before `workflow_started` is published.
    fn on_start(&self, _chat: &Chat, _job_id: &str) {}
    /// Extra fields merged into the job's `result` (e.g. `bot_response`).
    fn result_extras(&self, _outcome: &RunOutcome) -> Map<String, Value> {
        Map::new()
    }
    /// After the terminal event was published.
    fn on_finish(&self, _chat: &Chat, _outcome: &RunOutcome) {}
}

/// A submitted job as the submitter sees it.
pub struct Submitted {
    pub job_id: String,
    /// Jobs of the same chat ahead of this one (0 = starts now).
    pub position: usize,
    pub done: watch::Receiver<Option<Arc<RunOutcome>>>,
}

impl Submitted {
    /// Waits for the end of the run (the run continues if this future is dropped).
    pub async fn wait(mut self) -> Option<Arc<RunOutcome>> {
        loop {
            if let Some(outcome) = self.done.borrow().clone() {
                return Some(outcome);
            }
            self.done.changed().await.ok()?;
        }
    }
}

/// In-memory control block of a queued or running job.
struct JobCtl {
    job_id: String,
    chat_id: String,
    kind: JobKind,
    base_url: String,
    plan: Plan,
    observer: Option<Arc<dyn JobObserver>>,
    cancel: AtomicBool,
    running: AtomicBool,
    /// Set once by whoever writes the terminal state; held while the run writes, so a shutdown or delete
    /// never interleaves with a step's writes.
    finalized: Mutex<bool>,
    /// `(step_index, overall_progress, step progress)` of the running step.
    progress: Mutex<(usize, u64, u64)>,
    /// The running step's control (stopped by a cancel, the step timeout or shutdown).
    step_control: Mutex<Option<StepControl>>,
    done: watch::Sender<Option<Arc<RunOutcome>>>,
    /// Cluster mode: this node's lease on the job (`None` in the embedded mode).
    lease: Option<Lease>,
    /// Cluster mode: where a taken-over job resumes.
    resume: Option<Resume>,
}

/// This node's claim on a cluster job.
struct Lease {
    attempt: i64,
    /// Renewal failed or shutdown gave the job back: nothing more is written for this claim.
    lost: AtomicBool,
    /// Open while a write section of the run holds the job's row (see [`Chat::under_lease`]).
    fence: Mutex<Option<Box<dyn JobFence>>>,
}

/// What identifies a job's run; [`JobCtl::new`] adds the fresh run state (not cancelled, not running).
struct JobIdentity {
    job_id: String,
    chat_id: String,
    kind: JobKind,
    base_url: String,
    plan: Plan,
    observer: Option<Arc<dyn JobObserver>>,
}

impl JobCtl {
    fn new(
        id: JobIdentity,
        done: watch::Sender<Option<Arc<RunOutcome>>>,
        lease: Option<Lease>,
        resume: Option<Resume>,
    ) -> Arc<JobCtl> {
        Arc::new(JobCtl {
            job_id: id.job_id,
            chat_id: id.chat_id,
            kind: id.kind,
            base_url: id.base_url,
            plan: id.plan,
            observer: id.observer,
            cancel: AtomicBool::new(false),
            running: AtomicBool::new(false),
            finalized: Mutex::new(false),
            progress: Mutex::new((0, 0, 0)),
            step_control: Mutex::new(None),
            done,
            lease,
            resume,
        })
    }
}

/// The steps a taken-over job already completed (the job row's `progress`, written with each step).
struct Resume {
    /// Steps `1..=done` completed; their outputs are reused.
    done: usize,
    results: Vec<Value>,
    produced: Vec<String>,
    /// The next step's default input.
    current: FileRef,
}

impl Resume {
    /// The row's `progress` JSON for a run that completed `done` steps.
    fn to_json(done: usize, results: &[Value], produced: &[String], current: &str) -> Value {
        json!({"done": done, "results": results, "produced": produced, "current": current})
    }
}

impl JobCtl {
    /// Stops the running step, if any, at its next check of the token.
    fn stop_running_step(&self, reason: StopReason) {
        if let Some(control) = lock(&self.step_control).as_ref() {
            control.stop(reason);
        }
    }

    /// Runs `write` on the open fence of this job's lease; `None` without one (embedded mode).
    fn fenced<T>(&self, write: impl FnOnce(&mut dyn JobFence) -> T) -> Option<T> {
        let lease = self.lease.as_ref()?;
        let mut fence = lock(&lease.fence);
        fence.as_mut().map(|f| write(f.as_mut()))
    }
}

/// Cluster mode's part of the runner: the queue, the lease settings and the submitters waiting here.
struct ClusterJobs {
    queue: Arc<dyn JobQueue>,
    lease: Duration,
    max_attempts: u32,
    stats: Arc<QueueStats>,
    /// Submitters on this node waiting for the end of a job, wherever it runs.
    waiters: Mutex<HashMap<String, watch::Sender<Option<Arc<RunOutcome>>>>>,
}

#[derive(Default)]
struct RunnerState {
    /// Per chat: job ids in submission order; the head is dispatched.
    chats: HashMap<String, VecDeque<String>>,
    jobs: HashMap<String, Arc<JobCtl>>,
}

pub struct JobRunner {
    state: Mutex<RunnerState>,
    permits: Arc<Semaphore>,
    shutting_down: AtomicBool,
    /// Set when shutdown stops the running steps: a step starting after that is stopped at once.
    stopping_steps: AtomicBool,
    runtime: tokio::runtime::Handle,
    test_step_delay: Mutex<Duration>,
    test_end_delay: Mutex<Duration>,
    cluster: OnceLock<ClusterJobs>,
}

fn overall(step_index: usize, progress: u64, total: usize) -> u64 {
    if total == 0 {
        return 0;
    }
    ((100 * (step_index.saturating_sub(1)) as u64 + progress) / total as u64).min(100)
}

impl JobRunner {
    /// Must be created inside the Tokio runtime that will run the jobs.
    pub fn new(max_concurrent_jobs: usize) -> JobRunner {
        JobRunner {
            state: Mutex::new(RunnerState::default()),
            permits: Arc::new(Semaphore::new(max_concurrent_jobs.max(1))),
            shutting_down: AtomicBool::new(false),
            stopping_steps: AtomicBool::new(false),
            runtime: tokio::runtime::Handle::current(),
            test_step_delay: Mutex::new(Duration::ZERO),
            test_end_delay: Mutex::new(Duration::ZERO),
            cluster: OnceLock::new(),
        }
    }

    /// Cluster mode: jobs go through `queue` and run on whichever node claims them.
    pub fn enable_cluster(&self, queue: Arc<dyn JobQueue>, config: &crate::config::ClusterConfig) {
        let _ = self.cluster.set(ClusterJobs {
            queue,
            lease: Duration::from_secs(config.job_lease_seconds.max(1)),
            max_attempts: config.max_job_attempts.max(1),
            stats: Arc::default(),
            waiters: Mutex::default(),
        });
    }

    /// The queue counters of this node (cluster mode), for `/metrics`.
    pub fn queue_stats(&self) -> Option<Arc<QueueStats>> {
        self.cluster.get().map(|c| c.stats.clone())
    }

    /// Hands `outcome` to a submitter on this node waiting for it (cluster mode).
    fn resolve_waiter(&self, outcome: &Arc<RunOutcome>) {
        if let Some(cluster) = self.cluster.get() {
            if let Some(waiter) = lock(&cluster.waiters).remove(&outcome.job_id) {
                let _ = waiter.send(Some(outcome.clone()));
            }
        }
    }

    /// Test hook: every step waits this long before it runs (inside its timeout). Not configurable.
    #[doc(hidden)]
    pub fn set_test_step_delay(&self, delay: Duration) {
        *lock(&self.test_step_delay) = delay;
    }

    /// Test hook: every run waits this long between recording its end and publishing it.
    #[doc(hidden)]
    pub fn set_test_end_delay(&self, delay: Duration) {
        *lock(&self.test_end_delay) = delay;
    }

    fn ctl(&self, job_id: &str) -> Option<Arc<JobCtl>> {
        lock(&self.state).jobs.get(job_id).cloned()
    }

    fn running_ctls(&self) -> Vec<Arc<JobCtl>> {
        lock(&self.state).jobs.values().cloned().collect()
    }

    /// Removes a job that is queued behind another one (not dispatched yet).
    fn remove_if_queued(&self, ctl: &JobCtl) {
        let mut st = lock(&self.state);
        let Some(queue) = st.chats.get_mut(&ctl.chat_id) else { return };
        if queue.front() == Some(&ctl.job_id) {
            return;
        }
        queue.retain(|j| j != &ctl.job_id);
        st.jobs.remove(&ctl.job_id);
    }

    /// Removes a job from its chat queue; returns the next job of that chat to dispatch, if it became head.
    fn remove(&self, ctl: &JobCtl) -> Option<Arc<JobCtl>> {
        let mut st = lock(&self.state);
        if st.jobs.get(&ctl.job_id).is_some_and(|c| !std::ptr::eq(c.as_ref(), ctl)) {
            // Cluster mode: this node claimed the job again meanwhile; the newer claim stays.
            return None;
        }
        st.jobs.remove(&ctl.job_id);
        let queue = st.chats.get_mut(&ctl.chat_id)?;
        let was_head = queue.front() == Some(&ctl.job_id);
        queue.retain(|j| j != &ctl.job_id);
        let next = if was_head { queue.front().cloned() } else { None };
        if queue.is_empty() {
            st.chats.remove(&ctl.chat_id);
        }
        next.and_then(|id| st.jobs.get(&id).cloned())
    }
}

impl ActiveJobs for JobRunner {
    fn active_job(&self, chat_id: &str) -> Option<ActiveJob> {
        let st = lock(&self.state);
        let head = st.chats.get(chat_id)?.front()?;
        let ctl = st.jobs.get(head)?;
        let total = ctl.plan.steps.len();
        let (step_index, overall_progress, _) = *lock(&ctl.progress);
        let running = ctl.running.load(Ordering::SeqCst);
        Some(ActiveJob {
            job_id: ctl.job_id.clone(),
            status: if running { ActiveJobStatus::Running } else { ActiveJobStatus::Pending },
            step_index: running.then_some(step_index),
            total_steps: total,
            overall_progress,
        })
    }
}

fn url_pair(chat: &Chat, base: &str, chat_id: &str, stored: &str) -> Value {
    json!({"file_path": stored, "download_url": chat.storage.file_url(base, chat_id, stored)})
}

impl Chat {
    fn publish<E: WireMessage>(&self, chat_id: &str, event: &E) {
        self.hub.publish_event(chat_id, event);
    }

    fn publish_progress(&self, chat_id: &str, event: &ProgressEvent) {
        if self.config.chat_workflows.execution.stream_progress {
            self.publish(chat_id, event);
        }
    }

    /// Records a job and its steps and queues it behind the chat's earlier jobs (blocking).
    pub fn submit(
        self: &Arc<Self>,
        plan: Plan,
        kind: JobKind,
        base_url: &str,
        observer: Option<Arc<dyn JobObserver>>,
    ) -> Result<Submitted, ChatError> {
        if self.runner.shutting_down.load(Ordering::SeqCst) {
            return Err(ChatError::Unavailable("Server is shutting down".into()));
        }
        let chat_id = plan.row.chat_id.clone();
        let job = Job {
            job_id: new_job_id(&chat_id),
            chat_id: chat_id.clone(),
            kind: kind.as_str().into(),
            status: "pending".into(),
            submitted_at: now_ts(),
            started_at: None,
            completed_at: None,
            result: None,
            error: None,
            cancel_requested: false,
            base_url: Some(base_url.to_string()),
        };
        let steps: Vec<WorkflowStep> = plan
            .steps
            .iter()
            .map(|s| WorkflowStep {
                step_id: s.step_id.clone(),
                operation: s.operation.clone(),
                arguments: s.arguments.clone(),
                input_file: None,
                output_file: None,
                status: "pending".into(),
                progress: 0,
                error_message: None,
                started_at: None,
                completed_at: None,
                job_id: Some(job.job_id.clone()),
                step_index: Some(s.index as i64),
            })
            .collect();
        if let Some(cluster) = self.runner.cluster.get() {
            return self.submit_to_queue(cluster, &plan, &job, &steps);
        }
        self.store.create_job(&job, &steps)?;
        let (done, rx) = watch::channel(None);
        let identity = JobIdentity {
            job_id: job.job_id.clone(),
            chat_id: chat_id.clone(),
            kind,
            base_url: base_url.to_string(),
            plan,
            observer,
        };
        let ctl = JobCtl::new(identity, done, None, None);
        let position = {
            let mut st = lock(&self.runner.state);
            st.jobs.insert(ctl.job_id.clone(), ctl.clone());
            let queue = st.chats.entry(chat_id.clone()).or_default();
            queue.push_back(ctl.job_id.clone());
            queue.len() - 1
        };
        if position == 0 {
            self.dispatch(ctl.clone());
        } else {
            self.publish(
                &chat_id,
                &WorkflowQueued { job_id: ctl.job_id.clone(), total_steps: ctl.plan.steps.len(), position },
            );
        }
        Ok(Submitted { job_id: ctl.job_id.clone(), position, done: rx })
    }

    fn dispatch(self: &Arc<Self>, ctl: Arc<JobCtl>) {
        let chat = self.clone();
        self.runner.runtime.spawn(async move {
            let permit = chat.runner.permits.clone().acquire_owned().await;
            let skip = *lock(&ctl.finalized) || chat.runner.shutting_down.load(Ordering::SeqCst);
            if !skip {
                chat.run_job(&ctl).await;
            }
            drop(permit);
            if let Some(next) = chat.runner.remove(&ctl) {
                chat.dispatch(next);
            }
        });
    }

    /// Runs `work` on the blocking pool unless the job was finalized by someone else (then `None`).
    async fn guarded<T: Send + 'static>(
        self: &Arc<Self>,
        ctl: &Arc<JobCtl>,
        work: impl FnOnce(&Arc<Chat>, &JobCtl) -> T + Send + 'static,
    ) -> Option<T> {
        self.guarded_with(ctl, false, work).await
    }

    /// As [`Chat::guarded`], and marks the job finalized under the same lock.
    async fn guarded_final<T: Send + 'static>(
        self: &Arc<Self>,
        ctl: &Arc<JobCtl>,
        work: impl FnOnce(&Arc<Chat>, &JobCtl) -> T + Send + 'static,
    ) -> Option<T> {
        self.guarded_with(ctl, true, work).await
    }

    async fn guarded_with<T: Send + 'static>(
        self: &Arc<Self>,
        ctl: &Arc<JobCtl>,
        finalize: bool,
        work: impl FnOnce(&Arc<Chat>, &JobCtl) -> T + Send + 'static,
    ) -> Option<T> {
        let chat = self.clone();
        let ctl = ctl.clone();
        tokio::task::spawn_blocking(move || {
            let mut finalized = lock(&ctl.finalized);
            if *finalized {
                return None;
            }
            let out = chat.under_lease(&ctl, || work(&chat, &ctl))?;
            *finalized = finalize;
            Some(out)
        })
        .await
        .ok()
        .flatten()
    }

    async fn run_job(self: &Arc<Self>, ctl: &Arc<JobCtl>) {
        let started = Instant::now();
        let total = ctl.plan.steps.len();
        let ok = self
            .guarded(ctl, move |chat, ctl| -> Result<(), ChatError> {
                ctl.running.store(true, Ordering::SeqCst);
                if ctl.resume.is_some() {
                    // Taken over: the run was announced by the node that started it.
                    return Ok(());
                }
                if ctl.lease.is_none() {
                    // A cluster job was marked running by its claim.
                    chat.store.mark_job_running(&ctl.job_id, &now_ts())?;
                }
                chat.store.set_status(&ctl.chat_id, "processing")?;
                // Cluster mode: "announced, no step done yet" (committed after `workflow_started` went
                // out, so a node taking the job over announces it again only if that may not have happened).
                let announced = Resume::to_json(0, &[], &[], &ctl.plan.input.stored);
                ctl.fenced(|f| f.save_progress(&announced)).transpose()?;
                if let Some(o) = &ctl.observer {
                    o.on_start(chat, &ctl.job_id);
                }
                let steps: Vec<StepRef> = ctl
                    .plan
                    .steps
                    .iter()
                    .map(|s| StepRef {
                        step_id: s.step_id.clone(),
                        step_index: s.index,
                        operation: s.operation.clone(),
                    })
                    .collect();
                chat.publish(
                    &ctl.chat_id,
                    &WorkflowStarted {
                        job_id: ctl.job_id.clone(),
                        kind: ctl.kind.wire(),
                        total_steps: total,
                        operation: ctl.plan.steps.first().map(|s| s.operation.clone()),
                        steps,
                        message: ctl.kind.started_message().into(),
                    },
                );
                Ok(())
            })
            .await;
        match ok {
            None => return,
            Some(Err(e)) => log::error!("job {}: cannot start: {e}", ctl.job_id),
            Some(Ok(())) => {}
        }

        let (done, mut current, mut results, mut produced) = match &ctl.resume {
            Some(r) => (r.done, r.current.clone(), r.results.clone(), r.produced.clone()),
            None => (0, ctl.plan.input.clone(), Vec::new(), Vec::new()),
        };
        let mut failure: Option<FailedStep> = None;
        let mut cancelled = false;
        let timeout = Duration::from_secs(self.config.chat_workflows.execution.step_timeout_seconds.max(1));
        for (i, step) in ctl.plan.steps.iter().enumerate() {
            if step.index <= done {
                continue; // completed before the takeover: its output is reused
            }
            if ctl.cancel.load(Ordering::SeqCst) {
                cancelled = true;
                break;
            }
            let input = step.input_override.clone().unwrap_or_else(|| current.clone());
            let step_index = step.index;
            let (step_c, input_c) = (step.clone(), input.clone());
            let started_at = now_ts();
            let started_c = started_at.clone();
            let start_text = match (&ctl.resume, &ctl.lease) {
                (Some(_), Some(lease)) if step.index == done + 1 => {
                    format!("Restarting step execution on another node (attempt {})", lease.attempt)
                }
                _ => "Starting step execution".to_string(),
            };
            let began = self
                .guarded(ctl, move |chat, ctl| -> Result<(), ChatError> {
                    chat.write_step(
                        Some(ctl),
                        &step_record(
                            &step_c,
                            ctl,
                            "running",
                            0,
                            Some(&input_c),
                            None,
                            None,
                            Some(started_c),
                            None,
                        ),
                    )?;
                    chat.seal(ctl)?;
                    *lock(&ctl.progress) = (step_index, overall(step_index, 0, total), 0);
                    chat.publish_progress(
                        &ctl.chat_id,
                        &progress_event(ctl, &step_c, total, 0, StepStatus::Running, &start_text, None),
                    );
                    Ok(())
                })
                .await;
            if began.is_none() {
                return;
            }
            // Waits for a heavy slot (shared with REST processing); the wait is not part of the timeout.
            let admitted = self.admit_step(&step.operation, &input.path, &ctl.cancel).await;
            let outcome = match admitted {
                Ok(Some(permit)) => permit.scope(self.run_step_with_control(ctl, i, &input, timeout)).await,
                Ok(None) => StepEnd::Cancelled,
                Err(error) => StepEnd::Failed(error),
            };
            match outcome {
                StepEnd::Completed(out, rows) => {
                    let (step_c, input_c, out_c, started_c) =
                        (step.clone(), input.clone(), out.clone(), started_at.clone());
                    let base = ctl.base_url.clone();
                    let (results_c, produced_c, current_c) =
                        (results.clone(), produced.clone(), current.stored.clone());
                    let result = self
                        .guarded(ctl, move |chat, ctl| -> Result<Value, ChatError> {
                            let stored = out_c.output.as_ref().map(|o| o.stored.clone());
                            if let Some(s) = &stored {
                                chat.store.record_file(&ctl.chat_id, s, "output")?;
                            }
                            chat.write_step(
                                Some(ctl),
                                &step_record(
                                    &step_c,
                                    ctl,
                                    "completed",
                                    100,
                                    Some(&input_c),
                                    stored.clone(),
                                    None,
                                    Some(started_c),
                                    Some(now_ts()),
                                ),
                            )?;
                            let mut result = Map::new();
                            result.insert("output_file_path".into(), json!(stored));
                            if let Some(s) = &stored {
                                result.insert(
                                    "download_url".into(),
                                    json!(chat.storage.file_url(&base, &ctl.chat_id, s)),
                                );
                            }
                            result.extend(out_c.result.clone());
                            let event = event_result(&result);
                            result.insert("step_id".into(), json!(step_c.step_id));
                            result.insert("operation".into(), json!(step_c.operation));
                            result.insert("status".into(), json!("completed"));
                            let result = Value::Object(result);
                            // Cluster mode: the steps done so far, in the same transaction as the step.
                            let (mut results, mut produced) = (results_c, produced_c);
                            results.push(result.clone());
                            produced.extend(stored.clone());
                            let current = stored.unwrap_or(current_c);
                            let progress = Resume::to_json(step_c.index, &results, &produced, &current);
                            ctl.fenced(|f| f.save_progress(&progress)).transpose()?;
                            chat.seal(ctl)?;
                            *lock(&ctl.progress) = (step_index, overall(step_index, 100, total), 100);
                            chat.publish_progress(
                                &ctl.chat_id,
                                &progress_event(
                                    ctl,
                                    &step_c,
                                    total,
                                    100,
                                    StepStatus::Completed,
                                    "Step completed successfully",
                                    rows,
                                ),
                            );
                            chat.publish(
                                &ctl.chat_id,
                                &StepResult {
                                    job_id: ctl.job_id.clone(),
                                    step_id: step_c.step_id.clone(),
                                    step_index: step_c.index,
                                    total_steps: total,
                                    operation: step_c.operation.clone(),
                                    result: event,
                                },
                            );
                            Ok(result)
                        })
                        .await;
                    match result {
                        None => return,
                        Some(Err(e)) => {
                            log::error!("job {}: cannot record step {}: {e}", ctl.job_id, step.index);
                            failure = Some(FailedStep {
                                index: step.index,
                                step_id: step.step_id.clone(),
                                operation: step.operation.clone(),
                                error: "Internal error while recording the step".into(),
                            });
                            break;
                        }
                        Some(Ok(r)) => results.push(r),
                    }
                    if let Some(o) = out.output {
                        produced.push(o.stored.clone());
                        current = o;
                    }
                }
                StepEnd::Failed(error) => {
                    failure = Some(FailedStep {
                        index: step.index,
                        step_id: step.step_id.clone(),
                        operation: step.operation.clone(),
                        error,
                    });
                    break;
                }
                StepEnd::Cancelled => {
                    // The stopped step is recorded as failed with the cancel text; the rest are skipped.
                    cancelled = true;
                    failure = Some(FailedStep {
                        index: step.index,
                        step_id: step.step_id.clone(),
                        operation: step.operation.clone(),
                        error: CANCELLED_TEXT.into(),
                    });
                    break;
                }
            }
        }
        let outcome = self.build_outcome(ctl, results, produced, failure, cancelled);
        let duration_ms = started.elapsed().as_millis() as u64;
        let finished =
            self.guarded_final(ctl, move |chat, ctl| chat.finish_run(ctl, outcome, duration_ms)).await;
        if let Some(outcome) = finished {
            // Leave the chat queue before the submitter hears the outcome, so a run submitted right after
            // it is not reported as queued behind a finished one. (The dispatcher's later remove is a no-op.)
            if let Some(next) = self.runner.remove(ctl) {
                // (Cluster jobs are claimed, never dispatched from here.)
                if ctl.lease.is_none() {
                    self.dispatch(next);
                }
            }
            self.deliver(ctl, outcome);
        }
    }

    /// Runs step `i` on the blocking pool with a fresh [`StepControl`], publishing intermediate progress
    /// while it runs. The step timeout, a cancel and shutdown stop the control; the operation then returns
    /// between two batches of rows (its partial output removed), so no thread keeps running a step
    /// nobody waits for.
    async fn run_step_with_control(
        self: &Arc<Self>,
        ctl: &Arc<JobCtl>,
        i: usize,
        input: &FileRef,
        timeout: Duration,
    ) -> StepEnd {
        let control = StepControl::new();
        *lock(&ctl.step_control) = Some(control.clone());
        if ctl.cancel.load(Ordering::SeqCst) {
            control.stop(StopReason::Cancelled);
        }
        if self.runner.stopping_steps.load(Ordering::SeqCst) {
            control.stop(StopReason::Shutdown);
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let delay = *lock(&self.runner.test_step_delay);
        if !delay.is_zero() {
            // A stop (cancel, shutdown, lost lease) ends the wait early, as it would end a real step.
            let until = deadline.min(tokio::time::Instant::now() + delay);
            while control.stop_reason().is_none() && tokio::time::Instant::now() < until {
                tokio::time::sleep_until(until.min(tokio::time::Instant::now() + Duration::from_millis(20)))
                    .await;
            }
        }
        let (chat, ctl_c, input_c, control_c) = (self.clone(), ctl.clone(), input.clone(), control.clone());
        // On the heavy lane when the step holds an admission permit (see `admission::run_blocking`).
        let work = crate::admission::run_blocking(move || {
            let step = &ctl_c.plan.steps[i];
            let ctx =
                StepContext { config: &chat.config, chat: &chat, row: &ctl_c.plan.row, control: &control_c };
            ctx.run(step, &input_c)
        });
        tokio::pin!(work);
        let interval = Duration::from_millis(self.config.chat_workflows.execution.progress_interval_ms)
            .clamp(MIN_PROGRESS_INTERVAL, MAX_PROGRESS_SILENCE);
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut reporter = ProgressReporter::new(interval);
        let mut timed_out = false;
        let result = loop {
            tokio::select! {
                joined = &mut work => break joined,
                _ = ticker.tick() => {
                    if let Some(event) = reporter.next_event(ctl, i, &control) {
                        let progress = (event.step_index, event.overall_progress, event.progress);
                        // Dropped silently if the job was finalized meanwhile (shutdown, delete).
                        self.guarded(ctl, move |chat, ctl| {
                            *lock(&ctl.progress) = progress;
                            chat.publish_progress(&ctl.chat_id, &event);
                        })
                        .await;
                    }
                }
                _ = tokio::time::sleep_until(deadline), if !timed_out => {
                    timed_out = true;
                    control.stop(StopReason::TimedOut);
                }
            }
        };
        *lock(&ctl.step_control) = None;
        let remove_output = |out: &StepOutput| {
            if let Some(o) = &out.output {
                self.storage.remove_stored(&ctl.plan.row, &o.stored);
            }
        };
        let timeout_text = || format!("Step timed out after {}s", timeout.as_secs());
        match (result, control.stop_reason()) {
            (Err(join), _) => {
                log::error!("job {}: step {} panicked: {join}", ctl.job_id, i + 1);
                StepEnd::Failed("Internal error while running the step".into())
            }
            // Finished before it looked at the token: a timed-out step's output is not kept.
            (Ok(Ok(out)), Some(StopReason::TimedOut)) => {
                remove_output(&out);
                StepEnd::Failed(timeout_text())
            }
            (Ok(Ok(out)), _) => {
                let rows = control.snapshot().and_then(|s| s.input_rows.or(s.rows_total));
                let phase = control.snapshot().map_or(Phase::Writing, |s| s.phase);
                StepEnd::Completed(out, rows.map(|r| RowProgress::done(r, phase)))
            }
            (Ok(Err(_)), Some(StopReason::Cancelled)) => StepEnd::Cancelled,
            (Ok(Err(_)), Some(StopReason::TimedOut)) => StepEnd::Failed(timeout_text()),
            (Ok(Err(_)), Some(StopReason::Shutdown)) => StepEnd::Failed(SHUTDOWN_TEXT.into()),
            (Ok(Err(error)), None) => StepEnd::Failed(error),
        }
    }

    fn build_outcome(
        &self,
        ctl: &JobCtl,
        results: Vec<Value>,
        produced: Vec<String>,
        failure: Option<FailedStep>,
        cancelled: bool,
    ) -> RunOutcome {
        let total = ctl.plan.steps.len();
        let (status, error) = if cancelled {
            ("cancelled", Some("Workflow cancelled by user".to_string()))
        } else if let Some(f) = &failure {
            ("failed", Some(format!("Workflow failed at step {}/{total}: {}", f.index, f.error)))
        } else {
            ("completed", None)
        };
        let output_files =
            produced.iter().map(|p| url_pair(self, &ctl.base_url, &ctl.chat_id, p)).collect::<Vec<_>>();
        RunOutcome {
            job_id: ctl.job_id.clone(),
            chat_id: ctl.chat_id.clone(),
            kind: ctl.kind,
            status,
            results,
            output_files,
            error,
            failed_step: failure,
            result: Value::Null,
        }
    }

    /// Writes the terminal state of a run that reached its end (success, step failure or cancel) and
    /// publishes the terminal events. Called with the job's `finalized` lock held.
    fn finish_run(&self, ctl: &JobCtl, mut outcome: RunOutcome, duration_ms: u64) -> Arc<RunOutcome> {
        let total = ctl.plan.steps.len();
        let chat_id = &ctl.chat_id;
        let mut write = || -> Result<(), ChatError> {
            // Steps after the stop point are skipped; the failing one is failed.
            let steps = self.store.job_steps(&ctl.job_id)?;
            let mut skipped = 0;
            for mut s in steps {
                if let Some(f) = outcome.failed_step.as_ref().filter(|f| f.step_id == s.step_id) {
                    s.status = "failed".into();
                    s.error_message = Some(f.error.clone());
                    s.completed_at = Some(now_ts());
                    self.write_step(Some(ctl), &s)?;
                } else if s.status == "pending" || s.status == "running" {
                    s.status = "skipped".into();
                    self.write_step(Some(ctl), &s)?;
                    skipped += 1;
                }
            }
            if outcome.status == "completed" && !self.config.chat_workflows.execution.save_intermediate_files
            {
                let kept: Vec<Value> = outcome
                    .output_files
                    .iter()
                    .filter(|f| {
                        let path = f["file_path"].as_str().unwrap_or("");
                        let intermediate = path.contains("/intermediate/");
                        if intermediate {
                            self.storage.remove_stored(&ctl.plan.row, path);
                            let _ = self.store.remove_file_record(chat_id, path, "output");
                        }
                        !intermediate
                    })
                    .cloned()
                    .collect();
                outcome.output_files = kept;
            }
            let mut result = Map::new();
            result.insert("success".into(), json!(outcome.status == "completed"));
            if outcome.status == "completed" {
                result.insert("message".into(), json!("Workflow executed successfully"));
            } else {
                result.insert("error".into(), json!(outcome.error));
            }
            result.insert("results".into(), json!(outcome.results));
            result.insert("output_files".into(), json!(outcome.output_files));
            if let Some(o) = &ctl.observer {
                result.extend(o.result_extras(&outcome));
            }
            outcome.result = Value::Object(result);
            let conv_status = if outcome.status == "completed" { "completed" } else { "failed" };
            self.store.set_status(chat_id, conv_status)?;
            self.write_finish(
                Some(ctl),
                &ctl.job_id,
                outcome.status,
                Some(&outcome.result),
                outcome.error.as_deref(),
            )?;
            self.seal(ctl)?;
            std::thread::sleep(*lock(&self.runner.test_end_delay));

            if let Some(f) = &outcome.failed_step {
                let step = ctl.plan.steps.iter().find(|s| s.step_id == f.step_id);
                if let Some(step) = step {
                    // The step's last progress: the last intermediate percentage it reported.
                    let (at, _, last) = *lock(&ctl.progress);
                    let last = if at == step.index { last } else { 0 };
                    self.publish_progress(
                        chat_id,
                        &progress_event(
                            ctl,
                            step,
                            total,
                            last,
                            StepStatus::Failed,
                            &format!("Step failed: {}", f.error),
                            None,
                        ),
                    );
                }
                // A step stopped by a cancel did not fail on its own: no `error` event for it.
                if outcome.status != "cancelled" {
                    self.publish(
                        chat_id,
                        &StepFailed {
                            job_id: ctl.job_id.clone(),
                            step_id: f.step_id.clone(),
                            operation: f.operation.clone(),
                            code: StepFailedCode::StepFailed,
                            message: f.error.clone(),
                        },
                    );
                }
            }
            if outcome.status == "completed" {
                self.publish(
                    chat_id,
                    &WorkflowCompleted {
                        job_id: ctl.job_id.clone(),
                        total_steps: total,
                        operation: ctl.plan.steps.last().map(|s| s.operation.clone()),
                        duration_ms,
                        output_files: outcome.output_files.clone(),
                        output_files_count: outcome.output_files.len(),
                        message: ctl.kind.completed_message().into(),
                    },
                );
            } else {
                let error = outcome.error.clone().unwrap_or_default();
                let f = outcome.failed_step.as_ref();
                self.publish(
                    chat_id,
                    &WorkflowFailed {
                        job_id: ctl.job_id.clone(),
                        operation: f.map(|f| f.operation.clone()),
                        step_id: f.map(|f| f.step_id.clone()),
                        failed_step: f.map(|f| f.index as u64),
                        skipped_steps: skipped,
                        cancelled: outcome.status == "cancelled",
                        message: ctl.kind.failed_message(&error),
                        error,
                    },
                );
            }
            Ok(())
        };
        if let Err(e) = write() {
            log::error!("job {}: cannot record the end of the run: {e}", ctl.job_id);
        }
        self.free_chat(ctl);
        let outcome = Arc::new(outcome);
        if let Some(o) = &ctl.observer {
            o.on_finish(self, &outcome);
        }
        outcome
    }

    /// Cancels a job of this chat (§8.12): pending → cancelled at once; running → its running step stops
    /// between two batches of rows (or the run stops before its next step). 404 for unknown jobs or jobs of another chat, 409 when already finished.
    pub fn cancel_job(self: &Arc<Self>, chat_id: &str, job_id: &str) -> Result<(), ChatError> {
        let job = self
            .store
            .job(job_id)?
            .filter(|j| j.chat_id == chat_id)
            .ok_or_else(|| ChatError::NotFound("Job not found".into()))?;
        if job.is_finished() {
            return Err(ChatError::Conflict("Job already finished".into()));
        }
        if let Some(cluster) = self.runner.cluster.get() {
            // Recorded for every node; the one running it stops it (notified, or at its next poll).
            cluster.queue.request_cancel(job_id)?;
            self.cancel_local(job_id);
            if job.status == "pending" {
                // A queued job is cancelled by the first node that claims it, at once: answer after that,
                // as on one node (bounded: the answer says `pending` if it takes longer).
                let deadline = Instant::now() + PENDING_CANCEL_WAIT;
                while Instant::now() < deadline && !self.store.job(job_id)?.is_none_or(|j| j.is_finished()) {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            return Ok(());
        }
        match self.runner.ctl(job_id) {
            Some(ctl) if ctl.running.load(Ordering::SeqCst) => {
                ctl.cancel.store(true, Ordering::SeqCst);
                ctl.stop_running_step(StopReason::Cancelled);
                self.store.set_cancel_requested(job_id)?;
            }
            Some(ctl) => {
                self.interrupt(
                    &ctl.job_id,
                    &ctl.chat_id,
                    ctl.kind,
                    "Workflow cancelled by user",
                    true,
                    Some(&ctl),
                )?;
                // A dispatched job (waiting for a worker) is removed by its own task.
                self.runner.remove_if_queued(&ctl);
            }
            None => {
                self.interrupt(
                    job_id,
                    chat_id,
                    JobKind::parse(&job.kind),
                    "Workflow cancelled by user",
                    true,
                    None,
                )?;
            }
        }
        Ok(())
    }

    /// Ends a job that will not reach its end by itself (cancelled while pending, shutdown, restart): its
    /// running step fails, pending steps are skipped, the job gets `error`, `workflow_failed` is published.
    fn interrupt(
        &self,
        job_id: &str,
        chat_id: &str,
        kind: JobKind,
        error: &str,
        cancelled: bool,
        ctl: Option<&Arc<JobCtl>>,
    ) -> Result<(), ChatError> {
        let guard = ctl.map(|c| lock(&c.finalized));
        if guard.as_ref().is_some_and(|g| **g) {
            return Ok(());
        }
        let steps = self.store.job_steps(job_id)?;
        let mut failed: Option<WorkflowStep> = None;
        let mut skipped = 0;
        let started = steps.iter().any(|s| s.status != "pending");
        for mut s in steps {
            match s.status.as_str() {
                "running" => {
                    s.status = "failed".into();
                    s.error_message = Some(error.to_string());
                    s.completed_at = Some(now_ts());
                    self.write_step(ctl.map(|c| &**c), &s)?;
                    failed = Some(s);
                }
                "pending" => {
                    s.status = "skipped".into();
                    self.write_step(ctl.map(|c| &**c), &s)?;
                    skipped += 1;
                }
                _ => {}
            }
        }
        let status = if cancelled { "cancelled" } else { "failed" };
        let result = json!({"success": false, "error": error, "results": [], "output_files": []});
        self.write_finish(ctl.map(|c| &**c), job_id, status, Some(&result), Some(error))?;
        if let Some(ctl) = ctl {
            self.seal(ctl)?;
        }
        if started || !cancelled {
            self.store.set_status(chat_id, "failed")?;
        }
        if !cancelled {
            self.store.reset_bot_state(chat_id)?;
        }
        self.publish(
            chat_id,
            &WorkflowFailed {
                job_id: job_id.to_string(),
                operation: failed.as_ref().map(|s| s.operation.clone()),
                step_id: failed.as_ref().map(|s| s.step_id.clone()),
                failed_step: failed.as_ref().and_then(|s| s.step_index).map(|i| i.max(0) as u64),
                skipped_steps: skipped,
                cancelled,
                error: error.to_string(),
                message: kind.failed_message(error),
            },
        );
        if let Some(ctl) = ctl {
            self.free_chat(ctl);
        }
        if let (Some(ctl), Some(mut g)) = (ctl, guard) {
            *g = true;
            drop(g);
            let outcome = RunOutcome {
                job_id: job_id.to_string(),
                chat_id: chat_id.to_string(),
                kind,
                status,
                results: Vec::new(),
                output_files: Vec::new(),
                error: Some(error.to_string()),
                failed_step: failed.map(|s| FailedStep {
                    index: s.step_index.unwrap_or(0) as usize,
                    step_id: s.step_id,
                    operation: s.operation,
                    error: error.to_string(),
                }),
                result,
            };
            let outcome = Arc::new(outcome);
            if let Some(o) = &ctl.observer {
                o.on_finish(self, &outcome);
            }
            self.deliver(ctl, outcome);
        }
        Ok(())
    }

    /// The conversation is being deleted: its jobs stop writing and waiters are released (blocking).
    pub fn forget_chat(&self, chat_id: &str) {
        let ctls: Vec<Arc<JobCtl>> = {
            let mut st = lock(&self.runner.state);
            let ids = st.chats.remove(chat_id).unwrap_or_default();
            let ctls = ids.iter().filter_map(|id| st.jobs.get(id).cloned()).collect();
            // The dispatched head is removed by its own task.
            for id in ids.iter().skip(1) {
                st.jobs.remove(id);
            }
            ctls
        };
        for ctl in ctls {
            ctl.cancel.store(true, Ordering::SeqCst);
            ctl.stop_running_step(StopReason::Cancelled);
            let mut g = lock(&ctl.finalized);
            if !*g {
                *g = true;
                drop(g);
                let outcome = self.build_outcome(&ctl, Vec::new(), Vec::new(), None, true);
                self.deliver(&ctl, Arc::new(outcome));
            }
        }
    }

    /// Restart recovery (§9.8): jobs left pending or running are failed and their `workflow_failed` is
    /// appended to the chat's event log. Blocking; call after the store is installed in the hub.
    pub fn recover_interrupted(&self) -> Result<usize, ChatError> {
        if let Some(cluster) = self.runner.cluster.get() {
            // Cluster mode: the jobs this node held are given back to the queue (resumed by any node).
            return cluster.queue.release(None);
        }
        let jobs = self.store.unfinished_jobs()?;
        for job in &jobs {
            self.interrupt(
                &job.job_id,
                &job.chat_id,
                JobKind::parse(&job.kind),
                "Interrupted by server restart",
                false,
                None,
            )?;
        }
        Ok(jobs.len())
    }

    /// Graceful shutdown (websocket.md C.14): no new jobs; queued ones fail at once; running ones get
    /// `grace` to finish and are then failed with `Interrupted by server shutdown`.
    pub async fn shutdown_jobs(self: &Arc<Self>, grace: Duration) {
        if self.runner.shutting_down.swap(true, Ordering::SeqCst) {
            return;
        }
        const TEXT: &str = SHUTDOWN_TEXT;
        let cluster = self.runner.cluster.get().is_some();
        let chat = self.clone();
        let _ = tokio::task::spawn_blocking(move || {
            // Cluster mode: nothing waits in this node's memory (queued jobs are in the shared queue).
            for ctl in chat.runner.running_ctls().into_iter().filter(|_| !cluster) {
                if !ctl.running.load(Ordering::SeqCst) {
                    if let Err(e) =
                        chat.interrupt(&ctl.job_id, &ctl.chat_id, ctl.kind, TEXT, false, Some(&ctl))
                    {
                        log::error!("shutdown: job {}: {e}", ctl.job_id);
                    }
                }
            }
        })
        .await;
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let active = self.runner.running_ctls().iter().any(|c| !*lock(&c.finalized));
            if !active || tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The steps still running are stopped (they return between two batches of rows), then failed.
        self.runner.stopping_steps.store(true, Ordering::SeqCst);
        for ctl in self.runner.running_ctls() {
            if cluster {
                self.lose_lease(&ctl, "shutdown");
            }
            ctl.stop_running_step(StopReason::Shutdown);
        }
        let chat = self.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(cluster) = chat.runner.cluster.get() {
                // Cluster mode: the jobs still running here are given back, and another node resumes them.
                let leases: Vec<(String, i64)> = chat
                    .runner
                    .running_ctls()
                    .iter()
                    .filter_map(|c| c.lease.as_ref().map(|l| (c.job_id.clone(), l.attempt)))
                    .collect();
                if let Err(e) = cluster.queue.release(Some(&leases)) {
                    log::error!("shutdown: cannot give back {} job lease(s): {e}", leases.len());
                }
                return;
            }
            for ctl in chat.runner.running_ctls() {
                if let Err(e) = chat.interrupt(&ctl.job_id, &ctl.chat_id, ctl.kind, TEXT, false, Some(&ctl)) {
                    log::error!("shutdown: job {}: {e}", ctl.job_id);
                }
            }
        })
        .await;
        // No thread is left running abandoned work: wait (bounded) until the stopped steps have returned.
        let deadline = tokio::time::Instant::now() + STOPPED_STEP_WAIT;
        while tokio::time::Instant::now() < deadline
            && self.runner.running_ctls().iter().any(|c| lock(&c.step_control).is_some())
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Purges finished jobs older than `execution.job_retention_hours` (hourly).
    pub fn spawn_job_purge(self: &Arc<Self>) {
        let hours = self.config.chat_workflows.execution.job_retention_hours;
        if hours == 0 {
            return;
        }
        let store = self.store.clone();
        super::spawn_periodic("job retention", Duration::from_secs(3600), move || {
            let before = super::model::format_ts(chrono::Utc::now() - chrono::Duration::hours(hours as i64));
            let n = store.purge_jobs(&before)?;
            if n > 0 {
                log::info!("job retention removed {n} job(s)");
            }
            Ok(())
        });
    }
}

/// How often the workers of a cluster node look at the queue besides the notifications (also how soon an
/// expired lease is noticed, and a cancel request when its notification was missed).
const QUEUE_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// How long a cancel of a queued cluster job waits for the node that cancels it.
const PENDING_CANCEL_WAIT: Duration = Duration::from_secs(2);

/// What a claimed job is to become.
enum ClaimedRun {
    Run,
    /// Ended without running (cancel requested while pending, attempts exhausted, cannot be planned).
    End {
        error: String,
        cancelled: bool,
    },
}

// --- cluster mode: the queue in PostgreSQL, leases, takeover
impl Chat {
    /// Cluster mode: records the job in the shared queue (any node may claim it) and registers the caller
    /// as a waiter for its end.
    fn submit_to_queue(
        self: &Arc<Self>,
        cluster: &ClusterJobs,
        plan: &Plan,
        job: &Job,
        steps: &[WorkflowStep],
    ) -> Result<Submitted, ChatError> {
        let (done, rx) = watch::channel(None);
        lock(&cluster.waiters).insert(job.job_id.clone(), done);
        let position = match cluster.queue.enqueue(job, steps, &plan_request(plan)) {
            Ok(p) => p,
            Err(e) => {
                lock(&cluster.waiters).remove(&job.job_id);
                return Err(e);
            }
        };
        if position > 0 {
            self.publish(
                &job.chat_id,
                &WorkflowQueued { job_id: job.job_id.clone(), total_steps: plan.steps.len(), position },
            );
        }
        Ok(Submitted { job_id: job.job_id.clone(), position, done: rx })
    }

    /// Runs `work` while this node provably holds the job (cluster mode): the job's row is locked after
    /// checking owner and attempt, the writes of `work` that touch the job go through that transaction,
    /// and it commits after `work`. `None` (nothing done) when the lease is lost. Embedded: runs `work`.
    fn under_lease<T>(&self, ctl: &JobCtl, work: impl FnOnce() -> T) -> Option<T> {
        let (Some(lease), Some(cluster)) = (&ctl.lease, self.runner.cluster.get()) else {
            return Some(work());
        };
        if lease.lost.load(Ordering::SeqCst) {
            return None;
        }
        match cluster.queue.fence(&ctl.job_id, lease.attempt) {
            Ok(Some(fence)) => *lock(&lease.fence) = Some(fence),
            Ok(None) => {
                self.lose_lease(ctl, "taken over by another node");
                return None;
            }
            Err(e) => {
                log::warn!("job {}: cannot lock the job: {e}", ctl.job_id);
                self.lose_lease(ctl, "database unavailable");
                return None;
            }
        }
        let out = work();
        if let Err(e) = self.seal(ctl) {
            log::warn!("job {}: cannot commit: {e}", ctl.job_id);
        }
        // Lost meanwhile (a failed commit): the run stops here.
        (!lease.lost.load(Ordering::SeqCst)).then_some(out)
    }

    /// Cluster mode: commits the open fence of the job, so the writes so far are visible before the events
    /// that report them are published (as in the embedded mode). After it the section only publishes:
    /// what it reports was committed under this node's lease. An error when the commit failed.
    fn seal(&self, ctl: &JobCtl) -> Result<(), ChatError> {
        let Some(lease) = &ctl.lease else { return Ok(()) };
        let fence = lock(&lease.fence).take();
        match fence.map(|f| f.commit()) {
            Some(Err(e)) => {
                self.lose_lease(ctl, "commit failed");
                Err(e)
            }
            _ => Ok(()),
        }
    }

    /// Cluster mode: the run's end is published, so the chat's next job may start (on any node).
    fn free_chat(&self, ctl: &JobCtl) {
        let (Some(lease), Some(cluster)) = (&ctl.lease, self.runner.cluster.get()) else { return };
        if let Err(e) = cluster.queue.free_chat(&ctl.job_id, lease.attempt) {
            log::warn!(
                "job {}: cannot free its chat for the next job (freed within {:?}): {e}",
                ctl.job_id,
                super::queue::FINISHED_HOLD
            );
        }
    }

    /// Cluster mode: this node must not write for the job any more; its step stops at the next batch.
    fn lose_lease(&self, ctl: &JobCtl, why: &str) {
        let Some(lease) = &ctl.lease else { return };
        if !lease.lost.swap(true, Ordering::SeqCst) {
            log::warn!("job {}: lease of attempt {} given up ({why})", ctl.job_id, lease.attempt);
        }
        ctl.cancel.store(true, Ordering::SeqCst);
        ctl.stop_running_step(StopReason::Shutdown);
    }

    /// A step row write: inside the job's fence in cluster mode.
    fn write_step(&self, ctl: Option<&JobCtl>, step: &WorkflowStep) -> Result<(), ChatError> {
        match ctl.and_then(|c| c.fenced(|f| f.update_step(step))) {
            Some(written) => written,
            None => self.store.update_step(step),
        }
    }

    /// The job's terminal state: inside the job's fence in cluster mode (which also frees the chat).
    fn write_finish(
        &self,
        ctl: Option<&JobCtl>,
        job_id: &str,
        status: &str,
        result: Option<&Value>,
        error: Option<&str>,
    ) -> Result<(), ChatError> {
        match ctl.and_then(|c| c.fenced(|f| f.finish_job(status, result, error))) {
            Some(written) => written,
            None => self.store.finish_job(job_id, status, result, error),
        }
    }

    /// Hands the outcome to whoever waits for it on this node.
    fn deliver(&self, ctl: &JobCtl, outcome: Arc<RunOutcome>) {
        self.runner.resolve_waiter(&outcome);
        let _ = ctl.done.send(Some(outcome));
    }

    /// Stops a job running on this node because a cancel was requested (cluster mode).
    fn cancel_local(&self, job_id: &str) {
        if let Some(ctl) = self.runner.ctl(job_id) {
            ctl.cancel.store(true, Ordering::SeqCst);
            ctl.stop_running_step(StopReason::Cancelled);
        }
    }

    /// Cluster mode: starts this node's workers. They claim jobs when PostgreSQL notifies them and every
    /// [`QUEUE_POLL_INTERVAL`], as many as `execution.max_concurrent_jobs` allows; they also pass cancel
    /// requests to the runs of this node and the ends of remote runs to the submitters waiting here.
    pub fn start_job_workers(self: &Arc<Self>) {
        let Some(cluster) = self.runner.cluster.get() else { return };
        let (tx, mut signals) = tokio::sync::mpsc::channel(256);
        cluster.queue.listen(tx);
        let chat = self.clone();
        self.runner.runtime.spawn(async move {
            let mut ticker = tokio::time::interval(QUEUE_POLL_INTERVAL);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut listening = true;
            loop {
                let signal = tokio::select! {
                    s = signals.recv(), if listening => match s {
                        Some(s) => Some(s),
                        None => {
                            listening = false;
                            continue;
                        }
                    },
                    _ = ticker.tick() => None,
                };
                if chat.runner.shutting_down.load(Ordering::SeqCst) {
                    break;
                }
                match signal {
                    Some(QueueSignal::Work) => chat.claim_jobs().await,
                    Some(QueueSignal::Cancel(job_id)) => chat.cancel_local(&job_id),
                    Some(QueueSignal::Finished(job_id)) => chat.check_waiters(Some(job_id)).await,
                    None => {
                        chat.claim_jobs().await;
                        chat.poll_cancels().await;
                        chat.check_waiters(None).await;
                    }
                }
            }
        });
    }

    async fn claim_jobs(self: &Arc<Self>) {
        let Some(cluster) = self.runner.cluster.get() else { return };
        let free = self.runner.permits.available_permits();
        if free == 0 {
            return;
        }
        let (queue, lease, max) = (cluster.queue.clone(), cluster.lease, cluster.max_attempts);
        let claimed = match tokio::task::spawn_blocking(move || queue.claim(lease, max, free)).await {
            Ok(Ok(claimed)) => claimed,
            Ok(Err(e)) => return log::warn!("job queue: claim failed: {e}"),
            Err(e) => return log::error!("job queue: claim task failed: {e}"),
        };
        if self.runner.shutting_down.load(Ordering::SeqCst) {
            // Claimed while this node began to stop: given back at once.
            let leases: Vec<(String, i64)> =
                claimed.iter().map(|c| (c.job.job_id.clone(), c.attempt)).collect();
            let queue = cluster.queue.clone();
            let _ = tokio::task::spawn_blocking(move || queue.release(Some(&leases))).await;
            return;
        }
        for job in claimed {
            cluster.stats.claimed.inc();
            if job.takeover {
                cluster.stats.takeovers.inc();
                log::warn!("job {}: taken over (attempt {})", job.job.job_id, job.attempt);
            }
            // Held for the whole run: the claim took no more jobs than there are free permits.
            let Ok(permit) = self.runner.permits.clone().try_acquire_owned() else {
                log::error!("job {}: no worker free after the claim; its lease will expire", job.job.job_id);
                continue;
            };
            let chat = self.clone();
            self.runner.runtime.spawn(async move {
                chat.run_claimed(job).await;
                drop(permit);
            });
        }
    }

    /// Runs (or ends) a job this node claimed, renewing its lease meanwhile; a run that stopped without
    /// writing its end gives the job back so another node resumes it at once.
    async fn run_claimed(self: &Arc<Self>, claimed: ClaimedJob) {
        let chat = self.clone();
        let prepared = tokio::task::spawn_blocking(move || chat.prepare_claimed(claimed)).await;
        let (ctl, what) = match prepared {
            Ok(Ok(Some(p))) => p,
            Ok(Ok(None)) => return,
            Ok(Err(e)) => return log::error!("job queue: cannot prepare a claimed job: {e}"),
            Err(e) => return log::error!("job queue: prepare task failed: {e}"),
        };
        match what {
            ClaimedRun::Run => {
                tokio::select! {
                    _ = self.run_job(&ctl) => {}
                    _ = self.keep_lease(&ctl) => {}
                }
            }
            ClaimedRun::End { error, cancelled } => {
                let (chat, ctl_c) = (self.clone(), ctl.clone());
                let _ = tokio::task::spawn_blocking(move || {
                    let ctl = &ctl_c;
                    chat.under_lease(ctl, || {
                        chat.interrupt(&ctl.job_id, &ctl.chat_id, ctl.kind, &error, cancelled, Some(ctl))
                    })
                })
                .await;
            }
        }
        let unfinished = !*lock(&ctl.finalized);
        self.runner.remove(&ctl);
        if let (true, Some(cluster), Some(lease)) = (unfinished, self.runner.cluster.get(), &ctl.lease) {
            let (queue, leases) = (cluster.queue.clone(), [(ctl.job_id.clone(), lease.attempt)]);
            let _ = tokio::task::spawn_blocking(move || queue.release(Some(&leases))).await;
        }
    }

    /// Builds the control block of a claimed job (its plan again from the stored request, its progress
    /// when taken over) and registers it as running here. `None` when its conversation is gone.
    fn prepare_claimed(
        self: &Arc<Self>,
        claimed: ClaimedJob,
    ) -> Result<Option<(Arc<JobCtl>, ClaimedRun)>, ChatError> {
        let Some(cluster) = self.runner.cluster.get() else { return Ok(None) };
        let job = claimed.job;
        let Some(row) = self.store.conversation_row(&job.chat_id)? else { return Ok(None) };
        let kind = JobKind::parse(&job.kind);
        let base = job.base_url.clone().unwrap_or_default();
        let planned = claimed
            .request
            .as_ref()
            .and_then(Value::as_object)
            .ok_or_else(|| ChatError::validation("the job has no stored request"))
            .and_then(|body| super::workflow::plan(self, &row, body));
        let mut what = ClaimedRun::Run;
        let plan = match planned {
            Ok(mut plan) => {
                // The steps keep the ids recorded at submission.
                let ids: HashMap<i64, String> = self
                    .store
                    .job_steps(&job.job_id)?
                    .into_iter()
                    .filter_map(|s| s.step_index.map(|i| (i, s.step_id)))
                    .collect();
                for step in &mut plan.steps {
                    if let Some(id) = ids.get(&(step.index as i64)) {
                        step.step_id = id.clone();
                    }
                }
                plan
            }
            Err(e) => {
                what =
                    ClaimedRun::End { error: format!("Workflow cannot be resumed: {e}"), cancelled: false };
                Plan {
                    row: row.clone(),
                    input: FileRef { stored: String::new(), path: Default::default() },
                    steps: Vec::new(),
                }
            }
        };
        if job.cancel_requested {
            what = ClaimedRun::End { error: CANCELLED_TEXT.into(), cancelled: true };
        } else if claimed.exhausted {
            let n = cluster.max_attempts;
            what = ClaimedRun::End {
                error: format!(
                    "Workflow failed: its node stopped during each of its {n} attempt(s)                      (cluster.max_job_attempts = {n})"
                ),
                cancelled: false,
            };
        }
        // A takeover of a run that was never announced starts it afresh.
        let resume = claimed.progress.filter(|_| claimed.takeover).map(|p| {
            let strings = |v: &Value| -> Vec<String> {
                v.as_array()
                    .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
                    .unwrap_or_default()
            };
            let current = p["current"]
                .as_str()
                .and_then(|stored| {
                    self.storage
                        .resolve_stored(&row, stored)
                        .map(|(_, path)| FileRef { stored: stored.to_string(), path })
                })
                .unwrap_or_else(|| plan.input.clone());
            Resume {
                done: p["done"].as_u64().unwrap_or(0) as usize,
                results: p["results"].as_array().cloned().unwrap_or_default(),
                produced: strings(&p["produced"]),
                current,
            }
        });
        let observer = match kind {
            JobKind::Bot => Some(crate::bot::service::job_observer(&job.chat_id, &base)),
            JobKind::Execute => None,
        };
        let (done, _) = watch::channel(None);
        let identity = JobIdentity {
            job_id: job.job_id.clone(),
            chat_id: job.chat_id.clone(),
            kind,
            base_url: base,
            plan,
            observer,
        };
        let lease = Lease { attempt: claimed.attempt, lost: AtomicBool::new(false), fence: Mutex::new(None) };
        let ctl = JobCtl::new(identity, done, Some(lease), resume);
        let earlier = {
            let mut st = lock(&self.runner.state);
            let earlier = st.jobs.insert(ctl.job_id.clone(), ctl.clone());
            let queue = st.chats.entry(ctl.chat_id.clone()).or_default();
            if !queue.contains(&ctl.job_id) {
                queue.push_back(ctl.job_id.clone());
            }
            earlier
        };
        if let Some(earlier) = earlier {
            // An earlier claim of this node that lost its lease and has not wound down yet.
            self.lose_lease(&earlier, "claimed again");
        }
        Ok(Some((ctl, what)))
    }

    /// Renews the job's lease every third of `cluster.job_lease_seconds` (a renewal also reports a cancel
    /// request). When the lease is lost, or cannot be renewed for a whole lease, the run is stopped and
    /// writes nothing more. Never returns.
    async fn keep_lease(self: &Arc<Self>, ctl: &Arc<JobCtl>) {
        let (Some(cluster), Some(lease)) = (self.runner.cluster.get(), &ctl.lease) else {
            return std::future::pending().await;
        };
        let mut renewed_at = Instant::now();
        loop {
            tokio::time::sleep(cluster.lease / 3).await;
            let (queue, job_id, attempt, length) =
                (cluster.queue.clone(), ctl.job_id.clone(), lease.attempt, cluster.lease);
            match tokio::task::spawn_blocking(move || queue.renew(&job_id, attempt, length)).await {
                Ok(Ok(Some(cancel))) => {
                    renewed_at = Instant::now();
                    if cancel {
                        self.cancel_local(&ctl.job_id);
                    }
                }
                Ok(Ok(None)) => {
                    cluster.stats.renewals_failed.inc();
                    self.lose_lease(ctl, "renewal refused: the lease is no longer this node's");
                    break;
                }
                Ok(Err(e)) => {
                    cluster.stats.renewals_failed.inc();
                    log::warn!("job {}: lease renewal failed: {e}", ctl.job_id);
                    if renewed_at.elapsed() >= cluster.lease {
                        self.lose_lease(ctl, "no renewal for a whole lease");
                        break;
                    }
                }
                Err(e) => log::error!("job {}: renewal task failed: {e}", ctl.job_id),
            }
        }
        std::future::pending().await
    }

    /// Passes cancel requests whose notification was missed to the runs of this node.
    async fn poll_cancels(self: &Arc<Self>) {
        let Some(cluster) = self.runner.cluster.get() else { return };
        let ids: Vec<String> = self.runner.running_ctls().iter().map(|c| c.job_id.clone()).collect();
        if ids.is_empty() {
            return;
        }
        let queue = cluster.queue.clone();
        if let Ok(Ok(cancelled)) = tokio::task::spawn_blocking(move || queue.cancel_requested(&ids)).await {
            for id in cancelled {
                self.cancel_local(&id);
            }
        }
    }

    /// Answers the submitters waiting on this node whose job ended elsewhere (`job_id`, or all of them).
    async fn check_waiters(self: &Arc<Self>, job_id: Option<String>) {
        let Some(cluster) = self.runner.cluster.get() else { return };
        let ids: Vec<String> = {
            let mut waiters = lock(&cluster.waiters);
            // Nobody listens any more (asynchronous submissions): forget them.
            waiters.retain(|_, w| w.receiver_count() > 0);
            waiters.keys().filter(|id| job_id.as_ref().is_none_or(|j| j == *id)).cloned().collect()
        };
        if ids.is_empty() {
            return;
        }
        let chat = self.clone();
        let _ = tokio::task::spawn_blocking(move || {
            for id in ids {
                match chat.outcome_from_store(&id) {
                    Ok(Some(outcome)) => chat.runner.resolve_waiter(&Arc::new(outcome)),
                    Ok(None) => {}
                    Err(e) => log::warn!("job {id}: cannot read its end: {e}"),
                }
            }
        })
        .await;
    }

    /// The outcome of a job that ended (on any node), from the store; `None` while it runs. A job whose
    /// conversation was deleted ends as cancelled.
    fn outcome_from_store(&self, job_id: &str) -> Result<Option<RunOutcome>, ChatError> {
        let Some(job) = self.store.job(job_id)? else {
            return Ok(Some(RunOutcome {
                job_id: job_id.to_string(),
                chat_id: String::new(),
                kind: JobKind::Execute,
                status: "cancelled",
                results: Vec::new(),
                output_files: Vec::new(),
                error: Some(CANCELLED_TEXT.into()),
                failed_step: None,
                result: Value::Null,
            }));
        };
        if !job.is_finished() {
            return Ok(None);
        }
        let status = match job.status.as_str() {
            "completed" => "completed",
            "cancelled" => "cancelled",
            _ => "failed",
        };
        let result = job.result.clone().unwrap_or(Value::Null);
        let list = |key: &str| result[key].as_array().cloned().unwrap_or_default();
        let failed_step =
            self.store.job_steps(job_id)?.into_iter().find(|s| s.status == "failed").map(|s| FailedStep {
                index: s.step_index.unwrap_or(0).max(0) as usize,
                step_id: s.step_id,
                operation: s.operation,
                error: s.error_message.unwrap_or_default(),
            });
        Ok(Some(RunOutcome {
            job_id: job.job_id,
            chat_id: job.chat_id,
            kind: JobKind::parse(&job.kind),
            status,
            results: list("results"),
            output_files: list("output_files"),
            error: job.error,
            failed_step,
            result,
        }))
    }
}

/// The resolved request a cluster job is stored with: any node plans it again from this (stored paths,
/// so a later upload does not change its input).
fn plan_request(plan: &Plan) -> Value {
    let steps: Vec<Value> = plan
        .steps
        .iter()
        .map(|s| {
            let mut step = json!({"operation": s.operation, "arguments": s.arguments});
            if let Some(input) = &s.input_override {
                step["input_file"] = json!(input.stored);
            }
            step
        })
        .collect();
    json!({"input_file": plan.input.stored, "steps": steps})
}

#[allow(clippy::too_many_arguments)]
fn step_record(
    step: &super::workflow::PlannedStep,
    ctl: &JobCtl,
    status: &str,
    progress: i64,
    input: Option<&FileRef>,
    output: Option<String>,
    error: Option<String>,
    started_at: Option<String>,
    completed_at: Option<String>,
) -> WorkflowStep {
    WorkflowStep {
        step_id: step.step_id.clone(),
        operation: step.operation.clone(),
        arguments: step.arguments.clone(),
        input_file: input.map(|f| f.stored.clone()),
        output_file: output,
        status: status.into(),
        progress,
        error_message: error,
        started_at,
        completed_at,
        job_id: Some(ctl.job_id.clone()),
        step_index: Some(step.index as i64),
    }
}

/// Text of a run (and of its stopped step) ended by a cancel request.
const CANCELLED_TEXT: &str = "Workflow cancelled by user";
/// Text of a run ended by server shutdown.
const SHUTDOWN_TEXT: &str = "Interrupted by server shutdown";
/// Floor of `execution.progress_interval_ms` (each event is a SQLite write and a fan-out).
const MIN_PROGRESS_INTERVAL: Duration = Duration::from_millis(50);
/// A running step reports at least this often, changed or not (websocket.md C.4).
const MAX_PROGRESS_SILENCE: Duration = Duration::from_secs(1);

/// How long shutdown waits for stopped steps to return (each stops within one batch of rows).
const STOPPED_STEP_WAIT: Duration = Duration::from_secs(5);

/// How a step run by [`Chat::run_step_with_control`] ended.
enum StepEnd {
    /// With the row counts its `progress` 100 event carries.
    Completed(StepOutput, Option<RowProgress>),
    /// The client-visible step error text.
    Failed(String),
    /// Stopped by a cancel request.
    Cancelled,
}

/// The row fields of a `progress` event.
#[derive(Debug, Clone, Copy)]
pub struct RowProgress {
    /// Rows handled so far in the current phase (the step's input rows in its final event).
    pub rows_processed: u64,
    /// Rows of the current phase; `null` while unknown.
    pub rows_total: Option<u64>,
    pub phase: Phase,
    /// Estimated seconds left in this step; `null` until there is a pace to go by.
    pub eta_seconds: Option<f64>,
}

impl RowProgress {
    /// The final event of a successful step: every input row handled.
    fn done(rows: u64, phase: Phase) -> RowProgress {
        RowProgress { rows_processed: rows, rows_total: Some(rows), phase, eta_seconds: Some(0.0) }
    }
}

/// Decides when a running step's next intermediate event is due and builds it: percentages never go
/// down, an unchanged state is repeated only to keep the one-per-second promise.
struct ProgressReporter {
    started: Instant,
    interval: Duration,
    last_emit: Option<Instant>,
    last: Option<(u64, u64, Phase)>,
    last_percent: u64,
}

impl ProgressReporter {
    fn new(interval: Duration) -> ProgressReporter {
        ProgressReporter { started: Instant::now(), interval, last_emit: None, last: None, last_percent: 0 }
    }

    fn next_event(&mut self, ctl: &JobCtl, i: usize, control: &StepControl) -> Option<ProgressEvent> {
        let snapshot = control.snapshot()?;
        let percent = ((snapshot.fraction * 100.0).floor() as u64).clamp(1, 99).max(self.last_percent);
        let state = (percent, snapshot.rows_processed, snapshot.phase);
        let silent_for = self.last_emit.map_or(Duration::MAX, |t| t.elapsed());
        // Repeat an unchanged state only when waiting one more tick would break the one-per-second promise.
        if self.last == Some(state) && silent_for + self.interval <= MAX_PROGRESS_SILENCE {
            return None;
        }
        self.last = Some(state);
        self.last_percent = percent;
        self.last_emit = Some(Instant::now());
        let step = &ctl.plan.steps[i];
        let total = ctl.plan.steps.len();
        let fraction = snapshot.fraction;
        let elapsed = self.started.elapsed().as_secs_f64();
        let eta_seconds =
            (fraction >= 0.01).then(|| ((elapsed * (1.0 - fraction) / fraction) * 10.0).round() / 10.0);
        let rows = RowProgress {
            rows_processed: snapshot.rows_processed,
            rows_total: snapshot.rows_total,
            phase: snapshot.phase,
            eta_seconds,
        };
        let message = progress_message(&step.operation, &snapshot);
        Some(progress_event(ctl, step, total, percent, StepStatus::Running, &message, Some(rows)))
    }
}

/// `Normalizing row 450,000 of 1,000,000`: the verb from the phase (and the operation while processing).
fn progress_message(operation: &str, snapshot: &ProgressSnapshot) -> String {
    let verb = match snapshot.phase {
        Phase::Reading => "Reading",
        Phase::Writing => "Writing",
        Phase::Processing => match operation {
            "normalization/apply" => "Normalizing",
            "excel/search" | "csv/search" => "Searching",
            "excel/bind-single-key" | "excel/bind-multi-key" => "Binding",
            "excel/map-columns" => "Mapping",
            "csv/convert-to-excel" => "Converting",
            "excel/extract-columns" | "excel/extract-columns-to-file" => "Extracting",
            _ => "Processing",
        },
    };
    match snapshot.rows_total {
        Some(total) => format!("{verb} row {} of {}", grouped(snapshot.rows_processed), grouped(total)),
        None => format!("{verb} row {}", grouped(snapshot.rows_processed)),
    }
}

/// `1234567` → `1,234,567`.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn progress_event(
    ctl: &JobCtl,
    step: &super::workflow::PlannedStep,
    total: usize,
    progress: u64,
    status: StepStatus,
    message: &str,
    rows: Option<RowProgress>,
) -> ProgressEvent {
    ProgressEvent {
        job_id: ctl.job_id.clone(),
        step_id: step.step_id.clone(),
        step_index: step.index,
        total_steps: total,
        operation: step.operation.clone(),
        progress,
        overall_progress: overall(step.index, progress, total),
        status,
        message: message.into(),
        rows_processed: rows.map(|r| r.rows_processed),
        rows_total: rows.map(|r| r.rows_total),
        phase: rows.map(|r| wire_phase(r.phase)),
        eta_seconds: rows.map(|r| r.eta_seconds),
    }
}

/// The wire name of an engine phase.
fn wire_phase(phase: Phase) -> ProgressPhase {
    match phase {
        Phase::Reading => ProgressPhase::Reading,
        Phase::Processing => ProgressPhase::Processing,
        Phase::Writing => ProgressPhase::Writing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_counts_are_grouped_by_thousands() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(450_000), "450,000");
        assert_eq!(grouped(1_000_000), "1,000,000");
    }

    #[test]
    fn messages_name_the_work_in_words() {
        let snap = |phase, rows_processed, rows_total| ProgressSnapshot {
            phase,
            rows_processed,
            rows_total,
            input_rows: None,
            fraction: 0.5,
        };
        assert_eq!(
            progress_message("normalization/apply", &snap(Phase::Processing, 450_000, Some(1_000_000))),
            "Normalizing row 450,000 of 1,000,000"
        );
        assert_eq!(progress_message("sql/generate", &snap(Phase::Reading, 12, None)), "Reading row 12");
        assert_eq!(
            progress_message("json/generate", &snap(Phase::Writing, 5, Some(9))),
            "Writing row 5 of 9"
        );
    }
}
