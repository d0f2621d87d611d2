//! Cluster fan-out over Redis pub/sub (cluster mode). Each node publishes every event it has committed to the
//! shared event log, and subscribes only to the chats its own connections watch; the hub merges what arrives
//! by `seq` (`Hub::deliver_remote`). Pub/sub is at-most-once, so the event log stays the truth: a `seq` gap,
//! a lost or re-established Redis connection, an overflowing inbox or the periodic position check make the
//! hub re-read the missing range from the log before it delivers anything newer.
//!
//! Channels: one per chat, `oxcelize:chat:<chat_id>` (chat ids are `[A-Za-z0-9_-]`), so Redis routes a message
//! only to the nodes that watch that chat. A message is a header line `<seq> <sent_unix_micros> <node_id>`
//! followed by the event's JSON exactly as stored in the log.
//!
//! Three workers per node: the supervisor task (PING, connection state, reconciles the Redis subscriptions
//! with the watched chats and asks for a catch-up once a subscription is confirmed), the publisher task
//! (drains the bounded outbox in pipelined batches) and the delivery thread (merges messages by `seq`, reads
//! the log for repairs; it blocks on the log, so it is a plain thread rather than a task).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{IntoConnectionInfo, ProtocolVersion, PushInfo, PushKind};
use serde_json::{json, Value};

use super::Hub;
use crate::config::Config;

/// Prefix of every chat channel.
pub const CHANNEL_PREFIX: &str = "oxcelize:chat:";
/// Events waiting to be published; when Redis is away longer than this absorbs, the rest is dropped (and
/// counted): the other nodes repair from the log.
const OUTBOX_CAPACITY: usize = 8192;
/// Messages received and not yet merged; an overflow makes the node catch every watched chat up from the log.
const INBOX_CAPACITY: usize = 16384;
const PUBLISH_BATCH: usize = 128;
/// A publish still failing after this long is given up: by then the receivers have repaired from the log.
const PUBLISH_GIVE_UP: Duration = Duration::from_secs(30);
const PUBLISH_RETRY: Duration = Duration::from_millis(200);
/// Time limit of one Redis call (connect, PING, PUBLISH batch, SUBSCRIBE).
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the supervisor checks the connection and reconciles subscriptions (also woken on changes).
const SUPERVISE_EVERY: Duration = Duration::from_millis(500);
const SUBSCRIBE_CHUNK: usize = 256;
/// Position check of every watched chat against the log: the safety net for a message lost without the
/// connection dropping (e.g. its publisher died between commit and publish) ...
const CHECK_WHILE_CONNECTED: Duration = Duration::from_secs(10);
/// ... and, while Redis is unreachable, how other nodes' events keep arriving (polled from the log).
const CHECK_WHILE_DISCONNECTED: Duration = Duration::from_secs(1);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn channel_name(chat_id: &str) -> String {
    format!("{CHANNEL_PREFIX}{chat_id}")
}

fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

struct Outbound {
    channel: String,
    payload: String,
    queued_at: Instant,
}

enum Inbound {
    Message {
        channel: Vec<u8>,
        payload: Vec<u8>,
    },
    /// These chats' subscriptions were (re)confirmed: whatever was published before is read from the log.
    CatchUp(Vec<String>),
}

#[derive(Default)]
struct BusCounters {
    published: AtomicU64,
    publish_failures: AtomicU64,
    dropped: AtomicU64,
    received: AtomicU64,
    gap_repairs: AtomicU64,
    events_repaired: AtomicU64,
    reconnects: AtomicU64,
    inbox_overflows: AtomicU64,
}

/// State shared by the `Bus` handle, its workers and the push callback of the Redis connection.
struct Shared {
    node_id: String,
    /// Chats with at least one local subscriber (what this node should be subscribed to).
    watched: Mutex<HashSet<String>>,
    changed: tokio::sync::Notify,
    /// A disconnection was seen: the supervisor must subscribe again to everything.
    lost: AtomicBool,
    connected: AtomicBool,
    overflowed: AtomicBool,
    last_error: Mutex<Option<String>>,
    inbox: SyncSender<Inbound>,
    counters: BusCounters,
    lag: Histogram,
}

impl Shared {
    fn disconnected(&self, why: String) {
        if self.connected.swap(false, Ordering::SeqCst) {
            ::log::warn!("cluster bus: lost Redis ({why}); delivering from the event log until it is back");
        }
        *lock(&self.last_error) = Some(why);
    }

    fn send_inbound(&self, message: Inbound) {
        match self.inbox.try_send(message) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(_)) => {
                self.counters.inbox_overflows.fetch_add(1, Ordering::Relaxed);
                self.overflowed.store(true, Ordering::SeqCst);
            }
        }
    }

    /// The Redis connection's push callback: runs on its reader, so it only forwards.
    fn on_push(&self, push: PushInfo) {
        match push.kind {
            PushKind::Message => {
                let mut data = push.data.into_iter();
                if let (Some(redis::Value::BulkString(channel)), Some(redis::Value::BulkString(payload))) =
                    (data.next(), data.next())
                {
                    self.send_inbound(Inbound::Message { channel, payload });
                }
            }
            PushKind::Disconnection => {
                self.lost.store(true, Ordering::SeqCst);
                self.disconnected("connection closed".into());
                self.changed.notify_one();
            }
            _ => {}
        }
    }
}

/// This node's connection to the cluster bus.
pub struct Bus {
    manager: ConnectionManager,
    outbox: tokio::sync::mpsc::Sender<Outbound>,
    shared: Arc<Shared>,
    /// Taken by `start`.
    pending: Mutex<Option<(Receiver<Inbound>, tokio::sync::mpsc::Receiver<Outbound>)>>,
}

impl Bus {
    /// Connects to `cluster.redis_url` (RESP3, reconnecting) and checks it answers; the error names the key.
    pub async fn connect(config: &Config) -> Result<Arc<Bus>, String> {
        let url = &config.cluster.redis_url;
        let fail = |what: &str| format!("cluster.redis_url: {what}");
        let info =
            url.as_str().into_connection_info().map_err(|e| fail(&format!("invalid Redis URL: {e}")))?;
        let shown = info.addr().to_string();
        let settings = info.redis_settings().clone().set_protocol(ProtocolVersion::RESP3);
        let client = redis::Client::open(info.set_redis_settings(settings))
            .map_err(|e| fail(&format!("invalid Redis URL: {e}")))?;
        let (inbox, inbox_rx) = std::sync::mpsc::sync_channel(INBOX_CAPACITY);
        let shared = Arc::new(Shared {
            node_id: config.node_id(),
            watched: Mutex::new(HashSet::new()),
            changed: tokio::sync::Notify::new(),
            lost: AtomicBool::new(false),
            connected: AtomicBool::new(true),
            overflowed: AtomicBool::new(false),
            last_error: Mutex::new(None),
            inbox,
            counters: BusCounters::default(),
            // 0.5 ms … ~16 s.
            lag: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
        });
        let pushes = Arc::downgrade(&shared);
        let manager_config = ConnectionManagerConfig::new()
            .set_push_sender(move |push: PushInfo| -> Result<(), std::convert::Infallible> {
                if let Some(shared) = pushes.upgrade() {
                    shared.on_push(push);
                }
                Ok(())
            })
            .set_connection_timeout(Some(CALL_TIMEOUT))
            .set_response_timeout(Some(CALL_TIMEOUT))
            // The supervisor's PING drives further attempts; keep each reconnect short.
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let unreachable = |e: String| fail(&format!("cannot reach Redis at {shown}: {e}"));
        let mut manager =
            tokio::time::timeout(CALL_TIMEOUT * 3, client.get_connection_manager_with_config(manager_config))
                .await
                .map_err(|_| unreachable("timed out".into()))?
                .map_err(|e| unreachable(e.to_string()))?;
        let _: String = tokio::time::timeout(CALL_TIMEOUT, redis::cmd("PING").query_async(&mut manager))
            .await
            .map_err(|_| unreachable("PING timed out".into()))?
            .map_err(|e| unreachable(e.to_string()))?;
        warn_unless_noeviction(&mut manager).await;
        ::log::info!("cluster bus: connected to Redis at {shown} as node {}", shared.node_id);
        let (outbox, outbox_rx) = tokio::sync::mpsc::channel(OUTBOX_CAPACITY);
        Ok(Arc::new(Bus { manager, outbox, shared, pending: Mutex::new(Some((inbox_rx, outbox_rx))) }))
    }

    /// Starts the workers on the current runtime; `hub` receives what arrives.
    pub(super) fn start(self: &Arc<Self>, hub: Weak<Hub>) {
        let Some((inbox_rx, outbox_rx)) = lock(&self.pending).take() else { return };
        // Ends with the runtime's tasks: the delivery thread stops once this is gone.
        let alive = Arc::new(());
        let thread_alive = Arc::downgrade(&alive);
        tokio::spawn(publish_loop(outbox_rx, self.manager.clone(), self.shared.clone()));
        tokio::spawn(supervise(Arc::downgrade(self), self.shared.clone(), alive));
        let shared = self.shared.clone();
        let runtime = tokio::runtime::Handle::current();
        let spawned = std::thread::Builder::new().name("oxcelize-bus".into()).spawn(move || {
            // Log implementations that wait on the runtime (PostgreSQL) find it from here.
            let _entered = runtime.enter();
            delivery_loop(hub, inbox_rx, shared, thread_alive);
        });
        if let Err(e) = spawned {
            ::log::error!("cluster bus: cannot start the delivery thread: {e}");
        }
    }

    /// Queues a committed event for the other nodes (never blocks; a full outbox drops and counts it).
    pub(super) fn publish(&self, chat_id: &str, seq: u64, text: &str) {
        let payload = format!("{seq} {} {}\n{text}", now_micros(), self.shared.node_id);
        let message = Outbound { channel: channel_name(chat_id), payload, queued_at: Instant::now() };
        if let Err(tokio::sync::mpsc::error::TrySendError::Full(_)) = self.outbox.try_send(message) {
            self.shared.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The first local subscriber of `chat_id` arrived.
    pub(super) fn watch(&self, chat_id: &str) {
        if lock(&self.shared.watched).insert(chat_id.to_string()) {
            self.shared.changed.notify_one();
        }
    }

    /// The last local subscriber of `chat_id` left.
    pub(super) fn unwatch(&self, chat_id: &str) {
        if lock(&self.shared.watched).remove(chat_id) {
            self.shared.changed.notify_one();
        }
    }

    /// A repair read events from the log; `gap` when a `seq` gap triggered it.
    pub(super) fn count_repair(&self, gap: bool, events: usize) {
        let c = &self.shared.counters;
        if gap || events > 0 {
            c.gap_repairs.fetch_add(1, Ordering::Relaxed);
        }
        c.events_repaired.fetch_add(events as u64, Ordering::Relaxed);
    }

    pub fn node_id(&self) -> &str {
        &self.shared.node_id
    }

    pub fn is_connected(&self) -> bool {
        self.shared.connected.load(Ordering::SeqCst)
    }

    /// Bus figures for the health details.
    pub fn stats(&self) -> Value {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        json!({
            "node_id": self.shared.node_id,
            "redis_connected": self.is_connected(),
            "watched_chats": lock(&self.shared.watched).len(),
            "events_published_total": get(&c.published),
            "publish_failures_total": get(&c.publish_failures),
            "events_dropped_total": get(&c.dropped),
            "events_received_total": get(&c.received),
            "gap_repairs_total": get(&c.gap_repairs),
            "events_repaired_total": get(&c.events_repaired),
            "reconnects_total": get(&c.reconnects),
            "inbox_overflows_total": get(&c.inbox_overflows),
        })
    }

    /// Adds the bus lag histogram and the bus counters to `/metrics`.
    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register_with_unit(
            "bus_lag",
            "Time from commit on the publishing node to receipt from Redis here (includes clock skew)",
            Unit::Seconds,
            self.shared.lag.clone(),
        );
        registry.register_collector(Box::new(BusCollector(self.shared.clone())));
    }
}

/// `GET {prefix}/health/ready` reports whether Redis answers the supervisor's PING.
pub struct RedisProbe(pub Arc<Bus>);

impl crate::ReadinessProbe for RedisProbe {
    fn name(&self) -> &str {
        "redis"
    }

    fn check(&self) -> Result<(), String> {
        if self.0.is_connected() {
            Ok(())
        } else {
            let why = lock(&self.0.shared.last_error).clone().unwrap_or_else(|| "disconnected".into());
            Err(format!("Redis unreachable ({why}); events of other nodes arrive from the event log"))
        }
    }
}

/// Redis evicting keys under memory pressure would break the cluster's guarantees; say so at start.
async fn warn_unless_noeviction(manager: &mut ConnectionManager) {
    let policy: Result<Result<Vec<String>, _>, _> = tokio::time::timeout(
        CALL_TIMEOUT,
        redis::cmd("CONFIG").arg("GET").arg("maxmemory-policy").query_async(manager),
    )
    .await;
    match policy {
        Ok(Ok(pair)) => {
            if let Some(p) = pair.get(1).filter(|p| p.as_str() != "noeviction") {
                ::log::warn!("cluster bus: Redis maxmemory-policy is {p}; the cluster requires noeviction");
            }
        }
        // Managed services often refuse CONFIG: nothing to check then.
        _ => ::log::debug!("cluster bus: cannot read Redis maxmemory-policy"),
    }
}

async fn publish_loop(
    mut outbox: tokio::sync::mpsc::Receiver<Outbound>,
    mut conn: ConnectionManager,
    shared: Arc<Shared>,
) {
    let mut batch = Vec::with_capacity(PUBLISH_BATCH);
    while outbox.recv_many(&mut batch, PUBLISH_BATCH).await > 0 {
        loop {
            let mut pipe = redis::pipe();
            for m in &batch {
                pipe.cmd("PUBLISH").arg(&m.channel).arg(m.payload.as_bytes()).ignore();
            }
            match tokio::time::timeout(CALL_TIMEOUT, pipe.query_async::<()>(&mut conn)).await {
                Ok(Ok(())) => {
                    shared.counters.published.fetch_add(batch.len() as u64, Ordering::Relaxed);
                    break;
                }
                failed => {
                    let why = match failed {
                        Ok(Err(e)) => e.to_string(),
                        _ => "timed out".into(),
                    };
                    shared.counters.publish_failures.fetch_add(1, Ordering::Relaxed);
                    ::log::debug!("cluster bus: publish failed ({why}), retrying");
                    let before = batch.len();
                    batch.retain(|m| m.queued_at.elapsed() < PUBLISH_GIVE_UP);
                    shared.counters.dropped.fetch_add((before - batch.len()) as u64, Ordering::Relaxed);
                    if batch.is_empty() {
                        break;
                    }
                    tokio::time::sleep(PUBLISH_RETRY).await;
                }
            }
        }
        batch.clear();
    }
}

/// Watches the connection and keeps the Redis subscriptions equal to the watched chats.
async fn supervise(bus: Weak<Bus>, shared: Arc<Shared>, _alive: Arc<()>) {
    // What Redis has confirmed on the current connection.
    let mut subscribed: HashSet<String> = HashSet::new();
    loop {
        tokio::select! {
            _ = shared.changed.notified() => {}
            _ = tokio::time::sleep(SUPERVISE_EVERY) => {}
        }
        let Some(mut conn) = bus.upgrade().map(|b| b.manager.clone()) else { return };
        let lost = shared.lost.swap(false, Ordering::SeqCst);
        if lost {
            // Those subscriptions went with the old connection.
            subscribed.clear();
        }
        let ping =
            tokio::time::timeout(CALL_TIMEOUT, redis::cmd("PING").query_async::<String>(&mut conn)).await;
        match ping {
            Ok(Ok(_)) => {}
            failed => {
                let why = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "PING timed out".into(),
                };
                shared.disconnected(why);
                shared.lost.store(true, Ordering::SeqCst);
                continue;
            }
        }
        let was_connected = shared.connected.swap(true, Ordering::SeqCst);
        if lost || !was_connected {
            shared.counters.reconnects.fetch_add(1, Ordering::Relaxed);
            ::log::info!("cluster bus: Redis connection re-established; repairing from the event log");
        }
        let watched: HashSet<String> = lock(&shared.watched).clone();
        let to_add: Vec<String> = watched.difference(&subscribed).cloned().collect();
        let to_remove: Vec<String> = subscribed.difference(&watched).cloned().collect();
        for chunk in to_add.chunks(SUBSCRIBE_CHUNK) {
            let channels: Vec<String> = chunk.iter().map(|c| channel_name(c)).collect();
            match tokio::time::timeout(CALL_TIMEOUT, conn.subscribe(&channels)).await {
                Ok(Ok(())) => {
                    subscribed.extend(chunk.iter().cloned());
                    shared.send_inbound(Inbound::CatchUp(chunk.to_vec()));
                }
                failed => {
                    // Retried on the next round (they are still missing from `subscribed`).
                    let why = match failed {
                        Ok(Err(e)) => e.to_string(),
                        _ => "timed out".into(),
                    };
                    ::log::warn!("cluster bus: SUBSCRIBE failed: {why}");
                    break;
                }
            }
        }
        for chunk in to_remove.chunks(SUBSCRIBE_CHUNK) {
            let channels: Vec<String> = chunk.iter().map(|c| channel_name(c)).collect();
            if let Ok(Ok(())) = tokio::time::timeout(CALL_TIMEOUT, conn.unsubscribe(&channels)).await {
                chunk.iter().for_each(|c| {
                    subscribed.remove(c);
                });
            }
        }
    }
}

/// Merges what Redis delivers into the hub, in `seq` order per chat, and runs the position checks.
fn delivery_loop(hub: Weak<Hub>, inbox: Receiver<Inbound>, shared: Arc<Shared>, alive: Weak<()>) {
    let mut last_check = Instant::now();
    loop {
        if alive.strong_count() == 0 {
            return;
        }
        let message = inbox.recv_timeout(Duration::from_millis(250));
        let Some(hub) = hub.upgrade() else { return };
        match message {
            Ok(Inbound::Message { channel, payload }) => on_message(&hub, &shared, &channel, &payload),
            Ok(Inbound::CatchUp(chats)) => chats.iter().for_each(|c| hub.catch_up(c)),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        let every = if shared.connected.load(Ordering::SeqCst) {
            CHECK_WHILE_CONNECTED
        } else {
            CHECK_WHILE_DISCONNECTED
        };
        if shared.overflowed.swap(false, Ordering::SeqCst) || last_check.elapsed() >= every {
            last_check = Instant::now();
            let watched: Vec<String> = lock(&shared.watched).iter().cloned().collect();
            watched.iter().for_each(|c| hub.catch_up(c));
        }
    }
}

fn on_message(hub: &Hub, shared: &Shared, channel: &[u8], payload: &[u8]) {
    let Some(chat_id) = std::str::from_utf8(channel).ok().and_then(|c| c.strip_prefix(CHANNEL_PREFIX)) else {
        return;
    };
    let Some(message) = parse_payload(payload) else {
        ::log::warn!("cluster bus: malformed message on chat {chat_id} ignored");
        return;
    };
    if message.node_id == shared.node_id {
        // Our own event: it was delivered here when it was published.
        return;
    }
    shared.counters.received.fetch_add(1, Ordering::Relaxed);
    let lag = (now_micros() - message.sent_micros).max(0) as f64 / 1e6;
    shared.lag.observe(lag);
    hub.deliver_remote(chat_id, message.seq, message.text);
}

struct Message<'a> {
    seq: u64,
    sent_micros: i64,
    node_id: &'a str,
    text: &'a str,
}

fn parse_payload(payload: &[u8]) -> Option<Message<'_>> {
    let payload = std::str::from_utf8(payload).ok()?;
    let (header, text) = payload.split_once('\n')?;
    let mut fields = header.splitn(3, ' ');
    let seq = fields.next()?.parse().ok()?;
    let sent_micros = fields.next()?.parse().ok()?;
    let node_id = fields.next()?;
    Some(Message { seq, sent_micros, node_id, text })
}

/// The bus counters on each scrape.
struct BusCollector(Arc<Shared>);

impl std::fmt::Debug for BusCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BusCollector")
    }
}

impl Collector for BusCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.0;
        let c = &s.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        for (name, help, value) in [
            ("bus_events_published", "Events this node published to Redis", get(&c.published)),
            ("bus_publish_failures", "Failed PUBLISH batches (retried)", get(&c.publish_failures)),
            (
                "bus_events_dropped",
                "Events never published (outbox full or Redis away too long)",
                get(&c.dropped),
            ),
            ("bus_events_received", "Events of other nodes received from Redis", get(&c.received)),
            ("bus_gap_repairs", "Times missing events were read from the event log", get(&c.gap_repairs)),
            (
                "bus_events_repaired",
                "Events delivered from the event log instead of Redis",
                get(&c.events_repaired),
            ),
            ("bus_reconnects", "Times the Redis connection was re-established", get(&c.reconnects)),
            ("bus_inbox_overflows", "Messages dropped because the inbox was full", get(&c.inbox_overflows)),
        ] {
            let metric = ConstCounter::new(value);
            metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)?;
        }
        let watched = lock(&s.watched).len() as i64;
        for (name, help, value) in [
            ("bus_connected", "1 while Redis answers", i64::from(s.connected.load(Ordering::SeqCst))),
            ("bus_watched_chats", "Chats this node is subscribed to", watched),
        ] {
            let metric = ConstGauge::new(value);
            metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_header_and_text_round_trip() {
        let text = "{\"type\":\"progress\",\"seq\":7}";
        let payload = format!("7 1700000000000000 node a\n{text}");
        let m = parse_payload(payload.as_bytes()).unwrap();
        assert_eq!((m.seq, m.sent_micros, m.node_id, m.text), (7, 1_700_000_000_000_000, "node a", text));
        assert!(parse_payload(b"x 1 n\n{}").is_none());
        assert!(parse_payload(b"1 2 n").is_none());
    }
}
