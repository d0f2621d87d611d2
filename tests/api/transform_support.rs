//! Fixtures and read-back helpers for the transform endpoint tests (normalization, SQL, JSON, bindings).
#![allow(dead_code)]

use oxcelize::table::read::{read_workbook, workbook_sheet_names, ReadLimits};
use oxcelize::table::{Cell, Table};
use reqwest::multipart::{Form, Part};
use rust_xlsxwriter::{Formula, Workbook};
use serde_json::Value;

use crate::common::{envelope, file_part, TestApp};

/// Cell text that the fixture writer turns into an Excel `#N/A` error cell (read as Missing).
pub const NA: &str = "#N/A";

/// An xlsx with one sheet per entry; every cell is a string cell, except [`NA`] (an error cell) and
/// the empty string (no cell at all).
pub fn xlsx_sheets(sheets: &[(&str, &[&[&str]])]) -> Vec<u8> {
    let mut book = Workbook::new();
    for (name, rows) in sheets {
        let sheet = book.add_worksheet();
        sheet.set_name(*name).unwrap();
        for (r, row) in rows.iter().enumerate() {
            for (c, text) in row.iter().enumerate() {
                let (r, c) = (r as u32, c as u16);
                if *text == NA {
                    sheet.write_formula(r, c, Formula::new("=NA()").set_result("#N/A")).unwrap();
                } else if !text.is_empty() {
                    sheet.write_string(r, c, *text).unwrap();
                }
            }
        }
    }
    book.save_to_buffer().unwrap()
}

/// A one-sheet workbook (`Sheet1`).
pub fn xlsx(rows: &[&[&str]]) -> Vec<u8> {
    xlsx_sheets(&[("Sheet1", rows)])
}

/// The operations.md §13.7 table (e-mail of row 2 missing).
pub fn people_13_7() -> Vec<u8> {
    xlsx(&[
        &["ID", "Name", "Age", "Score", "Active", "Email", "CreatedAt"],
        &["1", "Alice", "25", "95.5", "true", "alice@test.com", "2024-01-15"],
        &["2", "Bob", "30", "88.0", "false", NA, "2024-02-20"],
        &["3", "Charlie", "35", "92.3", "true", "charlie@test.com", "2024-03-10"],
    ])
}

/// Adds text fields to a multipart form.
pub fn with_fields(mut form: Form, fields: &[(&str, &str)]) -> Form {
    for (k, v) in fields {
        form = form.text(k.to_string(), v.to_string());
    }
    form
}

/// A form with one file part `file` named `name` and the given text fields.
pub fn file_form(name: &str, bytes: Vec<u8>, fields: &[(&str, &str)]) -> Form {
    with_fields(Form::new().part("file", file_part(name, bytes)), fields)
}

pub fn part(name: &str, bytes: Vec<u8>) -> Part {
    file_part(name, bytes)
}

/// Posts a form and returns `(status, envelope)`.
pub async fn post(app: &TestApp, path: &str, form: Form) -> (u16, Value) {
    envelope(app.post_form(path, form).await).await
}

/// Asserts a 4xx/5xx answer with the given status, `error_type` and message, and that the request left
/// no output and no upload behind.
pub fn assert_error(
    app: &TestApp,
    (status, body): &(u16, Value),
    want_status: u16,
    error_type: &str,
    message: &str,
) {
    assert_eq!(*status, want_status, "{body}");
    assert_eq!(body["data"]["error_type"], error_type, "{body}");
    assert_eq!(body["message"], message, "{body}");
    assert_nothing_left(app);
}

/// Asserts an error whose message starts with `prefix`.
pub fn assert_error_prefix(
    app: &TestApp,
    (status, body): &(u16, Value),
    want_status: u16,
    error_type: &str,
    prefix: &str,
) {
    assert_eq!(*status, want_status, "{body}");
    assert_eq!(body["data"]["error_type"], error_type, "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.starts_with(prefix), "message {message:?} should start with {prefix:?}");
    assert_nothing_left(app);
}

pub fn assert_nothing_left(app: &TestApp) {
    assert!(app.output_files().is_empty(), "outputs written: {:?}", app.output_files());
    assert!(app.upload_files().is_empty(), "uploads left: {:?}", app.upload_files());
}

/// The file name at the end of a download URL.
pub fn url_name(url: &Value) -> String {
    url.as_str().unwrap().rsplit('/').next().unwrap().to_string()
}

/// Downloads the `data.download_url` of a success envelope.
pub async fn download_data(app: &TestApp, body: &Value) -> Vec<u8> {
    let url = body["data"]["download_url"].as_str().unwrap_or_else(|| panic!("no download_url: {body}"));
    assert!(url.starts_with(&app.api), "absolute URL under the API prefix: {url}");
    app.download(url).await
}

/// Reads xlsx bytes back with the crate's reader: (sheet names, first sheet's table).
pub fn read_xlsx(bytes: &[u8]) -> (Vec<String>, Table) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("book.xlsx");
    std::fs::write(&path, bytes).unwrap();
    let sheets = workbook_sheet_names(&path, &ReadLimits::default()).unwrap();
    let table = read_workbook(&path, None, &ReadLimits::default()).unwrap().table;
    (sheets, table)
}

/// The texts of one column of a table.
pub fn column_texts(table: &Table, name: &str) -> Vec<String> {
    let i = table.column_index(name).unwrap_or_else(|| panic!("no column {name} in {:?}", table.columns));
    table.column(i).map(|c| c.as_text().into_owned()).collect()
}

pub fn text_row(cells: &[Cell]) -> Vec<String> {
    cells.iter().map(|c| c.as_text().into_owned()).collect()
}
