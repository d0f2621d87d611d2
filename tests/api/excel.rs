//! `POST /excel/{info, extract-columns, extract-columns-to-file, map-columns, search,
//! search/suggest-operators}`: happy paths checked on the produced files, the acceptance facts of
//! operations.md §13.1/§13.4/§13.5/§13.10, and every documented bad input.

use regex::Regex;
use serde_json::{json, Value};

use crate::common::{envelope, spawn_app, spawn_app_with, TestApp};
use crate::fixtures::*;

const ENDPOINTS: [&str; 6] = [
    "/excel/info",
    "/excel/extract-columns",
    "/excel/extract-columns-to-file",
    "/excel/map-columns",
    "/excel/search",
    "/excel/search/suggest-operators",
];

/// Search on the §13.4 table through `excel/search` with JSON output; returns the matched rows.
async fn excel_search(app: &TestApp, conditions: Value, logic: &str) -> Vec<Value> {
    let conditions = conditions.to_string();
    let fields = [("conditions", conditions.as_str()), ("logic", logic), ("output_format", "json")];
    let (data, message) =
        post_ok(app, "/excel/search", form("customers.xlsx", xlsx(CUSTOMERS), &fields)).await;
    let (_, bytes) = fetch(app, &data).await;
    let rows: Vec<Value> = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(data["filtered_rows"], rows.len());
    assert_eq!(data["total_rows"], 5);
    assert_eq!(message, format!("Search completed successfully. {} rows matched.", rows.len()));
    rows
}

fn names(rows: &[Value]) -> Vec<&str> {
    rows.iter().map(|r| r["name"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn excel_info_reports_sheets_columns_and_types() {
    let app = spawn_app().await;
    let book = xlsx_sheets(&[
        (
            "Orders",
            &[
                &["order_no", "customer", "amount"],
                &["A-1", "Acme", "10.5"],
                &["A-2", "", "3"],
                &["A-3", "Globex", "7"],
            ],
        ),
        ("Lookup", &[&["k"]]),
    ]);
    let (data, message) = post_ok(&app, "/excel/info", form("sales_q1.xlsx", book, &[])).await;
    assert_eq!(message, "File information retrieved successfully");
    assert_eq!(
        data,
        json!({
            "file_name": "sales_q1.xlsx",
            "file_path": "uploads/sales_q1.xlsx",
            "sheets": ["Orders", "Lookup"],
            "rows": 3,
            "columns": 3,
            "column_names": ["order_no", "customer", "amount"],
            "data_types": {"amount": "object", "customer": "object", "order_no": "object"},
            "inferred_types": {"amount": "number", "customer": "string", "order_no": "string"},
        })
    );
    assert!(app.output_files().is_empty());
}

#[tokio::test]
async fn excel_info_sniffs_content_not_extension_and_sanitizes_names() {
    let app = spawn_app().await;
    // An xlsx uploaded as `.xls` works (the extension must be allowed, the content decides the kind); the
    // reported name is sanitized, never a server path.
    let (data, _) = post_ok(&app, "/excel/info", form("../dữ liệu (v2).xls", xlsx(CUSTOMERS), &[])).await;
    assert_eq!(data["file_name"], "du_lieu_v2.xls");
    assert_eq!(data["file_path"], "uploads/du_lieu_v2.xls");
    assert_eq!(data["rows"], 5);
}

#[tokio::test]
async fn fact_1_and_102_excel_cells_render_as_text() {
    // §13.10 fact 102: integer 1000 → "1000", 2.5 → "2.5", a date → "2024-02-20 00:00:00", a boolean →
    // "True", a blank header in column F → "Unnamed: 5", a duplicate header → "name.1", #N/A → missing.
    // Numeric header cells become strings (rest-api.md §7.2.1 IMPROVE).
    let mut wb = rust_xlsxwriter::Workbook::new();
    let date = rust_xlsxwriter::Format::new().set_num_format("yyyy-mm-dd");
    let ws = wb.add_worksheet();
    for (i, h) in ["name", "int", "float", "date", "bool"].iter().enumerate() {
        ws.write_string(0, i as u16, *h).unwrap();
    }
    ws.write_string(0, 6, "name").unwrap();
    ws.write_number(0, 7, 2024.0).unwrap();
    ws.write_string(1, 0, "x").unwrap();
    ws.write_number(1, 1, 1000.0).unwrap();
    ws.write_number(1, 2, 2.5).unwrap();
    ws.write_number_with_format(1, 3, 45342.0, &date).unwrap();
    ws.write_boolean(1, 4, true).unwrap();
    ws.write_string(1, 5, "f").unwrap();
    ws.write_number(1, 6, 999_999.0).unwrap();
    let book = rewrite_zip_entry(&wb.save_to_buffer().unwrap(), "xl/worksheets/sheet1.xml", |xml| {
        xml.replace(r#"<c r="G2"><v>999999</v></c>"#, r#"<c r="G2" t="e"><v>#N/A</v></c>"#)
    });
    let app = spawn_app().await;
    let (info, _) = post_ok(&app, "/excel/info", form("cells.xlsx", book.clone(), &[])).await;
    assert_eq!(
        info["column_names"],
        json!(["name", "int", "float", "date", "bool", "Unnamed: 5", "name.1", "2024"])
    );
    let columns = json!(["int", "float", "date", "bool", "name.1"]).to_string();
    let (data, message) =
        post_ok(&app, "/excel/extract-columns", form("cells.xlsx", book, &[("columns", &columns)])).await;
    assert_eq!(message, "Successfully extracted 5 columns");
    let values = |c: &str| data["columns"][c]["values"].clone();
    assert_eq!(values("int"), json!(["1000"]));
    assert_eq!(values("float"), json!(["2.5"]));
    assert_eq!(values("date"), json!(["2024-02-20 00:00:00"]));
    assert_eq!(values("bool"), json!(["True"]));
    assert_eq!(values("name.1"), json!([null]));
    assert_eq!(data["columns"]["name.1"]["null_count"], 1);
}

#[tokio::test]
async fn fact_3_leading_zero_text_cells_read_back_unchanged() {
    let app = spawn_app().await;
    let book = xlsx(&[
        &["zip_code", "code"],
        &["021201", "0001ABC"],
        &["00123", "XYZ0002"],
        &["0123456789", "00000"],
    ]);
    let columns = json!(["zip_code", "code"]).to_string();
    let (data, _) =
        post_ok(&app, "/excel/extract-columns", form("codes.xlsx", book.clone(), &[("columns", &columns)]))
            .await;
    assert_eq!(data["columns"]["zip_code"]["values"], json!(["021201", "00123", "0123456789"]));
    assert_eq!(data["columns"]["code"]["values"], json!(["0001ABC", "XYZ0002", "00000"]));
    let (info, _) = post_ok(&app, "/excel/info", form("codes.xlsx", book, &[])).await;
    assert_eq!(info["inferred_types"], json!({"code": "string", "zip_code": "string"}));
}

#[tokio::test]
async fn extract_columns_returns_values_statistics_and_studio_fields() {
    let app = spawn_app().await;
    let book = xlsx(&[
        &["customer", "amount", "other"],
        &["Acme", "10", "x"],
        &["Globex", "20", "y"],
        &["", "30", "z"],
        &["Acme", "40", "w"],
        &["Initech", "50", "v"],
        &["Umbrella", "60", "u"],
    ]);
    let columns = json!(["customer", "amount"]).to_string();
    let (data, message) =
        post_ok(&app, "/excel/extract-columns", form("c.xlsx", book.clone(), &[("columns", &columns)])).await;
    assert_eq!(message, "Successfully extracted 2 columns");
    assert_eq!(data["total_rows"], 6);
    assert_eq!(data["rows_extracted"], 6);
    let info = &data["extraction_info"];
    assert_eq!(info["total_rows"], 6);
    assert_eq!(info["extracted_columns"], json!(["customer", "amount"]));
    // Unknown names are refused with 422 (tests/api/refusals.rs), so none is ever reported missing here.
    assert_eq!(info["missing_columns"], json!([]));
    assert_eq!(info["remove_duplicates"], false);
    assert!(info["timestamp"].as_str().is_some_and(|t| t.len() >= 26), "{info}");
    let customer = &data["columns"]["customer"];
    assert_eq!(customer["values"], json!(["Acme", "Globex", "", "Acme", "Initech", "Umbrella"]));
    assert_eq!(customer["value_count"], 6);
    assert_eq!(customer["count"], 6);
    assert_eq!(customer["sample_values"], json!(["Acme", "Globex", "", "Acme", "Initech"]));
    assert_eq!(
        (&customer["total_count"], &customer["non_null_count"], &customer["null_count"]),
        (&json!(6), &json!(6), &json!(0))
    );
    assert_eq!(customer["unique_count"], 5);
    assert_eq!(customer["data_type"], "object");
    assert!(data["columns"].get("other").is_none());

    // Distinct values, without statistics: data_type stays for the studio.
    let fields =
        [("columns", columns.as_str()), ("remove_duplicates", "true"), ("include_statistics", "false")];
    let (data, _) = post_ok(&app, "/excel/extract-columns", form("c.xlsx", book, &fields)).await;
    let customer = &data["columns"]["customer"];
    assert_eq!(customer["values"], json!(["Acme", "Globex", "", "Initech", "Umbrella"]));
    assert_eq!(customer["data_type"], "object");
    assert!(customer.get("unique_count").is_none() && customer.get("total_count").is_none());
    assert_eq!(data["rows_extracted"], 6, "amount has 6 distinct values");
    assert!(app.output_files().is_empty());
}

#[tokio::test]
async fn extract_columns_field_validation() {
    let app = spawn_app().await;
    let book = || xlsx(PEOPLE);
    let no_columns = "No columns specified for extraction";
    for path in ["/excel/extract-columns", "/excel/extract-columns-to-file"] {
        post_err(&app, path, form("p.xlsx", book(), &[]), 422, "ValidationError", no_columns).await;
        post_err(
            &app,
            path,
            form("p.xlsx", book(), &[("columns", "[]")]),
            422,
            "ValidationError",
            no_columns,
        )
        .await;
        // A string instead of an array is refused (the reference iterated over its characters).
        let details = post_err(
            &app,
            path,
            form("p.xlsx", book(), &[("columns", "\"Name\"")]),
            422,
            "ValidationError",
            "'columns' must be a JSON array of strings",
        )
        .await;
        assert_eq!(details, json!({"field": "columns"}));
        let (status, body) = post(&app, path, form("p.xlsx", book(), &[("columns", "[\"Name\"")])).await;
        assert_eq!(status, 422);
        assert_eq!(body["data"]["error_type"], "ValidationError");
        assert_eq!(body["data"]["details"]["field"], "columns");
        assert!(body["message"].as_str().unwrap().starts_with("Invalid JSON in field 'columns'"), "{body}");
    }
}

#[tokio::test]
async fn fact_29_extraction_to_file_has_exactly_the_two_columns_and_4_rows() {
    let app = spawn_app().await;
    let columns = json!(["Name", "Email"]).to_string();
    let (data, message) = post_ok(
        &app,
        "/excel/extract-columns-to-file",
        form("people.xlsx", xlsx(PEOPLE), &[("columns", &columns)]),
    )
    .await;
    assert_eq!(message, "Extracted Excel file generated successfully");
    let (name, bytes) = fetch(&app, &data).await;
    let re = Regex::new(r"^extracted_columns_\d{8}_\d{6}_[0-9a-f]{8}\.xlsx$").unwrap();
    assert!(re.is_match(&name), "{name}");
    assert_eq!(app.output_files(), vec![name]);
    assert_eq!(xlsx_sheet_names(&bytes), vec!["Sheet1", "Info"]);
    let rows = xlsx_rows(&bytes, "Sheet1");
    assert_eq!(rows[0], vec!["Name", "Email"]);
    assert_eq!(rows.len(), 1 + 4);
    assert_eq!(rows[4], vec!["John Doe", "john@test.com"]);
    let info = xlsx_rows(&bytes, "Info");
    assert_eq!(info[0], vec!["Property", "Value"]);
    assert_eq!(info[3], vec!["Rows", "4"]);
    assert_eq!(info[5], vec!["Column Names", "Name, Email"]);
}

#[tokio::test]
async fn fact_30_extraction_to_file_removes_the_repeated_row() {
    let app = spawn_app().await;
    let columns = json!(["Name", "Email"]).to_string();
    let fields = [("columns", columns.as_str()), ("remove_duplicates", "true")];
    let (data, _) =
        post_ok(&app, "/excel/extract-columns-to-file", form("people.xlsx", xlsx(PEOPLE), &fields)).await;
    let (_, bytes) = fetch(&app, &data).await;
    let rows = xlsx_rows(&bytes, "Sheet1");
    assert_eq!(
        rows,
        vec![
            vec!["Name", "Email"],
            vec!["John Doe", "john@test.com"],
            vec!["Jane Smith", "jane@test.com"],
            vec!["Bob Wilson", "bob@test.com"],
        ]
    );
}

#[tokio::test]
async fn fact_31_extraction_to_file_with_an_unknown_column_fails() {
    let app = spawn_app().await;
    let columns = json!(["Name", "Salary"]).to_string();
    let details = post_err(
        &app,
        "/excel/extract-columns-to-file",
        form("people.xlsx", xlsx(PEOPLE), &[("columns", &columns)]),
        422,
        "ValidationError",
        "Columns not found in data: Salary",
    )
    .await;
    assert_eq!(details["missing_columns"], json!(["Salary"]));
    assert_eq!(details["available_columns"], json!(["Name", "Email", "Phone", "Age"]));
}

#[tokio::test]
async fn map_columns_builds_the_mapped_workbook() {
    let app = spawn_app().await;
    let book = xlsx(&[&["name", "city", "score"], &["Ann", "Oslo", "7"], &["Bob", "", "8"]]);
    let mapping = json!({
        "Customer": "name",
        "Town": {"source": "city", "default": "unknown"},
        "Missing": "nope",
        "Const": {"default": 5},
    })
    .to_string();
    let (data, message) =
        post_ok(&app, "/excel/map-columns", form("orders.xlsx", book, &[("mapping", &mapping)])).await;
    assert_eq!(message, "Extracted Excel file generated successfully");
    assert_eq!(data["warnings"], json!(["Source column 'nope' not found"]));
    let (name, bytes) = fetch(&app, &data).await;
    let re = Regex::new(r"^orders_mapped_\d{8}_\d{6}_[0-9a-f]{8}\.xlsx$").unwrap();
    assert!(re.is_match(&name), "{name}");
    assert_eq!(xlsx_sheet_names(&bytes), vec!["Sheet1", "Info"]);
    assert_eq!(
        xlsx_rows(&bytes, "Sheet1"),
        vec![
            vec!["Customer", "Town", "Missing", "Const"],
            vec!["Ann", "Oslo", "", "5"],
            vec!["Bob", "unknown", "", "5"],
        ]
    );
    assert!(
        matches!(xlsx_cell(&bytes, "Sheet1", 1, 3), calamine::Data::Float(f) if f == 5.0),
        "numeric default"
    );
}

#[tokio::test]
async fn map_columns_output_filename_is_sanitized_and_gets_the_extension() {
    let app = spawn_app().await;
    let mapping = json!({"N": "Name"}).to_string();
    let fields = [("mapping", mapping.as_str()), ("output_filename", "../my result")];
    let (data, _) = post_ok(&app, "/excel/map-columns", form("p.xlsx", xlsx(PEOPLE), &fields)).await;
    let (name, bytes) = fetch(&app, &data).await;
    assert_eq!(name, "my_result.xlsx");
    assert_eq!(app.output_files(), vec!["my_result.xlsx"]);
    assert_eq!(xlsx_rows(&bytes, "Sheet1").len(), 5);
}

#[tokio::test]
async fn map_columns_honours_the_excel_config() {
    let app = spawn_app_with(|c| {
        c.excel.default_sheet_name = "Data".into();
        c.excel.info_sheet_name = "About".into();
    })
    .await;
    let mapping = json!({"N": "Name"}).to_string();
    let (data, _) =
        post_ok(&app, "/excel/map-columns", form("p.xlsx", xlsx(PEOPLE), &[("mapping", &mapping)])).await;
    let (_, bytes) = fetch(&app, &data).await;
    assert_eq!(xlsx_sheet_names(&bytes), vec!["Data", "About"]);

    let app = spawn_app_with(|c| c.excel.include_info_sheet = false).await;
    let (data, _) =
        post_ok(&app, "/excel/map-columns", form("p.xlsx", xlsx(PEOPLE), &[("mapping", &mapping)])).await;
    let (_, bytes) = fetch(&app, &data).await;
    assert_eq!(xlsx_sheet_names(&bytes), vec!["Sheet1"]);
}

#[tokio::test]
async fn map_columns_field_validation() {
    let app = spawn_app().await;
    let book = || xlsx(PEOPLE);
    let empty = "No column mapping provided";
    post_err(&app, "/excel/map-columns", form("p.xlsx", book(), &[]), 422, "ValidationError", empty).await;
    post_err(
        &app,
        "/excel/map-columns",
        form("p.xlsx", book(), &[("mapping", "{}")]),
        422,
        "ValidationError",
        empty,
    )
    .await;
    let details = post_err(
        &app,
        "/excel/map-columns",
        form("p.xlsx", book(), &[("mapping", "[\"Name\"]")]),
        422,
        "ValidationError",
        "'mapping' must be a JSON object",
    )
    .await;
    assert_eq!(details, json!({"field": "mapping"}));
    let (status, body) =
        post(&app, "/excel/map-columns", form("p.xlsx", book(), &[("mapping", "{oops")])).await;
    assert_eq!((status, &body["data"]["details"]["field"]), (422, &json!("mapping")), "{body}");
}

#[tokio::test]
async fn fact_107_names_with_spaces_give_downloadable_urls() {
    let app = spawn_app().await;
    let mapping = json!({"N": "Name"}).to_string();
    let (data, _) = post_ok(
        &app,
        "/excel/map-columns",
        form("my data (v2).xlsx", xlsx(PEOPLE), &[("mapping", &mapping)]),
    )
    .await;
    let (name, bytes) = fetch(&app, &data).await;
    let re = Regex::new(r"^my_data_v2_mapped_\d{8}_\d{6}_[0-9a-f]{8}\.xlsx$").unwrap();
    assert!(re.is_match(&name), "{name}");
    assert_eq!(xlsx_rows(&bytes, "Sheet1")[1], vec!["John Doe"]);
}

#[tokio::test]
async fn non_ascii_client_name_gives_a_working_url() {
    let app = spawn_app().await;
    let mapping = json!({"N": "Name"}).to_string();
    let (data, _) = post_ok(
        &app,
        "/excel/map-columns",
        form("données € 文件.xlsx", xlsx(PEOPLE), &[("mapping", &mapping)]),
    )
    .await;
    let (name, bytes) = fetch(&app, &data).await;
    assert!(name.starts_with("donnees_mapped_"), "{name}");
    assert_eq!(xlsx_rows(&bytes, "Sheet1").len(), 5);
}

#[tokio::test]
async fn fact_108_a_client_name_with_dot_dot_cannot_escape_the_output_folder() {
    let app = spawn_app().await;
    let mapping = json!({"N": "Name"}).to_string();
    let (data, _) = post_ok(
        &app,
        "/excel/map-columns",
        form("../../escape.xlsx", xlsx(PEOPLE), &[("mapping", &mapping)]),
    )
    .await;
    let (name, _) = fetch(&app, &data).await;
    assert!(name.starts_with("escape_mapped_"), "{name}");
    assert_eq!(app.output_files(), vec![name]);
    // Nothing next to the output folder, nor above the test's root.
    let root_entries = crate::common::list_files(app.dir.path());
    assert!(root_entries.iter().all(|e| !e.contains("escape")), "{root_entries:?}");
    let parent = crate::common::list_files(app.dir.path().parent().unwrap());
    assert!(parent.iter().all(|e| !e.starts_with("escape_mapped")), "wrote above the root");
}

#[tokio::test]
async fn fact_16_equals_keeps_leading_zero_text() {
    let app = spawn_app().await;
    let rows = excel_search(
        &app,
        json!([{"column": "customer_id", "operator": "equals", "value": "021201"}]),
        "AND",
    )
    .await;
    assert_eq!(names(&rows), vec!["John Doe"]);
    // Rows keep all columns in file order, as strings.
    assert_eq!(
        rows[0],
        json!({"customer_id": "021201", "name": "John Doe", "amount": "1000", "status": "active"})
    );
    let keys: Vec<&String> = rows[0].as_object().unwrap().keys().collect();
    assert_eq!(keys, vec!["customer_id", "name", "amount", "status"]);
}

#[tokio::test]
async fn fact_17_contains_is_case_insensitive() {
    let app = spawn_app().await;
    let rows =
        excel_search(&app, json!([{"column": "name", "operator": "contains", "value": "smith"}]), "AND")
            .await;
    assert_eq!(names(&rows), vec!["Jane Smith"]);
}

#[tokio::test]
async fn fact_18_greater_than_a_number_on_text_cells() {
    let app = spawn_app().await;
    let rows =
        excel_search(&app, json!([{"column": "amount", "operator": "greater_than", "value": 1000}]), "AND")
            .await;
    let amounts: Vec<&str> = rows.iter().map(|r| r["amount"].as_str().unwrap()).collect();
    assert_eq!(amounts, vec!["1500", "2000", "1200"]);
}

#[tokio::test]
async fn fact_19_and_combination() {
    let app = spawn_app().await;
    let conditions = json!([
        {"column": "status", "operator": "equals", "value": "active"},
        {"column": "amount", "operator": "greater_than", "value": 1000},
    ]);
    let rows = excel_search(&app, conditions, "and").await;
    assert_eq!(names(&rows), vec!["Alice Brown"]);
}

#[tokio::test]
async fn fact_20_or_combination() {
    let app = spawn_app().await;
    let conditions = json!([
        {"column": "customer_id", "operator": "equals", "value": "021201"},
        {"column": "customer_id", "operator": "equals", "value": "021202"},
    ]);
    let rows = excel_search(&app, conditions, "OR").await;
    assert_eq!(names(&rows), vec!["John Doe", "Jane Smith"]);
}

#[tokio::test]
async fn fact_21_starts_with() {
    let app = spawn_app().await;
    let rows =
        excel_search(&app, json!([{"column": "name", "operator": "starts_with", "value": "J"}]), "AND").await;
    assert_eq!(names(&rows), vec!["John Doe", "Jane Smith"]);
}

#[tokio::test]
async fn fact_22_not_equals() {
    let app = spawn_app().await;
    let rows = excel_search(
        &app,
        json!([{"column": "status", "operator": "not_equals", "value": "inactive"}]),
        "AND",
    )
    .await;
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|r| r["status"] == "active"));
}

#[tokio::test]
async fn fact_23_24_25_search_validation_messages() {
    let app = spawn_app().await;
    let book = || xlsx(CUSTOMERS);
    let none = "At least one search condition is required";
    post_err(&app, "/excel/search", form("c.xlsx", book(), &[]), 422, "ValidationError", none).await;
    post_err(
        &app,
        "/excel/search",
        form("c.xlsx", book(), &[("conditions", "[]")]),
        422,
        "ValidationError",
        none,
    )
    .await;
    let unknown = json!([{"column": "nonexistent_column", "operator": "equals", "value": "x"}]).to_string();
    post_err(
        &app,
        "/excel/search",
        form("c.xlsx", book(), &[("conditions", &unknown)]),
        422,
        "ValidationError",
        "Column 'nonexistent_column' not found in data",
    )
    .await;
    let ok = json!([{"column": "name", "operator": "equals", "value": "x"}]).to_string();
    let details = post_err(
        &app,
        "/excel/search",
        form("c.xlsx", book(), &[("conditions", &ok), ("logic", "INVALID")]),
        422,
        "ValidationError",
        "Logic must be either 'AND' or 'OR'",
    )
    .await;
    assert_eq!(details["field"], "logic");
    // An empty value is not the default.
    post_err(
        &app,
        "/excel/search",
        form("c.xlsx", book(), &[("conditions", &ok), ("logic", "")]),
        422,
        "ValidationError",
        "Logic must be either 'AND' or 'OR'",
    )
    .await;
}

#[tokio::test]
async fn search_rejects_unknown_operators_bad_between_and_malformed_conditions() {
    let app = spawn_app().await;
    let book = || xlsx(CUSTOMERS);
    let cond = |v: Value| v.to_string();
    post_err(
        &app,
        "/excel/search",
        form(
            "c.xlsx",
            book(),
            &[("conditions", &cond(json!([{"column": "name", "operator": "resembles", "value": 1}])))],
        ),
        422,
        "ValidationError",
        "Unsupported operator: resembles",
    )
    .await;
    post_err(
        &app,
        "/excel/search",
        form(
            "c.xlsx",
            book(),
            &[("conditions", &cond(json!([{"column": "amount", "operator": "between", "value": [1]}])))],
        ),
        422,
        "ValidationError",
        "For 'between' operator, value must be a list with [min, max]",
    )
    .await;
    // Conditions are checked in list order: the unknown column comes first.
    let two = json!([
        {"column": "ghost", "operator": "equals", "value": 1},
        {"column": "name", "operator": "resembles", "value": 1},
    ]);
    post_err(
        &app,
        "/excel/search",
        form("c.xlsx", book(), &[("conditions", &cond(two))]),
        422,
        "ValidationError",
        "Column 'ghost' not found in data",
    )
    .await;
    let (status, body) =
        post(&app, "/excel/search", form("c.xlsx", book(), &[("conditions", "[{\"column\":")])).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["data"]["error_type"], "ValidationError");
    assert_eq!(body["data"]["details"], json!({"field": "conditions"}));
    assert!(body["message"].as_str().unwrap().starts_with("Invalid JSON in field 'conditions'"));
    let details = post_err(
        &app,
        "/excel/search",
        form("c.xlsx", book(), &[("conditions", "[1, 2]")]),
        422,
        "ValidationError",
        "conditions must be a JSON array of objects with column, operator and value",
    )
    .await;
    assert_eq!(details, json!({"field": "conditions"}));
    assert!(app.output_files().is_empty());
}

#[tokio::test]
async fn fact_27_search_results_in_every_format_hold_all_matching_rows() {
    let app = spawn_app().await;
    let all = json!([{"column": "name", "operator": "is_not_empty", "value": ""}]).to_string();
    let run = |format: &'static str| {
        let all = all.clone();
        let app = &app;
        async move {
            let fields = [("conditions", all.as_str()), ("output_format", format)];
            let (data, _) = post_ok(app, "/excel/search", form("c.xlsx", xlsx(CUSTOMERS), &fields)).await;
            assert_eq!(data["filtered_rows"], 5);
            assert_eq!(data["conditions_applied"], 1);
            fetch(app, &data).await
        }
    };
    let (name, bytes) = run("XLSX").await;
    assert!(name.starts_with("search_results_") && name.ends_with(".xlsx"), "{name}");
    assert_eq!(xlsx_sheet_names(&bytes), vec!["Sheet1"], "search workbooks have no Info sheet");
    let expected: Vec<Vec<String>> =
        CUSTOMERS.iter().map(|r| r.iter().map(|s| s.to_string()).collect()).collect();
    assert_eq!(xlsx_rows(&bytes, "Sheet1"), expected);
    let (name, bytes) = run("csv").await;
    assert!(name.ends_with(".csv"), "{name}");
    assert_eq!(csv_rows(&bytes), expected);
    let (name, bytes) = run("json").await;
    assert!(name.ends_with(".json"), "{name}");
    let rows: Vec<Value> = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(rows.len(), 5);
    assert_eq!(rows[4]["customer_id"], "021205");

    let fields = [("conditions", all.as_str()), ("output_format", "pdf")];
    let details = post_err(
        &app,
        "/excel/search",
        form("c.xlsx", xlsx(CUSTOMERS), &fields),
        422,
        "ValidationError",
        "Output format must be xlsx, csv, or json",
    )
    .await;
    assert_eq!(details["field"], "output_format");
}

#[tokio::test]
async fn fact_28_search_defaults_and_output_names() {
    let app = spawn_app().await;
    let cond = json!([{"column": "status", "operator": "equals", "value": "active"}]).to_string();
    // Default logic AND, default format xlsx on the Excel route.
    let (data, _) =
        post_ok(&app, "/excel/search", form("c.xlsx", xlsx(CUSTOMERS), &[("conditions", &cond)])).await;
    let (name, bytes) = fetch(&app, &data).await;
    let re = Regex::new(r"^search_results_\d{8}_\d{6}_[0-9a-f]{8}\.xlsx$").unwrap();
    assert!(re.is_match(&name), "{name}");
    assert_eq!(xlsx_rows(&bytes, "Sheet1").len(), 1 + 3);
    // A given name is kept (sanitized), and the extension always matches the format.
    let fields = [("conditions", cond.as_str()), ("output_filename", "active customers")];
    let (data, _) = post_ok(&app, "/excel/search", form("c.xlsx", xlsx(CUSTOMERS), &fields)).await;
    assert_eq!(fetch(&app, &data).await.0, "active_customers.xlsx");
    let fields = [("conditions", cond.as_str()), ("output_filename", "res.csv")];
    let (data, _) = post_ok(&app, "/excel/search", form("c.xlsx", xlsx(CUSTOMERS), &fields)).await;
    let (name, bytes) = fetch(&app, &data).await;
    assert_eq!(name, "res.csv.xlsx");
    assert_eq!(&bytes[..2], b"PK");
}

#[tokio::test]
async fn fact_103_studio_string_values_compare_numerically() {
    let app = spawn_app().await;
    let book = xlsx(&[
        &["id", "amount"],
        &["a", "1000"],
        &["b", "1500.75"],
        &["c", ""],
        &["d", "$1,234.56"],
        &["e", "999"],
    ]);
    let cond = json!([{"column": "amount", "operator": "greater_than", "value": "999"}]).to_string();
    let fields = [("conditions", cond.as_str()), ("output_format", "json")];
    let (data, _) = post_ok(&app, "/excel/search", form("a.xlsx", book, &fields)).await;
    let rows: Vec<Value> = serde_json::from_slice(&fetch(&app, &data).await.1).unwrap();
    let ids: Vec<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec!["a", "b"]);
}

#[tokio::test]
async fn fact_110_contains_a_parenthesis_is_a_literal_match() {
    let app = spawn_app().await;
    let book = xlsx(&[&["note"], &["call (urgent)"], &["plain"], &["a.b"]]);
    let cond = json!([{"column": "note", "operator": "contains", "value": "("}]).to_string();
    let fields = [("conditions", cond.as_str()), ("output_format", "csv")];
    let (data, _) = post_ok(&app, "/excel/search", form("n.xlsx", book.clone(), &fields)).await;
    assert_eq!(csv_rows(&fetch(&app, &data).await.1), vec![vec!["note"], vec!["call (urgent)"]]);
    // `.` is not a wildcard either.
    let cond = json!([{"column": "note", "operator": "contains", "value": "."}]).to_string();
    let fields = [("conditions", cond.as_str()), ("output_format", "csv")];
    let (data, _) = post_ok(&app, "/excel/search", form("n.xlsx", book, &fields)).await;
    assert_eq!(data["filtered_rows"], 1);
}

#[tokio::test]
async fn fact_26_suggest_operators_text_first_then_inferred_extras() {
    let app = spawn_app().await;
    let book = xlsx(&[
        &["customer_id", "name", "amount", "price", "day"],
        &["021201", "John", "1000", "1.5", "2024-01-05"],
        &["021202", "Jane", "1500", "2.25", "2024-02-10"],
    ]);
    let (data, message) = post_ok(&app, "/excel/search/suggest-operators", form("s.xlsx", book, &[])).await;
    assert_eq!(message, "Operator suggestions generated successfully");
    let text_ops = json!([
        "equals",
        "not_equals",
        "contains",
        "not_contains",
        "starts_with",
        "ends_with",
        "is_empty",
        "is_not_empty"
    ]);
    for column in ["customer_id", "name"] {
        assert_eq!(data[column]["type"], "object");
        assert_eq!(data[column]["operators"], text_ops, "{column}");
        assert_eq!(data[column]["inferred_type"], "string");
    }
    let numeric_extras =
        ["greater_than", "greater_than_or_equal", "less_than", "less_than_or_equal", "between"];
    for (column, inferred) in [("amount", "integer"), ("price", "number")] {
        assert_eq!(data[column]["type"], "object");
        assert_eq!(data[column]["inferred_type"], inferred);
        let ops = data[column]["operators"].as_array().unwrap();
        assert_eq!(&ops[..8], text_ops.as_array().unwrap().as_slice());
        let extras: Vec<&str> = ops[8..].iter().map(|o| o.as_str().unwrap()).collect();
        assert_eq!(extras, numeric_extras);
    }
    assert_eq!(data["day"]["inferred_type"], "date");
    let extras: Vec<&str> =
        data["day"]["operators"].as_array().unwrap()[8..].iter().map(|o| o.as_str().unwrap()).collect();
    assert_eq!(extras, vec!["before", "after", "between"]);
}

#[tokio::test]
async fn every_excel_endpoint_requires_the_file() {
    let app = spawn_app().await;
    for path in ENDPOINTS {
        let details = post_err(
            &app,
            path,
            fields_only(&[("columns", "[\"a\"]"), ("conditions", "[{}]")]),
            422,
            "ValidationError",
            "No file uploaded",
        )
        .await;
        assert_eq!(details, json!({"field": "file"}), "{path}");
        // A JSON body has no file parts either.
        let (status, body) = envelope(app.post_json(path, &json!({"columns": ["a"]})).await).await;
        assert_eq!((status, body["message"].as_str()), (422, Some("No file uploaded")), "{path}");
        // An empty file name counts as absent.
        post_err(
            &app,
            path,
            form("", xlsx(PEOPLE), &[("columns", "[\"Name\"]")]),
            422,
            "ValidationError",
            "No file uploaded",
        )
        .await;
    }
}

#[tokio::test]
async fn excel_endpoints_refuse_csv_and_pdf_content_with_415() {
    let app = spawn_app().await;
    let fields = [
        ("columns", "[\"Name\"]"),
        ("mapping", "{\"N\": \"Name\"}"),
        ("conditions", "[{\"column\": \"Name\", \"operator\": \"equals\", \"value\": \"x\"}]"),
    ];
    for path in ENDPOINTS {
        let prefix = if path.ends_with("info") || path.ends_with("suggest-operators") {
            "Failed to get file info: "
        } else {
            ""
        };
        for (name, bytes, found) in [
            ("people.xlsx", csv_text(PEOPLE), "text (CSV)"),
            ("report.xlsx", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj".to_vec(), "PDF document"),
        ] {
            let message = format!("{prefix}Unsupported file type: expected Excel workbook, found {found}");
            post_err(&app, path, form(name, bytes, &fields), 415, "UnsupportedFileTypeError", &message).await;
        }
    }
}

#[tokio::test]
async fn corrupt_and_empty_workbooks_are_400() {
    let app = spawn_app().await;
    let (status, body) =
        post(&app, "/excel/info", form("broken.xlsx", b"PK\x03\x04garbage".to_vec(), &[])).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["data"]["error_type"], "FileProcessingError");
    assert!(
        body["message"].as_str().unwrap().starts_with("Failed to get file info: Failed to read Excel file: "),
        "{body}"
    );
    let mut truncated = xlsx(PEOPLE);
    truncated.truncate(truncated.len() / 2);
    let (status, body) =
        post(&app, "/excel/extract-columns", form("half.xlsx", truncated, &[("columns", "[\"Name\"]")]))
            .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().starts_with("Failed to read Excel file: "), "{body}");
    post_err(
        &app,
        "/excel/info",
        form("empty.xlsx", Vec::new(), &[]),
        400,
        "FileProcessingError",
        "Failed to get file info: Failed to read Excel file: the file is empty",
    )
    .await;
    assert!(app.output_files().is_empty());
}

#[tokio::test]
async fn dimension_bomb_is_refused_with_422() {
    let app = spawn_app().await;
    let bomb = dimension_bomb();
    assert!(bomb.len() < 10_000, "a tiny file");
    let started = std::time::Instant::now();
    let details = post_err(
        &app,
        "/excel/search",
        form(
            "bomb.xlsx",
            bomb,
            &[("conditions", "[{\"column\": \"a\", \"operator\": \"equals\", \"value\": 1}]")],
        ),
        422,
        "ValidationError",
        "Sheet too large: 1048576 rows x 16384 columns exceeds the limit of 50000000 cells",
    )
    .await;
    assert_eq!(details, json!({"rows": 1_048_576u64, "columns": 16_384, "max_cells": 50_000_000}));
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[tokio::test]
async fn zip_bomb_is_refused_with_413() {
    let app = spawn_app().await;
    let bomb = zip_bomb();
    assert!(bomb.len() < 64 * 1024, "a small file");
    let (status, body) = post(&app, "/excel/info", form("bomb.xlsx", bomb, &[])).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["data"]["error_type"], "PayloadTooLarge");
    assert!(
        body["message"].as_str().unwrap().starts_with("Failed to get file info: File too large: "),
        "{body}"
    );
}

#[tokio::test]
async fn fact_109_oversize_upload_is_413() {
    let app = spawn_app_with(|c| c.file.max_file_size_mb = 1).await;
    let big = vec![b'a'; 2 * 1024 * 1024];
    let (status, body) = post(&app, "/excel/info", form("big.xlsx", big, &[])).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["data"]["error_type"], "PayloadTooLarge");
    assert!(app.output_files().is_empty());
}

#[tokio::test]
async fn get_on_a_post_route_is_a_json_405() {
    let app = spawn_app().await;
    for path in ENDPOINTS {
        let res = app.get(path).await;
        assert_eq!(res.headers().get("allow").and_then(|v| v.to_str().ok()), Some("POST, OPTIONS"), "{path}");
        let (status, body) = envelope(res).await;
        assert_eq!(status, 405);
        assert_eq!(body["message"], "Method not allowed");
        assert_eq!(body["data"], Value::Null);
    }
}
