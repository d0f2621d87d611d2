//! Fixtures for the table endpoints: workbooks and CSV bytes built in the test, multipart forms, readers
//! for the produced files, and the "bad request leaves nothing behind" assertion.
#![allow(dead_code)]

use std::io::{Cursor, Read, Write};

use calamine::{Data, Reader, Xlsx};
use rust_xlsxwriter::Workbook;
use serde_json::Value;

use crate::common::{envelope, file_part, TestApp};

pub const XLSX_MIME: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

/// A workbook with the given sheets; every non-empty value is a text cell.
pub fn xlsx_sheets(sheets: &[(&str, &[&[&str]])]) -> Vec<u8> {
    let mut wb = Workbook::new();
    for (name, rows) in sheets {
        let ws = wb.add_worksheet();
        ws.set_name(*name).unwrap();
        for (r, row) in rows.iter().enumerate() {
            for (c, value) in row.iter().enumerate() {
                if !value.is_empty() {
                    ws.write_string(r as u32, c as u16, *value).unwrap();
                }
            }
        }
    }
    wb.save_to_buffer().unwrap()
}

/// A one-sheet (`Sheet1`) workbook of text cells.
pub fn xlsx(rows: &[&[&str]]) -> Vec<u8> {
    xlsx_sheets(&[("Sheet1", rows)])
}

/// CSV text from rows (no quoting needed by the callers).
pub fn csv_text(rows: &[&[&str]]) -> Vec<u8> {
    rows.iter().map(|r| format!("{}\n", r.join(","))).collect::<String>().into_bytes()
}

/// The §13.4 search table.
pub const CUSTOMERS: &[&[&str]] = &[
    &["customer_id", "name", "amount", "status"],
    &["021201", "John Doe", "1000", "active"],
    &["021202", "Jane Smith", "1500", "inactive"],
    &["021203", "Bob Wilson", "800", "active"],
    &["021204", "Alice Brown", "2000", "active"],
    &["021205", "Charlie Davis", "1200", "inactive"],
];

/// The §13.5 extraction table.
pub const PEOPLE: &[&[&str]] = &[
    &["Name", "Email", "Phone", "Age"],
    &["John Doe", "john@test.com", "0123456789", "30"],
    &["Jane Smith", "jane@test.com", "0987654321", "25"],
    &["Bob Wilson", "bob@test.com", "0555555555", "41"],
    &["John Doe", "john@test.com", "0123456789", "30"],
];

/// A multipart form with one `file` part and text fields.
pub fn form(file_name: &str, bytes: Vec<u8>, fields: &[(&str, &str)]) -> reqwest::multipart::Form {
    let mut form = reqwest::multipart::Form::new().part("file", file_part(file_name, bytes));
    for (k, v) in fields {
        form = form.text(k.to_string(), v.to_string());
    }
    form
}

/// A form without a file part.
pub fn fields_only(fields: &[(&str, &str)]) -> reqwest::multipart::Form {
    let mut form = reqwest::multipart::Form::new();
    for (k, v) in fields {
        form = form.text(k.to_string(), v.to_string());
    }
    form
}

/// Posts a form and returns the envelope; always checks that the upload folder is empty afterwards.
pub async fn post(app: &TestApp, path: &str, form: reqwest::multipart::Form) -> (u16, Value) {
    let res = app.post_form(path, form).await;
    let out = envelope(res).await;
    assert!(app.upload_files().is_empty(), "uploads left behind by {path}: {:?}", app.upload_files());
    out
}

/// Posts a form that must succeed with 200; returns `data` and `message`.
pub async fn post_ok(app: &TestApp, path: &str, form: reqwest::multipart::Form) -> (Value, String) {
    let (status, body) = post(app, path, form).await;
    assert_eq!(status, 200, "{path}: {body}");
    (body["data"].clone(), body["message"].as_str().unwrap_or_default().to_string())
}

/// Posts a form that must fail with `status`/`error_type`/`message` and leave no output file behind.
pub async fn post_err(
    app: &TestApp,
    path: &str,
    form: reqwest::multipart::Form,
    status: u16,
    error_type: &str,
    message: &str,
) -> Value {
    let outputs_before = app.output_files();
    let (got, body) = post(app, path, form).await;
    assert_eq!(got, status, "{path}: {body}");
    assert_eq!(body["data"]["error_type"], error_type, "{path}: {body}");
    assert_eq!(body["message"], message, "{path}: {body}");
    assert_eq!(app.output_files(), outputs_before, "{path} wrote an output on error");
    body["data"]["details"].clone()
}

/// The last path segment of a download URL.
pub fn url_name(url: &str) -> String {
    url.rsplit('/').next().unwrap_or_default().to_string()
}

/// Downloads `data.download_url`, asserting the URL shape; returns the file name and bytes.
pub async fn fetch(app: &TestApp, data: &Value) -> (String, Vec<u8>) {
    let url = data["download_url"].as_str().unwrap_or_else(|| panic!("no download_url in {data}"));
    assert!(url.starts_with(&format!("{}/files/downloads/", app.api)), "absolute URL expected: {url}");
    let bytes = app.download(url).await;
    (url_name(url), bytes)
}

fn cell_text(cell: &Data) -> String {
    match cell {
        Data::Empty => String::new(),
        Data::String(s) => s.clone(),
        Data::Float(f) if f.fract() == 0.0 => format!("{f:.0}"),
        Data::Bool(b) => if *b { "True" } else { "False" }.to_string(),
        other => other.to_string(),
    }
}

/// Sheet names of a workbook.
pub fn xlsx_sheet_names(bytes: &[u8]) -> Vec<String> {
    let wb: Xlsx<_> = calamine::open_workbook_from_rs(Cursor::new(bytes.to_vec())).unwrap();
    wb.sheet_names()
}

/// All rows (header included) of a sheet, from A1, as text.
pub fn xlsx_rows(bytes: &[u8], sheet: &str) -> Vec<Vec<String>> {
    let mut wb: Xlsx<_> = calamine::open_workbook_from_rs(Cursor::new(bytes.to_vec())).unwrap();
    let range = wb.worksheet_range(sheet).unwrap();
    assert_eq!(range.start(), Some((0, 0)), "the table starts at A1");
    range.rows().map(|r| r.iter().map(cell_text).collect()).collect()
}

/// Whether a cell of a sheet is stored as a string (never a formula or number).
pub fn xlsx_cell(bytes: &[u8], sheet: &str, row: u32, col: u32) -> Data {
    let mut wb: Xlsx<_> = calamine::open_workbook_from_rs(Cursor::new(bytes.to_vec())).unwrap();
    let range = wb.worksheet_range(sheet).unwrap();
    range.get_value((row, col)).cloned().unwrap_or(Data::Empty)
}

/// Rows (header included) of CSV bytes.
pub fn csv_rows(bytes: &[u8]) -> Vec<Vec<String>> {
    let mut reader = csv::ReaderBuilder::new().has_headers(false).from_reader(bytes);
    reader.records().map(|r| r.unwrap().iter().map(str::to_string).collect()).collect()
}

/// Rewrites one part of a zip package through `edit`, copying the others.
pub fn rewrite_zip_entry(bytes: &[u8], entry: &str, edit: impl Fn(String) -> String) -> Vec<u8> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes.to_vec())).unwrap();
    let mut out = Cursor::new(Vec::new());
    {
        let mut writer = zip::ZipWriter::new(&mut out);
        let options =
            zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        for i in 0..archive.len() {
            let mut file = archive.by_index(i).unwrap();
            let name = file.name().unwrap().to_string();
            let mut content = Vec::new();
            file.read_to_end(&mut content).unwrap();
            if name == entry {
                content = edit(String::from_utf8(content).unwrap()).into_bytes();
            }
            writer.start_file(name, options).unwrap();
            writer.write_all(&content).unwrap();
        }
        writer.finish().unwrap();
    }
    out.into_inner()
}

/// A 2-cell workbook whose sheet claims the whole grid A1:XFD1048576 (a few KB on the wire).
pub fn dimension_bomb() -> Vec<u8> {
    let bytes = xlsx(&[&["a"], &["1"]]);
    rewrite_zip_entry(&bytes, "xl/worksheets/sheet1.xml", |xml| {
        let start = xml.find("<dimension ref=\"").unwrap();
        let end = start + xml[start..].find("/>").unwrap();
        format!("{}<dimension ref=\"A1:XFD1048576\"{}", &xml[..start], &xml[end..])
    })
}

/// A small workbook with an extra part whose central-directory entry claims 2 GiB uncompressed.
pub fn zip_bomb() -> Vec<u8> {
    let base = xlsx(&[&["a"], &["1"]]);
    let mut archive = zip::ZipArchive::new(Cursor::new(base)).unwrap();
    let mut out = Cursor::new(Vec::new());
    {
        let mut writer = zip::ZipWriter::new(&mut out);
        for i in 0..archive.len() {
            writer.raw_copy_file(archive.by_index(i).unwrap()).unwrap();
        }
        let options =
            zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        writer.start_file("xl/media/blob.bin", options).unwrap();
        writer.write_all(&vec![0u8; 2 << 20]).unwrap();
        writer.finish().unwrap();
    }
    let mut bytes = out.into_inner();
    let name = b"xl/media/blob.bin";
    let mut patched = false;
    for i in 0..bytes.len().saturating_sub(46 + name.len()) {
        if bytes[i..i + 4] == *b"PK\x01\x02" && bytes[i + 46..i + 46 + name.len()] == *name {
            bytes[i + 24..i + 28].copy_from_slice(&0x7FFF_FFFFu32.to_le_bytes());
            patched = true;
        }
    }
    assert!(patched, "central directory entry patched");
    bytes
}
