//! Conversations, uploads, downloads and workflow execution over real HTTP (acceptance-chat.md B, C, D).

use serde_json::{json, Value};

use crate::chat_support::*;
use crate::common::{envelope, file_part, spawn_app, spawn_app_with};

const TS: &str = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}\+00:00$";

fn is_ts(v: &Value) -> bool {
    regex::Regex::new(TS).unwrap().is_match(v.as_str().unwrap_or(""))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a4_b14_b17_create_returns_201_and_builds_the_folder_tree() {
    let app = spawn_app().await;
    let res = app.client.post(format!("{}/chat/workflows", app.api)).send().await.unwrap();
    let (status, body) = envelope(res).await;
    assert_eq!(status, 201);
    let d = &body["data"];
    assert_eq!(d["status"], "created");
    assert_eq!(d["messages"], json!([]));
    assert_eq!(d["workflow_steps"], json!([]));
    assert_eq!(d["uploaded_files"], json!([]));
    assert_eq!(d["output_files"], json!([]));
    assert_eq!(d["metadata"], json!({}));
    assert_eq!(d["partition_key"], chrono::Utc::now().format("%Y/%m").to_string());
    assert!(is_ts(&d["created_at"]) && is_ts(&d["updated_at"]), "a8: {d}");
    let id = d["chat_id"].as_str().unwrap();
    assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 4);
    // b15
    let name = d["participant_name"].as_str().unwrap();
    assert!(regex::Regex::new(r"^[A-Za-z]+-[1-9]\d{3}$").unwrap().is_match(name), "{name}");
    let dir =
        app.config.chat_workflows.storage.workflows_path.join(d["partition_key"].as_str().unwrap()).join(id);
    for sub in ["uploads", "outputs", "intermediate"] {
        assert!(dir.join(sub).is_dir(), "{sub}");
    }
    let meta: Value = serde_json::from_slice(&std::fs::read(dir.join("metadata.json")).unwrap()).unwrap();
    assert_eq!(meta["chat_id"], d["chat_id"]);
    assert_eq!(meta["created_at"], d["created_at"]);
    assert_eq!(meta["partition_key"], d["partition_key"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b16_two_hundred_conversations_have_distinct_names() {
    let app = spawn_app().await;
    let mut names = std::collections::HashSet::new();
    for _ in 0..200 {
        let id = create_chat(&app).await;
        let conv = get_chat(&app, &id).await;
        names.insert(conv["participant_name"].as_str().unwrap().to_string());
    }
    assert_eq!(names.len(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b18_b19_b20_partition_strategies() {
    use oxcelize::config::PartitionStrategy;
    let app = spawn_app_with(|c| c.chat_workflows.partition.strategy = PartitionStrategy::HashBased).await;
    let id = create_chat(&app).await;
    let conv = get_chat(&app, &id).await;
    assert_eq!(conv["partition_key"], format!("{}/{}", &id[..2], &id[2..4]));
    assert!(app
        .config
        .chat_workflows
        .storage
        .workflows_path
        .join(&id[..2])
        .join(&id[2..4])
        .join(&id)
        .is_dir());

    let app = spawn_app_with(|c| c.chat_workflows.partition.strategy = PartitionStrategy::FolderBased).await;
    let id = create_chat(&app).await;
    let dir = app.config.chat_workflows.storage.workflows_path.join(&id);
    assert_eq!(get_chat(&app, &id).await["partition_key"], "");
    assert!(dir.is_dir());
    let (status, _) =
        envelope(app.client.delete(format!("{}/chat/workflows/{id}", app.api)).send().await.unwrap()).await;
    assert_eq!(status, 200);
    assert!(!dir.exists(), "b19: flat conversations are removed completely");

    let app = spawn_app_with(|c| c.chat_workflows.partition.subfolder_format = "%Y/%m/%d".into()).await;
    let id = create_chat(&app).await;
    assert_eq!(get_chat(&app, &id).await["partition_key"], chrono::Utc::now().format("%Y/%m/%d").to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b21_to_b30_list_get_delete() {
    let app = spawn_app().await;
    let ids = [create_chat(&app).await, create_chat(&app).await, create_chat(&app).await];
    let (status, body) = envelope(app.get("/chat/workflows").await).await;
    assert_eq!(status, 200);
    let listed: Vec<&str> = body["data"]["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["chat_id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, vec![ids[2].as_str(), ids[1].as_str(), ids[0].as_str()], "b21 newest first");
    assert_eq!(body["data"]["count"], 3);
    let item = &body["data"]["conversations"][0];
    for key in
        ["chat_id", "participant_name", "status", "partition_key", "metadata", "created_at", "updated_at"]
    {
        assert!(item.get(key).is_some(), "b26 {key}");
    }
    assert!(item.get("bot_message").is_none(), "b27: plain conversations omit bot_message");
    let (_, body) = envelope(app.get("/chat/workflows?limit=1").await).await;
    assert_eq!((body["data"]["count"].clone(), body["total"].clone()), (json!(1), json!(3)), "b25");
    let (_, body) = envelope(app.get("/chat/workflows?status=created").await).await;
    assert_eq!(body["data"]["count"], 3, "b22");
    let (_, body) = envelope(app.get("/chat/workflows?status=failed").await).await;
    assert_eq!(body["data"]["count"], 0);
    for bad in ["limit=abc", "limit=0", "limit=-1", "offset=-1", "status=bogus"] {
        let (status, body) = envelope(app.get(&format!("/chat/workflows?{bad}")).await).await;
        assert_eq!(status, 422, "b24 {bad}: {body}");
        assert_eq!(body["data"]["error_type"], "Error");
    }
    let (status, body) = envelope(app.get("/chat/workflows/nope").await).await;
    assert_eq!((status, body["message"].as_str().unwrap()), (404, "Conversation not found"), "b28");

    let chat = chat_with_csv(&app).await;
    let conv = get_chat(&app, &chat).await;
    let dir = std::path::Path::new(conv["uploaded_files"][0].as_str().unwrap())
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let (status, body) =
        envelope(app.client.delete(format!("{}/chat/workflows/{chat}", app.api)).send().await.unwrap()).await;
    assert_eq!(
        (status, body["message"].as_str().unwrap()),
        (200, "Conversation deleted successfully"),
        "b29"
    );
    assert_eq!(body["data"]["chat_id"], chat);
    assert_eq!(envelope(app.get(&format!("/chat/workflows/{chat}")).await).await.0, 404);
    assert!(!dir.exists());
    let db = rusqlite::Connection::open(&app.config.chat_workflows.storage.sqlite_path).unwrap();
    for table in ["messages", "workflow_steps", "files", "jobs", "ws_events"] {
        let n: i64 = db
            .query_row(&format!("SELECT COUNT(*) FROM {table} WHERE chat_id = ?1"), [&chat], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0, "{table}");
    }
    let (status, _) =
        envelope(app.client.delete(format!("{}/chat/workflows/{chat}", app.api)).send().await.unwrap()).await;
    assert_eq!(status, 404, "b30");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c33_to_c49_uploads_and_downloads() {
    let app = spawn_app().await;
    let chat = create_chat(&app).await;
    let (status, body) = upload(&app, &chat, "sales.csv", SAMPLE_CSV.as_bytes().to_vec()).await;
    assert_eq!((status, body["message"].as_str().unwrap()), (200, "File uploaded successfully"));
    let d = &body["data"];
    assert_eq!(d["filename"], "sales.csv");
    assert!(d["file_path"].as_str().unwrap().ends_with(&format!("/{chat}/uploads/sales.csv")));
    assert_eq!(d["download_url"], format!("{}/chat/workflows/{chat}/files/sales.csv", app.api), "c33/c54");
    let conv = get_chat(&app, &chat).await;
    assert_eq!(conv["uploaded_files"], json!([d["file_path"]]), "c34");
    assert_eq!(conv["status"], "created");
    let m = &conv["messages"][0];
    assert_eq!(
        (m["message_type"].as_str().unwrap(), m["content"].as_str().unwrap()),
        ("file_upload", "File uploaded: sales.csv")
    );
    assert_eq!(m["metadata"]["file_path"], d["file_path"]);
    assert_eq!(m["metadata"]["download_url"], d["download_url"], "studio: download_url on upload messages");

    // c45/c46: exact bytes back, attachment, content type; a12: cross-origin readable.
    let res = app
        .client
        .get(d["download_url"].as_str().unwrap())
        .header("Origin", "http://localhost:3000")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers().contains_key("access-control-allow-origin"), "a12");
    let exposed = res.headers()["access-control-expose-headers"].to_str().unwrap().to_ascii_lowercase();
    assert!(exposed.contains("content-disposition"), "a12 {exposed}");
    assert!(res.headers()["content-disposition"].to_str().unwrap().starts_with("attachment"));
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    assert_eq!(res.bytes().await.unwrap(), SAMPLE_CSV.as_bytes());

    // c35/c36/c37
    let form = reqwest::multipart::Form::new().text("other", "x");
    let (status, body) = envelope(app.post_form(&format!("/chat/workflows/{chat}/upload"), form).await).await;
    assert_eq!((status, body["message"].as_str().unwrap()), (422, "No file provided"));
    let form = reqwest::multipart::Form::new().part("file", file_part("", b"x".to_vec()));
    let (status, body) = envelope(app.post_form(&format!("/chat/workflows/{chat}/upload"), form).await).await;
    assert_eq!((status, body["message"].as_str().unwrap()), (422, "Empty filename"));
    let form = reqwest::multipart::Form::new().text("other", "x");
    assert_eq!(envelope(app.post_form("/chat/workflows/nope/upload", form).await).await.0, 404);

    // c38, c41
    let (_, body) = upload(&app, &chat, "my report (v2).xlsx", sample_xlsx()).await;
    assert_eq!(body["data"]["filename"], "my_report_v2.xlsx");
    let (_, body) = upload(&app, &chat, "文件.xlsx", sample_xlsx()).await;
    assert_eq!(body["data"]["filename"], "file.xlsx");

    // c39: refused type writes nothing.
    let before = get_chat(&app, &chat).await;
    let (status, body) = upload(&app, &chat, "tool.exe", b"MZ".to_vec()).await;
    assert_eq!((status, body["message"].as_str().unwrap()), (422, "File type not allowed: .exe"));
    let after = get_chat(&app, &chat).await;
    assert_eq!(before["messages"], after["messages"]);
    assert_eq!(before["uploaded_files"], after["uploaded_files"]);
    assert!(app.upload_files().is_empty());

    // c43: same name three times → one row, last content.
    for content in ["a,b\n1,2\n", "a,b\n3,4\n", "a,b\n5,6\n"] {
        upload(&app, &chat, "dup.csv", content.as_bytes().to_vec()).await;
    }
    let conv = get_chat(&app, &chat).await;
    let dups = conv["uploaded_files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p.as_str().unwrap().ends_with("/dup.csv"))
        .count();
    assert_eq!(dups, 1);
    let url = format!("{}/chat/workflows/{chat}/files/dup.csv", app.api);
    assert_eq!(app.download(&url).await, b"a,b\n5,6\n");

    // c47, c48, c49
    let (status, body) = envelope(app.get("/chat/workflows/nope/files/x.csv").await).await;
    assert_eq!((status, body["message"].as_str().unwrap()), (404, "Conversation not found"));
    let (status, body) = envelope(app.get(&format!("/chat/workflows/{chat}/files/none.csv")).await).await;
    assert_eq!((status, body["message"].as_str().unwrap()), (404, "File not found"));
    let res = app
        .client
        .get(format!("{}/chat/workflows/{chat}/files/my%20report%20(v2).xlsx", app.api))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let (status, body) =
        envelope(app.get(&format!("/chat/workflows/{chat}/files/..%2F..%2Fmetadata.json")).await).await;
    assert_eq!((status, body["message"].as_str().unwrap()), (400, "Invalid file path"));

    // c50: a symlink pointing outside is never served.
    let uploads = std::path::Path::new(d["file_path"].as_str().unwrap()).parent().unwrap().to_path_buf();
    let secret = app.path("secret.csv");
    std::fs::write(&secret, "top,secret\n").unwrap();
    std::os::unix::fs::symlink(&secret, uploads.join("link.csv")).unwrap();
    assert_eq!(envelope(app.get(&format!("/chat/workflows/{chat}/files/link.csv")).await).await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c40_oversize_upload_is_413_without_partial_file() {
    let app = spawn_app_with(|c| c.chat_workflows.file.max_upload_size_mb = 1).await;
    let chat = create_chat(&app).await;
    let big = vec![b'a'; 1024 * 1024 + 10];
    let (status, body) = upload(&app, &chat, "big.csv", big).await;
    assert_eq!((status, body["message"].as_str().unwrap()), (413, "File too large (max 1 MB)"));
    let conv = get_chat(&app, &chat).await;
    assert_eq!(conv["uploaded_files"], json!([]));
    let dir = app
        .config
        .chat_workflows
        .storage
        .workflows_path
        .join(conv["partition_key"].as_str().unwrap())
        .join(&chat);
    assert_eq!(tree(&dir), vec!["metadata.json"], "no partial file anywhere in the conversation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c52_c53_download_urls_follow_the_origin_rules() {
    let app = spawn_app_with(|c| c.app.trust_proxy_headers = Some(true)).await;
    let chat = create_chat(&app).await;
    let form = reqwest::multipart::Form::new().part("file", file_part("a.csv", b"a\n1\n".to_vec()));
    let res = app
        .client
        .post(format!("{}/chat/workflows/{chat}/upload", app.api))
        .header("X-Forwarded-Proto", "https")
        .header("X-Forwarded-Host", "api.example.com")
        .multipart(form)
        .send()
        .await
        .unwrap();
    let (_, body) = envelope(res).await;
    assert!(body["data"]["download_url"].as_str().unwrap().starts_with("https://api.example.com/api/v1/"));

    let app = spawn_app_with(|c| c.app.public_base_url = Some("https://files.example.com".into())).await;
    let chat = create_chat(&app).await;
    let (_, body) = upload(&app, &chat, "a.csv", b"a\n1\n".to_vec()).await;
    assert!(body["data"]["download_url"].as_str().unwrap().starts_with("https://files.example.com/api/v1/"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d55_to_d59_validation_runs_nothing() {
    let app = spawn_app().await;
    let chat = create_chat(&app).await;
    let (status, body) = execute(&app, &chat, &json!({"foo": 1})).await;
    assert_eq!((status, body["message"].as_str().unwrap()), (422, "No steps provided"), "d55");
    let step =
        json!({"operation": "excel/extract-columns-to-file", "arguments": {"columns": ["customer_id"]}});
    let (status, body) = execute(&app, &chat, &json!({"steps": [step]})).await;
    assert_eq!(
        (status, body["message"].as_str().unwrap()),
        (422, "No uploaded file found for processing"),
        "d56"
    );
    assert_eq!(execute(&app, "nope", &json!({"steps": [step]})).await.0, 404, "d57");
    upload(&app, &chat, "sales.csv", SAMPLE_CSV.as_bytes().to_vec()).await;
    let (status, body) = execute(&app, &chat, &json!({"steps": []})).await;
    assert_eq!((status, body["message"].as_str().unwrap()), (422, "No steps provided"), "d58");
    let many: Vec<Value> = (0..51).map(|_| step.clone()).collect();
    let (status, body) = execute(&app, &chat, &json!({"steps": many})).await;
    assert_eq!((status, body["message"].as_str().unwrap()), (422, "Too many steps (max 50)"), "d58");
    let res = app
        .client
        .post(format!("{}/chat/workflows/{chat}/execute", app.api))
        .body("{oops")
        .send()
        .await
        .unwrap();
    let (status, body) = envelope(res).await;
    assert_eq!((status, body["message"].as_str().unwrap()), (422, "Invalid JSON body"), "a13");

    let (status, body) =
        execute(&app, &chat, &json!({"steps": [step, {"operation": "excel/explode"}]})).await;
    assert_eq!(status, 422);
    assert!(body["message"].as_str().unwrap().starts_with("Invalid workflow"), "d59 {body}");
    assert_eq!(body["data"]["details"]["errors"][0]["step"], 2);
    assert_eq!(body["data"]["details"]["errors"][0]["field"], "operation");
    let conv = get_chat(&app, &chat).await;
    assert_eq!(conv["status"], "created");
    assert_eq!(conv["workflow_steps"], json!([]));
    let (_, events) = envelope(app.get(&format!("/chat/workflows/{chat}/events")).await).await;
    let types: Vec<&str> =
        events["data"]["events"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, vec!["message_added"], "d59: only the upload's message, no run event");

    // d76 and a237: validated up front.
    let (status, body) = execute(
        &app,
        &chat,
        &json!({"steps": [{"operation": "sql/generate", "arguments": {"database_type": "mssql"}}]}),
    )
    .await;
    assert_eq!(status, 422);
    assert!(body["message"].as_str().unwrap().contains("postgresql, mysql, sqlite"), "{body}");
    let (status, body) = execute(&app, &chat, &json!({"steps": [{"operation": "excel/bind-single-key", "arguments": {"key_column": "customer_id", "source_columns": ["x"]}}]})).await;
    assert_eq!(status, 422);
    assert!(body["message"].as_str().unwrap().contains("bind_file"), "j237 {body}");
    let (status, body) = execute(&app, &chat, &json!({"steps": [{"operation": "excel/bind-single-key", "arguments": {"bind_file": "/etc/passwd", "comparison_column": "customer_id", "bind_columns": ["x"]}}]})).await;
    assert_eq!(status, 422);
    assert!(
        body["message"].as_str().unwrap().contains("bind_file not found in conversation: /etc/passwd"),
        "d75 {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d60_d62_d63_extract_to_file_on_xlsx() {
    let app = spawn_app().await;
    let chat = create_chat(&app).await;
    let (_, up) = upload(&app, &chat, "sales.xlsx", sample_xlsx()).await;
    let body = json!({"steps": [{"operation": "excel/extract-columns-to-file", "arguments": {"columns": ["status"], "remove_duplicates": true}}]});
    let (status, res) = execute(&app, &chat, &body).await;
    assert_eq!((status, res["message"].as_str().unwrap()), (200, "Workflow executed successfully"), "{res}");
    let r0 = &res["data"]["results"][0];
    let path = r0["output_file_path"].as_str().unwrap();
    let name = path.rsplit('/').next().unwrap();
    assert!(regex::Regex::new(r"^sales_extracted_\d{8}_\d{6}\.xlsx$").unwrap().is_match(name), "{name}");
    assert!(path.contains("/outputs/"));
    let url = r0["download_url"].as_str().unwrap();
    assert!(url.starts_with("http://"));
    let rows = xlsx_rows(&app.download(url).await);
    assert_eq!(rows, vec![vec!["status"], vec!["active"], vec!["inactive"]]);
    let conv = get_chat(&app, &chat).await;
    assert_eq!(conv["status"], "completed");
    let step = &conv["workflow_steps"][0];
    assert_eq!(
        (step["status"].as_str().unwrap(), step["progress"].as_i64().unwrap()),
        ("completed", 100),
        "d62"
    );
    assert!(is_ts(&step["started_at"]) && is_ts(&step["completed_at"]));
    assert_eq!(step["input_file"], up["data"]["file_path"]);
    assert_eq!(step["output_file"], r0["output_file_path"]);
    assert_eq!(res["data"]["output_files"][0]["file_path"], r0["output_file_path"], "d63");
    assert!(res["data"]["output_files"][0]["download_url"].is_string());
    assert!(res["data"]["job_id"].as_str().unwrap().starts_with(&format!("{chat}_workflow_")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d61_d64_d65_d66_three_step_example_on_csv() {
    let app = spawn_app().await;
    let chat = chat_with_csv(&app).await;
    let (status, res) = execute(&app, &chat, &three_steps()).await;
    assert_eq!(status, 200, "{res}");
    let results = res["data"]["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    assert_eq!(results[1]["statistics"], json!({"total_rows": 5, "filtered_rows": 2}));
    assert!(
        results[0]["output_file_path"].as_str().unwrap().ends_with("/intermediate/sales.xlsx"),
        "d77: convert keeps the stem"
    );
    assert!(results[1]["output_file_path"].as_str().unwrap().contains("/intermediate/sales_search_"));
    assert!(results[2]["output_file_path"].as_str().unwrap().contains("/outputs/sales_search_"));
    let rows = xlsx_rows(&app.download(results[2]["download_url"].as_str().unwrap()).await);
    assert_eq!(rows[0][..4], ["customer_id", "amount", "status", "date"]);
    assert_eq!(rows[1][0], "cust001");
    assert_eq!(rows[2][0], "cust003");
    assert_eq!(rows.len(), 3);
    let conv = get_chat(&app, &chat).await;
    let steps = conv["workflow_steps"].as_array().unwrap();
    assert_eq!(steps.len(), 3);
    assert_eq!(conv["output_files"].as_array().unwrap().len(), 3);
    // d66: chaining
    assert_eq!(steps[0]["input_file"], conv["uploaded_files"][0]);
    assert_eq!(steps[1]["input_file"], steps[0]["output_file"]);
    assert_eq!(steps[2]["input_file"], steps[1]["output_file"]);
    // d64: nothing new in uploads/
    let uploads =
        std::path::Path::new(conv["uploaded_files"][0].as_str().unwrap()).parent().unwrap().to_path_buf();
    assert_eq!(tree(&uploads), vec!["sales.csv"]);
    // d51: intermediate outputs are downloadable
    assert_eq!(
        app.client.get(results[0]["download_url"].as_str().unwrap()).send().await.unwrap().status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d67_d68_d69_d70_data_only_steps_and_failures() {
    let app = spawn_app().await;
    let chat = chat_with_csv(&app).await;
    let body = json!({"steps": [
        {"operation": "excel/extract-columns", "arguments": {"columns": ["amount"]}},
        {"operation": "excel/extract-columns-to-file", "arguments": {"columns": ["amount"]}}]});
    let (status, res) = execute(&app, &chat, &body).await;
    assert_eq!(status, 200, "{res}");
    let r = &res["data"]["results"];
    assert_eq!(r[0]["output_file_path"], Value::Null);
    assert_eq!(r[0]["data"]["columns"]["amount"]["values"], json!(["1500", "500", "2000", "800", "300"]));
    let conv = get_chat(&app, &chat).await;
    assert_eq!(conv["workflow_steps"][1]["input_file"], conv["uploaded_files"][0], "d67");

    let body = json!({"steps": [{"operation": "excel/extract-columns-to-file", "arguments": {"columns": ["nope"]}}]});
    let (status, res) = execute(&app, &chat, &body).await;
    assert_eq!(status, 422, "d69");
    assert_eq!(
        res["message"],
        "Workflow execution failed: Workflow failed at step 1/1: Excel operation failed: Columns not found in data: nope"
    );
    assert_eq!(res["data"]["details"]["failed_step"], 1);
    assert_eq!(get_chat(&app, &chat).await["status"], "failed");

    let body = json!({"steps": [
        {"operation": "excel/extract-columns-to-file", "arguments": {"columns": ["amount"]}},
        {"operation": "excel/extract-columns-to-file", "arguments": {"columns": ["nope"]}},
        {"operation": "excel/extract-columns-to-file", "arguments": {"columns": ["amount"]}}]});
    let (status, res) = execute(&app, &chat, &body).await;
    assert_eq!(status, 422);
    let job = res["data"]["details"]["job_id"].as_str().unwrap().to_string();
    let (_, job) = envelope(app.get(&format!("/chat/workflows/{chat}/jobs/{job}")).await).await;
    let steps = job["data"]["steps"].as_array().unwrap();
    let statuses: Vec<&str> = steps.iter().map(|s| s["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, vec!["completed", "failed", "skipped"], "d70");
    assert!(steps[1]["error_message"].as_str().unwrap().contains("Columns not found in data: nope"));
    let conv = get_chat(&app, &chat).await;
    assert!(conv["output_files"].as_array().unwrap().iter().any(|p| *p == steps[0]["output_file"]));
    assert_eq!(job["data"]["status"], "failed", "f141");
    assert_eq!(job["data"]["result"]["success"], false);
    assert!(job["data"]["error"].as_str().unwrap().starts_with("Workflow failed at step 2/3"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d71_to_d78_operation_arguments_and_naming() {
    let app = spawn_app().await;
    let chat = chat_with_csv(&app).await;
    let run = |steps: Value| {
        let app = &app;
        let chat = chat.clone();
        async move {
            let (status, res) = execute(app, &chat, &json!({"steps": steps})).await;
            assert_eq!(status, 200, "{res}");
            res["data"]["results"].as_array().unwrap().last().unwrap().clone()
        }
    };
    // d71
    let r = run(json!([{"operation": "csv/search", "arguments": {"conditions": [{"column": "status", "operator": "equals", "value": "active"}], "output_format": "json"}}])).await;
    assert!(r["output_file_path"].as_str().unwrap().ends_with(".json"));
    let rows: Value =
        serde_json::from_slice(&app.download(r["download_url"].as_str().unwrap()).await).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 3);
    let r = run(json!([{"operation": "excel/search", "arguments": {"conditions": [{"column": "status", "operator": "equals", "value": "active"}], "output_format": "csv"}}])).await;
    assert!(r["output_file_path"].as_str().unwrap().ends_with(".csv"));
    // d72: gt/eq aliases with match_all false → OR
    let r = run(json!([{"operation": "excel/search", "arguments": {"conditions": [
        {"column": "amount", "operator": "gt", "value": 1000}, {"column": "customer_id", "operator": "eq", "value": "CUST005"}],
        "match_all": false, "output_format": "csv"}}])).await;
    assert_eq!(r["statistics"]["filtered_rows"], 3);
    // d73 / d74
    let r = run(
        json!([{"operation": "excel/map-columns", "arguments": {"column_mapping": {"customer_id": "id"}}}]),
    )
    .await;
    let rows = xlsx_rows(&app.download(r["download_url"].as_str().unwrap()).await);
    assert_eq!(rows[0], vec!["id", "amount", "status", "date"]);
    let r = run(json!([{"operation": "excel/map-columns", "arguments": {"mapping": {"id": "customer_id"}}}]))
        .await;
    let rows = xlsx_rows(&app.download(r["download_url"].as_str().unwrap()).await);
    assert_eq!(rows[0], vec!["id"]);
    assert_eq!(rows[1], vec!["CUST001"]);
    // d77 names and content
    let r = run(json!([{"operation": "sql/generate", "arguments": {"table_name": "sales"}}])).await;
    assert!(regex::Regex::new(r"/sales_sql_\d{8}_\d{6}\.sql$")
        .unwrap()
        .is_match(r["output_file_path"].as_str().unwrap()));
    let sql = String::from_utf8(app.download(r["download_url"].as_str().unwrap()).await).unwrap();
    assert!(sql.contains("INSERT INTO sales (customer_id, amount, status, date) VALUES ('CUST001', '1500', 'active', '2026-01-15');"), "{sql}");
    let r = run(json!([{"operation": "json/generate", "arguments": {"columns": ["customer_id"], "pretty_print": false}}])).await;
    assert!(regex::Regex::new(r"/sales_json_\d{8}_\d{6}\.json$")
        .unwrap()
        .is_match(r["output_file_path"].as_str().unwrap()));
    let v: Value = serde_json::from_slice(&app.download(r["download_url"].as_str().unwrap()).await).unwrap();
    assert_eq!(v[0], json!({"customer_id": "CUST001"}));
    // d75: bind_file from this conversation is accepted
    upload(&app, &chat, "customers.csv", b"customer_id,region\nCUST001,north\nCUST003,south\n".to_vec())
        .await;
    let bind = json!({"input_file": "sales.csv", "steps": [{"operation": "excel/bind-single-key", "arguments": {
        "bind_file": "customers.csv", "key_column": "customer_id", "source_columns": ["region"]}}]});
    let (status, res) = execute(&app, &chat, &bind).await;
    assert_eq!(status, 200, "{res}");
    let r = &res["data"]["results"][0];
    let rows = xlsx_rows(&app.download(r["download_url"].as_str().unwrap()).await);
    assert_eq!(rows[0], vec!["customer_id", "amount", "status", "date", "region"]);
    assert_eq!(rows[1][4], "north");
    assert_eq!(rows[3][4], "south");
    assert_eq!(r["statistics"]["matched_rows"], 2);
    // d78 output_filename and uniqueness
    let body = json!([{"operation": "excel/extract-columns-to-file", "arguments": {"columns": ["customer_id"], "output_filename": "report.xlsx"}}]);
    let body = json!({"steps": body, "input_file": "sales.csv"});
    let (_, a) = execute(&app, &chat, &body).await;
    let (_, b) = execute(&app, &chat, &body).await;
    assert!(a["data"]["results"][0]["output_file_path"].as_str().unwrap().ends_with("/outputs/report.xlsx"));
    assert!(b["data"]["results"][0]["output_file_path"]
        .as_str()
        .unwrap()
        .ends_with("/outputs/report_1.xlsx"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c44_d85_input_file_selection() {
    let app = spawn_app().await;
    let chat = create_chat(&app).await;
    upload(&app, &chat, "a.csv", b"col\na\n".to_vec()).await;
    upload(&app, &chat, "b.csv", b"col\nb\n".to_vec()).await;
    upload(&app, &chat, "a.csv", b"col\na2\n".to_vec()).await;
    let step = json!({"operation": "excel/extract-columns", "arguments": {"columns": ["col"]}});
    let (_, res) = execute(&app, &chat, &json!({"steps": [step]})).await;
    assert_eq!(res["data"]["results"][0]["data"]["columns"]["col"]["values"], json!(["a2"]), "c44");
    let (_, res) = execute(&app, &chat, &json!({"steps": [step], "input_file": "b.csv"})).await;
    assert_eq!(res["data"]["results"][0]["data"]["columns"]["col"]["values"], json!(["b"]), "d85");
    let (status, res) = execute(&app, &chat, &json!({"steps": [step], "input_file": "zzz.csv"})).await;
    assert_eq!((status, res["message"].as_str().unwrap()), (422, "Input file not found: zzz.csv"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d80_d83_async_jobs_and_scoping() {
    let app = spawn_app().await;
    let chat = chat_with_csv(&app).await;
    let other = create_chat(&app).await;
    let mut body = three_steps();
    body["async"] = json!(true);
    let (status, res) = execute(&app, &chat, &body).await;
    assert_eq!(
        (status, res["message"].as_str().unwrap()),
        (202, "Workflow submitted for background execution")
    );
    assert_eq!(res["data"]["status"], "submitted");
    let job = res["data"]["job_id"].as_str().unwrap().to_string();
    let mut last = Value::Null;
    for _ in 0..200 {
        let (_, j) = envelope(app.get(&format!("/chat/workflows/{chat}/jobs/{job}")).await).await;
        last = j["data"].clone();
        if last["status"] == "completed" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(last["status"], "completed", "{last}");
    assert_eq!(last["result"]["results"].as_array().unwrap().len(), 3);
    assert_eq!(last["progress"], 100);
    assert!(is_ts(&last["submitted_at"]) && is_ts(&last["started_at"]) && is_ts(&last["completed_at"]));
    let (status, body) = envelope(app.get(&format!("/chat/workflows/{other}/jobs/{job}")).await).await;
    assert_eq!((status, body["message"].as_str().unwrap()), (404, "Job not found"), "d83");
    let (_, list) = envelope(app.get(&format!("/chat/workflows/{chat}/jobs")).await).await;
    assert_eq!(list["data"]["count"], 1);
    let res =
        app.client.post(format!("{}/chat/workflows/{chat}/jobs/{job}/cancel", app.api)).send().await.unwrap();
    let (status, body) = envelope(res).await;
    assert_eq!((status, body["message"].as_str().unwrap()), (409, "Job already finished"), "d82");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a9_a10_disabled_feature_is_422_except_bot_operations() {
    let app = spawn_app_with(|c| c.chat_workflows.enabled = false).await;
    let res = app.client.post(format!("{}/chat/workflows", app.api)).send().await.unwrap();
    let (status, body) = envelope(res).await;
    assert_eq!((status, body["message"].as_str().unwrap()), (422, "Chat workflows feature is not enabled"));
    assert_eq!(body["data"]["error_type"], "Error");
    assert!(app.ws.is_empty(), "nothing listens on the WebSocket port");
    let (status, _) = envelope(app.get("/chat/nope").await).await;
    assert_eq!(status, 404, "a6");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn save_intermediate_files_false_removes_intermediate_outputs() {
    let app = spawn_app_with(|c| c.chat_workflows.execution.save_intermediate_files = false).await;
    let chat = chat_with_csv(&app).await;
    let (status, res) = execute(&app, &chat, &three_steps()).await;
    assert_eq!(status, 200, "{res}");
    let conv = get_chat(&app, &chat).await;
    let outputs: Vec<&str> =
        conv["output_files"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    assert_eq!(outputs.len(), 1, "{outputs:?}");
    assert!(outputs[0].contains("/outputs/"));
    let dir = std::path::Path::new(outputs[0]).parent().unwrap().parent().unwrap().join("intermediate");
    assert!(tree(&dir).is_empty(), "intermediate files deleted");
    let final_rows =
        xlsx_rows(&app.download(res["data"]["results"][2]["download_url"].as_str().unwrap()).await);
    assert_eq!(final_rows.len(), 3);
}
