//! The in-process event hub (websocket.md C.2, C.6–C.9): connection registry and limits, per-chat sequence
//! numbers, the event log used for replay, and fan-out into each connection's bounded send queue. Publishing
//! never awaits network I/O; one lock per chat makes "append to log, then enqueue" atomic with subscribe/replay.
//!
//! Cluster mode (a `bus` is attached): other nodes append to the same log, so `seq` comes from the log
//! (`EventLog::append_next`) and each chat with local subscribers has a cursor, the highest `seq` delivered
//! here. Local events and events from the bus are delivered strictly after the cursor; anything missing in
//! between is read from the log first (see `bus`).

pub mod bus;
pub mod log;
pub mod queue;
pub mod wire;

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};
use std::time::Duration;

use bytestring::ByteString;
use serde_json::{json, Map, Value};

use crate::config::Config;
use crate::envelope::now_rfc3339;
pub use log::{EventLog, MemoryEventLog};
pub use queue::{CloseReason, Outgoing, Push, SendQueue, WakeGroup};
use wire::{ActiveJob, ReplayComplete, ResyncReason, ResyncRequired, ServerShutdown, WireMessage};

/// `reconnect_after_ms` of `server_shutdown` (websocket.md C.14).
pub const RECONNECT_AFTER_MS: u64 = 2000;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$` (websocket.md C.2, chat-workflows.md §1.5).
pub fn is_valid_chat_id(id: &str) -> bool {
    let bytes = id.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 64
        && bytes[0].is_ascii_alphanumeric()
        && bytes.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-')
}

/// Why a new connection was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    ShuttingDown,
    MaxConnections,
    MaxConnectionsPerIp,
    MaxConnectionsPerChat,
}

/// Why a subscription was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscribeError {
    TooManySubscriptions,
    ConnectionClosed,
}

/// Reports a chat's running or pending job for the `connected` message (websocket.md C.4 `active_job`).
pub trait ActiveJobs: Send + Sync {
    fn active_job(&self, chat_id: &str) -> Option<ActiveJob>;
}

/// The latest run of a chat as published: its `workflow_started` and newest `progress` (C.6 snapshot).
struct RunSnapshot {
    job_id: String,
    started: ByteString,
    progress: Option<ByteString>,
}

/// A resume request (websocket.md C.6).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resume {
    pub last_seq: u64,
    pub epoch: Option<String>,
}

#[derive(Default)]
struct Counters {
    events_published: AtomicU64,
    events_replayed: AtomicU64,
    progress_coalesced: AtomicU64,
    slow_consumer_closes: AtomicU64,
    refused_connections: AtomicU64,
    connections_opened: AtomicU64,
    rate_limited: AtomicU64,
    auth_rejections: AtomicU64,
    origin_rejections: AtomicU64,
    /// Deepest queue of any connection that has already gone (open ones are read live).
    queue_high_water: AtomicU64,
    published_by_type: Mutex<std::collections::BTreeMap<String, u64>>,
}

struct ConnEntry {
    queue: Arc<SendQueue>,
    subscriptions: Vec<String>,
    /// The path's chat between the connect and its first subscription: it already counts towards that
    /// chat's connection cap, so simultaneous connects cannot all pass the check.
    reserved_chat: Option<String>,
    ip: IpAddr,
}

impl ConnEntry {
    fn counts_for(&self, chat_id: &str) -> bool {
        self.reserved_chat.as_deref() == Some(chat_id) || self.subscriptions.iter().any(|s| s == chat_id)
    }
}

#[derive(Default)]
struct Registry {
    conns: HashMap<u64, ConnEntry>,
    per_ip: HashMap<IpAddr, u64>,
}

#[derive(Default)]
struct ChatChannel {
    /// `None` until read from the log (lazily, under this chat's lock).
    last_seq: Option<u64>,
    subscribers: Vec<(u64, Arc<SendQueue>)>,
    run: Option<RunSnapshot>,
    /// Cluster mode, while the chat has local subscribers: the highest `seq` delivered to them.
    cursor: Option<u64>,
}

pub struct Hub {
    config: Arc<Config>,
    log: RwLock<Arc<dyn EventLog>>,
    registry: Mutex<Registry>,
    chats: Mutex<HashMap<String, Arc<Mutex<ChatChannel>>>>,
    next_id: AtomicU64,
    shutting_down: AtomicBool,
    counters: Counters,
    active_jobs: RwLock<Option<Arc<dyn ActiveJobs>>>,
    /// One wake group per runtime thread that runs connection writers (see `queue`).
    wake_groups: Mutex<HashMap<std::thread::ThreadId, Arc<WakeGroup>>>,
    /// Cluster mode: the Redis fan-out between nodes.
    bus: OnceLock<Arc<bus::Bus>>,
}

/// How many newest events are read to rebuild a running job's snapshot when a node starts watching a chat.
const RUN_SNAPSHOT_WINDOW: usize = 256;

/// A registered connection; dropping it unregisters it everywhere.
pub struct Connection {
    pub id: u64,
    pub queue: Arc<SendQueue>,
    hub: Arc<Hub>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.hub.unregister(self.id);
    }
}

impl Connection {
    /// Sends a connection-scoped reply (no `seq`).
    pub fn send(&self, message: &Value) -> Push {
        self.queue.push(Outgoing::text(message.to_string()))
    }

    pub fn subscriptions(&self) -> Vec<String> {
        lock(&self.hub.registry).conns.get(&self.id).map(|c| c.subscriptions.clone()).unwrap_or_default()
    }
}

impl Hub {
    pub fn new(config: Arc<Config>) -> Hub {
        let replay = &config.chat_workflows.websocket.replay;
        let log: Arc<dyn EventLog> = Arc::new(MemoryEventLog::new(replay.max_events_per_chat as usize));
        Hub {
            config,
            log: RwLock::new(log),
            registry: Mutex::new(Registry::default()),
            chats: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            shutting_down: AtomicBool::new(false),
            counters: Counters::default(),
            active_jobs: RwLock::new(None),
            wake_groups: Mutex::new(HashMap::new()),
            bus: OnceLock::new(),
        }
    }

    /// Switches to cluster mode: numbering by the shared log, fan-out between nodes through `bus`.
    /// Call once, at start-up, on the runtime that should run the bus workers.
    pub fn attach_bus(self: &Arc<Self>, bus: Arc<bus::Bus>) {
        if self.bus.set(bus.clone()).is_ok() {
            bus.start(Arc::downgrade(self));
        }
    }

    /// The cluster bus, `None` in the embedded mode.
    pub fn bus(&self) -> Option<&Arc<bus::Bus>> {
        self.bus.get()
    }

    /// The wake group of the calling runtime thread; on first use `spawn` must start its task there.
    pub fn wake_group_for_current_thread(&self, spawn: impl FnOnce(Arc<WakeGroup>)) -> Arc<WakeGroup> {
        let mut groups = lock(&self.wake_groups);
        let thread = std::thread::current().id();
        if let Some(group) = groups.get(&thread) {
            return group.clone();
        }
        let group = WakeGroup::for_current_thread();
        spawn(group.clone());
        groups.insert(thread, group.clone());
        group
    }

    /// Installs the job runner's view of active jobs (C.4 `active_job`).
    pub fn set_active_jobs(&self, provider: Arc<dyn ActiveJobs>) {
        *self.active_jobs.write().unwrap_or_else(|p| p.into_inner()) = Some(provider);
    }

    /// The chat's running or pending job, `None` when none (or when no runner is installed).
    pub fn active_job(&self, chat_id: &str) -> Option<ActiveJob> {
        let provider = self.active_jobs.read().unwrap_or_else(|p| p.into_inner()).clone();
        provider.and_then(|p| p.active_job(chat_id))
    }

    /// Replaces the event log (the durable store installs itself here at start-up).
    pub fn set_log(&self, log: Arc<dyn EventLog>) {
        *self.log.write().unwrap_or_else(|p| p.into_inner()) = log;
        lock(&self.chats).values().for_each(|c| lock(c).last_seq = None);
    }

    /// The installed event log.
    pub fn event_log(&self) -> Arc<dyn EventLog> {
        self.log.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn epoch(&self) -> String {
        self.event_log().epoch()
    }

    fn channel(&self, chat_id: &str) -> Arc<Mutex<ChatChannel>> {
        lock(&self.chats).entry(chat_id.to_string()).or_default().clone()
    }

    fn ensure_seq(&self, channel: &mut ChatChannel, chat_id: &str) -> u64 {
        if let Some(seq) = channel.last_seq {
            return seq;
        }
        let seq = self.event_log().last_seq(chat_id).unwrap_or_else(|e| {
            ::log::error!("event log: cannot read last seq of chat {chat_id}: {e}");
            0
        });
        channel.last_seq = Some(seq);
        seq
    }

    /// The chat's highest sequence number (0 if none).
    pub fn last_seq(&self, chat_id: &str) -> u64 {
        if self.bus.get().is_some() {
            // Other nodes append too: only the log knows.
            return self.event_log().last_seq(chat_id).unwrap_or_else(|e| {
                ::log::error!("event log: cannot read last seq of chat {chat_id}: {e}");
                0
            });
        }
        let channel = self.channel(chat_id);
        let mut ch = lock(&channel);
        self.ensure_seq(&mut ch, chat_id)
    }

    /// A send queue with the configured bounds, for a connection about to [`Hub::connect`].
    pub fn new_send_queue(&self) -> Arc<SendQueue> {
        let bounds = &self.config.chat_workflows.websocket.send_queue;
        SendQueue::new(bounds.max_messages, bounds.max_bytes)
    }

    /// Registers a new connection writing through `queue`, enforcing the global, per-IP and per-chat caps
    /// (websocket.md C.11); a refusal hands the queue back (to send the refusal through it).
    pub fn connect(
        self: &Arc<Self>,
        ip: IpAddr,
        path_chat: Option<&str>,
        queue: Arc<SendQueue>,
    ) -> Result<Connection, (Arc<SendQueue>, Refusal)> {
        let ws = &self.config.chat_workflows.websocket;
        if self.shutting_down.load(Ordering::SeqCst) {
            return Err((queue, Refusal::ShuttingDown));
        }
        let mut reg = lock(&self.registry);
        let refusal = if reg.conns.len() as u64 >= self.config.chat_workflows.max_connections {
            Some(Refusal::MaxConnections)
        } else if ws.max_connections_per_ip > 0
            && reg.per_ip.get(&ip).copied().unwrap_or(0) >= ws.max_connections_per_ip
        {
            Some(Refusal::MaxConnectionsPerIp)
        } else if let (Some(chat), true) = (path_chat, ws.max_connections_per_chat > 0) {
            let on_chat = reg.conns.values().filter(|c| c.counts_for(chat)).count() as u64;
            (on_chat >= ws.max_connections_per_chat).then_some(Refusal::MaxConnectionsPerChat)
        } else {
            None
        };
        if let Some(r) = refusal {
            self.counters.refused_connections.fetch_add(1, Ordering::Relaxed);
            return Err((queue, r));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let reserved_chat = path_chat.map(str::to_string);
        reg.conns
            .insert(id, ConnEntry { queue: queue.clone(), subscriptions: Vec::new(), reserved_chat, ip });
        *reg.per_ip.entry(ip).or_insert(0) += 1;
        self.counters.connections_opened.fetch_add(1, Ordering::Relaxed);
        Ok(Connection { id, queue, hub: self.clone() })
    }

    fn unregister(&self, id: u64) {
        let entry = {
            let mut reg = lock(&self.registry);
            let entry = reg.conns.remove(&id);
            if let Some(e) = &entry {
                if let Some(n) = reg.per_ip.get_mut(&e.ip) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        reg.per_ip.remove(&e.ip);
                    }
                }
            }
            entry
        };
        if let Some(entry) = entry {
            for chat in &entry.subscriptions {
                self.remove_subscriber(chat, id);
            }
            self.counters.queue_high_water.fetch_max(entry.queue.high_water() as u64, Ordering::Relaxed);
            entry.queue.close(CloseReason::new(1000, ""));
        }
    }

    /// A connection closed because its client took no frame within the write timeout.
    pub fn count_slow_consumer(&self) {
        self.counters.slow_consumer_closes.fetch_add(1, Ordering::Relaxed);
    }

    /// An inbound frame discarded by the rate limiter (websocket.md C.16).
    pub fn count_rate_limited(&self) {
        self.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection refused for a missing, invalid or expired token.
    pub fn count_auth_rejection(&self) {
        self.counters.auth_rejections.fetch_add(1, Ordering::Relaxed);
    }

    /// An upgrade refused because of its `Origin`.
    pub fn count_origin_rejection(&self) {
        self.counters.origin_rejections.fetch_add(1, Ordering::Relaxed);
    }

    /// Subscribes `conn` to `chat_id` (adding to its subscriptions). With `resume`, the missed events are
    /// replayed into the connection's queue and `replay_complete` follows, atomically with live publishing.
    /// `before_replay` builds the first frame (e.g. the `connected` reply) from the chat's current `seq`; it is
    /// queued under the same lock, before any replayed event. With `snapshot` and no `resume`, a running job's
    /// `workflow_started` and latest `progress` follow it (C.6 snapshot, marked `replayed`).
    /// The event log may be read: call from the blocking pool.
    pub fn subscribe(
        &self,
        conn: &Connection,
        chat_id: &str,
        resume: Option<&Resume>,
        before_replay: Option<&dyn Fn(u64) -> Value>,
        snapshot: bool,
    ) -> Result<u64, SubscribeError> {
        let max = self.config.chat_workflows.websocket.max_subscriptions_per_connection;
        {
            let mut reg = lock(&self.registry);
            let entry = reg.conns.get_mut(&conn.id).ok_or(SubscribeError::ConnectionClosed)?;
            entry.reserved_chat = None;
            if !entry.subscriptions.iter().any(|s| s == chat_id) {
                if entry.subscriptions.len() >= max {
                    return Err(SubscribeError::TooManySubscriptions);
                }
                entry.subscriptions.push(chat_id.to_string());
            }
        }
        let channel = self.channel(chat_id);
        let mut ch = lock(&channel);
        let current = match self.bus.get() {
            Some(bus) => {
                if resume.is_some() && ch.cursor.is_some() {
                    // A client coming from another node may be ahead of what arrived here yet.
                    let repaired = self.catch_up_locked(&mut ch, chat_id);
                    bus.count_repair(false, repaired);
                }
                self.watch_locked(bus, &mut ch, chat_id)
            }
            None => self.ensure_seq(&mut ch, chat_id),
        };
        if let Some(first) = before_replay {
            conn.queue.push(Outgoing::text(first(current).to_string()));
        }
        if let Some(resume) = resume {
            self.replay_into(conn, chat_id, resume, current);
        } else if let (true, Some(run)) = (snapshot, &ch.run) {
            conn.queue.push(Outgoing::text(mark_replayed(&run.started)));
            if let Some(p) = &run.progress {
                conn.queue.push(Outgoing::text(mark_replayed(p)));
            }
        }
        if !ch.subscribers.iter().any(|(id, _)| *id == conn.id) {
            ch.subscribers.push((conn.id, conn.queue.clone()));
        }
        Ok(current)
    }

    /// Gives up the path chat's reservation of a connection that did not subscribe to it (e.g. forbidden).
    pub fn release_reservation(&self, conn: &Connection) {
        if let Some(entry) = lock(&self.registry).conns.get_mut(&conn.id) {
            entry.reserved_chat = None;
        }
    }

    /// Replaces all subscriptions of `conn` by none.
    pub fn unsubscribe_all(&self, conn: &Connection) {
        for chat in conn.subscriptions() {
            self.unsubscribe(conn, &chat);
        }
    }

    /// Removes one subscription (idempotent).
    pub fn unsubscribe(&self, conn: &Connection, chat_id: &str) {
        if let Some(entry) = lock(&self.registry).conns.get_mut(&conn.id) {
            entry.subscriptions.retain(|s| s != chat_id);
        }
        self.remove_subscriber(chat_id, conn.id);
    }

    fn remove_subscriber(&self, chat_id: &str, conn_id: u64) {
        let channel = self.channel(chat_id);
        let mut ch = lock(&channel);
        ch.subscribers.retain(|(id, _)| *id != conn_id);
        self.unwatch_if_idle(&mut ch, chat_id);
    }

    /// websocket.md C.6 steps 2–4, called with the chat's lock held.
    fn replay_into(&self, conn: &Connection, chat_id: &str, resume: &Resume, current: u64) {
        let log = self.event_log();
        let epoch = log.epoch();
        let oldest = log.oldest_seq(chat_id).ok().flatten().unwrap_or(current + 1);
        let resync = |reason: ResyncReason| {
            ResyncRequired {
                chat_id: chat_id.to_string(),
                requested_seq: resume.last_seq,
                oldest_seq: oldest,
                current_seq: current,
                epoch: epoch.clone(),
                reason,
            }
            .to_json()
        };
        let from = if resume.last_seq > current {
            conn.send(&resync(ResyncReason::Ahead));
            None
        } else if resume.epoch.as_deref().is_some_and(|e| e != epoch) {
            conn.send(&resync(ResyncReason::EpochMismatch));
            None
        } else if resume.last_seq + 1 < oldest && resume.last_seq < current {
            conn.send(&resync(ResyncReason::Expired));
            Some(oldest.saturating_sub(1))
        } else {
            Some(resume.last_seq)
        };
        let mut count = 0u64;
        let mut first = None;
        let mut last = None;
        if let Some(after) = from {
            match log.events_after(chat_id, after, usize::MAX) {
                Ok(events) => {
                    // Newer events (other nodes keep appending) follow live, after `current`.
                    for (seq, text) in events.into_iter().filter(|(seq, _)| *seq <= current) {
                        let replayed = mark_replayed(&text);
                        conn.queue.push(Outgoing::text(replayed));
                        first.get_or_insert(seq);
                        last = Some(seq);
                        count += 1;
                    }
                }
                Err(e) => ::log::error!("event log: replay of chat {chat_id} failed: {e}"),
            }
        }
        self.counters.events_replayed.fetch_add(count, Ordering::Relaxed);
        let from_seq = first.unwrap_or(from.unwrap_or(current) + 1);
        let complete =
            ReplayComplete { chat_id: chat_id.to_string(), from_seq, to_seq: last.unwrap_or(current), count };
        conn.send(&complete.to_json());
    }

    /// Publishes one of the protocol's chat events (`events::wire`), see [`Hub::publish`].
    pub fn publish_event<E: WireMessage>(&self, chat_id: &str, event: &E) -> (u64, ByteString) {
        debug_assert!(E::SCOPE == wire::Scope::Chat, "{} is not a chat event", E::TYPE);
        self.publish(chat_id, event.to_json())
    }

    /// Publishes a chat-scoped event: assigns `seq`, stamps `chat_id`/`timestamp` if absent, appends it to
    /// the log, then enqueues it to every subscriber. Returns the stored JSON text and its `seq`.
    pub fn publish(&self, chat_id: &str, event: Value) -> (u64, ByteString) {
        let mut map = match event {
            Value::Object(m) => m,
            other => {
                let mut m = Map::new();
                m.insert("data".into(), other);
                m
            }
        };
        map.entry("chat_id").or_insert_with(|| Value::String(chat_id.to_string()));
        map.entry("timestamp").or_insert_with(|| Value::String(now_rfc3339()));
        if let Some(bus) = self.bus.get() {
            return self.publish_clustered(bus, chat_id, map);
        }
        let channel = self.channel(chat_id);
        let mut ch = lock(&channel);
        let seq = self.ensure_seq(&mut ch, chat_id) + 1;
        ch.last_seq = Some(seq);
        map.insert("seq".into(), Value::from(seq));
        let event_type = map.get("type").and_then(Value::as_str).unwrap_or("event").to_string();
        let coalesce_key = (event_type == "progress")
            .then(|| map.get("step_id").and_then(Value::as_str).map(|s| (Arc::from(chat_id), Arc::from(s))))
            .flatten();
        let job_id = map.get("job_id").and_then(Value::as_str).map(str::to_string);
        let text = ByteString::from(Value::Object(map).to_string());
        track_run(&mut ch.run, &event_type, job_id, &text);
        if let Err(e) = self.event_log().append(chat_id, seq, &event_type, &text) {
            // Live delivery still happens; the loss is limited to replay and is logged loudly.
            ::log::error!("event log: cannot persist event seq={seq} of chat {chat_id}: {e}");
        }
        self.count_published(event_type);
        self.fan_out(&mut ch, Outgoing { text: text.clone(), coalesce_key });
        (seq, text)
    }

    fn count_published(&self, event_type: String) {
        self.counters.events_published.fetch_add(1, Ordering::Relaxed);
        // Types come from code, but stay bounded even if a caller invents them.
        let mut by_type = lock(&self.counters.published_by_type);
        let key =
            if by_type.contains_key(&event_type) || by_type.len() < 64 { event_type } else { "other".into() };
        *by_type.entry(key).or_insert(0) += 1;
    }

    /// Enqueues one event to every subscriber of the chat, dropping those that are closed or too slow.
    fn fan_out(&self, ch: &mut ChatChannel, outgoing: Outgoing) {
        ch.subscribers.retain(|(_, queue)| match queue.push(outgoing.clone()) {
            Push::Queued { coalesced } => {
                self.counters.progress_coalesced.fetch_add(coalesced as u64, Ordering::Relaxed);
                true
            }
            Push::SlowConsumer => {
                self.counters.slow_consumer_closes.fetch_add(1, Ordering::Relaxed);
                false
            }
            Push::Closed => false,
        });
    }

    /// Cluster mode: the log numbers and stores the event atomically (other nodes append too); it is
    /// delivered here at once, after anything of other nodes still missing, then handed to the bus.
    fn publish_clustered(
        &self,
        bus: &bus::Bus,
        chat_id: &str,
        mut map: Map<String, Value>,
    ) -> (u64, ByteString) {
        let event_type = map.get("type").and_then(Value::as_str).unwrap_or("event").to_string();
        let channel = self.channel(chat_id);
        let mut ch = lock(&channel);
        let appended = self.event_log().append_next(chat_id, &event_type, &mut |seq| {
            map.insert("seq".into(), Value::from(seq));
            serde_json::to_string(&map).unwrap_or_default()
        });
        let (seq, text) = match appended {
            Ok((seq, text)) => (seq, ByteString::from(text)),
            Err(e) => {
                // Without a committed seq the event cannot be numbered consistently across nodes.
                ::log::error!(
                    "event log: cannot append a {event_type} event of chat {chat_id}, not delivered: {e}"
                );
                return (0, ByteString::from(Value::Object(map).to_string()));
            }
        };
        self.count_published(event_type.clone());
        match ch.cursor {
            Some(cursor) if seq == cursor + 1 => {
                self.deliver_locked(&mut ch, seq, &text);
            }
            Some(cursor) if seq > cursor + 1 => {
                // Events of other nodes not received yet: the log has them, and ours.
                let repaired = self.catch_up_locked(&mut ch, chat_id);
                bus.count_repair(true, repaired.saturating_sub(1));
            }
            Some(_) => {}
            None => {
                let job_id = map.get("job_id").and_then(Value::as_str).map(str::to_string);
                track_run(&mut ch.run, &event_type, job_id, &text);
            }
        }
        // Under the chat's lock, so this node's events of one chat enter Redis in `seq` order.
        bus.publish(chat_id, seq, &text);
        (seq, text)
    }

    /// Cluster mode: delivers an event that arrived from the bus, repairing a gap from the log first.
    /// Called by the bus's delivery thread (it may read the log).
    fn deliver_remote(&self, chat_id: &str, seq: u64, text: &str) {
        let Some(channel) = lock(&self.chats).get(chat_id).cloned() else { return };
        let deleted = {
            let mut ch = lock(&channel);
            let Some(cursor) = ch.cursor else { return };
            if seq <= cursor {
                // Already delivered (from the log, or a repeated publish).
                return;
            }
            if seq == cursor + 1 {
                self.deliver_locked(&mut ch, seq, &ByteString::from(text))
            } else {
                // Something between was lost on the way: the log has it (and this one, committed earlier).
                let repaired = self.catch_up_locked(&mut ch, chat_id);
                if let Some(bus) = self.bus.get() {
                    bus.count_repair(true, repaired.saturating_sub(1));
                }
                ch.cursor.is_none() && repaired > 0
            }
        };
        if deleted {
            self.close_chat(chat_id, queue::CLOSE_INVALID_SESSION, "conversation deleted");
        }
    }

    /// Cluster mode: delivers whatever the log holds beyond the chat's cursor (subscription confirmed,
    /// reconnect, position check). Blocks on the log.
    fn catch_up(&self, chat_id: &str) {
        let Some(channel) = lock(&self.chats).get(chat_id).cloned() else { return };
        let (repaired, deleted) = {
            let mut ch = lock(&channel);
            if ch.cursor.is_none() {
                return;
            }
            let repaired = self.catch_up_locked(&mut ch, chat_id);
            (repaired, repaired > 0 && ch.cursor.is_none())
        };
        if let Some(bus) = self.bus.get() {
            bus.count_repair(false, repaired);
        }
        if deleted {
            self.close_chat(chat_id, queue::CLOSE_INVALID_SESSION, "conversation deleted");
        }
    }

    /// Reads the log after the cursor and delivers it in order; returns how many events were delivered.
    /// A delivered `conversation_deleted` leaves the cursor `None` (the caller then closes the chat). When
    /// the log no longer holds what is missing (trimmed, or the chat's history was reset), the subscribers
    /// are closed with 4008 so that they resume, and get `resync_required` as usual.
    fn catch_up_locked(&self, ch: &mut ChatChannel, chat_id: &str) -> usize {
        let Some(cursor) = ch.cursor else { return 0 };
        let log = self.event_log();
        let events = match log.events_after(chat_id, cursor, usize::MAX) {
            Ok(events) => events,
            Err(e) => {
                ::log::error!("event log: cannot read events of chat {chat_id} after {cursor}: {e}");
                return 0;
            }
        };
        let reset = match events.first() {
            Some((first, _)) => *first > cursor + 1,
            None => log.last_seq(chat_id).is_ok_and(|last| last < cursor),
        };
        if reset {
            ::log::warn!(
                "cluster bus: chat {chat_id} cannot be repaired from the log; its clients must resume"
            );
            for (_, queue) in ch.subscribers.drain(..) {
                queue.close(CloseReason::new(queue::CLOSE_SLOW_CONSUMER, "resume required"));
            }
            self.unwatch_if_idle(ch, chat_id);
            return 0;
        }
        let mut delivered = 0;
        for (seq, text) in events {
            if ch.cursor != Some(seq - 1) {
                break;
            }
            let deleted = self.deliver_locked(ch, seq, &ByteString::from(&*text));
            delivered += 1;
            if deleted {
                break;
            }
        }
        delivered
    }

    /// Cluster mode: delivers the event right after the cursor; returns true for `conversation_deleted`
    /// (the cursor is then cleared: nothing after it belongs to this conversation).
    fn deliver_locked(&self, ch: &mut ChatChannel, seq: u64, text: &ByteString) -> bool {
        let meta = EventMeta::of(text);
        track_run(&mut ch.run, &meta.event_type, meta.job_id, text);
        let coalesce_key = (meta.event_type == "progress")
            .then(|| meta.step_id.map(|s| (Arc::from(meta.chat_id.as_str()), Arc::from(s.as_str()))))
            .flatten();
        self.fan_out(ch, Outgoing { text: text.clone(), coalesce_key });
        ch.cursor = Some(seq);
        if meta.event_type == "conversation_deleted" {
            ch.cursor = None;
            return true;
        }
        false
    }

    /// Cluster mode: the chat's cursor, starting to watch it (and rebuilding a running job's snapshot from
    /// the log) when this is its first local subscriber.
    fn watch_locked(&self, bus: &bus::Bus, ch: &mut ChatChannel, chat_id: &str) -> u64 {
        if let Some(cursor) = ch.cursor {
            return cursor;
        }
        let log = self.event_log();
        let current = log.last_seq(chat_id).unwrap_or_else(|e| {
            ::log::error!("event log: cannot read last seq of chat {chat_id}: {e}");
            0
        });
        ch.run = None;
        let window = current.saturating_sub(RUN_SNAPSHOT_WINDOW as u64);
        for (_, text) in log.events_after(chat_id, window, RUN_SNAPSHOT_WINDOW).unwrap_or_default() {
            let meta = EventMeta::of(&text);
            track_run(&mut ch.run, &meta.event_type, meta.job_id, &ByteString::from(&*text));
        }
        ch.cursor = Some(current);
        bus.watch(chat_id);
        current
    }

    /// Cluster mode: stops watching a chat whose last local subscriber is gone.
    fn unwatch_if_idle(&self, ch: &mut ChatChannel, chat_id: &str) {
        if let Some(bus) = self.bus.get() {
            if ch.subscribers.is_empty() && ch.cursor.take().is_some() {
                bus.unwatch(chat_id);
            }
        }
    }

    /// Closes every connection whose subscriptions include `chat_id`: those subscribed to it alone are
    /// closed with `code`, the others just lose the subscription (websocket.md C.5 `conversation_deleted`).
    pub fn close_chat(&self, chat_id: &str, code: u16, reason: &str) {
        let ids: Vec<(u64, Arc<SendQueue>, bool)> = lock(&self.registry)
            .conns
            .iter_mut()
            .filter(|(_, c)| c.subscriptions.iter().any(|s| s == chat_id))
            .map(|(id, c)| {
                c.subscriptions.retain(|s| s != chat_id);
                (*id, c.queue.clone(), c.subscriptions.is_empty())
            })
            .collect();
        let channel = self.channel(chat_id);
        {
            let mut ch = lock(&channel);
            ch.subscribers.clear();
            ch.cursor = None;
            if let Some(bus) = self.bus.get() {
                bus.unwatch(chat_id);
            }
        }
        for (_, queue, only) in ids {
            if only {
                queue.close(CloseReason::new(code, reason));
            }
        }
        lock(&self.chats).remove(chat_id);
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// websocket.md C.14: refuse new connections, tell every client, let queues drain, close with 1001.
    pub async fn shutdown(&self, grace: Duration) {
        if self.shutting_down.swap(true, Ordering::SeqCst) {
            return;
        }
        let queues: Vec<Arc<SendQueue>> =
            lock(&self.registry).conns.values().map(|c| c.queue.clone()).collect();
        let notice = ServerShutdown { reconnect_after_ms: RECONNECT_AFTER_MS }.to_json().to_string();
        for q in &queues {
            q.push(Outgoing::text(notice.clone()));
            q.close(CloseReason::new(queue::CLOSE_GOING_AWAY, "server shutting down"));
        }
        let deadline = tokio::time::Instant::now() + grace;
        while tokio::time::Instant::now() < deadline && !lock(&self.registry).conns.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Connection and event counters for health details and metrics (websocket.md C.16).
    pub fn stats(&self) -> Value {
        let reg = lock(&self.registry);
        let bound = reg.conns.values().filter(|c| !c.subscriptions.is_empty()).count();
        let subscriptions: usize = reg.conns.values().map(|c| c.subscriptions.len()).sum();
        let c = &self.counters;
        let high_water = reg
            .conns
            .values()
            .map(|c| c.queue.high_water() as u64)
            .max()
            .unwrap_or(0)
            .max(c.queue_high_water.load(Ordering::Relaxed));
        let by_type: Map<String, Value> =
            lock(&c.published_by_type).iter().map(|(k, v)| (k.clone(), Value::from(*v))).collect();
        let mut stats = json!({
            "connections": reg.conns.len(),
            "connections_bound": bound,
            "connections_unbound": reg.conns.len() - bound,
            "subscriptions": subscriptions,
            "connections_opened_total": c.connections_opened.load(Ordering::Relaxed),
            "connections_refused_total": c.refused_connections.load(Ordering::Relaxed),
            "events_published_total": c.events_published.load(Ordering::Relaxed),
            "events_published_by_type": by_type,
            "events_replayed_total": c.events_replayed.load(Ordering::Relaxed),
            "progress_coalesced_total": c.progress_coalesced.load(Ordering::Relaxed),
            "slow_consumer_closes_total": c.slow_consumer_closes.load(Ordering::Relaxed),
            "rate_limited_total": c.rate_limited.load(Ordering::Relaxed),
            "auth_rejections_total": c.auth_rejections.load(Ordering::Relaxed),
            "origin_rejections_total": c.origin_rejections.load(Ordering::Relaxed),
            "queue_high_water_mark": high_water,
        });
        if let Some(bus) = self.bus.get() {
            stats["cluster_bus"] = bus.stats();
        }
        stats
    }
}

/// Keeps the chat's running job's `workflow_started` and newest `progress` for the C.6 snapshot.
fn track_run(run: &mut Option<RunSnapshot>, event_type: &str, job_id: Option<String>, text: &ByteString) {
    let Some(job_id) = job_id else { return };
    match event_type {
        "workflow_started" => *run = Some(RunSnapshot { job_id, started: text.clone(), progress: None }),
        "progress" => {
            if let Some(r) = run.as_mut().filter(|r| r.job_id == job_id) {
                r.progress = Some(text.clone());
            }
        }
        "workflow_completed" | "workflow_failed" if run.as_ref().is_some_and(|r| r.job_id == job_id) => {
            *run = None;
        }
        _ => {}
    }
}

/// What delivery needs to know of a stored event's JSON.
struct EventMeta {
    event_type: String,
    chat_id: String,
    step_id: Option<String>,
    job_id: Option<String>,
}

impl EventMeta {
    fn of(text: &str) -> EventMeta {
        let value: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        let field = |k: &str| value.get(k).and_then(Value::as_str).map(str::to_string);
        EventMeta {
            event_type: field("type").unwrap_or_else(|| "event".into()),
            chat_id: field("chat_id").unwrap_or_default(),
            step_id: field("step_id"),
            job_id: field("job_id"),
        }
    }
}

/// Adds `"replayed": true` to a stored event's JSON text.
fn mark_replayed(text: &str) -> String {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(mut m)) => {
            m.insert("replayed".into(), Value::Bool(true));
            Value::Object(m).to_string()
        }
        _ => text.to_string(),
    }
}

/// Bounded in-memory history used when no durable log is installed (and by unit tests).
pub(crate) type History = VecDeque<(u64, Arc<str>)>;

#[cfg(test)]
mod tests {
    use super::*;

    fn hub_with_chat_cap(cap: u64) -> Arc<Hub> {
        let mut config = Config::default();
        config.chat_workflows.websocket.max_connections_per_chat = cap;
        Arc::new(Hub::new(Arc::new(config)))
    }

    #[test]
    fn a_connect_reserves_its_chat_against_the_per_chat_cap() {
        let hub = hub_with_chat_cap(1);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let connect = |chat: &str| hub.connect(ip, Some(chat), hub.new_send_queue()).map_err(|(_, r)| r);
        let first = connect("abc").unwrap();
        // Not subscribed yet, but the slot is taken: a simultaneous second connect is refused.
        assert_eq!(connect("abc").err(), Some(Refusal::MaxConnectionsPerChat));
        hub.subscribe(&first, "abc", None, None, false).unwrap();
        assert_eq!(connect("abc").err(), Some(Refusal::MaxConnectionsPerChat));
        assert!(connect("other").is_ok(), "the cap is per chat");
        drop(first);
        let again = connect("abc").expect("the slot is free once the first one is gone");
        // A reservation that is given up (the chat was forbidden) frees the slot too.
        hub.release_reservation(&again);
        assert!(connect("abc").is_ok());
    }
}
