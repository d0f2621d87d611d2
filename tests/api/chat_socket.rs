//! The WebSocket protocol itself (acceptance-chat.md H.177–H.190, I.192–I.227 without auth/origin).

use std::time::{Duration, Instant};

use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::chat_support::*;
use crate::common::{recv_close_code, recv_json, recv_json_within, send_text, spawn_app, spawn_app_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h177_to_h183_i192_i193_i204_i212_i226_basic_protocol() {
    let app = spawn_app().await;
    let mut ws = app.ws_connect("/chat/test-chat").await;
    let hello = recv_json(&mut ws).await;
    assert_eq!(
        (hello["type"].as_str(), hello["chat_id"].as_str()),
        (Some("connected"), Some("test-chat")),
        "h177/h183"
    );
    assert!(hello["timestamp"].as_str().unwrap().ends_with("+00:00"));
    send_text(&mut ws, r#"{"type":"ping"}"#).await;
    assert_eq!(recv_json(&mut ws).await["type"], "pong", "h178");
    send_text(&mut ws, "{oops").await;
    let e = recv_json(&mut ws).await;
    assert_eq!((e["type"].as_str(), e["message"].as_str()), (Some("error"), Some("Invalid JSON")), "h179");
    send_text(&mut ws, r#"{"type":"hello","n":1}"#).await;
    assert_eq!(
        recv_json(&mut ws).await,
        json!({"type": "ack", "original": {"type": "hello", "n": 1}}),
        "h180"
    );
    send_text(&mut ws, r#"{"n":2}"#).await;
    assert_eq!(recv_json(&mut ws).await["type"], "ack");
    send_text(&mut ws, "ping").await;
    assert_eq!(recv_json(&mut ws).await["type"], "pong", "i192");
    send_text(&mut ws, "[1,2]").await;
    let e = recv_json(&mut ws).await;
    assert_eq!(
        (e["code"].as_str(), e["message"].as_str()),
        (Some("invalid_message"), Some("Message must be a JSON object")),
        "i193"
    );
    send_text(&mut ws, r#"{"type":"subscribe"}"#).await;
    assert_eq!(recv_json(&mut ws).await["code"], "invalid_message", "i204");
    send_text(&mut ws, r#"{"type":"ping","id":"r1"}"#).await;
    assert_eq!(recv_json(&mut ws).await["id"], "r1", "i226");

    // h181: subscribe moves the connection.
    let a = chat_with_csv(&app).await;
    let b = create_chat(&app).await;
    let mut ws = subscriber(&app, &a).await;
    send_text(&mut ws, &json!({"type": "subscribe", "chat_id": b}).to_string()).await;
    let c = recv_json(&mut ws).await;
    assert_eq!((c["type"].as_str(), c["chat_id"].as_str()), (Some("connected"), Some(b.as_str())));
    upload(&app, &a, "x.csv", b"a\n1\n".to_vec()).await;
    upload(&app, &b, "y.csv", b"a\n1\n".to_vec()).await;
    let e = recv_json(&mut ws).await;
    assert_eq!(e["chat_id"], b.as_str(), "only events of the new chat");

    // h182: unbound.
    let mut ws = app.ws_connect("/").await;
    let hello = recv_json(&mut ws).await;
    assert!(hello["chat_id"].is_null() && hello["active_job"].is_null() && hello["last_seq"].is_null());
    upload(&app, &a, "z.csv", b"a\n1\n".to_vec()).await;
    assert!(recv_json_within(&mut ws, Duration::from_millis(300)).await.is_none());

    // i212: the query string is not part of the id.
    let mut ws = app.ws_connect("/chat/abc?last_seq=0").await;
    assert_eq!(recv_json(&mut ws).await["chat_id"], "abc");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h189_i205_i206_connection_limits() {
    let app = spawn_app_with(|c| c.chat_workflows.max_connections = 2).await;
    let mut a = app.ws_connect("/chat/one").await;
    recv_json(&mut a).await;
    let mut b = app.ws_connect("/").await; // i206: unbound connections count
    recv_json(&mut b).await;
    let mut c = app.ws_connect("/chat/three").await;
    let e = recv_json(&mut c).await;
    assert_eq!(
        (e["type"].as_str(), e["message"].as_str(), e["code"].as_str()),
        (Some("error"), Some("Maximum connections reached"), Some("max_connections"))
    );
    assert_eq!(recv_close_code(&mut c, Duration::from_secs(5)).await, Some(1013));
    // i205: subscribing never closes an accepted connection.
    send_text(&mut b, r#"{"type":"subscribe","chat_id":"two"}"#).await;
    assert_eq!(recv_json(&mut b).await["type"], "connected");
    send_text(&mut b, r#"{"type":"ping"}"#).await;
    assert_eq!(recv_json(&mut b).await["type"], "pong");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i202_i203_add_and_unsubscribe() {
    let app = spawn_app().await;
    let a = create_chat(&app).await;
    let b = create_chat(&app).await;
    let mut ws = subscriber(&app, &a).await;
    send_text(&mut ws, &json!({"type": "subscribe", "chat_id": b, "mode": "add"}).to_string()).await;
    let r = recv_json(&mut ws).await;
    assert_eq!((r["type"].as_str(), r["chat_id"].as_str()), (Some("subscribed"), Some(b.as_str())));
    upload(&app, &a, "x.csv", b"a\n1\n".to_vec()).await;
    upload(&app, &b, "y.csv", b"a\n1\n".to_vec()).await;
    assert_eq!(recv_json(&mut ws).await["chat_id"], a.as_str());
    assert_eq!(recv_json(&mut ws).await["chat_id"], b.as_str());
    send_text(&mut ws, &json!({"type": "unsubscribe", "chat_id": a}).to_string()).await;
    assert_eq!(recv_json(&mut ws).await, json!({"type": "unsubscribed", "chat_id": a}));
    upload(&app, &a, "x2.csv", b"a\n1\n".to_vec()).await;
    upload(&app, &b, "y2.csv", b"a\n1\n".to_vec()).await;
    assert_eq!(recv_json(&mut ws).await["chat_id"], b.as_str(), "a's events stopped");

    let mut ws = app.ws_connect("/").await;
    recv_json(&mut ws).await;
    for i in 0..20 {
        send_text(
            &mut ws,
            &json!({"type": "subscribe", "chat_id": format!("c{i}"), "mode": "add"}).to_string(),
        )
        .await;
        assert_eq!(recv_json(&mut ws).await["type"], "subscribed");
    }
    send_text(&mut ws, r#"{"type":"subscribe","chat_id":"c21","mode":"add"}"#).await;
    assert_eq!(recv_json(&mut ws).await["code"], "too_many_subscriptions", "i203");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i207_rate_limit_and_i208_frame_size() {
    let app = spawn_app().await;
    let mut ws = app.ws_connect("/chat/r").await;
    recv_json(&mut ws).await;
    for _ in 0..40 {
        send_text(&mut ws, r#"{"type":"ping"}"#).await;
    }
    let (mut pongs, mut limited) = (0, 0);
    for _ in 0..40 {
        let m = recv_json(&mut ws).await;
        match m["type"].as_str() {
            Some("pong") => pongs += 1,
            _ => {
                assert_eq!(m["code"], "rate_limited");
                assert!(m["retry_after_ms"].is_u64());
                limited += 1;
            }
        }
    }
    assert!((30..=31).contains(&pongs) && limited >= 1, "{pongs} pongs, {limited} limited");
    send_text(&mut ws, r#"{"type":"ping"}"#).await;
    assert_eq!(recv_close_code(&mut ws, Duration::from_secs(5)).await, Some(4029), "more than 10 rejections");

    let mut ws = app.ws_connect("/chat/big").await;
    recv_json(&mut ws).await;
    send_text(&mut ws, &"x".repeat(70_000)).await;
    assert_eq!(recv_close_code(&mut ws, Duration::from_secs(5)).await, Some(1009));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i213_path_checks() {
    let app = spawn_app().await;
    let mut ws = app.ws_connect("/chat/bad$id").await;
    assert_eq!(recv_json(&mut ws).await["code"], "invalid_chat_id");
    assert_eq!(recv_close_code(&mut ws, Duration::from_secs(5)).await, Some(4001));
    let err = tokio_tungstenite::connect_async(format!("{}/nonsense", app.ws)).await.unwrap_err();
    match err {
        tokio_tungstenite::tungstenite::Error::Http(res) => assert_eq!(res.status(), 404),
        other => panic!("{other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i217_i218_idle_and_unbound_timeouts() {
    let app = spawn_app_with(|c| {
        c.chat_workflows.websocket.unbound_timeout_seconds = 2;
        c.chat_workflows.websocket.idle_timeout_seconds = 2;
    })
    .await;
    let mut unbound = app.ws_connect("/").await;
    recv_json(&mut unbound).await;
    let t = Instant::now();
    assert_eq!(recv_json(&mut unbound).await["code"], "idle_timeout");
    assert_eq!(recv_close_code(&mut unbound, Duration::from_secs(5)).await, Some(4009));
    assert!(t.elapsed() < Duration::from_secs(4));

    let mut silent = app.ws_connect("/chat/s").await;
    recv_json(&mut silent).await;
    assert_eq!(recv_close_code(&mut silent, Duration::from_secs(5)).await, Some(4009));

    let mut chatty = app.ws_connect("/chat/c").await;
    recv_json(&mut chatty).await;
    for _ in 0..4 {
        send_text(&mut chatty, "ping").await;
        assert_eq!(recv_json(&mut chatty).await["type"], "pong");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    send_text(&mut chatty, "ping").await;
    assert_eq!(recv_json(&mut chatty).await["type"], "pong", "still connected after 4 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h190_i227_keepalive_uses_the_configured_interval() {
    let app = spawn_app_with(|c| {
        c.chat_workflows.websocket.ping_interval = 2;
        c.chat_workflows.websocket.ping_timeout = 1;
    })
    .await;
    let mut ws = app.ws_connect("/chat/k").await;
    recv_json(&mut ws).await;
    let t = Instant::now();
    // Not reading means not answering the server's pings.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut saw_ping = false;
    let mut code = None;
    while let Ok(Some(Ok(m))) =
        tokio::time::timeout(Duration::from_secs(5), futures_util::StreamExt::next(&mut ws)).await
    {
        match m {
            Message::Ping(_) => saw_ping = true,
            Message::Close(f) => {
                code = f.map(|f| u16::from(f.code));
                break;
            }
            _ => {}
        }
    }
    assert!(saw_ping, "server pings");
    assert_eq!(code, Some(1011));
    assert!(t.elapsed() < Duration::from_secs(9));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i225_same_protocol_on_the_rest_port() {
    let app = spawn_app().await;
    let chat = chat_with_csv(&app).await;
    let url = format!("{}/ws/chat/{chat}", app.base.replace("http://", "ws://"));
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let hello = recv_json(&mut ws).await;
    assert_eq!((hello["type"].as_str(), hello["chat_id"].as_str()), (Some("connected"), Some(chat.as_str())));
    execute(&app, &chat, &three_steps()).await;
    let events = events_until(&mut ws, &["workflow_completed"], Duration::from_secs(60)).await;
    assert_eq!(events[0]["type"], "workflow_started");
}

/// Subscribing may wait: for the event log (SQLite) and for the chat's lock, which a publisher holds while
/// its event is appended. That wait runs on the blocking pool, so it delays only the subscribing client,
/// never the other connections of the same worker thread (the test config has one worker per listener).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c8_a_subscribe_that_waits_does_not_stall_other_connections() {
    let app = spawn_app().await;
    let mut other = app.ws_connect("/chat/other-chat").await;
    assert_eq!(recv_json(&mut other).await["type"], "connected");

    // A long write holds the store's writer connection; a publish to `fresh-chat` then waits for it while
    // holding that chat's lock, so a subscription to `fresh-chat` waits too.
    let store = app.state.chat.as_ref().expect("chat enabled").store.clone();
    let writer_busy = std::thread::spawn(move || {
        store.as_sqlite().expect("the embedded store").write(|_| {
            std::thread::sleep(Duration::from_millis(1500));
            Ok(())
        })
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let hub = app.state.hub.clone();
    let publisher = std::thread::spawn(move || hub.publish("fresh-chat", json!({"type": "note"})).0);
    tokio::time::sleep(Duration::from_millis(100)).await;

    let mut waiting = app.ws_connect("/chat/fresh-chat?last_seq=0").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let asked = Instant::now();
    send_text(&mut other, r#"{"type":"ping"}"#).await;
    let pong = recv_json_within(&mut other, Duration::from_secs(10)).await.expect("pong");
    assert_eq!(pong["type"], "pong");
    let pong_after = asked.elapsed();
    assert!(
        pong_after < Duration::from_millis(700),
        "the pong waited for the other subscription: {pong_after:?}"
    );

    // Once the write is done the subscription completes, with the event published meanwhile replayed.
    writer_busy.join().unwrap().unwrap();
    assert_eq!(publisher.join().unwrap(), 1);
    let hello = recv_json_within(&mut waiting, Duration::from_secs(10)).await.expect("connected");
    assert_eq!((hello["type"].as_str(), hello["last_seq"].as_u64()), (Some("connected"), Some(1)));
    let note = recv_json_within(&mut waiting, Duration::from_secs(10)).await.expect("replayed note");
    assert_eq!(
        (note["type"].as_str(), note["seq"].as_u64(), note["replayed"].as_bool()),
        (Some("note"), Some(1), Some(true))
    );
    let done = recv_json_within(&mut waiting, Duration::from_secs(10)).await.expect("replay_complete");
    assert_eq!((done["type"].as_str(), done["count"].as_u64()), (Some("replay_complete"), Some(1)));
}
