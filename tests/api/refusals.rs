//! Bad input that is refused instead of silently accepted (issue 11, items 1–7): unknown columns in
//! extract-columns and SQL mappings, bad normalization steps, file extensions outside
//! `file.allowed_extensions`, empty cells under untyped custom-SQL placeholders, a bot conversation body
//! that is not JSON, and bot answers whose envelope status matches the HTTP status.

use serde_json::{json, Value};

use crate::chat_support::{chat_with_csv, execute, get_chat, tree};
use crate::common::{envelope, spawn_app, spawn_app_with, TestApp};
use crate::transform_support::{
    assert_error, assert_nothing_left, download_data, file_form, part, post, with_fields, xlsx,
};

fn people() -> Vec<u8> {
    xlsx(&[&["Name", "City", "Note"], &["Ana", "Lisboa", "a"], &["", "Porto", ""], &["Bo", "", "c"]])
}

const PEOPLE_COLUMNS: [&str; 3] = ["Name", "City", "Note"];

/// The conversation's generated files (nothing else writes to `outputs/` or `intermediate/`).
fn chat_outputs(app: &TestApp, chat: &str) -> Vec<String> {
    tree(&app.config.chat_workflows.storage.workflows_path)
        .into_iter()
        .filter(|p| p.contains(chat) && (p.contains("/outputs/") || p.contains("/intermediate/")))
        .collect()
}

// ---- item 1 -------------------------------------------------------------------------------------------

#[tokio::test]
async fn extract_columns_refuses_a_column_that_is_not_in_the_sheet() {
    let app = spawn_app().await;
    let columns = json!(["Name", "Ghost", "City", "Gone"]).to_string();
    let r =
        post(&app, "/excel/extract-columns", file_form("p.xlsx", people(), &[("columns", &columns)])).await;
    assert_error(&app, &r, 422, "ValidationError", "Columns not found in data: Ghost, Gone");
    assert_eq!(
        r.1["data"]["details"],
        json!({"missing_columns": ["Ghost", "Gone"], "available_columns": PEOPLE_COLUMNS})
    );
    // Known columns alone still answer 200.
    let columns = json!(["City"]).to_string();
    let (status, body) =
        post(&app, "/excel/extract-columns", file_form("p.xlsx", people(), &[("columns", &columns)])).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["columns"]["City"]["values"], json!(["Lisboa", "Porto", ""]));
    assert_nothing_left(&app);
}

// ---- item 2 -------------------------------------------------------------------------------------------

#[tokio::test]
async fn sql_generation_refuses_a_mapping_to_a_column_that_is_not_in_the_sheet() {
    let app = spawn_app().await;
    let mapping = r#"{"name": "Name", "town": "Citty", "note": "Nope"}"#;
    let want_details = json!({"missing_columns": ["Citty", "Nope"], "available_columns": PEOPLE_COLUMNS});
    let cases: [(&str, &[(&str, &str)]); 3] = [
        ("/sql/generate", &[]),
        ("/sql/generate", &[("return_file", "true")]),
        ("/sql/generate-to-text", &[]),
    ];
    for (path, extra) in cases {
        let mut fields = vec![("table_name", "people"), ("column_mapping", mapping)];
        fields.extend_from_slice(extra);
        let r = post(&app, path, file_form("p.xlsx", people(), &fields)).await;
        assert_error(&app, &r, 422, "ValidationError", "Columns not found in data: Citty, Nope");
        assert_eq!(r.1["data"]["details"], want_details, "{path} {extra:?}");
    }
    // With a selection, the mapping is checked against the selected columns.
    let fields = [
        ("table_name", "people"),
        ("columns", r#"["City", "Name"]"#),
        ("column_mapping", r#"{"name": "Name", "note": "Note"}"#),
    ];
    let r = post(&app, "/sql/generate-to-text", file_form("p.xlsx", people(), &fields)).await;
    assert_error(&app, &r, 422, "ValidationError", "Columns not found in data: Note");
    assert_eq!(r.1["data"]["details"]["available_columns"], json!(["City", "Name"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_workflow_steps_refuse_a_mapping_to_a_column_that_is_not_in_the_sheet() {
    let app = spawn_app().await;
    let chat = chat_with_csv(&app).await;
    for operation in ["sql/generate", "sql/generate-to-text"] {
        let body = json!({"steps": [{"operation": operation,
            "arguments": {"table_name": "sales", "column_mapping": {"id": "customer_id", "total": "amout"}}}]});
        let (status, res) = execute(&app, &chat, &body).await;
        assert_eq!(status, 422, "{res}");
        assert_eq!(
            res["message"],
            "Workflow execution failed: Workflow failed at step 1/1: SQL generation operation failed: \
             Columns not found in data: amout"
        );
        assert_eq!(res["data"]["details"]["failed_step"], 1);
    }
    assert_eq!(chat_outputs(&app, &chat), Vec::<String>::new());
    assert_eq!(get_chat(&app, &chat).await["output_files"], json!([]));
}

// ---- item 3 -------------------------------------------------------------------------------------------

#[tokio::test]
async fn normalization_refuses_bad_steps_and_lists_them() {
    let app = spawn_app().await;
    let steps = json!([
        {"column_name": "Name", "normalization_type": "uppercase"},
        {"column_name": "Name", "normalization_type": "upercase"},
        {"column_name": "Citty", "normalization_type": "lowercase"},
        {"column_name": "City", "normalization_type": "date_extract_year"},
        {"column_name": "Note", "normalization_type": "regex_replace", "parameters": {"pattern": "("}},
    ])
    .to_string();
    for return_report in ["false", "true"] {
        let fields = [("normalizations", steps.as_str()), ("return_report", return_report)];
        let r = post(&app, "/normalization/apply", file_form("p.xlsx", people(), &fields)).await;
        assert_error(&app, &r, 422, "ValidationError", "Invalid normalization configuration");
        let errors = r.1["data"]["details"]["errors"].as_array().unwrap().clone();
        let listed: Vec<(u64, &str)> =
            errors.iter().map(|e| (e["step"].as_u64().unwrap(), e["field"].as_str().unwrap())).collect();
        assert_eq!(
            listed,
            [(1, "normalization_type"), (2, "column_name"), (3, "normalization_type"), (4, "parameters")]
        );
        assert_eq!(errors[0]["error"], "Invalid normalization type: 'upercase'");
        let valid: Vec<&str> =
            errors[0]["valid"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
        assert_eq!(valid.len(), 20);
        assert!(valid.contains(&"uppercase") && !valid.contains(&"date_extract_year"));
        assert_eq!(
            errors[1],
            json!({"step": 2, "field": "column_name", "error": "Column 'Citty' not found",
            // `normalization.backup_original` (on by default) made `Name_original` at step 0.
            "valid": ["Name", "City", "Note", "Name_original"]})
        );
        assert!(errors[2]["error"]
            .as_str()
            .unwrap()
            .starts_with("Unsupported normalization type: date_extract_year"));
        assert!(errors[3]["error"].as_str().unwrap().contains("'('"), "{}", errors[3]);
    }
    // A cell that cannot be converted is still only a note in the report.
    let steps = json!([{"column_name": "Note", "normalization_type": "round_decimal"}]).to_string();
    let fields = [("normalizations", steps.as_str()), ("return_report", "true")];
    let (status, body) = post(&app, "/normalization/apply", file_form("p.xlsx", people(), &fields)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["report"]["success"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn normalization_workflow_step_refuses_bad_steps() {
    let app = spawn_app().await;
    let chat = chat_with_csv(&app).await;
    let body = json!({"steps": [{"operation": "normalization/apply", "arguments": {"normalizations": [
        {"column": "status", "type": "uppercase"},
        {"column": "statsu", "type": "bogus"}]}}]});
    let (status, res) = execute(&app, &chat, &body).await;
    assert_eq!(status, 422, "{res}");
    assert_eq!(
        res["message"],
        "Workflow execution failed: Workflow failed at step 1/1: Normalization operation failed: \
         Invalid normalization configuration: step 1 normalization_type: Invalid normalization type: 'bogus'; \
         step 1 column_name: Column 'statsu' not found"
    );
    assert_eq!(chat_outputs(&app, &chat), Vec::<String>::new());
}

// ---- item 4 -------------------------------------------------------------------------------------------

const ALLOWED: &str = "File type not allowed: {ext}. Allowed extensions: .xlsx, .xls, .xlsm, .csv";

#[tokio::test]
async fn processing_endpoints_refuse_extensions_outside_the_allowed_list() {
    let app = spawn_app().await;
    let csv = b"a,b\n1,2\n".to_vec();
    /// (endpoint, file name, content, form fields)
    type Case<'a> = (&'a str, &'a str, Vec<u8>, Vec<(&'a str, &'a str)>);
    let cases: Vec<Case> = vec![
        ("/excel/info", "people.txt", people(), vec![]),
        ("/excel/extract-columns", "people.XLSX.bak", people(), vec![("columns", r#"["Name"]"#)]),
        ("/csv/info", "data.pdf", csv.clone(), vec![]),
        ("/csv/convert-to-excel", "data.tsv", csv.clone(), vec![]),
        (
            "/normalization/apply",
            "p.json",
            people(),
            vec![("normalizations", r#"[{"column_name": "Name", "normalization_type": "uppercase"}]"#)],
        ),
        (
            "/sql/generate-to-text",
            "p.exe",
            people(),
            vec![("table_name", "t"), ("column_mapping", r#"{"n": "Name"}"#)],
        ),
        ("/json/generate", "dir/p.xlsx.zip", people(), vec![]),
    ];
    for (path, name, bytes, fields) in cases {
        let r = post(&app, path, file_form(name, bytes, &fields)).await;
        let ext = format!(".{}", name.rsplit('.').next().unwrap().to_lowercase());
        assert_error(&app, &r, 415, "UnsupportedFileTypeError", &ALLOWED.replace("{ext}", &ext));
        assert_eq!(
            r.1["data"]["details"],
            json!({"field": "file", "extension": ext, "allowed_extensions": [".xlsx", ".xls", ".xlsm", ".csv"]}),
            "{path}"
        );
    }
    // Every file of a two-file endpoint is checked.
    let form = with_fields(
        reqwest::multipart::Form::new()
            .part("source_file", part("a.xlsx", people()))
            .part("bind_file", part("b.ods", people())),
        &[("comparison_column", "Name"), ("bind_columns", r#"["City"]"#)],
    );
    let r = post(&app, "/excel/bind-single-key", form).await;
    assert_error(&app, &r, 415, "UnsupportedFileTypeError", &ALLOWED.replace("{ext}", ".ods"));
    assert_eq!(r.1["data"]["details"]["field"], "bind_file");

    // Listed extensions (any case) and names without one pass; the content still decides the kind.
    for name in ["people.XLSX", "people.xls", "people"] {
        let (status, body) = post(&app, "/excel/info", file_form(name, people(), &[])).await;
        assert_eq!(status, 200, "{name}: {body}");
    }
    let r = post(&app, "/excel/info", file_form("data.csv", csv.clone(), &[])).await;
    assert_eq!(r.0, 415, "{}", r.1);
    assert_nothing_left(&app);
}

#[tokio::test]
async fn the_allowed_extensions_come_from_the_config() {
    let app = spawn_app_with(|c| c.file.allowed_extensions = vec![".xlsx".into()]).await;
    let r = post(&app, "/csv/info", file_form("data.csv", b"a,b\n1,2\n".to_vec(), &[])).await;
    assert_error(
        &app,
        &r,
        415,
        "UnsupportedFileTypeError",
        "File type not allowed: .csv. Allowed extensions: .xlsx",
    );
    let (status, body) = post(&app, "/excel/info", file_form("p.xlsx", people(), &[])).await;
    assert_eq!(status, 200, "{body}");
}

// ---- item 5 -------------------------------------------------------------------------------------------

#[tokio::test]
async fn custom_sql_renders_an_empty_cell_under_an_untyped_placeholder_as_null() {
    let app = spawn_app().await;
    let fields = [
        ("template", "VALUES ({name}, {note:string}, {city|unknown}, '{note}', {%city%}, {note:int});"),
        ("column_mapping", r#"{"name": "Name", "note": "Note", "city": "City"}"#),
    ];
    let (status, body) =
        post(&app, "/sql/generate-custom-to-text", file_form("p.xlsx", people(), &fields)).await;
    assert_eq!(status, 200, "{body}");
    let text = String::from_utf8(download_data(&app, &body).await).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("VALUES")).collect();
    assert_eq!(
        lines,
        [
            "VALUES ('Ana', 'a', 'Lisboa', 'a', '%Lisboa%', 'a');",
            "VALUES (NULL, '', 'Porto', '', '%Porto%', NULL);",
            "VALUES ('Bo', 'c', 'unknown', 'c', NULL, 'c');",
        ]
    );
}

// ---- item 6 -------------------------------------------------------------------------------------------

async fn post_bot_start(app: &TestApp, content_type: Option<&str>, body: &'static str) -> (u16, Value) {
    let mut req = app.client.post(format!("{}/chat/bot/conversations", app.api)).body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    envelope(req.send().await.unwrap()).await
}

async fn conversation_count(app: &TestApp) -> u64 {
    let (status, body) = envelope(app.get("/chat/workflows").await).await;
    assert_eq!(status, 200, "{body}");
    body["total"].as_u64().unwrap()
}

#[tokio::test]
async fn bot_start_refuses_a_json_body_that_does_not_parse() {
    let app = spawn_app().await;
    for (content_type, body) in [
        ("application/json", "{oops"),
        ("application/json; charset=utf-8", "chat_id=x"),
        ("application/vnd.api+json", "{"),
    ] {
        let (status, res) = post_bot_start(&app, Some(content_type), body).await;
        assert_eq!(status, 400, "{content_type}: {res}");
        assert_eq!(res["message"], "Invalid JSON body");
        assert_eq!(res["data"]["error_type"], "Error", "chat paths keep the reference constant");
        assert_eq!(res["data"]["error_class"], "BadRequest");
        assert!(res["data"]["details"]["error"].is_string(), "{res}");
    }
    assert_eq!(conversation_count(&app).await, 0, "nothing created");
    assert_eq!(tree(&app.config.chat_workflows.storage.workflows_path), Vec::<String>::new());

    // No body, an undeclared body and a JSON body still create the conversation.
    for (content_type, body) in [
        (Some("application/json"), ""),
        (None, ""),
        (Some("text/plain"), "{oops"),
        (Some("application/json"), "{}"),
    ] {
        let (status, res) = post_bot_start(&app, content_type, body).await;
        assert_eq!(status, 201, "{content_type:?} {body:?}: {res}");
    }
    assert_eq!(conversation_count(&app).await, 4);
}

// ---- item 7 -------------------------------------------------------------------------------------------

async fn bot_say(app: &TestApp, id: &str, text: &str) -> (u16, Value) {
    // `envelope` asserts that the body's status_code equals the HTTP status.
    envelope(app.post_json(&format!("/chat/bot/conversations/{id}/message"), &json!({"message": text})).await)
        .await
}

#[tokio::test]
async fn bot_soft_failures_are_answers_whose_envelope_status_is_the_http_status() {
    let app = spawn_app().await;
    let (status, res) = post_bot_start(&app, Some("application/json"), "{}").await;
    assert_eq!(status, 201, "{res}");
    let id = res["data"]["chat_id"].as_str().unwrap().to_string();

    let (status, body) = bot_say(&app, &id, "do something random").await;
    assert_eq!((status, body["status_code"].clone()), (200, json!(200)));
    assert_eq!(body["message"], "Unknown intent");
    let d = &body["data"];
    assert_eq!(d["understood"], false);
    assert!(!d["bot_response"].as_str().unwrap().is_empty());
    assert_eq!(
        d["suggestions"],
        json!(["extract columns", "convert to JSON", "generate SQL", "normalize data"])
    );
    assert_eq!(d["state"], "idle");

    // Another soft failure: a yes-word while no file is uploaded.
    bot_say(&app, &id, "extract columns: Name").await;
    let (status, body) = bot_say(&app, &id, "yes").await;
    assert_eq!((status, body["status_code"].clone()), (200, json!(200)));
    assert_eq!(body["message"], "No uploaded file found");
    assert_eq!(body["data"]["understood"], false);

    // Understood messages say so.
    let (status, body) = bot_say(&app, &id, "help").await;
    assert_eq!((status, body["data"]["understood"].clone()), (200, json!(true)), "{body}");
    assert_nothing_left(&app);
}
