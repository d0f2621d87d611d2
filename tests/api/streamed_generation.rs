//! The SQL and JSON generators read the sheet back from a row spool on disk instead of a table in memory.
//! Their files and answers must be byte for byte what the in-memory generators (`ops` on the table that
//! `read_workbook` builds) give for the same upload, on a sheet with blanks, error cells, dates, numbers,
//! booleans, quotes, backslashes, braces, duplicate rows, a late row wider than the header and formatted
//! empty rows after the data.

use std::path::Path;

use oxcelize::ops::json_gen::{write_json, JsonGenRequest, NullHandling};
use oxcelize::ops::json_template::{write_template_json, AggregationMode};
use oxcelize::ops::params::{mapping_from_json, ColumnMapping};
use oxcelize::ops::sql::{
    generate_standard_sql, select_for_generation, write_standard_sql_file, AutoIncrement, StandardSqlRequest,
};
use oxcelize::ops::sql_template::write_custom_sql_file;
use oxcelize::table::read::{read_workbook, ReadLimits};
use oxcelize::table::Table;
use rust_xlsxwriter::{Format, Formula, Workbook};
use serde_json::{json, Value};

use crate::common::{spawn_app, TestApp};
use crate::transform_support::*;

const HEADER: [&str; 6] = ["id", "name", "note", "amount", "when", "flag"];
const TEXTS: [&str; 7] = [
    "O'Hare",
    "Back\\slash\\",
    "say \"hi\" \\' done",
    "{name} and {id:int}",
    "São Paulo – Zürich",
    "  spaced  ",
    "it's 3rd; '; DROP TABLE t; --",
];

/// The tricky sheet: `rows` data rows, every third one a repeat of an earlier row, with holes.
fn tricky_book(rows: u32) -> Vec<u8> {
    let mut book = Workbook::new();
    let date = Format::new().set_num_format("yyyy-mm-dd");
    let bold = Format::new().set_bold();
    let sheet = book.add_worksheet();
    for (c, name) in HEADER.iter().enumerate() {
        sheet.write_string(0, c as u16, *name).unwrap();
    }
    for r in 1..=rows {
        // Every third row repeats the row before it (duplicates for remove_duplicates).
        let i = if r % 3 == 0 { r - 1 } else { r };
        let i_usize = i as usize;
        sheet.write_number(r, 0, f64::from(i)).unwrap();
        if i % 5 != 1 {
            sheet.write_string(r, 1, TEXTS[i_usize % TEXTS.len()]).unwrap();
        }
        match i % 4 {
            0 => sheet.write_formula(r, 2, Formula::new("=NA()").set_result("#N/A")).map(|_| ()).unwrap(),
            1 => sheet.write_string(r, 2, TEXTS[(i_usize + 3) % TEXTS.len()]).map(|_| ()).unwrap(),
            _ => {}
        }
        if i % 6 != 2 {
            sheet.write_number(r, 3, f64::from(i) / 7.0 - 3.0).unwrap();
        }
        sheet.write_number_with_format(r, 4, 45306.0 + f64::from(i), &date).unwrap();
        if i % 7 != 0 {
            sheet.write_boolean(r, 5, i % 2 == 0).unwrap();
        }
    }
    // A late row wider than the header: two unnamed columns for every row.
    sheet.write_string(rows, 7, "late").unwrap();
    sheet.write_blank(rows + 2, 1, &bold).unwrap();
    sheet.write_blank(rows + 5, 9, &bold).unwrap();
    book.save_to_buffer().unwrap()
}

/// The in-memory reading of the same bytes.
fn table_of(bytes: &[u8]) -> Table {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("book.xlsx");
    std::fs::write(&path, bytes).unwrap();
    read_workbook(Path::new(&path), None, &ReadLimits::default()).unwrap().table
}

fn mapping(value: Value) -> ColumnMapping {
    mapping_from_json(&value, "column_mapping").unwrap()
}

/// Posts, expects 200, returns the downloaded file.
async fn produced(app: &TestApp, path: &str, book: &[u8], fields: &[(&str, &str)]) -> Vec<u8> {
    let (status, body) = post(app, path, file_form("tricky.xlsx", book.to_vec(), fields)).await;
    assert_eq!(status, 200, "{path}: {body}");
    download_data(app, &body).await
}

/// The `-- Generated at: …` value of a produced SQL file, so the expected file can carry the same one.
fn generated_at(sql: &[u8]) -> String {
    let text = std::str::from_utf8(sql).unwrap();
    let line = text.lines().nth(1).unwrap();
    line.strip_prefix("-- Generated at: ").unwrap_or_else(|| panic!("{line}")).to_string()
}

fn sql_request(db: &str, mapping_json: Value, auto: Value) -> StandardSqlRequest {
    StandardSqlRequest {
        table_name: "people".into(),
        column_mapping: mapping(mapping_json),
        database_type: db.into(),
        include_transaction: true,
        auto_increment: AutoIncrement::from_json(Some(&auto)).unwrap(),
        template: None,
    }
}

fn assert_same_text(got: &[u8], want: &[u8], what: &str) {
    if got != want {
        let (got, want) = (String::from_utf8_lossy(got), String::from_utf8_lossy(want));
        let first = got.lines().zip(want.lines()).position(|(a, b)| a != b);
        panic!("{what}: streamed output differs from the in-memory one (first differing line {first:?})\n{got}\n---\n{want}");
    }
}

#[tokio::test]
async fn standard_sql_files_equal_the_in_memory_script() {
    let app = spawn_app().await;
    let book = tricky_book(40);
    let table = table_of(&book);
    assert_eq!(table.columns.len(), 8, "{:?}", table.columns);
    assert_eq!(table.row_count(), 40);

    let map = json!({"id": "id", "full name": "name", "note": "note", "amount": "amount", "when": "when",
        "flag": "flag", "late": "Unnamed: 7"});
    let auto = json!({"enabled": true, "increment_type": "manual_sequence", "start_value": 10});
    let (map_text, auto_text) = (map.to_string(), auto.to_string());
    for (db, columns, dedupe) in [
        ("mysql", json!([]), "false"),
        ("postgresql", json!(["flag", "name", "note", "id", "Unnamed: 7"]), "true"),
        ("sqlite", json!(["note", "name"]), "true"),
    ] {
        let columns_text = columns.to_string();
        // The mapping may only name selected columns (anything else is a 422).
        let selection = columns.as_array().unwrap();
        let case_map: serde_json::Map<String, Value> = map
            .as_object()
            .unwrap()
            .iter()
            .filter(|(_, sheet)| selection.is_empty() || selection.contains(sheet))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let case_map = Value::Object(case_map);
        let case_map_text = case_map.to_string();
        let file = produced(
            &app,
            "/sql/generate-to-text",
            &book,
            &[
                ("table_name", "people"),
                ("column_mapping", &case_map_text),
                ("database_type", db),
                ("columns", &columns_text),
                ("remove_duplicates", dedupe),
                ("auto_increment", &auto_text),
            ],
        )
        .await;
        let columns: Vec<String> = serde_json::from_value(columns).unwrap();
        let selected = select_for_generation(table.clone(), &columns, dedupe == "true").unwrap();
        assert_eq!(selected.row_count() < 40, dedupe == "true", "the sheet has duplicates to drop");
        let mut want = Vec::new();
        let req = sql_request(db, case_map, auto.clone());
        write_standard_sql_file(&selected, &req, &generated_at(&file), &mut want).unwrap();
        assert_same_text(&file, &want, &format!("generate-to-text {db} {columns:?}"));
    }

    // sql/generate writing a file, and answering with the statements.
    let fields =
        [("table_name", "people"), ("column_mapping", map_text.as_str()), ("database_type", "MySQL")];
    let mut with_file = fields.to_vec();
    with_file.push(("return_file", "true"));
    let file = produced(&app, "/sql/generate", &book, &with_file).await;
    let req = sql_request("MySQL", map.clone(), json!({}));
    let mut want = Vec::new();
    write_standard_sql_file(&table, &req, &generated_at(&file), &mut want).unwrap();
    assert_same_text(&file, &want, "generate return_file");

    let (status, body) = post(&app, "/sql/generate", file_form("tricky.xlsx", book.clone(), &fields)).await;
    assert_eq!(status, 200, "{body}");
    let got: Vec<String> = serde_json::from_value(body["data"]["statements"].clone()).unwrap();
    let at = got[3].strip_prefix("-- Generated at: ").unwrap();
    assert_eq!(got, generate_standard_sql(&table, &req, at).unwrap());
    assert_eq!(body["data"]["total_rows"], 40);
    assert_eq!(body["data"]["total_statements"], got.len());
}

#[tokio::test]
async fn custom_sql_files_equal_the_in_memory_script() {
    let app = spawn_app().await;
    let book = tricky_book(40);
    let table = table_of(&book);
    let template = "UPDATE t SET n = {name|anon}, a = {amount:float}, f = {flag:bool}, w = '{when}', x = {%note%} WHERE id = {id:int} AND k = {auto_id};";
    let map = json!({"name": "name", "amount": "amount", "flag": "flag", "when": "when", "note": "note", "id": "id"});
    let auto = json!({"enabled": true, "start_value": 7});
    let (map_text, auto_text) = (map.to_string(), auto.to_string());
    for (columns, dedupe) in
        [(json!([]), "false"), (json!(["note", "flag", "name", "amount", "id", "when"]), "true")]
    {
        let columns_text = columns.to_string();
        let file = produced(
            &app,
            "/sql/generate-custom-to-text",
            &book,
            &[
                ("template", template),
                ("column_mapping", &map_text),
                ("columns", &columns_text),
                ("remove_duplicates", dedupe),
                ("auto_increment", &auto_text),
            ],
        )
        .await;
        let columns: Vec<String> = serde_json::from_value(columns).unwrap();
        let selected = select_for_generation(table.clone(), &columns, dedupe == "true").unwrap();
        let mut want = Vec::new();
        let auto = AutoIncrement::from_json(Some(&auto)).unwrap();
        write_custom_sql_file(
            &selected,
            template,
            &mapping(map.clone()),
            &auto,
            &generated_at(&file),
            &mut want,
        )
        .unwrap();
        assert_same_text(&file, &want, &format!("custom {columns:?}"));
    }
}

#[tokio::test]
async fn json_files_equal_the_in_memory_documents() {
    let app = spawn_app().await;
    let tricky = tricky_book(40);
    let one_row = xlsx(&[&["a", "b"], &["O'Hare \\", NA]]);
    let header_only = xlsx(&[&["a", "b"]]);
    let books = [("tricky", &tricky), ("one row", &one_row), ("header only", &header_only)];
    for (what, book) in books {
        let table = table_of(book);
        let picked = if what == "tricky" { json!(["flag", "name", "Unnamed: 7"]) } else { json!(["b"]) };
        for (pretty, nulls, wrapper, columns) in [
            ("true", "include", "true", json!([])),
            ("false", "exclude", "false", json!([])),
            ("true", "default", "false", picked),
        ] {
            let columns_text = columns.to_string();
            let file = produced(
                &app,
                "/json/generate",
                book,
                &[
                    ("pretty_print", pretty),
                    ("null_handling", nulls),
                    ("array_wrapper", wrapper),
                    ("columns", &columns_text),
                ],
            )
            .await;
            let req = JsonGenRequest {
                columns: serde_json::from_value(columns).unwrap(),
                column_mapping: Vec::new(),
                null_handling: NullHandling::parse(nulls).unwrap(),
                array_wrapper: wrapper == "true",
                pretty_print: pretty == "true",
            };
            let mut want = Vec::new();
            write_json(&table, &req, &mut want).unwrap();
            assert_same_text(&file, &want, &format!("json/generate {what} {pretty} {nulls} {wrapper}"));
        }

        let template = json!({"id": "{id:int}", "who": {"name": "{name|anon}", "tag": "user-{id} {note}"},
            "amount": "{amount:float}", "flag": "{flag:bool}", "when": "{when}"});
        let map = if what == "tricky" {
            json!({"id": "id", "name": "name", "note": "note", "amount": "amount", "flag": "flag", "when": "when"})
        } else {
            json!({"id": "a", "name": "b", "note": "a", "amount": "a", "flag": "b", "when": "b"})
        };
        let (template_text, map_text) = (template.to_string(), map.to_string());
        for (mode, pretty) in [("array", "true"), ("single", "false"), ("nested", "true")] {
            let file = produced(
                &app,
                "/json/generate-with-template",
                book,
                &[
                    ("template", &template_text),
                    ("column_mapping", &map_text),
                    ("aggregation_mode", mode),
                    ("pretty_print", pretty),
                ],
            )
            .await;
            let mode_value = AggregationMode::parse(mode).unwrap();
            let mut want = Vec::new();
            write_template_json(
                &table,
                &template,
                &mapping(map.clone()),
                mode_value,
                pretty == "true",
                &mut want,
            )
            .unwrap();
            assert_same_text(&file, &want, &format!("template {what} {mode}"));
        }
    }
}

#[tokio::test]
async fn selection_errors_come_before_any_output() {
    let app = spawn_app().await;
    let book = tricky_book(10);
    let (status, body) = post(
        &app,
        "/sql/generate-to-text",
        file_form(
            "tricky.xlsx",
            book,
            &[
                ("table_name", "t"),
                ("column_mapping", r#"{"a": "id"}"#),
                ("columns", r#"["id", "zz", "yy"]"#),
            ],
        ),
    )
    .await;
    assert_error(&app, &(status, body.clone()), 422, "ValidationError", "Columns not found: zz, yy");
    assert_eq!(body["data"]["details"]["missing_columns"], json!(["zz", "yy"]));
    assert_eq!(
        body["data"]["details"]["available_columns"],
        json!(["id", "name", "note", "amount", "when", "flag", "Unnamed: 6", "Unnamed: 7"])
    );
}
