//! The bounded per-connection send queue (websocket.md C.9). Publishers enqueue without waiting; the
//! connection's writer task drains it. On overflow, superseded `progress` events are coalesced first; if
//! that is not enough the connection is a slow consumer: the queue is discarded and it closes with 4008.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

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

/// One frame waiting to be written.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub text: Arc<str>,
    /// `(chat_id, step_id)` for `progress` events: a newer one with the same key supersedes this one.
    pub coalesce_key: Option<(Arc<str>, Arc<str>)>,
}

impl Outgoing {
    pub fn text(text: impl Into<Arc<str>>) -> Self {
        Outgoing { text: text.into(), coalesce_key: None }
    }
}

/// What the writer task gets next.
#[derive(Debug)]
pub enum Next {
    Frame(Outgoing),
    Close(CloseReason),
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
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the queue inconsistent in a way that matters more
        // than losing the connection, so poisoning is ignored.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn push(&self, item: Outgoing) -> Push {
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
                self.notify.notify_one();
                return Push::SlowConsumer;
            }
        }
        st.bytes += item.text.len();
        st.items.push_back(item);
        st.high_water = st.high_water.max(st.items.len());
        drop(st);
        self.notify.notify_one();
        Push::Queued { coalesced }
    }

    /// Asks the writer to close after sending what is queued (shutdown, deleted conversation, limits).
    pub fn close(&self, reason: CloseReason) {
        let mut st = self.lock();
        if st.close.is_none() {
            st.close = Some(reason);
        }
        drop(st);
        self.notify.notify_one();
    }

    /// Closes at once, discarding what is queued.
    pub fn abort(&self, reason: CloseReason) {
        let mut st = self.lock();
        st.items.clear();
        st.bytes = 0;
        if st.close.is_none() {
            st.close = Some(reason);
        }
        drop(st);
        self.notify.notify_one();
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

    /// Waits for the next frame, or the close once everything queued has been handed out.
    pub async fn next(&self) -> Next {
        loop {
            let notified = self.notify.notified();
            {
                let mut st = self.lock();
                if let Some(item) = st.items.pop_front() {
                    st.bytes -= item.text.len();
                    return Next::Frame(item);
                }
                if let Some(reason) = &st.close {
                    return Next::Close(reason.clone());
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
        loop {
            match q.next().await {
                Next::Frame(f) => got.push(f.text.to_string()),
                Next::Close(r) => {
                    assert_eq!(r.code, 1001);
                    break;
                }
            }
        }
        assert_eq!(got, ["a", "b"]);
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
    fn byte_bound_counts() {
        let q = SendQueue::new(100, 10);
        assert!(matches!(q.push(Outgoing::text("12345")), Push::Queued { .. }));
        assert!(matches!(q.push(Outgoing::text("12345")), Push::Queued { .. }));
        assert_eq!(q.push(Outgoing::text("1")), Push::SlowConsumer);
    }
}
