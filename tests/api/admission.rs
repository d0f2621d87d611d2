//! Admission control (issue 13) with a tiny budget: one heavy slot, a queue of one, a small memory
//! budget. The test hold keeps an admitted task on its slot for a fixed time, so "busy" is deterministic.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::chat_support::{chat_with_csv, execute};
use crate::common::{envelope, spawn_app_with, TestApp};
use crate::fixtures::{csv_text, form, CUSTOMERS};

const HOLD: Duration = Duration::from_millis(1500);

async fn tiny_budget_app(queue_timeout_seconds: u64) -> TestApp {
    let app = spawn_app_with(|c| {
        c.limits.max_concurrent_processing = 1;
        c.limits.max_queued_processing = 1;
        c.limits.queue_timeout_seconds = queue_timeout_seconds;
        c.limits.max_processing_memory_mb = 64;
        // Every processing request is heavy, however small its file.
        c.limits.light_request_max_kb = 0;
        c.limits.retry_after_seconds = 2;
    })
    .await;
    app.state.admission.set_test_hold(HOLD);
    app
}

async fn processing(app: &TestApp) -> Value {
    let (status, body) = envelope(app.get("/health").await).await;
    assert_eq!(status, 200, "{body}");
    body["data"]["processing"].clone()
}

/// Polls the health check until `field` of `data.processing` equals `value` (at most 10 s).
async fn wait_for(app: &TestApp, field: &str, value: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let p = processing(app).await;
        if p[field] == value {
            return;
        }
        assert!(Instant::now() < deadline, "processing.{field} never reached {value}: {p}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A heavy request in the background: `csv/info` on the §13.4 table.
fn spawn_info(app: &TestApp) -> tokio::task::JoinHandle<(u16, Value)> {
    let (client, url) = (app.client.clone(), format!("{}/csv/info", app.api));
    tokio::spawn(async move {
        let res =
            client.post(url).multipart(form("customers.csv", csv_text(CUSTOMERS), &[])).send().await.unwrap();
        envelope(res).await
    })
}

async fn metrics(app: &TestApp) -> String {
    app.client.get(format!("{}/metrics", app.base)).send().await.unwrap().text().await.unwrap()
}

/// The `Retry-After` header is in `range` and is the `retry_after_seconds` of the details and message.
fn assert_retry_after(header: Option<String>, body: &Value, range: std::ops::RangeInclusive<u64>) {
    let secs: u64 = header.expect("a Retry-After header").parse().unwrap();
    assert!(range.contains(&secs), "Retry-After {secs} not in {range:?}");
    assert_eq!(body["data"]["details"]["retry_after_seconds"], secs, "{body}");
    assert!(body["message"].as_str().unwrap().contains(&format!("retry in {secs} s")), "{body}");
}

#[tokio::test]
async fn the_third_heavy_request_gets_503_at_once_and_the_queued_one_runs_when_the_slot_frees() {
    let app = tiny_budget_app(30).await;
    let running = spawn_info(&app);
    wait_for(&app, "running", 1).await;
    let queued = spawn_info(&app);
    wait_for(&app, "queued", 1).await;

    // The third: a normalization of a real file, refused before its body is stored.
    let steps = json!([{"column": "name", "type": "uppercase"}]).to_string();
    let started = Instant::now();
    let res = app
        .post_form(
            "/normalization/apply",
            form("customers.csv", csv_text(CUSTOMERS), &[("normalizations", &steps)]),
        )
        .await;
    let retry_after = res.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
    let (status, body) = envelope(res).await;
    assert!(started.elapsed() < Duration::from_secs(1), "refused at once, not after a wait");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status_code"], 503);
    assert_eq!(body["data"]["error_type"], "ServiceUnavailable");
    assert!(body["message"].as_str().unwrap().contains("busy"), "{body}");
    assert_eq!(body["data"]["details"]["reason"], "queue_full");
    // The configured 2 s, spread by up to half so that clients refused together come back apart.
    assert_retry_after(retry_after, &body, 2..=3);
    assert!(
        app.upload_files().is_empty(),
        "nothing of the refused request on disk: {:?}",
        app.upload_files()
    );
    assert!(app.output_files().is_empty());

    // The admitted one finishes, then the queued one gets the slot and finishes too.
    let (status, body) = running.await.unwrap();
    assert_eq!(status, 200, "{body}");
    let (status, body) = queued.await.unwrap();
    assert_eq!(status, 200, "queued request ran once the slot was free: {body}");
    assert_eq!(body["data"]["rows"], 5, "{body}");
    let p = processing(&app).await;
    assert_eq!((p["running"].as_u64(), p["queued"].as_u64()), (Some(0), Some(0)), "{p}");
    assert_eq!(p["rejections_total"]["queue_full"], 1, "{p}");
    assert_eq!(p["admitted_total"]["rest"], 2, "{p}");

    let text = metrics(&app).await;
    assert!(text.contains("oxcelize_processing_rejections_total{reason=\"queue_full\"} 1"), "{text}");
    assert!(text.contains("oxcelize_processing_running 0"), "{text}");
    assert!(text.contains("oxcelize_processing_queued 0"), "{text}");
    assert!(text.contains("oxcelize_processing_queue_wait_seconds_count 2"), "{text}");
    app.stop().await;
}

#[tokio::test]
async fn a_request_still_queued_after_the_queue_timeout_gets_503() {
    let app = tiny_budget_app(1).await;
    app.state.admission.set_test_hold(Duration::from_secs(3));
    let running = spawn_info(&app);
    wait_for(&app, "running", 1).await;
    let started = Instant::now();
    let res = app.post_form("/csv/info", form("customers.csv", csv_text(CUSTOMERS), &[])).await;
    assert!(res.headers().contains_key("retry-after"));
    let (status, body) = envelope(res).await;
    let waited = started.elapsed();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["data"]["error_type"], "ServiceUnavailable");
    assert_eq!(body["data"]["details"]["reason"], "queue_timeout");
    assert!(waited >= Duration::from_millis(900) && waited < Duration::from_millis(2900), "{waited:?}");
    assert!(app.upload_files().is_empty());
    assert_eq!(running.await.unwrap().0, 200);
    let text = metrics(&app).await;
    assert!(text.contains("oxcelize_processing_rejections_total{reason=\"queue_timeout\"} 1"), "{text}");
    app.stop().await;
}

#[tokio::test]
async fn a_request_that_cannot_get_a_slot_before_its_timeout_is_refused_at_once() {
    let app = spawn_app_with(|c| {
        c.limits.max_concurrent_processing = 1;
        c.limits.max_queued_processing = 4;
        c.limits.queue_timeout_seconds = 4;
        c.limits.max_processing_memory_mb = 64;
        c.limits.light_request_max_kb = 0;
        c.limits.retry_after_seconds = 2;
    })
    .await;
    app.state.admission.set_test_hold(HOLD);
    // One request teaches the controller how long this operation takes (the 1.5 s hold).
    assert_eq!(spawn_info(&app).await.unwrap().0, 200);
    let running = spawn_info(&app);
    wait_for(&app, "running", 1).await;
    // Starts after the running one (~1.5 s, within half the 4 s timeout): it waits.
    let queued = spawn_info(&app);
    wait_for(&app, "queued", 1).await;

    // The next one would start after both (~3 s): within the timeout, but past the half of it that a
    // newcomer may be predicted to wait (the prediction's margin), so it hears so now, with room left in
    // the queue, instead of perhaps after a long wait.
    let started = Instant::now();
    let res = app.post_form("/csv/info", form("customers.csv", csv_text(CUSTOMERS), &[])).await;
    let retry_after = res.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
    let (status, body) = envelope(res).await;
    assert!(started.elapsed() < Duration::from_secs(1), "refused at once: {:?}", started.elapsed());
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status_code"], 503);
    assert_eq!(body["data"]["error_type"], "ServiceUnavailable");
    assert!(body["message"].as_str().unwrap().contains("busy"), "{body}");
    let details = &body["data"]["details"];
    assert_eq!(details["reason"], "predicted_timeout", "{body}");
    let predicted = details["predicted_wait_seconds"].as_u64().unwrap();
    assert!((2..=4).contains(&predicted), "{body}");
    // It could be let in after its predicted wait minus the 2 s a newcomer may wait (at least the 2 s
    // configured), spread by up to half.
    let least = predicted.saturating_sub(2).max(2);
    assert_retry_after(retry_after, &body, least..=least * 3 / 2 + 1);
    assert!(app.upload_files().is_empty(), "nothing of it on disk: {:?}", app.upload_files());

    assert_eq!(running.await.unwrap().0, 200);
    let (status, body) = queued.await.unwrap();
    assert_eq!(status, 200, "the queued one was not refused: {body}");
    let p = processing(&app).await;
    let rejections = &p["rejections_total"];
    assert_eq!(
        (rejections["predicted_timeout"].as_u64(), rejections["queue_timeout"].as_u64()),
        (Some(1), Some(0))
    );
    let text = metrics(&app).await;
    assert!(text.contains("oxcelize_processing_rejections_total{reason=\"predicted_timeout\"} 1"), "{text}");
    app.stop().await;
}

#[tokio::test]
async fn light_requests_complete_while_the_heavy_slot_and_queue_are_busy() {
    let app = tiny_budget_app(30).await;
    app.state.admission.set_test_hold(Duration::from_secs(3));
    let running = spawn_info(&app);
    wait_for(&app, "running", 1).await;
    let queued = spawn_info(&app);
    wait_for(&app, "queued", 1).await;
    for path in ["/health", "/normalization/types", "/chat/workflows", "/sql/databases"] {
        let started = Instant::now();
        let (status, body) = envelope(app.get(path).await).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert!(started.elapsed() < Duration::from_millis(500), "{path} waited behind heavy work");
    }
    // Still busy: the light requests did not wait for the slot.
    assert_eq!(processing(&app).await["running"], 1);
    assert_eq!(running.await.unwrap().0, 200);
    assert_eq!(queued.await.unwrap().0, 200);
    app.stop().await;
}

#[tokio::test]
async fn a_request_whose_estimate_exceeds_the_memory_budget_gets_413_naming_the_limit() {
    let app = tiny_budget_app(30).await;
    // A 16 MiB workbook upload for a JSON extraction, whose answer holds the data itself (4 bytes of
    // memory per byte of input, measured): 68 MiB, above the 64 MB budget. Refused from the request
    // head, so the body's content never matters.
    let mut body = String::from("name,amount\n");
    while body.len() < 16 * 1024 * 1024 {
        body.push_str("somebody with a long name,12345.67\n");
    }
    let columns = json!(["name"]).to_string();
    let started = Instant::now();
    let res = app
        .post_form("/excel/extract-columns", form("big.xlsx", body.into_bytes(), &[("columns", &columns)]))
        .await;
    let (status, body) = envelope(res).await;
    assert!(started.elapsed() < HOLD, "refused without taking the slot");
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["data"]["error_type"], "PayloadTooLarge");
    assert!(body["message"].as_str().unwrap().contains("limits.max_processing_memory_mb"), "{body}");
    assert_eq!(body["data"]["details"]["max_processing_memory_mb"], 64);
    assert!(body["data"]["details"]["estimated_memory_mb"].as_u64().unwrap() > 64);
    assert!(app.upload_files().is_empty());
    assert!(app.output_files().is_empty());
    let p = processing(&app).await;
    assert_eq!((p["rejections_total"]["over_budget"].as_u64(), p["running"].as_u64()), (Some(1), Some(0)));
    let text = metrics(&app).await;
    assert!(text.contains("oxcelize_processing_rejections_total{reason=\"over_budget\"} 1"), "{text}");
    app.stop().await;
}

#[tokio::test]
async fn a_chat_job_waits_for_the_slot_instead_of_failing() {
    let app = tiny_budget_app(30).await;
    let chat = chat_with_csv(&app).await;
    let running = spawn_info(&app);
    wait_for(&app, "running", 1).await;

    let (app_api, client) = (app.api.clone(), app.client.clone());
    let job = tokio::spawn(async move {
        let body = json!({"steps": [{"operation": "csv/convert-to-excel", "arguments": {}}]});
        let res = client.post(format!("{app_api}/chat/workflows/{chat}/execute")).json(&body).send().await;
        envelope(res.unwrap()).await
    });
    // The step is queued behind the request, in the same queue.
    wait_for(&app, "queued_chat", 1).await;
    assert_eq!(processing(&app).await["running"], 1);
    assert_eq!(running.await.unwrap().0, 200);
    let (status, body) = job.await.unwrap();
    assert_eq!(status, 200, "the job ran once the slot was free: {body}");
    assert_eq!(body["data"]["results"][0]["status"], "completed", "{body}");
    let p = processing(&app).await;
    assert_eq!((p["admitted_total"]["chat"].as_u64(), p["queued"].as_u64()), (Some(1), Some(0)), "{p}");
    app.stop().await;
}

#[tokio::test]
async fn a_chat_job_with_too_large_an_input_fails_its_step_naming_the_limit() {
    let app = spawn_app_with(|c| c.limits.max_processing_memory_mb = 1).await;
    let chat = chat_with_csv(&app).await;
    let step = json!({"operation": "normalization/apply",
        "arguments": {"normalizations": [{"column": "status", "type": "uppercase"}]}});
    let (status, body) = execute(&app, &chat, &json!({"steps": [step]})).await;
    assert_eq!(status, 422, "{body}");
    let details = &body["data"]["details"];
    assert_eq!(
        (details["failed_step"].as_u64(), details["operation"].as_str()),
        (Some(1), Some("normalization/apply"))
    );
    assert!(details["error"].as_str().unwrap().contains("limits.max_processing_memory_mb (1 MB)"), "{body}");
    assert_eq!(processing(&app).await["rejections_total"]["over_budget"], 1);
    app.stop().await;
}
