//! Hostile input at the I/O edges (issue 11, items 12–16): client file names the disk cannot hold, request
//! bodies that dribble, leftovers of a killed process, and the WebSocket close handshake.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use crate::chat_support::{create_chat, get_chat, tree, upload};
use crate::common::{envelope, file_part, spawn_app, TestApp};

/// The folder of a conversation, from its `partition_key`.
async fn conversation_dir(app: &TestApp, chat: &str) -> std::path::PathBuf {
    let conv = get_chat(app, chat).await;
    app.config.chat_workflows.storage.workflows_path.join(conv["partition_key"].as_str().unwrap()).join(chat)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_upload_with_a_10kb_file_name_is_stored_under_a_shortened_name() {
    let app = spawn_app().await;
    let chat = create_chat(&app).await;
    let long = format!("{}.csv", "x".repeat(10_000));
    let (status, body) = upload(&app, &chat, &long, b"a,b\n1,2\n".to_vec()).await;
    assert_eq!(status, 200, "{body}");
    let stored = format!("{}.csv", "x".repeat(150));
    assert_eq!(body["data"]["filename"], stored.as_str());
    assert_eq!(app.download(body["data"]["download_url"].as_str().unwrap()).await, b"a,b\n1,2\n");
    let dir = conversation_dir(&app, &chat).await;
    assert_eq!(tree(&dir), vec!["metadata.json".to_string(), format!("uploads/{stored}")]);

    // The bot's upload endpoint stores through the same rule.
    let (_, bot) = envelope(app.post_json("/chat/bot/conversations", &json!({})).await).await;
    let bot_chat = bot["data"]["chat_id"].as_str().unwrap().to_string();
    let form = reqwest::multipart::Form::new().part("file", file_part(&long, b"a,b\n1,2\n".to_vec()));
    let res = app.post_form(&format!("/chat/bot/conversations/{bot_chat}/upload"), form).await;
    let (status, body) = envelope(res).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["filename"], stored.as_str());

    // A kilobytes-long extension is refused (422, nothing stored) and the message quotes only its start.
    let before = get_chat(&app, &chat).await;
    let (status, body) = upload(&app, &chat, &format!("a.{}", "e".repeat(10_000)), b"x".to_vec()).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["message"], format!("File type not allowed: .{}...", "e".repeat(15)));
    assert_eq!(body["data"]["error_class"], "ValidationError");
    assert!(body["data"]["details"]["allowed_extensions"].is_array(), "{body}");
    let after = get_chat(&app, &chat).await;
    assert_eq!(before["messages"], after["messages"]);
    assert_eq!(tree(&dir), vec!["metadata.json".to_string(), format!("uploads/{stored}")]);
    assert!(app.upload_files().is_empty());
    assert!(app.output_files().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_upload_named_dots_then_extension_is_stored_as_file_ext() {
    let app = spawn_app().await;
    let chat = create_chat(&app).await;
    for name in ["....csv", ".csv"] {
        let (status, body) = upload(&app, &chat, name, b"a,b\n1,2\n".to_vec()).await;
        assert_eq!(status, 200, "{name}: {body}");
        assert_eq!(body["data"]["filename"], "file.csv", "{name}");
        assert!(body["data"]["file_path"].as_str().unwrap().ends_with(&format!("/{chat}/uploads/file.csv")));
    }
    // Nothing of the name survives at all: still refused, and nothing is stored.
    let (status, body) = upload(&app, &chat, "....", b"a\n".to_vec()).await;
    assert_eq!((status, body["message"].as_str().unwrap()), (422, "Invalid filename"));
    assert_eq!(body["data"]["error_class"], "ValidationError");
    let dir = conversation_dir(&app, &chat).await;
    assert_eq!(tree(&dir), vec!["metadata.json", "uploads/file.csv"]);
    assert!(app.upload_files().is_empty());
}

/// Opens a WebSocket over a plain TCP stream so that the test can watch the TCP connection itself.
async fn raw_ws(app: &TestApp, path: &str) -> tokio_tungstenite::WebSocketStream<tokio::net::TcpStream> {
    let addr = app.ws.trim_start_matches("ws://").to_string();
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (ws, _) = tokio_tungstenite::client_async(format!("{}{path}", app.ws), tcp).await.unwrap();
    ws
}

/// Reads the raw socket until EOF (or a reset); panics on more data or on `wait` passing.
async fn tcp_end_within(tcp: &mut tokio::net::TcpStream, wait: Duration) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 64];
    match tokio::time::timeout(wait, tcp.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => started.elapsed(),
        Ok(Ok(n)) => panic!("unexpected {n} bytes after the close handshake"),
        Err(_) => panic!("the server kept the TCP connection open for more than {wait:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_closes_tcp_at_once_after_the_client_close_handshake() {
    let app = spawn_app().await;
    let chat = create_chat(&app).await;
    for _ in 0..3 {
        let mut ws = raw_ws(&app, &format!("/chat/{chat}")).await;
        let welcome = ws.next().await.unwrap().unwrap();
        assert!(matches!(welcome, Message::Text(_)), "{welcome:?}");
        ws.send(Message::Close(Some(CloseFrame { code: CloseCode::Normal, reason: "bye".into() })))
            .await
            .unwrap();
        // The echo of the close frame...
        let echo = tokio::time::timeout(Duration::from_secs(5), ws.next()).await.unwrap();
        match echo {
            Some(Ok(Message::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), 1000),
            other => panic!("expected the close echo, got {other:?}"),
        }
        // ...then the server ends the TCP connection without waiting for the client to.
        let waited = tcp_end_within(ws.get_mut(), Duration::from_millis(200)).await;
        assert!(waited < Duration::from_millis(200), "{waited:?}");
    }
    let stats: Value = app.get("/health").await.json().await.unwrap();
    assert_eq!(stats["status_code"], 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_closes_tcp_at_once_when_the_client_answers_a_server_close() {
    let app = spawn_app().await;
    let chat = create_chat(&app).await;
    let mut ws = raw_ws(&app, &format!("/chat/{chat}")).await;
    assert!(matches!(ws.next().await.unwrap().unwrap(), Message::Text(_)));
    let res = app.client.delete(format!("{}/chat/workflows/{chat}", app.api)).send().await.unwrap();
    assert_eq!(res.status(), 200);
    // The server closes with 4001; the client library answers the close frame on its next write.
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await.unwrap() {
            Some(Ok(Message::Close(frame))) => break frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(code, Some(4001));
    let _ = ws.flush().await;
    let waited = tcp_end_within(ws.get_mut(), Duration::from_millis(200)).await;
    assert!(waited < Duration::from_millis(200), "{waited:?}");
}
