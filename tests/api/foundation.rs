//! The service skeleton: envelope, error statuses, request ids, CORS, health, config loading, the binary.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use oxcelize::config::Config;
use serde_json::Value;

use crate::common::*;

fn assert_meta(body: &Value) {
    let keys: Vec<&str> = body.as_object().expect("object").keys().map(String::as_str).collect();
    assert_eq!(keys, ["data", "message", "meta", "status_code", "total"], "{body}");
    let meta = &body["meta"];
    assert_eq!(meta["api_version"], "v0.0.1");
    assert_eq!(meta["locale"], "en_US");
    let id = meta["request_id"].as_str().expect("request id");
    assert!(id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()), "{id}");
    let t = meta["requested_time"].as_str().expect("time");
    assert!(t.ends_with("+00:00") && t.len() == "2026-03-02T09:15:27.418220+00:00".len(), "{t}");
}

#[tokio::test]
async fn health_reports_service_version_and_status() {
    let app = spawn_app().await;
    for path in ["/health", "/health/"] {
        let (status, body) = envelope(app.get(path).await).await;
        assert_eq!(status, 200);
        assert_meta(&body);
        assert_eq!(body["message"], "Service is healthy");
        assert_eq!(body["data"]["service"], "oxcelize");
        assert_eq!(body["data"]["version"], "v0.0.1");
        assert_eq!(body["data"]["status"], "healthy");
        assert_eq!(body["total"], 0);
    }
    let head = app.client.head(format!("{}/health", app.api)).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert!(head.bytes().await.unwrap().is_empty(), "HEAD has no body");
}

#[tokio::test]
async fn readiness_checks_the_folders_for_real() {
    let app = spawn_app().await;
    let (status, body) = envelope(app.get("/health/ready").await).await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["ready"], true);
    assert_eq!(body["data"]["checks"]["output_folder"]["ok"], true);

    // Replace the upload folder by a plain file: nothing can be written there any more.
    let uploads = app.config.file.upload_folder.clone();
    std::fs::remove_dir_all(&uploads).unwrap();
    std::fs::write(&uploads, b"not a folder").unwrap();
    let (status, body) = envelope(app.get("/health/ready").await).await;
    assert_eq!(status, 503);
    assert_eq!(body["data"]["ready"], false);
    assert_eq!(body["data"]["checks"]["upload_folder"]["ok"], false);
}

#[tokio::test]
async fn request_ids_are_fresh_reused_when_well_formed_and_sent_as_header() {
    let app = spawn_app().await;
    let a = app.get("/health").await;
    let header_a = a.headers()["x-request-id"].to_str().unwrap().to_string();
    let (_, body_a) = envelope(a).await;
    let (_, body_b) = envelope(app.get("/health").await).await;
    assert_eq!(body_a["meta"]["request_id"], header_a.as_str());
    assert_ne!(body_a["meta"]["request_id"], body_b["meta"]["request_id"]);

    let res = app
        .client
        .get(format!("{}/health", app.api))
        .header("X-Request-ID", "trace-42.a_b")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "trace-42.a_b");
    let (_, body) = envelope(res).await;
    assert_eq!(body["meta"]["request_id"], "trace-42.a_b");

    let res =
        app.client.get(format!("{}/health", app.api)).header("X-Request-ID", "bad id!").send().await.unwrap();
    let (_, body) = envelope(res).await;
    assert_ne!(body["meta"]["request_id"], "bad id!");
}

#[tokio::test]
async fn unknown_routes_are_404_envelopes() {
    let app = spawn_app().await;
    for path in ["/api/v1/nope", "/api/v1/chat/nope", "/", "/api/v1/health/extra/"] {
        let res = app.client.get(format!("{}{path}", app.base)).send().await.unwrap();
        assert_eq!(res.headers()["content-type"], "application/json");
        let (status, body) = envelope(res).await;
        assert_eq!(status, 404, "{path}");
        assert_eq!(body["message"], "Resource not found");
        assert_eq!(body["data"], Value::Null);
        assert_meta(&body);
    }
}

#[tokio::test]
async fn wrong_method_is_a_405_envelope_with_allow() {
    let app = spawn_app().await;
    let res = app.client.post(format!("{}/health", app.api)).send().await.unwrap();
    assert_eq!(res.headers()["allow"], "GET, HEAD, OPTIONS");
    let (status, body) = envelope(res).await;
    assert_eq!(status, 405);
    assert_eq!(body["message"], "Method not allowed");
    let res = app.client.delete(format!("{}/files/downloads/x.xlsx", app.api)).send().await.unwrap();
    assert_eq!(envelope(res).await.0, 405);
}

#[tokio::test]
async fn cors_preflight_echoes_origin_and_allows_requested_headers() {
    let app = spawn_app().await;
    let res = app
        .client
        .request(reqwest::Method::OPTIONS, format!("{}/health", app.api))
        .header("Origin", "http://localhost:3000")
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "content-type,x-custom")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let h = res.headers();
    let origin = h["access-control-allow-origin"].to_str().unwrap();
    assert!(origin == "http://localhost:3000" || origin == "*", "{origin}");
    let allowed = h["access-control-allow-headers"].to_str().unwrap().to_ascii_lowercase();
    assert!(allowed.contains("content-type") && allowed.contains("x-custom"), "{allowed}");
    let methods = h["access-control-allow-methods"].to_str().unwrap();
    for m in ["GET", "HEAD", "POST", "DELETE", "OPTIONS"] {
        assert!(methods.contains(m), "{methods}");
    }

    let res = app
        .client
        .get(format!("{}/health", app.api))
        .header("Origin", "http://localhost:3000")
        .send()
        .await
        .unwrap();
    let h = res.headers();
    assert_eq!(h["access-control-allow-origin"], "http://localhost:3000");
    let exposed = h["access-control-expose-headers"].to_str().unwrap().to_ascii_lowercase();
    assert!(exposed.contains("content-disposition") && exposed.contains("x-request-id"), "{exposed}");
    // Errors carry CORS headers too, so browser code can read them.
    let res = app
        .client
        .get(format!("{}/nope", app.api))
        .header("Origin", "http://localhost:3000")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["access-control-allow-origin"], "http://localhost:3000");
}

#[tokio::test]
async fn shipped_config_loads_without_warnings() {
    let loaded =
        Config::load(std::path::Path::new("configs/application.yml")).expect("shipped config is valid");
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert_eq!(loaded.config.app.port, 5050);
    assert_eq!(loaded.config.chat_workflows.websocket.port, 5051);
    assert!(loaded.config.chat_workflows.enabled);
}

fn write_config(dir: &std::path::Path, extra: &str) -> std::path::PathBuf {
    let root = dir.display();
    let text = format!(
        "app:\n  port: 0\n  workers: 1\nfile:\n  upload_folder: \"{root}/uploads\"\n  output_folder: \"{root}/outputs\"\n\
         logging:\n  level: INFO\n  file: \"{root}/logs/service.log\"\n\
         chat_workflows:\n  enabled: true\n  websocket:\n    port: 0\n  storage:\n    workflows_path: \"{root}/wf\"\n    \
         dumps_path: \"{root}/dumps\"\n    sqlite_path: \"{root}/db/chat.db\"\n  backup:\n    snapshot_path: \"{root}/snap\"\n{extra}"
    );
    let path = dir.join("application.yml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn invalid_config_stops_startup_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("app:\n  port: 70000\n", "app.port"),
        ("chat_workflows:\n  partition:\n    strategy: sideways\n", "chat_workflows.partition.strategy"),
        ("chat_workflows:\n  websocket:\n    ping_interval: 5\n    ping_timeout: 9\n", "ping_timeout"),
        ("chat_workflows:\n  max_connections: -1\n", "chat_workflows.max_connections"),
        ("file:\n  max_file_size_mb: -5\n", "file.max_file_size_mb"),
    ];
    for (yaml, key) in cases {
        let path = dir.path().join("bad.yml");
        std::fs::write(&path, yaml).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_oxcelize")).arg("--config").arg(&path).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{yaml}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(key), "{key} not named in: {stderr}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_oxcelize"))
        .arg("--config")
        .arg(dir.path().join("missing.yml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.yml"));
}

/// Kills the child process if the test fails before stopping it, so no server outlives a failed test.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Starts the real binary with port 0: it prints a banner with both addresses, logs requests to the configured
/// file with method, path, status, duration and request id, warns about unknown keys, and stops on SIGTERM.
#[test]
fn binary_prints_banner_logs_requests_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "mystery_section:\n  key: 1\n");
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_oxcelize"))
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let child = &mut child.0;
    let mut banner = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut banner).unwrap();
    assert!(banner.contains("oxcelize v0.0.1"), "{banner}");
    let rest = banner.split("REST http://").nth(1).and_then(|s| s.split('/').next()).unwrap().to_string();
    assert!(banner.contains("WebSocket ws://127.0.0.1:"), "{banner}");

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let body: Value = runtime.block_on(async {
        let res = reqwest::get(format!("http://{rest}/api/v1/health")).await.unwrap();
        res.json().await.unwrap()
    });
    let request_id = body["meta"]["request_id"].as_str().unwrap().to_string();

    let status = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
    assert!(status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "server did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit:?}");

    let log = std::fs::read_to_string(dir.path().join("logs/service.log")).unwrap();
    let line = log
        .lines()
        .find(|l| l.contains(&request_id))
        .unwrap_or_else(|| panic!("no log line for the request:\n{log}"));
    assert!(line.contains("GET /api/v1/health 200") && line.contains("ms"), "{line}");
    assert!(log.contains("unknown config key 'mystery_section'"), "{log}");
}
