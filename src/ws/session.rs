//! One WebSocket connection: registration and limits, the `connected` welcome, the inbound message parser
//! (websocket.md C.11 order), subscriptions and resume, keepalive pings, idle/unbound timeouts, the rate
//! limit, and a writer task that drains the connection's bounded send queue.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::{AggregatedMessage, CloseCode, Session};
use futures_util::FutureExt;
use serde_json::{json, Map, Value};

use crate::envelope::now_rfc3339;
use crate::events::queue::{
    CloseReason, Next, CLOSE_INTERNAL, CLOSE_INVALID_SESSION, CLOSE_SLOW_CONSUMER, CLOSE_TOO_BIG,
    CLOSE_TRY_AGAIN,
};
use crate::events::{is_valid_chat_id, Connection, Hub, Refusal, Resume, SubscribeError};
use crate::AppState;

pub const CLOSE_IDLE: u16 = 4009;
pub const CLOSE_RATE_LIMITED: u16 = 4029;
const PROTOCOL_VERSION: u32 = 2;

/// What the upgrade request asked for.
#[derive(Debug, Clone)]
pub struct Handshake {
    pub path_chat: Option<String>,
    pub ip: IpAddr,
    pub resume: Option<Resume>,
}

impl Handshake {
    pub fn from_request(req: &HttpRequest, path_chat: Option<String>, ip: IpAddr) -> Handshake {
        let query: HashMap<String, String> =
            web::Query::<HashMap<String, String>>::from_query(req.query_string())
                .map(|q| q.into_inner())
                .unwrap_or_default();
        let resume = query
            .get("last_seq")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|last_seq| Resume { last_seq, epoch: query.get("epoch").cloned() });
        Handshake { path_chat, ip, resume }
    }
}

/// Completes the upgrade and spawns the connection's tasks.
pub fn accept(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
    handshake: Handshake,
) -> Result<HttpResponse, actix_web::Error> {
    let (response, session, stream) = actix_ws::handle(&req, body)?;
    actix_web::rt::spawn(run(state, handshake, session, stream));
    Ok(response)
}

fn protocol_error(code: &str, message: &str) -> Value {
    json!({"type": "error", "code": code, "message": message})
}

async fn close_now(mut session: Session, message: Value, code: u16, reason: &str) {
    let _ = session.text(message.to_string()).await;
    let _ = session
        .close(Some(actix_ws::CloseReason { code: CloseCode::from(code), description: Some(reason.into()) }))
        .await;
}

/// The `connected` welcome (websocket.md A.3 + C.4).
fn connected_message(
    state: &AppState,
    conn: &Connection,
    chat_id: Option<&str>,
    last_seq: Option<u64>,
) -> Value {
    let ws = &state.config.chat_workflows.websocket;
    json!({
        "type": "connected",
        "chat_id": chat_id,
        "timestamp": now_rfc3339(),
        "message": "Connected to chat workflow",
        "connection_id": format!("{:08x}", conn.id),
        "last_seq": last_seq,
        "epoch": state.hub.epoch(),
        "protocol_version": PROTOCOL_VERSION,
        "heartbeat": {"ping_interval": ws.ping_interval, "ping_timeout": ws.ping_timeout},
        "active_job": chat_id.map_or(Value::Null, |c| state.hub.active_job(c)),
    })
}

/// Token bucket for inbound data frames (websocket.md C.11).
struct RateLimiter {
    capacity: f64,
    per_second: f64,
    tokens: f64,
    refilled: Instant,
    violations: Vec<Instant>,
    max_violations: usize,
}

enum RateDecision {
    Allow,
    Reject { retry_after_ms: u64 },
    Close,
}

impl RateLimiter {
    fn new(burst: u32, per_second: f64, max_violations: u32) -> Self {
        RateLimiter {
            capacity: f64::from(burst),
            per_second,
            tokens: f64::from(burst),
            refilled: Instant::now(),
            violations: Vec::new(),
            max_violations: max_violations as usize,
        }
    }

    fn take(&mut self) -> RateDecision {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.refilled).as_secs_f64() * self.per_second)
            .min(self.capacity);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return RateDecision::Allow;
        }
        self.violations.retain(|t| now.duration_since(*t) < Duration::from_secs(60));
        self.violations.push(now);
        if self.violations.len() > self.max_violations {
            return RateDecision::Close;
        }
        let retry_after_ms = (((1.0 - self.tokens) / self.per_second) * 1000.0).ceil() as u64;
        RateDecision::Reject { retry_after_ms }
    }
}

async fn run(
    state: web::Data<AppState>,
    handshake: Handshake,
    session: Session,
    stream: actix_ws::MessageStream,
) {
    let hub: Arc<Hub> = state.hub.clone();
    let ws = state.config.chat_workflows.websocket.clone();
    let conn = match hub.connect(handshake.ip, handshake.path_chat.as_deref()) {
        Ok(conn) => Arc::new(conn),
        Err(refusal) => {
            let (code, reason) = match refusal {
                Refusal::ShuttingDown => (crate::events::queue::CLOSE_GOING_AWAY, "server shutting down"),
                _ => (CLOSE_TRY_AGAIN, "maximum connections reached"),
            };
            log::info!("ws: refused connection from {} ({refusal:?})", handshake.ip);
            close_now(
                session,
                protocol_error("max_connections", "Maximum connections reached"),
                code,
                reason,
            )
            .await;
            return;
        }
    };
    let (closed_tx, mut closed_rx) = tokio::sync::watch::channel(false);
    let writer = actix_web::rt::spawn(write_loop(
        session.clone(),
        conn.queue.clone(),
        Duration::from_secs(ws.send_queue.write_timeout_seconds.max(1)),
        closed_tx,
    ));
    log::debug!("ws: connection {:08x} from {} chat={:?}", conn.id, handshake.ip, handshake.path_chat);

    let mut bound_since: Option<Instant> = None;
    match &handshake.path_chat {
        Some(chat) if !is_valid_chat_id(chat) => {
            conn.send(&protocol_error("invalid_chat_id", "Invalid chat id"));
            conn.queue.close(CloseReason::new(CLOSE_INVALID_SESSION, "invalid chat id"));
        }
        Some(chat) => {
            // The event log may be read (SQLite): subscribe on the blocking pool.
            let (st, c, chat, resume) = (state.clone(), conn.clone(), chat.clone(), handshake.resume.clone());
            let subscribed = web::block(move || {
                let connected = |seq: u64| connected_message(&st, &c, Some(&chat), Some(seq));
                let snapshot = resume.is_none();
                st.hub.subscribe(&c, &chat, resume.as_ref(), Some(&connected), snapshot)
            })
            .await;
            match subscribed {
                Ok(Ok(_)) => bound_since = Some(Instant::now()),
                Ok(Err(e)) => log::warn!("ws: initial subscribe failed: {e:?}"),
                Err(e) => log::warn!("ws: initial subscribe failed: {e}"),
            }
        }
        None => {
            conn.send(&connected_message(&state, &conn, None, None));
        }
    }

    let mut stream = stream
        .max_frame_size(ws.max_message_bytes)
        .aggregate_continuations()
        .max_continuation_size(ws.max_message_bytes);
    let mut session = session;
    let mut limiter =
        RateLimiter::new(ws.rate_limit.burst, ws.rate_limit.per_second, ws.rate_limit.max_violations);
    let ping_interval = Duration::from_secs(ws.ping_interval);
    let ping_timeout = Duration::from_secs(ws.ping_timeout);
    let housekeeping = [ping_interval, ping_timeout, Duration::from_secs(1)]
        .into_iter()
        .filter(|d| !d.is_zero())
        .min()
        .unwrap_or(Duration::from_secs(1))
        .checked_div(4)
        .unwrap_or(Duration::from_millis(250))
        .max(Duration::from_millis(20));
    let mut ticker = tokio::time::interval(housekeeping);
    let mut last_ping_sent = Instant::now();
    let mut awaiting_pong: Option<Instant> = None;
    let mut last_inbound = Instant::now();
    let mut unbound_since = if bound_since.is_some() { None } else { Some(Instant::now()) };

    loop {
        tokio::select! {
            msg = stream.recv() => {
                let Some(msg) = msg else { break };
                match msg {
                    Ok(AggregatedMessage::Text(text)) => {
                        last_inbound = Instant::now();
                        match rate_ok(&mut limiter, &conn) {
                            None => break,
                            Some(true) => handle_text_blocking(&state, &conn, text.to_string()).await,
                            Some(false) => {}
                        }
                    }
                    Ok(AggregatedMessage::Binary(bytes)) => {
                        last_inbound = Instant::now();
                        match rate_ok(&mut limiter, &conn) {
                            None => break,
                            Some(false) => continue,
                            Some(true) => {}
                        }
                        match std::str::from_utf8(&bytes) {
                            Ok(text) => handle_text_blocking(&state, &conn, text.to_string()).await,
                            Err(_) => { conn.send(&protocol_error("invalid_json", "Invalid JSON")); }
                        }
                    }
                    Ok(AggregatedMessage::Ping(bytes)) => {
                        let _ = session.pong(&bytes).await;
                    }
                    Ok(AggregatedMessage::Pong(_)) => awaiting_pong = None,
                    Ok(AggregatedMessage::Close(_)) => {
                        conn.queue.close(CloseReason::new(1000, ""));
                        break;
                    }
                    Err(err) => {
                        let too_big = matches!(err, actix_ws::ProtocolError::Overflow);
                        let (code, reason) = if too_big { (CLOSE_TOO_BIG, "message too big") } else { (1002, "protocol error") };
                        log::info!("ws: connection {:08x}: {err}", conn.id);
                        conn.queue.abort(CloseReason::new(code, reason));
                        break;
                    }
                }
            }
            _ = ticker.tick() => {
                let now = Instant::now();
                if let Some(sent) = awaiting_pong {
                    if now.duration_since(sent) >= ping_timeout && !ping_timeout.is_zero() {
                        log::info!("ws: connection {:08x}: no pong within {:?}", conn.id, ping_timeout);
                        conn.queue.abort(CloseReason::new(CLOSE_INTERNAL, "keepalive timeout"));
                        break;
                    }
                } else if !ping_interval.is_zero() && now.duration_since(last_ping_sent) >= ping_interval {
                    last_ping_sent = now;
                    awaiting_pong = Some(now);
                    if session.ping(b"").await.is_err() { break; }
                }
                let subscribed = !conn.subscriptions().is_empty();
                match (subscribed, unbound_since) {
                    (true, Some(_)) => unbound_since = None,
                    (false, None) => unbound_since = Some(now),
                    _ => {}
                }
                let idle = ws.idle_timeout_seconds > 0 && now.duration_since(last_inbound) >= Duration::from_secs(ws.idle_timeout_seconds);
                let unbound_too_long = ws.unbound_timeout_seconds > 0
                    && unbound_since.is_some_and(|t| now.duration_since(t) >= Duration::from_secs(ws.unbound_timeout_seconds));
                if idle || unbound_too_long {
                    conn.send(&protocol_error("idle_timeout", if idle { "Idle timeout" } else { "No subscription" }));
                    conn.queue.close(CloseReason::new(CLOSE_IDLE, "idle timeout"));
                    break;
                }
            }
            _ = closed_rx.changed() => break,
        }
    }
    // Let the writer flush what is queued and send the close frame, then unregister.
    if !conn.queue.is_closing() {
        conn.queue.close(CloseReason::new(1000, ""));
    }
    let _ =
        tokio::time::timeout(Duration::from_secs(ws.send_queue.write_timeout_seconds.max(1)), writer).await;
    drop(conn);
}

/// Applies the token bucket: `Some(true)` handle the frame, `Some(false)` discard it (the client was told),
/// `None` close the connection (4029).
fn rate_ok(limiter: &mut RateLimiter, conn: &Connection) -> Option<bool> {
    match limiter.take() {
        RateDecision::Allow => Some(true),
        RateDecision::Reject { retry_after_ms } => {
            conn.send(&json!({"type": "error", "code": "rate_limited", "message": "Rate limit exceeded", "retry_after_ms": retry_after_ms}));
            Some(false)
        }
        RateDecision::Close => {
            conn.send(&json!({"type": "error", "code": "rate_limited", "message": "Rate limit exceeded"}));
            conn.queue.close(CloseReason::new(CLOSE_RATE_LIMITED, "rate limited"));
            None
        }
    }
}

/// Drains the queue into the socket; a write that does not finish in time closes the connection (4008).
async fn write_loop(
    mut session: Session,
    queue: Arc<crate::events::SendQueue>,
    write_timeout: Duration,
    closed: tokio::sync::watch::Sender<bool>,
) {
    loop {
        match queue.next().await {
            Next::Frame(frame) => {
                let write = session.text(frame.text.to_string());
                match tokio::time::timeout(write_timeout, write).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => break,
                    Err(_) => {
                        queue.abort(CloseReason::new(CLOSE_SLOW_CONSUMER, "slow consumer"));
                        let reason = actix_ws::CloseReason {
                            code: CloseCode::from(CLOSE_SLOW_CONSUMER),
                            description: Some("slow consumer".into()),
                        };
                        let _ = session.close(Some(reason)).now_or_never();
                        let _ = closed.send(true);
                        return;
                    }
                }
            }
            Next::Close(reason) => {
                let code = CloseCode::from(reason.code);
                let description = (!reason.reason.is_empty()).then(|| reason.reason.clone());
                let _ = tokio::time::timeout(
                    write_timeout,
                    session.close(Some(actix_ws::CloseReason { code, description })),
                )
                .await;
                let _ = closed.send(true);
                return;
            }
        }
    }
    let _ = closed.send(true);
}

/// Adds the client's `id` (a string of at most 64 characters) to a direct reply.
fn with_id(mut reply: Value, request: &Map<String, Value>) -> Value {
    if let (Some(Value::String(id)), Value::Object(map)) = (request.get("id"), &mut reply) {
        if id.chars().count() <= 64 {
            map.insert("id".into(), Value::String(id.clone()));
        }
    }
    reply
}

/// Handles one inbound message; subscribe and resume may read the event log (SQLite), so messages that
/// could be one of those run on the blocking pool, everything else inline.
async fn handle_text_blocking(state: &web::Data<AppState>, conn: &Arc<Connection>, text: String) {
    let may_read_log = ["subscribe", "resume", "session_restore"].iter().any(|k| text.contains(k));
    if !may_read_log {
        handle_text(state, conn, &text);
        return;
    }
    let (st, c) = (state.clone(), conn.clone());
    if let Err(e) = web::block(move || handle_text(&st, &c, &text)).await {
        log::warn!("ws: connection {:08x}: {e}", conn.id);
    }
}

/// websocket.md C.11 parsing order.
fn handle_text(state: &AppState, conn: &Connection, text: &str) {
    if text.trim().eq_ignore_ascii_case("ping") {
        conn.send(&json!({"type": "pong", "timestamp": now_rfc3339()}));
        return;
    }
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(_) => {
            conn.send(&protocol_error("invalid_json", "Invalid JSON"));
            return;
        }
    };
    let Value::Object(message) = value else {
        conn.send(&protocol_error("invalid_message", "Message must be a JSON object"));
        return;
    };
    let reply = match message.get("type").and_then(Value::as_str) {
        Some("ping") => Some(json!({"type": "pong", "timestamp": now_rfc3339()})),
        Some("subscribe") => handle_subscribe(state, conn, &message),
        Some("unsubscribe") => handle_unsubscribe(state, conn, &message),
        Some("resume") | Some("session_restore") => handle_resume(state, conn, &message),
        _ => Some(json!({"type": "ack", "original": Value::Object(message.clone())})),
    };
    if let Some(reply) = reply {
        conn.send(&with_id(reply, &message));
    }
}

/// Reads `chat_id` from a subscribe/unsubscribe/resume message, or the error reply.
fn chat_id_field<'a>(message: &'a Map<String, Value>, fallback: Option<&'a str>) -> Result<&'a str, Value> {
    match message.get("chat_id") {
        Some(Value::String(id)) if is_valid_chat_id(id) => Ok(id),
        Some(Value::String(_)) => Err(
            json!({"type": "error", "code": "invalid_chat_id", "message": "Invalid chat id", "field": "chat_id"}),
        ),
        None | Some(Value::Null) if fallback.is_some() => Ok(fallback.unwrap_or_default()),
        _ => Err(
            json!({"type": "error", "code": "invalid_message", "message": "chat_id must be a non-empty string", "field": "chat_id"}),
        ),
    }
}

fn last_seq_field(message: &Map<String, Value>) -> Result<Option<Resume>, Value> {
    match message.get("last_seq") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(last_seq) => Ok(Some(Resume {
                last_seq,
                epoch: message.get("epoch").and_then(Value::as_str).map(str::to_string),
            })),
            None => Err(
                json!({"type": "error", "code": "invalid_message", "message": "last_seq must be a non-negative integer", "field": "last_seq"}),
            ),
        },
    }
}

fn subscribe_error(err: SubscribeError) -> Value {
    match err {
        SubscribeError::TooManySubscriptions => {
            json!({"type": "error", "code": "too_many_subscriptions", "message": "Too many subscriptions"})
        }
        SubscribeError::ConnectionClosed => {
            json!({"type": "error", "code": "internal_error", "message": "Internal error"})
        }
    }
}

fn handle_subscribe(state: &AppState, conn: &Connection, message: &Map<String, Value>) -> Option<Value> {
    let chat_id = match chat_id_field(message, None) {
        Ok(id) => id,
        Err(reply) => return Some(reply),
    };
    let resume = match last_seq_field(message) {
        Ok(r) => r,
        Err(reply) => return Some(reply),
    };
    let add = message.get("mode").and_then(Value::as_str) == Some("add");
    let id_of = |v: Value| with_id(v, message);
    let result = if add {
        let first = |seq: u64| id_of(json!({"type": "subscribed", "chat_id": chat_id, "last_seq": seq}));
        state.hub.subscribe(conn, chat_id, resume.as_ref(), Some(&first), false)
    } else {
        let previous = conn.subscriptions();
        for chat in previous.iter().filter(|c| c.as_str() != chat_id) {
            state.hub.unsubscribe(conn, chat);
        }
        let first = |seq: u64| id_of(connected_message(state, conn, Some(chat_id), Some(seq)));
        state.hub.subscribe(conn, chat_id, resume.as_ref(), Some(&first), false)
    };
    result.err().map(subscribe_error)
}

fn handle_unsubscribe(state: &AppState, conn: &Connection, message: &Map<String, Value>) -> Option<Value> {
    match chat_id_field(message, None) {
        Ok(chat_id) => {
            state.hub.unsubscribe(conn, chat_id);
            Some(json!({"type": "unsubscribed", "chat_id": chat_id}))
        }
        Err(reply) => Some(reply),
    }
}

fn handle_resume(state: &AppState, conn: &Connection, message: &Map<String, Value>) -> Option<Value> {
    let subscriptions = conn.subscriptions();
    let chat_id = match chat_id_field(message, subscriptions.first().map(String::as_str)) {
        Ok(id) => id.to_string(),
        Err(reply) => return Some(reply),
    };
    let resume = match last_seq_field(message) {
        Ok(Some(r)) => r,
        Ok(None) => {
            return Some(
                json!({"type": "error", "code": "invalid_message", "message": "last_seq is required", "field": "last_seq"}),
            )
        }
        Err(reply) => return Some(reply),
    };
    state.hub.subscribe(conn, &chat_id, Some(&resume), None, false).err().map(subscribe_error)
}
