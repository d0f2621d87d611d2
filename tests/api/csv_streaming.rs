//! CSV parsed while it uploads (issue 12): the CSV endpoints read the file part as its bytes arrive. The
//! answers are the same as those of the stored-file path (taken when a field the operation reads comes
//! after the file, or by calling the operation on the stored bytes), every limit still holds, and an
//! interrupted upload leaves nothing behind.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::common::{envelope, spawn_app, spawn_app_with, TestApp};
use crate::fixtures::*;

const BOUNDARY: &str = "XstreamedUploadBoundary";

/// One part of a hand-made multipart body (reqwest always sends the file first when built from
/// `fixtures::form`; these tests need to choose the order).
enum Part<'a> {
    Text(&'a str, &'a str),
    File(&'a str, &'a [u8]),
}

fn part_bytes(part: &Part<'_>) -> Vec<u8> {
    let mut out = format!("--{BOUNDARY}\r\n").into_bytes();
    match part {
        Part::Text(name, value) => {
            out.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            );
            out.extend_from_slice(value.as_bytes());
        }
        Part::File(file_name, bytes) => {
            out.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\n\
                     Content-Type: text/csv\r\n\r\n"
                )
                .as_bytes(),
            );
            out.extend_from_slice(bytes);
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

fn body_of(parts: &[Part<'_>]) -> Vec<u8> {
    let mut body: Vec<u8> = parts.iter().flat_map(part_bytes).collect();
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// Posts a multipart body whose pieces the test sends through the returned channel (chunked transfer;
/// the body ends when the sender is dropped). The answer arrives through the join handle.
fn post_pieces(app: &TestApp, path: &str) -> (mpsc::Sender<Vec<u8>>, tokio::task::JoinHandle<(u16, Value)>) {
    let (tx, rx) = mpsc::channel::<Vec<u8>>(4);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|piece| (Ok::<_, std::io::Error>(piece), rx))
    });
    let request = app
        .client
        .post(format!("{}{path}", app.api))
        .header("content-type", format!("multipart/form-data; boundary={BOUNDARY}"))
        .body(reqwest::Body::wrap_stream(stream));
    let answer = tokio::spawn(async move { envelope(request.send().await.expect("request")).await });
    (tx, answer)
}

/// Posts `parts` in one go.
async fn post_parts(app: &TestApp, path: &str, parts: &[Part<'_>]) -> (u16, Value) {
    let res = app
        .client
        .post(format!("{}{path}", app.api))
        .header("content-type", format!("multipart/form-data; boundary={BOUNDARY}"))
        .body(body_of(parts))
        .send()
        .await
        .expect("request");
    let out = envelope(res).await;
    assert!(app.upload_files().is_empty(), "uploads left behind by {path}: {:?}", app.upload_files());
    out
}

async fn ok_data(app: &TestApp, path: &str, parts: &[Part<'_>]) -> Value {
    let (status, body) = post_parts(app, path, parts).await;
    assert_eq!(status, 200, "{path}: {body}");
    body["data"].clone()
}

/// A generated CSV of `rows` rows (quoted fields with commas, accents and emoji).
fn generated_csv(rows: usize) -> Vec<u8> {
    let mut csv = String::from("id,name,status,note\n");
    for i in 0..rows {
        let status = ["active", "inactive", "pending"][i % 3];
        csv.push_str(&format!("{i},\"Zoë {i}, Jr.\",{status},note 😀 {i}\n"));
    }
    csv.into_bytes()
}

/// Waits until the output folder holds a finished file (not a partial one), at most `limit`.
async fn wait_for_output(app: &TestApp, limit: Duration) -> Option<String> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let done: Vec<String> = app.output_files().into_iter().filter(|n| !n.starts_with('.')).collect();
        if let Some(name) = done.into_iter().find(|n| n.ends_with(".xlsx") || n.ends_with(".csv")) {
            return Some(name);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// The output of a conversion (and of a search) exists while the request body is still open: the rows
/// were parsed as they arrived, not after the upload ended. The body then ends with a field the
/// operation does not read, and the answer is that output.
#[tokio::test]
async fn the_output_is_written_before_the_upload_ends() {
    let app = spawn_app().await;
    let csv = generated_csv(20_000);
    let conditions = json!([{"column": "status", "operator": "equals", "value": "active"}]).to_string();
    let cases: [(&str, Vec<Part<'_>>); 2] = [
        ("/csv/convert-to-excel", vec![Part::Text("sheet_name", "Data"), Part::File("big.csv", &csv)]),
        ("/csv/search", vec![Part::Text("conditions", &conditions), Part::File("big.csv", &csv)]),
    ];
    for (path, parts) in cases {
        let (tx, answer) = post_pieces(&app, path);
        for part in &parts {
            tx.send(part_bytes(part)).await.unwrap();
        }
        // The file part is complete (the next part's boundary is in), the body is not.
        tx.send(format!("--{BOUNDARY}\r\n").into_bytes()).await.unwrap();
        let early = wait_for_output(&app, Duration::from_secs(20)).await;
        assert!(early.is_some(), "{path}: no output while the body was still open");
        assert!(!answer.is_finished(), "{path}: answered before the body ended");
        tx.send(b"Content-Disposition: form-data; name=\"note\"\r\n\r\nnot read\r\n".to_vec()).await.unwrap();
        tx.send(format!("--{BOUNDARY}--\r\n").into_bytes()).await.unwrap();
        drop(tx);
        let (status, body) = answer.await.unwrap();
        assert_eq!(status, 200, "{path}: {body}");
        let (name, bytes) = fetch(&app, &body["data"]).await;
        assert_eq!(Some(name.clone()), early, "{path}: the answer is the file written during the upload");
        if path == "/csv/search" {
            assert_eq!(body["data"]["total_rows"], 20_000);
            assert_eq!(body["data"]["filtered_rows"], 6_667);
            assert_eq!(csv_rows(&bytes).len(), 1 + 6_667);
        } else {
            assert_eq!(xlsx_rows(&bytes, "Data").len(), 1 + 20_000);
        }
        std::fs::remove_file(app.config.file.output_folder.join(&name)).unwrap();
        assert!(app.upload_files().is_empty());
    }
    app.stop().await;
}

/// Inputs that stress the reader: quoted newlines, BOM and CRLF, `;` with quoted delimiters, multi-byte
/// text in many chunks, a Windows-1252 file, and late surprises (a surplus field, a non-UTF-8 byte)
/// that make the reader start over on what already arrived.
fn tricky_inputs() -> Vec<(&'static str, Vec<u8>)> {
    let mut long = String::from("id,name,status\n");
    for i in 0..40_000 {
        long.push_str(&format!("{i},\"日本 {i}\nsecond line\",{}\n", ["active", "idle"][i % 2]));
    }
    let mut wider = long.clone().into_bytes();
    wider.extend_from_slice(b"40000,x,active,surplus\n");
    let mut late_cp1252 = long.clone().into_bytes();
    late_cp1252.extend_from_slice(b"40000,Caf\xe9,active\n");
    vec![
        (
            "bom_crlf.csv",
            "\u{feff}id,name,status\r\n1,\"a\r\nb\",active\r\n2,\"x, \"\"y\"\"\",idle\r\n".into(),
        ),
        ("semicolon.csv", "id;name;status\n1;\"a;b\";active\n2;ü;idle\n".into()),
        ("cp1252.csv", b"id,name,status\n1,\x80 caf\xe9,active\n2,\x93q\x94,idle\n".to_vec()),
        ("long.csv", long.into_bytes()),
        ("wider.csv", wider),
        ("late_cp1252.csv", late_cp1252),
    ]
}

/// Each CSV endpoint, streamed, answers as the stored-file path does on the same generated inputs.
#[tokio::test]
async fn streamed_answers_equal_the_stored_file_answers() {
    let app = spawn_app().await;
    let encodings = app.config.file.supported_encodings.clone();
    let conditions = json!([{"column": "status", "operator": "equals", "value": "active"}]).to_string();
    let work = tempfile::tempdir().unwrap();
    for (name, bytes) in tricky_inputs() {
        let stored = work.path().join(name);
        std::fs::write(&stored, &bytes).unwrap();

        // csv/info and suggestions read no field: the stored-file path is the operation on the file.
        let data = ok_data(&app, "/csv/info", &[Part::File(name, &bytes)]).await;
        let want = oxcelize::ops::info::csv_file_info(name, stored.as_path(), &encodings).unwrap();
        assert_eq!(data, serde_json::to_value(&want).unwrap(), "{name}: csv/info");
        let data = ok_data(&app, "/csv/search/suggest-operators", &[Part::File(name, &bytes)]).await;
        let (columns, inferred) =
            oxcelize::ops::info::csv_file_inferred_types(stored.as_path(), &encodings).unwrap();
        let want = oxcelize::ops::search::suggest_operators(&columns, &inferred);
        assert_eq!(data, serde_json::to_value(&want).unwrap(), "{name}: suggestions");

        // Search and conversion: fields before the file (streamed) against the same fields after it
        // (the operation runs on the stored file; the streamed run's output is removed).
        for format in ["csv", "json", "xlsx"] {
            let fields = [("conditions", conditions.as_str()), ("output_format", format)];
            let before: Vec<Part<'_>> =
                fields.iter().map(|(k, v)| Part::Text(k, v)).chain([Part::File(name, &bytes)]).collect();
            let after: Vec<Part<'_>> = [Part::File(name, &bytes)]
                .into_iter()
                .chain(fields.iter().map(|(k, v)| Part::Text(k, v)))
                .collect();
            let streamed = ok_data(&app, "/csv/search", &before).await;
            let stored = ok_data(&app, "/csv/search", &after).await;
            assert_eq!(streamed["total_rows"], stored["total_rows"], "{name} {format}");
            assert_eq!(streamed["filtered_rows"], stored["filtered_rows"], "{name} {format}");
            let (a, b) = (fetch(&app, &streamed).await.1, fetch(&app, &stored).await.1);
            if format == "xlsx" {
                assert_eq!(xlsx_rows(&a, "Sheet1"), xlsx_rows(&b, "Sheet1"), "{name}: xlsx search");
            } else {
                assert_eq!(a, b, "{name}: {format} search output, byte for byte");
            }
        }
        let streamed = ok_data(
            &app,
            "/csv/convert-to-excel",
            &[Part::Text("sheet_name", "Data"), Part::File(name, &bytes)],
        )
        .await;
        let stored = ok_data(
            &app,
            "/csv/convert-to-excel",
            &[Part::File(name, &bytes), Part::Text("sheet_name", "Data")],
        )
        .await;
        let (a, b) = (fetch(&app, &streamed).await.1, fetch(&app, &stored).await.1);
        assert_eq!(xlsx_sheet_names(&a), xlsx_sheet_names(&b), "{name}");
        assert_eq!(xlsx_rows(&a, "Data"), xlsx_rows(&b, "Data"), "{name}: conversion");
        // One output per request: the superseded streamed runs left nothing.
        assert_eq!(app.output_files().len(), 8, "{name}: {:?}", app.output_files());
        for file in app.output_files() {
            std::fs::remove_file(app.config.file.output_folder.join(file)).unwrap();
        }
    }
    app.stop().await;
}

/// The request's errors are those of the stored-file path, in the same order: a bad field sent before
/// the file, a file the reader refuses, a search on a missing column.
#[tokio::test]
async fn streamed_errors_are_the_stored_file_errors() {
    let app = spawn_app().await;
    let csv = generated_csv(100);
    let missing = json!([{"column": "nope", "operator": "equals", "value": "x"}]).to_string();
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<u8>);
    let cases: Vec<Case<'_>> = vec![
        ("/csv/search", vec![("conditions", "not json")], csv.clone()),
        ("/csv/search", vec![("conditions", &missing)], csv.clone()),
        ("/csv/convert-to-excel", vec![("sheet_name", "a/b")], csv.clone()),
        ("/csv/info", vec![], b"%PDF-1.4 not a csv".to_vec()),
        ("/csv/convert-to-excel", vec![], b"".to_vec()),
        ("/csv/search", vec![("conditions", &missing)], b"a,b\n\"unterminated,1\n\xff\n".to_vec()),
    ];
    for (path, fields, bytes) in cases {
        let before: Vec<Part<'_>> =
            fields.iter().map(|(k, v)| Part::Text(k, v)).chain([Part::File("x.csv", &bytes)]).collect();
        let after: Vec<Part<'_>> = [Part::File("x.csv", &bytes)]
            .into_iter()
            .chain(fields.iter().map(|(k, v)| Part::Text(k, v)))
            .collect();
        let (status, streamed) = post_parts(&app, path, &before).await;
        let (stored_status, stored) = post_parts(&app, path, &after).await;
        assert!(status >= 400, "{path}: {streamed}");
        assert_eq!((status, &streamed["message"]), (stored_status, &stored["message"]), "{path}");
        assert_eq!(streamed["data"], stored["data"], "{path}");
        assert!(app.output_files().is_empty(), "{path}: {:?}", app.output_files());
    }
    app.stop().await;
}

/// The body limit still cuts a streamed upload mid-way (a chunked body, so the size is unknown until
/// it is exceeded): 413, and neither the upload nor a partial output is left.
#[tokio::test]
async fn the_size_limit_stops_a_streamed_upload_midway() {
    let app = spawn_app_with(|c| c.file.max_file_size_mb = 1).await;
    let csv = generated_csv(60_000);
    assert!(csv.len() > 2 * 1024 * 1024);
    let conditions = json!([{"column": "status", "operator": "is_not_empty", "value": ""}]).to_string();
    for (path, parts) in [
        ("/csv/convert-to-excel", vec![Part::File("big.csv", &csv)]),
        ("/csv/search", vec![Part::Text("conditions", &conditions), Part::File("big.csv", &csv)]),
        ("/csv/info", vec![Part::File("big.csv", &csv)]),
    ] {
        let (tx, answer) = post_pieces(&app, path);
        let body = body_of(&parts);
        for piece in body.chunks(64 * 1024) {
            if tx.send(piece.to_vec()).await.is_err() {
                break;
            }
        }
        drop(tx);
        let (status, body) = answer.await.unwrap();
        assert_eq!(status, 413, "{path}: {body}");
        assert_eq!(body["data"]["error_type"], "PayloadTooLarge");
        assert!(app.upload_files().is_empty(), "{path}: {:?}", app.upload_files());
        assert!(app.output_files().is_empty(), "{path}: {:?}", app.output_files());
    }
    app.stop().await;
}

/// A client that goes away mid-upload: the work reading the part stops, its partial output and the
/// upload are removed, and the heavy slot is free again.
#[tokio::test]
async fn a_client_gone_mid_upload_leaves_nothing() {
    use tokio::io::AsyncWriteExt;
    let app = spawn_app_with(|c| c.limits.light_request_max_kb = 0).await;
    let csv = generated_csv(40_000);
    let body = body_of(&[Part::Text("sheet_name", "Data"), Part::File("big.csv", &csv)]);
    let addr = app.base.trim_start_matches("http://").to_string();
    let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST {}/csv/convert-to-excel HTTP/1.1\r\nHost: {addr}\r\n\
         Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {}\r\n\r\n",
        app.config.api.prefix,
        body.len()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(&body[..body.len() / 2]).await.unwrap();
    tcp.flush().await.unwrap();
    // The conversion is under way (its partial output exists), then the client disappears.
    let deadline = Instant::now() + Duration::from_secs(20);
    while app.output_files().is_empty() {
        assert!(Instant::now() < deadline, "the conversion never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(tcp);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, health) = envelope(app.get("/health").await).await;
        let running = health["data"]["processing"]["running"].as_u64();
        if app.upload_files().is_empty() && app.output_files().is_empty() && running == Some(0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "left behind: uploads {:?}, outputs {:?}, running {running:?}",
            app.upload_files(),
            app.output_files()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.stop().await;
}

/// A small tmpfs mounted for one test (needs root; `None` otherwise), unmounted when dropped.
struct TinyDisk {
    path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl TinyDisk {
    fn mount(size_kb: u64) -> Option<TinyDisk> {
        let dir = tempfile::tempdir().ok()?;
        let path = dir.path().join("disk");
        std::fs::create_dir(&path).ok()?;
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_kb}k"), "tmpfs"])
            .arg(&path)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        mounted.then_some(TinyDisk { path, _dir: dir })
    }
}

impl Drop for TinyDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.path).status();
    }
}

/// The disk fills up while a workbook is written (the writer spills its rows to a temporary file in
/// the output folder, here a 1 MB filesystem): 507 `InsufficientStorage`, not a 500, and nothing is
/// left in the output folder. Skipped, saying so, where no small filesystem can be mounted (not root).
#[tokio::test]
async fn a_full_disk_during_a_workbook_write_is_507_and_leaves_nothing() {
    let Some(disk) = TinyDisk::mount(1024) else {
        eprintln!("skipping a_full_disk_during_a_workbook_write: cannot mount a tmpfs here (needs root)");
        return;
    };
    let outputs = disk.path.clone();
    let app = spawn_app_with(|c| c.file.output_folder = outputs).await;
    let csv = generated_csv(60_000);
    for parts in [
        vec![Part::File("big.csv", &csv[..])],
        vec![
            Part::Text("output_format", "xlsx"),
            Part::Text("conditions", r#"[{"column": "status", "operator": "is_not_empty", "value": ""}]"#),
            Part::File("big.csv", &csv[..]),
        ],
    ] {
        let path = if parts.len() == 1 { "/csv/convert-to-excel" } else { "/csv/search" };
        let (status, body) = post_parts(&app, path, &parts).await;
        assert_eq!(status, 507, "{path}: {body}");
        assert_eq!(body["data"]["error_type"], "InsufficientStorage", "{body}");
        assert_eq!(
            body["message"], "Insufficient storage: the disk is full, the output file could not be written",
            "{body}"
        );
        assert!(app.output_files().is_empty(), "{path}: {:?}", app.output_files());
    }
    app.stop().await;
}
