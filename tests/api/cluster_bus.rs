//! Cluster mode, live delivery between nodes (issue 14): several Apps in this process share one store and one
//! Redis; a client on any node receives every event of its chat in `seq` order, without a gap or a duplicate,
//! whichever node published it, also while Redis drops its subscriptions or restarts.
//!
//! Needs the real services: `OXCELIZE_TEST_REDIS_URL` and `OXCELIZE_TEST_POSTGRES_URL` (`.ci/services.sh`
//! starts both); without them these tests say so and pass. The store comes from the ordinary App config.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};

use crate::chat_support::*;
use crate::common::{envelope, recv_json, recv_json_within, spawn_app_in, test_config, TestApp, Ws};
use crate::pg::{fresh_schema, TestSchema};

const LONG: Duration = Duration::from_secs(60);
/// Events of one `three_steps` run.
const RUN_EVENTS: usize = 11;

/// The Redis of the cluster tests, or `None` after saying why the test is skipped. PostgreSQL is required as
/// well: it is the cluster's store.
fn redis_url(test: &str) -> Option<String> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    match (var("OXCELIZE_TEST_REDIS_URL"), var("OXCELIZE_TEST_POSTGRES_URL")) {
        (Some(url), Some(_)) => Some(url),
        _ => {
            eprintln!(
                "skipping {test}: OXCELIZE_TEST_REDIS_URL and OXCELIZE_TEST_POSTGRES_URL must be set \
                 (start the services with .ci/services.sh)"
            );
            None
        }
    }
}

/// `n` nodes sharing one store (PostgreSQL, in a schema of this test's own: the nodes of concurrent tests
/// must not claim each other's jobs), the folder `shared`, and Redis at `redis`.
async fn cluster(shared: &tempfile::TempDir, redis: &str, n: usize) -> (Vec<TestApp>, TestSchema) {
    let schema = fresh_schema("cluster_bus").expect("checked by redis_url");
    let run = uuid_like();
    let mut nodes = Vec::new();
    for i in 0..n {
        let mut config = test_config(shared.path());
        config.cluster.enabled = true;
        config.cluster.node_id = format!("node-{i}-{run}");
        config.cluster.redis_url = redis.to_string();
        config.cluster.postgres_url = schema.url.clone();
        nodes.push(spawn_app_in(tempfile::tempdir().unwrap(), config).await);
    }
    (nodes, schema)
}

fn uuid_like() -> String {
    format!("{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos())
}

/// Consumes frames until `count` events of `terminal` type arrived; returns every chat event (with `seq`).
async fn collect_runs(ws: &mut Ws, terminal: &str, count: usize, wait: Duration) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut events = Vec::new();
    let mut seen = 0;
    while seen < count {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Some(v) = recv_json_within(ws, left).await else {
            panic!("only {seen}/{count} {terminal} after {} events: {:?}", events.len(), types(&events))
        };
        if v.get("seq").is_none() {
            continue;
        }
        if v["type"] == terminal {
            seen += 1;
        }
        events.push(v);
    }
    events
}

/// Strictly consecutive `seq`s: no gap, no duplicate, no reordering.
fn assert_gapless(events: &[Value]) {
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().expect("seq")).collect();
    for w in seqs.windows(2) {
        assert_eq!(w[1], w[0] + 1, "seq must grow by exactly 1: {seqs:?}");
    }
}

/// Waits until Redis reports at least one subscriber of the chat's channel (the node's SUBSCRIBE is done).
async fn wait_for_redis_subscriber(redis: &str, chat: &str) {
    let client = redis::Client::open(redis).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let channel = format!("{}{chat}", oxcelize::events::bus::CHANNEL_PREFIX);
    for _ in 0..100 {
        let (_, n): (String, u64) =
            redis::cmd("PUBSUB").arg("NUMSUB").arg(&channel).query_async(&mut conn).await.unwrap();
        if n > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no node subscribed to {channel}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_on_node_a_gets_every_event_of_a_run_executed_through_node_b() {
    let Some(redis) = redis_url("a_client_on_node_a_gets_every_event_of_a_run_executed_through_node_b")
    else {
        return;
    };
    let shared = tempfile::tempdir().unwrap();
    let (nodes, _schema) = cluster(&shared, &redis, 3).await;
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let chat = chat_with_csv(b).await;
    let mut on_a = subscriber(a, &chat).await;
    let mut on_c = subscriber(c, &chat).await;
    let mut on_b = subscriber(b, &chat).await;
    // No waiting for the other nodes' subscriptions: what they miss meanwhile comes from the log.
    let (status, body) = execute(b, &chat, &three_steps()).await;
    assert_eq!(status, 200, "{body}");
    let from_b = events_until(&mut on_b, &["workflow_completed"], LONG).await;
    let from_a = events_until(&mut on_a, &["workflow_completed"], LONG).await;
    let from_c = events_until(&mut on_c, &["workflow_completed"], LONG).await;
    assert_eq!(from_b.len(), RUN_EVENTS, "{:?}", types(&from_b));
    assert_gapless(&from_a);
    assert_eq!(from_a, from_b, "node A delivers exactly what node B published");
    assert_eq!(from_c, from_b, "and so does node C");
    // Nothing more (no duplicate arriving late from Redis).
    assert!(recv_json_within(&mut on_a, Duration::from_millis(500)).await.is_none());
    // The REST replay on node C returns the same events; last_seq is the log's.
    let after = from_b[0]["seq"].as_u64().unwrap() - 1;
    let (_, page) = envelope(c.get(&format!("/chat/workflows/{chat}/events?after_seq={after}")).await).await;
    assert_eq!(&page["data"]["events"].as_array().unwrap()[..], &from_b[..]);
    assert_eq!(page["data"]["last_seq"], from_b.last().unwrap()["seq"]);
    // A second run through node C reaches node A's client too, continuing the numbering.
    assert_eq!(execute(c, &chat, &three_steps()).await.0, 200);
    let second = events_until(&mut on_a, &["workflow_completed"], LONG).await;
    assert_eq!(second[0]["seq"].as_u64(), Some(from_b.last().unwrap()["seq"].as_u64().unwrap() + 1));
    assert_gapless(&second);
    assert_eq!(second.len(), RUN_EVENTS);
    // The runs went through the shared job queue, so any node may have executed them: the events of both
    // were published to Redis by the nodes that ran them and received there by the other nodes.
    let (mut published, mut received) = (0.0, 0.0);
    for node in [a, b, c] {
        published += node.metric("oxcelize_bus_events_published_total").await;
        received += node.metric("oxcelize_bus_events_received_total").await;
    }
    assert!(published >= 2.0 * RUN_EVENTS as f64, "{published}");
    assert!(received >= 1.0, "{received}");
    let (status, ready) = envelope(a.get("/health/ready").await).await;
    assert_eq!((status, &ready["data"]["checks"]["redis"]["ok"]), (200, &json!(true)), "{ready}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_resumes_with_last_seq_on_another_node() {
    let Some(redis) = redis_url("a_client_resumes_with_last_seq_on_another_node") else { return };
    let shared = tempfile::tempdir().unwrap();
    let (nodes, _schema) = cluster(&shared, &redis, 3).await;
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let chat = chat_with_csv(a).await;
    let mut first = subscriber(a, &chat).await;
    assert_eq!(execute(b, &chat, &three_steps()).await.0, 200);
    let run1 = events_until(&mut first, &["workflow_completed"], LONG).await;
    let last_seen = run1[4]["seq"].as_u64().unwrap();
    drop(first);
    // Missed while away: the rest of run 1 and a whole run 2 (executed through node A this time).
    assert_eq!(execute(a, &chat, &three_steps()).await.0, 200);
    let mut resumed = c.ws_connect(&format!("/chat/{chat}?last_seq={last_seen}")).await;
    let hello = recv_json(&mut resumed).await;
    assert_eq!(hello["type"], "connected", "{hello}");
    let mut replayed = Vec::new();
    let complete = loop {
        let v = recv_json(&mut resumed).await;
        if v["type"] == "replay_complete" {
            break v;
        }
        assert_eq!(v["replayed"], true, "{v}");
        replayed.push(v);
    };
    assert_eq!(replayed.len(), RUN_EVENTS * 2 - 5, "{:?}", types(&replayed));
    assert_eq!(replayed[0]["seq"].as_u64(), Some(last_seen + 1));
    assert_gapless(&replayed);
    assert_eq!(complete["to_seq"], replayed.last().unwrap()["seq"]);
    // Live events continue right after the replay.
    assert_eq!(execute(b, &chat, &three_steps()).await.0, 200);
    let live = events_until(&mut resumed, &["workflow_completed"], LONG).await;
    assert_eq!(live[0]["seq"].as_u64(), Some(complete["to_seq"].as_u64().unwrap() + 1));
    assert_gapless(&live);
    assert!(live.iter().all(|e| e.get("replayed").is_none()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_bus_message_is_repaired_from_the_log_and_counted() {
    let Some(redis) = redis_url("a_lost_bus_message_is_repaired_from_the_log_and_counted") else { return };
    let shared = tempfile::tempdir().unwrap();
    let (nodes, _schema) = cluster(&shared, &redis, 2).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let chat = create_chat(b).await;
    let mut on_a = subscriber(a, &chat).await;
    wait_for_redis_subscriber(&redis, &chat).await;
    let repairs_before = a.metric("oxcelize_bus_gap_repairs_total").await;
    // An event committed to the log whose publish never reached Redis, then an ordinary one.
    let hub = b.state.hub.clone();
    let target = chat.clone();
    let (lost, published) = tokio::task::spawn_blocking(move || {
        let lost = hub
            .event_log()
            .append_next(&target, "note", &mut |seq| {
                json!({"type": "note", "chat_id": target, "seq": seq}).to_string()
            })
            .unwrap();
        let published = hub.publish(&target, json!({"type": "note", "n": 2}));
        (lost.0, published.0)
    })
    .await
    .unwrap();
    assert_eq!(published, lost + 1);
    let first = recv_json(&mut on_a).await;
    let second = recv_json(&mut on_a).await;
    assert_eq!((first["seq"].as_u64(), second["seq"].as_u64()), (Some(lost), Some(published)));
    assert_eq!(second["n"], 2);
    assert!(recv_json_within(&mut on_a, Duration::from_millis(500)).await.is_none(), "no duplicate");
    assert!(a.metric("oxcelize_bus_gap_repairs_total").await > repairs_before);
    assert!(a.metric("oxcelize_bus_events_repaired_total").await >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_pubsub_connections_during_runs_loses_no_event() {
    let Some(redis) = redis_url("killing_the_pubsub_connections_during_runs_loses_no_event") else { return };
    let shared = tempfile::tempdir().unwrap();
    let (nodes, _schema) = cluster(&shared, &redis, 2).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let chat = chat_with_csv(b).await;
    let mut on_a = subscriber(a, &chat).await;
    let mut on_b = subscriber(b, &chat).await;
    wait_for_redis_subscriber(&redis, &chat).await;
    let reconnects_before = a.metric("oxcelize_bus_reconnects_total").await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let killer = {
        let (stop, redis) = (stop.clone(), redis.clone());
        tokio::spawn(async move {
            let client = redis::Client::open(redis.as_str()).unwrap();
            let mut conn = client.get_multiplexed_async_connection().await.unwrap();
            let mut kills = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let n: u64 = redis::cmd("CLIENT")
                    .arg("KILL")
                    .arg("TYPE")
                    .arg("pubsub")
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                kills += n;
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
            kills
        })
    };
    const RUNS: usize = 5;
    for _ in 0..RUNS {
        assert_eq!(execute(b, &chat, &three_steps()).await.0, 200);
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let kills = killer.await.unwrap();
    assert!(kills > 0, "CLIENT KILL TYPE pubsub found the nodes' connections");
    let from_a = collect_runs(&mut on_a, "workflow_completed", RUNS, LONG).await;
    let from_b = collect_runs(&mut on_b, "workflow_completed", RUNS, LONG).await;
    assert_eq!(from_a.len(), RUNS * RUN_EVENTS, "{:?}", types(&from_a));
    assert_gapless(&from_a);
    assert_eq!(from_a, from_b);
    assert!(recv_json_within(&mut on_a, Duration::from_millis(500)).await.is_none(), "no duplicate");
    assert!(a.metric("oxcelize_bus_reconnects_total").await > reconnects_before);
}

/// A `redis-server` of this test alone (so that it can be restarted), killed when dropped.
struct OwnRedis {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<std::process::Child>,
}

impl OwnRedis {
    fn start() -> Option<OwnRedis> {
        let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
        let mut own = OwnRedis { port, dir: tempfile::tempdir().ok()?, child: None };
        own.spawn().then_some(own)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn spawn(&mut self) -> bool {
        let child = std::process::Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &self.port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--maxmemory-policy", "noeviction", "--dir"])
            .arg(self.dir.path())
            .stdout(std::process::Stdio::null())
            .spawn();
        let Ok(child) = child else { return false };
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn ready_status(app: &TestApp) -> (u16, Value) {
    envelope(app.get("/health/ready").await).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_restart_during_runs_loses_no_event() {
    let test = "a_redis_restart_during_runs_loses_no_event";
    if redis_url(test).is_none() {
        return;
    }
    let Some(mut own) = OwnRedis::start() else {
        eprintln!("skipping {test}: redis-server cannot be started here");
        return;
    };
    let shared = tempfile::tempdir().unwrap();
    let (nodes, _schema) = cluster(&shared, &own.url(), 2).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let chat = chat_with_csv(b).await;
    let mut on_a = subscriber(a, &chat).await;
    wait_for_redis_subscriber(&own.url(), &chat).await;
    assert_eq!(execute(b, &chat, &three_steps()).await.0, 200);
    own.kill();
    // While Redis is away: node A says so, and still receives node B's runs (read from the log).
    let mut down = None;
    for _ in 0..100 {
        let (status, body) = ready_status(a).await;
        if status == 503 {
            down = Some(body);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let down = down.expect("readiness reports Redis gone");
    assert_eq!(down["data"]["checks"]["redis"]["ok"], false, "{down}");
    assert_eq!(execute(b, &chat, &three_steps()).await.0, 200);
    let during = collect_runs(&mut on_a, "workflow_completed", 2, LONG).await;
    assert_eq!(during.len(), 2 * RUN_EVENTS);
    assert_gapless(&during);
    assert!(own.spawn(), "redis-server restarts on its port");
    // One more run right after the restart, while the nodes reconnect.
    assert_eq!(execute(b, &chat, &three_steps()).await.0, 200);
    let after = collect_runs(&mut on_a, "workflow_completed", 1, LONG).await;
    assert_eq!(after.len(), RUN_EVENTS);
    assert_eq!(after[0]["seq"].as_u64(), Some(during.last().unwrap()["seq"].as_u64().unwrap() + 1));
    assert_gapless(&after);
    let mut back = false;
    for _ in 0..100 {
        if ready_status(a).await.0 == 200 {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(back, "readiness recovers once Redis is back");
    assert!(a.metric("oxcelize_bus_reconnects_total").await >= 1.0);
    // Live delivery through Redis again: a run arrives without waiting for the log poll.
    wait_for_redis_subscriber(&own.url(), &chat).await;
    assert_eq!(execute(b, &chat, &three_steps()).await.0, 200);
    let live = collect_runs(&mut on_a, "workflow_completed", 1, LONG).await;
    assert_gapless(&live);
    assert!(recv_json_within(&mut on_a, Duration::from_millis(500)).await.is_none(), "no duplicate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_redis_stops_start_up_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    config.cluster.enabled = true;
    config.cluster.redis_url = format!("redis://127.0.0.1:{port}/");
    config.cluster.postgres_url = "postgres://unused@127.0.0.1/unused".into();
    config.validate().expect("a complete cluster config is valid");
    let err = oxcelize::App::build(config).await.err().expect("start-up fails");
    let message = err.to_string();
    assert!(message.contains("cluster.redis_url"), "{message}");
    assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
}

#[test]
fn two_stores_on_one_sqlite_file_never_hand_out_the_same_seq() {
    use oxcelize::chat::store::ChatStore;
    use oxcelize::events::EventLog;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chat.db");
    let stores = [ChatStore::open(&path, 10_000).unwrap(), ChatStore::open(&path, 10_000).unwrap()];
    let seqs: Vec<u64> = std::thread::scope(|s| {
        let workers: Vec<_> = stores
            .iter()
            .flat_map(|store| (0..2).map(move |_| store))
            .map(|store| {
                s.spawn(move || {
                    (0..50)
                        .map(|_| {
                            store
                                .append_next("c1", "note", &mut |seq| format!("{{\"seq\":{seq}}}"))
                                .unwrap()
                                .0
                        })
                        .collect::<Vec<u64>>()
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap()).collect()
    });
    let unique: BTreeSet<u64> = seqs.iter().copied().collect();
    assert_eq!(unique.len(), 200, "every seq handed out once");
    assert_eq!(unique.iter().copied().collect::<Vec<_>>(), (1..=200).collect::<Vec<_>>());
    let stored = stores[1].events_after("c1", 0, 1000).unwrap();
    assert!(
        stored.iter().all(|(seq, text)| **text == format!("{{\"seq\":{seq}}}")),
        "text rendered with its seq"
    );
    assert_eq!(stores[0].last_seq("c1").unwrap(), 200);
}
