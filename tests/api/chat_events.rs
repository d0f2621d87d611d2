//! Run events over real WebSockets: fan-out, ordering, resume, slow consumers, snapshots, restart and
//! shutdown, serialisation, cancel and timeouts (acceptance-chat.md D.79–D.84, H, I).

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::chat_support::*;
use crate::common::{
    envelope, recv_close_code, recv_json, recv_json_within, send_text, spawn_app, spawn_app_in,
    spawn_app_with,
};

const LONG: Duration = Duration::from_secs(60);

fn assert_consecutive(events: &[Value]) {
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    for w in seqs.windows(2) {
        assert_eq!(w[1], w[0] + 1, "seq must grow by exactly 1: {seqs:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h184_h186_i195_i221_i223_three_clients_see_the_identical_sequence() {
    let app = spawn_app().await;
    let chat = chat_with_csv(&app).await;
    let mut clients =
        [subscriber(&app, &chat).await, subscriber(&app, &chat).await, subscriber(&app, &chat).await];
    let mut other = subscriber(&app, &create_chat(&app).await).await;
    let (status, res) = execute(&app, &chat, &three_steps()).await;
    assert_eq!(status, 200, "{res}");
    let mut seen = Vec::new();
    for ws in clients.iter_mut() {
        seen.push(events_until(ws, &["workflow_completed"], LONG).await);
    }
    assert_eq!(seen[0], seen[1], "h186");
    assert_eq!(seen[0], seen[2]);
    let events = &seen[0];
    assert_consecutive(events);
    assert_eq!(types(events), THREE_STEP_EVENTS);
    let started = &events[0];
    assert_eq!(started["total_steps"], 3);
    assert_eq!(started["message"], "Workflow execution started");
    assert_eq!(started["operation"], "csv/convert-to-excel", "i223");
    assert_eq!(started["kind"], "execute");
    assert_eq!(started["steps"].as_array().unwrap().len(), 3);
    let p0 = &events[1];
    assert_eq!(
        (p0["progress"].as_u64(), p0["status"].as_str(), p0["message"].as_str()),
        (Some(0), Some("running"), Some("Starting step execution"))
    );
    assert_eq!(
        (p0["step_index"].as_u64(), p0["total_steps"].as_u64(), p0["overall_progress"].as_u64()),
        (Some(1), Some(3), Some(0))
    );
    let p1 = &events[2];
    assert_eq!(
        (p1["progress"].as_u64(), p1["status"].as_str(), p1["message"].as_str()),
        (Some(100), Some("completed"), Some("Step completed successfully"))
    );
    assert_eq!(p1["overall_progress"], 33);
    let sr = &events[3];
    assert!(
        sr["result"]["output_file_path"].is_string() && sr["result"]["download_url"].is_string(),
        "i221 {sr}"
    );
    let done = events.last().unwrap();
    assert_eq!(done["operation"], "normalization/apply", "i223");
    assert_eq!(done["output_files_count"], 3, "h191");
    assert_eq!(done["message"], "Workflow execution completed successfully");
    for e in events {
        assert_eq!(e["chat_id"], chat.as_str());
        assert!(e["timestamp"].as_str().unwrap().ends_with("+00:00"));
        assert_eq!(e["job_id"], started["job_id"]);
    }
    // h187: the other chat saw nothing.
    assert!(recv_json_within(&mut other, Duration::from_millis(300)).await.is_none());
    // i201: the REST replay returns the same events.
    let (_, body) = envelope(
        app.get(&format!(
            "/chat/workflows/{chat}/events?after_seq={}",
            events[0]["seq"].as_u64().unwrap() - 1
        ))
        .await,
    )
    .await;
    assert_eq!(&body["data"]["events"].as_array().unwrap()[..], &events[..]);
    assert_eq!(body["data"]["last_seq"], done["seq"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h185_i221_failing_step_events() {
    let app = spawn_app().await;
    let chat = chat_with_csv(&app).await;
    let mut ws = subscriber(&app, &chat).await;
    let body = json!({"steps": [{"operation": "excel/extract-columns-to-file", "arguments": {"columns": ["nope"]}}]});
    assert_eq!(execute(&app, &chat, &body).await.0, 422);
    let events = events_until(&mut ws, &["workflow_failed"], LONG).await;
    assert_eq!(types(&events), ["workflow_started", "progress", "progress", "error", "workflow_failed"]);
    assert_eq!(events[2]["status"], "failed");
    assert!(events[2]["message"].as_str().unwrap().starts_with("Step failed: "));
    assert_eq!(events[3]["code"], "step_failed");
    let failed = &events[4];
    assert!(failed["error"].as_str().unwrap().starts_with("Workflow failed at step 1/1: "));
    assert_eq!((failed["failed_step"].as_u64(), failed["cancelled"].as_bool()), (Some(1), Some(false)));
    assert_eq!(failed["operation"], "excel/extract-columns-to-file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i197_i198_resume_after_disconnect_gets_exactly_the_missed_events() {
    let app = spawn_app().await;
    let chat = chat_with_csv(&app).await;
    chat_of(&app).runner.set_test_step_delay(Duration::from_millis(300));
    let mut ws = subscriber(&app, &chat).await;
    let mut live = subscriber(&app, &chat).await;
    let mut body = three_steps();
    body["async"] = json!(true);
    assert_eq!(execute(&app, &chat, &body).await.0, 202);
    let first = events_until(&mut ws, &["workflow_started"], LONG).await;
    let last_seq = first.last().unwrap()["seq"].as_u64().unwrap();
    drop(ws);
    let all = events_until(&mut live, &["workflow_completed"], LONG).await;
    let missed: Vec<Value> = all.iter().filter(|e| e["seq"].as_u64().unwrap() > last_seq).cloned().collect();
    assert!(missed.len() >= 10);

    // Query form.
    let mut ws = app.ws_connect(&format!("/chat/{chat}?last_seq={last_seq}")).await;
    assert_eq!(recv_json(&mut ws).await["type"], "connected");
    let mut replayed = Vec::new();
    for _ in 0..missed.len() {
        let mut e = recv_json(&mut ws).await;
        assert_eq!(e["replayed"], true);
        e.as_object_mut().unwrap().remove("replayed");
        replayed.push(e);
    }
    assert_eq!(replayed, missed);
    let done = recv_json(&mut ws).await;
    assert_eq!(done["type"], "replay_complete");
    assert_eq!(done["from_seq"], last_seq + 1);
    assert_eq!(done["to_seq"], missed.last().unwrap()["seq"]);
    assert_eq!(done["count"], missed.len());

    // Message form (and the alias).
    for kind in ["resume", "session_restore"] {
        let mut ws = app.ws_connect("/").await;
        recv_json(&mut ws).await;
        send_text(&mut ws, &json!({"type": kind, "chat_id": chat, "last_seq": last_seq}).to_string()).await;
        let mut n = 0;
        loop {
            let e = recv_json(&mut ws).await;
            if e["type"] == "replay_complete" {
                assert_eq!(e["count"], missed.len());
                break;
            }
            assert_eq!(e["replayed"], true);
            n += 1;
        }
        assert_eq!(n, missed.len(), "{kind}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i199_resync_reasons() {
    let app = spawn_app_with(|c| c.chat_workflows.websocket.replay.max_events_per_chat = 5).await;
    let chat = chat_with_csv(&app).await;
    assert_eq!(execute(&app, &chat, &three_steps()).await.0, 200);
    let (_, body) = envelope(app.get(&format!("/chat/workflows/{chat}/events")).await).await;
    let current = body["data"]["last_seq"].as_u64().unwrap();
    let oldest = body["data"]["oldest_seq"].as_u64().unwrap();
    assert_eq!(current - oldest + 1, 5, "retention keeps the newest 5");
    let epoch = body["data"]["epoch"].as_str().unwrap().to_string();

    let mut ws = app.ws_connect(&format!("/chat/{chat}?last_seq={}", current + 5)).await;
    recv_json(&mut ws).await;
    let r = recv_json(&mut ws).await;
    assert_eq!((r["type"].as_str(), r["reason"].as_str()), (Some("resync_required"), Some("ahead")));
    let mut ws = app.ws_connect(&format!("/chat/{chat}?last_seq=1&epoch=other{epoch}")).await;
    recv_json(&mut ws).await;
    let r = recv_json(&mut ws).await;
    assert_eq!(r["reason"], "epoch_mismatch");
    let mut ws = app.ws_connect(&format!("/chat/{chat}?last_seq=1&epoch={epoch}")).await;
    recv_json(&mut ws).await;
    let r = recv_json(&mut ws).await;
    assert_eq!(r["reason"], "expired");
    assert_eq!(r["oldest_seq"], oldest);
    let first = recv_json(&mut ws).await;
    assert_eq!((first["seq"].as_u64(), first["replayed"].as_bool()), (Some(oldest), Some(true)));
}

/// A chat with an uploaded CSV and 40 steps whose `step_result` events are large (~55 KiB each), so they
/// fill the socket buffers of a client that does not read.
async fn chat_with_large_step_results(app: &crate::common::TestApp) -> (String, Vec<Value>) {
    let chat = create_chat(app).await;
    let mut csv = String::from("v\n");
    for i in 0..2800 {
        csv.push_str(&format!("value-{i:010}\n"));
    }
    upload(app, &chat, "big.csv", csv.into_bytes()).await;
    let steps = (0..40)
        .map(|_| json!({"operation": "excel/extract-columns", "arguments": {"columns": ["v"]}}))
        .collect();
    (chat, steps)
}

/// A client that stops reading while the queue still has room is closed by the write timeout instead
/// (the server's writes made no progress for `write_timeout_seconds`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i215_a_client_that_takes_nothing_for_the_write_timeout_is_closed_with_4008() {
    let app = spawn_app_with(|c| {
        let q = &mut c.chat_workflows.websocket.send_queue;
        q.max_messages = 100_000;
        q.max_bytes = 512 * 1024 * 1024;
        q.write_timeout_seconds = 1;
    })
    .await;
    let (chat, steps) = chat_with_large_step_results(&app).await;
    let mut slow = app.ws_connect(&format!("/chat/{chat}")).await; // never read until the end
    for _ in 0..4 {
        let (status, res) = execute(&app, &chat, &json!({"steps": steps})).await;
        assert_eq!(status, 200, "{}", res["message"]);
    }
    let close = recv_close_code(&mut slow, LONG).await;
    assert_eq!(close, Some(4008), "no write progress for the write timeout: a slow consumer");
    let (_, health) = envelope(app.get("/health").await).await;
    assert!(health["data"]["websocket"]["slow_consumer_closes_total"].as_u64().unwrap() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i215_i216_slow_consumer_is_closed_with_4008_while_others_keep_receiving() {
    let app = spawn_app_with(|c| {
        let q = &mut c.chat_workflows.websocket.send_queue;
        q.max_messages = 64;
        q.max_bytes = 256 * 1024;
        q.write_timeout_seconds = 30;
    })
    .await;
    let (chat, steps) = chat_with_large_step_results(&app).await;
    let mut slow = app.ws_connect(&format!("/chat/{chat}")).await; // never read until the end
    let mut fast = subscriber(&app, &chat).await;
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        for _ in 0..4 {
            got.extend(events_until(&mut fast, &["workflow_completed"], LONG).await);
        }
        got
    });
    for _ in 0..4 {
        let (status, res) = execute(&app, &chat, &json!({"steps": steps})).await;
        assert_eq!(status, 200, "{}", res["message"]);
    }
    let got = reader.await.unwrap();
    assert_consecutive(&got);
    assert_eq!(
        got.iter().filter(|e| e["type"] == "step_result").count(),
        160,
        "the reading client got everything"
    );
    let close = recv_close_code(&mut slow, LONG).await;
    assert_eq!(close, Some(4008), "the client that never read is a slow consumer");
    let (_, health) = envelope(app.get("/health").await).await;
    assert!(health["data"]["websocket"]["slow_consumer_closes_total"].as_u64().unwrap() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i196_restart_continues_seq_and_replays_persisted_events() {
    let app = spawn_app().await;
    let chat = chat_with_csv(&app).await;
    assert_eq!(execute(&app, &chat, &three_steps()).await.0, 200);
    let (_, body) = envelope(app.get(&format!("/chat/workflows/{chat}/events")).await).await;
    let before = body["data"]["events"].as_array().unwrap().clone();
    let last = body["data"]["last_seq"].as_u64().unwrap();
    let epoch = body["data"]["epoch"].clone();
    app.stop().await;
    let crate::common::TestApp { dir, config, .. } = app;
    let app = spawn_app_in(dir, config).await;

    let mut ws = app.ws_connect(&format!("/chat/{chat}?last_seq=0")).await;
    let hello = recv_json(&mut ws).await;
    assert_eq!(
        (hello["last_seq"].as_u64(), hello["epoch"].clone()),
        (Some(last), epoch),
        "epoch survives restarts"
    );
    let mut replayed = Vec::new();
    loop {
        let mut e = recv_json(&mut ws).await;
        if e["type"] == "replay_complete" {
            break;
        }
        e.as_object_mut().unwrap().remove("replayed");
        replayed.push(e);
    }
    assert_eq!(replayed, before);
    let (_, up) = upload(&app, &chat, "again.csv", b"a\n1\n".to_vec()).await;
    assert_eq!(up["data"]["filename"], "again.csv");
    let next = recv_json(&mut ws).await;
    assert_eq!(
        (next["type"].as_str(), next["seq"].as_u64()),
        (Some("message_added"), Some(last + 1)),
        "i222 + i196"
    );
    assert_eq!(next["message"]["message_type"], "file_upload");
    assert!(next["message"]["metadata"]["download_url"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i219_c14_job_running_at_shutdown_is_failed_and_replayable() {
    let app = spawn_app_with(|c| {
        c.chat_workflows.execution.shutdown_grace_seconds = 1;
        c.chat_workflows.websocket.shutdown_grace_seconds = 2;
    })
    .await;
    let chat = chat_with_csv(&app).await;
    chat_of(&app).runner.set_test_step_delay(Duration::from_secs(5));
    let mut ws = subscriber(&app, &chat).await;
    let mut body = three_steps();
    body["async"] = json!(true);
    let (_, res) = execute(&app, &chat, &body).await;
    let job = res["data"]["job_id"].as_str().unwrap().to_string();
    events_until(&mut ws, &["progress"], LONG).await;
    let stop = app.stop();
    let (_, (shutdown, close)) = tokio::join!(stop, async {
        let mut shutdown = None;
        let mut close = None;
        while let Some(Ok(msg)) = ws.next().await {
            match msg {
                tokio_tungstenite::tungstenite::Message::Text(t) => {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap();
                    if v["type"] == "server_shutdown" {
                        shutdown = Some(v);
                    }
                }
                tokio_tungstenite::tungstenite::Message::Close(f) => {
                    close = f.map(|f| u16::from(f.code));
                    break;
                }
                _ => {}
            }
        }
        (shutdown, close)
    });
    assert_eq!(shutdown.unwrap()["reconnect_after_ms"], 2000, "i219");
    assert_eq!(close, Some(1001));

    let crate::common::TestApp { dir, config, .. } = app;
    let app = spawn_app_in(dir, config).await;
    let (_, j) = envelope(app.get(&format!("/chat/workflows/{chat}/jobs/{job}")).await).await;
    assert_eq!(j["data"]["status"], "failed", "f142: job status survives the restart");
    assert_eq!(j["data"]["error"], "Interrupted by server shutdown");
    assert_eq!(get_chat(&app, &chat).await["status"], "failed");
    let (_, ev) = envelope(app.get(&format!("/chat/workflows/{chat}/events")).await).await;
    let failed = ev["data"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "workflow_failed")
        .cloned()
        .unwrap();
    assert_eq!(
        (failed["job_id"].as_str(), failed["error"].as_str()),
        (Some(job.as_str()), Some("Interrupted by server shutdown"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d84_killed_during_a_run_recovers_as_failed_after_restart() {
    let app = spawn_app().await;
    let chat = chat_with_csv(&app).await;
    let (_, res) = execute(&app, &chat, &three_steps()).await;
    let job = res["data"]["job_id"].as_str().unwrap().to_string();
    app.stop().await;
    // What a kill leaves behind: the job and one step still running, the others pending.
    let db = rusqlite::Connection::open(&app.config.chat_workflows.storage.sqlite_path).unwrap();
    db.execute("UPDATE jobs SET status = 'running', completed_at = NULL WHERE job_id = ?1", [&job]).unwrap();
    db.execute("UPDATE workflow_steps SET status = 'running' WHERE job_id = ?1 AND step_index = 2", [&job])
        .unwrap();
    db.execute("UPDATE workflow_steps SET status = 'pending' WHERE job_id = ?1 AND step_index = 3", [&job])
        .unwrap();
    db.execute("UPDATE conversations SET status = 'processing' WHERE chat_id = ?1", [&chat]).unwrap();
    drop(db);
    let crate::common::TestApp { dir, config, .. } = app;
    let app = spawn_app_in(dir, config).await;
    let (_, j) = envelope(app.get(&format!("/chat/workflows/{chat}/jobs/{job}")).await).await;
    assert_eq!(
        (j["data"]["status"].as_str(), j["data"]["error"].as_str()),
        (Some("failed"), Some("Interrupted by server restart"))
    );
    let statuses: Vec<&str> =
        j["data"]["steps"].as_array().unwrap().iter().map(|s| s["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["completed", "failed", "skipped"]);
    assert_eq!(get_chat(&app, &chat).await["status"], "failed");
    let (_, ev) = envelope(app.get(&format!("/chat/workflows/{chat}/events")).await).await;
    let last = ev["data"]["events"].as_array().unwrap().last().cloned().unwrap();
    assert_eq!(
        (last["type"].as_str(), last["failed_step"].as_u64(), last["skipped_steps"].as_u64()),
        (Some("workflow_failed"), Some(2), Some(1))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d79_i224_concurrent_runs_of_one_chat_are_serialised() {
    let app = spawn_app().await;
    let chat = chat_with_csv(&app).await;
    chat_of(&app).runner.set_test_step_delay(Duration::from_millis(200));
    let mut ws = subscriber(&app, &chat).await;
    let steps = three_steps();
    let (a, b) = tokio::join!(execute(&app, &chat, &steps), execute(&app, &chat, &steps));
    assert_eq!((a.0, b.0), (200, 200));
    let mut events = Vec::new();
    while events.iter().filter(|e: &&Value| e["type"] == "workflow_completed").count() < 2 {
        events.extend(events_until(&mut ws, &["workflow_completed"], LONG).await);
    }
    assert_consecutive(&events);
    let kinds = types(&events);
    let queued = kinds.iter().position(|t| t == "workflow_queued").expect("i224 workflow_queued");
    assert_eq!(events[queued]["position"], 1);
    let first_done = kinds.iter().position(|t| t == "workflow_completed").unwrap();
    let second_start = kinds.iter().rposition(|t| t == "workflow_started").unwrap();
    assert!(second_start > first_done, "d79: {kinds:?}");
    assert_eq!(events[second_start]["job_id"], events[queued]["job_id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d82_cancel_stops_the_running_step() {
    let app = spawn_app().await;
    let chat = chat_with_csv(&app).await;
    chat_of(&app).runner.set_test_step_delay(Duration::from_millis(700));
    let mut ws = subscriber(&app, &chat).await;
    let mut body = three_steps();
    body["async"] = json!(true);
    let (_, res) = execute(&app, &chat, &body).await;
    let job = res["data"]["job_id"].as_str().unwrap().to_string();
    events_until(&mut ws, &["progress"], LONG).await;
    let res =
        app.client.post(format!("{}/chat/workflows/{chat}/jobs/{job}/cancel", app.api)).send().await.unwrap();
    assert_eq!(envelope(res).await.0, 200);
    let events = events_until(&mut ws, &["workflow_failed"], LONG).await;
    let failed = events.last().unwrap();
    assert_eq!(failed["cancelled"], true);
    assert_eq!(failed["error"], "Workflow cancelled by user");
    assert_eq!(types(&events).iter().filter(|t| *t == "workflow_started").count(), 0);
    // The cancel arrives while step 1 runs: it stops inside that step (§8.12), the others are skipped.
    assert_eq!(failed["failed_step"], 1);
    assert!(!types(&events).contains(&"step_result".to_string()));
    let (_, j) = envelope(app.get(&format!("/chat/workflows/{chat}/jobs/{job}")).await).await;
    assert_eq!(j["data"]["status"], "cancelled");
    let statuses: Vec<&str> =
        j["data"]["steps"].as_array().unwrap().iter().map(|s| s["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["failed", "skipped", "skipped"]);
    assert_eq!(get_chat(&app, &chat).await["status"], "failed");
    let res =
        app.client.post(format!("{}/chat/workflows/{chat}/jobs/{job}/cancel", app.api)).send().await.unwrap();
    assert_eq!(envelope(res).await.0, 409);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d81_step_timeout_fails_the_run() {
    let app = spawn_app_with(|c| c.chat_workflows.execution.step_timeout_seconds = 1).await;
    let chat = chat_with_csv(&app).await;
    chat_of(&app).runner.set_test_step_delay(Duration::from_millis(1500));
    let body = json!({"steps": [{"operation": "excel/extract-columns-to-file", "arguments": {"columns": ["amount"]}}]});
    let (status, res) = execute(&app, &chat, &body).await;
    assert_eq!(status, 422);
    assert_eq!(
        res["message"],
        "Workflow execution failed: Workflow failed at step 1/1: Step timed out after 1s"
    );
    assert_eq!(get_chat(&app, &chat).await["output_files"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i194_i200_snapshot_and_active_job_for_a_late_joiner() {
    let app = spawn_app().await;
    let chat = chat_with_csv(&app).await;
    chat_of(&app).runner.set_test_step_delay(Duration::from_millis(800));
    let mut first = subscriber(&app, &chat).await;
    let mut body = three_steps();
    body["async"] = json!(true);
    execute(&app, &chat, &body).await;
    let seen = events_until(&mut first, &["step_result"], LONG).await;
    let mut late = app.ws_connect(&format!("/chat/{chat}")).await;
    let hello = recv_json(&mut late).await;
    assert_eq!(hello["type"], "connected");
    for key in ["last_seq", "epoch", "connection_id", "heartbeat"] {
        assert!(!hello[key].is_null(), "i194 {key}");
    }
    assert_eq!(hello["protocol_version"], 2);
    assert_eq!(hello["active_job"]["status"], "running", "{hello}");
    assert_eq!(hello["active_job"]["total_steps"], 3);
    let started = recv_json(&mut late).await;
    assert_eq!(
        (started["type"].as_str(), started["replayed"].as_bool()),
        (Some("workflow_started"), Some(true))
    );
    assert_eq!(started["seq"], seen[0]["seq"]);
    let progress = recv_json(&mut late).await;
    assert_eq!((progress["type"].as_str(), progress["replayed"].as_bool()), (Some("progress"), Some(true)));
    let live = events_until(&mut late, &["workflow_completed"], LONG).await;
    assert!(live.iter().all(|e| e.get("replayed").is_none()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i220_delete_notifies_and_closes_with_4001() {
    let app = spawn_app().await;
    let chat = chat_with_csv(&app).await;
    let mut ws = subscriber(&app, &chat).await;
    let mut multi = app.ws_connect("/").await;
    recv_json(&mut multi).await;
    let other = create_chat(&app).await;
    for c in [&chat, &other] {
        send_text(&mut multi, &json!({"type": "subscribe", "chat_id": c, "mode": "add"}).to_string()).await;
        assert_eq!(recv_json(&mut multi).await["type"], "subscribed");
    }
    let res = app.client.delete(format!("{}/chat/workflows/{chat}", app.api)).send().await.unwrap();
    assert_eq!(envelope(res).await.0, 200);
    let e = recv_json(&mut ws).await;
    assert_eq!(e["type"], "conversation_deleted");
    assert_eq!(recv_close_code(&mut ws, Duration::from_secs(5)).await, Some(4001));
    assert_eq!(recv_json(&mut multi).await["type"], "conversation_deleted");
    // The multi-subscription connection stays open and keeps its other chat.
    upload(&app, &other, "x.csv", b"a\n1\n".to_vec()).await;
    assert_eq!(recv_json(&mut multi).await["type"], "message_added");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_progress_false_suppresses_progress_only() {
    let app = spawn_app_with(|c| c.chat_workflows.execution.stream_progress = false).await;
    let chat = chat_with_csv(&app).await;
    let mut ws = subscriber(&app, &chat).await;
    assert_eq!(execute(&app, &chat, &three_steps()).await.0, 200);
    let events = events_until(&mut ws, &["workflow_completed"], LONG).await;
    assert_eq!(
        types(&events),
        ["workflow_started", "step_result", "step_result", "step_result", "workflow_completed"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i224_a_run_submitted_after_the_previous_one_answered_is_not_queued() {
    let app = spawn_app().await;
    let chat = chat_with_csv(&app).await;
    let mut ws = subscriber(&app, &chat).await;
    for _ in 0..5 {
        assert_eq!(execute(&app, &chat, &three_steps()).await.0, 200);
    }
    let mut events = Vec::new();
    for _ in 0..5 {
        events.extend(events_until(&mut ws, &["workflow_completed"], LONG).await);
    }
    assert_consecutive(&events);
    assert!(!types(&events).iter().any(|t| t == "workflow_queued"), "{:?}", types(&events));
}
