//! One WebSocket connection: origin and token checks, registration and limits, the `connected` welcome,
//! dispatch of parsed client messages (subscriptions, resume, auth), keepalive pings, idle/unbound timeouts,
//! the rate limit and the write timeout. Outgoing frames are written by the connection's response body,
//! which drains its bounded send queue (`ws/body.rs`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::web::Bytes;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::AggregatedMessage;
use serde_json::{Map, Value};

use crate::envelope::now_rfc3339;
use crate::events::queue::{
    CloseReason, Control, Outgoing, SendQueue, CLOSE_INTERNAL, CLOSE_INVALID_SESSION, CLOSE_SLOW_CONSUMER,
    CLOSE_TOO_BIG, CLOSE_TRY_AGAIN,
};
use crate::events::wire::{
    Ack, Authenticated, Connected, Heartbeat, Pong, ProtocolError, ProtocolErrorCode, ServerShutdown,
    Subscribed, Unsubscribed, WireMessage,
};
use crate::events::{Connection, Hub, Refusal, Resume, SubscribeError};
use crate::ws::auth::{self, AuthFailure, Authenticator, Grant, TokenSource};
use crate::ws::body::{self, CLOSE_HANDSHAKE_TIMEOUT};
use crate::ws::message::{parse_client_message, with_request_id, ClientMessage, INVALID_JSON};
use crate::ws::origin::{OriginCheck, OriginPolicy};
use crate::AppState;

pub const CLOSE_UNAUTHORIZED: u16 = 4002;
pub const CLOSE_ORIGIN_NOT_ALLOWED: u16 = 4003;
pub const CLOSE_IDLE: u16 = 4009;
pub const CLOSE_RATE_LIMITED: u16 = 4029;
const CLOSE_PROTOCOL_ERROR: u16 = 1002;
const CLOSE_INVALID_PAYLOAD: u16 = 1007;
const PROTOCOL_VERSION: u32 = 2;

/// What the upgrade request asked for.
#[derive(Clone)]
pub struct Handshake {
    pub path_chat: Option<String>,
    pub ip: IpAddr,
    pub resume: Option<Resume>,
    pub origin: Option<String>,
    /// The handshake token and its source (never logged).
    pub token: Option<(String, TokenSource)>,
}

/// Never prints the token.
impl std::fmt::Debug for Handshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handshake")
            .field("path_chat", &self.path_chat)
            .field("ip", &self.ip)
            .field("resume", &self.resume)
            .field("origin", &self.origin)
            .field("token", &self.token.as_ref().map(|(_, source)| source))
            .finish()
    }
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
        let origin = req.headers().get("origin").map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let allow_query = req
            .app_data::<web::Data<AppState>>()
            .is_some_and(|s| s.config.chat_workflows.websocket.auth.allow_query_token);
        let token = auth::handshake_token(req, query.get("token").map(String::as_str), allow_query);
        Handshake { path_chat, ip, resume, origin, token }
    }
}

/// Checks the origin, completes the upgrade (selecting `pycelize.v1` when offered) and spawns the
/// connection's tasks.
pub fn accept(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
    handshake: Handshake,
) -> Result<HttpResponse, actix_web::Error> {
    let ws = &state.config.chat_workflows.websocket;
    let origin_ok = OriginPolicy::from_config(ws).check(handshake.origin.as_deref()) == OriginCheck::Allowed;
    if !origin_ok {
        state.hub.count_origin_rejection();
        log::info!(
            "ws: origin {:?} refused from {} path={} query={}",
            handshake.origin,
            handshake.ip,
            req.path(),
            auth::redact_query(req.query_string())
        );
        if ws.reject_at_handshake {
            return Ok(HttpResponse::Forbidden().json(origin_refusal()));
        }
    }
    let (upgrade, session, stream) = actix_ws::handle_with_protocols(&req, body, &[auth::SUBPROTOCOL])?;
    // Frames are written by the response body straight from the connection's queue (ws/body.rs).
    drop(session);
    let queue = state.hub.new_send_queue();
    let response = body::queue_response(upgrade, queue.clone());
    if origin_ok {
        actix_web::rt::spawn(run(state, handshake, queue, stream));
    } else {
        close_now(&queue, origin_refusal(), CLOSE_ORIGIN_NOT_ALLOWED, "origin not allowed");
    }
    Ok(response)
}

fn origin_refusal() -> Value {
    protocol_error(ProtocolErrorCode::OriginNotAllowed, "Origin not allowed")
}

fn unauthorized() -> Value {
    protocol_error(ProtocolErrorCode::Unauthorized, "Authentication required")
}

fn protocol_error(code: ProtocolErrorCode, message: &str) -> Value {
    ProtocolError::new(code, message).to_json()
}

/// Sends `message`, then closes with `code` (a connection refused before it was registered).
fn close_now(queue: &Arc<SendQueue>, message: Value, code: u16, reason: &str) {
    queue.push(Outgoing::text(message.to_string()));
    queue.close(CloseReason::new(code, reason));
}

/// The `connected` welcome (websocket.md A.3 + C.4).
fn connected_message(
    state: &AppState,
    conn: &Connection,
    chat_id: Option<&str>,
    last_seq: Option<u64>,
) -> Value {
    let ws = &state.config.chat_workflows.websocket;
    Connected {
        chat_id: chat_id.map(str::to_string),
        timestamp: now_rfc3339(),
        message: "Connected to chat workflow".into(),
        connection_id: format!("{:08x}", conn.id),
        last_seq,
        epoch: state.hub.epoch(),
        protocol_version: PROTOCOL_VERSION,
        heartbeat: Heartbeat { ping_interval: ws.ping_interval, ping_timeout: ws.ping_timeout },
        active_job: chat_id.and_then(|c| state.hub.active_job(c)),
    }
    .to_json()
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

/// Authentication state of one connection (websocket.md C.10).
enum AuthState {
    /// `websocket.auth.enabled` is false.
    Disabled,
    /// Waiting for a first `{"type":"auth"}` message until the deadline; only `auth` and `ping` are handled.
    Pending {
        deadline: Instant,
    },
    Granted(Grant),
}

impl AuthState {
    fn grant(&self) -> Option<&Grant> {
        match self {
            AuthState::Granted(g) => Some(g),
            _ => None,
        }
    }

    fn allows_chat(&self, chat_id: &str) -> bool {
        match self {
            AuthState::Disabled => true,
            AuthState::Pending { .. } => false,
            AuthState::Granted(g) => g.allows_chat(chat_id),
        }
    }
}

/// What the read loop does after a frame.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    /// The frame was refused by the rate limit and is not processed.
    Discard,
    Close,
}

/// The connection's context in owned form, so that handlers can run on the blocking pool.
#[derive(Clone)]
struct Owned {
    state: web::Data<AppState>,
    conn: Arc<Connection>,
    handshake: Arc<Handshake>,
    authenticator: Option<Arc<Authenticator>>,
}

impl Owned {
    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            state: &self.state,
            conn: &self.conn,
            handshake: &self.handshake,
            authenticator: self.authenticator.as_deref(),
        }
    }

    /// Runs a handler on the blocking pool: handlers may read SQLite (the chat lookup, the event log for
    /// `last_seq` and replay), which must not stall the other connections served by this worker thread.
    /// The auth state travels with the handler and comes back; `None` if the pool is gone (shutdown).
    async fn off_reactor<R: Send + 'static>(
        &self,
        mut auth: AuthState,
        handler: impl FnOnce(&Ctx<'_>, &mut AuthState) -> R + Send + 'static,
    ) -> Option<(R, AuthState)> {
        let owned = self.clone();
        web::block(move || {
            let result = handler(&owned.ctx(), &mut auth);
            (result, auth)
        })
        .await
        .ok()
    }
}

/// Everything one connection's handlers need.
struct Ctx<'a> {
    state: &'a AppState,
    conn: &'a Connection,
    handshake: &'a Handshake,
    authenticator: Option<&'a Authenticator>,
}

impl Ctx<'_> {
    /// Sends `unauthorized` and closes with 4002 (after the queue drains).
    fn refuse_auth(&self, why: &str) -> Flow {
        self.state.hub.count_auth_rejection();
        log::info!("ws: connection_id={:08x} unauthorized ({why})", self.conn.id);
        self.conn.send(&unauthorized());
        self.conn.queue.close(CloseReason::new(CLOSE_UNAUTHORIZED, "unauthorized"));
        Flow::Close
    }

    fn forbidden_chat(&self, chat_id: &str) -> Value {
        log::info!("ws: connection_id={:08x} chat_id={chat_id} not covered by the token", self.conn.id);
        let mut error =
            ProtocolError::new(ProtocolErrorCode::ForbiddenChat, "Token does not cover this chat");
        error.chat_id = Some(chat_id.to_string());
        error.to_json()
    }

    /// `websocket.require_existing_chat`: whether `chat_id` may be subscribed to (always, when the flag is off).
    fn chat_is_known(&self, chat_id: &str) -> bool {
        if !self.state.config.chat_workflows.websocket.require_existing_chat {
            return true;
        }
        // One indexed primary-key read; a store error counts as unknown rather than letting the client in.
        self.state
            .chat
            .as_ref()
            .is_some_and(|chat| chat.store.conversation_row(chat_id).is_ok_and(|row| row.is_some()))
    }
}

fn unknown_chat(chat_id: &str) -> Value {
    let mut error = ProtocolError::new(ProtocolErrorCode::UnknownChat, "Unknown chat");
    error.chat_id = Some(chat_id.to_string());
    error.to_json()
}

/// The first frames of an accepted (and authenticated) connection: the path chat's subscription with its
/// `connected` (and resume replay), or an unbound `connected`. Returns whether it is now bound.
fn welcome(ctx: &Ctx<'_>, auth: &AuthState) -> bool {
    let (state, conn, handshake) = (ctx.state, ctx.conn, ctx.handshake);
    match &handshake.path_chat {
        Some(chat) if !crate::events::is_valid_chat_id(chat) => {
            conn.send(&protocol_error(ProtocolErrorCode::InvalidChatId, "Invalid chat id"));
            conn.queue.close(CloseReason::new(CLOSE_INVALID_SESSION, "invalid chat id"));
            false
        }
        Some(chat) if !ctx.chat_is_known(chat) => {
            conn.send(&unknown_chat(chat));
            conn.queue.close(CloseReason::new(CLOSE_INVALID_SESSION, "unknown chat"));
            false
        }
        Some(chat) if !auth.allows_chat(chat) => {
            // The connection stays open, unbound: a forbidden chat refuses the subscription only (C.12).
            state.hub.release_reservation(conn);
            conn.send(&ctx.forbidden_chat(chat));
            conn.send(&connected_message(state, conn, None, None));
            false
        }
        Some(chat) => {
            let connected = |seq: u64| connected_message(state, conn, Some(chat), Some(seq));
            // Without last_seq a running job's snapshot follows the welcome (websocket.md C.6).
            let snapshot = handshake.resume.is_none();
            match state.hub.subscribe(conn, chat, handshake.resume.as_ref(), Some(&connected), snapshot) {
                Ok(_) => true,
                Err(e) => {
                    // `subscribe` has already dropped the reservation.
                    log::warn!(
                        "ws: connection_id={:08x} chat_id={chat} initial subscribe failed: {e:?}",
                        conn.id
                    );
                    conn.send(&protocol_error(ProtocolErrorCode::InternalError, "Internal error"));
                    false
                }
            }
        }
        None => {
            conn.send(&connected_message(state, conn, None, None));
            false
        }
    }
}

async fn run(
    state: web::Data<AppState>,
    handshake: Handshake,
    queue: Arc<SendQueue>,
    stream: actix_ws::MessageStream,
) {
    let hub: Arc<Hub> = state.hub.clone();
    let ws = state.config.chat_workflows.websocket.clone();
    let conn = match hub.connect(handshake.ip, handshake.path_chat.as_deref(), queue) {
        Ok(conn) => conn,
        Err((queue, Refusal::ShuttingDown)) => {
            let notice = ServerShutdown { reconnect_after_ms: crate::events::RECONNECT_AFTER_MS }.to_json();
            close_now(&queue, notice, crate::events::queue::CLOSE_GOING_AWAY, "server shutting down");
            return;
        }
        Err((queue, refusal)) => {
            log::info!("ws: refused connection from {} ({refusal:?})", handshake.ip);
            close_now(
                &queue,
                protocol_error(ProtocolErrorCode::MaxConnections, "Maximum connections reached"),
                CLOSE_TRY_AGAIN,
                "maximum connections reached",
            );
            return;
        }
    };
    // Publishers on other threads wake this connection's body through its thread's group (one wake per
    // burst); the body is polled on this thread.
    conn.queue.join(hub.wake_group_for_current_thread(|group| {
        actix_web::rt::spawn(group.run());
    }));
    let write_timeout = Duration::from_secs(ws.send_queue.write_timeout_seconds.max(1));
    log::debug!("ws: connection_id={:08x} from {} chat_id={:?}", conn.id, handshake.ip, handshake.path_chat);

    let owned = Owned {
        authenticator: Authenticator::from_config(&ws.auth).map(Arc::new),
        state,
        conn: Arc::new(conn),
        handshake: Arc::new(handshake),
    };
    let (conn, handshake, authenticator) = (&owned.conn, &owned.handshake, &owned.authenticator);
    let ctx = owned.ctx();
    let mut auth = match (authenticator, &handshake.token) {
        (None, _) => AuthState::Disabled,
        (Some(a), Some((token, source))) => match a.validate(token) {
            Ok(grant) => AuthState::Granted(grant),
            Err(failure) => {
                ctx.refuse_auth(&format!("{failure:?} token from {source:?}"));
                AuthState::Pending { deadline: Instant::now() }
            }
        },
        (Some(_), None) => AuthState::Pending {
            deadline: Instant::now() + Duration::from_secs(ws.auth.timeout_seconds.max(1)),
        },
    };
    if !conn.queue.is_closing() && !matches!(auth, AuthState::Pending { .. }) {
        match owned.off_reactor(auth, |ctx, auth| welcome(ctx, auth)).await {
            Some((_, back)) => auth = back,
            None => return,
        }
    }

    let mut stream = stream
        .max_frame_size(ws.max_message_bytes)
        .aggregate_continuations()
        .max_continuation_size(ws.max_message_bytes);
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
    let mut unbound_since = Some(Instant::now());
    let mut client_closed = false;

    while !conn.queue.is_closing() {
        tokio::select! {
            msg = stream.recv() => {
                let Some(msg) = msg else { break };
                let text = match &msg {
                    Ok(AggregatedMessage::Text(text)) => Some(Ok(text.to_string())),
                    Ok(AggregatedMessage::Binary(bytes)) => {
                        Some(std::str::from_utf8(bytes).map(str::to_string).map_err(|_| ()))
                    }
                    _ => None,
                };
                let flow = match msg {
                    Ok(AggregatedMessage::Text(_) | AggregatedMessage::Binary(_)) => {
                        last_inbound = Instant::now();
                        match (rate_ok(&mut limiter, &ctx), text) {
                            (Flow::Continue, Some(Ok(text))) => {
                                let taken = std::mem::replace(&mut auth, AuthState::Disabled);
                                match owned.off_reactor(taken, move |ctx, auth| dispatch(ctx, auth, &text)).await {
                                    Some((flow, back)) => {
                                        auth = back;
                                        flow
                                    }
                                    None => Flow::Close,
                                }
                            }
                            (Flow::Continue, _) => {
                                conn.send(&INVALID_JSON.to_json());
                                Flow::Continue
                            }
                            (other, _) => other,
                        }
                    }
                    Ok(AggregatedMessage::Ping(bytes)) => {
                        conn.queue.push_control(Control::Pong(bytes));
                        Flow::Continue
                    }
                    Ok(AggregatedMessage::Pong(_)) => {
                        awaiting_pong = None;
                        Flow::Continue
                    }
                    Ok(AggregatedMessage::Close(_)) => {
                        // The client started the close handshake: the echo completes it.
                        client_closed = true;
                        conn.queue.peer_closed();
                        conn.queue.close(CloseReason::new(1000, ""));
                        Flow::Close
                    }
                    Err(err) => {
                        let (code, reason) = protocol_close(&err);
                        log::info!("ws: connection_id={:08x}: {err}", conn.id);
                        conn.queue.abort(CloseReason::new(code, reason));
                        Flow::Close
                    }
                };
                if flow == Flow::Close { break; }
            }
            _ = ticker.tick() => {
                let now = Instant::now();
                if let Some(sent) = awaiting_pong {
                    if now.duration_since(sent) >= ping_timeout && !ping_timeout.is_zero() {
                        log::info!("ws: connection_id={:08x}: no pong within {:?}", conn.id, ping_timeout);
                        conn.queue.abort(CloseReason::new(CLOSE_INTERNAL, "keepalive timeout"));
                        break;
                    }
                } else if !ping_interval.is_zero() && now.duration_since(last_ping_sent) >= ping_interval {
                    last_ping_sent = now;
                    awaiting_pong = Some(now);
                    conn.queue.push_control(Control::Ping(Bytes::new()));
                }
                if conn.queue.stalled_for(now).is_some_and(|waited| waited >= write_timeout) {
                    // The client has not taken a frame for the whole write timeout: a slow consumer.
                    log::info!("ws: connection_id={:08x}: no write progress within {:?}", conn.id, write_timeout);
                    ctx.state.hub.count_slow_consumer();
                    conn.queue.abort(CloseReason::new(CLOSE_SLOW_CONSUMER, "slow consumer"));
                    break;
                }
                match &auth {
                    AuthState::Pending { deadline } if now >= *deadline => {
                        ctx.refuse_auth("no auth message in time");
                        break;
                    }
                    AuthState::Granted(grant) if grant.is_expired() => {
                        ctx.refuse_auth("token expired during the session");
                        break;
                    }
                    _ => {}
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
                    log::debug!("ws: connection_id={:08x} closed: {}", conn.id, if idle { "idle" } else { "unbound" });
                    conn.send(&protocol_error(ProtocolErrorCode::IdleTimeout, if idle { "Idle timeout" } else { "No subscription" }));
                    conn.queue.close(CloseReason::new(CLOSE_IDLE, "idle timeout"));
                    break;
                }
            }
            _ = conn.queue.written_out() => break,
        }
    }
    // Let the body flush what is queued and send the close frame, then unregister.
    if !conn.queue.is_closing() {
        conn.queue.close(CloseReason::new(1000, ""));
    }
    let _ = tokio::time::timeout(write_timeout, conn.queue.written_out()).await;
    // A close the server started is complete when the client answers it; reading that answer lets the
    // connection end at once instead of when the body's handshake timeout passes.
    if !client_closed {
        let answered = async {
            while let Some(msg) = stream.recv().await {
                if matches!(msg, Ok(AggregatedMessage::Close(_)) | Err(_)) {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(CLOSE_HANDSHAKE_TIMEOUT, answered).await;
        conn.queue.peer_closed();
    }
}

/// The close code and reason for a frame-level error: 1009 too big, 1007 text that is not UTF-8, 1002 for
/// any other protocol violation (reserved bits, bad opcodes, unmasked or oversized control frames).
pub(crate) fn protocol_close(err: &actix_ws::ProtocolError) -> (u16, &'static str) {
    match err {
        actix_ws::ProtocolError::Overflow => (CLOSE_TOO_BIG, "message too big"),
        actix_ws::ProtocolError::Io(e) if e.kind() == std::io::ErrorKind::InvalidData && is_utf8_error(e) => {
            (CLOSE_INVALID_PAYLOAD, "invalid utf-8")
        }
        _ => (CLOSE_PROTOCOL_ERROR, "protocol error"),
    }
}

/// actix-ws reports bad UTF-8 as `InvalidData` wrapping a `Utf8Error` (single frames) or its text
/// (reassembled fragments); reserved-bit violations use `InvalidData` too, with other text.
fn is_utf8_error(e: &std::io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<std::str::Utf8Error>() || inner.to_string().contains("utf-8"))
}

/// Applies the token bucket (websocket.md C.11): `Discard` for a refused frame, `Close` when the connection
/// must close (4029).
fn rate_ok(limiter: &mut RateLimiter, ctx: &Ctx<'_>) -> Flow {
    match limiter.take() {
        RateDecision::Allow => Flow::Continue,
        RateDecision::Reject { retry_after_ms } => {
            ctx.state.hub.count_rate_limited();
            let mut error = ProtocolError::new(ProtocolErrorCode::RateLimited, "Rate limit exceeded");
            error.retry_after_ms = Some(retry_after_ms);
            ctx.conn.send(&error.to_json());
            Flow::Discard
        }
        RateDecision::Close => {
            ctx.state.hub.count_rate_limited();
            log::info!("ws: connection_id={:08x} closed: rate limit violations", ctx.conn.id);
            ctx.conn.send(&protocol_error(ProtocolErrorCode::RateLimited, "Rate limit exceeded"));
            ctx.conn.queue.close(CloseReason::new(CLOSE_RATE_LIMITED, "rate limited"));
            Flow::Close
        }
    }
}

/// Parses one frame and acts on it. A panic while handling it is contained: the client gets
/// `internal_error`, never the panic text (websocket.md C.10).
fn dispatch(ctx: &Ctx<'_>, auth: &mut AuthState, text: &str) -> Flow {
    let message = parse_client_message(text);
    let id = message.request_id().map(str::to_string);
    match std::panic::catch_unwind(AssertUnwindSafe(|| handle_message(ctx, auth, message))) {
        Ok(flow) => flow,
        Err(_) => {
            log::error!("ws: connection_id={:08x}: panic while handling a message", ctx.conn.id);
            ctx.conn.send(&with_request_id(
                protocol_error(ProtocolErrorCode::InternalError, "Internal error"),
                id.as_deref(),
            ));
            Flow::Continue
        }
    }
}

fn pong(id: Option<&str>) -> Value {
    with_request_id(Pong { timestamp: now_rfc3339() }.to_json(), id)
}

fn handle_message(ctx: &Ctx<'_>, auth: &mut AuthState, message: ClientMessage) -> Flow {
    let conn = ctx.conn;
    if let AuthState::Pending { .. } = auth {
        // Until authenticated, only `auth` and `ping` are processed; anything else ends the connection.
        return match message {
            ClientMessage::Ping { id } => {
                conn.send(&pong(id.as_deref()));
                Flow::Continue
            }
            ClientMessage::Auth { token, .. } => match ctx.authenticator.map(|a| a.validate(&token)) {
                Some(Ok(grant)) => {
                    *auth = AuthState::Granted(grant);
                    welcome(ctx, auth);
                    Flow::Continue
                }
                Some(Err(failure)) => {
                    ctx.refuse_auth(&format!("{failure:?} token from {:?}", TokenSource::Message))
                }
                None => ctx.refuse_auth("no authenticator"),
            },
            _ => ctx.refuse_auth("message before auth"),
        };
    }
    let id = message.request_id().map(str::to_string);
    let reply = match message {
        ClientMessage::Ping { .. } => Some(Pong { timestamp: now_rfc3339() }.to_json()),
        ClientMessage::Subscribe { chat_id, add, resume, .. } => {
            handle_subscribe(ctx, auth, &chat_id, add, resume.as_ref(), id.as_deref())
        }
        ClientMessage::Unsubscribe { chat_id, .. } => {
            ctx.state.hub.unsubscribe(conn, &chat_id);
            Some(Unsubscribed { chat_id }.to_json())
        }
        ClientMessage::Resume { chat_id, resume, .. } => {
            let chat_id = chat_id.or_else(|| conn.subscriptions().into_iter().next());
            match chat_id {
                None => {
                    let mut error = ProtocolError::new(
                        ProtocolErrorCode::InvalidMessage,
                        "chat_id must be a non-empty string",
                    );
                    error.field = Some("chat_id".into());
                    Some(error.to_json())
                }
                Some(chat) if !auth.allows_chat(&chat) => Some(ctx.forbidden_chat(&chat)),
                Some(chat) => ctx
                    .state
                    .hub
                    .subscribe(conn, &chat, Some(&resume), None, false)
                    .err()
                    .map(subscribe_error),
            }
        }
        ClientMessage::Auth { token, .. } => match (ctx.authenticator, auth.grant()) {
            // A fresh token replaces the grant (e.g. a JWT refreshed before `exp`); a bad one ends the session.
            (Some(a), Some(_)) => match a.validate(&token) {
                Ok(grant) => {
                    let expires_at = grant.expires_at;
                    *auth = AuthState::Granted(grant);
                    Some(Authenticated { expires_at }.to_json())
                }
                Err(AuthFailure::Expired) => return ctx.refuse_auth("expired token in auth message"),
                Err(AuthFailure::Invalid) => return ctx.refuse_auth("invalid token in auth message"),
            },
            // Auth disabled: `auth` is an ordinary unknown message to this server.
            _ => {
                let original = Map::from_iter([("type".to_string(), Value::String("auth".into()))]);
                Some(Ack { original }.to_json())
            }
        },
        ClientMessage::Other { original, .. } => Some(Ack { original }.to_json()),
        ClientMessage::Invalid { rejection, .. } => Some(rejection.to_json()),
    };
    if let Some(reply) = reply {
        conn.send(&with_request_id(reply, id.as_deref()));
    }
    Flow::Continue
}

fn subscribe_error(err: SubscribeError) -> Value {
    match err {
        SubscribeError::TooManySubscriptions => {
            protocol_error(ProtocolErrorCode::TooManySubscriptions, "Too many subscriptions")
        }
        SubscribeError::ConnectionClosed => {
            protocol_error(ProtocolErrorCode::InternalError, "Internal error")
        }
    }
}

fn handle_subscribe(
    ctx: &Ctx<'_>,
    auth: &AuthState,
    chat_id: &str,
    add: bool,
    resume: Option<&Resume>,
    id: Option<&str>,
) -> Option<Value> {
    let (state, conn) = (ctx.state, ctx.conn);
    if !auth.allows_chat(chat_id) {
        return Some(ctx.forbidden_chat(chat_id));
    }
    if !ctx.chat_is_known(chat_id) {
        return Some(unknown_chat(chat_id));
    }
    let result = if add {
        let first = |seq: u64| {
            with_request_id(Subscribed { chat_id: chat_id.to_string(), last_seq: seq }.to_json(), id)
        };
        state.hub.subscribe(conn, chat_id, resume, Some(&first), false)
    } else {
        let previous = conn.subscriptions();
        for chat in previous.iter().filter(|c| c.as_str() != chat_id) {
            state.hub.unsubscribe(conn, chat);
        }
        let first = |seq: u64| with_request_id(connected_message(state, conn, Some(chat_id), Some(seq)), id);
        state.hub.subscribe(conn, chat_id, resume, Some(&first), false)
    };
    result.err().map(subscribe_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_debug_never_shows_the_token() {
        let h = Handshake {
            path_chat: Some("abc".into()),
            ip: IpAddr::from([127, 0, 0, 1]),
            resume: None,
            origin: None,
            token: Some(("s3cret-value".into(), TokenSource::Query)),
        };
        let text = format!("{h:?}");
        assert!(!text.contains("s3cret-value"), "{text}");
        assert!(text.contains("Query"), "{text}");
    }

    #[test]
    fn rate_limiter_allows_the_burst_then_rejects_then_closes() {
        let mut limiter = RateLimiter::new(2, 1.0, 1);
        assert!(matches!(limiter.take(), RateDecision::Allow));
        assert!(matches!(limiter.take(), RateDecision::Allow));
        match limiter.take() {
            RateDecision::Reject { retry_after_ms } => assert!((1..=1000).contains(&retry_after_ms)),
            _ => panic!("expected a rejection"),
        }
        assert!(matches!(limiter.take(), RateDecision::Close), "second violation > max_violations 1");
    }

    #[test]
    fn frame_errors_map_to_close_codes() {
        use actix_ws::ProtocolError;
        assert_eq!(protocol_close(&ProtocolError::Overflow).0, 1009);
        let bytes = vec![0xffu8];
        let utf8 = std::str::from_utf8(&bytes).unwrap_err();
        let bad_text = ProtocolError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, utf8));
        assert_eq!(protocol_close(&bad_text).0, 1007);
        let rsv =
            ProtocolError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, "non-zero reserved bits"));
        assert_eq!(protocol_close(&rsv).0, 1002);
        assert_eq!(protocol_close(&ProtocolError::BadOpCode).0, 1002);
    }
}
