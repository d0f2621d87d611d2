//! `POST json/generate` and `POST json/generate-with-template` (rest-api.md §7.6, operations.md §10,
//! §13.9).

use serde_json::{json, Value};

use crate::common::{spawn_app, TestApp};
use crate::transform_support::*;

const GENERATE: &str = "/json/generate";
const TEMPLATE: &str = "/json/generate-with-template";

fn staff() -> Vec<u8> {
    xlsx(&[
        &["Name", "Email", "Age"],
        &["Alice", "alice@test.com", "25"],
        &["Bob", NA, NA],
        &["Charlie", "charlie@test.com", "35"],
    ])
}

/// Posts, asserts 200, downloads the file and checks `file_size`; returns (data, file text, parsed file).
async fn run(app: &TestApp, path: &str, book: Vec<u8>, fields: &[(&str, &str)]) -> (Value, String, Value) {
    let (status, body) = post(app, path, file_form("staff.xlsx", book, fields)).await;
    assert_eq!(status, 200, "{body}");
    let bytes = download_data(app, &body).await;
    assert_eq!(body["data"]["file_size"], bytes.len(), "{body}");
    assert!(app.upload_files().is_empty());
    let text = String::from_utf8(bytes).unwrap();
    let parsed: Value = serde_json::from_str(&text).unwrap();
    (body["data"].clone(), text, parsed)
}

async fn with_template(
    app: &TestApp,
    book: Vec<u8>,
    template: &str,
    mapping: Value,
    mode: &str,
) -> (Value, Value) {
    let mapping = mapping.to_string();
    let (data, _, parsed) = run(
        app,
        TEMPLATE,
        book,
        &[("template", template), ("column_mapping", &mapping), ("aggregation_mode", mode)],
    )
    .await;
    (data, parsed)
}

fn people_mapping() -> Value {
    json!({"id": "ID", "name": "Name", "age": "Age", "score": "Score", "active": "Active", "email": "Email", "created": "CreatedAt"})
}

#[tokio::test]
async fn fact_74_mapping_renames_keys_and_keeps_text() {
    let app = spawn_app().await;
    let mapping = r#"{"Name": "full_name", "Email": "email", "Age": "age"}"#;
    let (status, body) =
        post(&app, GENERATE, file_form("my staff.xlsx", staff(), &[("column_mapping", mapping)])).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["message"], "JSON file generated successfully");
    assert_eq!(body["data"]["total_records"], 3);
    let name = url_name(&body["data"]["download_url"]);
    let re = regex::Regex::new(r"^my_staff_generated_\d{8}_\d{6}_[0-9a-f]{8}\.json$").unwrap();
    assert!(re.is_match(&name), "{name}");
    let res = app.client.get(body["data"]["download_url"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(res.headers()["content-type"], "application/json");
    let text = res.text().await.unwrap();
    assert_eq!(body["data"]["file_size"], text.len());
    assert!(!text.ends_with('\n'));
    let parsed: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(parsed.as_array().unwrap().len(), 3);
    assert_eq!(parsed[0], json!({"full_name": "Alice", "email": "alice@test.com", "age": "25"}));
    // Mapping order is kept in the file (not sorted): full_name, email, age.
    assert!(text.find("full_name").unwrap() < text.find("\"email\"").unwrap());
    assert_eq!(parsed[1], json!({"full_name": "Bob", "email": null, "age": null}));
    assert!(text.starts_with("[\n  {\n    \"full_name\": \"Alice\","), "{text}");
}

#[tokio::test]
async fn fact_75_single_object_without_array_wrapper() {
    let app = spawn_app().await;
    let book = xlsx(&[&["name"], &["Alice"]]);
    let (data, _, parsed) = run(&app, GENERATE, book, &[("array_wrapper", "false")]).await;
    assert_eq!(parsed, json!({"name": "Alice"}));
    assert_eq!(data["total_records"], 1);
}

#[tokio::test]
async fn fact_76_77_91_exclude_and_default_null_handling() {
    let app = spawn_app().await;
    let (_, _, parsed) = run(&app, GENERATE, staff(), &[("null_handling", "exclude")]).await;
    assert_eq!(parsed[0], json!({"Name": "Alice", "Email": "alice@test.com", "Age": "25"}));
    assert_eq!(parsed[1], json!({"Name": "Bob"}));
    let (_, _, parsed) = run(&app, GENERATE, staff(), &[("null_handling", "default")]).await;
    assert_eq!(parsed[1], json!({"Name": "Bob", "Email": "", "Age": ""}));
    // IMPROVE: exclude also drops blanks, which is what uploaded sheets hold.
    let book = xlsx(&[&["a", "b"], &["x", ""], &["", "y"]]);
    let (_, _, parsed) = run(&app, GENERATE, book, &[("null_handling", "exclude")]).await;
    assert_eq!(parsed, json!([{"a": "x"}, {"b": "y"}]));
}

#[tokio::test]
async fn fact_78_empty_table_gives_empty_array_or_object() {
    let app = spawn_app().await;
    let book = || xlsx(&[&["Name", "Email"]]);
    let (data, text, _) = run(&app, GENERATE, book(), &[("column_mapping", "")]).await;
    assert_eq!(text, "[]");
    assert_eq!(data["total_records"], 0);
    // Mapped columns are not validated for an empty table.
    let (data, text, _) =
        run(&app, GENERATE, book(), &[("array_wrapper", "false"), ("column_mapping", r#"{"Nope": "x"}"#)])
            .await;
    assert_eq!(text, "{}");
    assert_eq!(data["total_records"], 0);
}

#[tokio::test]
async fn fact_79_mapping_a_missing_column_is_422() {
    let app = spawn_app().await;
    let form = file_form("s.xlsx", staff(), &[("column_mapping", r#"{"Name": "n", "Phone": "p"}"#)]);
    let r = post(&app, GENERATE, form).await;
    assert_error(&app, &r, 422, "ValidationError", "Columns not found in data: Phone");
    assert_eq!(r.1["data"]["details"]["missing_columns"], json!(["Phone"]));
}

#[tokio::test]
async fn studio_orientation_json_key_to_column_falls_back() {
    let app = spawn_app().await;
    let (_, _, parsed) =
        run(&app, GENERATE, staff(), &[("column_mapping", r#"{"full_name": "Name", "mail": "Email"}"#)])
            .await;
    assert_eq!(parsed[0], json!({"full_name": "Alice", "mail": "alice@test.com"}));
}

#[tokio::test]
async fn columns_selection_and_unknown_columns() {
    let app = spawn_app().await;
    let (_, _, parsed) = run(&app, GENERATE, staff(), &[("columns", r#"["Age", "Name"]"#)]).await;
    assert_eq!(parsed[2], json!({"Age": "35", "Name": "Charlie"}));
    let r = post(&app, GENERATE, file_form("s.xlsx", staff(), &[("columns", r#"["Name", "Zip"]"#)])).await;
    assert_eq!(r.0, 422);
    assert_eq!(r.1["data"]["error_type"], "ValidationError");
    assert_eq!(r.1["message"], "Columns not found: Zip");
}

#[tokio::test]
async fn fact_89_compact_output_and_user_file_names() {
    let app = spawn_app().await;
    let (data, text, parsed) =
        run(&app, GENERATE, staff(), &[("pretty_print", "false"), ("output_filename", "../x")]).await;
    assert!(!text.contains("\n  "), "{text}");
    assert!(text.starts_with(r#"[{"Name": "Alice", "Email": "alice@test.com", "Age": "25"}, {"#), "{text}");
    assert_eq!(parsed.as_array().unwrap().len(), 3);
    assert_eq!(url_name(&data["download_url"]), "x.json");
    let (data, _, _) = run(&app, GENERATE, staff(), &[("output_filename", "out.json")]).await;
    assert_eq!(url_name(&data["download_url"]), "out.json");
    assert_eq!(app.output_files(), ["out.json", "x.json"]);
}

#[tokio::test]
async fn fact_80_81_nested_template_as_object_or_json_text() {
    let app = spawn_app().await;
    let template = json!({"user": {"id": "{id}", "name": "{name}"}, "contact": {"email": "{email}"}});
    let (data, parsed) =
        with_template(&app, people_13_7(), &template.to_string(), people_mapping(), "array").await;
    assert_eq!(data["total_records"], 3);
    assert_eq!(parsed[0]["user"]["name"], "Alice");
    assert_eq!(parsed[0]["contact"]["email"], "alice@test.com");
    assert_eq!(parsed[1]["contact"]["email"], Value::Null);
    // The template sent as a JSON string holding the object works the same.
    let as_text = Value::String(template.to_string()).to_string();
    let (_, again) = with_template(&app, people_13_7(), &as_text, people_mapping(), "array").await;
    assert_eq!(again, parsed);
}

#[tokio::test]
async fn fact_82_83_nested_and_single_modes() {
    let app = spawn_app().await;
    let (data, parsed) =
        with_template(&app, people_13_7(), r#"{"name": "{name}"}"#, people_mapping(), "nested").await;
    assert_eq!(parsed["count"], 3);
    assert_eq!(parsed["items"].as_array().unwrap().len(), 3);
    assert_eq!(data["total_records"], 3);
    let one = xlsx(&[&["Name"], &["Alice"]]);
    let (data, parsed) =
        with_template(&app, one, r#"{"name": "{name}"}"#, json!({"name": "Name"}), "single").await;
    assert_eq!(parsed, json!({"name": "Alice"}));
    assert_eq!(data["total_records"], 1);
}

#[tokio::test]
async fn fact_84_85_92_93_typed_defaults_and_mixed_strings() {
    let app = spawn_app().await;
    let template = json!({
        "id": "{id:int}", "score": "{score:float}", "active": "{active:bool}", "name": "{name}",
        "email": "{email|no-email}", "label": "User ID: {id:int}", "hello": "Hello {name}!",
        "both": "{name} has ID {id:int}", "created": "{created:datetime}",
        "user": {"id": "{id:int}", "age": "{age:int}"}, "stats": {"score": "{score:float}", "active": "{active:bool}"}
    });
    let (_, parsed) =
        with_template(&app, people_13_7(), &template.to_string(), people_mapping(), "array").await;
    let first = &parsed[0];
    assert_eq!(first["id"], json!(1));
    assert!(first["id"].is_i64());
    assert_eq!(first["score"], json!(95.5));
    assert_eq!(first["active"], json!(true));
    assert_eq!(parsed[1]["active"], json!(false));
    assert_eq!(parsed[1]["score"], json!(88.0));
    assert!(parsed[1]["score"].is_f64());
    assert_eq!(first["name"], "Alice");
    assert_eq!(first["email"], "alice@test.com");
    assert_eq!(parsed[1]["email"], "no-email");
    assert_eq!(first["label"], "User ID: 1");
    assert_eq!(first["hello"], "Hello Alice!");
    assert_eq!(first["both"], "Alice has ID 1");
    assert_eq!(first["created"], "2024-01-15");
    assert_eq!(first["user"], json!({"id": 1, "age": 25}));
    assert_eq!(first["stats"], json!({"score": 95.5, "active": true}));
}

#[tokio::test]
async fn fact_90_recursive_substitution_keeps_strings() {
    let app = spawn_app().await;
    let template = json!({"user": "{name}", "age": "{age}", "list": ["{name}", "{age}"], "deep": {"k": {"v": "{name}"}}, "fixed": 1});
    let (_, parsed) =
        with_template(&app, people_13_7(), &template.to_string(), people_mapping(), "array").await;
    assert_eq!(
        parsed[0],
        json!({"user": "Alice", "age": "25", "list": ["Alice", "25"], "deep": {"k": {"v": "Alice"}}, "fixed": 1})
    );
}

#[tokio::test]
async fn fact_88_empty_table_and_nested_improve() {
    let app = spawn_app().await;
    let empty = || xlsx(&[&["Name"]]);
    let (data, parsed) = with_template(&app, empty(), r#"{"n": "{n}"}"#, json!({"n": "Name"}), "array").await;
    assert_eq!(parsed, json!([]));
    assert_eq!(data["total_records"], 0);
    let (_, parsed) = with_template(&app, empty(), r#"{"n": "{n}"}"#, json!({"n": "Name"}), "nested").await;
    assert_eq!(parsed, json!({"items": [], "count": 0}));
}

#[tokio::test]
async fn template_values_are_never_rescanned() {
    let app = spawn_app().await;
    let book = xlsx(&[&["a", "b"], &["{b}", "secret"]]);
    let (_, parsed) =
        with_template(&app, book, r#"{"x": "<{a}>", "y": "{a}"}"#, json!({"a": "a", "b": "b"}), "array")
            .await;
    assert_eq!(parsed, json!([{"x": "<{b}>", "y": "{b}"}]));
}

#[tokio::test]
async fn template_output_name_and_message() {
    let app = spawn_app().await;
    let form = file_form(
        "my staff.xlsx",
        staff(),
        &[("template", r#"{"n": "{n}"}"#), ("column_mapping", r#"{"n": "Name"}"#)],
    );
    let (status, body) = post(&app, TEMPLATE, form).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["message"], "JSON file generated successfully with template");
    let name = url_name(&body["data"]["download_url"]);
    let re = regex::Regex::new(r"^my_staff_generated_template_\d{8}_\d{6}_[0-9a-f]{8}\.json$").unwrap();
    assert!(re.is_match(&name), "{name}");
    let form = file_form(
        "s.xlsx",
        staff(),
        &[
            ("template", r#"{"n": "{n}"}"#),
            ("column_mapping", r#"{"n": "Name"}"#),
            ("output_filename", "a/b c"),
            ("pretty_print", "false"),
        ],
    );
    let (_, body) = post(&app, TEMPLATE, form).await;
    assert_eq!(url_name(&body["data"]["download_url"]), "a_b_c.json");
    assert_eq!(download_data(&app, &body).await, br#"[{"n": "Alice"}, {"n": "Bob"}, {"n": "Charlie"}]"#);
}

#[tokio::test]
async fn generate_rejects_bad_fields_with_422_and_writes_nothing() {
    let app = spawn_app().await;
    let r = post(&app, GENERATE, with_fields(reqwest::multipart::Form::new(), &[("columns", "[]")])).await;
    assert_error(&app, &r, 422, "ValidationError", "No file uploaded");
    let r = post(&app, GENERATE, file_form("s.xlsx", staff(), &[("columns", "[1")])).await;
    assert_error_prefix(&app, &r, 422, "ValidationError", "Invalid JSON in field 'columns'");
    let r = post(&app, GENERATE, file_form("s.xlsx", staff(), &[("columns", r#"{"a": 1}"#)])).await;
    assert_error(&app, &r, 422, "ValidationError", "columns must be a JSON array of strings");
    let r = post(&app, GENERATE, file_form("s.xlsx", staff(), &[("column_mapping", "{x")])).await;
    assert_error_prefix(&app, &r, 422, "ValidationError", "Invalid JSON in field 'column_mapping'");
    let r = post(&app, GENERATE, file_form("s.xlsx", staff(), &[("column_mapping", r#"{"Name": 1}"#)])).await;
    assert_error(&app, &r, 422, "ValidationError", "column_mapping values must be strings (entry 'Name')");
    let r = post(&app, GENERATE, file_form("s.xlsx", staff(), &[("null_handling", "Include")])).await;
    assert_error(
        &app,
        &r,
        422,
        "ValidationError",
        "Invalid null_handling: Include. Must be 'include', 'exclude', or 'default'",
    );
    let r = post(&app, GENERATE, file_form("s.xlsx", staff(), &[("columns", r#"["Name", "Zip"]"#)])).await;
    assert_error(&app, &r, 422, "ValidationError", "Columns not found: Zip");
    let r = post(&app, GENERATE, file_form("s.csv", b"a,b\n1,2\n".to_vec(), &[])).await;
    assert_error_prefix(&app, &r, 415, "UnsupportedFileTypeError", "Unsupported file type");
    let r = post(&app, GENERATE, file_form("s.xlsx", b"PK\x03\x04zz".to_vec(), &[])).await;
    assert_error_prefix(&app, &r, 400, "FileProcessingError", "Failed to read Excel file");
}

#[tokio::test]
async fn fact_86_87_template_validation_order_and_messages() {
    let app = spawn_app().await;
    let ok_t = r#"{"n": "{n}"}"#;
    let ok_m = r#"{"n": "Name"}"#;
    type Case<'a> = (Vec<(&'a str, &'a str)>, &'a str, bool);
    let cases: Vec<Case> = vec![
        (vec![("column_mapping", ok_m)], "template is required", false),
        (vec![("template", ok_t)], "column_mapping is required", false),
        (vec![("template", "invalid json {{"), ("column_mapping", "{bad")], "Invalid template JSON: ", true),
        (vec![("template", ok_t), ("column_mapping", "{bad")], "Invalid column_mapping JSON: ", true),
        (vec![("template", ok_t), ("column_mapping", "{}")], "column_mapping cannot be empty", false),
        (
            vec![("template", ok_t), ("column_mapping", ok_m), ("aggregation_mode", "flat")],
            "Invalid aggregation_mode: flat. Must be 'array', 'single', or 'nested'",
            false,
        ),
        (
            vec![("template", "[1, 2]"), ("column_mapping", ok_m)],
            "Template must be a JSON string or dictionary",
            false,
        ),
        (
            vec![("template", "\"invalid json {{\""), ("column_mapping", ok_m)],
            "Invalid JSON template: ",
            true,
        ),
        (vec![("template", "{}"), ("column_mapping", ok_m)], "Template cannot be empty", false),
        (
            vec![("template", ok_t), ("column_mapping", r#"{"n": "Phone"}"#)],
            "Columns not found in data: Phone",
            false,
        ),
    ];
    for (fields, message, prefix) in cases {
        let r = post(&app, TEMPLATE, file_form("s.xlsx", staff(), &fields)).await;
        if prefix {
            assert_error_prefix(&app, &r, 422, "ValidationError", message);
        } else {
            assert_error(&app, &r, 422, "ValidationError", message);
        }
    }
    // IMPROVE: mapped columns are checked on empty tables too.
    let r = post(
        &app,
        TEMPLATE,
        file_form(
            "s.xlsx",
            xlsx(&[&["Name"]]),
            &[("template", ok_t), ("column_mapping", r#"{"n": "Phone"}"#)],
        ),
    )
    .await;
    assert_error(&app, &r, 422, "ValidationError", "Columns not found in data: Phone");
    let r = post(
        &app,
        TEMPLATE,
        file_form("s.xlsx", b"%PDF-1.4".to_vec(), &[("template", ok_t), ("column_mapping", ok_m)]),
    )
    .await;
    assert_error_prefix(&app, &r, 415, "UnsupportedFileTypeError", "Unsupported file type");
}
