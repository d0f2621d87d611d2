//! One conformance suite for the chat store trait, run against the SQLite store and the PostgreSQL store
//! (the latter only when `OXCELIZE_TEST_POSTGRES_URL` is set, each test in its own schema).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use oxcelize::chat::model::{now_ts, Conversation, ConversationRow, Job, WorkflowStep};
use oxcelize::chat::pg_store::{PgOptions, PgStore};
use oxcelize::chat::store::ChatStore;
use oxcelize::chat::store_api::Store;
use oxcelize::chat::ChatError;
use serde_json::{json, Value};

use crate::pg::{fresh_schema, TestSchema};

/// Where a test's store lives; `open` may be called several times (a restart, or several nodes).
enum Backend {
    Sqlite(tempfile::TempDir),
    Postgres(TestSchema),
}

impl Backend {
    fn open_node(&self, max_events: u64, node: &str) -> Arc<dyn Store> {
        match self {
            Backend::Sqlite(dir) => {
                Arc::new(ChatStore::open(&dir.path().join("chat.db"), max_events).unwrap())
            }
            Backend::Postgres(schema) => Arc::new(
                PgStore::connect(&PgOptions {
                    url: schema.url.clone(),
                    pool_size: 8,
                    node_id: node.into(),
                    max_events_per_chat: max_events,
                })
                .unwrap(),
            ),
        }
    }

    fn open(&self, max_events: u64) -> Arc<dyn Store> {
        self.open_node(max_events, "node-a")
    }

    fn is_postgres(&self) -> bool {
        matches!(self, Backend::Postgres(_))
    }
}

fn sqlite() -> Backend {
    Backend::Sqlite(tempfile::tempdir().unwrap())
}

fn postgres(test: &str) -> Option<Backend> {
    fresh_schema(test).map(Backend::Postgres)
}

/// `#[test] sqlite` and `#[test] postgres` for each suite function `fn(&Backend)`.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn sqlite() {
                    super::$name(&super::sqlite());
                }

                #[test]
                fn postgres() {
                    if let Some(backend) = super::postgres(concat!(stringify!($name), "::postgres")) {
                        super::$name(&backend);
                    }
                }
            }
        )*
    };
}

conformance!(
    conversations,
    messages_and_files,
    jobs_and_steps,
    bot_context,
    restore_insert_full,
    event_log,
    backup_snapshot,
    migration_is_idempotent,
);

fn row(id: &str, name: &str, created_at: &str) -> ConversationRow {
    ConversationRow {
        chat_id: id.into(),
        participant_name: name.into(),
        status: "created".into(),
        partition_key: Some("2026/12".into()),
        metadata: json!({"k": 1}),
        created_at: created_at.into(),
        updated_at: created_at.into(),
    }
}

fn step(job: &str, id: &str, index: i64) -> WorkflowStep {
    WorkflowStep {
        step_id: id.into(),
        operation: "excel/extract-columns".into(),
        arguments: json!({"columns": ["a"]}),
        input_file: None,
        output_file: None,
        status: "pending".into(),
        progress: 0,
        error_message: None,
        started_at: None,
        completed_at: None,
        job_id: Some(job.into()),
        step_index: Some(index),
    }
}

fn job(id: &str, chat: &str, submitted_at: &str) -> Job {
    Job {
        job_id: id.into(),
        chat_id: chat.into(),
        kind: "workflow".into(),
        status: "pending".into(),
        submitted_at: submitted_at.into(),
        started_at: None,
        completed_at: None,
        result: None,
        error: None,
        cancel_requested: false,
        base_url: Some("http://example.test".into()),
    }
}

fn conversations(b: &Backend) {
    let store = b.open(100);
    store.insert_conversation(&row("a", "Orca-1", "2026-12-01T10:00:00.000000+00:00")).unwrap();
    store.insert_conversation(&row("b", "Orca-2", "2026-12-01T11:00:00.000000+00:00")).unwrap();
    store.insert_conversation(&row("c", "Orca-3", "2026-12-01T12:00:00.000000+00:00")).unwrap();
    let again = store.insert_conversation(&row("a", "Other", "2026-12-01T13:00:00.000000+00:00"));
    assert!(matches!(again, Err(ChatError::Conflict(_))), "{again:?}");
    assert_eq!(store.conversation_row("a").unwrap().unwrap().participant_name, "Orca-1", "not overwritten");
    assert!(store.conversation_row("zz").unwrap().is_none());
    assert!(store.participant_name_in_use("Orca-2").unwrap());
    assert!(!store.participant_name_in_use("Orca-9").unwrap());

    store.set_status("b", "completed").unwrap();
    let b_row = store.conversation_row("b").unwrap().unwrap();
    assert_eq!(b_row.status, "completed");
    assert!(b_row.updated_at > b_row.created_at, "set_status bumps updated_at");
    assert_eq!(b_row.metadata, json!({"k": 1}));

    store.add_message("a", "system", "older", json!({})).unwrap();
    store.add_message("a", "system", "newest", json!({})).unwrap();
    store.add_message("a", "user", "not a system message", json!({})).unwrap();
    let (page, total) = store.list_conversations(None, 2, 0).unwrap();
    assert_eq!(total, 3);
    let ids: Vec<&str> = page.iter().map(|(r, _)| r.chat_id.as_str()).collect();
    assert_eq!(ids, ["c", "b"], "newest first");
    let (page, _) = store.list_conversations(None, 2, 2).unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!((page[0].0.chat_id.as_str(), page[0].1.as_deref()), ("a", Some("newest")));
    let (page, total) = store.list_conversations(Some("completed"), 10, 0).unwrap();
    assert_eq!((total, page.len(), page[0].0.chat_id.as_str()), (1, 1, "b"));

    // Deleting removes every child row, events included.
    store.record_file("a", "p/a.csv", "uploaded").unwrap();
    store.create_job(&job("j1", "a", &now_ts()), &[step("j1", "s1", 0)]).unwrap();
    store.save_bot_context("a", &json!({"current_state": "idle"})).unwrap();
    store.append_next("a", "note", &mut |seq| format!("{{\"seq\":{seq}}}")).unwrap();
    assert!(store.delete_conversation("a").unwrap());
    assert!(store.conversation("a").unwrap().is_none());
    assert!(store.messages("a").unwrap().is_empty());
    assert!(store.files("a", "uploaded").unwrap().is_empty());
    assert!(store.job("j1").unwrap().is_none() && store.job_steps("j1").unwrap().is_empty());
    assert!(store.bot_context("a").unwrap().is_none());
    assert_eq!((store.last_seq("a").unwrap(), store.oldest_seq("a").unwrap()), (0, None));
    assert!(!store.delete_conversation("a").unwrap(), "absent the second time");
    assert_eq!(store.list_conversations(None, 10, 0).unwrap().1, 2);
}

fn messages_and_files(b: &Backend) {
    let store = b.open(100);
    store.insert_conversation(&row("m", "Orca-1", &now_ts())).unwrap();
    for text in ["first", "second", "third"] {
        let m = store.add_message("m", "user", text, json!({"n": text})).unwrap();
        assert_eq!(m.content, text);
    }
    let messages = store.messages("m").unwrap();
    let contents: Vec<&str> = messages.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(contents, ["first", "second", "third"]);
    assert_eq!(messages[1].metadata, json!({"n": "second"}));

    assert_eq!(store.latest_upload("m").unwrap(), None);
    store.record_file("m", "p/a.csv", "uploaded").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2));
    store.record_file("m", "p/b.csv", "uploaded").unwrap();
    store.record_file("m", "p/out.xlsx", "output").unwrap();
    assert_eq!(store.latest_upload("m").unwrap().as_deref(), Some("p/b.csv"));
    std::thread::sleep(std::time::Duration::from_millis(2));
    // Recording again makes it the newest, without a second row.
    store.record_file("m", "p/a.csv", "uploaded").unwrap();
    assert_eq!(store.files("m", "uploaded").unwrap(), ["p/b.csv", "p/a.csv"]);
    assert_eq!(store.latest_upload("m").unwrap().as_deref(), Some("p/a.csv"));
    assert_eq!(store.files("m", "output").unwrap(), ["p/out.xlsx"]);
    store.remove_file_record("m", "p/a.csv", "uploaded").unwrap();
    assert_eq!(store.files("m", "uploaded").unwrap(), ["p/b.csv"]);
    let conv = store.conversation("m").unwrap().unwrap();
    assert_eq!((conv.messages.len(), conv.uploaded_files.len(), conv.output_files.len()), (3, 1, 1));
}

fn jobs_and_steps(b: &Backend) {
    let store = b.open(100);
    store.insert_conversation(&row("w", "Orca-1", &now_ts())).unwrap();
    store
        .create_job(
            &job("j1", "w", "2026-12-01T10:00:00.000000+00:00"),
            &[step("j1", "s2", 1), step("j1", "s1", 0)],
        )
        .unwrap();
    store.create_job(&job("j2", "w", "2026-12-01T11:00:00.000000+00:00"), &[step("j2", "t1", 0)]).unwrap();
    let loaded = store.job("j1").unwrap().unwrap();
    assert_eq!(
        (loaded.status.as_str(), loaded.base_url.as_deref()),
        ("pending", Some("http://example.test"))
    );
    let ids: Vec<String> = store.job_steps("j1").unwrap().into_iter().map(|s| s.step_id).collect();
    assert_eq!(ids, ["s1", "s2"], "by step index");
    assert_eq!(store.job_steps("j1").unwrap()[0].arguments, json!({"columns": ["a"]}));

    store.mark_job_running("j1", "2026-12-01T10:00:01.000000+00:00").unwrap();
    let mut s1 = store.job_steps("j1").unwrap().remove(0);
    s1.status = "completed".into();
    s1.progress = 100;
    s1.output_file = Some("out/x.xlsx".into());
    s1.input_file = Some("in/x.csv".into());
    s1.started_at = Some(now_ts());
    s1.completed_at = Some(now_ts());
    store.update_step(&s1).unwrap();
    assert_eq!(store.job_steps("j1").unwrap()[0], s1);

    let unfinished: BTreeSet<String> =
        store.unfinished_jobs().unwrap().into_iter().map(|j| j.job_id).collect();
    assert_eq!(unfinished, BTreeSet::from(["j1".to_string(), "j2".to_string()]));
    assert_eq!(store.job("j1").unwrap().unwrap().status, "running");
    store.set_cancel_requested("j2").unwrap();
    assert!(store.job("j2").unwrap().unwrap().cancel_requested);
    store.finish_job("j1", "completed", Some(&json!({"outputs": 1})), None).unwrap();
    store.finish_job("j2", "failed", None, Some("boom")).unwrap();
    let j1 = store.job("j1").unwrap().unwrap();
    assert_eq!((j1.status.as_str(), j1.result), ("completed", Some(json!({"outputs": 1}))));
    assert!(j1.completed_at.is_some());
    assert_eq!(store.job("j2").unwrap().unwrap().error.as_deref(), Some("boom"));
    let listed: Vec<String> = store.jobs_of_chat("w").unwrap().into_iter().map(|j| j.job_id).collect();
    assert_eq!(listed, ["j2", "j1"], "newest first");
    assert!(store.unfinished_jobs().unwrap().is_empty());

    store.create_job(&job("j3", "w", &now_ts()), &[]).unwrap();
    assert_eq!(store.purge_jobs("2000-01-01T00:00:00.000000+00:00").unwrap(), 0, "nothing that old");
    assert_eq!(store.purge_jobs("2999-01-01T00:00:00.000000+00:00").unwrap(), 2, "finished jobs only");
    assert!(store.job("j3").unwrap().is_some());
}

fn bot_context(b: &Backend) {
    let store = b.open(100);
    store.insert_conversation(&row("bot", "Orca-1", &now_ts())).unwrap();
    assert!(store.bot_context("bot").unwrap().is_none());
    let ctx = json!({
        "current_state": "awaiting_confirmation",
        "previous_state": "idle",
        "pending_workflow": [{"operation": "excel/extract-columns"}],
        "pending_job_id": "job-1",
        "workflow_params": {"columns": ["a"]},
        "intent_history": ["extract"],
        "user_preferences": {"lang": "en"},
        "metadata": {"m": true},
        "last_message_time": "2026-12-01T10:00:00.000000+00:00",
    });
    store.save_bot_context("bot", &ctx).unwrap();
    let saved = store.bot_context("bot").unwrap().unwrap();
    for key in [
        "current_state",
        "previous_state",
        "pending_workflow",
        "pending_job_id",
        "workflow_params",
        "intent_history",
        "user_preferences",
        "metadata",
        "last_message_time",
    ] {
        assert_eq!(saved[key], ctx[key], "{key}");
    }
    assert!(saved["updated_at"].is_string());
    // Absent JSON columns take their defaults on update.
    store.save_bot_context("bot", &json!({"current_state": "processing"})).unwrap();
    let saved = store.bot_context("bot").unwrap().unwrap();
    assert_eq!(
        (saved["intent_history"].clone(), saved["pending_workflow"].clone()),
        (json!([]), Value::Null)
    );
    store.reset_bot_state("bot").unwrap();
    let saved = store.bot_context("bot").unwrap().unwrap();
    assert_eq!(
        (saved["current_state"].as_str(), saved["previous_state"].as_str()),
        (Some("idle"), Some("processing"))
    );
    store.reset_bot_state("no-such-chat").unwrap();
}

fn restore_insert_full(b: &Backend) {
    let store = b.open(100);
    store.insert_conversation(&row("src", "Orca-1", &now_ts())).unwrap();
    store.add_message("src", "user", "hello", json!({"a": 1})).unwrap();
    store.create_job(&job("jr", "src", &now_ts()), &[step("jr", "r1", 0)]).unwrap();
    store.record_file("src", "p/in.csv", "uploaded").unwrap();
    store.record_file("src", "p/out.csv", "output").unwrap();
    let original: Conversation = store.conversation("src").unwrap().unwrap();

    let mut copy = original.clone();
    copy.chat_id = "copy".into();
    copy.workflow_steps[0].step_id = "r1-copy".into();
    copy.messages[0].message_id = "m-copy".into();
    let bot = json!({"current_state": "processing", "pending_job_id": "jr", "workflow_params": {"x": 1},
                     "last_message_time": "2026-12-01T10:00:00"});
    store.insert_full(&copy, false, Some(&bot)).unwrap();
    let restored = store.conversation("copy").unwrap().unwrap();
    assert_eq!(restored.messages, copy.messages);
    assert_eq!(restored.workflow_steps, copy.workflow_steps);
    assert_eq!(
        (restored.uploaded_files, restored.output_files),
        (copy.uploaded_files.clone(), copy.output_files.clone())
    );
    assert_eq!((restored.status, restored.created_at), (copy.status.clone(), copy.created_at.clone()));
    let ctx = store.bot_context("copy").unwrap().unwrap();
    assert_eq!(
        (ctx["current_state"].as_str(), &ctx["pending_job_id"]),
        (Some("idle"), &Value::Null),
        "restored idle"
    );
    assert_eq!(ctx["workflow_params"], json!({"x": 1}));
    assert_eq!(ctx["last_message_time"], "2026-12-01T10:00:00.000000+00:00");

    // Without overwrite: a conflict and nothing changes; with it: replaced whole.
    let mut smaller = copy.clone();
    smaller.messages.clear();
    smaller.status = "completed".into();
    assert!(matches!(store.insert_full(&smaller, false, None), Err(ChatError::Conflict(_))));
    assert_eq!(store.conversation("copy").unwrap().unwrap().messages.len(), 1);
    store.insert_full(&smaller, true, None).unwrap();
    let replaced = store.conversation("copy").unwrap().unwrap();
    assert!(replaced.messages.is_empty());
    assert_eq!(replaced.status, "completed");
    assert!(store.bot_context("copy").unwrap().is_none());
    assert_eq!(store.conversation("src").unwrap().unwrap(), original, "the source is untouched");
}

fn event_log(b: &Backend) {
    let store = b.open(3);
    let epoch = store.epoch();
    assert_eq!((store.last_seq("e").unwrap(), store.oldest_seq("e").unwrap()), (0, None));
    for expected in 1..=5u64 {
        let (seq, text) =
            store.append_next("e", "progress", &mut |seq| format!("{{\"seq\":{seq}}}")).unwrap();
        assert_eq!((seq, text), (expected, format!("{{\"seq\":{expected}}}")));
    }
    assert_eq!(store.last_seq("e").unwrap(), 5);
    assert_eq!(store.oldest_seq("e").unwrap(), Some(3), "at most 3 kept per chat");
    let after: Vec<u64> = store.events_after("e", 3, 10).unwrap().into_iter().map(|(s, _)| s).collect();
    assert_eq!(after, [4, 5]);
    let page = store.events_page("e", 0, 2).unwrap();
    assert_eq!(page, [(3, "{\"seq\":3}".to_string()), (4, "{\"seq\":4}".to_string())]);
    // Another chat numbers on its own.
    assert_eq!(store.append_next("other", "note", &mut |s| s.to_string()).unwrap().0, 1);
    // An explicit append (the log's default path) keeps the numbering.
    store.append("e", 6, "progress", "{\"seq\":6}").unwrap();
    assert_eq!(store.append_next("e", "progress", &mut |s| s.to_string()).unwrap().0, 7);

    // Time retention keeps each chat's newest event, so numbers are never reused.
    assert_eq!(store.purge_events("2000-01-01T00:00:00.000000+00:00").unwrap(), 0);
    store.purge_events("2999-01-01T00:00:00.000000+00:00").unwrap();
    assert_eq!(store.oldest_seq("e").unwrap(), Some(7));
    assert_eq!(store.last_seq("e").unwrap(), 7);
    assert_eq!(store.append_next("e", "note", &mut |s| s.to_string()).unwrap().0, 8);

    // The epoch belongs to the database: a reopened store (a restart, another node) has the same.
    drop(store);
    let reopened = b.open_node(3, "node-b");
    assert_eq!(reopened.epoch(), epoch);
    assert_eq!(reopened.last_seq("e").unwrap(), 8);
}

fn backup_snapshot(b: &Backend) {
    let store = b.open(100);
    store.insert_conversation(&row("snap", "Orca-1", &now_ts())).unwrap();
    store.add_message("snap", "user", "kept", json!({})).unwrap();
    store.create_job(&job("js", "snap", &now_ts()), &[step("js", "ss", 0)]).unwrap();
    store.record_file("snap", "p/in.csv", "uploaded").unwrap();
    store.save_bot_context("snap", &json!({"current_state": "idle", "intent_history": ["x"]})).unwrap();
    store.append_next("snap", "note", &mut |s| format!("{{\"seq\":{s}}}")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("snapshot.db");
    std::fs::File::create(&dest).unwrap();
    store.backup_to(&dest).unwrap();
    // Taken while in use: a later write is not in it.
    store.add_message("snap", "user", "after the snapshot", json!({})).unwrap();
    assert_snapshot(&dest, &store);
}

/// The snapshot opens as an embedded database with the same conversation, bot context and events.
fn assert_snapshot(dest: &Path, source: &Arc<dyn Store>) {
    let names: Vec<String> = std::fs::read_dir(dest.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["snapshot.db"], "one self-contained file");
    let snapshot = ChatStore::open(dest, 100).unwrap();
    let conv = Store::conversation(&snapshot, "snap").unwrap().unwrap();
    let mut expected = source.conversation("snap").unwrap().unwrap();
    expected.messages.pop();
    assert_eq!(conv, expected);
    assert_eq!(Store::job(&snapshot, "js").unwrap(), source.job("js").unwrap());
    assert_eq!(Store::bot_context(&snapshot, "snap").unwrap(), source.bot_context("snap").unwrap());
    assert_eq!(
        Store::events_page(&snapshot, "snap", 0, 10).unwrap(),
        source.events_page("snap", 0, 10).unwrap()
    );
    assert_eq!(oxcelize::events::EventLog::epoch(&snapshot), source.epoch(), "the snapshot keeps the epoch");
}

fn migration_is_idempotent(b: &Backend) {
    // Nodes starting at once on an empty database (cluster mode): one creates the schema, all agree on
    // the epoch. The embedded store has one process, so it is reopened in turn.
    let open = |i: usize| b.open_node(10, &format!("node-{i}")).epoch();
    let epochs: Vec<String> = if b.is_postgres() {
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..3).map(|i| s.spawn(move || open(i))).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    } else {
        (0..3).map(open).collect()
    };
    assert!(epochs.iter().all(|e| *e == epochs[0] && !e.is_empty()), "{epochs:?}");
    let store = b.open(10);
    store.insert_conversation(&row("x", "Orca-1", &now_ts())).unwrap();
    drop(store);
    assert!(b.open(10).conversation_row("x").unwrap().is_some(), "reopening keeps the data");
}

/// Appenders on several connections of several nodes number one chat's events strictly increasing and
/// without a gap. PostgreSQL only on this branch: the SQLite store's atomic `append_next` comes with the
/// cluster bus.
#[test]
fn concurrent_append_next_is_gap_free_postgres() {
    let Some(backend) = postgres("concurrent_append_next_is_gap_free_postgres") else { return };
    assert!(backend.is_postgres());
    const NODES: usize = 2;
    const THREADS: usize = 4;
    const EACH: u64 = 40;
    let nodes: Vec<Arc<dyn Store>> =
        (0..NODES).map(|i| backend.open_node(1000, &format!("node-{i}"))).collect();
    let per_thread: Vec<Vec<u64>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..NODES * THREADS)
            .map(|t| {
                let store = nodes[t % NODES].clone();
                s.spawn(move || {
                    (0..EACH)
                        .map(|_| {
                            let (seq, text) = store
                                .append_next("shared", "progress", &mut |seq| {
                                    format!("{{\"seq\":{seq},\"t\":{t}}}")
                                })
                                .unwrap();
                            assert!(text.starts_with(&format!("{{\"seq\":{seq},")));
                            seq
                        })
                        .collect::<Vec<u64>>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for seqs in &per_thread {
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "strictly increasing per appender: {seqs:?}");
    }
    let total = (NODES * THREADS) as u64 * EACH;
    let mut all: Vec<u64> = per_thread.concat();
    all.sort_unstable();
    assert_eq!(all, (1..=total).collect::<Vec<u64>>(), "every number once, no gap");
    let stored = nodes[0].events_page("shared", 0, 10_000).unwrap();
    assert_eq!(stored.len() as u64, total);
    for (seq, text) in stored {
        assert!(
            text.starts_with(&format!("{{\"seq\":{seq},")),
            "event {seq} stored with its own number: {text}"
        );
    }
    assert_eq!(nodes[1].last_seq("shared").unwrap(), total);
}

/// A render that panics leaves no half-open transaction behind: the number is not consumed.
#[test]
fn append_next_rolls_back_when_rendering_fails_postgres() {
    let Some(backend) = postgres("append_next_rolls_back_when_rendering_fails_postgres") else { return };
    let store = backend.open(100);
    store.append_next("r", "note", &mut |s| s.to_string()).unwrap();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = store.append_next("r", "note", &mut |_| panic!("render failed"));
    }));
    assert!(caught.is_err());
    assert_eq!(store.last_seq("r").unwrap(), 1);
    assert_eq!(store.append_next("r", "note", &mut |s| s.to_string()).unwrap().0, 2, "no gap");
}

/// The start-up errors name the key to fix.
#[test]
fn unreachable_or_invalid_postgres_names_the_key() {
    for url in ["postgres://127.0.0.1:1/db?connect_timeout=2", "postgres://host:notaport/db"] {
        let err = PgStore::connect(&PgOptions {
            url: url.into(),
            pool_size: 4,
            node_id: "n".into(),
            max_events_per_chat: 10,
        })
        .err()
        .expect("refused");
        assert!(err.to_string().starts_with("cluster.postgres_url: "), "{url}: {err}");
    }
}
