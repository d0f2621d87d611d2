//! Cluster mode, the job queue in PostgreSQL (issue 14): any node claims a submitted job, holds a lease it
//! renews, and a job whose node died is taken over by another node after its lease expired and resumed at
//! the interrupted step, up to `cluster.max_job_attempts`. Per-chat serialisation and cancel hold across
//! nodes.
//!
//! Needs `OXCELIZE_TEST_POSTGRES_URL` and `OXCELIZE_TEST_REDIS_URL` (`.ci/services.sh` starts both); without
//! them these tests say so and pass. Each test has a fresh schema and one folder shared by its nodes.
//! A "dead" node is an App built on a Tokio runtime of its own that the test shuts down abruptly: its
//! workers, lease renewals and running steps stop at once, nothing is given back, nothing is written.

use std::time::{Duration, Instant};

use oxcelize::config::Config;
use serde_json::{json, Value};

use crate::chat_support::*;
use crate::common::{envelope, file_part, recv_json_within, spawn_app_in, test_config, TestApp, Ws};
use crate::pg::{fresh_schema, TestSchema};

const LONG: Duration = Duration::from_secs(60);
/// The shortest lease the config allows: takeovers in these tests happen within seconds.
const LEASE_SECONDS: u64 = 3;

/// The services, or `None` after saying why the test is skipped.
fn services(test: &str) -> Option<(String, TestSchema)> {
    let Ok(redis) = std::env::var("OXCELIZE_TEST_REDIS_URL") else {
        eprintln!(
            "SKIPPED {test}: set OXCELIZE_TEST_REDIS_URL and OXCELIZE_TEST_POSTGRES_URL (.ci/services.sh)"
        );
        return None;
    };
    Some((redis, fresh_schema(test)?))
}

/// The config of one node of a test's cluster: shared folders under `shared`, short leases.
fn node_config(shared: &tempfile::TempDir, redis: &str, schema: &TestSchema, node: &str) -> Config {
    let mut c = test_config(shared.path());
    c.cluster.enabled = true;
    c.cluster.node_id = node.into();
    c.cluster.redis_url = redis.into();
    c.cluster.postgres_url = schema.url.clone();
    c.cluster.job_lease_seconds = LEASE_SECONDS;
    c
}

async fn node(config: Config) -> TestApp {
    spawn_app_in(tempfile::tempdir().unwrap(), config).await
}

/// A node that can die: its App runs on a runtime of its own, which `kill` shuts down without any
/// graceful step (no shutdown hooks, no lease given back: like a killed process).
struct MortalNode {
    app: TestApp,
    kill: Option<std::sync::mpsc::Sender<()>>,
}

impl MortalNode {
    async fn start(config: Config) -> MortalNode {
        config.validate().expect("valid config");
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (kill_tx, kill_rx) = std::sync::mpsc::channel::<()>();
        let app_config = config.clone();
        std::thread::spawn(move || {
            let runtime =
                tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            let app = runtime.block_on(oxcelize::App::build(app_config)).expect("app builds");
            let parts = (app.rest_addr(), app.ws_addr(), app.handle(), app.state());
            runtime.spawn(app.run());
            ready_tx.send(parts).unwrap();
            let _ = kill_rx.recv();
            runtime.shutdown_background();
        });
        let (rest, ws, handle, state) =
            tokio::task::spawn_blocking(move || ready_rx.recv().unwrap()).await.unwrap();
        let base = format!("http://{rest}");
        let app = TestApp {
            api: format!("{base}{}", config.api.prefix),
            base,
            ws: ws.map(|a| format!("ws://{a}")).unwrap_or_default(),
            client: reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap(),
            config,
            handle,
            state,
            dir: tempfile::tempdir().unwrap(),
        };
        MortalNode { app, kill: Some(kill_tx) }
    }

    fn kill(&mut self) {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
    }
}

impl Drop for MortalNode {
    fn drop(&mut self) {
        self.kill();
    }
}

fn assert_gapless(events: &[Value]) {
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().expect("seq")).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "seq must grow by exactly 1: {seqs:?}");
}

/// Submits a run without waiting for it; returns the job id.
async fn submit(app: &TestApp, chat: &str, workflow: &Value) -> String {
    let mut body = workflow.clone();
    body["async"] = json!(true);
    let (status, answer) = execute(app, chat, &body).await;
    assert_eq!(status, 202, "{answer}");
    answer["data"]["job_id"].as_str().unwrap().to_string()
}

async fn job(app: &TestApp, chat: &str, job_id: &str) -> Value {
    let (status, body) = envelope(app.get(&format!("/chat/workflows/{chat}/jobs/{job_id}")).await).await;
    assert_eq!(status, 200, "{body}");
    body["data"].clone()
}

/// A listener that replays the chat from its beginning (so it sees events published before it joined).
async fn listener_from_start(app: &TestApp, chat: &str) -> Ws {
    let mut ws = app.ws_connect(&format!("/chat/{chat}?last_seq=0")).await;
    let hello = recv_json_within(&mut ws, Duration::from_secs(5)).await.expect("connected");
    assert_eq!(hello["type"], "connected", "{hello}");
    ws
}

/// Chat events (with `seq`) until one matches `stop`, inclusive.
async fn events_until_match(ws: &mut Ws, stop: impl Fn(&Value) -> bool, wait: Duration) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut out = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Some(v) = recv_json_within(ws, left).await else {
            panic!("stop event never came; got {:?}", types(&out))
        };
        if v.get("seq").is_none() {
            continue;
        }
        let done = stop(&v);
        out.push(v);
        if done {
            return out;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_run_submitted_on_a_is_claimed_by_one_node_and_c_sees_every_event_in_order() {
    let Some((redis, schema)) = services("cluster_jobs::submitted_on_a") else { return };
    let shared = tempfile::tempdir().unwrap();
    let a = node(node_config(&shared, &redis, &schema, "node-a")).await;
    let b = node(node_config(&shared, &redis, &schema, "node-b")).await;
    let c = node(node_config(&shared, &redis, &schema, "node-c")).await;
    let chat = chat_with_csv(&a).await;
    let mut on_c = subscriber(&c, &chat).await;

    // The synchronous answer is the same as on one node, wherever the job ran.
    let (status, body) = execute(&a, &chat, &three_steps()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["results"].as_array().unwrap().len(), 3, "{body}");
    assert_eq!(body["data"]["output_files"].as_array().unwrap().len(), 3, "{body}");
    let job_id = body["data"]["job_id"].as_str().unwrap().to_string();

    let events = events_until(&mut on_c, &["workflow_completed"], LONG).await;
    assert_eq!(types(&events), THREE_STEP_EVENTS);
    assert_gapless(&events);
    assert!(events.iter().all(|e| e["job_id"] == job_id.as_str()), "{events:?}");

    // Exactly one claim in the cluster, no takeover.
    let mut claimed = 0.0;
    for n in [&a, &b, &c] {
        claimed += n.metric("oxcelize_cluster_jobs_claimed_total").await;
        assert_eq!(n.metric("oxcelize_cluster_lease_takeovers_total").await, 0.0);
    }
    assert_eq!(claimed, 1.0);
    assert_eq!(job(&c, &chat, &job_id).await["status"], "completed");
    for n in [&a, &b, &c] {
        n.stop().await;
    }
}

/// Node A dies during step 2 of 3 (its runtime is shut down; steps are slowed by the test hook). Node B
/// takes the job over once A's lease expired and runs steps 2 and 3: step 1 is not run again (its output is
/// reused), and the listener sees the run complete without a gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_dead_mid_step_loses_its_job_to_another_node_which_resumes_it() {
    let Some((redis, schema)) = services("cluster_jobs::takeover") else { return };
    let shared = tempfile::tempdir().unwrap();
    let mut a = MortalNode::start(node_config(&shared, &redis, &schema, "node-a")).await;
    chat_of(&a.app).runner.set_test_step_delay(Duration::from_millis(1500));
    let chat = chat_with_csv(&a.app).await;
    let job_id = submit(&a.app, &chat, &three_steps()).await;
    // A is the only node: it claims the job. B joins later and only sees it once A's lease is gone.
    let mut on_a = listener_from_start(&a.app, &chat).await;
    events_until_match(&mut on_a, |e| e["type"] == "workflow_started", LONG).await;
    let b = node(node_config(&shared, &redis, &schema, "node-b")).await;
    let mut on_b = listener_from_start(&b, &chat).await;

    let first = events_until_match(
        &mut on_b,
        |e| e["type"] == "progress" && e["step_index"] == 2 && e["progress"] == 0,
        LONG,
    )
    .await;
    let step1_output =
        first.iter().find(|e| e["type"] == "step_result").unwrap()["result"]["output_file_path"].clone();
    assert!(step1_output.is_string(), "{first:?}");
    // A has started step 2 and waits in its delay: it dies there.
    a.kill();
    let died = Instant::now();

    let rest = events_until_match(
        &mut on_b,
        |e| e["type"] == "workflow_completed" || e["type"] == "workflow_failed",
        LONG,
    )
    .await;
    let taken_over_after = died.elapsed();
    eprintln!("cluster_jobs::takeover: node killed, workflow_completed from the other node after {taken_over_after:?}");
    let all: Vec<Value> = first.iter().chain(rest.iter()).cloned().collect();
    assert_gapless(&all);
    assert_eq!(all.last().unwrap()["type"], "workflow_completed", "{:?}", types(&all));
    // Step 1 ran once; step 2 started on A and again on B (saying so); step 3 ran on B.
    let results: Vec<u64> = all
        .iter()
        .filter(|e| e["type"] == "step_result")
        .map(|e| e["step_index"].as_u64().unwrap())
        .collect();
    assert_eq!(results, [1, 2, 3], "{:?}", types(&all));
    let starts: Vec<&Value> = all
        .iter()
        .filter(|e| e["type"] == "progress" && e["step_index"] == 2 && e["progress"] == 0)
        .collect();
    assert_eq!(starts.len(), 2, "{all:?}");
    assert!(starts[1]["message"].as_str().unwrap().contains("another node"), "{}", starts[1]);
    assert_eq!(all.iter().filter(|e| e["type"] == "workflow_started").count(), 1);
    assert!(
        taken_over_after >= Duration::from_secs(LEASE_SECONDS - 1),
        "taken over only once the lease had expired ({taken_over_after:?})"
    );

    // The job's record: completed on the second attempt with all three results, step 1's output reused.
    let done = job(&b, &chat, &job_id).await;
    assert_eq!(done["status"], "completed", "{done}");
    eprintln!("{done}");
    let outputs = done["result"]["output_files"].as_array().unwrap();
    assert_eq!(outputs.len(), 3, "{done}");
    assert_eq!(outputs[0]["file_path"], step1_output);
    assert_eq!(done["result"]["results"].as_array().unwrap().len(), 3, "{done}");
    let steps = get_chat(&b, &chat).await["workflow_steps"].clone();
    assert!(steps.as_array().unwrap().iter().all(|s| s["status"] == "completed"), "{steps}");
    assert_eq!(b.metric("oxcelize_cluster_lease_takeovers_total").await, 1.0);
    assert_eq!(b.metric("oxcelize_cluster_jobs_claimed_total").await, 1.0);
    b.stop().await;
}

/// With `cluster.max_job_attempts: 1` a job whose node died is not run again: the node that finds the
/// expired lease fails it, naming the attempts, and the listeners see `workflow_failed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_whose_attempts_are_exhausted_fails_with_a_clear_error() {
    let Some((redis, schema)) = services("cluster_jobs::exhausted") else { return };
    let shared = tempfile::tempdir().unwrap();
    let one_attempt = |node: &str| {
        let mut c = node_config(&shared, &redis, &schema, node);
        c.cluster.max_job_attempts = 1;
        c
    };
    let mut a = MortalNode::start(one_attempt("node-a")).await;
    chat_of(&a.app).runner.set_test_step_delay(Duration::from_secs(30));
    let chat = chat_with_csv(&a.app).await;
    let job_id = submit(&a.app, &chat, &three_steps()).await;
    let mut on_a = listener_from_start(&a.app, &chat).await;
    events_until_match(&mut on_a, |e| e["type"] == "progress", LONG).await;
    let b = node(one_attempt("node-b")).await;
    let mut on_b = listener_from_start(&b, &chat).await;
    a.kill();

    let events = events_until_match(
        &mut on_b,
        |e| e["type"] == "workflow_failed" || e["type"] == "workflow_completed",
        LONG,
    )
    .await;
    assert_gapless(&events);
    let failed = events.last().unwrap();
    assert_eq!(failed["type"], "workflow_failed", "{failed}");
    let error = failed["error"].as_str().unwrap();
    assert!(error.contains("1 attempt") && error.contains("cluster.max_job_attempts"), "{error}");
    assert_eq!(failed["cancelled"], false);
    assert_eq!(failed["failed_step"], 1, "{failed}");
    assert_eq!(failed["skipped_steps"], 2, "{failed}");
    // Nothing of it ran on B.
    assert!(!events.iter().any(|e| e["type"] == "step_result"), "{events:?}");
    let record = job(&b, &chat, &job_id).await;
    assert_eq!(record["status"], "failed", "{record}");
    assert_eq!(record["error"], error);
    assert_eq!(get_chat(&b, &chat).await["status"], "failed");
    assert_eq!(b.metric("oxcelize_cluster_lease_takeovers_total").await, 1.0);
    b.stop().await;
}

/// Two runs of one chat submitted at once through two nodes: one runs entirely before the other, and
/// the second one's events come after the first one's last, even when publishing that last event is slow.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_jobs_of_one_chat_submitted_on_two_nodes_never_run_at_the_same_time() {
    let Some((redis, schema)) = services("cluster_jobs::serialised") else { return };
    let shared = tempfile::tempdir().unwrap();
    let a = node(node_config(&shared, &redis, &schema, "node-a")).await;
    let b = node(node_config(&shared, &redis, &schema, "node-b")).await;
    for n in [&a, &b] {
        chat_of(n).runner.set_test_step_delay(Duration::from_millis(300));
        // The window between the first run's recorded end and its `workflow_completed`.
        chat_of(n).runner.set_test_end_delay(Duration::from_millis(700));
    }
    let chat = chat_with_csv(&a).await;
    let mut on_a = subscriber(&a, &chat).await;
    let workflow = three_steps();
    let (first, second) = tokio::join!(submit(&a, &chat, &workflow), submit(&b, &chat, &workflow));

    let mut events = Vec::new();
    let mut ended = 0;
    while ended < 2 {
        let batch = events_until(&mut on_a, &["workflow_completed", "workflow_failed"], LONG).await;
        events.extend(batch);
        ended += 1;
    }
    assert_gapless(&events);
    assert!(events.iter().filter(|e| e["type"] == "workflow_completed").count() == 2, "{:?}", types(&events));
    // Apart from `workflow_queued` (published at submission), the runs' events do not interleave.
    let order: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] != "workflow_queued")
        .map(|e| e["job_id"].as_str().unwrap())
        .collect();
    let switches = order.windows(2).filter(|w| w[0] != w[1]).count();
    assert_eq!(switches, 1, "one run after the other: {order:?}");
    let (j1, j2) = (job(&a, &chat, &first).await, job(&b, &chat, &second).await);
    let (earlier, later) =
        if j1["started_at"].as_str() < j2["started_at"].as_str() { (j1, j2) } else { (j2, j1) };
    assert!(
        earlier["completed_at"].as_str().unwrap() <= later["started_at"].as_str().unwrap(),
        "{earlier} / {later}"
    );
    a.stop().await;
    b.stop().await;
}

/// A cancel sent to the node that does not run the job stops it within about a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancel_on_another_node_stops_the_running_job() {
    let Some((redis, schema)) = services("cluster_jobs::cancel") else { return };
    let shared = tempfile::tempdir().unwrap();
    let a = node(node_config(&shared, &redis, &schema, "node-a")).await;
    let b = node(node_config(&shared, &redis, &schema, "node-b")).await;
    for n in [&a, &b] {
        chat_of(n).runner.set_test_step_delay(Duration::from_secs(20));
    }
    let chat = chat_with_csv(&a).await;
    let mut on_a = subscriber(&a, &chat).await;
    let job_id = submit(&a, &chat, &three_steps()).await;
    events_until_match(&mut on_a, |e| e["type"] == "progress", LONG).await;
    // Cancel through the node that did not claim it.
    let runs_on_a = a.metric("oxcelize_cluster_jobs_claimed_total").await == 1.0;
    let other = if runs_on_a { &b } else { &a };
    // A run queued behind it is cancelled at once, from either node.
    let queued = submit(&a, &chat, &three_steps()).await;
    let res =
        b.client.post(format!("{}/chat/workflows/{chat}/jobs/{queued}/cancel", b.api)).send().await.unwrap();
    let (status, body) = envelope(res).await;
    assert_eq!((status, body["data"]["status"].as_str()), (200, Some("cancelled")), "{body}");
    let events =
        events_until_match(&mut on_a, |e| e["type"] == "workflow_failed", Duration::from_secs(10)).await;
    let dropped = events.last().unwrap();
    assert_eq!((dropped["job_id"].as_str(), &dropped["cancelled"]), (Some(queued.as_str()), &json!(true)));
    assert_eq!(dropped["skipped_steps"], 3, "{dropped}");
    assert_eq!(job(&a, &chat, &job_id).await["status"], "running", "the running job goes on");
    let asked = Instant::now();
    let res = other
        .client
        .post(format!("{}/chat/workflows/{chat}/jobs/{job_id}/cancel", other.api))
        .send()
        .await
        .unwrap();
    let (status, body) = envelope(res).await;
    assert_eq!(status, 200, "{body}");
    let events =
        events_until_match(&mut on_a, |e| e["type"] == "workflow_failed", Duration::from_secs(10)).await;
    let took = asked.elapsed();
    let failed = events.last().unwrap();
    assert_eq!(failed["cancelled"], true, "{failed}");
    assert!(took < Duration::from_secs(3), "stopped {took:?} after the cancel");
    eprintln!("cluster_jobs::cancel: cancelled on the other node, workflow_failed after {took:?}");
    assert_eq!(job(other, &chat, &job_id).await["status"], "cancelled");
    // Finished jobs cannot be cancelled again, from any node.
    let res =
        a.client.post(format!("{}/chat/workflows/{chat}/jobs/{job_id}/cancel", a.api)).send().await.unwrap();
    let (status, body) = envelope(res).await;
    assert_eq!((status, body["status_code"].as_u64()), (409, Some(409)), "{body}");
    a.stop().await;
    b.stop().await;
}

/// A bot run confirmed on node A is seen, with the bot's own messages and states, by a listener on C.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bot_run_started_on_a_is_seen_by_a_listener_on_c() {
    let Some((redis, schema)) = services("cluster_jobs::bot") else { return };
    let shared = tempfile::tempdir().unwrap();
    let a = node(node_config(&shared, &redis, &schema, "node-a")).await;
    let b = node(node_config(&shared, &redis, &schema, "node-b")).await;
    let c = node(node_config(&shared, &redis, &schema, "node-c")).await;
    let (status, body) = envelope(a.post_json("/chat/bot/conversations", &json!({})).await).await;
    assert_eq!(status, 201, "{body}");
    let id = body["data"]["chat_id"].as_str().unwrap().to_string();
    let form = reqwest::multipart::Form::new().part("file", file_part("sales.xlsx", sample_xlsx()));
    let (status, body) =
        envelope(a.post_form(&format!("/chat/bot/conversations/{id}/upload"), form).await).await;
    assert_eq!(status, 200, "{body}");
    let mut on_c = subscriber(&c, &id).await;
    let confirm =
        json!({"confirmed": true, "modified_workflow": [{"operation": "json/generate", "arguments": {}}]});
    let (status, body) =
        envelope(a.post_json(&format!("/chat/bot/conversations/{id}/confirm"), &confirm).await).await;
    assert_eq!(status, 202, "{body}");
    let job_id = body["data"]["job_id"].as_str().unwrap().to_string();

    let events =
        events_until_match(&mut on_c, |e| e["type"] == "bot_state" && e["state"] == "idle", LONG).await;
    assert_gapless(&events);
    let labels: Vec<String> = events
        .iter()
        .filter(|e| e["type"] != "message_added" || e["message"]["message_type"] == "system")
        .map(|e| format!("{} {}", e["type"].as_str().unwrap(), e["state"].as_str().unwrap_or("")))
        .collect();
    for expected in
        ["workflow_started ", "step_result ", "workflow_completed ", "bot_state completed", "bot_state idle"]
    {
        assert!(labels.iter().any(|l| l == expected), "{expected} missing from {labels:?}");
    }
    let started = events.iter().find(|e| e["type"] == "workflow_started").unwrap();
    assert_eq!((started["kind"].as_str(), started["job_id"].as_str()), (Some("bot"), Some(job_id.as_str())));
    // The bot's bookkeeping ran on whichever node claimed the job: the history on C says so.
    let (status, h) = envelope(c.get(&format!("/chat/bot/conversations/{id}/history")).await).await;
    assert_eq!(status, 200, "{h}");
    assert_eq!(h["data"]["current_state"], "idle");
    let last = h["data"]["messages"].as_array().unwrap().last().unwrap().clone();
    assert!(last["content"].as_str().unwrap().starts_with('✅'), "{last}");
    for n in [&a, &b, &c] {
        n.stop().await;
    }
}

/// Runs `sql` on the test's schema (test-side surgery on the queue: a lease stolen, as after a partition).
async fn pg_execute(schema: &TestSchema, sql: &str) {
    let (client, connection) = tokio_postgres::connect(&schema.url, tokio_postgres::NoTls).await.unwrap();
    let driver = tokio::spawn(connection);
    client.batch_execute(sql).await.unwrap();
    drop(client);
    let _ = driver.await;
}

/// Node A is alive but its lease is no longer its own (expired and re-owned, as when A was cut off from
/// the database for longer than a lease). A's next renewal is refused: it stops its step at once and
/// records nothing more; a node (B, or A itself with a new attempt) takes the job over and completes it.
/// No event is duplicated.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_that_lost_its_lease_stops_and_records_nothing_more() {
    let Some((redis, schema)) = services("cluster_jobs::lost_lease") else { return };
    let shared = tempfile::tempdir().unwrap();
    let a = node(node_config(&shared, &redis, &schema, "node-a")).await;
    chat_of(&a).runner.set_test_step_delay(Duration::from_secs(20));
    let chat = chat_with_csv(&a).await;
    let mut on_a = subscriber(&a, &chat).await;
    let job_id = submit(&a, &chat, &three_steps()).await;
    events_until_match(&mut on_a, |e| e["type"] == "progress", LONG).await;
    let b = node(node_config(&shared, &redis, &schema, "node-b")).await;
    pg_execute(
        &schema,
        &format!(
            "UPDATE jobs SET lease_owner = 'node-elsewhere', lease_until = now() - interval '1 second' \
             WHERE job_id = '{job_id}'"
        ),
    )
    .await;
    // Whichever node takes it over runs it at full speed (A's first run keeps its own 20-s delay).
    chat_of(&a).runner.set_test_step_delay(Duration::ZERO);

    let events = events_until_match(&mut on_a, |e| e["type"] == "workflow_completed", LONG).await;
    assert_gapless(&events);
    let results: Vec<u64> = events
        .iter()
        .filter(|e| e["type"] == "step_result")
        .map(|e| e["step_index"].as_u64().unwrap())
        .collect();
    assert_eq!(results, [1, 2, 3], "{:?}", types(&events));
    assert!(events.iter().all(|e| e["type"] != "workflow_failed"), "{:?}", types(&events));
    // A's first run noticed at its next renewal and ended (it would otherwise sit in its 20-s step).
    use oxcelize::events::ActiveJobs;
    let deadline = Instant::now() + Duration::from_secs(LEASE_SECONDS);
    while chat_of(&a).runner.active_job(&chat).is_some() {
        assert!(Instant::now() < deadline, "node A still runs the job");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Nothing of it arrives late.
    assert!(recv_json_within(&mut on_a, Duration::from_millis(1500)).await.is_none());
    let a_took_over = a.metric("oxcelize_cluster_lease_takeovers_total").await;
    let b_took_over = b.metric("oxcelize_cluster_lease_takeovers_total").await;
    assert_eq!(a_took_over + b_took_over, 1.0);
    if b_took_over == 1.0 {
        // Unless A claimed the job again first, its renewal told it the lease was gone.
        assert!(a.metric("oxcelize_cluster_lease_renewals_failed_total").await >= 1.0);
    }
    let done = job(&a, &chat, &job_id).await;
    assert_eq!(done["status"], "completed", "{done}");
    a.stop().await;
    b.stop().await;
}

/// The queue itself, on two stores of two nodes: a chat's second job is not claimable while its first is
/// unfinished; a fence or renewal of a lease that was taken over is refused; a cancel request makes a
/// queued job claimable at once (to be cancelled).
#[test]
fn the_queue_serialises_a_chat_and_fences_a_lost_lease() {
    use oxcelize::chat::model::{ConversationRow, Job};
    use oxcelize::chat::pg_store::{PgOptions, PgStore};
    use oxcelize::chat::queue::JobQueue;
    use oxcelize::chat::store_api::Store;

    let Some((_, schema)) = services("cluster_jobs::queue") else { return };
    let open = |node: &str| {
        PgStore::connect(&PgOptions {
            url: schema.url.clone(),
            pool_size: 4,
            node_id: node.into(),
            max_events_per_chat: 100,
        })
        .unwrap()
    };
    let (a, b) = (open("node-a"), open("node-b"));
    let now = "2026-12-03T10:00:00.000000+00:00".to_string();
    a.insert_conversation(&ConversationRow {
        chat_id: "c1".into(),
        participant_name: "p".into(),
        status: "active".into(),
        partition_key: None,
        metadata: json!({}),
        created_at: now.clone(),
        updated_at: now.clone(),
    })
    .unwrap();
    let job = |id: &str| Job {
        job_id: id.into(),
        chat_id: "c1".into(),
        kind: "execute".into(),
        status: "pending".into(),
        submitted_at: now.clone(),
        started_at: None,
        completed_at: None,
        result: None,
        error: None,
        cancel_requested: false,
        base_url: None,
    };
    let request = json!({"steps": []});
    assert_eq!(a.enqueue(&job("j1"), &[], &request).unwrap(), 0);
    assert_eq!(b.enqueue(&job("j2"), &[], &request).unwrap(), 1, "one job ahead");
    let lease = Duration::from_secs(30);

    // Only the chat's oldest job is claimable, by one node.
    let claimed = b.claim(lease, 3, 10).unwrap();
    assert_eq!(claimed.iter().map(|c| c.job.job_id.as_str()).collect::<Vec<_>>(), ["j1"]);
    assert_eq!((claimed[0].attempt, claimed[0].takeover), (1, false));
    assert!(a.claim(lease, 3, 10).unwrap().is_empty(), "j2 waits for j1, j1 is leased");
    assert_eq!(b.renew("j1", 1, lease).unwrap(), Some(false));
    assert!(a.renew("j1", 1, lease).unwrap().is_none(), "not node A's lease");
    assert!(a.fence("j1", 1).unwrap().is_none());

    // B's lease expires (B died): A takes j1 over as attempt 2; B can no longer renew or write.
    let b_fence = b.fence("j1", 1).unwrap().expect("B holds the lease");
    b_fence.commit().unwrap();
    drop(b);
    let b = open("node-b");
    assert_eq!(b.release(None).unwrap(), 1, "a restarted node gives its leases back");
    let taken = a.claim(lease, 3, 10).unwrap();
    assert_eq!(
        taken.iter().map(|c| (c.job.job_id.as_str(), c.attempt, c.takeover)).collect::<Vec<_>>(),
        [("j1", 2, true)]
    );
    assert!(b.renew("j1", 1, lease).unwrap().is_none());
    assert!(b.fence("j1", 1).unwrap().is_none(), "B's writes are fenced off");
    assert!(a.fence("j1", 1).unwrap().is_none(), "the attempt is part of the fence");

    // A cancel request makes the queued j2 claimable at once (to be cancelled), j1 still running.
    b.request_cancel("j2").unwrap();
    let cancel = b.claim(lease, 3, 10).unwrap();
    assert_eq!(
        cancel.iter().map(|c| (c.job.job_id.as_str(), c.job.cancel_requested)).collect::<Vec<_>>(),
        [("j2", true)]
    );

    // A finished job ends its lease but holds its chat until its end is published (`free_chat`), or its
    // node restarts: the chat's next job never starts before the previous one's last event.
    assert_eq!(a.enqueue(&job("j3"), &[], &request).unwrap(), 2, "j1 and j2 ahead");
    let mut fence = a.fence("j1", 2).unwrap().expect("A holds attempt 2");
    fence.finish_job("completed", None, None).unwrap();
    fence.commit().unwrap();
    assert!(a.renew("j1", 2, lease).unwrap().is_none());
    assert_eq!(a.job("j1").unwrap().unwrap().status, "completed");
    let mut fence = b.fence("j2", 1).unwrap().expect("B holds j2 (claimed to be cancelled)");
    fence.finish_job("cancelled", None, None).unwrap();
    fence.commit().unwrap();
    assert!(b.claim(lease, 3, 10).unwrap().is_empty(), "j1 and j2 still hold the chat");
    b.free_chat("j2", 1).unwrap();
    b.free_chat("j1", 2).unwrap();
    assert!(b.claim(lease, 3, 10).unwrap().is_empty(), "j1's hold is A's, not B's to free");
    drop(a);
    let a = open("node-a");
    assert_eq!(a.release(None).unwrap(), 0, "no running job to give back");
    let next = b.claim(lease, 3, 10).unwrap();
    assert_eq!(
        next.iter().map(|c| c.job.job_id.as_str()).collect::<Vec<_>>(),
        ["j3"],
        "freed by the restart"
    );
}

/// A node stopped gracefully while it runs a job gives the job back: another node resumes it at once, long
/// before the lease would have expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_gracefully_stopped_node_gives_its_running_job_back() {
    let Some((redis, schema)) = services("cluster_jobs::graceful") else { return };
    let shared = tempfile::tempdir().unwrap();
    let config = |node: &str| {
        let mut c = node_config(&shared, &redis, &schema, node);
        c.cluster.job_lease_seconds = 60;
        c.chat_workflows.execution.shutdown_grace_seconds = 0;
        c
    };
    let a = node(config("node-a")).await;
    chat_of(&a).runner.set_test_step_delay(Duration::from_secs(30));
    let chat = chat_with_csv(&a).await;
    let mut on_a = subscriber(&a, &chat).await;
    let job_id = submit(&a, &chat, &three_steps()).await;
    events_until_match(&mut on_a, |e| e["type"] == "progress", LONG).await;
    let b = node(config("node-b")).await;
    let mut on_b = listener_from_start(&b, &chat).await;
    let stopped = Instant::now();
    a.stop().await;

    let events = events_until_match(
        &mut on_b,
        |e| e["type"] == "workflow_completed" || e["type"] == "workflow_failed",
        Duration::from_secs(20),
    )
    .await;
    assert_gapless(&events);
    assert_eq!(events.last().unwrap()["type"], "workflow_completed", "{:?}", types(&events));
    assert!(stopped.elapsed() < Duration::from_secs(20), "resumed long before the 60-s lease");
    assert_eq!(b.metric("oxcelize_cluster_lease_takeovers_total").await, 1.0);
    assert_eq!(job(&b, &chat, &job_id).await["status"], "completed");
    b.stop().await;
}
