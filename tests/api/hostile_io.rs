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

/// A minimum rate of 100 bytes/s judged over 1-s windows: a dribbling body fails within about a second.
fn slow_body_rule(c: &mut oxcelize::config::Config) {
    c.file.upload_min_bytes_per_second = 100;
    c.file.upload_rate_window_seconds = 1;
}

const BOUNDARY: &str = "XhostileBoundary";

/// The start of a multipart body whose `file` part is named `name`.
fn multipart_head(name: &str) -> String {
    format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
         Content-Type: text/csv\r\n\r\na,b\n1,2\n"
    )
}

/// Opens a raw connection and sends the head of a multipart POST to `path` (under the API prefix) that
/// announces `length` bytes (or a chunked body), plus the first `body` bytes.
async fn start_post(app: &TestApp, path: &str, length: Option<usize>, body: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let addr = app.base.trim_start_matches("http://").to_string();
    let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let framing = match length {
        Some(n) => format!("Content-Length: {n}"),
        None => "Transfer-Encoding: chunked".to_string(),
    };
    let head = format!(
        "POST {}{path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\n\
         {framing}\r\n\r\n",
        app.config.api.prefix
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    send_body(&mut tcp, length.is_none(), body.as_bytes()).await;
    tcp
}

/// Writes body bytes, as one chunk when the body is chunked; false once the server has closed.
async fn send_body(tcp: &mut tokio::net::TcpStream, chunked: bool, bytes: &[u8]) -> bool {
    use tokio::io::AsyncWriteExt;
    let framed = if chunked {
        let mut v = format!("{:x}\r\n", bytes.len()).into_bytes();
        v.extend_from_slice(bytes);
        v.extend_from_slice(b"\r\n");
        v
    } else {
        bytes.to_vec()
    };
    tcp.write_all(&framed).await.is_ok()
}

/// Reads one HTTP response (head and a Content-Length body): the status and the JSON body.
async fn read_response(tcp: &mut tokio::net::TcpStream) -> (u16, Value) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string())
                })
                .map(|v| v.parse().unwrap())
                .unwrap_or(0);
            while buf.len() < end + 4 + length {
                let n = tcp.read(&mut chunk).await.unwrap();
                assert!(n > 0, "connection closed inside the response body");
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = serde_json::from_slice(&buf[end + 4..end + 4 + length]).unwrap_or(Value::Null);
            return (status, body);
        }
        let n = tcp.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed before a response: {}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Dribbles one byte every 300 ms until the server answers; returns the answer and how long it took.
async fn dribble_until_answer(tcp: &mut tokio::net::TcpStream, chunked: bool) -> ((u16, Value), Duration) {
    let started = Instant::now();
    loop {
        let mut peek = [0u8; 1];
        match tokio::time::timeout(Duration::from_millis(300), tcp.peek(&mut peek)).await {
            Ok(_) => break,
            Err(_) => {
                assert!(started.elapsed() < Duration::from_secs(10), "no answer to a dribbling body in 10 s");
                if !send_body(tcp, chunked, b"9").await {
                    break;
                }
            }
        }
    }
    let answer = tokio::time::timeout(Duration::from_secs(5), read_response(tcp)).await.unwrap();
    (answer, started.elapsed())
}

fn assert_too_slow(status: u16, body: &Value) {
    assert_eq!(status, 408, "{body}");
    assert_eq!(body["status_code"], 408);
    assert_eq!(body["data"]["error_class"], "RequestTimeout", "{body}");
    assert!(body["message"].as_str().unwrap().starts_with("Request body too slow"), "{body}");
    assert_eq!(body["data"]["details"]["min_bytes_per_second"], 100, "{body}");
    assert_eq!(body["data"]["details"]["window_seconds"], 1, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dribbling_upload_body_gets_408_within_seconds_and_leaves_nothing() {
    let app = crate::common::spawn_app_with(slow_body_rule).await;
    for chunked in [false, true] {
        let length = (!chunked).then_some(100_000);
        let mut tcp = start_post(&app, "/csv/info", length, &multipart_head("slow.csv")).await;
        let ((status, body), took) = dribble_until_answer(&mut tcp, chunked).await;
        assert_too_slow(status, &body);
        assert_eq!(body["data"]["error_type"], "RequestTimeout");
        assert!(took < Duration::from_secs(5), "chunked={chunked}: {took:?}");
        // The server ends the connection rather than reading the rest of the body.
        let mut rest = [0u8; 256];
        let closed = tokio::time::timeout(Duration::from_secs(3), async {
            loop {
                match tcp.read(&mut rest).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => continue,
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "chunked={chunked}: connection still open after the 408");
        assert!(app.upload_files().is_empty(), "partial upload removed: {:?}", app.upload_files());
        assert!(app.output_files().is_empty());
    }
    let ip: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    assert_eq!(app.state.upload_slots.in_transit(ip), 0, "slots are released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlisted_extension_is_refused_from_the_part_header_before_the_body_is_stored() {
    // The default rate rule (15-s windows) would only end a stalled body after 15 s: the 415 must come first.
    let app = crate::common::spawn_app().await;
    let mut tcp = start_post(&app, "/csv/info", Some(10_000_000), &multipart_head("notes.txt")).await;
    let answer = tokio::time::timeout(Duration::from_secs(10), read_response(&mut tcp)).await;
    let (status, body) = answer.expect("no answer while the rest of the body was still to come");
    assert_eq!(status, 415, "{body}");
    assert_eq!(body["status_code"], 415);
    assert_eq!(body["data"]["error_type"], "UnsupportedFileTypeError", "{body}");
    assert_eq!(body["data"]["details"]["extension"], ".txt", "{body}");
    assert!(app.upload_files().is_empty(), "nothing stored: {:?}", app.upload_files());
    assert!(app.output_files().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dribbling_chat_upload_gets_408_and_leaves_no_partial_file() {
    let app = crate::common::spawn_app_with(slow_body_rule).await;
    let chat = create_chat(&app).await;
    let path = format!("/chat/workflows/{chat}/upload");
    let mut tcp = start_post(&app, &path, Some(50_000), &multipart_head("slow.csv")).await;
    let ((status, body), _) = dribble_until_answer(&mut tcp, false).await;
    assert_too_slow(status, &body);
    let dir = conversation_dir(&app, &chat).await;
    assert_eq!(tree(&dir), vec!["metadata.json"], "no partial upload in the conversation");
    assert_eq!(get_chat(&app, &chat).await["uploaded_files"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_but_steady_upload_is_accepted() {
    let app = crate::common::spawn_app_with(slow_body_rule).await;
    let mut csv = String::from("a,b\n");
    for i in 0..300 {
        csv.push_str(&format!("{i},{}\n", i * 2));
    }
    let body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"steady.csv\"\r\n\
         Content-Type: text/csv\r\n\r\n{csv}\r\n--{BOUNDARY}--\r\n"
    );
    // About 200 bytes/s for three seconds: above the minimum in every window.
    let pieces: Vec<&[u8]> = body.as_bytes().chunks(50).collect();
    let mut tcp = start_post(&app, "/csv/info", Some(body.len()), "").await;
    for piece in pieces {
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(send_body(&mut tcp, false, piece).await);
    }
    let (status, answer) =
        tokio::time::timeout(Duration::from_secs(10), read_response(&mut tcp)).await.unwrap();
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["data"]["rows"], 300, "{answer}");
    assert!(app.upload_files().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_beyond_the_per_address_cap_get_429() {
    let app = crate::common::spawn_app_with(|c| {
        slow_body_rule(c);
        c.file.upload_rate_window_seconds = 2;
        c.file.max_concurrent_uploads_per_ip = 2;
    })
    .await;
    let ip: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(start_post(&app, "/csv/info", Some(100_000), &multipart_head("hold.csv")).await);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while app.state.upload_slots.in_transit(ip) < 2 {
        assert!(Instant::now() < deadline, "the two bodies never registered as in transit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let form = reqwest::multipart::Form::new().part("file", file_part("a.csv", b"a,b\n1,2\n".to_vec()));
    let (status, body) = envelope(app.post_form("/csv/info", form).await).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["data"]["error_type"], "RateLimited");
    assert!(body["message"].as_str().unwrap().contains("at most 2 at once"), "{body}");
    assert_eq!(body["data"]["details"]["max_concurrent_uploads_per_ip"], 2);
    // Requests without a body are not uploads.
    assert_eq!(app.get("/health").await.status(), 200);

    // Once the held bodies are cut off (408), the address may upload again.
    for tcp in &mut held {
        let ((status, body), _) = dribble_until_answer(tcp, false).await;
        assert_eq!(status, 408, "{body}");
    }
    assert_eq!(app.state.upload_slots.in_transit(ip), 0);
    let form = reqwest::multipart::Form::new().part("file", file_part("a.csv", b"a,b\n1,2\n".to_vec()));
    let (status, body) = envelope(app.post_form("/csv/info", form).await).await;
    assert_eq!(status, 200, "{body}");
    assert!(app.upload_files().is_empty());
    assert!(app.output_files().is_empty());
}

/// Writes `path` (and its folder) with a modification time `age` in the past.
fn plant(path: &std::path::Path, age: Duration) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, b"left behind").unwrap();
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(std::time::SystemTime::now() - age).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leftovers_of_a_killed_process_are_removed_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = crate::common::test_config(dir.path());
    let conv = config.chat_workflows.storage.workflows_path.join("2026/01/chat-of-a-killed-run");
    let leftovers = [
        config.file.upload_folder.join("upload-Ab12Cd"),
        config.file.output_folder.join(".partial-Xy34Zw.tmp"),
        conv.join("upload-Qw56Er"),
        conv.join("outputs/.partial-Rt78Yu.tmp"),
        config.chat_workflows.storage.dumps_path.join(".dump-Io90Pa"),
    ];
    let kept = [
        config.file.output_folder.join("extracted_columns_20260101_000000_1a2b3c4d.xlsx"),
        conv.join("uploads/sales.csv"),
        conv.join("outputs/sales_extracted.xlsx"),
    ];
    // Even a file written a moment ago is a leftover at start: no request of the new process owns it.
    for path in leftovers.iter().chain(&kept) {
        plant(path, Duration::ZERO);
    }
    let app = crate::common::spawn_app_in(dir, config).await;
    for path in &leftovers {
        assert!(!path.exists(), "{} survived the start", path.display());
    }
    for path in &kept {
        assert!(path.exists(), "{} was removed", path.display());
    }
    assert!(app.upload_files().is_empty());
    assert_eq!(app.output_files(), vec!["extracted_columns_20260101_000000_1a2b3c4d.xlsx"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn periodic_sweep_removes_old_leftovers_but_not_an_upload_in_flight() {
    let app = crate::common::spawn_app_with(|c| {
        c.file.temp_sweep_interval_seconds = 1;
        c.file.upload_min_bytes_per_second = 0;
    })
    .await;
    let body = format!("{}3,4\n\r\n--{BOUNDARY}--\r\n", multipart_head("inflight.csv"));
    let head = multipart_head("inflight.csv");
    let mut tcp = start_post(&app, "/csv/info", Some(body.len()), &head).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    let in_flight = loop {
        if let Some(name) = app.upload_files().into_iter().find(|n| n.starts_with("upload-")) {
            break app.config.file.upload_folder.join(name);
        }
        assert!(Instant::now() < deadline, "the upload never reached the upload folder");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let two_hours = Duration::from_secs(2 * 3600);
    let old_upload = app.config.file.upload_folder.join("upload-Old123");
    let old_output = app.config.file.output_folder.join(".partial-Old456.tmp");
    let recent_output = app.config.file.output_folder.join(".partial-New789.tmp");
    plant(&old_upload, two_hours);
    plant(&old_output, two_hours);
    plant(&recent_output, Duration::from_secs(60));
    let deadline = Instant::now() + Duration::from_secs(10);
    while old_upload.exists() || old_output.exists() {
        assert!(Instant::now() < deadline, "the periodic sweep did not remove the old leftovers");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A further sweep has run by now; the in-flight upload and the recent file are untouched.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(in_flight.exists(), "the sweep removed an upload in flight");
    assert!(recent_output.exists(), "the sweep removed a recent file");
    assert!(send_body(&mut tcp, false, &body.as_bytes()[head.len()..]).await);
    let (status, answer) =
        tokio::time::timeout(Duration::from_secs(10), read_response(&mut tcp)).await.unwrap();
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["data"]["rows"], 2, "{answer}");
    assert!(app.upload_files().is_empty(), "{:?}", app.upload_files());
}
