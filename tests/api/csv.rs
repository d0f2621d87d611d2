//! `POST /csv/{info, convert-to-excel, search, search/suggest-operators}`: happy paths checked on the
//! produced files, acceptance facts of operations.md §13.1/§13.4, encodings, delimiters and bad input.

use regex::Regex;
use serde_json::{json, Value};

use crate::common::{envelope, spawn_app, spawn_app_with, TestApp};
use crate::fixtures::*;

const ENDPOINTS: [&str; 4] =
    ["/csv/info", "/csv/convert-to-excel", "/csv/search", "/csv/search/suggest-operators"];

const CONTACTS: &[u8] = b"name,email,age\nJohn,john@x.com,30\nJane,jane@x.com,25\nBob,bob@x.com,41\n";

/// Runs a search on the §13.4 table through both routes (CSV and Excel upload, JSON output) and checks
/// they agree; returns the matched rows.
async fn search_both(app: &TestApp, conditions: Value, logic: &str) -> Vec<Value> {
    let conditions = conditions.to_string();
    let fields = [("conditions", conditions.as_str()), ("logic", logic), ("output_format", "json")];
    let mut results = Vec::new();
    for (path, name, bytes) in [
        ("/csv/search", "customers.csv", csv_text(CUSTOMERS)),
        ("/excel/search", "customers.xlsx", xlsx(CUSTOMERS)),
    ] {
        let (data, _) = post_ok(app, path, form(name, bytes, &fields)).await;
        assert_eq!(data["total_rows"], 5, "{path}");
        let rows: Vec<Value> = serde_json::from_slice(&fetch(app, &data).await.1).unwrap();
        assert_eq!(data["filtered_rows"], rows.len(), "{path}");
        results.push(rows);
    }
    assert_eq!(results[0], results[1], "CSV and Excel searches agree");
    results.remove(0)
}

fn names(rows: &[Value]) -> Vec<&str> {
    rows.iter().map(|r| r["name"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn fact_1_csv_info_reports_rows_columns_names_delimiter_and_encoding() {
    let app = spawn_app().await;
    let (data, message) = post_ok(&app, "/csv/info", form("my contacts.csv", CONTACTS.to_vec(), &[])).await;
    assert_eq!(message, "CSV file information retrieved successfully");
    assert_eq!(
        data,
        json!({
            "file_name": "my_contacts.csv",
            "file_path": "uploads/my_contacts.csv",
            "rows": 3,
            "columns": 3,
            "column_names": ["name", "email", "age"],
            "data_types": {"age": "object", "email": "object", "name": "object"},
            "inferred_types": {"age": "integer", "email": "string", "name": "string"},
            "delimiter": ",",
            "encoding": "utf-8",
        })
    );
    assert!(app.output_files().is_empty());
}

#[tokio::test]
async fn fact_2_csv_leading_zeros_stay_text() {
    let app = spawn_app().await;
    let csv = b"zip_code,phone,product_code,customer_id\n021201,0123456789,000456,00001234\n00123,0987654321,000789,00000001\n";
    let (info, _) = post_ok(&app, "/csv/info", form("codes.csv", csv.to_vec(), &[])).await;
    assert!(info["data_types"].as_object().unwrap().values().all(|t| t == "object"));
    assert!(info["inferred_types"].as_object().unwrap().values().all(|t| t == "string"), "{info}");
    // Converted cells are text cells holding the exact digits.
    let (data, _) = post_ok(&app, "/csv/convert-to-excel", form("codes.csv", csv.to_vec(), &[])).await;
    let (_, bytes) = fetch(&app, &data).await;
    assert_eq!(xlsx_rows(&bytes, "Sheet1")[1], vec!["021201", "0123456789", "000456", "00001234"]);
    assert_eq!(xlsx_cell(&bytes, "Sheet1", 2, 0), calamine::Data::String("00123".into()));
    // Search output keeps them too.
    let cond = json!([{"column": "zip_code", "operator": "equals", "value": "00123"}]).to_string();
    let (data, _) =
        post_ok(&app, "/csv/search", form("codes.csv", csv.to_vec(), &[("conditions", &cond)])).await;
    assert_eq!(csv_rows(&fetch(&app, &data).await.1)[1], vec!["00123", "0987654321", "000789", "00000001"]);
}

#[tokio::test]
async fn fact_5_convert_with_sheet_name_testsheet() {
    let app = spawn_app().await;
    let (data, message) = post_ok(
        &app,
        "/csv/convert-to-excel",
        form("contacts.csv", CONTACTS.to_vec(), &[("sheet_name", "TestSheet")]),
    )
    .await;
    assert_eq!(message, "Converted to Excel file successfully");
    let (name, bytes) = fetch(&app, &data).await;
    let re = Regex::new(r"^contacts_converted_\d{8}_\d{6}_[0-9a-f]{8}\.xlsx$").unwrap();
    assert!(re.is_match(&name), "{name}");
    assert_eq!(xlsx_sheet_names(&bytes), vec!["TestSheet", "Info"]);
    let rows = xlsx_rows(&bytes, "TestSheet");
    assert_eq!(rows.len(), 1 + 3);
    assert_eq!(rows[0], vec!["name", "email", "age"]);
    assert_eq!(rows[3], vec!["Bob", "bob@x.com", "41"]);
    let info = xlsx_rows(&bytes, "Info");
    assert_eq!(info[1], vec!["File".to_string(), name]);
    assert_eq!(info[3], vec!["Rows", "3"]);
    assert_eq!(info[4], vec!["Columns", "3"]);
}

#[tokio::test]
async fn convert_writes_formulas_as_text_and_honours_output_filename() {
    let app = spawn_app().await;
    let csv = b"name,link\nx,\"=HYPERLINK(\"\"http://evil\"\",\"\"click\"\")\"\n".to_vec();
    let (data, _) =
        post_ok(&app, "/csv/convert-to-excel", form("l.csv", csv, &[("output_filename", "links final")]))
            .await;
    let (name, bytes) = fetch(&app, &data).await;
    assert_eq!(name, "links_final.xlsx");
    assert_eq!(
        xlsx_cell(&bytes, "Sheet1", 1, 1),
        calamine::Data::String("=HYPERLINK(\"http://evil\",\"click\")".into()),
        "a string cell, never a live formula"
    );
}

#[tokio::test]
async fn convert_sheet_name_rules() {
    let app = spawn_app().await;
    // Empty means the configured default; `Info` pushes the info sheet to `Info1`.
    let (data, _) =
        post_ok(&app, "/csv/convert-to-excel", form("c.csv", CONTACTS.to_vec(), &[("sheet_name", "")])).await;
    assert_eq!(xlsx_sheet_names(&fetch(&app, &data).await.1), vec!["Sheet1", "Info"]);
    let (data, _) =
        post_ok(&app, "/csv/convert-to-excel", form("c.csv", CONTACTS.to_vec(), &[("sheet_name", "Info")]))
            .await;
    assert_eq!(xlsx_sheet_names(&fetch(&app, &data).await.1), vec!["Info", "Info1"]);
    // Invalid names are refused before the file is read (an unreadable file does not matter).
    for (bad, message) in [
        ("a/b", "Invalid sheet_name 'a/b': the character / is not allowed in a sheet name"),
        ("x[1]", "Invalid sheet_name 'x[1]': the character [ is not allowed in a sheet name"),
        ("'quoted'", "Invalid sheet_name ''quoted'': a sheet name cannot start or end with an apostrophe"),
    ] {
        let details = post_err(
            &app,
            "/csv/convert-to-excel",
            form("c.csv", b"%PDF-1.4".to_vec(), &[("sheet_name", bad)]),
            422,
            "ValidationError",
            message,
        )
        .await;
        assert_eq!(details["field"], "sheet_name");
    }
    let long = "x".repeat(32);
    let (status, body) =
        post(&app, "/csv/convert-to-excel", form("c.csv", CONTACTS.to_vec(), &[("sheet_name", &long)])).await;
    assert_eq!((status, &body["data"]["details"]["field"]), (422, &json!("sheet_name")), "{body}");
    assert_eq!(app.output_files().len(), 2);
}

#[tokio::test]
async fn convert_uses_the_configured_default_sheet_name() {
    let app = spawn_app_with(|c| c.excel.default_sheet_name = "Data".into()).await;
    let (data, _) = post_ok(&app, "/csv/convert-to-excel", form("c.csv", CONTACTS.to_vec(), &[])).await;
    assert_eq!(xlsx_sheet_names(&fetch(&app, &data).await.1), vec!["Data", "Info"]);
}

#[tokio::test]
async fn cp1252_csv_decodes_euro_and_accents() {
    let app = spawn_app().await;
    // `Café` with é = 0xE9 and `€ 5` with € = 0x80: not UTF-8, and 0x80 is `€` only in cp1252.
    let csv = b"item,price\nCaf\xe9,\x80 5\nTh\xe9,\x80 3\n".to_vec();
    let (info, _) = post_ok(&app, "/csv/info", form("w.csv", csv.clone(), &[])).await;
    assert_eq!(info["encoding"], "cp1252");
    assert_eq!(info["rows"], 2);
    let (data, _) = post_ok(&app, "/csv/convert-to-excel", form("w.csv", csv.clone(), &[])).await;
    assert_eq!(xlsx_rows(&fetch(&app, &data).await.1, "Sheet1")[1], vec!["Café", "€ 5"]);
    // Search output is UTF-8.
    let cond = json!([{"column": "price", "operator": "starts_with", "value": "€"}]).to_string();
    let (data, _) = post_ok(&app, "/csv/search", form("w.csv", csv, &[("conditions", &cond)])).await;
    let bytes = fetch(&app, &data).await.1;
    assert_eq!(String::from_utf8(bytes).unwrap(), "item,price\nCafé,€ 5\nThé,€ 3\n");
}

#[tokio::test]
async fn semicolon_csv_is_split_and_its_delimiter_reported() {
    let app = spawn_app().await;
    let csv = b"name;city;amount\nAnn;Oslo;1,5\nBob;Rome;2\n".to_vec();
    let (info, _) = post_ok(&app, "/csv/info", form("s.csv", csv.clone(), &[])).await;
    assert_eq!(info["delimiter"], ";");
    assert_eq!(info["column_names"], json!(["name", "city", "amount"]));
    let cond = json!([{"column": "city", "operator": "equals", "value": "Oslo"}]).to_string();
    let (data, _) = post_ok(&app, "/csv/search", form("s.csv", csv, &[("conditions", &cond)])).await;
    // Output CSV uses commas and quotes the field holding one.
    let bytes = fetch(&app, &data).await.1;
    assert_eq!(String::from_utf8(bytes).unwrap(), "name,city,amount\nAnn,Oslo,\"1,5\"\n");
}

#[tokio::test]
async fn csv_search_defaults_to_csv_output() {
    let app = spawn_app().await;
    let cond = json!([{"column": "status", "operator": "equals", "value": "inactive"}]).to_string();
    let (data, message) =
        post_ok(&app, "/csv/search", form("c.csv", csv_text(CUSTOMERS), &[("conditions", &cond)])).await;
    assert_eq!(message, "Search completed successfully. 2 rows matched.");
    assert_eq!((data["total_rows"].as_u64(), data["filtered_rows"].as_u64()), (Some(5), Some(2)));
    assert_eq!(data["conditions_applied"], 1);
    let (name, bytes) = fetch(&app, &data).await;
    let re = Regex::new(r"^search_results_\d{8}_\d{6}_[0-9a-f]{8}\.csv$").unwrap();
    assert!(re.is_match(&name), "{name}");
    assert_eq!(
        csv_rows(&bytes),
        vec![
            vec!["customer_id", "name", "amount", "status"],
            vec!["021202", "Jane Smith", "1500", "inactive"],
            vec!["021205", "Charlie Davis", "1200", "inactive"],
        ]
    );
    // xlsx on request.
    let fields = [("conditions", cond.as_str()), ("output_format", "xlsx"), ("output_filename", "x.json")];
    let (data, _) = post_ok(&app, "/csv/search", form("c.csv", csv_text(CUSTOMERS), &fields)).await;
    let (name, bytes) = fetch(&app, &data).await;
    assert_eq!(name, "x.json.xlsx");
    assert_eq!(xlsx_rows(&bytes, "Sheet1").len(), 3);
}

#[tokio::test]
async fn fact_16_to_22_search_facts_hold_on_both_routes() {
    let app = spawn_app().await;
    let eq = |c: &str, v: &str| json!({"column": c, "operator": "equals", "value": v});
    // 16
    assert_eq!(
        names(&search_both(&app, json!([eq("customer_id", "021201")]), "AND").await),
        vec!["John Doe"]
    );
    // 17
    let rows =
        search_both(&app, json!([{"column": "name", "operator": "contains", "value": "smith"}]), "AND").await;
    assert_eq!(names(&rows), vec!["Jane Smith"]);
    // 18
    let gt = json!({"column": "amount", "operator": "greater_than", "value": 1000});
    let rows = search_both(&app, json!([gt.clone()]), "AND").await;
    assert_eq!(
        rows.iter().map(|r| r["amount"].as_str().unwrap()).collect::<Vec<_>>(),
        vec!["1500", "2000", "1200"]
    );
    // 19
    assert_eq!(
        names(&search_both(&app, json!([eq("status", "active"), gt]), "AND").await),
        vec!["Alice Brown"]
    );
    // 20
    let rows =
        search_both(&app, json!([eq("customer_id", "021201"), eq("customer_id", "021202")]), "OR").await;
    assert_eq!(names(&rows), vec!["John Doe", "Jane Smith"]);
    // 21
    let rows =
        search_both(&app, json!([{"column": "name", "operator": "starts_with", "value": "J"}]), "AND").await;
    assert_eq!(names(&rows), vec!["John Doe", "Jane Smith"]);
    // 22
    let rows = search_both(
        &app,
        json!([{"column": "status", "operator": "not_equals", "value": "inactive"}]),
        "AND",
    )
    .await;
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|r| r["status"] == "active"));
}

#[tokio::test]
async fn fact_23_24_25_csv_search_validation() {
    let app = spawn_app().await;
    let book = || csv_text(CUSTOMERS);
    post_err(
        &app,
        "/csv/search",
        form("c.csv", book(), &[]),
        422,
        "ValidationError",
        "At least one search condition is required",
    )
    .await;
    let unknown = json!([{"column": "nonexistent_column", "operator": "equals", "value": "x"}]).to_string();
    post_err(
        &app,
        "/csv/search",
        form("c.csv", book(), &[("conditions", &unknown)]),
        422,
        "ValidationError",
        "Column 'nonexistent_column' not found in data",
    )
    .await;
    let ok = json!([{"column": "name", "operator": "equals", "value": "x"}]).to_string();
    post_err(
        &app,
        "/csv/search",
        form("c.csv", book(), &[("conditions", &ok), ("logic", "INVALID")]),
        422,
        "ValidationError",
        "Logic must be either 'AND' or 'OR'",
    )
    .await;
    post_err(
        &app,
        "/csv/search",
        form("c.csv", book(), &[("conditions", &ok), ("output_format", "")]),
        422,
        "ValidationError",
        "Output format must be xlsx, csv, or json",
    )
    .await;
    let op = json!([{"column": "name", "operator": "like", "value": "x"}]).to_string();
    post_err(
        &app,
        "/csv/search",
        form("c.csv", book(), &[("conditions", &op)]),
        422,
        "ValidationError",
        "Unsupported operator: like",
    )
    .await;
    let (status, body) =
        post(&app, "/csv/search", form("c.csv", book(), &[("conditions", "not json")])).await;
    assert_eq!((status, &body["data"]["error_type"]), (422, &json!("ValidationError")), "{body}");
    assert_eq!(body["data"]["details"], json!({"field": "conditions"}));
    assert!(app.output_files().is_empty());
}

#[tokio::test]
async fn csv_suggest_operators() {
    let app = spawn_app().await;
    let (data, message) =
        post_ok(&app, "/csv/search/suggest-operators", form("c.csv", csv_text(CUSTOMERS), &[])).await;
    assert_eq!(message, "Operator suggestions generated successfully");
    assert_eq!(data["customer_id"]["inferred_type"], "string");
    assert_eq!(data["customer_id"]["operators"].as_array().unwrap().len(), 8);
    assert_eq!(data["amount"]["type"], "object");
    assert_eq!(data["amount"]["inferred_type"], "integer");
    let ops = data["amount"]["operators"].as_array().unwrap();
    assert_eq!(ops.len(), 13);
    assert_eq!(ops[0], "equals");
    assert_eq!(ops[12], "between");
    let keys: Vec<&String> = data.as_object().unwrap().keys().collect();
    assert_eq!(keys, vec!["amount", "customer_id", "name", "status"], "sorted like every API object");
}

#[tokio::test]
async fn every_csv_endpoint_requires_the_file() {
    let app = spawn_app().await;
    for path in ENDPOINTS {
        let details = post_err(
            &app,
            path,
            fields_only(&[("conditions", "[{}]")]),
            422,
            "ValidationError",
            "No file uploaded",
        )
        .await;
        assert_eq!(details, json!({"field": "file"}));
    }
}

#[tokio::test]
async fn empty_csv_is_400_no_columns() {
    let app = spawn_app().await;
    let cond = json!([{"column": "a", "operator": "equals", "value": "x"}]).to_string();
    for path in ENDPOINTS {
        let prefix = if path.ends_with("info") || path.ends_with("suggest-operators") {
            "Failed to get file info: "
        } else {
            ""
        };
        let message = format!("{prefix}Failed to read CSV file: No columns to parse from file");
        post_err(
            &app,
            path,
            form("empty.csv", Vec::new(), &[("conditions", &cond)]),
            400,
            "FileProcessingError",
            &message,
        )
        .await;
    }
}

#[tokio::test]
async fn csv_endpoints_refuse_workbooks_and_binary_with_415() {
    let app = spawn_app().await;
    let cond = json!([{"column": "Name", "operator": "equals", "value": "x"}]).to_string();
    for path in ENDPOINTS {
        let prefix = if path.ends_with("info") || path.ends_with("suggest-operators") {
            "Failed to get file info: "
        } else {
            ""
        };
        for (name, bytes, found) in [
            ("people.csv", xlsx(PEOPLE), "Excel workbook (xlsx)"),
            ("scan.csv", b"%PDF-1.7 ...".to_vec(), "PDF document"),
            ("blob.csv", vec![0u8, 1, 2, 3, 0, 5], "binary data"),
        ] {
            let message = format!("{prefix}Unsupported file type: expected CSV text file, found {found}");
            post_err(
                &app,
                path,
                form(name, bytes, &[("conditions", &cond)]),
                415,
                "UnsupportedFileTypeError",
                &message,
            )
            .await;
        }
    }
}

#[tokio::test]
async fn csv_oversize_upload_is_413_and_leaves_nothing() {
    let app = spawn_app_with(|c| c.file.max_file_size_mb = 1).await;
    let mut big = b"a,b\n".to_vec();
    while big.len() < 2 * 1024 * 1024 {
        big.extend_from_slice(b"1234567890,abcdefghij\n");
    }
    for path in ["/csv/convert-to-excel", "/csv/info"] {
        let (status, body) = post(&app, path, form("big.csv", big.clone(), &[])).await;
        assert_eq!(status, 413, "{body}");
        assert_eq!(body["data"]["error_type"], "PayloadTooLarge");
    }
    assert!(app.output_files().is_empty());
}

#[tokio::test]
async fn get_on_csv_routes_is_a_json_405() {
    let app = spawn_app().await;
    for path in ENDPOINTS {
        let (status, body) = envelope(app.get(path).await).await;
        assert_eq!((status, body["message"].as_str()), (405, Some("Method not allowed")), "{path}");
    }
}

#[tokio::test]
async fn late_surprises_in_a_big_csv_give_the_same_answer_as_a_full_scan() {
    let app = spawn_app().await;
    // 100 KB of plain rows, then a row with a surplus field and a cp1252 byte: the extra column and the
    // encoding are only known at the end of the file.
    let mut csv = b"id,name\n".to_vec();
    for i in 0..10_000 {
        csv.extend_from_slice(format!("{i},name {i}\n").as_bytes());
    }
    csv.extend_from_slice(b"10000,Caf\xe9,extra\n");
    let (info, _) = post_ok(&app, "/csv/info", form("late.csv", csv.clone(), &[])).await;
    assert_eq!(info["encoding"], "cp1252");
    assert_eq!(info["rows"], 10_001);
    assert_eq!(info["column_names"], json!(["id", "name", "Unnamed: 2"]));
    let cond = json!([{"column": "Unnamed: 2", "operator": "is_not_empty", "value": ""}]).to_string();
    let (data, _) =
        post_ok(&app, "/csv/search", form("late.csv", csv.clone(), &[("conditions", &cond)])).await;
    assert_eq!((data["total_rows"].as_u64(), data["filtered_rows"].as_u64()), (Some(10_001), Some(1)));
    let text = String::from_utf8(fetch(&app, &data).await.1).unwrap();
    assert_eq!(text, "id,name,Unnamed: 2\n10000,Café,extra\n");
    let (data, _) = post_ok(&app, "/csv/convert-to-excel", form("late.csv", csv, &[])).await;
    let rows = xlsx_rows(&fetch(&app, &data).await.1, "Sheet1");
    assert_eq!(rows.len(), 1 + 10_001);
    assert_eq!(rows[0], vec!["id", "name", "Unnamed: 2"]);
    assert_eq!(rows[1], vec!["0", "name 0", ""]);
    assert_eq!(rows[10_001], vec!["10000", "Café", "extra"]);
    assert_eq!(app.output_files().len(), 2, "abandoned attempts leave no files");
}
