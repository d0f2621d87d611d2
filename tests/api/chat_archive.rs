//! Dump, restore (including hostile archives), SQLite backups and reading a reference database
//! (acceptance-chat.md E).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use serde_json::{json, Value};

use crate::chat_support::*;
use crate::common::{envelope, file_part, spawn_app, spawn_app_in, spawn_app_with, TestApp};

fn conv_dir(app: &TestApp, conv: &Value) -> std::path::PathBuf {
    let mut dir = app.config.chat_workflows.storage.workflows_path.clone();
    let pk = conv["partition_key"].as_str().unwrap();
    if !pk.is_empty() {
        dir = dir.join(pk);
    }
    dir.join(conv["chat_id"].as_str().unwrap())
}

fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    tree(dir)
        .into_iter()
        .map(|rel| {
            let bytes = std::fs::read(dir.join(&rel)).unwrap();
            (rel, bytes)
        })
        .collect()
}

async fn dump(app: &TestApp, chat: &str) -> (u16, Value) {
    envelope(app.client.post(format!("{}/chat/workflows/{chat}/dump", app.api)).send().await.unwrap()).await
}

async fn restore(app: &TestApp, archive: Vec<u8>, fields: &[(&str, &str)]) -> (u16, Value) {
    let mut form = reqwest::multipart::Form::new().part("dump_file", file_part("dump.tar.gz", archive));
    for (k, v) in fields {
        form = form.text(k.to_string(), v.to_string());
    }
    envelope(app.post_form("/chat/workflows/restore", form).await).await
}

fn members(archive: &[u8]) -> Vec<String> {
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    tar.entries().unwrap().map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned()).collect()
}

fn member(archive: &[u8], name: &str) -> Vec<u8> {
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    for e in tar.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().to_string_lossy() == name {
            let mut out = Vec::new();
            e.read_to_end(&mut out).unwrap();
            return out;
        }
    }
    panic!("no member {name}");
}

/// A conversation with uploads, intermediate and final outputs.
async fn busy_chat(app: &TestApp) -> String {
    let chat = chat_with_csv(app).await;
    upload(app, &chat, "extra.xlsx", sample_xlsx()).await;
    let mut body = three_steps();
    body["input_file"] = json!("sales.csv");
    assert_eq!(execute(app, &chat, &body).await.0, 200);
    chat
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e86_e87_e88_e89_e91_dump_layout_and_download() {
    let app = spawn_app().await;
    let chat = busy_chat(&app).await;
    let (status, body) = dump(&app, &chat).await;
    assert_eq!((status, body["message"].as_str().unwrap()), (200, "Conversation dumped successfully"));
    let name = body["data"]["dump_file"].as_str().unwrap();
    assert!(regex::Regex::new(&format!(r"^{chat}_\d{{8}}_\d{{6}}\.tar\.gz$")).unwrap().is_match(name));
    assert_eq!(body["data"]["download_url"], format!("{}/chat/downloads/{name}", app.api));
    let res = app.client.get(body["data"]["download_url"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("content-encoding").is_none());
    assert_eq!(res.headers()["content-type"], "application/gzip");
    let archive = res.bytes().await.unwrap().to_vec();
    let names = members(&archive);
    assert_eq!(names[0], format!("{chat}/"));
    assert!(names.iter().all(|n| n.starts_with(&format!("{chat}/"))), "{names:?}");
    for want in [
        "metadata.json",
        "conversation_metadata.json",
        "uploads/sales.csv",
        "uploads/extra.xlsx",
        "events.jsonl",
        "dump_manifest.json",
    ] {
        assert!(names.contains(&format!("{chat}/{want}")), "{want}: {names:?}");
    }
    assert!(
        names.iter().any(|n| n.contains("/intermediate/")) && names.iter().any(|n| n.contains("/outputs/"))
    );
    let meta: Value =
        serde_json::from_slice(&member(&archive, &format!("{chat}/conversation_metadata.json"))).unwrap();
    let conv = get_chat(&app, &chat).await;
    for key in ["chat_id", "workflow_steps", "uploaded_files", "output_files"] {
        assert_eq!(meta[key], conv[key], "e88 {key}");
    }
    assert_eq!(meta["messages"].as_array().unwrap().len(), conv["messages"].as_array().unwrap().len());
    let manifest: Value =
        serde_json::from_slice(&member(&archive, &format!("{chat}/dump_manifest.json"))).unwrap();
    assert_eq!(manifest["format_version"], 2);
    let events = String::from_utf8(member(&archive, &format!("{chat}/events.jsonl"))).unwrap();
    assert!(events.lines().any(|l| l.contains("workflow_completed")));

    // e89: a restored conversation dumps without duplicate members.
    let (status, _) = restore(&app, archive, &[("overwrite", "true")]).await;
    assert_eq!(status, 200);
    let (_, body) = dump(&app, &chat).await;
    let archive = app.download(body["data"]["download_url"].as_str().unwrap()).await;
    let names = members(&archive);
    let unique: std::collections::HashSet<_> = names.iter().collect();
    assert_eq!(unique.len(), names.len(), "{names:?}");

    let (status, body) = envelope(app.get("/chat/downloads/missing.tar.gz").await).await;
    assert_eq!((status, body["message"].as_str().unwrap()), (404, "File not found"), "e91");
    let (status, _) = dump(&app, "nope").await;
    assert_eq!(status, 404, "e90");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e93_e94_e95_e103_dump_delete_restore_is_byte_identical() {
    let app = spawn_app().await;
    let chat = busy_chat(&app).await;
    let before = get_chat(&app, &chat).await;
    let dir = conv_dir(&app, &before);
    let files = snapshot(&dir);
    assert!(files.len() >= 6, "{:?}", files.keys());
    let (_, body) = dump(&app, &chat).await;
    let archive = app.download(body["data"]["download_url"].as_str().unwrap()).await;
    let res = app.client.delete(format!("{}/chat/workflows/{chat}", app.api)).send().await.unwrap();
    assert_eq!(envelope(res).await.0, 200);
    assert!(!dir.exists());

    // Restart with another partition strategy: the archived partition key still wins (e94).
    app.stop().await;
    let TestApp { dir: root, mut config, .. } = app;
    config.chat_workflows.partition.strategy = oxcelize::config::PartitionStrategy::HashBased;
    let app = spawn_app_in(root, config).await;
    let dumps_before = tree(&app.config.chat_workflows.storage.dumps_path);
    let (status, body) = restore(&app, archive, &[]).await;
    assert_eq!(
        (status, body["message"].as_str().unwrap()),
        (200, "Conversation restored successfully"),
        "{body}"
    );
    assert_eq!(body["data"]["chat_id"], chat.as_str(), "j230");
    assert_eq!(body["data"]["partition_key"], before["partition_key"]);
    let mut after = get_chat(&app, &chat).await;
    let mut before = before;
    // Download URLs carry the new port; everything persisted must be identical.
    for conv in [&mut after, &mut before] {
        for m in conv["messages"].as_array_mut().unwrap() {
            m["metadata"].as_object_mut().unwrap().remove("download_url");
        }
    }
    for key in [
        "messages",
        "workflow_steps",
        "uploaded_files",
        "output_files",
        "participant_name",
        "status",
        "created_at",
    ] {
        assert_eq!(after[key], before[key], "e93 {key}");
    }
    assert_eq!(snapshot(&dir), files, "every file byte-identical");
    for p in after["output_files"].as_array().unwrap() {
        let name = p.as_str().unwrap().rsplit('/').next().unwrap();
        let url = format!("{}/chat/workflows/{chat}/files/{name}", app.api);
        assert_eq!(app.client.get(url).send().await.unwrap().status(), 200);
    }
    let (_, list) = envelope(app.get("/chat/workflows").await).await;
    assert!(
        list["data"]["conversations"].as_array().unwrap().iter().any(|c| c["chat_id"] == chat.as_str()),
        "e95"
    );
    assert_eq!(tree(&app.config.chat_workflows.storage.dumps_path), dumps_before, "e103");
    assert!(app.upload_files().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e92_e96_e97_conflicts_overwrite_and_copies() {
    let app = spawn_app().await;
    let chat = busy_chat(&app).await;
    let form = reqwest::multipart::Form::new().text("x", "y");
    let (status, body) = envelope(app.post_form("/chat/workflows/restore", form).await).await;
    assert_eq!((status, body["message"].as_str().unwrap()), (422, "No dump file provided"), "e92");
    let (_, body) = dump(&app, &chat).await;
    let archive = app.download(body["data"]["download_url"].as_str().unwrap()).await;
    let before = get_chat(&app, &chat).await;
    let files = snapshot(&conv_dir(&app, &before));
    let (status, body) = restore(&app, archive.clone(), &[]).await;
    assert_eq!(
        (status, body["message"].as_str().unwrap()),
        (409, format!("Conversation already exists: {chat}").as_str())
    );
    assert_eq!(get_chat(&app, &chat).await, before, "e96: nothing changed");
    assert_eq!(snapshot(&conv_dir(&app, &before)), files);
    let (status, _) = restore(&app, archive.clone(), &[("overwrite", "true")]).await;
    assert_eq!(status, 200);
    assert_eq!(snapshot(&conv_dir(&app, &before)), files);

    let (status, body) = restore(&app, archive, &[("chat_id", "copy-01")]).await;
    assert_eq!(status, 200, "{body}");
    let copy = get_chat(&app, "copy-01").await;
    assert_eq!(copy["chat_id"], "copy-01");
    let ids = |c: &Value| {
        c["messages"].as_array().unwrap().iter().map(|m| m["message_id"].clone()).collect::<Vec<_>>()
    };
    assert!(ids(&copy).iter().all(|id| !ids(&before).contains(id)), "e97: new message ids");
    assert!(copy["uploaded_files"][0].as_str().unwrap().contains("/copy-01/uploads/"));
    assert_eq!(get_chat(&app, &chat).await, get_chat(&app, &chat).await);
    assert_eq!(get_chat(&app, &chat).await["messages"], before["messages"], "original untouched");
    let url = format!("{}/chat/workflows/copy-01/files/sales.csv", app.api);
    assert_eq!(app.download(&url).await, SAMPLE_CSV.as_bytes());
}

/// A gzip tar with raw member names (no path checks), for hostile archives.
fn raw_archive(entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut b = tar::Builder::new(gz);
    for (name, kind, data, link) in entries {
        let mut h = tar::Header::new_old();
        let raw = name.as_bytes();
        h.as_old_mut().name[..raw.len()].copy_from_slice(raw);
        h.set_entry_type(*kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        if let Some(l) = link {
            h.as_old_mut().linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap()
}

fn conv_json(id: &str) -> Vec<u8> {
    json!({"chat_id": id, "participant_name": "Orca-1234", "status": "completed", "messages": [], "workflow_steps": [],
           "uploaded_files": [], "output_files": [], "metadata": {}, "created_at": "2026-02-06T18:11:05.349996",
           "updated_at": "2026-02-06T18:11:05", "partition_key": "2026/02"})
    .to_string()
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e98_e99_e100_e101_hostile_archives_write_nothing() {
    use tar::EntryType::{Directory as D, Link, Regular as F, Symlink};
    let app = spawn_app_with(|c| {
        c.chat_workflows.dump.max_restore_size_mb = 1;
        c.chat_workflows.dump.max_restore_members = 20;
    })
    .await;
    let meta = conv_json("evil1");
    let big = vec![0u8; 1024 * 1024 + 1];
    let many: Vec<(String, tar::EntryType, Vec<u8>, Option<&str>)> =
        (0..25).map(|i| (format!("evil1/uploads/f{i}.csv"), F, b"a\n".to_vec(), None)).collect();
    let many_refs: Vec<(&str, tar::EntryType, &[u8], Option<&str>)> =
        many.iter().map(|(n, k, d, l)| (n.as_str(), *k, d.as_slice(), *l)).collect();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "dotdot",
            raw_archive(&[
                ("evil1/", D, b"", None),
                ("evil1/conversation_metadata.json", F, &meta, None),
                ("evil1/../evil.txt", F, b"x", None),
            ]),
        ),
        ("absolute", raw_archive(&[("evil1/", D, b"", None), ("/tmp/evil.txt", F, b"x", None)])),
        (
            "symlink",
            raw_archive(&[
                ("evil1/", D, b"", None),
                ("evil1/conversation_metadata.json", F, &meta, None),
                ("evil1/uploads/l.csv", Symlink, b"", Some("/etc/passwd")),
            ]),
        ),
        (
            "hardlink",
            raw_archive(&[
                ("evil1/", D, b"", None),
                ("evil1/conversation_metadata.json", F, &meta, None),
                ("evil1/uploads/h.csv", Link, b"", Some("/etc/passwd")),
            ]),
        ),
        (
            "two tops",
            raw_archive(&[
                ("evil1/", D, b"", None),
                ("evil1/conversation_metadata.json", F, &meta, None),
                ("other/x.csv", F, b"x", None),
            ]),
        ),
        (
            "oversize",
            raw_archive(&[
                ("evil1/", D, b"", None),
                ("evil1/conversation_metadata.json", F, &meta, None),
                ("evil1/uploads/big.csv", F, &big, None),
            ]),
        ),
        ("too many", raw_archive(&many_refs)),
        ("bad top id", raw_archive(&[("../", D, b"", None)])),
        ("not gzip", b"this is not an archive".to_vec()),
    ];
    let root = app.config.chat_workflows.storage.workflows_path.clone();
    let dumps = app.config.chat_workflows.storage.dumps_path.clone();
    let (before_root, before_dumps) = (tree(&root), tree(&dumps));
    for (name, archive) in cases {
        let (status, body) = restore(&app, archive, &[]).await;
        assert_eq!(status, 422, "{name}: {body}");
        assert!(body["message"].as_str().unwrap().starts_with("Invalid dump archive"), "{name}: {body}");
        if name == "not gzip" {
            assert_eq!(body["message"], "Invalid dump archive: not a gzip tar file", "e100");
        }
        assert_eq!(tree(&root), before_root, "{name}: nothing written under workflows_path");
        assert_eq!(tree(&dumps), before_dumps, "{name}: nothing written under dumps_path");
        assert!(app.upload_files().is_empty(), "{name}");
        assert!(!app.path("evil.txt").exists() && !app.path("automation/evil.txt").exists());
        let (_, list) = envelope(app.get("/chat/workflows").await).await;
        assert_eq!(list["total"], 0, "{name}: no DB row");
    }
    assert!(!Path::new("/tmp/evil.txt").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e102_reference_dump_restores_with_normalised_timestamps() {
    let app = spawn_app().await;
    let id = "4c1e9a0b-1d2e-4f3a-9b8c-7d6e5f4a3b2c";
    let old = format!("./automation/workflows/2026/02/{id}");
    let conv = json!({
        "chat_id": id, "participant_name": "Cygnus-5120", "status": "completed",
        "messages": [{"message_id": "m1", "message_type": "file_upload", "content": "File uploaded: a.csv",
                      "metadata": {"file_path": format!("{old}/uploads/a.csv")}, "created_at": "2026-02-06T18:11:05.349996"}],
        "workflow_steps": [], "uploaded_files": [format!("{old}/uploads/a.csv")], "output_files": [],
        "metadata": {}, "created_at": "2026-02-06T18:11:05", "updated_at": "2026-02-06T18:12:00.5", "partition_key": "2026/02"});
    let meta = json!({"chat_id": id, "created_at": "2026-02-06T18:11:05", "partition_key": "2026/02"});
    let (conv, meta) = (serde_json::to_vec_pretty(&conv).unwrap(), serde_json::to_vec_pretty(&meta).unwrap());
    let archive = raw_archive(&[
        (&format!("{id}/"), tar::EntryType::Directory, b"", None),
        (&format!("{id}/metadata.json"), tar::EntryType::Regular, &meta, None),
        (&format!("{id}/uploads/a.csv"), tar::EntryType::Regular, b"x,y\n1,2\n", None),
        (&format!("{id}/conversation_metadata.json"), tar::EntryType::Regular, &conv, None),
    ]);
    let (status, body) = restore(&app, archive, &[]).await;
    assert_eq!(status, 200, "{body}");
    let got = get_chat(&app, id).await;
    assert_eq!(got["created_at"], "2026-02-06T18:11:05.000000+00:00");
    assert_eq!(got["updated_at"], "2026-02-06T18:12:00.500000+00:00");
    assert_eq!(got["messages"][0]["created_at"], "2026-02-06T18:11:05.349996+00:00");
    let path = got["uploaded_files"][0].as_str().unwrap();
    assert!(
        path.ends_with(&format!("2026/02/{id}/uploads/a.csv")) && !path.starts_with("./automation"),
        "{path}"
    );
    assert_eq!(got["messages"][0]["metadata"]["file_path"], path);
    assert_eq!(
        app.download(got["messages"][0]["metadata"]["download_url"].as_str().unwrap()).await,
        b"x,y\n1,2\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e104_e105_e106_backups_are_consistent_and_retained() {
    let app = spawn_app().await;
    let chat = chat_with_csv(&app).await;
    let snapshots = app.config.chat_workflows.backup.snapshot_path.clone();
    std::fs::create_dir_all(&snapshots).unwrap();
    std::fs::write(snapshots.join("chat_backup_20000101_000000.db"), b"old").unwrap();
    // Runs are writing while the snapshot is taken.
    let mut body = three_steps();
    body["async"] = json!(true);
    for _ in 0..3 {
        execute(&app, &chat, &body).await;
    }
    let res = app.client.post(format!("{}/chat/sqlite/backup", app.api)).send().await.unwrap();
    let (status, body) = envelope(res).await;
    assert_eq!((status, body["message"].as_str().unwrap()), (200, "Database backup created successfully"));
    let name = body["data"]["backup_file"].as_str().unwrap();
    assert!(regex::Regex::new(r"^chat_backup_\d{8}_\d{6}\.db$").unwrap().is_match(name));
    assert!(body["data"]["path"].as_str().unwrap().ends_with(name));
    assert_eq!(body["data"]["deleted_snapshots"], json!(["chat_backup_20000101_000000.db"]), "e106");
    let db = rusqlite::Connection::open(snapshots.join(name)).unwrap();
    let ok: String = db.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(ok, "ok", "e105");
    let n: i64 =
        db.query_row("SELECT COUNT(*) FROM conversations WHERE chat_id = ?1", [&chat], |r| r.get(0)).unwrap();
    assert_eq!(n, 1, "e104");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_chat_db_is_opened_and_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let config = crate::common::test_config(dir.path());
    let db_path = config.chat_workflows.storage.sqlite_path.clone();
    std::fs::create_dir_all(db_path.parent().unwrap()).unwrap();
    let wf = config.chat_workflows.storage.workflows_path.to_string_lossy().into_owned();
    {
        let db = rusqlite::Connection::open(&db_path).unwrap();
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS conversations (chat_id TEXT PRIMARY KEY, participant_name TEXT NOT NULL,
               status TEXT NOT NULL, partition_key TEXT, metadata TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS messages (message_id TEXT PRIMARY KEY, chat_id TEXT NOT NULL, message_type TEXT NOT NULL,
               content TEXT NOT NULL, metadata TEXT, created_at TEXT NOT NULL,
               FOREIGN KEY (chat_id) REFERENCES conversations(chat_id) ON DELETE CASCADE);
             CREATE TABLE IF NOT EXISTS workflow_steps (step_id TEXT PRIMARY KEY, chat_id TEXT NOT NULL, operation TEXT NOT NULL,
               arguments TEXT NOT NULL, input_file TEXT, output_file TEXT, status TEXT NOT NULL, progress INTEGER DEFAULT 0,
               error_message TEXT, started_at TEXT, completed_at TEXT,
               FOREIGN KEY (chat_id) REFERENCES conversations(chat_id) ON DELETE CASCADE);
             CREATE TABLE IF NOT EXISTS files (file_id INTEGER PRIMARY KEY AUTOINCREMENT, chat_id TEXT NOT NULL,
               file_path TEXT NOT NULL, file_type TEXT NOT NULL, created_at TEXT NOT NULL,
               FOREIGN KEY (chat_id) REFERENCES conversations(chat_id) ON DELETE CASCADE);
             CREATE INDEX IF NOT EXISTS idx_conv_status ON conversations(status);
             CREATE INDEX IF NOT EXISTS idx_conv_created ON conversations(created_at);
             CREATE INDEX IF NOT EXISTS idx_messages_chat ON messages(chat_id);
             CREATE INDEX IF NOT EXISTS idx_steps_chat ON workflow_steps(chat_id);
             CREATE INDEX IF NOT EXISTS idx_files_chat ON files(chat_id);",
        )
        .unwrap();
        let p = format!("{wf}/2026/02/ref-chat/uploads/a.csv");
        db.execute("INSERT INTO conversations VALUES ('ref-chat', 'Orca-4321', 'completed', '2026/02', '{}', '2026-02-06T18:11:05.349996', '2026-02-06T18:11:05')", []).unwrap();
        for t in ["2026-02-06T18:11:06", "2026-02-06T18:11:07"] {
            db.execute("INSERT INTO files (chat_id, file_path, file_type, created_at) VALUES ('ref-chat', ?1, 'uploaded', ?2)", [&p, t]).unwrap();
        }
        db.execute(
            "INSERT INTO messages VALUES ('m1', 'ref-chat', 'file_upload', 'File uploaded: a.csv', ?1, '2026-02-06T18:11:06')",
            [json!({"file_path": p}).to_string()],
        )
        .unwrap();
        db.execute("INSERT INTO workflow_steps (step_id, chat_id, operation, arguments, status, progress) VALUES ('s1', 'ref-chat', 'excel/extract-columns', '{}', 'completed', 100)", []).unwrap();
        let up = format!("{wf}/2026/02/ref-chat/uploads");
        std::fs::create_dir_all(&up).unwrap();
        std::fs::write(format!("{up}/a.csv"), "k\nv\n").unwrap();
    }
    let app = spawn_app_in(dir, config).await;
    let conv = get_chat(&app, "ref-chat").await;
    assert_eq!(conv["created_at"], "2026-02-06T18:11:05.349996+00:00");
    assert_eq!(conv["updated_at"], "2026-02-06T18:11:05.000000+00:00");
    assert_eq!(conv["uploaded_files"].as_array().unwrap().len(), 1, "duplicate file rows removed");
    assert_eq!(conv["messages"][0]["created_at"], "2026-02-06T18:11:06.000000+00:00");
    assert_eq!(conv["workflow_steps"][0]["step_id"], "s1");
    assert_eq!(
        app.download(conv["messages"][0]["metadata"]["download_url"].as_str().unwrap()).await,
        b"k\nv\n"
    );
    let (status, res) = execute(
        &app,
        "ref-chat",
        &json!({"steps": [{"operation": "excel/extract-columns", "arguments": {"columns": ["k"]}}]}),
    )
    .await;
    assert_eq!(status, 200, "{res}");
    assert_eq!(res["data"]["results"][0]["data"]["columns"]["k"]["values"], json!(["v"]));
    let db = rusqlite::Connection::open(&app.config.chat_workflows.storage.sqlite_path).unwrap();
    let v: i64 = db.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(v, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e107_scheduled_backup_appears_without_an_api_call() {
    let app = spawn_app_with(|c| c.chat_workflows.backup.interval_minutes = 1).await;
    create_chat(&app).await;
    let dir = app.config.chat_workflows.backup.snapshot_path.clone();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    loop {
        let names = tree(&dir);
        if names.iter().any(|n| n.starts_with("chat_backup_") && n.ends_with(".db")) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no scheduled snapshot within 90 s");
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}
