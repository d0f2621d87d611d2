//! WebSocket security and limits (websocket.md C.10–C.13, C.16): origin allow-list, token sources and JWT
//! scope/expiry, rate limit and 4029, idle/unbound 4009, per-IP cap 1013, REST protection, `/metrics`, and
//! the test-only echo route.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::SinkExt;
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;

use crate::common::{
    envelope, recv_close_code, recv_json, recv_json_within, send_text, spawn_app, spawn_app_with, TestApp, Ws,
};

const SECRET: &str = "test-jwt-secret-0123456789";
const STATIC_TOKEN: &str = "st4tic-token";

type Handshake = tokio_tungstenite::tungstenite::handshake::client::Response;

async fn connect_with(
    app: &TestApp,
    path: &str,
    headers: &[(&'static str, &str)],
) -> Result<(Ws, Handshake), tokio_tungstenite::tungstenite::Error> {
    let mut request = format!("{}{path}", app.ws).into_client_request().expect("request");
    for (name, value) in headers {
        request.headers_mut().insert(*name, HeaderValue::from_str(value).expect("header value"));
    }
    tokio_tungstenite::connect_async(request).await
}

async fn connect_ok(app: &TestApp, path: &str, headers: &[(&'static str, &str)]) -> Ws {
    connect_with(app, path, headers).await.expect("upgrade accepted").0
}

/// The HTTP status of a refused upgrade.
async fn refused_status(app: &TestApp, path: &str, headers: &[(&'static str, &str)]) -> u16 {
    match connect_with(app, path, headers).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => res.status().as_u16(),
        Err(other) => panic!("expected an HTTP refusal, got {other}"),
        Ok(_) => panic!("expected an HTTP refusal, the upgrade was accepted"),
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn jwt(claims: Value) -> String {
    encode(&Header::default(), &claims, &EncodingKey::from_secret(SECRET.as_bytes())).unwrap()
}

async fn spawn_auth_app(tweak: impl FnOnce(&mut oxcelize::config::Config)) -> TestApp {
    spawn_app_with(|c| {
        let auth = &mut c.chat_workflows.websocket.auth;
        auth.enabled = true;
        auth.tokens = vec![STATIC_TOKEN.to_string()];
        auth.jwt_secret = Some(SECRET.to_string());
        auth.timeout_seconds = 1;
        tweak(c);
    })
    .await
}

async fn expect_connected(ws: &mut Ws, chat: Option<&str>) {
    let msg = recv_json(ws).await;
    assert_eq!(msg["type"], "connected", "{msg}");
    assert_eq!(msg["chat_id"], json!(chat), "{msg}");
}

async fn expect_error_then_close(ws: &mut Ws, code: &str, close: u16) {
    let msg = recv_json(ws).await;
    assert_eq!(msg["type"], "error", "{msg}");
    assert_eq!(msg["code"], code, "{msg}");
    assert_eq!(recv_close_code(ws, Duration::from_secs(5)).await, Some(close));
}

async fn health_ws(app: &TestApp) -> Value {
    let (status, body) = envelope(app.get("/health").await).await;
    assert_eq!(status, 200);
    body["data"]["websocket"].clone()
}

// ---------------------------------------------------------------- origin

#[tokio::test]
async fn origin_allow_list_refuses_others_with_4003() {
    let app =
        spawn_app_with(|c| c.chat_workflows.websocket.allowed_origins = vec!["http://localhost:3000".into()])
            .await;
    let mut evil = connect_ok(&app, "/chat/abc", &[("origin", "http://evil.test")]).await;
    let msg = recv_json(&mut evil).await;
    assert_eq!(msg, json!({"type": "error", "code": "origin_not_allowed", "message": "Origin not allowed"}));
    assert_eq!(recv_close_code(&mut evil, Duration::from_secs(5)).await, Some(4003));

    let mut good = connect_ok(&app, "/chat/abc", &[("origin", "HTTP://LOCALHOST:3000")]).await;
    expect_connected(&mut good, Some("abc")).await;
    let mut absent = connect_ok(&app, "/chat/abc", &[]).await;
    expect_connected(&mut absent, Some("abc")).await;
    assert_eq!(health_ws(&app).await["origin_rejections_total"], 1);
}

#[tokio::test]
async fn origin_wildcard_matches_subdomains_on_the_default_port_only() {
    let app =
        spawn_app_with(|c| c.chat_workflows.websocket.allowed_origins = vec!["https://*.example.com".into()])
            .await;
    for origin in ["https://studio.example.com", "https://a.b.example.com:443"] {
        let mut ws = connect_ok(&app, "/", &[("origin", origin)]).await;
        expect_connected(&mut ws, None).await;
    }
    for origin in ["https://example.com", "https://studio.example.com:8443", "http://studio.example.com"] {
        let mut ws = connect_ok(&app, "/", &[("origin", origin)]).await;
        expect_error_then_close(&mut ws, "origin_not_allowed", 4003).await;
    }
}

#[tokio::test]
async fn reject_at_handshake_answers_403_and_require_origin_refuses_missing_origin() {
    let app = spawn_app_with(|c| {
        let ws = &mut c.chat_workflows.websocket;
        ws.allowed_origins = vec!["http://localhost:3000".into()];
        ws.reject_at_handshake = true;
        ws.require_origin = true;
    })
    .await;
    assert_eq!(refused_status(&app, "/chat/abc", &[("origin", "http://evil.test")]).await, 403);
    assert_eq!(refused_status(&app, "/chat/abc", &[]).await, 403);
    let mut ok = connect_ok(&app, "/chat/abc", &[("origin", "http://localhost:3000")]).await;
    expect_connected(&mut ok, Some("abc")).await;
    // The same check guards the REST-port alias.
    let alias = format!("{}/ws/chat/abc", app.base.replace("http://", "ws://"));
    let mut request = alias.into_client_request().unwrap();
    request.headers_mut().insert("origin", HeaderValue::from_static("http://evil.test"));
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => assert_eq!(res.status(), 403),
        other => panic!("expected 403 on the REST port, got {:?}", other.map(|_| ())),
    }
    assert_eq!(health_ws(&app).await["origin_rejections_total"], 3);
}

// ---------------------------------------------------------------- tokens

#[tokio::test]
async fn auth_without_token_times_out_with_4002() {
    let app = spawn_auth_app(|_| {}).await;
    let mut ws = connect_ok(&app, "/chat/abc", &[]).await;
    // Nothing (no `connected`) before auth; after auth.timeout_seconds: unauthorized + 4002.
    let msg = recv_json(&mut ws).await;
    assert_eq!(msg, json!({"type": "error", "code": "unauthorized", "message": "Authentication required"}));
    assert_eq!(recv_close_code(&mut ws, Duration::from_secs(5)).await, Some(4002));
    assert_eq!(health_ws(&app).await["auth_rejections_total"], 1);
}

#[tokio::test]
async fn auth_header_query_and_subprotocol_tokens_connect() {
    let app = spawn_auth_app(|_| {}).await;
    let bearer = format!("Bearer {STATIC_TOKEN}");
    let mut header = connect_ok(&app, "/chat/abc", &[("authorization", &bearer)]).await;
    expect_connected(&mut header, Some("abc")).await;

    let mut query = connect_ok(&app, &format!("/chat/abc?token={STATIC_TOKEN}&last_seq=0"), &[]).await;
    expect_connected(&mut query, Some("abc")).await;
    assert_eq!(recv_json(&mut query).await["type"], "replay_complete", "other query parameters still work");

    let offered = format!("pycelize.v1, bearer.{STATIC_TOKEN}");
    let (mut sub, response) =
        connect_with(&app, "/chat/abc", &[("sec-websocket-protocol", &offered)]).await.expect("upgrade");
    assert_eq!(
        response.headers().get("sec-websocket-protocol").map(|v| v.to_str().unwrap()),
        Some("pycelize.v1"),
        "the server selects pycelize.v1, never echoing the token"
    );
    expect_connected(&mut sub, Some("abc")).await;

    let jwt_token = jwt(json!({"exp": now() + 600}));
    let mut with_jwt = connect_ok(&app, &format!("/chat/abc?token={jwt_token}"), &[]).await;
    expect_connected(&mut with_jwt, Some("abc")).await;
}

#[tokio::test]
async fn auth_first_message_allows_only_ping_before_it() {
    let app = spawn_auth_app(|c| c.chat_workflows.websocket.auth.timeout_seconds = 3).await;
    let mut ws = connect_ok(&app, "/chat/abc", &[]).await;
    send_text(&mut ws, "ping").await;
    assert_eq!(recv_json(&mut ws).await["type"], "pong");
    send_text(&mut ws, &json!({"type": "auth", "token": STATIC_TOKEN}).to_string()).await;
    expect_connected(&mut ws, Some("abc")).await;
    send_text(&mut ws, r#"{"type":"subscribe","chat_id":"other","mode":"add"}"#).await;
    assert_eq!(recv_json(&mut ws).await["type"], "subscribed");

    // Anything else before auth ends the connection.
    let mut early = connect_ok(&app, "/chat/abc", &[]).await;
    send_text(&mut early, r#"{"type":"subscribe","chat_id":"x"}"#).await;
    expect_error_then_close(&mut early, "unauthorized", 4002).await;

    // A wrong token in the auth message.
    let mut wrong = connect_ok(&app, "/chat/abc", &[]).await;
    send_text(&mut wrong, r#"{"type":"auth","token":"nope"}"#).await;
    expect_error_then_close(&mut wrong, "unauthorized", 4002).await;
}

#[tokio::test]
async fn invalid_or_disallowed_handshake_tokens_are_refused() {
    let app = spawn_auth_app(|c| c.chat_workflows.websocket.auth.allow_query_token = false).await;
    let mut bad = connect_ok(&app, "/chat/abc", &[("authorization", "Bearer wrong")]).await;
    expect_error_then_close(&mut bad, "unauthorized", 4002).await;
    // With allow_query_token false the query token is ignored: the connection waits for an auth message.
    let mut query = connect_ok(&app, &format!("/chat/abc?token={STATIC_TOKEN}"), &[]).await;
    assert!(recv_json_within(&mut query, Duration::from_millis(500))
        .await
        .is_none_or(|m| m["type"] != "connected"));
    expect_error_then_close(&mut query, "unauthorized", 4002).await;
    // bearer.<t> without pycelize.v1 is not a token source either.
    let offered = format!("bearer.{STATIC_TOKEN}");
    let result = connect_with(&app, "/chat/abc", &[("sec-websocket-protocol", &offered)]).await;
    assert!(result.is_err(), "no protocol selected: the client library refuses the handshake");
}

#[tokio::test]
async fn expired_jwt_is_refused_and_expiry_during_the_session_closes_with_4002() {
    let app = spawn_auth_app(|_| {}).await;
    let expired = jwt(json!({"exp": now() - 5}));
    let mut ws = connect_ok(&app, &format!("/chat/abc?token={expired}"), &[]).await;
    expect_error_then_close(&mut ws, "unauthorized", 4002).await;

    let short = jwt(json!({"exp": now() + 2}));
    let mut ws = connect_ok(&app, &format!("/chat/abc?token={short}"), &[]).await;
    expect_connected(&mut ws, Some("abc")).await;
    let msg = recv_json_within(&mut ws, Duration::from_secs(6)).await.expect("unauthorized on expiry");
    assert_eq!(msg["code"], "unauthorized", "{msg}");
    assert_eq!(recv_close_code(&mut ws, Duration::from_secs(5)).await, Some(4002));
}

#[tokio::test]
async fn jwt_chat_scope_refuses_other_chats() {
    let app = spawn_auth_app(|_| {}).await;
    let token = jwt(json!({"exp": now() + 600, "chat_ids": ["chatA"]}));
    let mut ws = connect_ok(&app, &format!("/chat/chatA?token={token}"), &[]).await;
    expect_connected(&mut ws, Some("chatA")).await;
    send_text(&mut ws, r#"{"type":"subscribe","chat_id":"chatB","id":"r1"}"#).await;
    let msg = recv_json(&mut ws).await;
    assert_eq!(msg["code"], "forbidden_chat", "{msg}");
    assert_eq!(msg["chat_id"], "chatB");
    assert_eq!(msg["id"], "r1");
    send_text(&mut ws, r#"{"type":"resume","chat_id":"chatB","last_seq":0}"#).await;
    assert_eq!(recv_json(&mut ws).await["code"], "forbidden_chat");
    // Still open and still subscribed to chatA only.
    send_text(&mut ws, r#"{"type":"ping"}"#).await;
    assert_eq!(recv_json(&mut ws).await["type"], "pong");
    app.handle.state().hub.publish("chatB", json!({"type": "probe"}));
    app.handle.state().hub.publish("chatA", json!({"type": "probe"}));
    let event = recv_json(&mut ws).await;
    assert_eq!((event["chat_id"].as_str(), event["seq"].as_u64()), (Some("chatA"), Some(1)));

    // A path chat outside the scope: forbidden_chat, then an unbound `connected`.
    let mut other = connect_ok(&app, &format!("/chat/chatB?token={token}"), &[]).await;
    assert_eq!(recv_json(&mut other).await["code"], "forbidden_chat");
    expect_connected(&mut other, None).await;
}

// ---------------------------------------------------------------- limits

#[tokio::test]
async fn rate_limit_rejects_when_empty_then_recovers() {
    let app = spawn_app_with(|c| {
        let rl = &mut c.chat_workflows.websocket.rate_limit;
        rl.burst = 5;
        rl.per_second = 4.0;
        rl.max_violations = 100;
    })
    .await;
    let mut ws = connect_ok(&app, "/chat/abc", &[]).await;
    expect_connected(&mut ws, Some("abc")).await;
    for _ in 0..8 {
        send_text(&mut ws, r#"{"type":"ping"}"#).await;
    }
    let mut pongs = 0;
    let mut limited = Vec::new();
    for _ in 0..8 {
        let msg = recv_json(&mut ws).await;
        match msg["type"].as_str() {
            Some("pong") => pongs += 1,
            _ => limited.push(msg),
        }
    }
    assert!((5..=6).contains(&pongs), "{pongs} pongs");
    assert!(!limited.is_empty());
    for msg in &limited {
        assert_eq!(msg["code"], "rate_limited", "{msg}");
        assert_eq!(msg["message"], "Rate limit exceeded");
        let retry = msg["retry_after_ms"].as_u64().expect("retry_after_ms");
        assert!((1..=250).contains(&retry), "{retry}");
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    send_text(&mut ws, "ping").await;
    assert_eq!(recv_json(&mut ws).await["type"], "pong", "the bucket refilled");
    assert!(health_ws(&app).await["rate_limited_total"].as_u64().unwrap() >= 2);
}

/// Reads frames until the close frame: the JSON frames seen and the close code.
async fn drain_until_close(ws: &mut Ws) -> (Vec<Value>, Option<u16>) {
    use futures_util::StreamExt;
    let mut frames = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => frames.push(serde_json::from_str(t.as_str()).unwrap()),
            Ok(Some(Ok(Message::Close(frame)))) => return (frames, frame.map(|f| u16::from(f.code))),
            Ok(Some(Ok(_))) => continue,
            _ => return (frames, None),
        }
    }
}

#[tokio::test]
async fn repeated_rate_limit_violations_close_with_4029() {
    let app = spawn_app_with(|c| {
        let rl = &mut c.chat_workflows.websocket.rate_limit;
        rl.burst = 2;
        rl.per_second = 0.1;
        rl.max_violations = 3;
    })
    .await;
    let mut ws = connect_ok(&app, "/chat/abc", &[]).await;
    expect_connected(&mut ws, Some("abc")).await;
    for _ in 0..10 {
        if ws.send(Message::Text("ping".into())).await.is_err() {
            break;
        }
    }
    let (frames, close) = drain_until_close(&mut ws).await;
    let kinds: Vec<String> = frames
        .iter()
        .map(|m| format!("{}:{}", m["type"].as_str().unwrap(), m["code"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(
        kinds,
        [
            "pong:",
            "pong:",
            "error:rate_limited",
            "error:rate_limited",
            "error:rate_limited",
            "error:rate_limited"
        ],
        "2 allowed, 3 rejected, the 4th violation closes"
    );
    assert_eq!(close, Some(4029));
    assert_eq!(health_ws(&app).await["rate_limited_total"], 4);
}

#[tokio::test]
async fn idle_timeout_closes_silent_clients_with_4009_but_not_pinging_ones() {
    let app = spawn_app_with(|c| c.chat_workflows.websocket.idle_timeout_seconds = 1).await;
    let mut silent = connect_ok(&app, "/chat/abc", &[]).await;
    let mut busy = connect_ok(&app, "/chat/abc", &[]).await;
    expect_connected(&mut silent, Some("abc")).await;
    expect_connected(&mut busy, Some("abc")).await;
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        send_text(&mut busy, "ping").await;
        assert_eq!(recv_json(&mut busy).await["type"], "pong");
    }
    let msg = recv_json(&mut silent).await;
    assert_eq!((msg["type"].as_str(), msg["code"].as_str()), (Some("error"), Some("idle_timeout")), "{msg}");
    assert_eq!(recv_close_code(&mut silent, Duration::from_secs(5)).await, Some(4009));
}

#[tokio::test]
async fn unbound_connections_close_after_unbound_timeout() {
    let app = spawn_app_with(|c| c.chat_workflows.websocket.unbound_timeout_seconds = 1).await;
    let started = std::time::Instant::now();
    let mut unbound = connect_ok(&app, "/", &[]).await;
    let mut bound = connect_ok(&app, "/chat/abc", &[]).await;
    expect_connected(&mut unbound, None).await;
    expect_connected(&mut bound, Some("abc")).await;
    expect_error_then_close(&mut unbound, "idle_timeout", 4009).await;
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(900) && waited < Duration::from_secs(4), "{waited:?}");
    // The bound one stays.
    send_text(&mut bound, "ping").await;
    assert_eq!(recv_json(&mut bound).await["type"], "pong");
    // Unsubscribing starts the clock for a bound connection too.
    send_text(&mut bound, r#"{"type":"unsubscribe","chat_id":"abc"}"#).await;
    assert_eq!(recv_json(&mut bound).await["type"], "unsubscribed");
    expect_error_then_close(&mut bound, "idle_timeout", 4009).await;
}

#[tokio::test]
async fn per_ip_cap_refuses_with_1013() {
    let app = spawn_app_with(|c| c.chat_workflows.websocket.max_connections_per_ip = 2).await;
    let mut a = connect_ok(&app, "/chat/abc", &[]).await;
    let mut b = connect_ok(&app, "/", &[]).await;
    expect_connected(&mut a, Some("abc")).await;
    expect_connected(&mut b, None).await;
    let mut c = connect_ok(&app, "/chat/abc", &[]).await;
    let msg = recv_json(&mut c).await;
    assert_eq!(
        msg,
        json!({"type": "error", "code": "max_connections", "message": "Maximum connections reached"})
    );
    assert_eq!(recv_close_code(&mut c, Duration::from_secs(5)).await, Some(1013));
    assert_eq!(health_ws(&app).await["connections_refused_total"], 1);
    // A slot frees up when one closes.
    drop(b);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut d = connect_ok(&app, "/", &[]).await;
    expect_connected(&mut d, None).await;
}

#[tokio::test]
async fn per_chat_cap_refuses_with_1013_and_other_chats_still_connect() {
    let app = spawn_app_with(|c| c.chat_workflows.websocket.max_connections_per_chat = 1).await;
    let mut first = connect_ok(&app, "/chat/abc", &[]).await;
    expect_connected(&mut first, Some("abc")).await;
    let mut second = connect_ok(&app, "/chat/abc", &[]).await;
    expect_error_then_close(&mut second, "max_connections", 1013).await;
    let mut other = connect_ok(&app, "/chat/xyz", &[]).await;
    expect_connected(&mut other, Some("xyz")).await;
}

#[tokio::test]
async fn subscription_cap_refuses_without_closing() {
    let app = spawn_app_with(|c| c.chat_workflows.websocket.max_subscriptions_per_connection = 2).await;
    let mut ws = connect_ok(&app, "/chat/a1", &[]).await;
    expect_connected(&mut ws, Some("a1")).await;
    send_text(&mut ws, r#"{"type":"subscribe","chat_id":"a2","mode":"add"}"#).await;
    assert_eq!(recv_json(&mut ws).await["type"], "subscribed");
    send_text(&mut ws, r#"{"type":"subscribe","chat_id":"a3","mode":"add","id":"q"}"#).await;
    let msg = recv_json(&mut ws).await;
    assert_eq!(
        msg,
        json!({"type": "error", "code": "too_many_subscriptions", "message": "Too many subscriptions", "id": "q"})
    );
    app.handle.state().hub.publish("a3", json!({"type": "probe"}));
    app.handle.state().hub.publish("a2", json!({"type": "probe"}));
    assert_eq!(recv_json(&mut ws).await["chat_id"], "a2", "a3 was not subscribed; the connection is open");
}

#[tokio::test]
async fn auth_message_is_acknowledged_when_auth_is_disabled() {
    let app = spawn_app().await;
    let mut ws = connect_ok(&app, "/chat/abc", &[]).await;
    expect_connected(&mut ws, Some("abc")).await;
    send_text(&mut ws, r#"{"type":"auth","token":"whatever"}"#).await;
    let msg = recv_json(&mut ws).await;
    assert_eq!(msg, json!({"type": "ack", "original": {"type": "auth"}}), "the token is not echoed back");
}

#[tokio::test]
async fn invalid_utf8_text_frame_closes_with_1007() {
    let app = spawn_app().await;
    let mut ws = connect_ok(&app, "/chat/abc", &[]).await;
    expect_connected(&mut ws, Some("abc")).await;
    let frame = Frame::message(vec![0xff, 0xfe, b'{'], OpCode::Data(Data::Text), true);
    ws.send(Message::Frame(frame)).await.expect("raw frame");
    assert_eq!(recv_close_code(&mut ws, Duration::from_secs(5)).await, Some(1007));
}

// ---------------------------------------------------------------- REST + metrics

#[tokio::test]
async fn rest_api_requires_a_token_when_protected_but_health_stays_open() {
    let app = spawn_auth_app(|c| c.chat_workflows.websocket.auth.protect_rest_api = true).await;
    let url = format!("{}/files/downloads/nothing.xlsx", app.api);
    let (status, body) = envelope(app.client.get(&url).send().await.unwrap()).await;
    assert_eq!(status, 401);
    assert_eq!(body["message"], "Authentication required");
    assert_eq!(body["data"]["error_type"], "Unauthorized");
    let (status, body) = envelope(app.client.get(&url).bearer_auth("wrong").send().await.unwrap()).await;
    assert_eq!((status, body["message"].as_str()), (401, Some("Invalid or expired token")));
    let expired = jwt(json!({"exp": now() - 1}));
    let (status, _) = envelope(app.client.get(&url).bearer_auth(&expired).send().await.unwrap()).await;
    assert_eq!(status, 401);
    // With a token the request reaches the route (the file does not exist: 404).
    let (status, _) = envelope(app.client.get(&url).bearer_auth(STATIC_TOKEN).send().await.unwrap()).await;
    assert_eq!(status, 404);
    let valid_jwt = jwt(json!({"exp": now() + 60}));
    let (status, _) = envelope(app.client.get(&url).bearer_auth(&valid_jwt).send().await.unwrap()).await;
    assert_eq!(status, 404);
    // Health stays open; /metrics is protected.
    let (status, _) = envelope(app.get("/health").await).await;
    assert_eq!(status, 200);
    let metrics = format!("{}/metrics", app.base);
    assert_eq!(app.client.get(&metrics).send().await.unwrap().status(), 401);
    assert_eq!(app.client.get(&metrics).bearer_auth(STATIC_TOKEN).send().await.unwrap().status(), 200);
    assert!(app.upload_files().is_empty() && app.output_files().is_empty());
}

#[tokio::test]
async fn rest_api_is_open_by_default() {
    let app = spawn_auth_app(|_| {}).await;
    let url = format!("{}/files/downloads/nothing.xlsx", app.api);
    let (status, _) = envelope(app.client.get(&url).send().await.unwrap()).await;
    assert_eq!(status, 404, "protect_rest_api is off: no token needed");
}

#[tokio::test]
async fn metrics_expose_http_and_websocket_counters() {
    let app = spawn_app_with(|c| {
        let rl = &mut c.chat_workflows.websocket.rate_limit;
        rl.burst = 1;
        rl.per_second = 0.5;
    })
    .await;
    let (status, _) = envelope(app.get("/health").await).await;
    assert_eq!(status, 200);
    let mut ws = connect_ok(&app, "/chat/abc", &[]).await;
    expect_connected(&mut ws, Some("abc")).await;
    send_text(&mut ws, "ping").await;
    send_text(&mut ws, "ping").await;
    assert_eq!(recv_json(&mut ws).await["type"], "pong");
    assert_eq!(recv_json(&mut ws).await["code"], "rate_limited");
    app.handle.state().hub.publish("abc", json!({"type": "progress", "step_id": "s1"}));
    app.handle.state().hub.publish("abc", json!({"type": "workflow_started"}));

    let res = app.client.get(format!("{}/metrics", app.base)).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let content_type = res.headers()["content-type"].to_str().unwrap().to_string();
    assert!(content_type.starts_with("application/openmetrics-text"), "{content_type}");
    let text = res.text().await.unwrap();
    for expected in [
        "# TYPE oxcelize_http_requests counter",
        r#"oxcelize_http_requests_total{method="GET",route="/api/v1/health",status="200"} 1"#,
        "# TYPE oxcelize_http_request_duration_seconds histogram",
        "oxcelize_ws_connections 1",
        "oxcelize_ws_connections_bound 1",
        "oxcelize_ws_connections_unbound 0",
        "oxcelize_ws_subscriptions 1",
        "oxcelize_ws_rate_limit_rejections_total 1",
        "oxcelize_ws_events_published_total 2",
        r#"oxcelize_ws_events_published_by_type_total{type="progress"} 1"#,
        r#"oxcelize_ws_events_published_by_type_total{type="workflow_started"} 1"#,
        "oxcelize_ws_auth_rejections_total 0",
        "oxcelize_ws_origin_rejections_total 0",
        "oxcelize_ws_slow_consumer_closes_total 0",
        "oxcelize_ws_progress_coalesced_total 0",
        "oxcelize_ws_events_replayed_total 0",
        "# EOF",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert!(!text.contains("/files/downloads/"), "routes are patterns, never raw paths");

    // Health details show the same numbers.
    let (_, body) = envelope(app.get("/health").await).await;
    let ws_stats = &body["data"]["websocket"];
    assert_eq!(ws_stats["rate_limited_total"], 1);
    assert_eq!(ws_stats["events_published_by_type"], json!({"progress": 1, "workflow_started": 1}));
    assert!(body["data"]["http"]["requests_total"].as_u64().unwrap() >= 2);
    // A wrong method on /metrics is a JSON 405.
    let res = app.client.post(format!("{}/metrics", app.base)).send().await.unwrap();
    assert_eq!(res.status(), 405);
}

// ---------------------------------------------------------------- echo route

#[tokio::test]
async fn echo_route_exists_only_when_enabled() {
    let app = spawn_app().await;
    assert_eq!(refused_status(&app, "/echo", &[]).await, 404);
    let app = spawn_app_with(|c| c.chat_workflows.websocket.test_echo_route = true).await;
    let mut ws = connect_ok(&app, "/echo", &[]).await;
    ws.send(Message::Text("not json at all".into())).await.unwrap();
    ws.send(Message::Binary(vec![0u8, 1, 2].into())).await.unwrap();
    use futures_util::StreamExt;
    let first = ws.next().await.unwrap().unwrap();
    assert_eq!(first, Message::Text("not json at all".into()));
    let second = ws.next().await.unwrap().unwrap();
    assert_eq!(second, Message::Binary(vec![0u8, 1, 2].into()));
}

/// Connects that arrive together cannot all pass the per-chat cap: the path's chat is reserved at connect.
#[tokio::test]
async fn simultaneous_connects_to_one_chat_respect_the_per_chat_cap() {
    let app = spawn_app_with(|c| c.chat_workflows.websocket.max_connections_per_chat = 2).await;
    let attempts = (0..10).map(|_| async {
        let mut ws = connect_ok(&app, "/chat/busy", &[]).await;
        let first = recv_json(&mut ws).await;
        (first["type"].as_str() == Some("connected"), ws)
    });
    let results = futures_util::future::join_all(attempts).await;
    let admitted = results.iter().filter(|(ok, _)| *ok).count();
    assert_eq!(admitted, 2, "exactly the cap is admitted");
    for (ok, mut ws) in results {
        if !ok {
            assert_eq!(recv_close_code(&mut ws, Duration::from_secs(5)).await, Some(1013));
        }
    }
}
