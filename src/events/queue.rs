//! The bounded per-connection send queue (websocket.md C.9). Publishers enqueue without waiting; the
//! connection's writer task drains it. On overflow, superseded `progress` events are coalesced first; if
//! that is not enough the connection is a slow consumer: the queue is discarded and it closes with 4008.
//!
//! Waking: a publisher usually runs on another thread than the connection's writer task, and waking a
//! task across threads costs a system call. A queue joined to its writer thread's [`WakeGroup`] hands the
//! wake to that group instead, so one publish to 1,000 connections costs one cross-thread wake per runtime
//! thread, not one per connection.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::ThreadId;

use bytestring::ByteString;
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

#[derive(Debug, Default)]
struct State {
    items: VecDeque<Outgoing>,
    bytes: usize,
    /// Set once: after it, nothing is enqueued and the writer closes when the queue is drained.
    close: Option<CloseReason>,
    high_water: usize,
}

#[derive(Debug)]
pub struct SendQueue {
    state: Mutex<State>,
    notify: Notify,
    max_messages: usize,
    max_bytes: usize,
    /// The writer thread's wake group, once the writer has joined one.
    group: OnceLock<Arc<WakeGroup>>,
    /// True while this queue waits in its group's ready list (it is listed at most once).
    listed: AtomicBool,
}

/// Batches the wakes of the writer tasks of one runtime thread (see the module documentation). Its
/// [`WakeGroup::run`] task must run on that thread.
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
                queue.notify.notify_one();
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
            notify: Notify::new(),
            max_messages,
            max_bytes,
            group: OnceLock::new(),
            listed: AtomicBool::new(false),
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
            _ => self.notify.notify_one(),
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

    /// Waits until something is queued, then moves every queued frame into `batch` (one lock per burst).
    /// Returns the close reason instead once the queue is closing and everything queued was handed out.
    pub async fn next_batch(&self, batch: &mut Vec<Outgoing>) -> Option<CloseReason> {
        loop {
            let notified = self.notify.notified();
            {
                let mut st = self.lock();
                if !st.items.is_empty() {
                    st.bytes = 0;
                    batch.extend(st.items.drain(..));
                    return None;
                }
                if let Some(reason) = &st.close {
                    return Some(reason.clone());
                }
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
        let mut got = Vec::new();
        assert_eq!(q.next_batch(&mut got).await, None);
        let texts: Vec<&str> = got.iter().map(|f| &*f.text).collect();
        assert_eq!(texts, ["a", "b"]);
        got.clear();
        assert_eq!(q.next_batch(&mut got).await, Some(CloseReason::new(1001, "bye")));
        assert!(got.is_empty());
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
                        let (mut batch, mut got) = (Vec::new(), Vec::new());
                        while q.next_batch(&mut batch).await.is_none() {
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

    #[test]
    fn byte_bound_counts() {
        let q = SendQueue::new(100, 10);
        assert!(matches!(q.push(Outgoing::text("12345")), Push::Queued { .. }));
        assert!(matches!(q.push(Outgoing::text("12345")), Push::Queued { .. }));
        assert_eq!(q.push(Outgoing::text("1")), Push::SlowConsumer);
    }
}
