//! One admission controller for heavy work (every REST processing endpoint and every workflow step): a
//! bounded number of tasks run at once (`limits.max_concurrent_processing`), their declared memory
//! estimates stay under `limits.max_processing_memory_mb`, and the rest wait in one FIFO queue, so REST
//! calls and chat jobs are served in arrival order and neither can starve the other. REST waiters are
//! bounded (`limits.max_queued_processing`) and give up after `limits.queue_timeout_seconds`; chat steps
//! wait as long as it takes (they are bounded by `chat_workflows.execution.max_concurrent_jobs`).
//!
//! A REST waiter that cannot realistically start in time is refused early instead of waiting out its
//! timeout: the controller learns each operation's service time (seconds per MiB of input, measured from
//! admission to release) and predicts when each waiter will start from the remaining time of the running
//! tasks and the expected time of those ahead of it. A request is refused on arrival when its predicted
//! start is past its timeout, and queued ones are re-judged whenever a task ends (the measurements change).
//! Unknown service times count as zero, so only evidence refuses.
//!
//! Admitted work runs on the heavy lane: a few threads at a lower CPU priority (nice +10, `SCHED_BATCH`),
//! so that light requests, served by the HTTP workers and the ordinary blocking pool at the normal
//! priority, stay fast while it is busy.

use std::collections::VecDeque;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use serde_json::{json, Value};
use tokio::sync::oneshot;

use crate::config::LimitsConfig;

pub const MIB: u64 = 1024 * 1024;

/// The fixed part of every estimate: read and write buffers, the output writer, the thread's stack.
pub const TASK_BASE_BYTES: u64 = 4 * MIB;

/// Niceness of the heavy-lane threads (higher = lower priority; 0 is the default of every thread).
pub const HEAVY_LANE_NICE: i32 = 10;

/// One heavy operation's memory model: its peak working set per 1,000 bytes of input (on top of
/// [`TASK_BASE_BYTES`]), and the measurement it was set from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeavyOperation {
    /// The operation name shared by the REST path (after the prefix) and workflow steps.
    pub name: &'static str,
    /// Bytes of memory per 1,000 bytes of input.
    pub per_mille: u64,
    /// What the factor covers; `None` for an operation the streaming engine's measurement did not cover.
    pub measured: Option<MeasuredPeak>,
}

/// A measured peak: `benches/rss_per_op.py` at 1M rows, peak RSS (`VmHWM`) of a fresh release server
/// running one request, minus the idle server ([`IDLE_SERVER_MB`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeasuredPeak {
    /// Input of the measured request, MB (the 10-column CSV or the workbook the service made of it).
    pub input_mb: u64,
    /// Peak RSS of the server during the request, MB.
    pub peak_mb: u64,
}

/// RSS of the idle release server in the same measurements (before the request; 18–19 MB 10 s after).
pub const IDLE_SERVER_MB: u64 = 18;

const fn measured(input_mb: u64, peak_mb: u64) -> Option<MeasuredPeak> {
    Some(MeasuredPeak { input_mb, peak_mb })
}

const fn heavy(name: &'static str, per_mille: u64, measured: Option<MeasuredPeak>) -> HeavyOperation {
    HeavyOperation { name, per_mille, measured }
}

/// Every heavy operation with its memory factor, set from the streaming engine's peaks (README,
/// "Benchmarks": `benches/rss_per_op.py`, 1M rows, 10 columns; CSV 96 MB, workbook 51 MB; the workbook
/// figures from the streaming work's session, the CSV ones re-measured with the CSV parsed as it
/// uploads). A factor is the measured working set (peak − idle) per byte of input with a margin of about
/// a quarter to a half; where the working set does not grow with the input (streamed operations) the
/// base covers most of it and the factor is a small margin. A unit test pins each factor to its
/// measurement.
///
/// * CSV endpoints: parsed as the upload arrives (up to 64 chunks in flight), rows streamed to the
///   output: 7–8 MB at 96 MB of input.
/// * Workbook reads streamed through calamine's cell reader to a constant-memory writer (search,
///   extract-to-file): 4–5 MB at 51 MB.
/// * `normalization/apply`: 8 MB alone for cell-by-cell rules; a workflow step returning its report
///   (statistics) took the 3-step workflow to 85 MB above idle on the search step's output (666,666 rows,
///   35 MB); whole-column rules, run one column group at a time, 167 MB at 51 MB (three touched columns):
///   the factor covers the largest of these per byte.
/// * `excel/extract-columns` answers with the data itself (held as JSON text): 166 MB at 51 MB.
/// * `excel/map-columns` streams its rows: 5 MB at 51 MB.
/// * Binds hold a lookup index of the bind file, which the input size of the request does not bound
///   well (it depends on how the bytes split between the two files): the whole-table factor stays.
/// * Not covered by the measurement (still whole-table or not re-measured since the streaming work):
///   the former whole-table factor, 24 (a 1M-row workbook normalization held ≈ 22 × its input).
/// * Chat restore unpacks to disk and streams its members: 2.
pub const HEAVY_OPERATIONS: &[HeavyOperation] = &[
    heavy("csv/info", 64, measured(96, 26)),
    heavy("csv/search", 64, measured(96, 25)),
    heavy("csv/search/suggest-operators", 64, None),
    heavy("csv/convert-to-excel", 64, measured(96, 25)),
    heavy("excel/info", 24_000, None),
    heavy("excel/search/suggest-operators", 24_000, None),
    heavy("excel/extract-columns", 4_000, measured(51, 184)),
    heavy("excel/extract-columns-to-file", 64, measured(51, 23)),
    heavy("excel/map-columns", 64, measured(51, 23)),
    heavy("excel/search", 64, measured(51, 22)),
    heavy("excel/bind-single-key", 24_000, None),
    heavy("excel/bind-multi-key", 24_000, None),
    heavy("files/bind", 24_000, None),
    heavy("files/bind/preview", 24_000, None),
    heavy("normalization/apply", 4_000, measured(51, 185)),
    heavy("sql/generate", 24_000, None),
    heavy("sql/generate-to-text", 24_000, None),
    heavy("sql/generate-custom-to-text", 24_000, None),
    heavy("json/generate", 24_000, None),
    heavy("json/generate-with-template", 24_000, None),
    heavy("chat/workflows/restore", 2_000, None),
];

/// The memory model of `operation`, or `None` for operations that are not heavy.
pub fn heavy_operation(operation: &str) -> Option<&'static HeavyOperation> {
    HEAVY_OPERATIONS.iter().find(|op| op.name == operation)
}

/// Bytes of memory per 1,000 bytes of input of `operation`, or `None` for operations that are not heavy.
pub fn memory_factor(operation: &str) -> Option<u64> {
    heavy_operation(operation).map(|op| op.per_mille)
}

/// The declared memory of one task of `operation` on `input_bytes` of input.
pub fn estimate_bytes(operation: &str, input_bytes: u64) -> u64 {
    let per_mille = memory_factor(operation).unwrap_or(1_000);
    let share = u128::from(input_bytes) * u128::from(per_mille) / 1_000;
    TASK_BASE_BYTES.saturating_add(u64::try_from(share).unwrap_or(u64::MAX))
}

/// One heavy task as the controller sees it: what it runs, on how much input, and its memory estimate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskSpec {
    pub operation: Arc<str>,
    pub input_bytes: u64,
    pub estimate_bytes: u64,
}

impl TaskSpec {
    /// A task of `operation` on `input_bytes`, estimated with [`estimate_bytes`].
    pub fn new(operation: &str, input_bytes: u64) -> TaskSpec {
        TaskSpec {
            operation: Arc::from(operation),
            input_bytes,
            estimate_bytes: estimate_bytes(operation, input_bytes),
        }
    }

    /// The same task with another memory estimate (e.g. capped at the budget).
    pub fn with_estimate(mut self, estimate_bytes: u64) -> TaskSpec {
        self.estimate_bytes = estimate_bytes;
        self
    }
}

/// Weight of the newest measurement in the running average of an operation's service time.
const SERVICE_TIME_WEIGHT: f64 = 0.3;

/// A newcomer joins the queue only if it is predicted to start within this share of the queue timeout.
/// The prediction comes from earlier runs and is optimistic when many bodies arrive at once (uploads and
/// concurrent tasks slow every task down); without this margin a request queued on arrival is often refused
/// later, after a long wait, when the running tasks overrun. Queued requests are re-judged against their
/// whole timeout.
const ARRIVAL_HEADROOM: f64 = 0.5;

/// Inputs smaller than this are counted as this size in the service-time model, so that the fixed cost
/// of a tiny task does not make a large one look endless.
const MIN_MODELLED_INPUT: u64 = MIB;

fn modelled_mib(input_bytes: u64) -> f64 {
    input_bytes.max(MIN_MODELLED_INPUT) as f64 / MIB as f64
}

/// Measured service times: seconds per MiB of input, per operation (a running average).
#[derive(Default)]
struct ServiceTimes {
    secs_per_mib: std::collections::HashMap<Arc<str>, f64>,
}

impl ServiceTimes {
    /// Expected seconds of `task`, `None` before its operation was ever measured.
    fn expected(&self, task: &TaskSpec) -> Option<f64> {
        self.secs_per_mib.get(&task.operation).map(|rate| rate * modelled_mib(task.input_bytes))
    }

    fn observe(&mut self, task: &TaskSpec, took: Duration) {
        let rate = took.as_secs_f64() / modelled_mib(task.input_bytes);
        self.secs_per_mib
            .entry(task.operation.clone())
            .and_modify(|avg| *avg += SERVICE_TIME_WEIGHT * (rate - *avg))
            .or_insert(rate);
    }
}

/// Total memory of this machine (`MemTotal` of /proc/meminfo), if it can be read.
pub fn machine_memory_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The bounds in force, with the config's automatic values (0) resolved.
#[derive(Debug, Clone)]
pub struct Limits {
    pub slots: usize,
    pub max_queued: usize,
    pub queue_timeout: Duration,
    pub memory_budget_bytes: u64,
    pub retry_after_seconds: u64,
}

impl Limits {
    /// Defaults: one slot per core; a quarter of the machine's memory (2 GiB if it cannot be read).
    pub fn from_config(config: &LimitsConfig) -> Limits {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        let memory_budget_bytes = match config.max_processing_memory_mb {
            0 => machine_memory_bytes().map(|b| b / 4).unwrap_or(2048 * MIB),
            mb => mb.saturating_mul(MIB),
        };
        Limits {
            slots: if config.max_concurrent_processing == 0 {
                cores
            } else {
                config.max_concurrent_processing
            },
            max_queued: config.max_queued_processing,
            queue_timeout: Duration::from_secs(config.queue_timeout_seconds),
            memory_budget_bytes,
            retry_after_seconds: config.retry_after_seconds,
        }
    }
}

/// Who asks: a REST request (bounded queue, timeout) or a workflow step (waits its turn).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Rest,
    Chat,
}

/// Why a task was not admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// `limits.max_queued_processing` REST requests are already waiting.
    QueueFull,
    /// No slot within `limits.queue_timeout_seconds`.
    QueueTimeout,
    /// The measured service times predict no slot within `limits.queue_timeout_seconds`: refused at
    /// once (or as soon as a finished task shows it) instead of after the whole wait.
    PredictedTimeout { predicted_wait_seconds: u64 },
    /// The estimate alone exceeds `limits.max_processing_memory_mb`.
    OverBudget { estimate_bytes: u64, budget_bytes: u64 },
}

/// Refused clients are told to come back after their base wait plus up to this share of it, at random,
/// so that the clients refused together (a burst, or the answers a finishing task releases) do not all
/// come back together and arrive as one more burst.
const RETRY_SPREAD: f64 = 0.5;

/// The longest `Retry-After` given, however long the predicted wait.
const MAX_RETRY_AFTER_SECONDS: u64 = 120;

impl Limits {
    /// Seconds a client refused with `refusal` should wait before it tries again, with `spread` in 0..1
    /// (a random draw): at least `limits.retry_after_seconds`; for a predicted timeout, until the
    /// prediction would let it into the queue (its predicted wait minus the part of the timeout a newcomer
    /// may be predicted to wait); then up to half more, by `spread`.
    pub fn retry_after_seconds(&self, refusal: &Refusal, spread: f64) -> u64 {
        let least = self.retry_after_seconds as f64;
        let base = match refusal {
            Refusal::PredictedTimeout { predicted_wait_seconds } => {
                let acceptable = self.queue_timeout.as_secs_f64() * ARRIVAL_HEADROOM;
                (*predicted_wait_seconds as f64 - acceptable).max(least)
            }
            _ => least,
        };
        let spread = spread.clamp(0.0, 1.0) * RETRY_SPREAD;
        ((base * (1.0 + spread)).round() as u64).clamp(self.retry_after_seconds, MAX_RETRY_AFTER_SECONDS)
    }
}

impl Refusal {
    /// The `reason` label of the rejection metric.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::QueueFull => "queue_full",
            Refusal::QueueTimeout => "queue_timeout",
            Refusal::PredictedTimeout { .. } => "predicted_timeout",
            Refusal::OverBudget { .. } => "over_budget",
        }
    }
}

type Grant = Result<Permit, Refusal>;

struct Waiter {
    id: u64,
    origin: Origin,
    task: TaskSpec,
    /// REST waiters give up at this instant; workflow steps wait without one.
    deadline: Option<Instant>,
    enqueued: Instant,
    grant: oneshot::Sender<Grant>,
}

/// A running task, for the prediction of when the next slot frees.
struct Running {
    started: Instant,
    expected_secs: Option<f64>,
}

#[derive(Default)]
struct State {
    running: std::collections::HashMap<u64, Running>,
    reserved_bytes: u64,
    queue: VecDeque<Waiter>,
    queued_rest: usize,
    next_id: u64,
    service: ServiceTimes,
}

#[derive(Default)]
struct Counters {
    admitted_rest: AtomicU64,
    admitted_chat: AtomicU64,
    queue_full: AtomicU64,
    queue_timeout: AtomicU64,
    predicted_timeout: AtomicU64,
    over_budget: AtomicU64,
}

pub struct Admission {
    limits: Limits,
    state: Mutex<State>,
    counters: Counters,
    /// Seconds from arrival to admission of every admitted task (0 for those admitted at once).
    queue_wait: Histogram,
    test_hold: Mutex<Duration>,
    lane: HeavyLane,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The index and time of the slot that frees first.
fn earliest(free_at: &[f64]) -> (usize, f64) {
    free_at
        .iter()
        .copied()
        .enumerate()
        .fold((0, f64::INFINITY), |best, (i, t)| if t < best.1 { (i, t) } else { best })
}

impl Admission {
    pub fn new(limits: Limits) -> Arc<Admission> {
        let lane = HeavyLane::start(limits.slots.max(1));
        Arc::new(Admission {
            limits,
            state: Mutex::new(State::default()),
            counters: Counters::default(),
            // 1 ms … ~65 s.
            queue_wait: Histogram::new(exponential_buckets(0.001, 2.0, 17)),
            test_hold: Mutex::new(Duration::ZERO),
            lane,
        })
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The queue-wait histogram (registered in `/metrics`; clones share the data).
    pub fn queue_wait_histogram(&self) -> Histogram {
        self.queue_wait.clone()
    }

    /// Test hook: every admitted task keeps its slot this long before it starts (like the step-delay
    /// hook of the job runner), so tests can hold the heavy lane busy deterministically. Not configurable.
    #[doc(hidden)]
    pub fn set_test_hold(&self, hold: Duration) {
        *lock(&self.test_hold) = hold;
    }

    /// Waits out the test hold (no-op in production).
    pub async fn apply_test_hold(&self) {
        let hold = *lock(&self.test_hold);
        if !hold.is_zero() {
            tokio::time::sleep(hold).await;
        }
    }

    /// Admits `task`: at once when a slot and the memory are free and nobody waits; else in FIFO order.
    /// A REST task is refused when the queue is full, when the measured service times say it would not
    /// start before its timeout, or when its wait reaches the timeout.
    pub async fn admit(self: &Arc<Self>, origin: Origin, task: TaskSpec) -> Result<Permit, Refusal> {
        if task.estimate_bytes > self.limits.memory_budget_bytes {
            self.counters.over_budget.fetch_add(1, Ordering::Relaxed);
            return Err(Refusal::OverBudget {
                estimate_bytes: task.estimate_bytes,
                budget_bytes: self.limits.memory_budget_bytes,
            });
        }
        let (rx, id) = {
            let mut st = lock(&self.state);
            if st.queue.is_empty() && self.fits(&st, task.estimate_bytes) {
                let permit = self.start(&mut st, task);
                drop(st);
                self.count_admitted(origin, Duration::ZERO);
                return Ok(permit);
            }
            if origin == Origin::Rest {
                if st.queued_rest >= self.limits.max_queued {
                    drop(st);
                    self.counters.queue_full.fetch_add(1, Ordering::Relaxed);
                    return Err(Refusal::QueueFull);
                }
                let now = Instant::now();
                let wait = self.predicted_start_of_newcomer(&st, now);
                if wait > self.limits.queue_timeout.as_secs_f64() * ARRIVAL_HEADROOM {
                    drop(st);
                    self.counters.predicted_timeout.fetch_add(1, Ordering::Relaxed);
                    return Err(Refusal::PredictedTimeout { predicted_wait_seconds: wait.ceil() as u64 });
                }
            }
            let (tx, rx) = oneshot::channel();
            let id = st.next_id;
            st.next_id += 1;
            let enqueued = Instant::now();
            let deadline = (origin == Origin::Rest).then(|| enqueued + self.limits.queue_timeout);
            st.queue.push_back(Waiter { id, origin, task, deadline, enqueued, grant: tx });
            if origin == Origin::Rest {
                st.queued_rest += 1;
            }
            (rx, id)
        };
        // Leaves the queue if this future is dropped or times out before its turn.
        let mut ticket = Ticket { admission: self, id, rx };
        let answer = match origin {
            Origin::Chat => (&mut ticket.rx).await.map_err(|_| Refusal::QueueTimeout)?,
            Origin::Rest => match tokio::time::timeout(self.limits.queue_timeout, &mut ticket.rx).await {
                Ok(answered) => answered.map_err(|_| Refusal::QueueTimeout)?,
                // Answered in the same instant as the timeout: take the answer rather than waste a slot.
                Err(_) => ticket.rx.try_recv().map_err(|_| {
                    self.counters.queue_timeout.fetch_add(1, Ordering::Relaxed);
                    Refusal::QueueTimeout
                })?,
            },
        };
        drop(ticket);
        answer
    }

    fn fits(&self, st: &State, estimate: u64) -> bool {
        st.running.len() < self.limits.slots
            && st.reserved_bytes.saturating_add(estimate) <= self.limits.memory_budget_bytes
    }

    /// Takes a slot and the memory for `task` (the caller checked that it fits).
    fn start(self: &Arc<Self>, st: &mut State, task: TaskSpec) -> Permit {
        let id = st.next_id;
        st.next_id += 1;
        let started = Instant::now();
        let expected_secs = st.service.expected(&task);
        st.running.insert(id, Running { started, expected_secs });
        st.reserved_bytes += task.estimate_bytes;
        Permit(Arc::new(Slot { admission: self.clone(), id, task, started }))
    }

    /// Seconds from `now` until each slot frees, as far as the measurements tell (a running task whose
    /// operation was never measured, or that already overran its expected time, counts as ending now).
    fn slot_free_times(&self, st: &State, now: Instant) -> Vec<f64> {
        let mut free_at: Vec<f64> = st
            .running
            .values()
            .map(|r| {
                let elapsed = now.saturating_duration_since(r.started).as_secs_f64();
                r.expected_secs.map_or(0.0, |e| (e - elapsed).max(0.0))
            })
            .collect();
        free_at.resize(self.limits.slots.max(free_at.len()), 0.0);
        free_at
    }

    /// Predicted seconds until a task joining the queue now would start: every waiter ahead takes the
    /// slot that frees first for its expected time. Memory is not modelled (it only makes waits longer).
    fn predicted_start_of_newcomer(&self, st: &State, now: Instant) -> f64 {
        let mut free_at = self.slot_free_times(st, now);
        for waiter in &st.queue {
            let (slot, start) = earliest(&free_at);
            free_at[slot] = start + st.service.expected(&waiter.task).unwrap_or(0.0);
        }
        earliest(&free_at).1
    }

    /// Refuses the REST waiters whose predicted start is past their deadline, so they hear it now
    /// rather than at the timeout. Those behind a refused one move up in the prediction.
    fn refuse_hopeless(&self, st: &mut State, now: Instant) {
        if st.queued_rest == 0 {
            return;
        }
        let mut free_at = self.slot_free_times(st, now);
        let mut kept = VecDeque::with_capacity(st.queue.len());
        while let Some(waiter) = st.queue.pop_front() {
            let (slot, start) = earliest(&free_at);
            let starts_at = now + Duration::from_secs_f64(start.min(1e9));
            if waiter.deadline.is_some_and(|deadline| starts_at > deadline) {
                st.queued_rest -= 1;
                self.counters.predicted_timeout.fetch_add(1, Ordering::Relaxed);
                let wait = now.saturating_duration_since(waiter.enqueued).as_secs_f64() + start;
                let _ = waiter
                    .grant
                    .send(Err(Refusal::PredictedTimeout { predicted_wait_seconds: wait.ceil() as u64 }));
                continue;
            }
            free_at[slot] = start + st.service.expected(&waiter.task).unwrap_or(0.0);
            kept.push_back(waiter);
        }
        st.queue = kept;
    }

    fn count_admitted(&self, origin: Origin, waited: Duration) {
        let counter = match origin {
            Origin::Rest => &self.counters.admitted_rest,
            Origin::Chat => &self.counters.admitted_chat,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.queue_wait.observe(waited.as_secs_f64());
    }

    /// Hands free slots to the head of the queue while it fits (strict FIFO: a large head is not
    /// overtaken, so it cannot starve). Permits whose waiter is gone are returned, to be dropped once
    /// the lock is released (dropping one frees its slot, which locks again).
    fn grant_waiting(self: &Arc<Self>, st: &mut State) -> Vec<Grant> {
        let mut undelivered = Vec::new();
        while let Some(head) = st.queue.front() {
            if !self.fits(st, head.task.estimate_bytes) {
                break;
            }
            let Some(waiter) = st.queue.pop_front() else { break };
            if waiter.origin == Origin::Rest {
                st.queued_rest -= 1;
            }
            self.count_admitted(waiter.origin, waiter.enqueued.elapsed());
            let permit = self.start(st, waiter.task.clone());
            if let Err(unsent) = waiter.grant.send(Ok(permit)) {
                undelivered.push(unsent);
            }
        }
        undelivered
    }

    /// A task ended: its time teaches the model, its slot goes to the queue, and the queue is re-judged.
    fn release(self: &Arc<Self>, slot: &Slot) {
        let undelivered = {
            let mut st = lock(&self.state);
            st.running.remove(&slot.id);
            st.reserved_bytes = st.reserved_bytes.saturating_sub(slot.task.estimate_bytes);
            st.service.observe(&slot.task, slot.started.elapsed());
            let undelivered = self.grant_waiting(&mut st);
            self.refuse_hopeless(&mut st, Instant::now());
            undelivered
        };
        drop(undelivered);
    }

    fn leave_queue(self: &Arc<Self>, id: u64) {
        let mut st = lock(&self.state);
        if let Some(pos) = st.queue.iter().position(|w| w.id == id) {
            if let Some(w) = st.queue.remove(pos) {
                if w.origin == Origin::Rest {
                    st.queued_rest -= 1;
                }
            }
            // A large head leaving may let smaller ones behind it start.
            let undelivered = self.grant_waiting(&mut st);
            drop(st);
            drop(undelivered);
        }
    }

    /// Running and queued tasks, reserved memory and counters (health `data.processing`, `/metrics`).
    pub fn snapshot(&self) -> ProcessingSnapshot {
        let st = lock(&self.state);
        let c = &self.counters;
        ProcessingSnapshot {
            running: st.running.len() as u64,
            queued: st.queue.len() as u64,
            queued_rest: st.queued_rest as u64,
            reserved_bytes: st.reserved_bytes,
            slots: self.limits.slots as u64,
            max_queued: self.limits.max_queued as u64,
            memory_budget_bytes: self.limits.memory_budget_bytes,
            admitted_rest: c.admitted_rest.load(Ordering::Relaxed),
            admitted_chat: c.admitted_chat.load(Ordering::Relaxed),
            queue_full: c.queue_full.load(Ordering::Relaxed),
            queue_timeout: c.queue_timeout.load(Ordering::Relaxed),
            predicted_timeout: c.predicted_timeout.load(Ordering::Relaxed),
            over_budget: c.over_budget.load(Ordering::Relaxed),
        }
    }
}

/// A point-in-time view of the controller.
#[derive(Debug, Clone, Copy)]
pub struct ProcessingSnapshot {
    pub running: u64,
    pub queued: u64,
    pub queued_rest: u64,
    pub reserved_bytes: u64,
    pub slots: u64,
    pub max_queued: u64,
    pub memory_budget_bytes: u64,
    pub admitted_rest: u64,
    pub admitted_chat: u64,
    pub queue_full: u64,
    pub queue_timeout: u64,
    pub predicted_timeout: u64,
    pub over_budget: u64,
}

impl ProcessingSnapshot {
    /// The health check's `data.processing`.
    pub fn to_json(&self) -> Value {
        json!({
            "running": self.running,
            "queued": self.queued,
            "queued_rest": self.queued_rest,
            "queued_chat": self.queued - self.queued_rest,
            "max_concurrent": self.slots,
            "max_queued": self.max_queued,
            "memory_reserved_mb": self.reserved_bytes / MIB,
            "memory_budget_mb": self.memory_budget_bytes / MIB,
            "admitted_total": { "rest": self.admitted_rest, "chat": self.admitted_chat },
            "rejections_total": {
                "queue_full": self.queue_full,
                "queue_timeout": self.queue_timeout,
                "predicted_timeout": self.predicted_timeout,
                "over_budget": self.over_budget,
            },
        })
    }
}

/// A place in the queue; leaves it when dropped before being served.
struct Ticket<'a> {
    admission: &'a Arc<Admission>,
    id: u64,
    rx: oneshot::Receiver<Grant>,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        self.admission.leave_queue(self.id);
    }
}

/// An admitted task's slot and memory reservation, released when the last clone is dropped (a step
/// abandoned at its timeout keeps it until its thread really stops).
#[derive(Clone)]
pub struct Permit(Arc<Slot>);

struct Slot {
    admission: Arc<Admission>,
    id: u64,
    task: TaskSpec,
    started: Instant,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.admission.release(self);
    }
}

tokio::task_local! {
    /// The permit of the heavy task this async task is running, if any (see [`run_blocking`]).
    static ADMITTED: Permit;
}

impl Permit {
    /// Runs `work` (a request handler, a workflow step) as this admitted task: its blocking work goes to
    /// the heavy lane and the slot stays taken until that work ends.
    pub async fn scope<F: Future>(self, work: F) -> F::Output {
        ADMITTED.scope(self, work).await
    }

    /// Runs `work` on a heavy-lane thread, holding this permit until it returns.
    pub async fn run<T, F>(&self, work: F) -> Result<T, LaneError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.submit(work)?.await
    }

    /// Starts `work` on a heavy-lane thread now; its outcome arrives through the returned future.
    fn submit<T, F>(&self, work: F) -> Result<BlockingTask<T>, LaneError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let held = self.clone();
        self.0.admission.lane.submit(Box::new(move || {
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(work));
            // Free the slot before the caller hears the outcome, so its answer never reports it busy.
            drop(held);
            let _ = tx.send(outcome.map_err(|_| LaneError("heavy task panicked")));
        }))?;
        Ok(Box::pin(async move { rx.await.map_err(|_| LaneError("heavy lane stopped"))? }))
    }
}

/// The outcome of blocking work started by [`start_blocking`].
pub type BlockingTask<T> = std::pin::Pin<Box<dyn Future<Output = Result<T, LaneError>> + Send>>;

/// [`run_blocking`], started at once rather than when awaited: the caller goes on with its own work (e.g.
/// receiving the upload that `work` parses) and awaits the outcome later. Dropping the future does not
/// stop `work`; an admitted task's slot stays taken until `work` returns.
pub fn start_blocking<T, F>(work: F) -> BlockingTask<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    match ADMITTED.try_with(Permit::clone) {
        Ok(permit) => match permit.submit(work) {
            Ok(task) => task,
            Err(e) => Box::pin(async move { Err(e) }),
        },
        Err(_) => {
            let handle = tokio::task::spawn_blocking(work);
            Box::pin(async move { handle.await.map_err(|_| LaneError("blocking task failed")) })
        }
    }
}

/// Blocking work of the current task: on the heavy lane inside an admitted task ([`Permit::scope`]),
/// on the ordinary blocking pool otherwise (light requests).
pub async fn run_blocking<T, F>(work: F) -> Result<T, LaneError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    match ADMITTED.try_with(Permit::clone) {
        Ok(permit) => permit.run(work).await,
        Err(_) => tokio::task::spawn_blocking(work).await.map_err(|_| LaneError("blocking task failed")),
    }
}

/// Blocking work that did not complete (it panicked, or its thread went away).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("{0}")]
pub struct LaneError(&'static str);

type LaneJob = Box<dyn FnOnce() + Send>;

/// Threads at lower priority that run admitted work. As many as there are slots: a task runs one
/// blocking closure at a time, so no admitted closure ever waits for a thread.
struct HeavyLane {
    jobs: Mutex<mpsc::Sender<LaneJob>>,
}

impl HeavyLane {
    /// The threads end when the controller is dropped (the channel closes).
    fn start(threads: usize) -> HeavyLane {
        let (tx, rx) = mpsc::channel::<LaneJob>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new().name(format!("heavy-lane-{i}")).spawn(move || {
                lower_thread_priority();
                loop {
                    let job = match lock(&rx).recv() {
                        Ok(job) => job,
                        Err(_) => return,
                    };
                    job();
                }
            });
            if let Err(e) = spawned {
                log::error!("cannot start heavy-lane thread: {e}");
            }
        }
        HeavyLane { jobs: Mutex::new(tx) }
    }

    fn submit(&self, job: LaneJob) -> Result<(), LaneError> {
        lock(&self.jobs).send(job).map_err(|_| LaneError("heavy lane stopped"))
    }
}

/// Lowers the calling thread's CPU priority by [`HEAVY_LANE_NICE`] (on Linux, niceness is per thread) and
/// marks it a batch thread (`SCHED_BATCH`): the scheduler then never lets it preempt a thread that just
/// woke up, so a light request's thread runs at once instead of after the heavy thread's time slice.
fn lower_thread_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: sched_setscheduler reads the param struct we pass; gettid and setpriority take plain
        // integers. None of them touches other memory of ours.
        let (batch, nice) = unsafe {
            let param = libc::sched_param { sched_priority: 0 };
            let batch = libc::sched_setscheduler(0, libc::SCHED_BATCH, &param);
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            (batch, libc::setpriority(libc::PRIO_PROCESS, tid, HEAVY_LANE_NICE))
        };
        if batch != 0 || nice != 0 {
            log::warn!("cannot lower the heavy lane's priority: {}", std::io::Error::last_os_error());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(slots: usize, queued: usize, budget_mb: u64, timeout_ms: u64) -> Limits {
        Limits {
            slots,
            max_queued: queued,
            queue_timeout: Duration::from_millis(timeout_ms),
            memory_budget_bytes: budget_mb * MIB,
            retry_after_seconds: 1,
        }
    }

    #[test]
    fn retry_after_follows_the_prediction_and_is_spread() {
        let mut l = limits(1, 2, 100, 30_000);
        l.retry_after_seconds = 5;
        let predicted = |secs| Refusal::PredictedTimeout { predicted_wait_seconds: secs };
        // The configured value is the least, and the spread adds up to half of the base.
        assert_eq!(l.retry_after_seconds(&Refusal::QueueFull, 0.0), 5);
        assert_eq!(l.retry_after_seconds(&Refusal::QueueFull, 0.999), 7);
        assert_eq!(l.retry_after_seconds(&Refusal::QueueTimeout, 0.5), 6);
        // Predicted 40 s with a 30 s timeout: in 25 s it could be let into the queue (15 s ahead of it).
        assert_eq!(l.retry_after_seconds(&predicted(40), 0.0), 25);
        assert_eq!(l.retry_after_seconds(&predicted(40), 0.999), 37);
        // A prediction just over the margin: the configured least.
        assert_eq!(l.retry_after_seconds(&predicted(16), 0.0), 5);
        // Bounded, however long the prediction.
        assert_eq!(l.retry_after_seconds(&predicted(100_000), 0.9), MAX_RETRY_AFTER_SECONDS);
        // Draws spread the answers over the whole range.
        let answers: std::collections::BTreeSet<u64> =
            (0..200).map(|_| l.retry_after_seconds(&predicted(40), rand::random::<f64>())).collect();
        assert!(answers.len() >= 8 && answers.iter().all(|s| (25..=38).contains(s)), "{answers:?}");
    }

    /// A task whose memory estimate is its input size.
    fn task(bytes: u64) -> TaskSpec {
        TaskSpec::new("csv/info", bytes).with_estimate(bytes)
    }

    #[tokio::test]
    async fn slots_queue_and_fifo_order() {
        let a = Admission::new(limits(1, 2, 100, 5_000));
        let first = a.admit(Origin::Rest, task(MIB)).await.unwrap();
        let (a2, a3) = (a.clone(), a.clone());
        let order = Arc::new(Mutex::new(Vec::new()));
        let (o2, o3) = (order.clone(), order.clone());
        let second = tokio::spawn(async move {
            let p = a2.admit(Origin::Rest, task(MIB)).await.unwrap();
            lock(&o2).push(2);
            drop(p);
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let third = tokio::spawn(async move {
            let p = a3.admit(Origin::Chat, task(MIB)).await.unwrap();
            lock(&o3).push(3);
            drop(p);
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(a.snapshot().queued, 2);
        // Queue bound counts REST waiters only: one REST is queued, a second REST still fits.
        let a4 = a.clone();
        let fourth = tokio::spawn(async move { a4.admit(Origin::Rest, task(MIB)).await.map(drop) });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(a.admit(Origin::Rest, task(MIB)).await.err(), Some(Refusal::QueueFull));
        drop(first);
        second.await.unwrap();
        third.await.unwrap();
        fourth.await.unwrap().unwrap();
        assert_eq!(*lock(&order), vec![2, 3], "served in arrival order");
        let s = a.snapshot();
        assert_eq!((s.running, s.queued, s.reserved_bytes), (0, 0, 0));
        assert_eq!((s.admitted_rest, s.admitted_chat, s.queue_full), (3, 1, 1));
    }

    #[tokio::test]
    async fn rest_waiters_time_out_and_leave_the_queue() {
        let a = Admission::new(limits(1, 1, 100, 50));
        let held = a.admit(Origin::Rest, task(MIB)).await.unwrap();
        assert_eq!(a.admit(Origin::Rest, task(MIB)).await.err(), Some(Refusal::QueueTimeout));
        let s = a.snapshot();
        assert_eq!((s.queued, s.queued_rest, s.queue_timeout), (0, 0, 1));
        drop(held);
        assert!(a.admit(Origin::Rest, task(MIB)).await.is_ok(), "the slot is free again");
    }

    #[tokio::test]
    async fn memory_budget_bounds_the_sum_and_refuses_what_never_fits() {
        let a = Admission::new(limits(4, 4, 10, 5_000));
        let big = a.admit(Origin::Rest, task(8 * MIB)).await.unwrap();
        assert_eq!(
            a.admit(Origin::Rest, task(11 * MIB)).await.err(),
            Some(Refusal::OverBudget { estimate_bytes: 11 * MIB, budget_bytes: 10 * MIB })
        );
        // A free slot is not enough: 8 + 4 > 10, so this one waits for the memory.
        let a2 = a.clone();
        let waiting = tokio::spawn(async move { a2.admit(Origin::Chat, task(4 * MIB)).await.map(drop) });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(a.snapshot().queued, 1);
        assert_eq!(a.snapshot().reserved_bytes, 8 * MIB);
        drop(big);
        waiting.await.unwrap().unwrap();
        assert_eq!(a.snapshot().over_budget, 1);
    }

    #[tokio::test]
    async fn a_request_predicted_to_miss_its_timeout_is_refused_on_arrival() {
        let a = Admission::new(limits(1, 8, 100, 2_500));
        // Measured before: this operation takes 1 s per MiB.
        lock(&a.state).service.observe(&task(MIB), Duration::from_secs(1));
        let held = a.admit(Origin::Rest, task(MIB)).await.unwrap();
        let a2 = a.clone();
        let first = tokio::spawn(async move { a2.admit(Origin::Rest, task(MIB)).await.map(drop) });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(a.snapshot().queued, 1, "starts within ~1 s, under half the timeout: it waits");
        // Behind the running task and the first waiter: ~2 s, within the 2.5 s timeout but over half of it
        // (the margin for an optimistic prediction).
        let started = Instant::now();
        let refused = a.admit(Origin::Rest, task(MIB)).await.err();
        assert!(started.elapsed() < Duration::from_millis(200), "refused at once");
        assert_eq!(refused, Some(Refusal::PredictedTimeout { predicted_wait_seconds: 2 }));
        assert_eq!(refused.unwrap().reason(), "predicted_timeout");
        // Workflow steps are never refused by a prediction: they wait their turn.
        let a3 = a.clone();
        let step = tokio::spawn(async move { a3.admit(Origin::Chat, task(MIB)).await.map(drop) });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(a.snapshot().queued, 2);
        drop(held);
        first.await.unwrap().unwrap();
        step.await.unwrap().unwrap();
        let s = a.snapshot();
        assert_eq!((s.predicted_timeout, s.queue_timeout, s.queue_full, s.running), (1, 0, 0, 0));
    }

    #[tokio::test]
    async fn queued_requests_are_re_judged_when_a_task_ends() {
        let a = Admission::new(limits(1, 8, 100, 2_500));
        // Nothing measured yet: everyone may wait.
        let held = a.admit(Origin::Rest, task(MIB)).await.unwrap();
        let mut waiters = Vec::new();
        for _ in 0..3 {
            let a2 = a.clone();
            waiters.push(tokio::spawn(async move {
                let started = Instant::now();
                let outcome = a2.admit(Origin::Rest, task(MIB)).await.map(drop);
                (outcome, started.elapsed())
            }));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(a.snapshot().queued, 3);
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        // The held task took ~1 s: the first waiter starts now, the second in ~1 s (in time), the
        // third in ~2 s, past its 2.5 s deadline: it hears so now.
        drop(held);
        let mut outcomes = Vec::new();
        for w in waiters {
            outcomes.push(w.await.unwrap());
        }
        assert!(outcomes[0].0.is_ok() && outcomes[1].0.is_ok(), "{outcomes:?}");
        assert!(
            matches!(outcomes[2].0, Err(Refusal::PredictedTimeout { .. })),
            "the third is refused early: {outcomes:?}"
        );
        assert!(outcomes[2].1 < Duration::from_millis(1_500), "refused at the release, not the timeout");
        let s = a.snapshot();
        assert_eq!((s.predicted_timeout, s.queue_timeout, s.queued, s.queued_rest), (1, 0, 0, 0));
    }

    #[tokio::test]
    async fn a_dropped_waiter_gives_its_turn_away() {
        let a = Admission::new(limits(1, 4, 100, 5_000));
        let held = a.admit(Origin::Rest, task(MIB)).await.unwrap();
        let a2 = a.clone();
        let gone = tokio::spawn(async move { a2.admit(Origin::Rest, task(MIB)).await.map(drop) });
        tokio::time::sleep(Duration::from_millis(20)).await;
        gone.abort();
        let _ = gone.await;
        assert_eq!(a.snapshot().queued, 0);
        drop(held);
        assert_eq!(a.snapshot().running, 0);
        assert!(a.admit(Origin::Rest, task(MIB)).await.is_ok());
    }

    #[tokio::test]
    async fn blocking_work_of_an_admitted_task_holds_the_slot_on_the_heavy_lane() {
        let a = Admission::new(limits(1, 1, 100, 5_000));
        let permit = a.admit(Origin::Chat, task(MIB)).await.unwrap();
        let a2 = a.clone();
        let name = permit
            .scope(async move {
                run_blocking(move || {
                    assert_eq!(a2.snapshot().running, 1);
                    std::thread::current().name().map(str::to_string)
                })
                .await
            })
            .await
            .unwrap();
        assert_eq!(name.as_deref(), Some("heavy-lane-0"));
        assert_eq!(a.snapshot().running, 0, "released with the last clone");
        // Outside an admitted task: the ordinary blocking pool.
        let name = run_blocking(|| std::thread::current().name().map(str::to_string)).await.unwrap();
        assert_ne!(name.as_deref(), Some("heavy-lane-0"));
        let panicked = a.admit(Origin::Chat, task(MIB)).await.unwrap().run(|| panic!("boom")).await;
        assert!(panicked.is_err());
        assert_eq!(a.snapshot().running, 0);
    }

    #[test]
    fn estimates_scale_with_input_and_operation() {
        assert_eq!(memory_factor("health"), None);
        // Every workflow step is admitted with its operation's factor, none with the fallback of 1.
        for operation in crate::chat::workflow::OPERATIONS {
            assert!(memory_factor(operation).is_some(), "workflow step {operation} has no memory factor");
        }
        assert_eq!(estimate_bytes("csv/info", 1000 * MIB), TASK_BASE_BYTES + 64 * MIB);
        assert_eq!(estimate_bytes("normalization/apply", 10 * MIB), TASK_BASE_BYTES + 40 * MIB);
        assert_eq!(estimate_bytes("sql/generate", 10 * MIB), TASK_BASE_BYTES + 240 * MIB);
        assert_eq!(estimate_bytes("sql/generate", u64::MAX), u64::MAX, "saturates");
        assert!(machine_memory_bytes().is_some_and(|b| b > 0));
    }

    /// Each factor against the peak it was set from (see [`HEAVY_OPERATIONS`]): the estimate for the
    /// measured input covers the measured working set (peak − idle server), and is not more than half
    /// as large again plus the base, so that the budget admits what really fits.
    #[test]
    fn factors_cover_the_measured_peaks_without_wasting_the_budget() {
        let mut measured = 0;
        for op in HEAVY_OPERATIONS {
            let Some(peak) = op.measured else {
                // Not measured since the streaming work: the whole-table factor, never less.
                if op.name != "chat/workflows/restore" && !op.name.starts_with("csv/") {
                    assert_eq!(
                        op.per_mille, 24_000,
                        "{} has no measurement: keep the whole-table factor",
                        op.name
                    );
                }
                continue;
            };
            measured += 1;
            let working_set = (peak.peak_mb - IDLE_SERVER_MB) * MIB;
            let estimate = estimate_bytes(op.name, peak.input_mb * MIB);
            assert!(estimate >= working_set, "{}: estimate {estimate} < measured {working_set}", op.name);
            assert!(
                estimate <= working_set + working_set / 2 + TASK_BASE_BYTES,
                "{}: estimate {estimate} far above the measured {working_set}",
                op.name
            );
        }
        assert_eq!(measured, 8, "the operations of the rss_per_op measurement");
        // Operations of one family share the factor of the measured one.
        assert_eq!(memory_factor("csv/search/suggest-operators"), memory_factor("csv/info"));
    }
}
