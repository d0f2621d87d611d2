//! The chat bot over HTTP and WebSocket (chatbot.md, acceptance-chat.md F, G, J): conversations, messages,
//! uploads, confirmations, background runs with their events, history and restarts. Test names cite the
//! acceptance items they check.

use std::time::Duration;

use calamine::{Data, Reader, Xlsx};
use serde_json::{json, Value};

use crate::common::{
    envelope, file_part, recv_json_within, spawn_app, spawn_app_in, spawn_app_with, TestApp, Ws,
};

// ------------------------------------------------------------------------------------------------------
// helpers
// ------------------------------------------------------------------------------------------------------

/// A workbook with `Name, Email, City` (three rows, one duplicate name).
fn people_xlsx() -> Vec<u8> {
    let mut wb = rust_xlsxwriter::Workbook::new();
    let ws = wb.add_worksheet();
    let rows = [
        ["Name", "Email", "City"],
        ["Ann", "ann@example.com", "Oslo"],
        ["Bob", "bob@example.com", "Rome"],
        ["Cid", "cid@example.com", "Oslo"],
    ];
    for (r, row) in rows.iter().enumerate() {
        for (c, v) in row.iter().enumerate() {
            ws.write_string(r as u32, c as u16, *v).unwrap();
        }
    }
    wb.save_to_buffer().unwrap()
}

const SAMPLE_CSV: &str = "customer_id,amount,status,date\n\
CUST001,1500,active,2026-01-15\n\
CUST002,500,inactive,2026-01-16\n\
CUST003,2000,active,2026-01-17\n\
CUST004,800,active,2026-01-18\n\
CUST005,300,inactive,2026-01-19\n";

/// Rows of the first sheet of an xlsx as strings.
fn xlsx_rows(bytes: Vec<u8>) -> Vec<Vec<String>> {
    let mut wb: Xlsx<_> = Xlsx::new(std::io::Cursor::new(bytes)).expect("xlsx");
    let name = wb.sheet_names()[0].clone();
    let range = wb.worksheet_range(&name).expect("sheet");
    range
        .rows()
        .map(|r| {
            r.iter()
                .map(|c| match c {
                    Data::Empty => String::new(),
                    other => other.to_string(),
                })
                .collect()
        })
        .collect()
}

async fn start(app: &TestApp) -> String {
    let (status, body) = envelope(app.post_json("/chat/bot/conversations", &json!({})).await).await;
    assert_eq!(status, 201, "{body}");
    body["data"]["chat_id"].as_str().unwrap().to_string()
}

async fn say(app: &TestApp, id: &str, text: &str) -> (u16, Value) {
    // Soft failures included, the body's status_code equals the HTTP status (`envelope` asserts it).
    envelope(app.post_json(&format!("/chat/bot/conversations/{id}/message"), &json!({"message": text})).await)
        .await
}

async fn upload(app: &TestApp, id: &str, name: &str, bytes: Vec<u8>) -> (u16, Value) {
    let form = reqwest::multipart::Form::new().part("file", file_part(name, bytes));
    envelope(app.post_form(&format!("/chat/bot/conversations/{id}/upload"), form).await).await
}

async fn confirm(app: &TestApp, id: &str, body: Value) -> (u16, Value) {
    envelope(app.post_json(&format!("/chat/bot/conversations/{id}/confirm"), &body).await).await
}

async fn history(app: &TestApp, id: &str) -> Value {
    let (status, body) = envelope(app.get(&format!("/chat/bot/conversations/{id}/history")).await).await;
    assert_eq!(status, 200, "{body}");
    body["data"].clone()
}

async fn job(app: &TestApp, id: &str, job_id: &str) -> (u16, Value) {
    envelope(app.get(&format!("/chat/bot/conversations/{id}/workflow/status/{job_id}")).await).await
}

/// Polls the job status until it is terminal (fails after 20 s).
async fn wait_job(app: &TestApp, id: &str, job_id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = job(app, id, job_id).await;
        assert_eq!(status, 200, "{body}");
        let s = body["data"]["status"].as_str().unwrap_or("").to_string();
        if ["completed", "failed", "cancelled"].contains(&s.as_str()) {
            return body["data"].clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "job {job_id} still {s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls the history until the bot state is `state` (fails after 10 s).
async fn wait_state(app: &TestApp, id: &str, state: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let h = history(app, id).await;
        if h["current_state"] == state {
            return h;
        }
        assert!(tokio::time::Instant::now() < deadline, "state stays {}", h["current_state"]);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn slow_steps(app: &TestApp, delay: Duration) {
    let state = app.handle.state();
    state.chat.as_ref().expect("chat enabled").runner.set_test_step_delay(delay);
}

/// A subscribed WebSocket past its `connected` frame.
async fn subscribe(app: &TestApp, id: &str) -> Ws {
    let mut ws = app.ws_connect(&format!("/chat/{id}")).await;
    let first = recv_json_within(&mut ws, Duration::from_secs(5)).await.expect("connected");
    assert_eq!(first["type"], "connected");
    ws
}

/// Collects chat events until `stop` matches one (inclusive), failing after 20 s.
async fn collect_until(ws: &mut Ws, stop: impl Fn(&Value) -> bool) -> Vec<Value> {
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let ev = recv_json_within(ws, left).await.unwrap_or_else(|| panic!("stream ended; got {events:#?}"));
        let done = stop(&ev);
        events.push(ev);
        if done {
            return events;
        }
    }
}

/// `type` (and the state of `bot_state`, the message type of `message_added`) of each event.
fn labels(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| match e["type"].as_str().unwrap_or("") {
            "bot_state" => format!("bot_state {}", e["state"].as_str().unwrap_or("")),
            "message_added" => {
                format!("message_added {}", e["message"]["message_type"].as_str().unwrap_or(""))
            }
            "progress" => format!("progress {} {}", e["progress"], e["status"].as_str().unwrap_or("")),
            other => other.to_string(),
        })
        .collect()
}

fn assert_seq_increasing(events: &[Value]) {
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().expect("seq on chat events")).collect();
    for w in seqs.windows(2) {
        assert_eq!(w[1], w[0] + 1, "seq gap in {seqs:?}");
    }
}

fn is_idle(e: &Value) -> bool {
    e["type"] == "bot_state" && e["state"] == "idle"
}

// ------------------------------------------------------------------------------------------------------
// F. endpoints
// ------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn f108_b31_start_with_empty_object() {
    let app = spawn_app().await;
    let (status, body) = envelope(app.post_json("/chat/bot/conversations", &json!({})).await).await;
    assert_eq!(status, 201);
    assert_eq!(body["message"], "Bot conversation started successfully");
    let d = &body["data"];
    assert!(d["bot_message"].as_str().unwrap().contains("Welcome"));
    assert_eq!(d["state"], "idle");
    assert_eq!(d["status"], "created");
    assert!(d["participant_name"].as_str().unwrap().contains('-'));
    let id = d["chat_id"].as_str().unwrap();
    assert_eq!(id.len(), 36, "UUID v4: {id}");
    for key in ["created_at", "updated_at"] {
        let t = d[key].as_str().unwrap();
        assert!(t.ends_with("+00:00") && t.len() == 32, "{key}: {t}");
    }
    assert!(d["partition_key"].is_string());
    // acceptance 31: the bot conversation is an ordinary conversation
    let (status, conv) = envelope(app.get(&format!("/chat/workflows/{id}")).await).await;
    assert_eq!(status, 200);
    assert_eq!(conv["data"]["chat_id"], id);
    app.stop().await;
}

#[tokio::test]
async fn f109_start_without_body_or_content_type() {
    let app = spawn_app().await;
    let res = app.client.post(format!("{}/chat/bot/conversations", app.api)).send().await.unwrap();
    let (status, body) = envelope(res).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["data"]["state"], "idle");
    let res = app
        .client
        .post(format!("{}/chat/bot/conversations", app.api))
        .header("content-type", "text/plain")
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(envelope(res).await.0, 201);
    app.stop().await;
}

#[tokio::test]
async fn f110_f111_custom_chat_ids_are_validated_and_unique() {
    let app = spawn_app().await;
    let (status, body) =
        envelope(app.post_json("/chat/bot/conversations", &json!({"chat_id": "my-chat-01"})).await).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["data"]["chat_id"], "my-chat-01");
    for bad in [json!("../x"), json!(""), json!("a/b"), json!(123), json!("x".repeat(65))] {
        let (status, body) =
            envelope(app.post_json("/chat/bot/conversations", &json!({"chat_id": bad})).await).await;
        assert_eq!(status, 422, "{bad}: {body}");
        assert_eq!(body["message"], "Invalid chat_id");
    }
    let (status, body) =
        envelope(app.post_json("/chat/bot/conversations", &json!({"chat_id": "my-chat-01"})).await).await;
    assert_eq!(status, 409);
    assert_eq!(body["message"], "Conversation already exists: my-chat-01");
    // nothing was re-initialised: still exactly one welcome message
    assert_eq!(history(&app, "my-chat-01").await["messages"].as_array().unwrap().len(), 1);
    assert!(!app.path("automation/workflows").join("x").exists());
    app.stop().await;
}

#[tokio::test]
async fn f112_f146_new_conversation_history_has_one_welcome_message_and_idle_state() {
    let app = spawn_app().await;
    let id = start(&app).await;
    let h = history(&app, &id).await;
    let messages = h["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["message_type"], "system");
    assert_eq!(messages[0]["metadata"]["is_welcome"], true);
    assert_eq!(h["current_state"], "idle");
    assert_eq!(h["pending_workflow"], Value::Null);
    assert_eq!(h["active_job"], Value::Null);
    assert_eq!(h["total_messages"], 1);
    // 146: a conversation created through /chat/workflows reports idle too
    let (_, plain) = envelope(app.post_json("/chat/workflows", &json!({})).await).await;
    let plain_id = plain["data"]["chat_id"].as_str().unwrap();
    let h = history(&app, plain_id).await;
    assert_eq!(h["current_state"], "idle");
    assert_eq!(h["messages"], json!([]));
    app.stop().await;
}

#[tokio::test]
async fn f113_f114_f115_extract_without_file_convert_and_help() {
    let app = spawn_app().await;
    let id = start(&app).await;
    let (status, body) = say(&app, &id, "extract columns: name, email, phone").await;
    assert_eq!((status, body["status_code"].clone()), (200, json!(200)), "{body}");
    assert_eq!(body["message"], "Message processed successfully");
    let d = &body["data"];
    assert_eq!(d["intent"]["type"], "extract_columns");
    assert_eq!(d["intent"]["confidence"], 1.0);
    assert_eq!(d["requires_file"], true);
    assert_eq!(d["requires_confirmation"], false);
    assert_eq!(d["state"], "awaiting_file");
    assert_eq!(d["output_files"], json!([]));
    assert_eq!(d["suggested_workflow"][0]["arguments"]["columns"], json!(["name", "email", "phone"]));
    assert_eq!(d["pending_workflow"], d["suggested_workflow"]);

    let (_, body) = say(&app, &id, "convert to JSON").await;
    assert_eq!(body["data"]["intent"]["type"], "convert_format");

    let (status, body) = say(&app, &id, "help").await;
    assert_eq!(status, 200);
    assert!(body["data"]["bot_response"].as_str().unwrap().to_lowercase().contains("help"));
    app.stop().await;
}

#[tokio::test]
async fn f116_f117_message_validation_stores_nothing() {
    let app = spawn_app().await;
    let id = start(&app).await;
    let path = format!("/chat/bot/conversations/{id}/message");
    let cases = [
        (json!({"message": ""}), "Empty message"),
        (json!({"message": "   "}), "Empty message"),
        (json!({}), "No message provided"),
        (json!({"text": "hi"}), "No message provided"),
        (json!({"message": 123}), "Message must be a string"),
        (json!({"message": "x".repeat(10_001)}), "Message too long"),
    ];
    for (body, message) in cases {
        let (status, res) = envelope(app.post_json(&path, &body).await).await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(res["message"], message);
        assert_eq!(res["data"]["error_type"], "Error");
    }
    let res = app.client.post(format!("{}{path}", app.api)).body("{oops").send().await.unwrap();
    assert_eq!(envelope(res).await.0, 422);
    assert_eq!(history(&app, &id).await["total_messages"], 1, "nothing stored");
    app.stop().await;
}

#[tokio::test]
async fn f118_f119_unknown_intent_is_a_soft_failure_with_reply_and_suggestions() {
    let app = spawn_app().await;
    let id = start(&app).await;
    let (status, body) = say(&app, &id, "do something random").await;
    assert_eq!(status, 200);
    assert_eq!(body["status_code"], 200);
    assert_eq!(body["message"], "Unknown intent");
    let d = &body["data"];
    assert_eq!(d["understood"], false);
    assert_eq!(d["error_type"], "Error");
    assert!(!d["bot_response"].as_str().unwrap().is_empty());
    assert_eq!(
        d["suggestions"],
        json!(["extract columns", "convert to JSON", "generate SQL", "normalize data"])
    );
    assert_eq!(d["state"], "idle");
    // the reply is stored like every other reply
    let h = history(&app, &id).await;
    let last = h["messages"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["message_type"], "system");
    assert_eq!(last["content"], d["bot_response"]);
    app.stop().await;
}

#[tokio::test]
async fn f120_f122_history_returns_exactly_the_stored_messages() {
    let app = spawn_app().await;
    let id = start(&app).await;
    for text in ["Hello bot!", "extract columns: name, email", "help"] {
        say(&app, &id, text).await;
    }
    let h = history(&app, &id).await;
    let messages = h["messages"].as_array().unwrap();
    assert!(messages.len() >= 7, "{}", messages.len());
    let (_, conv) = envelope(app.get(&format!("/chat/workflows/{id}")).await).await;
    let stored = conv["data"]["messages"].as_array().unwrap();
    assert_eq!(messages.len(), stored.len());
    for (a, b) in messages.iter().zip(stored) {
        assert_eq!(a["message_id"], b["message_id"]);
    }
    let types: Vec<&str> = messages.iter().map(|m| m["message_type"].as_str().unwrap()).collect();
    assert_eq!(types, ["system", "user", "system", "user", "system", "user", "system"]);
    assert_eq!(messages[1]["content"], "Hello bot!");
    assert_eq!(messages[1]["metadata"], json!({}));
    assert_eq!(messages[4]["metadata"]["intent"]["type"], "extract_columns");
    assert!(messages[4]["metadata"]["suggested_workflow"].is_array());
    assert_eq!(messages[4]["metadata"]["requires_confirmation"], false);
    // 122
    for text in ["extract columns", "convert to JSON", "generate SQL"] {
        assert_eq!(say(&app, &id, text).await.0, 200);
    }
    assert!(history(&app, &id).await["messages"].as_array().unwrap().len() >= 5);
    app.stop().await;
}

#[tokio::test]
async fn f121_history_limit_returns_the_most_recent_oldest_first() {
    let app = spawn_app().await;
    let id = start(&app).await;
    say(&app, &id, "one").await;
    say(&app, &id, "two").await;
    let all = history(&app, &id).await["messages"].as_array().unwrap().clone();
    let (status, body) =
        envelope(app.get(&format!("/chat/bot/conversations/{id}/history?limit=3")).await).await;
    assert_eq!(status, 200);
    let last3 = body["data"]["messages"].as_array().unwrap();
    assert_eq!(last3.len(), 3);
    assert_eq!(last3[..], all[all.len() - 3..]);
    assert_eq!(body["data"]["total_messages"], all.len());
    let (_, body) = envelope(app.get(&format!("/chat/bot/conversations/{id}/history?limit=500")).await).await;
    assert_eq!(body["data"]["messages"].as_array().unwrap().len(), all.len());
    for bad in ["0", "-1", "abc", "1.5"] {
        let (status, _) =
            envelope(app.get(&format!("/chat/bot/conversations/{id}/history?limit={bad}")).await).await;
        assert_eq!(status, 422, "limit={bad}");
    }
    app.stop().await;
}

#[tokio::test]
async fn f123_f124_f147_upload_answers_stores_and_downloads() {
    let app = spawn_app().await;
    let id = start(&app).await;
    let bytes = people_xlsx();
    let (status, body) = upload(&app, &id, "test_data.xlsx", bytes.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["message"], "File uploaded successfully");
    let d = &body["data"];
    assert_eq!(d["filename"], "test_data.xlsx");
    assert!(d["file_path"].as_str().unwrap().ends_with(&format!("/{id}/uploads/test_data.xlsx")));
    let url = d["download_url"].as_str().unwrap();
    assert_eq!(url, format!("{}/chat/workflows/{id}/files/test_data.xlsx", app.api));
    let reply = d["bot_response"].as_str().unwrap();
    assert!(reply.starts_with("✅ File 'test_data.xlsx' uploaded successfully!"), "{reply}");
    assert_eq!(d["suggested_workflow"], Value::Null);
    assert_eq!(d["requires_confirmation"], false);
    assert_eq!(d["state"], "idle");
    assert_eq!(app.download(url).await, bytes);

    // 147, 234: the history's upload message carries file_path, filename and a working download_url
    let h = history(&app, &id).await;
    let up = h["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["message_type"] == "file_upload")
        .unwrap()
        .clone();
    assert_eq!(up["content"], "File uploaded: test_data.xlsx");
    assert_eq!(up["metadata"]["filename"], "test_data.xlsx");
    assert!(up["metadata"]["file_path"].as_str().unwrap().ends_with("/uploads/test_data.xlsx"));
    assert_eq!(app.download(up["metadata"]["download_url"].as_str().unwrap()).await, bytes);
    let reply_msg = h["messages"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(reply_msg["metadata"]["file_path"], up["metadata"]["file_path"]);
    assert_eq!(reply_msg["metadata"]["requires_confirmation"], false);
    assert_eq!(h["uploaded_files"][0]["download_url"], url);

    // 124: no file / empty file name
    let form = reqwest::multipart::Form::new().text("other", "x");
    let (status, body) =
        envelope(app.post_form(&format!("/chat/bot/conversations/{id}/upload"), form).await).await;
    assert_eq!((status, body["message"].as_str().unwrap()), (422, "No file provided"));
    let form = reqwest::multipart::Form::new().part("file", file_part("", b"a,b\n".to_vec()));
    let (status, body) =
        envelope(app.post_form(&format!("/chat/bot/conversations/{id}/upload"), form).await).await;
    assert_eq!((status, body["message"].as_str().unwrap()), (422, "Empty filename"));
    let (status, body) = upload(&app, &id, "tool.exe", b"MZ".to_vec()).await;
    assert_eq!((status, body["message"].as_str().unwrap()), (422, "File type not allowed: .exe"));
    assert_eq!(history(&app, &id).await["uploaded_files"].as_array().unwrap().len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn c42_same_name_three_times_leaves_one_upload_entry() {
    let app = spawn_app().await;
    let id = start(&app).await;
    for i in 0..3 {
        let (status, _) = upload(&app, &id, "same.csv", format!("a,b\n{i},x\n").into_bytes()).await;
        assert_eq!(status, 200);
    }
    let h = history(&app, &id).await;
    assert_eq!(h["uploaded_files"].as_array().unwrap().len(), 1);
    let url = h["uploaded_files"][0]["download_url"].as_str().unwrap();
    assert_eq!(app.download(url).await, b"a,b\n2,x\n".to_vec(), "content of the last upload");
    app.stop().await;
}

#[tokio::test]
async fn a5_f125_f126_upload_then_message_then_operations_panel_confirm() {
    let app = spawn_app().await;
    let id = start(&app).await;
    upload(&app, &id, "test_data.xlsx", people_xlsx()).await;
    let (status, body) = say(&app, &id, "extract columns: postal_code").await;
    assert_eq!((status, body["status_code"].clone()), (200, json!(200)));
    let d = &body["data"];
    assert_eq!(d["requires_file"], false);
    assert_eq!(d["requires_confirmation"], true);
    assert_eq!(d["state"], "awaiting_confirmation");
    assert_eq!(d["suggested_workflow"][0]["arguments"]["columns"], json!(["postal_code"]));
    let modified = json!([{"operation": "excel/extract-columns-to-file",
                           "arguments": {"columns": ["Name", "Email"], "remove_duplicates": true}}]);
    let (status, body) = confirm(&app, &id, json!({"confirmed": true, "modified_workflow": modified})).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status_code"], 202, "acceptance 5");
    assert_eq!(body["message"], "Workflow submitted for background execution");
    let job_id = body["data"]["job_id"].as_str().unwrap().to_string();
    assert!(job_id.starts_with(&format!("{id}_workflow_")));
    assert_eq!(body["data"]["status"], "submitted");
    assert_eq!(body["data"]["position"], 0);
    assert!(body["data"]["bot_response"].as_str().unwrap().starts_with('🚀'));
    assert!(body["data"]["message"].as_str().unwrap().contains("WebSocket"));
    let done = wait_job(&app, &id, &job_id).await;
    assert_eq!(done["status"], "completed", "{done}");
    let out = done["result"]["output_files"][0]["download_url"].as_str().unwrap();
    let rows = xlsx_rows(app.download(out).await);
    assert_eq!(rows[0], ["Name", "Email"]);
    assert_eq!(rows.len(), 4);
    app.stop().await;
}

#[tokio::test]
async fn f127_f128_f129_f130_confirm_on_a_fresh_conversation() {
    let app = spawn_app().await;
    let id = start(&app).await;
    let (status, body) = confirm(&app, &id, json!({"confirmed": true})).await;
    assert_eq!(status, 400);
    assert_eq!(body["message"], "No pending workflow");
    assert!(!body["data"]["bot_response"].as_str().unwrap().is_empty(), "240");
    let (status, body) = confirm(&app, &id, json!({"confirmed": false})).await;
    assert_eq!(status, 200);
    assert_eq!(body["message"], "Workflow confirmation processed");
    assert_eq!(body["data"]["output_files"], json!([]));
    assert_eq!(body["data"]["results"], json!([]));
    assert!(!body["data"]["bot_response"].as_str().unwrap().is_empty());
    let (status, body) = confirm(&app, &id, json!({})).await;
    assert_eq!((status, body["message"].as_str().unwrap()), (422, "No data provided"));
    let (status, body) = confirm(&app, &id, json!({"confirmed": "yes"})).await;
    assert_eq!((status, body["message"].as_str().unwrap()), (422, "confirmed must be a boolean"));
    let (status, body) =
        confirm(&app, &id, json!({"confirmed": true, "modified_workflow": [{"operation": "excel/explode"}]}))
            .await;
    assert_eq!(status, 422);
    assert!(body["message"].as_str().unwrap().starts_with("Invalid workflow"), "{body}");
    assert_eq!(body["data"]["details"]["errors"][0]["field"], "operation");
    let h = history(&app, &id).await;
    assert_eq!(h["pending_workflow"], Value::Null, "an invalid workflow is not stored");
    assert_eq!(h["workflow_steps"], json!([]));
    // a valid workflow without an upload: 400 No uploaded file found, kept as pending
    let (status, body) = confirm(
        &app,
        &id,
        json!({"confirmed": true, "modified_workflow": [{"operation": "json/generate", "arguments": {}}]}),
    )
    .await;
    assert_eq!((status, body["message"].as_str().unwrap()), (400, "No uploaded file found"));
    assert!(body["data"]["bot_response"].is_string());
    assert_eq!(history(&app, &id).await["current_state"], "awaiting_file");
    app.stop().await;
}

/// 131, 132, 188, 222 and the ordering of chatbot.md §9: text first, then the upload presents the
/// suggestion, confirm runs it in the background, the output lands in the history with a working URL.
#[tokio::test]
async fn f131_f132_h188_i222_text_then_upload_then_confirm_runs_the_stored_suggestion() {
    let app = spawn_app().await;
    let id = start(&app).await;
    let mut ws = subscribe(&app, &id).await;
    let (_, body) = say(&app, &id, "extract columns: Name").await;
    assert_eq!(body["data"]["requires_file"], true);
    let events = collect_until(&mut ws, |e| e["type"] == "bot_state").await;
    assert_eq!(labels(&events), ["message_added user", "message_added system", "bot_state awaiting_file"]);

    let (status, body) = upload(&app, &id, "people.xlsx", people_xlsx()).await;
    assert_eq!(status, 200);
    let d = &body["data"];
    assert_eq!(d["suggested_workflow"][0]["operation"], "excel/extract-columns-to-file");
    assert_eq!(d["suggested_workflow"][0]["arguments"]["columns"], json!(["Name"]));
    assert_eq!(d["requires_confirmation"], true);
    assert_eq!(d["state"], "awaiting_confirmation");
    let events = collect_until(&mut ws, |e| e["type"] == "bot_state").await;
    assert_eq!(
        labels(&events),
        ["message_added file_upload", "message_added system", "bot_state awaiting_confirmation"]
    );
    assert!(events[0]["message"]["metadata"]["download_url"].is_string());

    let (status, body) = confirm(&app, &id, json!({"confirmed": true})).await;
    assert_eq!(status, 202, "{body}");
    let job_id = body["data"]["job_id"].as_str().unwrap().to_string();
    let events = collect_until(&mut ws, is_idle).await;
    assert_eq!(
        labels(&events),
        [
            "message_added system",
            "bot_state processing",
            "workflow_started",
            "progress 0 running",
            "progress 100 completed",
            "step_result",
            "workflow_completed",
            "message_added system",
            "bot_state completed",
            "bot_state idle",
        ]
    );
    assert_seq_increasing(&events);
    assert_eq!(events[0]["message"]["metadata"]["job_id"], job_id);
    assert_eq!(events[0]["message"]["metadata"]["action"], "execute_workflow");
    assert_eq!(events[2]["message"], "🚀 Starting workflow execution...");
    assert_eq!(events[2]["kind"], "bot");
    assert_eq!(events[6]["message"], "✅ Workflow completed successfully!");
    assert_eq!(events[6]["output_files_count"], 1);
    assert_eq!(events[1]["previous_state"], "awaiting_confirmation");

    // 132: history gains the ✅ message with the outputs; the output downloads and holds only Name
    let h = history(&app, &id).await;
    assert_eq!(h["current_state"], "idle");
    assert_eq!(h["pending_workflow"], Value::Null);
    assert_eq!(h["status"], "completed");
    let last = h["messages"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["message_type"], "system");
    assert!(last["content"].as_str().unwrap().starts_with('✅'));
    assert!(last["content"].as_str().unwrap().contains("ready for download"));
    let outputs = last["metadata"]["output_files"].as_array().unwrap();
    assert_eq!(outputs.len(), 1);
    assert_eq!(h["output_files"][0]["file_path"], outputs[0]);
    let rows = xlsx_rows(app.download(h["output_files"][0]["download_url"].as_str().unwrap()).await);
    assert_eq!(rows, [["Name"], ["Ann"], ["Bob"], ["Cid"]]);
    assert_eq!(h["workflow_steps"][0]["status"], "completed");
    let done = wait_job(&app, &id, &job_id).await;
    assert!(done["result"]["bot_response"].as_str().unwrap().starts_with('✅'));
    assert_eq!(done["result"]["success"], true);
    app.stop().await;
}

#[tokio::test]
async fn f133_yes_runs_in_the_background_and_a_second_yes_cannot_resubmit() {
    let app = spawn_app().await;
    slow_steps(&app, Duration::from_millis(800));
    let id = start(&app).await;
    upload(&app, &id, "people.xlsx", people_xlsx()).await;
    say(&app, &id, "extract unique columns: City").await;
    let (status, body) = say(&app, &id, "Yes!").await;
    assert_eq!((status, body["status_code"].clone()), (200, json!(200)), "{body}");
    let d = &body["data"];
    assert_eq!(d["action"], "execute_workflow");
    assert_eq!(d["status"], "submitted");
    assert!(d["bot_response"].as_str().unwrap().starts_with('🚀'));
    let job_id = d["job_id"].as_str().unwrap().to_string();
    assert_eq!(d["state"], "processing");
    // while it runs: `yes` again is not a confirmation, and confirm has nothing to submit
    let (status, body) = say(&app, &id, "yes").await;
    assert_eq!((status, body["status_code"].clone()), (200, json!(200)));
    assert_eq!(body["data"]["understood"], false);
    assert!(body["data"].get("job_id").is_none());
    let (status, body) = confirm(&app, &id, json!({"confirmed": true})).await;
    assert_eq!(status, 400);
    assert!(body["data"]["bot_response"].as_str().unwrap().contains(&job_id));
    let h = history(&app, &id).await;
    assert_eq!(h["current_state"], "processing");
    assert_eq!(h["active_job"]["job_id"], job_id);
    let done = wait_job(&app, &id, &job_id).await;
    assert_eq!(done["status"], "completed");
    let (_, jobs) = envelope(app.get(&format!("/chat/workflows/{id}/jobs")).await).await;
    assert_eq!(jobs["data"]["count"], 1, "exactly one job");
    let rows =
        xlsx_rows(app.download(done["result"]["output_files"][0]["download_url"].as_str().unwrap()).await);
    assert_eq!(rows, [["City"], ["Oslo"], ["Rome"]], "remove_duplicates from `unique`");
    wait_state(&app, &id, "idle").await;
    app.stop().await;
}

#[tokio::test]
async fn f134_no_clears_the_suggestion() {
    let app = spawn_app().await;
    let id = start(&app).await;
    upload(&app, &id, "people.xlsx", people_xlsx()).await;
    say(&app, &id, "extract columns: Name").await;
    let (status, body) = say(&app, &id, "no").await;
    assert_eq!((status, body["status_code"].clone()), (200, json!(200)));
    let h = history(&app, &id).await;
    assert_eq!(h["current_state"], "idle");
    assert_eq!(h["pending_workflow"], Value::Null);
    let (status, _) = confirm(&app, &id, json!({"confirmed": true})).await;
    assert_eq!(status, 400);
    app.stop().await;
}

#[tokio::test]
async fn f135_f136_free_text_while_awaiting_confirmation() {
    let app = spawn_app().await;
    let id = start(&app).await;
    upload(&app, &id, "people.xlsx", people_xlsx()).await;
    say(&app, &id, "extract columns: Name").await;
    let (_, body) = say(&app, &id, "columns: a, b").await;
    let d = &body["data"];
    assert_eq!(d["requires_confirmation"], true);
    assert_eq!(d["suggested_workflow"][0]["arguments"]["columns"], json!(["a", "b"]));
    assert_eq!(d["parameters"], json!({"columns": ["a", "b"]}));
    assert_eq!(history(&app, &id).await["pending_workflow"][0]["arguments"]["columns"], json!(["a", "b"]));

    let (status, body) = say(&app, &id, "hmm not sure").await;
    assert_eq!((status, body["status_code"].clone()), (200, json!(200)));
    assert_eq!(body["data"]["action"], "modify_workflow");
    assert_eq!(body["data"]["state"], "awaiting_parameters");
    let (_, body) = say(&app, &id, "still no idea").await;
    assert_eq!((body["status_code"].clone(), body["data"]["understood"].clone()), (json!(200), json!(false)));
    assert_eq!(body["message"], "Invalid parameters");
    assert!(body["data"]["bot_response"].as_str().unwrap().contains("key: value"));
    let (_, body) = say(&app, &id, "columns: Name, City; remove_duplicates: yes").await;
    assert_eq!(body["data"]["state"], "awaiting_confirmation");
    let (status, body) = confirm(&app, &id, json!({"confirmed": true})).await;
    assert_eq!(status, 202);
    let done = wait_job(&app, &id, body["data"]["job_id"].as_str().unwrap()).await;
    let rows =
        xlsx_rows(app.download(done["result"]["output_files"][0]["download_url"].as_str().unwrap()).await);
    assert_eq!(rows[0], ["Name", "City"]);
    app.stop().await;
}

#[tokio::test]
async fn f137_cancel_and_help() {
    let app = spawn_app().await;
    let id = start(&app).await;
    say(&app, &id, "extract columns: Name").await;
    let (status, body) = say(&app, &id, "cancel").await;
    assert_eq!(status, 200);
    let reply = body["data"]["bot_response"].as_str().unwrap();
    assert!(reply.starts_with('✅') && reply.contains("cancelled"), "{reply}");
    assert_eq!(body["data"]["state"], "idle");
    let h = history(&app, &id).await;
    assert_eq!(h["current_state"], "idle");
    assert_eq!(h["pending_workflow"], Value::Null);
    let (_, body) = say(&app, &id, "?").await;
    assert!(body["data"]["bot_response"].as_str().unwrap().contains("cancel"));
    app.stop().await;
}

#[tokio::test]
async fn f138_cancel_while_running_stops_between_steps() {
    let app = spawn_app().await;
    slow_steps(&app, Duration::from_millis(700));
    let id = start(&app).await;
    upload(&app, &id, "people.xlsx", people_xlsx()).await;
    let mut ws = subscribe(&app, &id).await;
    let steps = json!([
        {"operation": "excel/extract-columns-to-file", "arguments": {"columns": ["Name", "City"]}},
        {"operation": "excel/extract-columns-to-file", "arguments": {"columns": ["Name"]}},
        {"operation": "json/generate", "arguments": {}}
    ]);
    let (status, body) = confirm(&app, &id, json!({"confirmed": true, "modified_workflow": steps})).await;
    assert_eq!(status, 202);
    let job_id = body["data"]["job_id"].as_str().unwrap().to_string();
    collect_until(&mut ws, |e| e["type"] == "progress").await;
    let (_, body) = say(&app, &id, "stop").await;
    assert!(body["data"]["bot_response"].as_str().unwrap().contains("Cancellation requested"));
    let events = collect_until(&mut ws, is_idle).await;
    let failed = events.iter().find(|e| e["type"] == "workflow_failed").expect("workflow_failed");
    assert_eq!(failed["cancelled"], true);
    let done = wait_job(&app, &id, &job_id).await;
    assert_eq!(done["status"], "cancelled");
    let statuses: Vec<&str> =
        done["steps"].as_array().unwrap().iter().map(|s| s["status"].as_str().unwrap()).collect();
    assert_eq!(statuses.last(), Some(&"skipped"));
    let h = history(&app, &id).await;
    assert_eq!(h["current_state"], "idle");
    assert_eq!(h["status"], "failed");
    let last = h["messages"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["message_type"], "error");
    assert!(last["content"].as_str().unwrap().contains("cancelled"));
    let states: Vec<String> = labels(&events).into_iter().filter(|l| l.starts_with("bot_state")).collect();
    assert_eq!(states, ["bot_state cancelled", "bot_state idle"]);
    app.stop().await;
}

#[tokio::test]
async fn f139_f140_f141_job_status() {
    let app = spawn_app().await;
    let id = start(&app).await;
    let (status, body) = job(&app, &id, "nonexistent-job-id").await;
    assert_eq!((status, body["message"].as_str().unwrap()), (404, "Job not found"));
    upload(&app, &id, "people.xlsx", people_xlsx()).await;
    let bad = json!([{"operation": "excel/extract-columns-to-file", "arguments": {"columns": ["nope"]}}]);
    let (status, body) = confirm(&app, &id, json!({"confirmed": true, "modified_workflow": bad})).await;
    assert_eq!(status, 202);
    let job_id = body["data"]["job_id"].as_str().unwrap().to_string();
    let (status, body) = job(&app, &id, &job_id).await;
    assert_eq!(status, 200);
    assert_eq!(body["message"], "Job status retrieved successfully");
    for key in ["job_id", "status", "submitted_at", "started_at", "completed_at", "result", "error"] {
        assert!(body["data"].get(key).is_some(), "140: {key}");
    }
    let done = wait_job(&app, &id, &job_id).await;
    assert_eq!(done["status"], "failed", "141");
    assert!(done["error"].as_str().unwrap().contains("Columns not found in data: nope"));
    assert_eq!(done["result"]["success"], false);
    let reply = done["result"]["bot_response"].as_str().unwrap();
    assert!(reply.starts_with('❌') && reply.contains("nope"), "{reply}");
    let h = wait_state(&app, &id, "idle").await;
    let last = h["messages"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["message_type"], "error");
    assert!(last["content"].as_str().unwrap().starts_with("❌ Workflow execution failed: "));
    assert!(last["metadata"]["error"].as_str().unwrap().contains("nope"));
    // the failed workflow is kept: `yes` retries it
    assert_eq!(h["pending_workflow"][0]["arguments"]["columns"], json!(["nope"]));
    let (_, body) = say(&app, &id, "yes").await;
    assert_eq!(body["data"]["action"], "execute_workflow");
    // jobs are scoped to their chat
    let other = start(&app).await;
    assert_eq!(job(&app, &other, &job_id).await.0, 404);
    app.stop().await;
}

#[tokio::test]
async fn f142_state_and_jobs_survive_a_restart() {
    let app = spawn_app().await;
    let id = start(&app).await;
    upload(&app, &id, "people.xlsx", people_xlsx()).await;
    let (_, body) = confirm(
        &app,
        &id,
        json!({"confirmed": true, "modified_workflow": [{"operation": "excel/extract-columns-to-file", "arguments": {"columns": ["Email"]}}]}),
    )
    .await;
    let job_id = body["data"]["job_id"].as_str().unwrap().to_string();
    wait_job(&app, &id, &job_id).await;
    wait_state(&app, &id, "idle").await;
    say(&app, &id, "extract columns: Name").await;
    say(&app, &id, "columns: Name, City").await;
    app.stop().await;

    let TestApp { dir, config, .. } = app;
    let app = spawn_app_in(dir, config).await;
    let h = history(&app, &id).await;
    assert_eq!(h["current_state"], "awaiting_confirmation");
    assert_eq!(h["pending_workflow"][0]["arguments"]["columns"], json!(["Name", "City"]));
    let (status, done) = job(&app, &id, &job_id).await;
    assert_eq!(status, 200);
    assert_eq!(done["data"]["status"], "completed");
    let (_, body) = say(&app, &id, "yes").await;
    assert_eq!(body["data"]["action"], "execute_workflow", "{body}");
    let done = wait_job(&app, &id, body["data"]["job_id"].as_str().unwrap()).await;
    let rows =
        xlsx_rows(app.download(done["result"]["output_files"][0]["download_url"].as_str().unwrap()).await);
    assert_eq!(rows[0], ["Name", "City"]);
    app.stop().await;
}

#[tokio::test]
async fn f142_a_bot_run_cut_by_shutdown_is_failed_and_the_bot_idle_after_restart() {
    let app = spawn_app_with(|c| c.chat_workflows.execution.shutdown_grace_seconds = 1).await;
    slow_steps(&app, Duration::from_secs(30));
    let id = start(&app).await;
    upload(&app, &id, "people.xlsx", people_xlsx()).await;
    say(&app, &id, "extract columns: Email").await;
    let (_, body) = say(&app, &id, "yes").await;
    let job_id = body["data"]["job_id"].as_str().unwrap().to_string();
    assert_eq!(history(&app, &id).await["current_state"], "processing");
    app.stop().await;

    let TestApp { dir, config, .. } = app;
    let app = spawn_app_in(dir, config).await;
    let (status, done) = job(&app, &id, &job_id).await;
    assert_eq!(status, 200);
    assert_eq!(done["data"]["status"], "failed");
    assert!(done["data"]["error"].as_str().unwrap().starts_with("Interrupted"), "{done}");
    let h = history(&app, &id).await;
    assert_eq!(h["current_state"], "idle");
    assert_eq!(h["active_job"], Value::Null);
    // the interrupted workflow can be run again
    let (_, body) = say(&app, &id, "yes").await;
    assert_eq!(body["data"]["action"], "execute_workflow", "{body}");
    let done = wait_job(&app, &id, body["data"]["job_id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "completed");
    app.stop().await;
}

#[tokio::test]
async fn f143_f149_lifecycle_and_delete() {
    let app = spawn_app().await;
    let id = start(&app).await;
    assert_eq!(say(&app, &id, "extract columns: Name").await.0, 200);
    assert_eq!(upload(&app, &id, "people.xlsx", people_xlsx()).await.0, 200);
    assert!(history(&app, &id).await["messages"].as_array().unwrap().len() >= 3);
    let res = app.client.delete(format!("{}/chat/bot/conversations/{id}", app.api)).send().await.unwrap();
    let (status, body) = envelope(res).await;
    assert_eq!(status, 200);
    assert_eq!(body["message"], "Bot conversation deleted successfully");
    assert_eq!(body["data"]["chat_id"], id);
    let (status, _) = envelope(app.get(&format!("/chat/bot/conversations/{id}/history")).await).await;
    assert_eq!(status, 404);
    let res =
        app.client.delete(format!("{}/chat/bot/conversations/nonexistent-id", app.api)).send().await.unwrap();
    let (status, body) = envelope(res).await;
    assert_eq!((status, body["message"].as_str().unwrap()), (404, "Conversation not found"));
    app.stop().await;
}

#[tokio::test]
async fn f144_f145_a7_a10_operations() {
    let app = spawn_app_with(|c| c.chat_workflows.enabled = false).await;
    let res = app.get("/chat/bot/operations").await;
    let text = res.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["status_code"], 200, "10: served with the feature off");
    assert_eq!(body["message"], "Supported operations retrieved successfully");
    assert_eq!(body["data"]["total_intents"], 8);
    assert_eq!(body["data"]["operations"]["extract_columns"], json!(["excel/extract-columns-to-file"]));
    let keys: Vec<&String> = body["data"]["operations"].as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 8);
    // 145: in the raw JSON the intent keys appear alphabetically
    let positions: Vec<usize> = [
        "bind_data",
        "convert_format",
        "extract_columns",
        "generate_json",
        "generate_sql",
        "map_columns",
        "normalize_data",
        "search_filter",
    ]
    .iter()
    .map(|k| text.find(&format!("\"{k}\"")).unwrap())
    .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    assert_eq!(body["data"]["catalog"].as_object().unwrap().len(), 14);
    // 7: a wrong method gets a JSON 405
    let res = app.client.delete(format!("{}/chat/bot/operations", app.api)).send().await.unwrap();
    let (status, _) = envelope(res).await;
    assert_eq!(status, 405);
    // every other bot endpoint is off
    let (status, body) = envelope(app.post_json("/chat/bot/conversations", &json!({})).await).await;
    assert_eq!((status, body["message"].as_str().unwrap()), (422, "Chat workflows feature is not enabled"));
    let (status, _) = envelope(app.get("/chat/bot/conversations/x/history").await).await;
    assert_eq!(status, 422);
    app.stop().await;
}

#[tokio::test]
async fn f148_unknown_conversation_is_404_everywhere() {
    let app = spawn_app().await;
    let (status, body) =
        envelope(app.post_json("/chat/bot/conversations/nope/message", &json!({"message": "help"})).await)
            .await;
    assert_eq!((status, body["message"].as_str().unwrap()), (404, "Conversation not found"));
    let (status, _) = confirm(&app, "nope", json!({"confirmed": true})).await;
    assert_eq!(status, 404);
    let (status, _) = confirm(&app, "nope", json!({"confirmed": false})).await;
    assert_eq!(status, 404);
    let (status, _) = envelope(app.get("/chat/bot/conversations/nope/history").await).await;
    assert_eq!(status, 404);
    // upload: 404 even without a file field
    let form = reqwest::multipart::Form::new().text("x", "y");
    let (status, _) = envelope(app.post_form("/chat/bot/conversations/nope/upload", form).await).await;
    assert_eq!(status, 404);
    app.stop().await;
}

#[tokio::test]
async fn f150_i224_a_confirm_while_another_job_runs_is_queued() {
    let app = spawn_app().await;
    slow_steps(&app, Duration::from_millis(600));
    let id = start(&app).await;
    upload(&app, &id, "people.xlsx", people_xlsx()).await;
    let mut ws = subscribe(&app, &id).await;
    let step =
        |col: &str| json!([{"operation": "excel/extract-columns-to-file", "arguments": {"columns": [col]}}]);
    let (s1, b1) = confirm(&app, &id, json!({"confirmed": true, "modified_workflow": step("Name")})).await;
    let (s2, b2) = confirm(&app, &id, json!({"confirmed": true, "modified_workflow": step("City")})).await;
    assert_eq!((s1, s2), (202, 202));
    assert_eq!(b1["data"]["position"], 0);
    assert_eq!(b2["data"]["position"], 1);
    let (j1, j2) = (b1["data"]["job_id"].clone(), b2["data"]["job_id"].clone());
    let events = collect_until(&mut ws, |e| e["type"] == "workflow_completed" && e["job_id"] == j2).await;
    let queued = events.iter().find(|e| e["type"] == "workflow_queued").expect("224: workflow_queued");
    assert_eq!((queued["job_id"].clone(), queued["position"].clone()), (j2.clone(), json!(1)));
    let idx = |t: &str, j: &Value| events.iter().position(|e| e["type"] == t && e["job_id"] == *j).unwrap();
    assert!(idx("workflow_completed", &j1) < idx("workflow_started", &j2), "{:#?}", labels(&events));
    for j in [&j1, &j2] {
        assert_eq!(wait_job(&app, &id, j.as_str().unwrap()).await["status"], "completed");
    }
    wait_state(&app, &id, "idle").await;
    app.stop().await;
}

// ------------------------------------------------------------------------------------------------------
// G (service level), I, J
// ------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn g175_j228_operations_panel_confirm_from_idle() {
    let app = spawn_app().await;
    slow_steps(&app, Duration::from_millis(600));
    let (_, body) = envelope(app.post_json("/chat/bot/conversations", &json!({})).await).await;
    let id = body["data"]["chat_id"].as_str().unwrap().to_string();
    upload(&app, &id, "people.xlsx", people_xlsx()).await;
    assert_eq!(history(&app, &id).await["current_state"], "idle");
    let mut ws = subscribe(&app, &id).await;
    let step = json!([{"operation": "excel/extract-columns-to-file",
                       "arguments": {"columns": ["Email"], "remove_duplicates": false, "output_filename": "emails.xlsx"}}]);
    let (status, body) = confirm(&app, &id, json!({"confirmed": true, "modified_workflow": step})).await;
    assert_eq!(status, 202);
    let job_id = body["data"]["job_id"].as_str().unwrap().to_string();
    let first = collect_until(&mut ws, |e| e["type"] == "workflow_started").await;
    let states: Vec<String> = labels(&first).into_iter().filter(|l| l.starts_with("bot_state")).collect();
    assert_eq!(states, ["bot_state awaiting_confirmation", "bot_state processing"]);
    let h = history(&app, &id).await;
    assert_eq!(h["current_state"], "processing", "175: while the job runs");
    assert_eq!(h["active_job"]["job_id"], job_id);
    let rest = collect_until(&mut ws, is_idle).await;
    let started = first.last().unwrap();
    assert_eq!(started["operation"], "excel/extract-columns-to-file");
    let completed = rest.iter().find(|e| e["type"] == "workflow_completed").unwrap();
    assert_eq!(completed["operation"], "excel/extract-columns-to-file");
    assert!(rest
        .iter()
        .any(|e| e["type"] == "progress" && e["operation"] == "excel/extract-columns-to-file"));
    // a history refresh lists the output with a working download URL
    let h = history(&app, &id).await;
    let out = h["output_files"][0].clone();
    assert!(out["file_path"].as_str().unwrap().ends_with("/outputs/emails.xlsx"), "{out}");
    let rows = xlsx_rows(app.download(out["download_url"].as_str().unwrap()).await);
    assert_eq!(rows, [["Email"], ["ann@example.com"], ["bob@example.com"], ["cid@example.com"]]);
    app.stop().await;
}

#[tokio::test]
async fn g170_g171_g176_suggestions_follow_the_latest_upload() {
    let app = spawn_app().await;
    let id = start(&app).await;
    upload(&app, &id, "people.xlsx", people_xlsx()).await;
    let (_, body) = say(&app, &id, "convert to csv").await;
    assert_eq!(body["status_code"], 200);
    assert_eq!(body["data"]["requires_confirmation"], false, "170: no operation converts Excel to CSV");
    assert_eq!(body["data"]["suggested_workflow"], Value::Null);
    upload(&app, &id, "sales.csv", SAMPLE_CSV.as_bytes().to_vec()).await;
    let (_, body) = say(&app, &id, "convert csv to excel").await;
    assert_eq!(body["data"]["suggested_workflow"][0]["operation"], "csv/convert-to-excel");
    let (_, body) = say(&app, &id, "search where status = active").await;
    let step = &body["data"]["suggested_workflow"][0];
    assert_eq!(step["operation"], "csv/search", "171");
    assert_eq!(
        step["arguments"]["conditions"],
        json!([{"column": "status", "operator": "equals", "value": "active"}])
    );
    // the search runs on the CSV and finds the three active rows
    let (status, body) = say(&app, &id, "yes").await;
    assert_eq!(status, 200);
    let done = wait_job(&app, &id, body["data"]["job_id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "completed", "{done}");
    let csv = String::from_utf8(
        app.download(done["result"]["output_files"][0]["download_url"].as_str().unwrap()).await,
    )
    .unwrap();
    assert_eq!(csv.lines().count(), 4, "{csv}");
    assert!(csv.lines().skip(1).all(|l| l.contains(",active,")), "{csv}");
    // 176: uploading the Excel file again makes it the latest
    wait_state(&app, &id, "idle").await;
    upload(&app, &id, "people.xlsx", people_xlsx()).await;
    let (_, body) = say(&app, &id, "search where City = Oslo").await;
    assert_eq!(body["data"]["suggested_workflow"][0]["operation"], "excel/search");
    app.stop().await;
}

#[tokio::test]
async fn g172_g173_sql_and_rename_suggestions_run() {
    let app = spawn_app().await;
    let id = start(&app).await;
    upload(&app, &id, "people.xlsx", people_xlsx()).await;
    let (_, body) = say(&app, &id, "generate SQL for table users in mysql").await;
    let args = &body["data"]["suggested_workflow"][0]["arguments"];
    assert_eq!((args["table_name"].clone(), args["database_type"].clone()), (json!("users"), json!("mysql")));
    let (_, body) = say(&app, &id, "yes").await;
    let done = wait_job(&app, &id, body["data"]["job_id"].as_str().unwrap()).await;
    let sql = String::from_utf8(
        app.download(done["result"]["output_files"][0]["download_url"].as_str().unwrap()).await,
    )
    .unwrap();
    assert!(sql.contains("INSERT INTO") && sql.contains("users") && sql.contains("ann@example.com"), "{sql}");
    wait_state(&app, &id, "idle").await;
    let (_, body) = say(&app, &id, "rename Name to full_name").await;
    let step = &body["data"]["suggested_workflow"][0];
    assert_eq!(step["operation"], "excel/map-columns");
    assert_eq!(step["arguments"]["column_mapping"], json!({"Name": "full_name"}));
    let (_, body) = say(&app, &id, "ok").await;
    let done = wait_job(&app, &id, body["data"]["job_id"].as_str().unwrap()).await;
    let rows =
        xlsx_rows(app.download(done["result"]["output_files"][0]["download_url"].as_str().unwrap()).await);
    assert_eq!(rows[0], ["full_name", "Email", "City"]);
    app.stop().await;
}

#[tokio::test]
async fn i222_b27_replies_are_published_and_listed() {
    let app = spawn_app().await;
    let id = start(&app).await;
    let mut ws = subscribe(&app, &id).await;
    say(&app, &id, "help").await;
    let events =
        collect_until(&mut ws, |e| e["type"] == "message_added" && e["message"]["message_type"] == "system")
            .await;
    assert_eq!(labels(&events), ["message_added user", "message_added system"]);
    assert_eq!(events[0]["message"]["content"], "help");
    assert_eq!(events[0]["chat_id"], id);
    // nothing else for a help message (no state change)
    assert!(recv_json_within(&mut ws, Duration::from_millis(300)).await.is_none());
    say(&app, &id, "do something random").await;
    let events =
        collect_until(&mut ws, |e| e["type"] == "message_added" && e["message"]["message_type"] == "system")
            .await;
    assert_eq!(events.len(), 2);
    // 27: the list shows the latest bot reply as bot_message
    let (_, list) = envelope(app.get("/chat/workflows").await).await;
    let item = list["data"]["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["chat_id"] == id)
        .unwrap()
        .clone();
    assert_eq!(item["bot_message"], events[1]["message"]["content"]);
    app.stop().await;
}

#[tokio::test]
async fn j234_j240_history_maps_cleanly_and_every_reply_has_bot_response() {
    let app = spawn_app().await;
    let id = start(&app).await;
    let mut replies = Vec::new();
    replies.push(say(&app, &id, "extract columns: Name").await.1);
    replies.push(say(&app, &id, "blorp").await.1); // soft failure
    replies.push(upload(&app, &id, "people.xlsx", people_xlsx()).await.1);
    replies.push(confirm(&app, &id, json!({"confirmed": false})).await.1);
    replies.push(confirm(&app, &id, json!({"confirmed": true})).await.1); // 400
    say(&app, &id, "extract columns: Email").await;
    replies.push(confirm(&app, &id, json!({"confirmed": true})).await.1); // 202
    for r in &replies {
        let text = r["data"]["bot_response"].as_str().unwrap_or_else(|| panic!("no bot_response in {r}"));
        assert!(!text.is_empty());
    }
    let job_id = replies.last().unwrap()["data"]["job_id"].as_str().unwrap().to_string();
    wait_job(&app, &id, &job_id).await;
    let h = wait_state(&app, &id, "idle").await;
    for m in h["messages"].as_array().unwrap() {
        let t = m["message_type"].as_str().unwrap();
        assert!(["user", "system", "file_upload", "error"].contains(&t), "{t}");
        let created = m["created_at"].as_str().unwrap();
        assert!(created.ends_with("+00:00") && created.len() == 32, "{created}");
        if t == "file_upload" {
            assert!(m["content"].as_str().unwrap().starts_with("File uploaded: "));
            assert!(m["metadata"]["file_path"].as_str().unwrap().contains('/'));
            assert!(m["metadata"]["download_url"].is_string());
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn f138_cancel_in_processing_without_a_job_settles_to_idle() {
    let app = spawn_app().await;
    let id = start(&app).await;
    // A context left in `processing` with no job behind it (written directly, as a crash might leave it).
    let state = app.handle.state();
    let store = state.chat.as_ref().unwrap().store.clone();
    let ctx = json!({"current_state": "processing", "pending_job_id": "gone",
                     "pending_workflow": [{"operation": "json/generate", "arguments": {}}]});
    store.save_bot_context(&id, &ctx).unwrap();
    assert_eq!(history(&app, &id).await["current_state"], "processing");
    let (_, body) = say(&app, &id, "cancel").await;
    assert!(body["data"]["bot_response"].as_str().unwrap().contains("Cancellation requested"));
    let h = wait_state(&app, &id, "idle").await;
    assert_eq!(h["pending_workflow"][0]["operation"], "json/generate", "kept for a retry");
    app.stop().await;
}
