use serde_json::json;

use super::*;
use crate::table::read::{read_workbook, CsvSource, ReadLimits};

/// The table of acceptance §13.4.
fn customers() -> Table {
    let rows = [
        ["021201", "John Doe", "1000", "active"],
        ["021202", "Jane Smith", "1500", "inactive"],
        ["021203", "Bob Wilson", "800", "active"],
        ["021204", "Alice Brown", "2000", "active"],
        ["021205", "Charlie Davis", "1200", "inactive"],
    ];
    Table {
        columns: vec!["customer_id".into(), "name".into(), "amount".into(), "status".into()],
        rows: rows.iter().map(|r| r.iter().map(|v| Cell::text(*v)).collect()).collect(),
    }
}

fn request(conditions: Value, logic: Option<&str>) -> Result<SearchRequest, OpError> {
    SearchRequest::parse(Some(&conditions.to_string()), logic, None, None, OutputFormat::Xlsx)
}

fn run(table: &Table, conditions: Value, logic: &str) -> Result<Table, OpError> {
    let search = request(conditions, Some(logic))?.compile(&table.columns)?;
    Ok(search.filter_table(table))
}

fn column(table: &Table, name: &str) -> Vec<String> {
    let i = table.column_index(name).unwrap();
    table.column(i).map(|c| c.as_text().into_owned()).collect()
}

fn message(err: OpError) -> String {
    err.to_string()
}

#[test]
fn acceptance_facts_16_to_22() {
    let t = customers();
    let eq =
        run(&t, json!([{"column": "customer_id", "operator": "equals", "value": "021201"}]), "AND").unwrap();
    assert_eq!(column(&eq, "name"), vec!["John Doe"]);

    let contains =
        run(&t, json!([{"column": "name", "operator": "contains", "value": "smith"}]), "AND").unwrap();
    assert_eq!(column(&contains, "name"), vec!["Jane Smith"]);

    let gt =
        run(&t, json!([{"column": "amount", "operator": "greater_than", "value": 1000}]), "AND").unwrap();
    assert_eq!(column(&gt, "amount"), vec!["1500", "2000", "1200"]);
    assert_eq!(gt.columns, t.columns, "all columns are kept");

    let and = run(
        &t,
        json!([
            {"column": "status", "operator": "equals", "value": "active"},
            {"column": "amount", "operator": "greater_than", "value": 1000}
        ]),
        "AND",
    )
    .unwrap();
    assert_eq!(column(&and, "amount"), vec!["2000"]);

    let or = run(
        &t,
        json!([
            {"column": "customer_id", "operator": "equals", "value": "021201"},
            {"column": "customer_id", "operator": "equals", "value": "021202"}
        ]),
        "or",
    )
    .unwrap();
    assert_eq!(column(&or, "customer_id"), vec!["021201", "021202"]);

    let starts =
        run(&t, json!([{"column": "name", "operator": "starts_with", "value": "J"}]), "AND").unwrap();
    assert_eq!(starts.row_count(), 2);

    let not_eq =
        run(&t, json!([{"column": "status", "operator": "not_equals", "value": "inactive"}]), "AND").unwrap();
    assert_eq!(column(&not_eq, "status"), vec!["active"; 3]);
}

#[test]
fn validation_messages_and_order() {
    // Acceptance facts 23–25 and rest-api.md §7.2.7 order.
    let t = customers();
    for empty in [None, Some("[]"), Some("{}"), Some("null"), Some("\"\"")] {
        let err =
            SearchRequest::parse(empty, Some("INVALID"), Some("pdf"), None, OutputFormat::Xlsx).unwrap_err();
        assert_eq!(message(err), "At least one search condition is required", "{empty:?}");
    }
    let bad_json = SearchRequest::parse(Some("[{"), None, None, None, OutputFormat::Xlsx).unwrap_err();
    assert!(message(bad_json).starts_with("Invalid JSON in field 'conditions'"));

    let one = json!([{"column": "name", "operator": "equals", "value": "x"}]).to_string();
    let err =
        SearchRequest::parse(Some(&one), Some("INVALID"), Some("pdf"), None, OutputFormat::Xlsx).unwrap_err();
    assert_eq!(message(err), "Logic must be either 'AND' or 'OR'");
    let err = SearchRequest::parse(Some(&one), Some(""), None, None, OutputFormat::Xlsx).unwrap_err();
    assert_eq!(message(err), "Logic must be either 'AND' or 'OR'", "empty logic is not the default");
    let err =
        SearchRequest::parse(Some(&one), Some("and"), Some("pdf"), None, OutputFormat::Xlsx).unwrap_err();
    assert_eq!(message(err), "Output format must be xlsx, csv, or json");
    let err = SearchRequest::parse(Some(&one), None, Some(""), None, OutputFormat::Xlsx).unwrap_err();
    assert_eq!(message(err), "Output format must be xlsx, csv, or json");

    let err = run(&t, json!([{"column": "nonexistent_column", "operator": "equals", "value": "x"}]), "AND")
        .unwrap_err();
    assert_eq!(message(err), "Column 'nonexistent_column' not found in data");
    let err = run(&t, json!([{"column": "name", "operator": "regex", "value": "x"}]), "AND").unwrap_err();
    assert_eq!(message(err), "Unsupported operator: regex");
    // The first invalid condition wins.
    let err = run(
        &t,
        json!([
            {"column": "name", "operator": "between", "value": 5},
            {"column": "nope", "operator": "equals"}
        ]),
        "AND",
    )
    .unwrap_err();
    assert_eq!(message(err), BETWEEN_SHAPE);
    // Absent column/operator default to "".
    assert_eq!(
        message(run(&t, json!([{"operator": "equals"}]), "AND").unwrap_err()),
        "Column '' not found in data"
    );
    assert_eq!(message(run(&t, json!([{"column": "name"}]), "AND").unwrap_err()), "Unsupported operator: ");

    for malformed in [json!("name"), json!([1]), json!(["x"]), json!({"column": "name"})] {
        let err = request(malformed.clone(), None).unwrap().compile(&t.columns).unwrap_err();
        assert!(message(err).starts_with("conditions must be a JSON array of objects"), "{malformed}");
    }
    for (op, value) in [("equals", json!({"a": 1})), ("contains", json!(["a"])), ("greater_than", json!([1]))]
    {
        let err = run(&t, json!([{"column": "name", "operator": op, "value": value}]), "AND").unwrap_err();
        assert!(message(err).starts_with(&format!("Value for '{op}' operator")));
    }
}

#[test]
fn parsed_request_keeps_fields_and_defaults() {
    // Acceptance fact 28.
    let conditions = json!([
        {"column": "status", "operator": "equals", "value": "active"},
        {"column": "amount", "operator": "greater_than", "value": 1000}
    ])
    .to_string();
    let req = SearchRequest::parse(
        Some(&conditions),
        Some("AND"),
        Some("xlsx"),
        Some("out.xlsx"),
        OutputFormat::Xlsx,
    )
    .unwrap();
    assert_eq!(req.logic, Logic::And);
    assert_eq!(req.format, OutputFormat::Xlsx);
    assert_eq!(req.output_filename.as_deref(), Some("out.xlsx"));
    let raw = req.raw_conditions().unwrap();
    assert_eq!(raw.len(), 2);
    assert_eq!(
        raw[0],
        RawCondition { column: "status".into(), operator: "equals".into(), value: json!("active") }
    );

    let defaults = SearchRequest::parse(Some(&conditions), None, None, None, OutputFormat::Xlsx).unwrap();
    assert_eq!(
        (defaults.logic, defaults.format, defaults.output_filename),
        (Logic::And, OutputFormat::Xlsx, None)
    );
    let csv_route = SearchRequest::parse(Some(&conditions), None, None, Some(""), OutputFormat::Csv).unwrap();
    assert_eq!((csv_route.format, csv_route.output_filename), (OutputFormat::Csv, None));
    let upper =
        SearchRequest::parse(Some(&conditions), Some("or"), Some("JSON"), None, OutputFormat::Xlsx).unwrap();
    assert_eq!((upper.logic, upper.format), (Logic::Or, OutputFormat::Json));
}

fn matches(op: &str, value: Value, cell: Cell) -> bool {
    let columns = vec!["c".to_string()];
    let req = request(json!([{"column": "c", "operator": op, "value": value}]), None).unwrap();
    req.compile(&columns).unwrap().matches(&[cell])
}

#[test]
fn every_operator() {
    let t = Cell::text;
    let cases: Vec<(&str, Value, Cell, bool)> = vec![
        ("equals", json!("abc"), t("abc"), true),
        ("equals", json!("ABC"), t("abc"), false),
        ("equals", json!(1), t("1"), true),
        ("equals", json!(1.0), t("1"), false),
        ("equals", json!(1.0), t("1.0"), true),
        ("equals", json!(true), t("True"), true),
        ("equals", json!(null), t("None"), true),
        ("equals", json!(""), Cell::Missing, true),
        ("equals", json!("nan"), Cell::Missing, false),
        ("EQUALS", json!("x"), t("x"), true),
        ("not_equals", json!("x"), t("y"), true),
        ("not_equals", json!("x"), t("x"), false),
        ("contains", json!("SMI"), t("Jane Smith"), true),
        ("contains", json!("("), t("a(b"), true),
        ("contains", json!("."), t("abc"), false),
        ("contains", json!("école"), t("GRANDE ÉCOLE"), true),
        ("contains", json!("na"), Cell::Missing, false),
        ("contains", json!(""), t("x"), true),
        ("not_contains", json!("smith"), t("Bob"), true),
        ("not_contains", json!("smith"), t("SMITH"), false),
        ("not_contains", json!("na"), Cell::Missing, true),
        ("starts_with", json!("J"), t("John"), true),
        ("starts_with", json!("j"), t("John"), false),
        ("ends_with", json!("hn"), t("John"), true),
        ("ends_with", json!("HN"), t("John"), false),
        ("is_empty", json!(null), Cell::Missing, true),
        ("is_empty", json!("ignored"), t(""), true),
        ("is_empty", json!({"ignored": true}), t(" "), false),
        ("is_not_empty", json!(null), t(" "), true),
        ("is_not_empty", json!(null), Cell::Missing, false),
        ("greater_than", json!(1000), t("1500"), true),
        ("greater_than", json!("1000"), t("1000"), false),
        ("greater_than", json!(1000), t("abc"), false),
        ("greater_than", json!("abc"), t("5"), false),
        ("greater_than", json!(null), t("5"), false),
        ("greater_than", json!(false), t("0.5"), true),
        ("greater_than", json!(1), Cell::Missing, false),
        ("greater_than_or_equal", json!(1000), t("1000"), true),
        ("less_than", json!(1000), t("800"), true),
        ("less_than", json!(1000), t(" 999.5 "), true),
        ("less_than_or_equal", json!(1000), t("1000.0"), true),
        ("less_than_or_equal", json!(1000), t("1e3"), true),
        ("between", json!([1000, 1500]), t("1500"), true),
        ("between", json!([1000, 1500]), t("1000"), true),
        ("between", json!([1000, 1500]), t("1501"), false),
        ("between", json!(["1000", "1500"]), t("1200"), true),
        ("between", json!("1000,1500"), t("1200"), true),
        ("between", json!("1000..1500"), t("999"), false),
        ("between", json!("[1000, 1500]"), t("1100"), true),
        ("between", json!(" 1.5 .. 2.5 "), t("2"), true),
        ("between", json!(["2024-01-01", "2024-01-31"]), t("2024-01-15 10:30:00"), true),
        ("between", json!("2024-01-01,2024-01-31"), t("01/20/2024"), true),
        ("between", json!("2024-01-01..2024-01-31"), t("2024-02-01"), false),
        ("between", json!(["a", "b"]), t("a"), false),
        ("between", json!([1, 2]), Cell::Missing, false),
        ("before", json!("2024-01-15"), t("2024-01-14"), true),
        ("before", json!("2024-01-15"), t("2024-01-15"), false),
        ("before", json!(2024), t("2023-12-31"), true),
        ("before", json!("garbage"), t("2023-12-31"), false),
        ("before", json!("2024-01-15"), t("garbage"), false),
        ("before", json!("2024-01-15"), Cell::Missing, false),
        ("after", json!("2024-01-15T00:00:00Z"), t("2024-01-15 10:30:00"), true),
        ("after", json!("2024-01-15"), t("Jan 5, 2024"), false),
        ("After", json!("2024-01-01"), t("15/01/2024"), true),
    ];
    for (op, value, cell, want) in cases {
        assert_eq!(matches(op, value.clone(), cell.clone()), want, "{op} {value} on {cell:?}");
    }
}

#[test]
fn between_shapes_that_are_rejected() {
    let columns = vec!["c".to_string()];
    for value in [
        json!([1]),
        json!([1, 2, 3]),
        json!(5),
        json!("abc"),
        json!("[1]"),
        json!("[1,"),
        json!(null),
        json!({}),
    ] {
        let req = request(json!([{"column": "c", "operator": "between", "value": value}]), None).unwrap();
        assert_eq!(message(req.compile(&columns).unwrap_err()), BETWEEN_SHAPE, "{value}");
    }
}

#[test]
fn value_texts_are_python_style() {
    let cases = [
        (json!("x"), "x"),
        (json!(1), "1"),
        (json!(-7), "-7"),
        (json!(1.0), "1.0"),
        (json!(1.5e-7), "1.5e-07"),
        (json!(true), "True"),
        (json!(false), "False"),
        (json!(null), "None"),
        (json!(18446744073709551615u64), "18446744073709551615"),
    ];
    for (value, want) in cases {
        assert_eq!(value_text(&value), want);
    }
}

#[test]
fn results_in_every_format_are_readable() {
    // Acceptance fact 27.
    let dir = tempfile::tempdir().unwrap();
    let t = customers();
    let search = request(json!([{"column": "status", "operator": "equals", "value": "active"}]), None)
        .unwrap()
        .compile(&t.columns)
        .unwrap();

    let xlsx = dir.path().join("r.xlsx");
    let outcome =
        search_to_file(&t.columns, t.rows.iter().map(Ok), &search, OutputFormat::Xlsx, &xlsx).unwrap();
    assert_eq!(outcome, SearchOutcome { total_rows: 5, filtered_rows: 3, conditions_applied: 1 });
    assert_eq!(outcome.message(), "Search completed successfully. 3 rows matched.");
    let read = read_workbook(&xlsx, None, &ReadLimits::default()).unwrap();
    assert_eq!(read.sheets, vec!["Sheet1"]);
    assert_eq!(read.table.columns, t.columns);
    assert_eq!(column(&read.table, "customer_id"), vec!["021201", "021203", "021204"]);

    let csv = dir.path().join("r.csv");
    search_to_file(&t.columns, t.rows.iter().map(Ok), &search, OutputFormat::Csv, &csv).unwrap();
    let text = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(
        text,
        "customer_id,name,amount,status\n021201,John Doe,1000,active\n021203,Bob Wilson,800,active\n021204,Alice Brown,2000,active\n"
    );

    let json_path = dir.path().join("r.json");
    search_to_file(&t.columns, t.rows.iter().map(Ok), &search, OutputFormat::Json, &json_path).unwrap();
    let value: Value = serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    assert_eq!(value.as_array().unwrap().len(), 3);
    assert_eq!(
        value[0],
        json!({"customer_id": "021201", "name": "John Doe", "amount": "1000", "status": "active"})
    );
}

#[test]
fn streamed_csv_search() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.csv");
    let mut data = String::from("id,amount\n");
    for i in 0..10_000 {
        data.push_str(&format!("{i:05},{}\n", i % 100));
    }
    std::fs::write(&input, data).unwrap();
    let source = CsvSource::open(&input, &["utf-8".to_string()]).unwrap();
    let search = request(json!([{"column": "amount", "operator": "between", "value": "10..11"}]), None)
        .unwrap()
        .compile(&source.columns)
        .unwrap();
    let out = dir.path().join("out.csv");
    let outcome = search_to_file(&source.columns, source.rows, &search, OutputFormat::Csv, &out).unwrap();
    assert_eq!((outcome.total_rows, outcome.filtered_rows), (10_000, 200));
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.starts_with("id,amount\n00010,10\n00011,11\n00110,10\n"), "{}", &text[..60]);

    // The single-pass variant writes the same file.
    let mut req =
        request(json!([{"column": "amount", "operator": "between", "value": "10..11"}]), None).unwrap();
    req.format = OutputFormat::Csv;
    let single = dir.path().join("single.csv");
    let outcome = search_csv_file(&input, &["utf-8".to_string()], &req, &single).unwrap();
    assert_eq!((outcome.total_rows, outcome.filtered_rows, outcome.conditions_applied), (10_000, 200, 1));
    assert_eq!(std::fs::read_to_string(&single).unwrap(), text);
    // Validation against the header happens before any row.
    let bad = request(json!([{"column": "nope", "operator": "equals", "value": 1}]), None).unwrap();
    let err = search_csv_file(&input, &["utf-8".to_string()], &bad, &single).unwrap_err();
    assert_eq!(err.to_string(), "Column 'nope' not found in data");
}

/// Matched CSV rows are written from the parsed record: the output is the same as writing their cells
/// (short rows padded, surplus empty fields dropped, quotes re-applied only where needed, BOM gone),
/// for every condition shape and output format, with AND and OR.
#[test]
fn streamed_csv_rows_are_written_like_their_cells() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.csv");
    std::fs::write(
        &input,
        "\u{feff}a,b,c\n1,\"x, \"\"y\"\"\",Hà Nội\n2\n3,z,,,\n\"4\",\"multi\nline\",q\n5,\"\",r\r\n 6 ,é,\n",
    )
    .unwrap();
    let encodings = ["utf-8".to_string()];
    let source = CsvSource::open(&input, &encodings).unwrap();
    let table = Table { columns: source.columns.clone(), rows: source.rows.map(Result::unwrap).collect() };
    let conditions = [
        json!([{"column": "a", "operator": "greater_than", "value": 0}]),
        json!([{"column": "b", "operator": "is_empty"}, {"column": "a", "operator": "less_than", "value": 3}]),
        json!([{"column": "c", "operator": "contains", "value": "NỘ"}, {"column": "b", "operator": "equals", "value": "é"}]),
    ];
    for conditions in conditions {
        for logic in ["AND", "OR"] {
            for format in [OutputFormat::Csv, OutputFormat::Json] {
                let mut req = request(conditions.clone(), Some(logic)).unwrap();
                req.format = format;
                let search = req.compile(&table.columns).unwrap();
                let want = dir.path().join("want");
                let rows = table.rows.iter().map(Ok);
                let expected = search_to_file(&table.columns, rows, &search, format, &want).unwrap();
                let got = dir.path().join("got");
                let outcome = search_csv_file(&input, &encodings, &req, &got).unwrap();
                assert_eq!(outcome, expected, "{conditions} {logic}");
                assert_eq!(
                    std::fs::read(&got).unwrap(),
                    std::fs::read(&want).unwrap(),
                    "{conditions} {logic}"
                );
            }
        }
    }
}

#[test]
fn operator_suggestions() {
    let columns = vec!["order_no".to_string(), "amount".to_string(), "when".to_string()];
    let inferred = [InferredType::String, InferredType::Number, InferredType::Date];
    let value = serde_json::to_value(suggest_operators(&columns, &inferred)).unwrap();
    assert_eq!(
        value,
        json!({
            "order_no": {
                "type": "object",
                "operators": ["equals", "not_equals", "contains", "not_contains", "starts_with", "ends_with", "is_empty", "is_not_empty"],
                "inferred_type": "string"
            },
            "amount": {
                "type": "object",
                "operators": ["equals", "not_equals", "contains", "not_contains", "starts_with", "ends_with", "is_empty", "is_not_empty",
                              "greater_than", "greater_than_or_equal", "less_than", "less_than_or_equal", "between"],
                "inferred_type": "number"
            },
            "when": {
                "type": "object",
                "operators": ["equals", "not_equals", "contains", "not_contains", "starts_with", "ends_with", "is_empty", "is_not_empty",
                              "before", "after", "between"],
                "inferred_type": "date"
            }
        })
    );
}

/// Peak resident memory of this process in KiB (Linux only; 0 elsewhere).
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(|l| l.to_string()))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

/// Run alone: `cargo test --lib million_rows -- --ignored`. A million CSV rows searched into an xlsx
/// keep the peak memory flat (the data itself would take well over 100 MB as a table).
#[test]
#[ignore]
fn million_rows_stream_with_flat_memory() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("big.csv");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
    writeln!(out, "id,name,amount").unwrap();
    for i in 0..1_000_000u32 {
        writeln!(out, "{i:07},customer number {i},{}", i % 1000).unwrap();
    }
    out.flush().unwrap();
    drop(out);
    let before = peak_rss_kib();
    let source = CsvSource::open(&input, &["utf-8".to_string()]).unwrap();
    let search =
        request(json!([{"column": "amount", "operator": "greater_than_or_equal", "value": 100}]), None)
            .unwrap()
            .compile(&source.columns)
            .unwrap();
    let result = dir.path().join("out.xlsx");
    let outcome = search_to_file(&source.columns, source.rows, &search, OutputFormat::Xlsx, &result).unwrap();
    assert_eq!((outcome.total_rows, outcome.filtered_rows), (1_000_000, 900_000));
    let grown_mib = (peak_rss_kib().saturating_sub(before)) / 1024;
    eprintln!("peak RSS growth: {grown_mib} MiB");
    assert!(grown_mib < 64, "memory grew by {grown_mib} MiB");
}
