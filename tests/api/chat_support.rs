//! Helpers shared by the chat test modules: conversations, uploads, runs, fixtures, event collection.
#![allow(dead_code)]

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{envelope, file_part, recv_json_within, TestApp, Ws};

pub const SAMPLE_CSV: &str = "customer_id,amount,status,date\nCUST001,1500,active,2026-01-15\n\
CUST002,500,inactive,2026-01-16\nCUST003,2000,active,2026-01-17\nCUST004,800,active,2026-01-18\n\
CUST005,300,inactive,2026-01-19\n";

/// The sample table as an xlsx workbook.
pub fn sample_xlsx() -> Vec<u8> {
    let mut wb = rust_xlsxwriter::Workbook::new();
    let ws = wb.add_worksheet();
    for (r, line) in SAMPLE_CSV.lines().enumerate() {
        for (c, cell) in line.split(',').enumerate() {
            ws.write_string(r as u32, c as u16, cell).unwrap();
        }
    }
    wb.save_to_buffer().unwrap()
}

pub async fn create_chat(app: &TestApp) -> String {
    let res = app.client.post(format!("{}/chat/workflows", app.api)).send().await.unwrap();
    let (status, body) = envelope(res).await;
    assert_eq!(status, 201, "{body}");
    body["data"]["chat_id"].as_str().unwrap().to_string()
}

pub async fn upload(app: &TestApp, chat: &str, name: &str, bytes: Vec<u8>) -> (u16, Value) {
    let form = reqwest::multipart::Form::new().part("file", file_part(name, bytes));
    envelope(app.post_form(&format!("/chat/workflows/{chat}/upload"), form).await).await
}

pub async fn execute(app: &TestApp, chat: &str, body: &Value) -> (u16, Value) {
    envelope(app.post_json(&format!("/chat/workflows/{chat}/execute"), body).await).await
}

pub async fn get_chat(app: &TestApp, chat: &str) -> Value {
    let (status, body) = envelope(app.get(&format!("/chat/workflows/{chat}")).await).await;
    assert_eq!(status, 200, "{body}");
    body["data"].clone()
}

/// A chat with the sample CSV uploaded.
pub async fn chat_with_csv(app: &TestApp) -> String {
    let chat = create_chat(app).await;
    let (status, body) = upload(app, &chat, "sales.csv", SAMPLE_CSV.as_bytes().to_vec()).await;
    assert_eq!(status, 200, "{body}");
    chat
}

/// The three-step example workflow of acceptance 65.
pub fn three_steps() -> Value {
    json!({"steps": [
        {"operation": "csv/convert-to-excel", "arguments": {"sheet_name": "Sales"}},
        {"operation": "excel/search", "arguments": {"conditions": [
            {"column": "status", "operator": "equals", "value": "active"},
            {"column": "amount", "operator": "greater_than", "value": 1000}],
            "logic": "AND", "output_format": "excel"}},
        {"operation": "normalization/apply", "arguments": {"normalizations": [{"column": "customer_id", "type": "lowercase"}]}}
    ]})
}

/// The chat events of one run of [`three_steps`], in order: each step's start and end progress, then its
/// result (the steps are too short for progress in between).
pub const THREE_STEP_EVENTS: [&str; 11] = [
    "workflow_started",
    "progress",
    "progress",
    "step_result",
    "progress",
    "progress",
    "step_result",
    "progress",
    "progress",
    "step_result",
    "workflow_completed",
];

/// Opens a socket on the chat and consumes the `connected` frame.
pub async fn subscriber(app: &TestApp, chat: &str) -> Ws {
    let mut ws = app.ws_connect(&format!("/chat/{chat}")).await;
    let hello = crate::common::recv_json(&mut ws).await;
    assert_eq!(hello["type"], "connected", "{hello}");
    ws
}

/// Chat-scoped events until (and including) one whose type is in `stop`, at most `wait` in total.
pub async fn events_until(ws: &mut Ws, stop: &[&str], wait: Duration) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut out = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Some(v) = recv_json_within(ws, left).await else { panic!("no terminal event; got {out:?}") };
        if v.get("seq").is_none() && !v.get("replayed").is_some_and(|r| r == true) {
            continue;
        }
        let t = v["type"].as_str().unwrap_or("").to_string();
        out.push(v);
        if stop.contains(&t.as_str()) {
            return out;
        }
    }
}

pub fn types(events: &[Value]) -> Vec<String> {
    events.iter().map(|e| e["type"].as_str().unwrap_or("").to_string()).collect()
}

/// Reads a downloaded xlsx's first sheet as rows of strings.
pub fn xlsx_rows(bytes: &[u8]) -> Vec<Vec<String>> {
    use calamine::{Reader, Xlsx};
    let mut wb: Xlsx<_> = Xlsx::new(std::io::Cursor::new(bytes.to_vec())).unwrap();
    let range = wb.worksheet_range_at(0).unwrap().unwrap();
    range.rows().map(|r| r.iter().map(|c| c.to_string()).collect()).collect()
}

/// Every file under a folder (recursive), relative paths, sorted.
pub fn tree(dir: &std::path::Path) -> Vec<String> {
    fn walk(base: &std::path::Path, dir: &std::path::Path, out: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(dir) else { return };
        for e in rd.filter_map(Result::ok) {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The state of the running app (for the chat services and test hooks).
pub fn chat_of(app: &TestApp) -> std::sync::Arc<oxcelize::chat::Chat> {
    app.handle.state().chat.clone().expect("chat enabled")
}
