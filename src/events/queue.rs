//! The bounded per-connection send queue (websocket.md C.9). Publishers enqueue without waiting; the
//! connection's response body drains it whenever the socket can take more. On overflow, superseded
//! `progress` events are coalesced first; if that is not enough the connection is a slow consumer: the
//! queue is discarded and it closes with 4008.
//!
//! Waking: a publisher usually runs on another thread than the connection, and waking a task across
//! threads costs a system call. A queue joined to its connection thread's [`WakeGroup`] hands the wake to
//! that group instead, so one publish to 1,000 connections costs one cross-thread wake per runtime
//! thread, not one per connection.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use bytes::Bytes;
use bytestring::ByteString;
use futures_util::task::AtomicWaker;
use tokio::sync::Notify;

/// Why and how a connection is closed by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseReason {
    pub code: u16,
    pub reason: String,
}

impl CloseReason {
    pub fn new(code: u16, reason: impl Into<String>) -> Self {
        CloseReason { code, reason: reason.into() }
    }
}

pub const CLOSE_GOING_AWAY: u16 = 1001;
pub const CLOSE_TOO_BIG: u16 = 1009;
pub const CLOSE_INTERNAL: u16 = 1011;
pub const CLOSE_TRY_AGAIN: u16 = 1013;
pub const CLOSE_INVALID_SESSION: u16 = 4001;
pub const CLOSE_SLOW_CONSUMER: u16 = 4008;

/// One frame waiting to be written. The text is shared (reference-counted) by every queue it is in.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub text: ByteString,
    /// `(chat_id, step_id)` for `progress` events: a newer one with the same key supersedes this one.
    pub coalesce_key: Option<(Arc<str>, Arc<str>)>,
}

impl Outgoing {
    pub fn text(text: impl Into<ByteString>) -> Self {
        Outgoing { text: text.into(), coalesce_key: None }
    }
}

/// A control frame waiting to be written. Control frames are not counted against the bounds: at most one
/// ping and one pong are pending (a newer pong replaces an unsent one, as RFC 6455 §5.5.3 allows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    Ping(Bytes),
    Pong(Bytes),
}

#[derive(Debug, Default)]
struct State {
    items: VecDeque<Outgoing>,
    bytes: usize,
    ping: Option<Bytes>,
    pong: Option<Bytes>,
    /// When the oldest frame not yet taken by the writer was queued.
    waiting_since: Option<Instant>,
    /// Set once: after it, nothing is enqueued and the writer closes when the queue is drained.
    close: Option<CloseReason>,
    high_water: usize,
}

#[derive(Debug)]
pub struct SendQueue {
    state: Mutex<State>,
    /// The writer (the connection's response body) waiting for frames.
    writer: AtomicWaker,
    max_messages: usize,
    max_bytes: usize,
    /// The connection thread's wake group, once the connection has joined one.
    group: OnceLock<Arc<WakeGroup>>,
    /// True while this queue waits in its group's ready list (it is listed at most once).
    listed: AtomicBool,
    /// Set when the writer has sent the close frame or is gone; `written_out` waits for it.
    done: AtomicBool,
    done_notify: Notify,
    /// Set when the client's close frame has arrived: with the server's close frame out as well, the
    /// close handshake is complete and the writer ends the connection at once.
    peer_closed: AtomicBool,
}

/// Batches the wakes of the connections (their response bodies) of one runtime thread (see the module
/// documentation). Its [`WakeGroup::run`] task must run on that thread.
#[derive(Debug)]
pub struct WakeGroup {
    thread: ThreadId,
    ready: Mutex<Vec<Arc<SendQueue>>>,
    kick: Notify,
}

impl WakeGroup {
    /// A group for the current thread.
    pub fn for_current_thread() -> Arc<Self> {
        Arc::new(WakeGroup {
            thread: std::thread::current().id(),
            ready: Mutex::new(Vec::new()),
            kick: Notify::new(),
        })
    }

    fn list(&self, queue: Arc<SendQueue>) {
        let first = {
            let mut ready = super::lock(&self.ready);
            ready.push(queue);
            ready.len() == 1
        };
        if first {
            self.kick.notify_one();
        }
    }

    /// Wakes the writers of every listed queue, from the group's own thread (cheap local wakes).
    pub async fn run(self: Arc<Self>) {
        let mut batch = Vec::new();
        loop {
            self.kick.notified().await;
            std::mem::swap(&mut batch, &mut *super::lock(&self.ready));
            for queue in batch.drain(..) {
                queue.listed.store(false, Ordering::Release);
                queue.writer.wake();
            }
        }
    }
}

/// Result of an enqueue.
#[derive(Debug, PartialEq, Eq)]
pub enum Push {
    Queued {
        coalesced: usize,
    },
    /// The queue overflowed even after coalescing: the connection is closing with 4008.
    SlowConsumer,
    /// The connection is already closing; the frame was not queued.
    Closed,
}

impl SendQueue {
    pub fn new(max_messages: usize, max_bytes: usize) -> Arc<Self> {
        Arc::new(SendQueue {
            state: Mutex::new(State::default()),
            writer: AtomicWaker::new(),
            max_messages,
            max_bytes,
            group: OnceLock::new(),
            listed: AtomicBool::new(false),
            done: AtomicBool::new(false),
            done_notify: Notify::new(),
            peer_closed: AtomicBool::new(false),
        })
    }

    /// Routes the wakes of pushes from other threads through `group`, whose thread runs the writer.
    pub fn join(&self, group: Arc<WakeGroup>) {
        let _ = self.group.set(group);
    }

    fn wake(self: &Arc<Self>) {
        match self.group.get() {
            Some(group) if group.thread != std::thread::current().id() => {
                if !self.listed.swap(true, Ordering::AcqRel) {
                    group.list(self.clone());
                }
            }
            _ => self.writer.wake(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the queue inconsistent in a way that matters more
        // than losing the connection, so poisoning is ignored.
        super::lock(&self.state)
    }

    pub fn push(self: &Arc<Self>, item: Outgoing) -> Push {
        let mut st = self.lock();
        if st.close.is_some() {
            return Push::Closed;
        }
        let mut coalesced = 0;
        let over = |st: &State, item: &Outgoing| {
            st.items.len() + 1 > self.max_messages || st.bytes + item.text.len() > self.max_bytes
        };
        if over(&st, &item) {
            coalesced = coalesce(&mut st, item.coalesce_key.as_ref());
            if over(&st, &item) {
                st.items.clear();
                st.bytes = 0;
                st.close = Some(CloseReason::new(CLOSE_SLOW_CONSUMER, "slow consumer"));
                drop(st);
                self.wake();
                return Push::SlowConsumer;
            }
        }
        st.bytes += item.text.len();
        st.items.push_back(item);
        st.waiting_since.get_or_insert_with(Instant::now);
        st.high_water = st.high_water.max(st.items.len());
        drop(st);
        self.wake();
        Push::Queued { coalesced }
    }

    /// Asks the writer to close after sending what is queued (shutdown, deleted conversation, limits).
    pub fn close(self: &Arc<Self>, reason: CloseReason) {
        let mut st = self.lock();
        if st.close.is_none() {
            st.close = Some(reason);
        }
        drop(st);
        self.wake();
    }

    /// Closes at once, discarding what is queued.
    pub fn abort(self: &Arc<Self>, reason: CloseReason) {
        let mut st = self.lock();
        st.items.clear();
        st.bytes = 0;
        if st.close.is_none() {
            st.close = Some(reason);
        }
        drop(st);
        self.wake();
    }

    pub fn is_closing(&self) -> bool {
        self.lock().close.is_some()
    }

    pub fn len(&self) -> usize {
        self.lock().items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn high_water(&self) -> usize {
        self.lock().high_water
    }

    /// Queues a ping or a pong (not bounded by the queue's limits; see [`Control`]). Ignored once closing.
    pub fn push_control(self: &Arc<Self>, control: Control) {
        let mut st = self.lock();
        if st.close.is_some() {
            return;
        }
        match control {
            Control::Ping(payload) => st.ping = Some(payload),
            Control::Pong(payload) => st.pong = Some(payload),
        }
        drop(st);
        self.wake();
    }

    /// How long the oldest frame has been waiting for the writer (`None` when nothing waits). A writer
    /// that does not take frames is blocked by a client that does not read.
    pub fn stalled_for(&self, now: Instant) -> Option<Duration> {
        self.lock().waiting_since.map(|since| now.saturating_duration_since(since))
    }

    /// The writer's side: moves every queued control frame into `controls` and every queued frame into
    /// `frames` (one lock per burst) and is ready if there were any; once the queue is closing and
    /// everything was handed out, is ready with the close reason. Otherwise registers the waker.
    pub fn poll_batch(
        &self,
        cx: &mut Context<'_>,
        frames: &mut Vec<Outgoing>,
        controls: &mut Vec<Control>,
    ) -> Poll<Option<CloseReason>> {
        self.writer.register(cx.waker());
        let mut st = self.lock();
        let before = controls.len();
        controls.extend(st.pong.take().map(Control::Pong));
        controls.extend(st.ping.take().map(Control::Ping));
        let had_frames = !st.items.is_empty();
        if had_frames {
            st.bytes = 0;
            st.waiting_since = None;
            frames.extend(st.items.drain(..));
        }
        if had_frames || controls.len() > before {
            return Poll::Ready(None);
        }
        match &st.close {
            Some(reason) => Poll::Ready(Some(reason.clone())),
            None => Poll::Pending,
        }
    }

    /// [`SendQueue::poll_batch`] as a future (the tests' writer).
    #[cfg(test)]
    pub async fn next_batch(
        &self,
        frames: &mut Vec<Outgoing>,
        controls: &mut Vec<Control>,
    ) -> Option<CloseReason> {
        std::future::poll_fn(|cx| self.poll_batch(cx, frames, controls)).await
    }

    /// Called by the writer when it has written the close frame, or when it is dropped.
    pub fn mark_written_out(&self) {
        if !self.done.swap(true, Ordering::AcqRel) {
            self.done_notify.notify_waiters();
        }
    }

    /// Records that the client's close frame has arrived (or that none will: the client is gone).
    pub fn peer_closed(&self) {
        self.peer_closed.store(true, Ordering::Release);
        self.writer.wake();
    }

    /// The writer's side once its close frame is out: ready when the client's close frame has arrived.
    pub fn poll_peer_closed(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.writer.register(cx.waker());
        if self.peer_closed.load(Ordering::Acquire) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Waits until the writer has sent the close frame or is gone (the connection ended).
    pub async fn written_out(&self) {
        loop {
            let notified = self.done_notify.notified();
            if self.done.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }
}

/// Drops every queued progress frame that a later frame (queued, or `incoming`) supersedes.
fn coalesce(st: &mut State, incoming: Option<&(Arc<str>, Arc<str>)>) -> usize {
    let mut seen: Vec<&(Arc<str>, Arc<str>)> = incoming.into_iter().collect();
    let mut keep = vec![true; st.items.len()];
    for (i, item) in st.items.iter().enumerate().rev() {
        if let Some(key) = &item.coalesce_key {
            if seen.contains(&key) {
                keep[i] = false;
            } else {
                seen.push(key);
            }
        }
    }
    let before = st.items.len();
    let mut index = 0;
    st.items.retain(|_| {
        let k = keep[index];
        index += 1;
        k
    });
    st.bytes = st.items.iter().map(|i| i.text.len()).sum();
    before - st.items.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(step: &str, n: u32) -> Outgoing {
        Outgoing { text: format!("p{step}{n}").into(), coalesce_key: Some(("c".into(), step.into())) }
    }

    #[tokio::test]
    async fn frames_come_out_in_order_then_close() {
        let q = SendQueue::new(10, 1000);
        assert_eq!(q.push(Outgoing::text("a")), Push::Queued { coalesced: 0 });
        assert_eq!(q.push(Outgoing::text("b")), Push::Queued { coalesced: 0 });
        q.close(CloseReason::new(1001, "bye"));
        assert_eq!(q.push(Outgoing::text("c")), Push::Closed);
        let (mut got, mut controls) = (Vec::new(), Vec::new());
        assert_eq!(q.next_batch(&mut got, &mut controls).await, None);
        let texts: Vec<&str> = got.iter().map(|f| &*f.text).collect();
        assert_eq!(texts, ["a", "b"]);
        got.clear();
        assert_eq!(q.next_batch(&mut got, &mut controls).await, Some(CloseReason::new(1001, "bye")));
        assert!(got.is_empty() && controls.is_empty());
    }

    #[test]
    fn overflow_coalesces_progress_then_closes_slow_consumer() {
        let q = SendQueue::new(3, 1000);
        q.push(progress("s1", 0));
        q.push(Outgoing::text("lifecycle"));
        q.push(progress("s1", 50));
        // Full: the older s1 progress frames are superseded by the incoming one.
        assert_eq!(q.push(progress("s1", 100)), Push::Queued { coalesced: 2 });
        assert_eq!(q.len(), 2);
        q.push(Outgoing::text("x"));
        // Full of frames that are never dropped: slow consumer.
        assert_eq!(q.push(Outgoing::text("y")), Push::SlowConsumer);
        assert!(q.is_closing());
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn pushes_from_another_thread_reach_every_writer_through_the_group() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        tokio::task::LocalSet::new().block_on(&rt, async {
            let group = WakeGroup::for_current_thread();
            tokio::task::spawn_local(group.clone().run());
            let queues: Vec<_> = (0..50)
                .map(|_| {
                    let q = SendQueue::new(10, 1000);
                    q.join(group.clone());
                    q
                })
                .collect();
            let writers: Vec<_> = queues
                .iter()
                .cloned()
                .map(|q| {
                    tokio::task::spawn_local(async move {
                        let (mut batch, mut controls, mut got) = (Vec::new(), Vec::new(), Vec::new());
                        while q.next_batch(&mut batch, &mut controls).await.is_none() {
                            got.extend(batch.drain(..).map(|f| f.text.to_string()));
                        }
                        got
                    })
                })
                .collect();
            let publisher = {
                let queues = queues.clone();
                std::thread::spawn(move || {
                    for n in 0..3 {
                        for q in &queues {
                            assert_eq!(
                                q.push(Outgoing::text(format!("e{n}"))),
                                Push::Queued { coalesced: 0 }
                            );
                        }
                    }
                    queues.iter().for_each(|q| q.close(CloseReason::new(1000, "")));
                })
            };
            for writer in writers {
                assert_eq!(writer.await.unwrap(), ["e0", "e1", "e2"]);
            }
            publisher.join().unwrap();
            assert!(queues.iter().all(|q| !q.listed.load(Ordering::Acquire)), "every queue left the list");
        });
    }

    #[tokio::test]
    async fn control_frames_come_first_keep_only_the_latest_pong_and_do_not_count() {
        let q = SendQueue::new(1, 10);
        q.push(Outgoing::text("event"));
        q.push_control(Control::Pong(Bytes::from_static(b"old")));
        q.push_control(Control::Pong(Bytes::from_static(b"new")));
        q.push_control(Control::Ping(Bytes::new()));
        assert_eq!(q.len(), 1, "controls are not frames of the bounded queue");
        let (mut frames, mut controls) = (Vec::new(), Vec::new());
        assert_eq!(q.next_batch(&mut frames, &mut controls).await, None);
        assert_eq!(
            controls,
            [Control::Pong(Bytes::from_static(b"new")), Control::Ping(Bytes::new())],
            "one pong (the latest) and one ping"
        );
        assert_eq!(frames.len(), 1);
        q.close(CloseReason::new(1000, ""));
        q.push_control(Control::Ping(Bytes::new()));
        controls.clear();
        assert_eq!(q.next_batch(&mut frames, &mut controls).await, Some(CloseReason::new(1000, "")));
        assert!(controls.is_empty(), "nothing is queued once closing");
    }

    #[tokio::test]
    async fn the_stall_clock_runs_from_the_oldest_untaken_frame_and_the_writer_reports_done() {
        let q = SendQueue::new(10, 1000);
        let start = Instant::now();
        assert_eq!(q.stalled_for(start), None);
        q.push(Outgoing::text("a"));
        q.push(Outgoing::text("b"));
        let later = Instant::now() + Duration::from_secs(3);
        assert!(q.stalled_for(later).unwrap() >= Duration::from_secs(3));
        let (mut frames, mut controls) = (Vec::new(), Vec::new());
        q.next_batch(&mut frames, &mut controls).await;
        assert_eq!(q.stalled_for(later), None, "taking the frames resets it");

        let waiter = {
            let q = q.clone();
            tokio::spawn(async move { q.written_out().await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        q.mark_written_out();
        tokio::time::timeout(Duration::from_secs(5), waiter).await.unwrap().unwrap();
        q.written_out().await;
    }

    #[test]
    fn byte_bound_counts() {
        let q = SendQueue::new(100, 10);
        assert!(matches!(q.push(Outgoing::text("12345")), Push::Queued { .. }));
        assert!(matches!(q.push(Outgoing::text("12345")), Push::Queued { .. }));
        assert_eq!(q.push(Outgoing::text("1")), Push::SlowConsumer);
    }
}
