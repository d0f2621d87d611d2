//! The step engine over real HTTP and WebSocket on generated files: intermediate row progress inside a
//! step, cancel and timeout that stop the running step between two batches of rows, and a workflow that
//! always reads the files its own steps wrote (chat-workflows.md §8.12, §9.5; websocket.md C.4).

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::chat_support::*;
use crate::common::{envelope, spawn_app_with, TestApp};

const LONG: Duration = Duration::from_secs(240);
/// Large enough that every step of a debug build runs for a good fraction of a second or more.
const ROWS: usize = 120_000;

/// Rows of the four-step run (every step still spans several progress intervals).
const FAMILY_ROWS: usize = 30_000;

/// `ROWS` rows × 10 columns; `amount` = i % 1000, so `amount > 9` keeps 99 % of the rows.
fn big_csv(rows: usize) -> Vec<u8> {
    let mut out = String::with_capacity(rows * 80);
    out.push_str("id,name,city,amount,status,email,phone,date,score,note\n");
    for i in 0..rows {
        out.push_str(&format!(
            "ID{i:07},Name {i},City {},{},{},user{i}@example.com,555-{:04},2026-01-{:02},{}.5,note {}\n",
            i % 97,
            i % 1000,
            if i % 3 == 0 { "inactive" } else { "active" },
            i % 10_000,
            i % 28 + 1,
            i % 100,
            i % 13
        ));
    }
    out.into_bytes()
}

/// Rows of `big_csv(rows)` with `amount > 9`.
fn kept_by_amount_filter(rows: usize) -> u64 {
    (0..rows).filter(|i| i % 1000 > 9).count() as u64
}

async fn engine_app(tweak: impl FnOnce(&mut oxcelize::config::Config)) -> TestApp {
    spawn_app_with(|c| {
        c.chat_workflows.execution.progress_interval_ms = 50;
        tweak(c);
    })
    .await
}

async fn chat_with_big_csv(app: &TestApp, rows: usize) -> String {
    let chat = create_chat(app).await;
    let (status, body) = upload(app, &chat, "big.csv", big_csv(rows)).await;
    assert_eq!(status, 200, "{body}");
    chat
}

fn progress_of(events: &[Value], step_index: u64) -> Vec<Value> {
    events.iter().filter(|e| e["type"] == "progress" && e["step_index"] == step_index).cloned().collect()
}

fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Checks one intermediate event's fields against each other and against the step's input size.
fn check_intermediate(e: &Value, input_rows: u64) {
    assert_eq!(e["status"], "running", "{e}");
    let progress = e["progress"].as_u64().unwrap();
    assert!((1..=99).contains(&progress), "{e}");
    let phase = e["phase"].as_str().unwrap();
    assert!(["reading", "processing", "writing"].contains(&phase), "{e}");
    let done = e["rows_processed"].as_u64().expect("rows_processed");
    let total = e["rows_total"].as_u64();
    assert!(e["rows_total"].is_null() || total.is_some(), "{e}");
    assert!(e["eta_seconds"].is_null() || e["eta_seconds"].as_f64().unwrap() >= 0.0, "{e}");
    let message = e["message"].as_str().unwrap();
    match total {
        Some(total) => {
            // Every phase of these operations goes through the step's input rows.
            assert_eq!(total, input_rows, "{e}");
            assert!(done <= total, "{e}");
            assert!(message.ends_with(&format!(" row {} of {}", grouped(done), grouped(total))), "{e}");
        }
        None => assert!(message.ends_with(&format!(" row {}", grouped(done))), "{e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_report_row_progress_while_they_run_and_end_at_every_input_row() {
    let app = engine_app(|_| {}).await;
    let chat = chat_with_big_csv(&app, FAMILY_ROWS).await;
    let mut ws = subscriber(&app, &chat).await;
    let body = json!({"async": true, "steps": [
        {"operation": "csv/convert-to-excel", "arguments": {}},
        {"operation": "excel/search", "arguments": {"conditions": [
            {"column": "amount", "operator": "greater_than", "value": 9}], "output_format": "xlsx"}},
        {"operation": "normalization/apply", "arguments": {"normalizations": [
            {"column": "name", "type": "lowercase"}, {"column": "city", "type": "uppercase"}]}},
        {"operation": "json/generate", "arguments": {}}
    ]});
    // Async, so the socket is read while the run goes on.
    let (status, res) = execute(&app, &chat, &body).await;
    assert_eq!(status, 202, "{res}");
    let job = res["data"]["job_id"].as_str().unwrap().to_string();
    let events = events_until(&mut ws, &["workflow_completed", "workflow_failed"], LONG).await;
    assert_eq!(events.last().unwrap()["type"], "workflow_completed");
    let (_, j) = envelope(app.get(&format!("/chat/workflows/{chat}/jobs/{job}")).await).await;
    let kept = kept_by_amount_filter(FAMILY_ROWS);
    assert_eq!(j["data"]["result"]["results"][1]["statistics"]["filtered_rows"], kept, "{j}");
    let inputs = [FAMILY_ROWS as u64, FAMILY_ROWS as u64, kept, kept];
    let mut overall = 0;
    for e in events.iter().filter(|e| e["type"] == "progress") {
        let o = e["overall_progress"].as_u64().unwrap();
        assert!(o >= overall, "overall_progress never goes down: {e}");
        overall = o;
    }
    for (i, input_rows) in inputs.into_iter().enumerate() {
        let step = progress_of(&events, i as u64 + 1);
        assert_eq!(step[0]["progress"], 0, "{:?}", step[0]);
        let last = step.last().unwrap();
        assert_eq!(
            (last["progress"].as_u64(), last["status"].as_str(), last["message"].as_str()),
            (Some(100), Some("completed"), Some("Step completed successfully"))
        );
        assert_eq!(
            (last["rows_processed"].as_u64(), last["rows_total"].as_u64()),
            (Some(input_rows), Some(input_rows)),
            "step {}: the last event covers every input row: {last}",
            i + 1
        );
        let middle = &step[1..step.len() - 1];
        assert!(!middle.is_empty(), "step {} reported no intermediate progress", i + 1);
        let mut previous = 0;
        for e in middle {
            check_intermediate(e, input_rows);
            let p = e["progress"].as_u64().unwrap();
            assert!(p >= previous, "step {} percentages never go down: {middle:?}", i + 1);
            previous = p;
        }
    }
    // Each family names its work: converting, searching, normalizing, writing.
    let messages: Vec<&str> = events.iter().filter_map(|e| e["message"].as_str()).collect();
    for verb in ["Converting row ", "Reading row "] {
        assert!(messages.iter().any(|m| m.starts_with(verb)), "{verb}: {messages:?}");
    }
    // The intermediate events are persisted like the others (replay keeps them).
    let first = events[0]["seq"].as_u64().unwrap();
    let (_, replay) =
        envelope(app.get(&format!("/chat/workflows/{chat}/events?after_seq={}&limit=1000", first - 1)).await)
            .await;
    assert_eq!(&replay["data"]["events"].as_array().unwrap()[..], &events[..]);
}

/// Files of the conversation's `intermediate/` and `outputs/` folders (partial files included).
fn produced_files(app: &TestApp) -> Vec<String> {
    tree(&app.config.chat_workflows.storage.workflows_path)
        .into_iter()
        .filter(|p| p.contains("/intermediate/") || p.contains("/outputs/"))
        .collect()
}

async fn cancel(app: &TestApp, chat: &str, job: &str) -> (u16, Value) {
    let res =
        app.client.post(format!("{}/chat/workflows/{chat}/jobs/{job}/cancel", app.api)).send().await.unwrap();
    envelope(res).await
}

/// Waits for an intermediate event of `step_index`: the step is then surely mid-way.
async fn wait_mid_step(ws: &mut crate::common::Ws, step_index: u64) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let mut batch = events_until(ws, &["progress", "workflow_failed", "workflow_completed"], LONG).await;
        let last = batch.last().cloned().unwrap();
        seen.append(&mut batch);
        assert_eq!(last["type"], "progress", "the run ended before the step was mid-way: {seen:?}");
        if last["step_index"] == step_index
            && last["status"] == "running"
            && last["progress"].as_u64() > Some(0)
        {
            return seen;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_the_running_step_and_the_next_run_starts_at_once() {
    let app = engine_app(|c| c.chat_workflows.execution.max_concurrent_jobs = 1).await;
    let chat = chat_with_big_csv(&app, ROWS).await;
    let mut ws = subscriber(&app, &chat).await;
    let body = json!({"async": true, "steps": [
        {"operation": "normalization/apply", "arguments": {"normalizations": [
            {"column": "name", "type": "lowercase"}, {"column": "email", "type": "uppercase"}]}},
        {"operation": "json/generate", "arguments": {}}
    ]});
    let (status, res) = execute(&app, &chat, &body).await;
    assert_eq!(status, 202, "{res}");
    let job = res["data"]["job_id"].as_str().unwrap().to_string();
    wait_mid_step(&mut ws, 1).await;
    let asked = Instant::now();
    let (status, body) = cancel(&app, &chat, &job).await;
    assert_eq!(status, 200, "{body}");
    let events = events_until(&mut ws, &["workflow_failed"], LONG).await;
    let stopped_after = asked.elapsed();
    let failed = events.last().unwrap();
    assert_eq!(
        (failed["cancelled"].as_bool(), failed["error"].as_str(), failed["failed_step"].as_u64()),
        (Some(true), Some("Workflow cancelled by user"), Some(1)),
        "{failed}"
    );
    assert_eq!(failed["skipped_steps"], 1);
    assert!(
        !events.iter().any(|e| e["type"] == "step_result" || e["progress"] == 100),
        "the step was stopped, not finished: {events:?}"
    );
    assert!(!events.iter().any(|e| e["type"] == "error"), "a cancel is no step failure");
    let stopped = events.iter().find(|e| e["type"] == "progress" && e["status"] == "failed").unwrap();
    assert!(stopped["progress"].as_u64().unwrap() > 0, "the failed event keeps the step's last percentage");
    assert!(stopped_after < Duration::from_secs(10), "stopped within a batch of rows: {stopped_after:?}");

    let (_, j) = envelope(app.get(&format!("/chat/workflows/{chat}/jobs/{job}")).await).await;
    assert_eq!(j["data"]["status"], "cancelled");
    let steps = j["data"]["steps"].as_array().unwrap();
    let statuses: Vec<&str> = steps.iter().map(|s| s["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["failed", "skipped"]);
    assert_eq!(steps[0]["error_message"], "Workflow cancelled by user");
    assert_eq!(get_chat(&app, &chat).await["status"], "failed");
    assert_eq!(produced_files(&app), Vec::<String>::new(), "the partial output is removed");
    assert_eq!(get_chat(&app, &chat).await["output_files"], json!([]));

    // The only worker is free: a new run of the chat starts at once and completes.
    let quick = json!({"async": true, "steps": [{"operation": "csv/search", "arguments": {"conditions": [
        {"column": "id", "operator": "equals", "value": "ID0000007"}]}}]});
    let (status, res) = execute(&app, &chat, &quick).await;
    assert_eq!((status, res["data"]["position"].as_u64()), (202, Some(0)), "{res}");
    let events = events_until(&mut ws, &["workflow_completed", "workflow_failed"], LONG).await;
    assert_eq!(types(&events)[0], "workflow_started");
    assert_eq!(events.last().unwrap()["type"], "workflow_completed", "{events:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_past_its_timeout_is_stopped_mid_way_and_leaves_nothing() {
    let app = engine_app(|c| c.chat_workflows.execution.step_timeout_seconds = 1).await;
    let chat = chat_with_big_csv(&app, ROWS * 2).await;
    let mut ws = subscriber(&app, &chat).await;
    let body = json!({"steps": [
        {"operation": "normalization/apply", "arguments": {"normalizations": [
            {"column": "name", "type": "lowercase"}, {"column": "email", "type": "uppercase"}]}}
    ]});
    let asked = Instant::now();
    let (status, res) = execute(&app, &chat, &body).await;
    let answered = asked.elapsed();
    assert_eq!(status, 422, "{res}");
    assert_eq!(
        res["message"],
        "Workflow execution failed: Workflow failed at step 1/1: Step timed out after 1s"
    );
    assert!(answered < Duration::from_secs(8), "the step stopped soon after its timeout: {answered:?}");
    let events = events_until(&mut ws, &["workflow_failed"], LONG).await;
    let running: Vec<&Value> =
        events.iter().filter(|e| e["type"] == "progress" && e["status"] == "running").collect();
    assert!(running.len() >= 2, "intermediate progress before the timeout: {events:?}");
    let failed = events.iter().find(|e| e["type"] == "progress" && e["status"] == "failed").unwrap();
    assert!(failed["progress"].as_u64().unwrap() > 0, "{failed}");
    assert_eq!(produced_files(&app), Vec::<String>::new());
    // Nothing of the stopped step shows up later either.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(produced_files(&app), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_reads_the_workbook_the_previous_step_wrote_whatever_its_size() {
    // The zip-bomb guard at 1 MB: the 30,000-row workbook step 1 writes decompresses to far more.
    let app = spawn_app_with(|c| c.file.max_uncompressed_mb = 1).await;
    let chat = chat_with_big_csv(&app, 30_000).await;
    let body = json!({"steps": [
        {"operation": "csv/convert-to-excel", "arguments": {}},
        {"operation": "excel/search", "arguments": {"conditions": [
            {"column": "amount", "operator": "greater_than", "value": 9}], "output_format": "csv"}}
    ]});
    let (status, res) = execute(&app, &chat, &body).await;
    assert_eq!(status, 200, "{res}");
    assert_eq!(res["data"]["results"][1]["statistics"]["filtered_rows"], kept_by_amount_filter(30_000));

    // A client's workbook of the same size is still refused by the guard.
    let xlsx_url = res["data"]["results"][0]["download_url"].as_str().unwrap().to_string();
    let workbook = app.download(&xlsx_url).await;
    let other = create_chat(&app).await;
    assert_eq!(upload(&app, &other, "client.xlsx", workbook).await.0, 200);
    let (status, res) = execute(&app, &other, &json!({"steps": [body["steps"][1].clone()]})).await;
    assert_eq!(status, 422, "{res}");
    let message = res["message"].as_str().unwrap();
    assert!(message.contains("File too large"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_the_running_step_and_leaves_no_output_behind() {
    let app = engine_app(|c| {
        c.chat_workflows.execution.shutdown_grace_seconds = 0;
        c.chat_workflows.websocket.shutdown_grace_seconds = 0;
    })
    .await;
    let chat = chat_with_big_csv(&app, ROWS).await;
    let mut ws = subscriber(&app, &chat).await;
    let body = json!({"async": true, "steps": [
        {"operation": "normalization/apply", "arguments": {"normalizations": [
            {"column": "name", "type": "lowercase"}]}}
    ]});
    let (status, res) = execute(&app, &chat, &body).await;
    assert_eq!(status, 202, "{res}");
    let job = res["data"]["job_id"].as_str().unwrap().to_string();
    wait_mid_step(&mut ws, 1).await;
    let asked = Instant::now();
    app.stop().await;
    assert!(asked.elapsed() < Duration::from_secs(10), "{:?}", asked.elapsed());
    // A step left running would finish its output now; a stopped one has removed its partial file.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(produced_files(&app), Vec::<String>::new());

    let crate::common::TestApp { dir, config, .. } = app;
    let app = crate::common::spawn_app_in(dir, config).await;
    let (_, j) = envelope(app.get(&format!("/chat/workflows/{chat}/jobs/{job}")).await).await;
    assert_eq!(
        (j["data"]["status"].as_str(), j["data"]["error"].as_str()),
        (Some("failed"), Some("Interrupted by server shutdown"))
    );
    assert_eq!(j["data"]["steps"][0]["status"], "failed");
    assert_eq!(produced_files(&app), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapping_whole_column_normalization_and_extraction_report_row_progress() {
    const RUN_ROWS: usize = 60_000;
    let app = engine_app(|_| {}).await;
    let chat = chat_with_big_csv(&app, RUN_ROWS).await;
    let mut ws = subscriber(&app, &chat).await;
    let body = json!({"async": true, "steps": [
        {"operation": "csv/convert-to-excel", "arguments": {}},
        {"operation": "excel/map-columns", "arguments": {"mapping": {
            "Name": "name", "Amount": "amount", "Score": {"source": "score", "default": 0}}}},
        {"operation": "normalization/apply", "arguments": {"normalizations": [
            {"column": "Amount", "type": "z_score"},
            {"column": "Score", "type": "fill_null_values", "parameters": {"method": "median"}},
            {"column": "Name", "type": "lowercase"}]}},
        {"operation": "excel/extract-columns", "arguments": {"columns": ["Name", "Amount"]}}
    ]});
    let (status, res) = execute(&app, &chat, &body).await;
    assert_eq!(status, 202, "{res}");
    let job = res["data"]["job_id"].as_str().unwrap().to_string();
    let events = events_until(&mut ws, &["workflow_completed", "workflow_failed"], LONG).await;
    assert_eq!(events.last().unwrap()["type"], "workflow_completed", "{:?}", events.last());
    let rows = RUN_ROWS as u64;
    for step_index in 1..=4u64 {
        let step = progress_of(&events, step_index);
        assert_eq!(step[0]["progress"], 0, "{:?}", step[0]);
        let last = step.last().unwrap();
        assert_eq!((last["progress"].as_u64(), last["status"].as_str()), (Some(100), Some("completed")));
        assert_eq!(
            (last["rows_processed"].as_u64(), last["rows_total"].as_u64()),
            (Some(rows), Some(rows)),
            "step {step_index}: the last event covers every input row: {last}"
        );
        let middle = &step[1..step.len() - 1];
        assert!(!middle.is_empty(), "step {step_index} reported no intermediate progress");
        let mut previous = 0;
        for e in middle {
            check_intermediate(e, rows);
            let p = e["progress"].as_u64().unwrap();
            assert!(p >= previous, "step {step_index} percentages never go down: {middle:?}");
            previous = p;
        }
    }
    let (_, j) = envelope(app.get(&format!("/chat/workflows/{chat}/jobs/{job}")).await).await;
    let extraction = &j["data"]["result"]["results"][3]["data"];
    assert_eq!(extraction["total_rows"], rows, "{extraction}");
    let name = &extraction["columns"]["Name"];
    assert_eq!((name["value_count"].as_u64(), name["values"][7].as_str()), (Some(rows), Some("name 7")));
    // z_score made every amount a number around 0 (amount = i % 1000, so the mean is 499.5).
    let amount = &extraction["columns"]["Amount"];
    let first = amount["values"][0].as_str().unwrap().parse::<f64>().unwrap();
    assert!((first + 1.73).abs() < 0.01, "{first}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_a_whole_column_normalization_while_it_writes() {
    let app = engine_app(|c| c.chat_workflows.execution.max_concurrent_jobs = 1).await;
    let chat = chat_with_big_csv(&app, ROWS).await;
    let mut ws = subscriber(&app, &chat).await;
    let body = json!({"async": true, "steps": [
        {"operation": "normalization/apply", "arguments": {"normalizations": [
            {"column": "amount", "type": "min_max_scale"}, {"column": "name", "type": "lowercase"}]}},
        {"operation": "json/generate", "arguments": {}}
    ]});
    let (status, res) = execute(&app, &chat, &body).await;
    assert_eq!(status, 202, "{res}");
    let job = res["data"]["job_id"].as_str().unwrap().to_string();
    loop {
        let last = wait_mid_step(&mut ws, 1).await.pop().unwrap();
        if last["phase"] == "writing" {
            break;
        }
    }
    let (status, body) = cancel(&app, &chat, &job).await;
    assert_eq!(status, 200, "{body}");
    let events = events_until(&mut ws, &["workflow_failed"], LONG).await;
    let failed = events.last().unwrap();
    assert_eq!((failed["cancelled"].as_bool(), failed["failed_step"].as_u64()), (Some(true), Some(1)));
    assert!(!events.iter().any(|e| e["progress"] == 100), "the step was stopped, not finished: {events:?}");
    let (_, j) = envelope(app.get(&format!("/chat/workflows/{chat}/jobs/{job}")).await).await;
    assert_eq!(j["data"]["status"], "cancelled");
    assert_eq!(produced_files(&app), Vec::<String>::new(), "the partial output is removed");
}
