//! The real App in cluster mode on PostgreSQL (`OXCELIZE_TEST_POSTGRES_URL`, a fresh schema per test):
//! every conversation, job and event lives in PostgreSQL, so a second node on the same database (and the
//! same shared folder) sees and serves all of it.

use std::time::Duration;

use oxcelize::config::Config;
use serde_json::Value;

use crate::chat_support::*;
use crate::common::{envelope, file_part, spawn_app_in, spawn_app_with, test_config, TestApp};
use crate::pg::{fresh_schema, TestSchema};

fn cluster_mode(c: &mut Config, schema: &TestSchema, node: &str) {
    c.cluster.enabled = true;
    c.cluster.node_id = node.into();
    c.cluster.postgres_url = schema.url.clone();
    c.cluster.redis_url = std::env::var("OXCELIZE_TEST_REDIS_URL").expect("checked by redis_available");
}

/// Cluster nodes connect to Redis at start: these tests need it as well as PostgreSQL.
fn redis_available(test: &str) -> bool {
    let present = std::env::var("OXCELIZE_TEST_REDIS_URL").is_ok();
    if !present {
        eprintln!("SKIPPED {test}: set OXCELIZE_TEST_REDIS_URL (e.g. eval \"$(.ci/services.sh start DIR)\")");
    }
    present
}

/// Another node on the same database and the same (shared) folders as `app`.
async fn second_node(app: &TestApp, node: &str) -> TestApp {
    let mut config = app.config.clone();
    config.cluster.node_id = node.into();
    spawn_app_in(tempfile::tempdir().unwrap(), config).await
}

/// `v` without its `download_url`s (each node links to itself).
fn without_urls(v: &Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| *k != "download_url")
                .map(|(k, v)| (k.clone(), without_urls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_urls).collect()),
        other => other.clone(),
    }
}

async fn events_of(app: &TestApp, chat: &str, after: u64) -> Value {
    let (status, body) =
        envelope(app.get(&format!("/chat/workflows/{chat}/events?after_seq={after}")).await).await;
    assert_eq!(status, 200, "{body}");
    body["data"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversation_upload_workflow_replay_dump_restore_on_postgres() {
    if !redis_available("cluster_pg::round_trip") {
        return;
    }
    let Some(schema) = fresh_schema("cluster_pg::round_trip") else { return };
    let a = spawn_app_with(|c| cluster_mode(c, &schema, "node-a")).await;

    // Readiness names the PostgreSQL dependency; the SQLite file of the embedded mode is never created.
    let (status, ready) = envelope(a.get("/health/ready").await).await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["data"]["checks"]["postgresql"]["ok"], true, "{ready}");
    assert!(ready["data"]["checks"].get("sqlite").is_none(), "{ready}");

    let chat = chat_with_csv(&a).await;
    let mut ws = subscriber(&a, &chat).await;
    let (status, run) = execute(&a, &chat, &three_steps()).await;
    assert_eq!(status, 200, "{run}");
    let live = events_until(&mut ws, &["workflow_completed"], Duration::from_secs(60)).await;
    assert_eq!(types(&live).first().map(String::as_str), Some("workflow_started"));
    let seqs: Vec<u64> = live.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "gap-free: {seqs:?}");

    // The REST replay reads the same events back from PostgreSQL.
    let replay = events_of(&a, &chat, seqs[0] - 1).await;
    assert_eq!(&replay["events"].as_array().unwrap()[..], &live[..]);
    assert_eq!(replay["last_seq"], *seqs.last().unwrap());
    let sqlite = a.config.chat_workflows.storage.sqlite_path.clone();
    assert!(!sqlite.exists(), "cluster mode keeps nothing in SQLite");

    // A second node on the same database serves the conversation, its job and its events.
    let b = second_node(&a, "node-b").await;
    let conv_a = get_chat(&a, &chat).await;
    let conv_b = get_chat(&b, &chat).await;
    assert_eq!(without_urls(&conv_a), without_urls(&conv_b), "download links name the node asked");
    let steps = conv_b["workflow_steps"].as_array().unwrap();
    assert_eq!(steps.len(), 3);
    assert!(steps.iter().all(|s| s["status"] == "completed"), "{steps:?}");
    assert_eq!(conv_b["uploaded_files"].as_array().unwrap().len(), 1);
    assert_eq!(conv_b["output_files"].as_array().unwrap().len(), 3);
    assert_eq!(events_of(&b, &chat, seqs[0] - 1).await["events"], replay["events"]);

    // Dump on one node, delete and restore on the other: the same conversation comes back.
    let res = a.client.post(format!("{}/chat/workflows/{chat}/dump", a.api)).send().await.unwrap();
    let (status, dumped) = envelope(res).await;
    assert_eq!(status, 200, "{dumped}");
    let archive = a.download(dumped["data"]["download_url"].as_str().unwrap()).await;
    let res = b.client.delete(format!("{}/chat/workflows/{chat}", b.api)).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let (status, _) = envelope(a.get(&format!("/chat/workflows/{chat}")).await).await;
    assert_eq!(status, 404, "deleted for every node");
    let form = reqwest::multipart::Form::new().part("dump_file", file_part("dump.tar.gz", archive));
    let (status, restored) = envelope(b.post_form("/chat/workflows/restore", form).await).await;
    assert_eq!(status, 200, "{restored}");
    let back = get_chat(&a, &chat).await;
    for key in
        ["chat_id", "participant_name", "workflow_steps", "uploaded_files", "output_files", "created_at"]
    {
        assert_eq!(back[key], conv_a[key], "{key}");
    }
    assert_eq!(back["messages"].as_array().unwrap().len(), conv_a["messages"].as_array().unwrap().len());

    // A restore over an existing conversation is refused without overwrite, and nothing changes.
    let res = a.client.post(format!("{}/chat/workflows/{chat}/dump", a.api)).send().await.unwrap();
    let archive = a.download(envelope(res).await.1["data"]["download_url"].as_str().unwrap()).await;
    let form = reqwest::multipart::Form::new().part("dump_file", file_part("dump.tar.gz", archive));
    let (status, refused) = envelope(a.post_form("/chat/workflows/restore", form).await).await;
    assert_eq!((status, refused["status_code"].as_u64()), (409, Some(409)), "{refused}");
    assert_eq!(get_chat(&b, &chat).await["workflow_steps"], conv_a["workflow_steps"]);

    // The snapshot endpoint writes the PostgreSQL data as an embedded SQLite database.
    let res = b.client.post(format!("{}/chat/sqlite/backup", b.api)).send().await.unwrap();
    let (status, backup) = envelope(res).await;
    assert_eq!(status, 200, "{backup}");
    let file =
        b.config.chat_workflows.backup.snapshot_path.join(backup["data"]["backup_file"].as_str().unwrap());
    let db = rusqlite::Connection::open(file).unwrap();
    let steps: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM workflow_steps WHERE chat_id = ?1 AND status = 'completed'",
            [&chat],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(steps, 3);
    b.stop().await;
    a.stop().await;
}

/// A second run on the same chat submitted through another node continues the chat's numbering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_finds_everything_in_postgres() {
    if !redis_available("cluster_pg::restart") {
        return;
    }
    let Some(schema) = fresh_schema("cluster_pg::restart") else { return };
    let a = spawn_app_with(|c| cluster_mode(c, &schema, "node-a")).await;
    let chat = chat_with_csv(&a).await;
    let (status, _) = execute(&a, &chat, &three_steps()).await;
    assert_eq!(status, 200);
    let first = events_of(&a, &chat, 0).await;
    let last = first["last_seq"].as_u64().unwrap();
    a.stop().await;
    let TestApp { dir, config, .. } = a;

    // The same node restarted (same id, same database and folders, new process state).
    let again = spawn_app_in(dir, config).await;
    assert_eq!(events_of(&again, &chat, 0).await["events"], first["events"]);
    let (status, body) = execute(&again, &chat, &three_steps()).await;
    assert_eq!(status, 200, "{body}");
    let second = events_of(&again, &chat, last).await;
    let seqs: Vec<u64> =
        second["events"].as_array().unwrap().iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs.first(), Some(&(last + 1)), "numbering continues after the restart: {seqs:?}");
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    assert_eq!(get_chat(&again, &chat).await["workflow_steps"].as_array().unwrap().len(), 6);
    again.stop().await;
}

/// An unreachable or invalid `cluster.postgres_url` stops start-up with a message naming the key.
#[tokio::test]
async fn start_up_refuses_an_unusable_postgres_url() {
    // Redis must be reachable, or start-up stops at the bus (which connects first) naming cluster.redis_url.
    if !redis_available("cluster_pg::start_up_refuses_an_unusable_postgres_url") {
        return;
    }
    for url in ["postgres://127.0.0.1:1/oxcelize?connect_timeout=2", "postgres://db:port-is-not-a-number/x"] {
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path());
        config.cluster.enabled = true;
        config.cluster.postgres_url = url.into();
        config.cluster.redis_url = std::env::var("OXCELIZE_TEST_REDIS_URL").unwrap();
        config.validate().expect("well-formed keys");
        let err = oxcelize::App::build(config).await.err().expect("start-up refused");
        assert!(err.to_string().contains("cluster.postgres_url"), "{url}: {err}");
        assert!(!dir.path().join("automation/sqlite/chat.db").exists(), "no fallback to SQLite");
    }
}
