//! The base WebSocket protocol (websocket.md Part A and C.2, C.4, C.6, C.7, C.11, C.14).

use std::time::Duration;

use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;

#[tokio::test]
async fn connected_welcome_carries_reference_and_new_fields() {
    let app = spawn_app().await;
    let mut ws = app.ws_connect("/chat/demo").await;
    let hello = recv_json(&mut ws).await;
    assert_eq!(hello["type"], "connected");
    assert_eq!(hello["chat_id"], "demo");
    assert_eq!(hello["message"], "Connected to chat workflow");
    assert_eq!(hello["last_seq"], 0);
    assert_eq!(hello["protocol_version"], 2);
    assert_eq!(hello["heartbeat"], json!({"ping_interval": 30, "ping_timeout": 10}));
    assert!(hello["connection_id"].is_string() && hello["epoch"].is_string());
    assert_eq!(hello["active_job"], Value::Null);
    assert!(hello["timestamp"].as_str().unwrap().ends_with("+00:00"));
}

#[tokio::test]
async fn chat_id_comes_from_the_path_without_the_query_string() {
    let app = spawn_app().await;
    for path in ["/chat/abc?x=1", "/chat/abc/", "/ws/chat/abc"] {
        let mut ws = app.ws_connect(path).await;
        assert_eq!(recv_json(&mut ws).await["chat_id"], "abc", "{path}");
    }
}

#[tokio::test]
async fn unbound_paths_connect_with_null_chat_and_other_paths_are_404() {
    let app = spawn_app().await;
    for path in ["/", "/chat/"] {
        let mut ws = app.ws_connect(path).await;
        let hello = recv_json(&mut ws).await;
        assert_eq!(hello["type"], "connected");
        assert_eq!(hello["chat_id"], Value::Null, "{path}");
        assert_eq!(hello["last_seq"], Value::Null);
    }
    let err = tokio_tungstenite::connect_async(format!("{}/foo", app.ws)).await.unwrap_err();
    match err {
        tokio_tungstenite::tungstenite::Error::Http(res) => assert_eq!(res.status(), 404),
        other => panic!("expected an HTTP 404 at handshake, got {other}"),
    }
}

#[tokio::test]
async fn invalid_chat_id_in_path_is_refused_with_4001() {
    let app = spawn_app().await;
    let long = "a".repeat(65);
    for id in ["-starts-with-dash", long.as_str(), "has.dot"] {
        let mut ws = app.ws_connect(&format!("/chat/{id}")).await;
        let err = recv_json(&mut ws).await;
        assert_eq!(err["type"], "error");
        assert_eq!(err["code"], "invalid_chat_id");
        assert_eq!(recv_close_code(&mut ws, Duration::from_secs(5)).await, Some(4001), "{id}");
    }
}

#[tokio::test]
async fn json_ping_and_bare_text_ping_get_pong() {
    let app = spawn_app().await;
    let mut ws = app.ws_connect("/chat/demo").await;
    recv_json(&mut ws).await;
    for frame in [r#"{"type":"ping"}"#, "ping", "  PING\n"] {
        send_text(&mut ws, frame).await;
        let pong = recv_json(&mut ws).await;
        assert_eq!(pong["type"], "pong", "{frame}");
        assert!(pong.get("seq").is_none());
    }
    send_text(&mut ws, r#"{"type":"ping","id":"req-7"}"#).await;
    assert_eq!(recv_json(&mut ws).await["id"], "req-7");
}

#[tokio::test]
async fn a_protocol_ping_gets_a_pong_with_its_payload_in_order_with_events() {
    let app = spawn_app().await;
    let mut ws = app.ws_connect("/chat/demo").await;
    recv_json(&mut ws).await;
    ws.send(Message::Ping(b"are you there".to_vec().into())).await.unwrap();
    send_text(&mut ws, "ping").await;
    let mut pong_payload = None;
    let mut json_pong = false;
    while !(json_pong && pong_payload.is_some()) {
        let msg = tokio::time::timeout(Duration::from_secs(5), futures_util::StreamExt::next(&mut ws))
            .await
            .expect("a frame within 5 s")
            .expect("the connection stays open")
            .unwrap();
        match msg {
            Message::Pong(payload) => pong_payload = Some(payload.to_vec()),
            Message::Text(text) => {
                assert!(pong_payload.is_some(), "the protocol pong was queued first");
                json_pong = serde_json::from_str::<Value>(&text).unwrap()["type"] == "pong";
            }
            other => panic!("unexpected frame {other:?}"),
        }
    }
    assert_eq!(pong_payload.unwrap(), b"are you there");
}

#[tokio::test]
async fn invalid_json_is_an_error_event_and_the_connection_stays_usable() {
    let app = spawn_app().await;
    let mut ws = app.ws_connect("/chat/demo").await;
    recv_json(&mut ws).await;
    send_text(&mut ws, "not json").await;
    let err = recv_json(&mut ws).await;
    assert_eq!(err, json!({"type": "error", "code": "invalid_json", "message": "Invalid JSON"}));
    send_text(&mut ws, "[1,2]").await;
    let err = recv_json(&mut ws).await;
    assert_eq!(err["code"], "invalid_message");
    assert_eq!(err["message"], "Message must be a JSON object");
    send_text(&mut ws, r#"{"type":"ping"}"#).await;
    assert_eq!(recv_json(&mut ws).await["type"], "pong");
    // Binary frames holding UTF-8 JSON are accepted like text.
    ws.send(Message::Binary(br#"{"type":"ping"}"#.to_vec().into())).await.unwrap();
    assert_eq!(recv_json(&mut ws).await["type"], "pong");
}

#[tokio::test]
async fn unknown_types_are_acknowledged_with_the_original() {
    let app = spawn_app().await;
    let mut ws = app.ws_connect("/chat/demo").await;
    recv_json(&mut ws).await;
    for msg in [json!({"type": "hello", "n": 1}), json!({"n": 2}), json!({"type": 5})] {
        send_text(&mut ws, &msg.to_string()).await;
        assert_eq!(recv_json(&mut ws).await, json!({"type": "ack", "original": msg}));
    }
}

#[tokio::test]
async fn subscribe_replace_add_and_unsubscribe() {
    let app = spawn_app().await;
    let mut ws = app.ws_connect("/chat/one").await;
    recv_json(&mut ws).await;
    send_text(&mut ws, r#"{"type":"subscribe","chat_id":"two"}"#).await;
    let reply = recv_json(&mut ws).await;
    assert_eq!((reply["type"].as_str(), reply["chat_id"].as_str()), (Some("connected"), Some("two")));
    send_text(&mut ws, r#"{"type":"subscribe","chat_id":"three","mode":"add"}"#).await;
    assert_eq!(recv_json(&mut ws).await, json!({"type": "subscribed", "chat_id": "three", "last_seq": 0}));

    // Replace mode dropped "one": only "two" and "three" receive events.
    let hub = &app.state.hub;
    hub.publish("one", json!({"type": "progress", "step_id": "s"}));
    hub.publish("three", json!({"type": "workflow_started", "total_steps": 1}));
    let event = recv_json(&mut ws).await;
    assert_eq!((event["chat_id"].as_str(), event["seq"].as_u64()), (Some("three"), Some(1)));

    send_text(&mut ws, r#"{"type":"unsubscribe","chat_id":"three"}"#).await;
    assert_eq!(recv_json(&mut ws).await, json!({"type": "unsubscribed", "chat_id": "three"}));
    hub.publish("three", json!({"type": "workflow_completed"}));
    send_text(&mut ws, "ping").await;
    assert_eq!(recv_json(&mut ws).await["type"], "pong", "no event after unsubscribe");

    send_text(&mut ws, r#"{"type":"subscribe"}"#).await;
    let err = recv_json(&mut ws).await;
    assert_eq!((err["code"].as_str(), err["field"].as_str()), (Some("invalid_message"), Some("chat_id")));
    send_text(&mut ws, r#"{"type":"subscribe","chat_id":"../etc"}"#).await;
    assert_eq!(recv_json(&mut ws).await["code"], "invalid_chat_id");
}

#[tokio::test]
async fn events_carry_increasing_seq_and_resume_replays_exactly_the_missed_ones() {
    let app = spawn_app().await;
    let hub = &app.state.hub;
    let mut live = app.ws_connect("/chat/run").await;
    recv_json(&mut live).await;
    for i in 1..=5 {
        hub.publish("run", json!({"type": "progress", "step_id": format!("s{i}"), "progress": 0}));
    }
    for i in 1..=5u64 {
        let e = recv_json(&mut live).await;
        assert_eq!(e["seq"], i);
        assert_eq!(e["chat_id"], "run");
        assert!(e.get("replayed").is_none());
    }

    let mut resumed = app.ws_connect("/chat/run?last_seq=2").await;
    let hello = recv_json(&mut resumed).await;
    assert_eq!((hello["type"].as_str(), hello["last_seq"].as_u64()), (Some("connected"), Some(5)));
    for seq in 3..=5u64 {
        let e = recv_json(&mut resumed).await;
        assert_eq!((e["seq"].as_u64(), e["replayed"].as_bool()), (Some(seq), Some(true)));
    }
    let done = recv_json(&mut resumed).await;
    assert_eq!(
        done,
        json!({"type": "replay_complete", "chat_id": "run", "from_seq": 3, "to_seq": 5, "count": 3})
    );
    hub.publish("run", json!({"type": "workflow_completed"}));
    assert_eq!(recv_json(&mut resumed).await["seq"], 6);

    // Ahead of the server: resync_required, nothing replayed.
    let mut ahead = app.ws_connect("/chat/run").await;
    recv_json(&mut ahead).await;
    send_text(&mut ahead, r#"{"type":"resume","chat_id":"run","last_seq":99}"#).await;
    let resync = recv_json(&mut ahead).await;
    assert_eq!(
        (resync["type"].as_str(), resync["reason"].as_str()),
        (Some("resync_required"), Some("ahead"))
    );
    assert_eq!(recv_json(&mut ahead).await["count"], 0);
}

#[tokio::test]
async fn max_connections_counts_every_connection_and_refuses_with_1013() {
    let app = spawn_app_with(|c| c.chat_workflows.max_connections = 2).await;
    let mut a = app.ws_connect("/chat/x").await;
    recv_json(&mut a).await;
    let mut b = app.ws_connect("/").await; // unbound connections count too
    recv_json(&mut b).await;
    let mut c = app.ws_connect("/chat/y").await;
    let err = recv_json(&mut c).await;
    assert_eq!(
        err,
        json!({"type": "error", "code": "max_connections", "message": "Maximum connections reached"})
    );
    assert_eq!(recv_close_code(&mut c, Duration::from_secs(5)).await, Some(1013));
    // Subscribing never re-runs the limit: an accepted connection is never closed by it.
    send_text(&mut b, r#"{"type":"subscribe","chat_id":"z"}"#).await;
    assert_eq!(recv_json(&mut b).await["type"], "connected");
    // A slot frees up when a client leaves.
    a.close(None).await.unwrap();
    drop(a);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut d = app.ws_connect("/chat/y").await;
    assert_eq!(recv_json(&mut d).await["type"], "connected");
}

#[tokio::test]
async fn oversized_message_closes_with_1009() {
    let app = spawn_app_with(|c| c.chat_workflows.websocket.max_message_bytes = 1024).await;
    let mut ws = app.ws_connect("/chat/demo").await;
    recv_json(&mut ws).await;
    send_text(&mut ws, &format!(r#"{{"type":"x","pad":"{}"}}"#, "a".repeat(2000))).await;
    assert_eq!(recv_close_code(&mut ws, Duration::from_secs(5)).await, Some(1009));
}

/// Reads raw server frames (unmasked) from a socket whose client never answers pings; returns the opcodes
/// seen and the close code.
async fn read_raw_until_close(stream: &mut tokio::net::TcpStream, wait: Duration) -> (Vec<u8>, Option<u16>) {
    let mut opcodes = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let mut head = [0u8; 2];
        if tokio::time::timeout_at(deadline, stream.read_exact(&mut head)).await.is_err() {
            return (opcodes, None);
        }
        let opcode = head[0] & 0x0f;
        let mut len = u64::from(head[1] & 0x7f);
        if len == 126 {
            len = u64::from(stream.read_u16().await.unwrap());
        } else if len == 127 {
            len = stream.read_u64().await.unwrap();
        }
        let mut payload = vec![0u8; len as usize];
        stream.read_exact(&mut payload).await.unwrap();
        opcodes.push(opcode);
        if opcode == 0x8 {
            return (opcodes, (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]])));
        }
    }
}

#[tokio::test]
async fn server_pings_and_closes_1011_when_no_pong_arrives() {
    let app = spawn_app_with(|c| {
        c.chat_workflows.websocket.ping_interval = 2;
        c.chat_workflows.websocket.ping_timeout = 1;
    })
    .await;
    // A raw upgrade: from here on nobody answers the server's pings.
    let addr = app.ws.trim_start_matches("ws://").to_string();
    let mut raw = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let key = tokio_tungstenite::tungstenite::handshake::client::generate_key();
    let request = format!(
        "GET /chat/demo HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    tokio::io::AsyncWriteExt::write_all(&mut raw, request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(raw.read_u8().await.unwrap());
    }
    assert!(String::from_utf8_lossy(&head).starts_with("HTTP/1.1 101"));
    let started = std::time::Instant::now();
    let (opcodes, code) = read_raw_until_close(&mut raw, Duration::from_secs(10)).await;
    assert!(opcodes.contains(&0x9), "a ping frame was sent: {opcodes:?}");
    assert_eq!(code, Some(1011));
    assert!(started.elapsed() >= Duration::from_secs(2), "not before the first ping interval");

    // A client that answers pings stays connected past the timeout.
    let mut ws = app.ws_connect("/chat/demo").await;
    recv_json(&mut ws).await;
    assert!(recv_json_within(&mut ws, Duration::from_secs(5)).await.is_none(), "no close while pongs arrive");
    send_text(&mut ws, "ping").await;
    assert_eq!(recv_json(&mut ws).await["type"], "pong");
}

#[tokio::test]
async fn rest_port_speaks_the_same_protocol() {
    let app = spawn_app().await;
    let rest_ws = app.base.replacen("http://", "ws://", 1);
    for path in ["/ws/chat/demo", "/api/v1/ws/chat/demo", "/chat/demo"] {
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("{rest_ws}{path}")).await.expect(path);
        let hello = recv_json(&mut ws).await;
        assert_eq!(
            (hello["type"].as_str(), hello["chat_id"].as_str()),
            (Some("connected"), Some("demo")),
            "{path}"
        );
        send_text(&mut ws, "ping").await;
        assert_eq!(recv_json(&mut ws).await["type"], "pong");
    }
    let app = spawn_app_with(|c| c.chat_workflows.websocket.serve_on_rest_port = false).await;
    let rest_ws = app.base.replacen("http://", "ws://", 1);
    assert!(tokio_tungstenite::connect_async(format!("{rest_ws}/ws/chat/demo")).await.is_err());
}

#[tokio::test]
async fn shutdown_notifies_and_closes_with_1001() {
    let app = spawn_app().await;
    let mut ws = app.ws_connect("/chat/demo").await;
    recv_json(&mut ws).await;
    let stopper = {
        let handle = app.handle.clone();
        tokio::spawn(async move { handle.stop().await })
    };
    let notice = recv_json(&mut ws).await;
    assert_eq!(notice, json!({"type": "server_shutdown", "reconnect_after_ms": 2000}));
    assert_eq!(recv_close_code(&mut ws, Duration::from_secs(5)).await, Some(1001));
    stopper.await.unwrap();
}

#[tokio::test]
async fn disabled_chat_workflows_start_no_websocket_listener() {
    let app = spawn_app_with(|c| c.chat_workflows.enabled = false).await;
    assert!(app.ws.is_empty());
    let (status, _) = envelope(app.get("/health").await).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn require_existing_chat_refuses_unknown_ids_with_4001_and_unknown_subscribes() {
    let app = spawn_app_with(|c| c.chat_workflows.websocket.require_existing_chat = true).await;
    let mut ws = app.ws_connect("/chat/no-such-chat").await;
    let err = recv_json(&mut ws).await;
    assert_eq!((err["code"].as_str(), err["chat_id"].as_str()), (Some("unknown_chat"), Some("no-such-chat")));
    assert_eq!(recv_close_code(&mut ws, Duration::from_secs(5)).await, Some(4001));

    let chat_id = crate::chat_support::create_chat(&app).await;
    let mut ws = app.ws_connect(&format!("/chat/{chat_id}")).await;
    let hello = recv_json(&mut ws).await;
    assert_eq!(
        (hello["type"].as_str(), hello["chat_id"].as_str()),
        (Some("connected"), Some(chat_id.as_str()))
    );
    // On subscribe the refusal is an error only: the connection stays open.
    send_text(&mut ws, r#"{"type":"subscribe","chat_id":"still-unknown","mode":"add"}"#).await;
    assert_eq!(recv_json(&mut ws).await["code"], "unknown_chat");
    send_text(&mut ws, "ping").await;
    assert_eq!(recv_json(&mut ws).await["type"], "pong");
}
