//! One admission controller for heavy work (every REST processing endpoint and every workflow step): a
//! bounded number of tasks run at once (`limits.max_concurrent_processing`), their declared memory
//! estimates stay under `limits.max_processing_memory_mb`, and the rest wait in one FIFO queue, so REST
//! calls and chat jobs are served in arrival order and neither can starve the other. REST waiters are
//! bounded (`limits.max_queued_processing`) and give up after `limits.queue_timeout_seconds`; chat steps
//! wait as long as it takes (they are bounded by `chat_workflows.execution.max_concurrent_jobs`).
//!
//! Admitted work runs on the heavy lane: a few threads at a lower CPU priority (nice +10), so that
//! light requests, served by the HTTP workers and the ordinary blocking pool, stay fast while it is busy.

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

/// Peak memory of an operation per byte of input, or `None` for operations that are not heavy.
/// The keys are the operation names shared by the REST paths (after the prefix) and workflow steps.
///
/// * 2: CSV streamed from the file to the output (info, search, conversion): memory does not grow with
///   the rows (a 1M-row, 73.6 MiB csv→xlsx did not raise the server's peak above 70 MiB); the factor is
///   a safe margin for the writer's buffers.
/// * 24: operations that hold the whole table (every workbook input, normalization, bind, SQL, JSON).
///   Measured (release build, soak tool): two 1M-row workbook normalizations (23.6 MiB each) at once took
///   the server to 1.1 GiB, ≈ 22 × the input each; a 1M-row `excel/search` ≈ 9 ×.
/// * 2: a dump restore (the archive is unpacked to disk, its members are streamed).
pub fn memory_factor(operation: &str) -> Option<u64> {
    Some(match operation {
        "csv/info" | "csv/search" | "csv/search/suggest-operators" | "csv/convert-to-excel" => 2,
        "excel/info"
        | "excel/search/suggest-operators"
        | "excel/extract-columns"
        | "excel/extract-columns-to-file"
        | "excel/map-columns"
        | "excel/search"
        | "excel/bind-single-key"
        | "excel/bind-multi-key"
        | "files/bind"
        | "files/bind/preview"
        | "normalization/apply"
        | "sql/generate"
        | "sql/generate-to-text"
        | "sql/generate-custom-to-text"
        | "json/generate"
        | "json/generate-with-template" => 24,
        "chat/workflows/restore" => 2,
        _ => return None,
    })
}

/// The declared memory of one task of `operation` on `input_bytes` of input.
pub fn estimate_bytes(operation: &str, input_bytes: u64) -> u64 {
    let factor = memory_factor(operation).unwrap_or(1);
    TASK_BASE_BYTES.saturating_add(input_bytes.saturating_mul(factor))
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
    /// The estimate alone exceeds `limits.max_processing_memory_mb`.
    OverBudget { estimate_bytes: u64, budget_bytes: u64 },
}

impl Refusal {
    /// The `reason` label of the rejection metric.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::QueueFull => "queue_full",
            Refusal::QueueTimeout => "queue_timeout",
            Refusal::OverBudget { .. } => "over_budget",
        }
    }
}

struct Waiter {
    id: u64,
    origin: Origin,
    estimate: u64,
    enqueued: Instant,
    grant: oneshot::Sender<Permit>,
}

#[derive(Default)]
struct State {
    running: usize,
    reserved_bytes: u64,
    queue: VecDeque<Waiter>,
    queued_rest: usize,
    next_id: u64,
}

#[derive(Default)]
struct Counters {
    admitted_rest: AtomicU64,
    admitted_chat: AtomicU64,
    queue_full: AtomicU64,
    queue_timeout: AtomicU64,
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

    /// Admits a task declaring `estimate` bytes: at once when a slot and the memory are free and nobody
    /// waits; else in FIFO order. A REST task is refused when the queue is full or the wait too long.
    pub async fn admit(self: &Arc<Self>, origin: Origin, estimate: u64) -> Result<Permit, Refusal> {
        if estimate > self.limits.memory_budget_bytes {
            self.counters.over_budget.fetch_add(1, Ordering::Relaxed);
            return Err(Refusal::OverBudget {
                estimate_bytes: estimate,
                budget_bytes: self.limits.memory_budget_bytes,
            });
        }
        let (rx, id) = {
            let mut st = lock(&self.state);
            if st.queue.is_empty() && self.fits(&st, estimate) {
                st.running += 1;
                st.reserved_bytes += estimate;
                drop(st);
                self.count_admitted(origin, Duration::ZERO);
                return Ok(self.permit(estimate));
            }
            if origin == Origin::Rest && st.queued_rest >= self.limits.max_queued {
                drop(st);
                self.counters.queue_full.fetch_add(1, Ordering::Relaxed);
                return Err(Refusal::QueueFull);
            }
            let (tx, rx) = oneshot::channel();
            let id = st.next_id;
            st.next_id += 1;
            st.queue.push_back(Waiter { id, origin, estimate, enqueued: Instant::now(), grant: tx });
            if origin == Origin::Rest {
                st.queued_rest += 1;
            }
            (rx, id)
        };
        // Leaves the queue if this future is dropped or times out before its turn.
        let mut ticket = Ticket { admission: self, id, rx };
        match origin {
            Origin::Chat => (&mut ticket.rx).await.map_err(|_| Refusal::QueueTimeout),
            Origin::Rest => match tokio::time::timeout(self.limits.queue_timeout, &mut ticket.rx).await {
                Ok(granted) => granted.map_err(|_| Refusal::QueueTimeout),
                // Granted in the same instant as the timeout: take it rather than waste it.
                Err(_) => ticket.rx.try_recv().map_err(|_| {
                    self.counters.queue_timeout.fetch_add(1, Ordering::Relaxed);
                    Refusal::QueueTimeout
                }),
            },
        }
    }

    fn fits(&self, st: &State, estimate: u64) -> bool {
        st.running < self.limits.slots
            && st.reserved_bytes.saturating_add(estimate) <= self.limits.memory_budget_bytes
    }

    fn permit(self: &Arc<Self>, estimate: u64) -> Permit {
        Permit(Arc::new(Grant { admission: self.clone(), estimate }))
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
    fn grant_waiting(self: &Arc<Self>, st: &mut State) -> Vec<Permit> {
        let mut undelivered = Vec::new();
        while let Some(head) = st.queue.front() {
            if !self.fits(st, head.estimate) {
                break;
            }
            let Some(waiter) = st.queue.pop_front() else { break };
            if waiter.origin == Origin::Rest {
                st.queued_rest -= 1;
            }
            st.running += 1;
            st.reserved_bytes += waiter.estimate;
            self.count_admitted(waiter.origin, waiter.enqueued.elapsed());
            if let Err(permit) = waiter.grant.send(self.permit(waiter.estimate)) {
                undelivered.push(permit);
            }
        }
        undelivered
    }

    fn release(self: &Arc<Self>, estimate: u64) {
        let undelivered = {
            let mut st = lock(&self.state);
            st.running = st.running.saturating_sub(1);
            st.reserved_bytes = st.reserved_bytes.saturating_sub(estimate);
            self.grant_waiting(&mut st)
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
            running: st.running as u64,
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
                "over_budget": self.over_budget,
            },
        })
    }
}

/// A place in the queue; leaves it when dropped before being served.
struct Ticket<'a> {
    admission: &'a Arc<Admission>,
    id: u64,
    rx: oneshot::Receiver<Permit>,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        self.admission.leave_queue(self.id);
    }
}

/// An admitted task's slot and memory reservation, released when the last clone is dropped (a step
/// abandoned at its timeout keeps it until its thread really stops).
#[derive(Clone)]
pub struct Permit(Arc<Grant>);

struct Grant {
    admission: Arc<Admission>,
    estimate: u64,
}

impl Drop for Grant {
    fn drop(&mut self) {
        self.admission.release(self.estimate);
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
        let (tx, rx) = oneshot::channel();
        let held = self.clone();
        self.0.admission.lane.submit(Box::new(move || {
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(work));
            // Free the slot before the caller hears the outcome, so its answer never reports it busy.
            drop(held);
            let _ = tx.send(outcome.map_err(|_| LaneError("heavy task panicked")));
        }))?;
        rx.await.map_err(|_| LaneError("heavy lane stopped"))?
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

/// Lowers the calling thread's CPU priority by [`HEAVY_LANE_NICE`] (on Linux, niceness is per thread).
fn lower_thread_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid and setpriority take plain integers and touch no memory of ours.
        let rc = unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, tid, HEAVY_LANE_NICE)
        };
        if rc != 0 {
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

    #[tokio::test]
    async fn slots_queue_and_fifo_order() {
        let a = Admission::new(limits(1, 2, 100, 5_000));
        let first = a.admit(Origin::Rest, MIB).await.unwrap();
        let (a2, a3) = (a.clone(), a.clone());
        let order = Arc::new(Mutex::new(Vec::new()));
        let (o2, o3) = (order.clone(), order.clone());
        let second = tokio::spawn(async move {
            let p = a2.admit(Origin::Rest, MIB).await.unwrap();
            lock(&o2).push(2);
            drop(p);
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let third = tokio::spawn(async move {
            let p = a3.admit(Origin::Chat, MIB).await.unwrap();
            lock(&o3).push(3);
            drop(p);
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(a.snapshot().queued, 2);
        // Queue bound counts REST waiters only: one REST is queued, a second REST still fits.
        let a4 = a.clone();
        let fourth = tokio::spawn(async move { a4.admit(Origin::Rest, MIB).await.map(drop) });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(a.admit(Origin::Rest, MIB).await.err(), Some(Refusal::QueueFull));
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
        let held = a.admit(Origin::Rest, MIB).await.unwrap();
        assert_eq!(a.admit(Origin::Rest, MIB).await.err(), Some(Refusal::QueueTimeout));
        let s = a.snapshot();
        assert_eq!((s.queued, s.queued_rest, s.queue_timeout), (0, 0, 1));
        drop(held);
        assert!(a.admit(Origin::Rest, MIB).await.is_ok(), "the slot is free again");
    }

    #[tokio::test]
    async fn memory_budget_bounds_the_sum_and_refuses_what_never_fits() {
        let a = Admission::new(limits(4, 4, 10, 5_000));
        let big = a.admit(Origin::Rest, 8 * MIB).await.unwrap();
        assert_eq!(
            a.admit(Origin::Rest, 11 * MIB).await.err(),
            Some(Refusal::OverBudget { estimate_bytes: 11 * MIB, budget_bytes: 10 * MIB })
        );
        // A free slot is not enough: 8 + 4 > 10, so this one waits for the memory.
        let a2 = a.clone();
        let waiting = tokio::spawn(async move { a2.admit(Origin::Chat, 4 * MIB).await.map(drop) });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(a.snapshot().queued, 1);
        assert_eq!(a.snapshot().reserved_bytes, 8 * MIB);
        drop(big);
        waiting.await.unwrap().unwrap();
        assert_eq!(a.snapshot().over_budget, 1);
    }

    #[tokio::test]
    async fn a_dropped_waiter_gives_its_turn_away() {
        let a = Admission::new(limits(1, 4, 100, 5_000));
        let held = a.admit(Origin::Rest, MIB).await.unwrap();
        let a2 = a.clone();
        let gone = tokio::spawn(async move { a2.admit(Origin::Rest, MIB).await.map(drop) });
        tokio::time::sleep(Duration::from_millis(20)).await;
        gone.abort();
        let _ = gone.await;
        assert_eq!(a.snapshot().queued, 0);
        drop(held);
        assert_eq!(a.snapshot().running, 0);
        assert!(a.admit(Origin::Rest, MIB).await.is_ok());
    }

    #[tokio::test]
    async fn blocking_work_of_an_admitted_task_holds_the_slot_on_the_heavy_lane() {
        let a = Admission::new(limits(1, 1, 100, 5_000));
        let permit = a.admit(Origin::Chat, MIB).await.unwrap();
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
        let panicked = a.admit(Origin::Chat, MIB).await.unwrap().run(|| panic!("boom")).await;
        assert!(panicked.is_err());
        assert_eq!(a.snapshot().running, 0);
    }

    #[test]
    fn estimates_scale_with_input_and_operation() {
        assert_eq!(memory_factor("health"), None);
        assert_eq!(estimate_bytes("csv/info", 10 * MIB), TASK_BASE_BYTES + 20 * MIB);
        assert_eq!(estimate_bytes("normalization/apply", 10 * MIB), TASK_BASE_BYTES + 240 * MIB);
        assert!(machine_memory_bytes().is_some_and(|b| b > 0));
    }
}
