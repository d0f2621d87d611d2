//! `storage.backend: s3` against an in-process S3-compatible server (s3s + s3s-fs on a loopback port 0):
//! REST outputs, chat uploads, workflow outputs, dumps and restores live in the bucket, are served back with
//! the same URLs, headers and statuses as from local folders, and leave no file in the local folders; a
//! store that is missing, unreachable or refuses the credentials stops the start with the key to fix.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use serde_json::{json, Value};

use crate::chat_support::*;
use crate::common::{envelope, file_part, spawn_app_in, test_config, TestApp};
use crate::fixtures::{form, post_ok};
use crate::pg::fresh_schema;

const BUCKET: &str = "oxcelize-test";
const ACCESS_KEY: &str = "test-access-key";
const SECRET_KEY: &str = "test-secret-key";
const PREFIX: &str = "node-files";

/// An S3-compatible server over a temporary folder; stops when dropped.
struct S3Server {
    endpoint: String,
    root: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl S3Server {
    async fn start() -> S3Server {
        let root = tempfile::tempdir().expect("s3 root");
        std::fs::create_dir(root.path().join(BUCKET)).expect("bucket folder");
        let fs = s3s_fs::FileSystem::new(root.path()).expect("s3s-fs");
        let mut builder = s3s::service::S3ServiceBuilder::new(fs);
        builder.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY.to_string()));
        let service = builder.build().into_shared();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind s3");
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            // Held here so that stopping the server also closes the connections clients keep alive.
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((socket, _)) = listener.accept().await {
                let service = service.clone();
                connections.spawn(async move {
                    let _ = ConnBuilder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(socket), service)
                        .await;
                });
                while connections.try_join_next().is_some() {}
            }
        });
        S3Server { endpoint, root, task }
    }

    /// The bucket's folder on disk (s3s-fs keeps object `k` at `{bucket}/k`).
    fn bucket_dir(&self) -> PathBuf {
        self.root.path().join(BUCKET)
    }

    /// Object keys under `prefix` (relative to the bucket), sorted.
    fn keys(&self, prefix: &str) -> Vec<String> {
        tree(&self.bucket_dir()).into_iter().filter(|k| k.starts_with(prefix)).collect()
    }

    fn object(&self, key: &str) -> Vec<u8> {
        std::fs::read(self.bucket_dir().join(key)).unwrap_or_else(|e| panic!("object {key}: {e}"))
    }
}

fn s3_config(root: &Path, s3: &S3Server) -> oxcelize::config::Config {
    let mut c = test_config(root);
    c.storage.backend = oxcelize::config::StorageBackend::S3;
    let s = &mut c.storage.s3;
    s.endpoint = s3.endpoint.clone();
    s.bucket = BUCKET.into();
    s.prefix = PREFIX.into();
    s.access_key_id = ACCESS_KEY.into();
    s.secret_access_key = SECRET_KEY.into();
    s.allow_http = true;
    c
}

async fn s3_app(s3: &S3Server) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = s3_config(dir.path(), s3);
    spawn_app_in(dir, config).await
}

/// Files (not folders) left under a local folder.
fn local_files(dir: &Path) -> Vec<String> {
    tree(dir)
}

fn conv_key(conv: &Value) -> String {
    let pk = conv["partition_key"].as_str().unwrap();
    let id = conv["chat_id"].as_str().unwrap();
    if pk.is_empty() {
        format!("{PREFIX}/workflows/{id}")
    } else {
        format!("{PREFIX}/workflows/{pk}/{id}")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_outputs_go_to_the_bucket_and_stream_back_with_ranges_from_any_node() {
    let s3 = S3Server::start().await;
    let app = s3_app(&s3).await;
    let (data, _) =
        post_ok(&app, "/csv/convert-to-excel", form("sales.csv", SAMPLE_CSV.as_bytes().to_vec(), &[])).await;
    let url = data["download_url"].as_str().unwrap().to_string();
    let name = url.rsplit('/').next().unwrap().to_string();
    assert!(url.starts_with(&format!("{}/files/downloads/", app.api)), "{url}");
    // The output is an object of the bucket, not a file of the node.
    let key = format!("{PREFIX}/outputs/{name}");
    assert_eq!(s3.keys(&format!("{PREFIX}/outputs/")), vec![key.clone()]);
    assert!(app.output_files().is_empty(), "local outputs left: {:?}", app.output_files());
    let stored = s3.object(&key);
    assert_eq!(&stored[..2], b"PK", "an xlsx workbook");

    let res = app.client.get(&url).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let headers = res.headers().clone();
    assert_eq!(headers["content-type"], "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet");
    assert_eq!(headers["content-disposition"], format!("attachment; filename=\"{name}\""));
    assert_eq!(headers["content-length"], stored.len().to_string().as_str());
    assert_eq!(headers["accept-ranges"], "bytes");
    assert!(headers.contains_key("etag") && headers.contains_key("last-modified"));
    assert_eq!(res.bytes().await.unwrap().to_vec(), stored);

    let ranged = app.client.get(&url).header("range", "bytes=2-11").send().await.unwrap();
    assert_eq!(ranged.status(), 206);
    assert_eq!(ranged.headers()["content-range"], format!("bytes 2-11/{}", stored.len()).as_str());
    assert_eq!(ranged.headers()["content-length"], "10");
    assert_eq!(ranged.bytes().await.unwrap().to_vec(), stored[2..12].to_vec());
    // An unsatisfiable range is answered as the local backend answers it (status and Content-Range).
    let local = crate::common::spawn_app().await;
    let (local_data, _) =
        post_ok(&local, "/csv/convert-to-excel", form("sales.csv", SAMPLE_CSV.as_bytes().to_vec(), &[]))
            .await;
    let local_url = local_data["download_url"].as_str().unwrap();
    let local_len = local.download(local_url).await.len();
    let local_beyond = local
        .client
        .get(local_url)
        .header("range", format!("bytes={}-", local_len + 5))
        .send()
        .await
        .unwrap();
    let beyond =
        app.client.get(&url).header("range", format!("bytes={}-", stored.len() + 5)).send().await.unwrap();
    assert!(beyond.status().is_client_error(), "{:?}", beyond.headers());
    assert_eq!(beyond.status(), local_beyond.status());
    assert_eq!(beyond.headers()["content-range"], format!("bytes */{}", stored.len()).as_str());
    assert_eq!(local_beyond.headers()["content-range"], format!("bytes */{local_len}").as_str());
    local.stop().await;
    let etag = headers["etag"].to_str().unwrap();
    let cached = app.client.get(&url).header("if-none-match", etag).send().await.unwrap();
    assert_eq!(cached.status(), 304);

    // A second node with its own folders serves the same URL path from the shared bucket.
    let other = s3_app(&s3).await;
    let from_other = other.download(&format!("{}/files/downloads/{name}", other.api)).await;
    assert_eq!(from_other, stored);

    // Unknown names are 404 envelopes, as with local folders.
    let (status, body) = envelope(app.get("/files/downloads/nothing-here.xlsx").await).await;
    assert_eq!((status, body["message"].as_str()), (404, Some("File not found")), "{body}");

    // Retention works on the bucket: an expired output is deleted, its URL then answers 404.
    let swept = app.state.files.outputs.sweep_older_than(Duration::ZERO).await.expect("sweep");
    assert_eq!(swept, 1);
    assert!(s3.keys(&format!("{PREFIX}/outputs/")).is_empty());
    assert_eq!(app.client.get(&url).send().await.unwrap().status(), 404);

    let (status, body) = envelope(app.get("/health/ready").await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["checks"]["file_store"]["ok"], true, "{body}");
    other.stop().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_upload_workflow_download_and_delete_use_the_bucket() {
    let s3 = S3Server::start().await;
    let app = s3_app(&s3).await;
    let chat = chat_with_csv(&app).await;
    let conv = get_chat(&app, &chat).await;
    let prefix = conv_key(&conv);
    let local_root = app.config.chat_workflows.storage.workflows_path.clone();
    assert_eq!(
        s3.keys(&prefix),
        vec![format!("{prefix}/metadata.json"), format!("{prefix}/uploads/sales.csv")]
    );
    assert_eq!(s3.object(&format!("{prefix}/uploads/sales.csv")), SAMPLE_CSV.as_bytes());
    assert!(local_files(&local_root).is_empty(), "local files: {:?}", local_files(&local_root));
    assert!(app.upload_files().is_empty(), "upload spool left: {:?}", app.upload_files());

    // A large upload goes up as a multipart upload (over 8 MiB) and comes back byte for byte.
    let mut big = String::from("id,text\n");
    let mut i = 0;
    while big.len() < 9 * 1024 * 1024 {
        big.push_str(&format!("{i},row number {i} with some padding to make it longer\n"));
        i += 1;
    }
    let (status, body) = upload(&app, &chat, "big.csv", big.clone().into_bytes()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(s3.object(&format!("{prefix}/uploads/big.csv")), big.as_bytes());
    let big_url = format!("{}/chat/workflows/{chat}/files/big.csv", app.api);
    let tail = app.client.get(&big_url).header("range", "bytes=-100").send().await.unwrap();
    assert_eq!(tail.status(), 206);
    assert_eq!(tail.bytes().await.unwrap().to_vec(), big.as_bytes()[big.len() - 100..].to_vec());

    // The workflow reads its input from the bucket and puts its outputs there.
    let mut body = three_steps();
    body["input_file"] = json!("sales.csv");
    let (status, result) = execute(&app, &chat, &body).await;
    assert_eq!(status, 200, "{result}");
    let outputs = result["data"]["output_files"].as_array().expect("output_files").clone();
    assert!(!outputs.is_empty(), "{result}");
    let keys = s3.keys(&prefix);
    assert!(keys.iter().any(|k| k.contains("/outputs/")), "{keys:?}");
    assert!(local_files(&local_root).is_empty(), "local files after the run: {:?}", local_files(&local_root));
    let last = outputs.last().unwrap()["download_url"].as_str().unwrap();
    let res = app.client.get(last).send().await.unwrap();
    assert_eq!(res.status(), 200, "{last}");
    assert!(res.headers()["content-disposition"].to_str().unwrap().starts_with("attachment"));
    let rows = xlsx_rows(&res.bytes().await.unwrap());
    let ids: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(ids, ["customer_id", "cust001", "cust003"], "the normalized search result: {rows:?}");
    // A file of another folder or name is a 404 envelope, a bad name a 400, as with local folders.
    let (status, _) = envelope(app.get(&format!("/chat/workflows/{chat}/files/none.csv")).await).await;
    assert_eq!(status, 404);
    let (status, _) =
        envelope(app.get(&format!("/chat/workflows/{chat}/files/..%2Fmetadata.json")).await).await;
    assert_eq!(status, 400);

    // Deleting the conversation deletes its objects.
    let res = app.client.delete(format!("{}/chat/workflows/{chat}", app.api)).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(s3.keys(&prefix).is_empty(), "objects left: {:?}", s3.keys(&prefix));
    assert!(local_files(&local_root).is_empty());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dump_and_restore_go_through_the_bucket() {
    let s3 = S3Server::start().await;
    let app = s3_app(&s3).await;
    let chat = chat_with_csv(&app).await;
    let mut body = three_steps();
    body["input_file"] = json!("sales.csv");
    assert_eq!(execute(&app, &chat, &body).await.0, 200);
    let before = get_chat(&app, &chat).await;
    let source_prefix = conv_key(&before);

    let (status, dumped) =
        envelope(app.client.post(format!("{}/chat/workflows/{chat}/dump", app.api)).send().await.unwrap())
            .await;
    assert_eq!(status, 200, "{dumped}");
    let name = dumped["data"]["dump_file"].as_str().unwrap();
    assert_eq!(s3.keys(&format!("{PREFIX}/dumps/")), vec![format!("{PREFIX}/dumps/{name}")]);
    assert!(local_files(&app.config.chat_workflows.storage.dumps_path).is_empty());
    let res = app.client.get(dumped["data"]["download_url"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/gzip");
    let archive = res.bytes().await.unwrap().to_vec();
    assert_eq!(archive, s3.object(&format!("{PREFIX}/dumps/{name}")));
    let mut members = Vec::new();
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive.as_slice()));
    for e in tar.entries().unwrap() {
        members.push(e.unwrap().path().unwrap().to_string_lossy().into_owned());
    }
    assert!(members.contains(&format!("{chat}/uploads/sales.csv")), "{members:?}");
    assert!(members.iter().any(|m| m.contains("/outputs/")), "{members:?}");
    assert!(local_files(&app.config.chat_workflows.storage.workflows_path).is_empty(), "dump copy left");

    // Restored under a new id: its files are objects under the new conversation.
    let copy_id = "restored-copy-0001";
    let form = reqwest::multipart::Form::new()
        .part("dump_file", file_part("dump.tar.gz", archive))
        .text("chat_id", copy_id);
    let (status, restored) = envelope(app.post_form("/chat/workflows/restore", form).await).await;
    assert_eq!(status, 200, "{restored}");
    let copy = get_chat(&app, copy_id).await;
    let copy_prefix = conv_key(&copy);
    let copied = s3.keys(&copy_prefix);
    assert!(copied.contains(&format!("{copy_prefix}/uploads/sales.csv")), "{copied:?}");
    assert!(copied.contains(&format!("{copy_prefix}/metadata.json")), "{copied:?}");
    let source_names: Vec<String> =
        s3.keys(&source_prefix).iter().map(|k| k[source_prefix.len()..].to_string()).collect();
    let copy_names: Vec<String> = copied.iter().map(|k| k[copy_prefix.len()..].to_string()).collect();
    assert_eq!(copy_names, source_names);
    let csv = app.download(&format!("{}/chat/workflows/{copy_id}/files/sales.csv", app.api)).await;
    assert_eq!(csv, SAMPLE_CSV.as_bytes());
    // The restored conversation runs a workflow on its restored upload.
    assert_eq!(execute(&app, copy_id, &body).await.0, 200);
    assert!(local_files(&app.config.chat_workflows.storage.workflows_path).is_empty());
    app.stop().await;
}

/// Builds an App on `config`, expecting start-up to fail; returns the error text.
async fn start_error(config: oxcelize::config::Config) -> String {
    match oxcelize::App::build(config).await {
        Ok(_) => panic!("the app started on an unusable store"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_store_stops_start_up_naming_the_key() {
    let s3 = S3Server::start().await;
    let dir = tempfile::tempdir().unwrap();

    let mut wrong_secret = s3_config(dir.path(), &s3);
    wrong_secret.storage.s3.secret_access_key = "not-the-secret".into();
    let err = start_error(wrong_secret).await;
    assert!(err.contains("storage.s3.access_key_id / storage.s3.secret_access_key"), "{err}");

    let mut missing_bucket = s3_config(dir.path(), &s3);
    missing_bucket.storage.s3.bucket = "no-such-bucket".into();
    let err = start_error(missing_bucket).await;
    assert!(err.contains("storage.s3.bucket") && err.contains("no-such-bucket"), "{err}");

    // Nothing listens there any more.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let mut unreachable = s3_config(dir.path(), &s3);
    unreachable.storage.s3.endpoint = closed_endpoint;
    let err = start_error(unreachable).await;
    assert!(err.contains("storage.s3.endpoint"), "{err}");

    // Nothing was written to the bucket by the failed starts.
    assert!(s3.keys("").is_empty(), "{:?}", s3.keys(""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_reports_a_store_that_went_away() {
    let s3 = S3Server::start().await;
    let app = s3_app(&s3).await;
    let (status, body) = envelope(app.get("/health/ready").await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["checks"]["file_store"], json!({"ok": true}), "{body}");

    drop(s3);
    let (status, body) = envelope(app.get("/health/ready").await).await;
    assert_eq!((status, body["status_code"].as_u64()), (503, Some(503)), "{body}");
    assert_eq!(body["data"]["ready"], false, "{body}");
    let check = &body["data"]["checks"]["file_store"];
    assert_eq!(check["ok"], false, "{body}");
    let reason = check["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("storage.s3.endpoint") && reason.contains(BUCKET), "{reason}");
    // The local checks still pass: only the store is named.
    assert_eq!(body["data"]["checks"]["upload_folder"]["ok"], true, "{body}");
    app.stop().await;
}

/// A cluster node on the shared PostgreSQL schema, Redis and bucket, with local folders of its own.
async fn cluster_node(s3: &S3Server, postgres_url: &str, redis_url: &str, node: &str) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = s3_config(dir.path(), s3);
    config.cluster.enabled = true;
    config.cluster.node_id = node.into();
    config.cluster.postgres_url = postgres_url.into();
    config.cluster.redis_url = redis_url.into();
    spawn_app_in(dir, config).await
}

/// Files a node keeps locally under its conversation folders (its working copy only).
fn working_copy(app: &TestApp) -> Vec<String> {
    local_files(&app.config.chat_workflows.storage.workflows_path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_share_files_created_uploaded_downloaded_dumped_and_restored_on_different_nodes() {
    let test = "s3_storage::three_nodes";
    let Ok(redis_url) = std::env::var("OXCELIZE_TEST_REDIS_URL") else {
        eprintln!("SKIPPED {test}: set OXCELIZE_TEST_REDIS_URL (e.g. eval \"$(.ci/services.sh start DIR)\")");
        return;
    };
    let Some(schema) = fresh_schema(test) else { return };
    let s3 = S3Server::start().await;
    let a = cluster_node(&s3, &schema.url, &redis_url, "node-a").await;
    let b = cluster_node(&s3, &schema.url, &redis_url, "node-b").await;
    let c = cluster_node(&s3, &schema.url, &redis_url, "node-c").await;
    for node in [&a, &b, &c] {
        let (status, ready) = envelope(node.get("/health/ready").await).await;
        assert_eq!(status, 200, "{ready}");
        for check in ["file_store", "postgresql", "redis"] {
            assert_eq!(ready["data"]["checks"][check]["ok"], true, "{check}: {ready}");
        }
    }

    // Created on A, uploaded through B: the file is an object of the bucket, on no node's disk.
    let chat = create_chat(&a).await;
    let (status, body) = upload(&b, &chat, "sales.csv", SAMPLE_CSV.as_bytes().to_vec()).await;
    assert_eq!(status, 200, "{body}");
    let prefix = conv_key(&get_chat(&c, &chat).await);
    assert_eq!(s3.object(&format!("{prefix}/uploads/sales.csv")), SAMPLE_CSV.as_bytes());
    for node in [&a, &b, &c] {
        assert!(working_copy(node).is_empty(), "{:?}", working_copy(node));
    }

    // Downloaded from C, with the same URL shape as any node's.
    let csv = c.download(&format!("{}/chat/workflows/{chat}/files/sales.csv", c.api)).await;
    assert_eq!(csv, SAMPLE_CSV.as_bytes());

    // Processed on C (its input fetched from the bucket), the result downloaded from A.
    let mut run = three_steps();
    run["input_file"] = json!("sales.csv");
    let (status, result) = execute(&c, &chat, &run).await;
    assert_eq!(status, 200, "{result}");
    let outputs = result["data"]["output_files"].as_array().expect("output_files").clone();
    let last_url = outputs.last().expect("an output")["download_url"].as_str().unwrap().to_string();
    let last_name = last_url.rsplit('/').next().unwrap().to_string();
    let from_a = a.download(&format!("{}/chat/workflows/{chat}/files/{last_name}", a.api)).await;
    let ids: Vec<String> = xlsx_rows(&from_a).into_iter().map(|r| r[0].clone()).collect();
    assert_eq!(ids, ["customer_id", "cust001", "cust003"]);
    let objects_before = s3.keys(&format!("{prefix}/"));

    // Dumped on A; the archive is served by C from the bucket.
    let res = a.client.post(format!("{}/chat/workflows/{chat}/dump", a.api)).send().await.unwrap();
    let (status, dumped) = envelope(res).await;
    assert_eq!(status, 200, "{dumped}");
    let dump_name = dumped["data"]["dump_file"].as_str().unwrap().to_string();
    let archive = c.download(&format!("{}/chat/downloads/{dump_name}", c.api)).await;
    assert_eq!(archive, s3.object(&format!("{PREFIX}/dumps/{dump_name}")));

    // Deleted on B: gone for every node and from the bucket.
    let res = b.client.delete(format!("{}/chat/workflows/{chat}", b.api)).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(s3.keys(&format!("{prefix}/")).is_empty(), "{:?}", s3.keys(&format!("{prefix}/")));
    let (status, _) = envelope(c.get(&format!("/chat/workflows/{chat}/files/sales.csv")).await).await;
    assert_eq!(status, 404);

    // Restored on B: the same objects come back, C serves them, and B runs a workflow on them.
    let form = reqwest::multipart::Form::new().part("dump_file", file_part("dump.tar.gz", archive));
    let (status, restored) = envelope(b.post_form("/chat/workflows/restore", form).await).await;
    assert_eq!(status, 200, "{restored}");
    assert_eq!(s3.keys(&format!("{prefix}/")), objects_before);
    let csv = c.download(&format!("{}/chat/workflows/{chat}/files/sales.csv", c.api)).await;
    assert_eq!(csv, SAMPLE_CSV.as_bytes());
    let again = c.download(&format!("{}/chat/workflows/{chat}/files/{last_name}", c.api)).await;
    assert_eq!(again, from_a);
    let (status, result) = execute(&b, &chat, &run).await;
    assert_eq!(status, 200, "{result}");
    for node in [&a, &b, &c] {
        assert!(working_copy(node).is_empty(), "{:?}", working_copy(node));
    }
    c.stop().await;
    b.stop().await;
    a.stop().await;
}
