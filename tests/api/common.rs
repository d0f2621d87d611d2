//! Test harness: start an App on free ports with its own temporary folders, plus HTTP/WebSocket helpers.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use oxcelize::config::Config;
use oxcelize::{App, AppHandle};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub struct TestApp {
    /// `http://127.0.0.1:{port}`
    pub base: String,
    /// `http://127.0.0.1:{port}/api/v1`
    pub api: String,
    /// `ws://127.0.0.1:{port}` of the WebSocket listener (empty when chat workflows are disabled)
    pub ws: String,
    pub client: reqwest::Client,
    pub config: Config,
    pub handle: AppHandle,
    pub state: actix_web::web::Data<oxcelize::AppState>,
    pub dir: tempfile::TempDir,
}

/// A config whose every path lives under `root`, with quiet logging and one worker per listener.
pub fn test_config(root: &std::path::Path) -> Config {
    let mut c = Config::default();
    c.app.port = 0;
    c.app.workers = 1;
    c.chat_workflows.enabled = true;
    c.chat_workflows.max_connections = 1000;
    c.chat_workflows.websocket.port = 0;
    c.file.upload_folder = root.join("uploads");
    c.file.output_folder = root.join("outputs");
    c.logging.file = String::new();
    let cw = &mut c.chat_workflows;
    cw.storage.workflows_path = root.join("automation/workflows");
    cw.storage.dumps_path = root.join("automation/dumps");
    cw.storage.sqlite_path = root.join("automation/sqlite/chat.db");
    cw.backup.snapshot_path = root.join("automation/sqlite/snapshots");
    c
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = test_config(dir.path());
    tweak(&mut config);
    spawn_app_in(dir, config).await
}

/// Starts an App with a prepared config in an existing folder (restart tests reuse the folder).
pub async fn spawn_app_in(dir: tempfile::TempDir, config: Config) -> TestApp {
    config.validate().expect("test config is valid");
    let app = App::build(config.clone()).await.expect("app builds");
    let base = format!("http://{}", app.rest_addr());
    let ws = app.ws_addr().map(|a| format!("ws://{a}")).unwrap_or_default();
    let handle = app.handle();
    let state = app.state();
    tokio::spawn(app.run());
    TestApp {
        api: format!("{base}{}", config.api.prefix),
        base,
        ws,
        client: reqwest::Client::builder().timeout(Duration::from_secs(60)).build().expect("client"),
        config,
        handle,
        state,
        dir,
    }
}

impl TestApp {
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(format!("{}{path}", self.api)).send().await.expect("request")
    }

    pub async fn post_form(&self, path: &str, form: reqwest::multipart::Form) -> reqwest::Response {
        self.client.post(format!("{}{path}", self.api)).multipart(form).send().await.expect("request")
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client.post(format!("{}{path}", self.api)).json(body).send().await.expect("request")
    }

    /// Opens a WebSocket to `path` on the WebSocket port.
    pub async fn ws_connect(&self, path: &str) -> Ws {
        let (ws, _) =
            tokio_tungstenite::connect_async(format!("{}{path}", self.ws)).await.expect("ws connect");
        ws
    }

    /// Downloads a URL returned by the API and returns the bytes (asserting 200).
    pub async fn download(&self, url: &str) -> Vec<u8> {
        let res = self.client.get(url).send().await.expect("download");
        assert_eq!(res.status(), 200, "download of {url}");
        res.bytes().await.expect("body").to_vec()
    }

    /// One `GET /metrics` figure without labels (0 when absent).
    pub async fn metric(&self, name: &str) -> f64 {
        let res = self.client.get(format!("{}/metrics", self.base)).send().await.expect("request");
        let text = res.text().await.unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
            .map(|v| v.trim().parse().unwrap())
            .unwrap_or(0.0)
    }

    pub async fn stop(&self) {
        self.handle.stop().await;
    }

    /// Number of files in the output folder.
    pub fn output_files(&self) -> Vec<String> {
        list_files(&self.config.file.output_folder)
    }

    /// Number of files left in the upload folder (should be 0 after every request).
    pub fn upload_files(&self) -> Vec<String> {
        list_files(&self.config.file.upload_folder)
    }
}

pub fn list_files(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// Parses a response body as the JSON envelope, asserting its `status_code` equals the HTTP status.
pub async fn envelope(res: reqwest::Response) -> (u16, Value) {
    let status = res.status().as_u16();
    let text = res.text().await.expect("body");
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    assert_eq!(body["status_code"], status, "status_code must equal the HTTP status: {body}");
    (status, body)
}

/// A multipart file part.
pub fn file_part(name: &str, bytes: Vec<u8>) -> reqwest::multipart::Part {
    reqwest::multipart::Part::bytes(bytes).file_name(name.to_string())
}

/// Receives the next text frame as JSON (fails after 5 s).
pub async fn recv_json(ws: &mut Ws) -> Value {
    recv_json_within(ws, Duration::from_secs(5)).await.expect("a JSON frame within 5 s")
}

/// Receives the next text frame as JSON, skipping pings; `None` on timeout or close.
pub async fn recv_json_within(ws: &mut Ws, wait: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next()).await.ok()??.ok()?;
        match msg {
            Message::Text(t) => {
                return Some(serde_json::from_str(t.as_str()).expect("server frames are JSON"))
            }
            Message::Binary(_) | Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
            Message::Close(_) => return None,
        }
    }
}

/// Receives frames until a close frame; returns its code (fails after `wait`).
pub async fn recv_close_code(ws: &mut Ws, wait: Duration) -> Option<u16> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return None,
            Ok(None) => return None,
            Ok(Some(Err(_))) => return None,
            Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f| u16::from(f.code)),
            Ok(Some(Ok(_))) => continue,
        }
    }
}

pub async fn send_text(ws: &mut Ws, text: &str) {
    ws.send(Message::Text(text.into())).await.expect("send");
}
