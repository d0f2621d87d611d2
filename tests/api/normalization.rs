//! `GET normalization/types` and `POST normalization/apply` (rest-api.md §7.4, operations.md §7, §13.3,
//! §13.10 facts 94–101).

use oxcelize::table::Table;
use serde_json::{json, Value};

use crate::common::{envelope, spawn_app, spawn_app_with, TestApp};
use crate::transform_support::*;

const APPLY: &str = "/normalization/apply";

/// Runs one apply request with the report and returns (report, normalized table).
async fn apply(app: &TestApp, rows: &[&[&str]], steps: Value) -> (Value, Table) {
    let form = file_form(
        "people.xlsx",
        xlsx(rows),
        &[("normalizations", &steps.to_string()), ("return_report", "true")],
    );
    let (status, body) = post(app, APPLY, form).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["message"], "Normalization completed successfully");
    let data = &body["data"];
    assert_eq!(url_name(&data["download_url"]), data["output_file"].as_str().unwrap(), "{body}");
    let (_, table) = read_xlsx(&download_data(app, &body).await);
    assert!(app.upload_files().is_empty());
    (data["report"].clone(), table)
}

fn step(column: &str, kind: &str) -> Value {
    json!({ "column_name": column, "normalization_type": kind })
}

#[tokio::test]
async fn types_lists_the_twenty_types_with_total() {
    let app = spawn_app().await;
    let (status, body) = envelope(app.get("/normalization/types").await).await;
    assert_eq!(status, 200);
    assert_eq!(body["message"], "Normalization types retrieved successfully");
    assert_eq!(body["total"], 20);
    let types = body["data"].as_object().unwrap();
    assert_eq!(types.len(), 20);
    // Fact 15: the common types are there, with descriptions.
    for name in ["uppercase", "lowercase", "trim_whitespace", "phone_format", "outlier_removal"] {
        assert!(types[name].as_str().is_some_and(|d| !d.is_empty()), "{name}");
    }
    let head = app.client.head(format!("{}/normalization/types", app.api)).send().await.unwrap();
    assert_eq!(head.status(), 200);
    let (status, body) = envelope(app.post_json("/normalization/types", &json!({})).await).await;
    assert_eq!(status, 405);
    assert_eq!(body["message"], "Method not allowed");
}

#[tokio::test]
async fn fact_10_uppercase_keeps_inner_and_outer_spaces() {
    let app = spawn_app().await;
    let (report, table) =
        apply(&app, &[&["name"], &["  john doe  "]], json!([step("name", "uppercase")])).await;
    assert_eq!(column_texts(&table, "name"), ["  JOHN DOE  "]);
    assert_eq!(report["success"], true);
    assert_eq!(report["total_rows"], 1);
    assert_eq!(report["columns_processed"][0]["after_stats"]["total_values"], 1);
}

#[tokio::test]
async fn fact_11_12_trim_and_email_format() {
    let app = spawn_app().await;
    let steps = json!([step("name", "trim_whitespace"), step("email", "email_format")]);
    let (report, table) = apply(&app, &[&["name", "email"], &["  john doe  ", "JOHN@TEST.COM"]], steps).await;
    assert_eq!(column_texts(&table, "name"), ["john doe"]);
    assert_eq!(column_texts(&table, "email"), ["john@test.com"]);
    assert_eq!(report["success"], true);
}

#[tokio::test]
async fn fact_13_pipeline_runs_steps_in_order() {
    let app = spawn_app().await;
    let steps =
        json!([step("name", "trim_whitespace"), step("name", "title_case"), step("email", "lowercase")]);
    let (report, table) = apply(&app, &[&["name", "email"], &["  john doe  ", "John@Test.COM"]], steps).await;
    assert_eq!(column_texts(&table, "name"), ["John Doe"]);
    assert_eq!(column_texts(&table, "email"), ["john@test.com"]);
    assert_eq!(report["success"], true);
    assert_eq!(report["columns_processed"].as_array().unwrap().len(), 3);
    assert_eq!(
        report["requested_normalizations"][1],
        json!({"column": "name", "type": "title_case", "parameters": {}})
    );
}

#[tokio::test]
async fn fact_14_uppercase_of_several_rows() {
    let app = spawn_app().await;
    let (_, table) = apply(&app, &[&["w"], &["hello"], &["world"]], json!([step("w", "uppercase")])).await;
    assert_eq!(column_texts(&table, "w"), ["HELLO", "WORLD"]);
}

#[tokio::test]
async fn fact_15_names_resolve_case_insensitively_and_parameters_are_kept() {
    let app = spawn_app().await;
    let steps = json!([
        step("a", "LOWERCASE"),
        {"column_name": "n", "normalization_type": "round_decimal", "parameters": {"decimals": 3}},
    ]);
    let (report, table) = apply(&app, &[&["a", "n"], &["ABC", "1.23456"]], steps).await;
    assert_eq!(column_texts(&table, "a"), ["abc"]);
    assert_eq!(column_texts(&table, "n"), ["1.235"]);
    let processed = report["columns_processed"].as_array().unwrap();
    assert_eq!(processed.len(), 2);
    assert_eq!(processed[0]["normalization_type"], "LOWERCASE");
    assert_eq!(processed[1]["parameters"], json!({"decimals": 3}));
    // Unknown types and columns are refused with 422 before anything runs: tests/api/refusals.rs.
    assert_eq!(report["success"], true);
}

#[tokio::test]
async fn fact_94_phone_format() {
    let app = spawn_app().await;
    let rows: &[&[&str]] =
        &[&["p"], &["0912 345 678"], &["1-800-555-1234"], &["+84 912 345 678"], &["(555) 123-4567"]];
    let (_, table) = apply(&app, rows, json!([step("p", "phone_format")])).await;
    assert_eq!(
        column_texts(&table, "p"),
        ["(091) 234-5678", "+1 (800) 555-1234", "+84 912 345 678", "(555) 123-4567"]
    );
}

#[tokio::test]
async fn fact_95_96_title_case_and_remove_special_chars() {
    let app = spawn_app().await;
    let rows: &[&[&str]] = &[
        &["t", "r"],
        &["o'neil-smith jr", "o'neil-smith jr"],
        &["it's", "ÉCOLE ünï 3rd"],
        &["ÉCOLE ünï 3rd", ""],
    ];
    let steps = json!([step("t", "title_case"), step("r", "remove_special_chars")]);
    let (_, table) = apply(&app, rows, steps).await;
    assert_eq!(column_texts(&table, "t"), ["O'Neil-Smith Jr", "It'S", "École Ünï 3Rd"]);
    // IMPROVE: letters outside ASCII are letters.
    assert_eq!(column_texts(&table, "r")[..2], ["oneilsmith jr", "ÉCOLE ünï 3rd"]);
}

#[tokio::test]
async fn fact_97_98_integer_and_currency() {
    let app = spawn_app().await;
    let rows: &[&[&str]] = &[
        &["i", "c"],
        &["3.14159", "$1,234.56"],
        &["-2.5", "(100)"],
        &["", "€1.234,56"],
        &["abc", ""],
        &["10", "7"],
    ];
    let steps = json!([step("i", "integer_convert"), step("c", "currency_format")]);
    let (report, table) = apply(&app, rows, steps).await;
    assert_eq!(column_texts(&table, "i"), ["3", "-2", "0", "0", "10"]);
    let c = column_texts(&table, "c");
    assert_eq!(c[..3], ["1234.56", "100", "1.23456"]);
    // `""` → Missing: the blank cell is counted as a null after the step.
    assert_eq!(c[3], "");
    assert_eq!(report["columns_processed"][1]["after_stats"]["null_count"], 1);
}

#[tokio::test]
async fn fact_99_boolean_and_yes_no() {
    let app = spawn_app().await;
    let rows: &[&[&str]] =
        &[&["b", "y"], &["Yes", "on"], &["no", "yes"], &["", "x"], &["TRUE", "x"], &["1", "x"]];
    let steps = json!([step("b", "boolean_convert"), step("y", "yes_no_convert")]);
    let (_, table) = apply(&app, rows, steps).await;
    assert_eq!(column_texts(&table, "b"), ["True", "False", "False", "True", "True"]);
    assert_eq!(column_texts(&table, "y")[..2], ["No", "Yes"]);
}

#[tokio::test]
async fn fact_100_round_decimal_is_half_even_on_binary_values() {
    let app = spawn_app().await;
    let rows: &[&[&str]] = &[&["a", "b"], &["2.675", "2.25"], &["1", "2.35"]];
    let steps = json!([
        {"column_name": "a", "normalization_type": "round_decimal", "parameters": {"decimals": 2}},
        {"column_name": "b", "normalization_type": "round_decimal", "parameters": {"decimals": 1}},
    ]);
    let (_, table) = apply(&app, rows, steps).await;
    assert_eq!(column_texts(&table, "a")[0], "2.68");
    assert_eq!(column_texts(&table, "b"), ["2.2", "2.4"]);
}

#[tokio::test]
async fn fact_101_shipped_config_appends_backup_columns_after_the_last_column() {
    let app = spawn_app().await;
    assert!(app.config.normalization.backup_original);
    let steps = json!([step("a", "uppercase"), step("b", "lowercase"), step("a", "trim_whitespace")]);
    let (_, table) = apply(&app, &[&["a", "b", "c"], &[" x ", "Y", "z"]], steps).await;
    assert_eq!(table.columns, ["a", "b", "c", "a_original", "b_original"]);
    assert_eq!(text_row(&table.rows[0]), ["X", "y", "z", " x ", "Y"]);
}

#[tokio::test]
async fn backup_original_config_off_only_backs_up_steps_that_ask() {
    let app = spawn_app_with(|c| c.normalization.backup_original = false).await;
    let steps = json!([step("a", "uppercase"), {"column_name": "b", "normalization_type": "uppercase", "backup_original": true}]);
    let (_, table) = apply(&app, &[&["a", "b"], &["x", "y"]], steps).await;
    assert_eq!(table.columns, ["a", "b", "b_original"]);
    assert_eq!(text_row(&table.rows[0]), ["X", "Y", "y"]);
}

#[tokio::test]
async fn default_answer_is_a_download_url_with_sanitized_generated_name_and_configured_layout() {
    let app = spawn_app_with(|c| {
        c.excel.default_sheet_name = "Data".into();
        c.excel.info_sheet_name = "About".into();
    })
    .await;
    let form = file_form(
        "my data (v2).xlsx",
        xlsx(&[&["a"], &["q"]]),
        &[("normalizations", &json!([step("a", "uppercase")]).to_string())],
    );
    let (status, body) = post(&app, APPLY, form).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["message"], "Extracted Excel file generated successfully");
    assert_eq!(body["data"].as_object().unwrap().len(), 1, "only download_url: {body}");
    let name = url_name(&body["data"]["download_url"]);
    let re = regex::Regex::new(r"^my_data_v2_normalized_\d{8}_\d{6}_[0-9a-f]{8}\.xlsx$").unwrap();
    assert!(re.is_match(&name), "{name}");
    let (sheets, table) = read_xlsx(&download_data(&app, &body).await);
    assert_eq!(sheets, ["Data", "About"]);
    assert_eq!(column_texts(&table, "a"), ["Q"]);
    assert_eq!(app.output_files(), [name]);
}

#[tokio::test]
async fn output_filename_is_sanitized_and_gets_the_extension() {
    let app = spawn_app_with(|c| c.excel.include_info_sheet = false).await;
    let form = file_form(
        "p.xlsx",
        xlsx(&[&["a"], &["q"]]),
        &[
            ("normalizations", &json!([step("a", "uppercase")]).to_string()),
            ("output_filename", "../my report"),
        ],
    );
    let (status, body) = post(&app, APPLY, form).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(url_name(&body["data"]["download_url"]), "my_report.xlsx");
    let (sheets, _) = read_xlsx(&download_data(&app, &body).await);
    assert_eq!(sheets, ["Sheet1"]);
    assert_eq!(app.output_files(), ["my_report.xlsx"]);
}

#[tokio::test]
async fn bad_requests_are_rejected_and_leave_nothing() {
    let app = spawn_app().await;
    let good = json!([step("a", "uppercase")]).to_string();
    let book = || xlsx(&[&["a"], &["x"]]);

    let r =
        post(&app, APPLY, with_fields(reqwest::multipart::Form::new(), &[("normalizations", &good)])).await;
    assert_error(&app, &r, 422, "ValidationError", "No file uploaded");

    let r = post(&app, APPLY, file_form("a.xlsx", book(), &[])).await;
    assert_error(&app, &r, 422, "ValidationError", "No normalization configurations provided");

    let r = post(&app, APPLY, file_form("a.xlsx", book(), &[("normalizations", "[]")])).await;
    assert_error(&app, &r, 422, "ValidationError", "No normalization configurations provided");

    let r = post(&app, APPLY, file_form("a.xlsx", book(), &[("normalizations", "[{")])).await;
    assert_error_prefix(&app, &r, 422, "ValidationError", "Invalid JSON in field 'normalizations'");
    assert_eq!(r.1["data"]["details"]["field"], "normalizations");

    let r = post(&app, APPLY, file_form("a.xlsx", book(), &[("normalizations", "{\"a\": 1}")])).await;
    assert_error(&app, &r, 422, "ValidationError", "normalizations must be a JSON array");

    let r = post(&app, APPLY, file_form("a.xlsx", book(), &[("normalizations", "[\"x\"]")])).await;
    assert_error(&app, &r, 422, "ValidationError", "normalizations[0] must be a JSON object");

    let r =
        post(&app, APPLY, file_form("a.xlsx", b"a,b\n1,2\n".to_vec(), &[("normalizations", &good)])).await;
    assert_error_prefix(&app, &r, 415, "UnsupportedFileTypeError", "Unsupported file type");

    let r =
        post(&app, APPLY, file_form("a.xlsx", b"%PDF-1.4 junk".to_vec(), &[("normalizations", &good)])).await;
    assert_error_prefix(&app, &r, 415, "UnsupportedFileTypeError", "Unsupported file type");

    let r =
        post(&app, APPLY, file_form("a.xlsx", b"PK\x03\x04broken".to_vec(), &[("normalizations", &good)]))
            .await;
    assert_error_prefix(&app, &r, 400, "FileProcessingError", "Failed to read Excel file");

    let (status, _) = envelope(app.get(APPLY).await).await;
    assert_eq!(status, 405);
}
