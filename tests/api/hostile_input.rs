//! Hostile input that is small on the wire and within the upload limits (issue 11, items 8–11 and 17):
//! shared-string bombs, what an operation produces (`file.max_output_mb`), CSV width and field size,
//! deflate bombs under the size limits (`file.max_compression_ratio`), normalization amplification, and
//! CSV files with a UTF-16/UTF-32 byte-order mark. Every bomb is generated here, small enough for CI
//! (limits are lowered in the test config where the defaults would need large files); each refusal is
//! checked for its status, envelope and details, and for leaving nothing in `uploads/` or `outputs/`.

use std::io::{Cursor, Write};

use serde_json::{json, Value};

use crate::chat_support::{create_chat, execute, tree, upload};
use crate::common::{spawn_app, spawn_app_with};
use crate::fixtures::{csv_rows, rewrite_zip_entry};
use crate::transform_support::{
    assert_error, assert_error_prefix, assert_nothing_left, file_form, post, xlsx,
};

const EXCEL_MAX_CHARS: usize = 32_767;

/// A workbook whose header `note` sits over `cells` data cells that all reference one shared string of
/// `chars` characters: a few KB compressed, `cells × chars` bytes once materialised.
fn shared_string_bomb(cells: usize, chars: usize) -> Vec<u8> {
    let base = xlsx(&[&["note"], &["BIG"]]);
    let big = "x".repeat(chars);
    let with_string = rewrite_zip_entry(&base, "xl/sharedStrings.xml", |xml| {
        assert!(xml.contains(">BIG<"), "{xml}");
        xml.replace(">BIG<", &format!(">{big}<"))
    });
    rewrite_zip_entry(&with_string, "xl/worksheets/sheet1.xml", |xml| {
        let start = xml.find("<sheetData>").unwrap();
        let end = xml.find("</sheetData>").unwrap() + "</sheetData>".len();
        let mut rows = String::from(r#"<sheetData><row r="1"><c r="A1" t="s"><v>0</v></c></row>"#);
        for r in 2..cells + 2 {
            rows.push_str(&format!(r#"<row r="{r}"><c r="A{r}" t="s"><v>1</v></c></row>"#));
        }
        rows.push_str("</sheetData>");
        format!("{}{rows}{}", &xml[..start], &xml[end..])
    })
}

/// A workbook with one header of `header_chars` characters over `rows` cells holding `1`: little text to
/// read, but every JSON object and SQL statement generated from it repeats the long column name.
fn long_header(header_chars: usize, rows: usize) -> Vec<u8> {
    let header = "k".repeat(header_chars);
    let mut table: Vec<Vec<&str>> = vec![vec![header.as_str()]];
    table.extend((0..rows).map(|_| vec!["1"]));
    let refs: Vec<&[&str]> = table.iter().map(Vec::as_slice).collect();
    xlsx(&refs)
}

/// A workbook whose sheet XML is `cells` identical cells without references: it deflates far more than
/// any real sheet (well over 100:1) yet stays inside the cell and uncompressed-size limits.
fn deflate_bomb(cells: usize) -> Vec<u8> {
    let base = xlsx(&[&["a"], &["1"]]);
    let sheet = rewrite_zip_entry(&base, "xl/worksheets/sheet1.xml", |xml| {
        let start = xml.find("<sheetData>").unwrap();
        let end = xml.find("</sheetData>").unwrap() + "</sheetData>".len();
        let mut data = String::from("<sheetData>");
        for _ in 0..cells / 100 {
            data.push_str("<row>");
            data.push_str(&"<c t=\"n\"><v>1</v></c>".repeat(100));
            data.push_str("</row>");
        }
        data.push_str("</sheetData>");
        format!("{}{data}{}", &xml[..start], &xml[end..])
    });
    recompress_best(&sheet)
}

/// The package again, every part deflated at the best level (as a bomb maker would).
fn recompress_best(bytes: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes.to_vec())).unwrap();
    let mut out = Cursor::new(Vec::new());
    {
        let mut writer = zip::ZipWriter::new(&mut out);
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .compression_level(Some(9));
        for i in 0..archive.len() {
            let mut file = archive.by_index(i).unwrap();
            let name = file.name().unwrap().to_string();
            let mut content = Vec::new();
            file.read_to_end(&mut content).unwrap();
            writer.start_file(name, options).unwrap();
            writer.write_all(&content).unwrap();
        }
        writer.finish().unwrap();
    }
    out.into_inner()
}

/// The sizes the central directory declares for the sheet part: (uncompressed, compressed).
fn sheet_sizes(bytes: &[u8]) -> (u64, u64) {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes.to_vec())).unwrap();
    let part = archive.by_name("xl/worksheets/sheet1.xml").unwrap();
    (part.size(), part.compressed_size())
}

fn details(r: &(u16, Value)) -> Value {
    r.1["data"]["details"].clone()
}

// ---- item 8: shared-string bomb and what an operation produces ------------------------------------------

#[tokio::test]
async fn a_cell_longer_than_excels_limit_is_refused_when_it_is_read() {
    let app = spawn_app().await;
    // 2,000 cells × 1 MiB = 2 GiB of text from a workbook of a few KB.
    let bomb = shared_string_bomb(2_000, 1 << 20);
    assert!(bomb.len() < 64 * 1024, "the bomb is {} bytes", bomb.len());
    let want = format!("Cell A2 has {} characters, more than Excel's limit of {EXCEL_MAX_CHARS}", 1 << 20);
    let steps = json!([{"column_name": "note", "normalization_type": "uppercase"}]).to_string();
    let cases: [(&str, Vec<(&str, &str)>); 4] = [
        ("/excel/extract-columns", vec![("columns", r#"["note"]"#)]),
        ("/normalization/apply", vec![("normalizations", steps.as_str())]),
        ("/json/generate", vec![]),
        ("/sql/generate-to-text", vec![("table_name", "t"), ("column_mapping", r#"{"note": "note"}"#)]),
    ];
    for (path, fields) in cases {
        let started = std::time::Instant::now();
        let r = post(&app, path, file_form("bomb.xlsx", bomb.clone(), &fields)).await;
        assert_error(&app, &r, 422, "ValidationError", &want);
        assert_eq!(
            details(&r),
            json!({"cell": "A2", "characters": 1 << 20, "max_characters": EXCEL_MAX_CHARS})
        );
        assert!(started.elapsed().as_secs() < 10, "{path} took {:?}", started.elapsed());
    }
}

const OUTPUT_TOO_LARGE: &str =
    "Output too large: the operation would produce more than 1 MB of text (config file.max_output_mb)";

#[tokio::test]
async fn reading_more_text_than_max_output_mb_is_refused() {
    let app = spawn_app_with(|c| c.file.max_output_mb = 1).await;
    // 100 cells of 30,000 characters (each within Excel's limit) = 3 MB of text from a few KB.
    let bomb = shared_string_bomb(100, 30_000);
    let steps = json!([{"column_name": "note", "normalization_type": "trim_whitespace"}]).to_string();
    let cases: [(&str, Vec<(&str, &str)>); 4] = [
        ("/excel/extract-columns", vec![("columns", r#"["note"]"#)]),
        ("/normalization/apply", vec![("normalizations", steps.as_str())]),
        ("/json/generate", vec![]),
        ("/excel/info", vec![]),
    ];
    for (path, fields) in cases {
        let r = post(&app, path, file_form("bomb.xlsx", bomb.clone(), &fields)).await;
        assert_eq!(r.0, 413, "{path}: {}", r.1);
        assert_eq!(r.1["data"]["error_type"], "PayloadTooLarge", "{path}");
        assert!(r.1["message"].as_str().unwrap().ends_with(OUTPUT_TOO_LARGE), "{path}: {}", r.1);
        assert_eq!(details(&r), json!({"limit_mb": 1, "config_key": "file.max_output_mb"}), "{path}");
        assert_nothing_left(&app);
    }
    // The same sheet with fewer cells is read as before.
    let small = shared_string_bomb(10, 30_000);
    let r = post(&app, "/excel/extract-columns", file_form("ok.xlsx", small, &[("columns", r#"["note"]"#)]))
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
}

#[tokio::test]
async fn generated_text_larger_than_max_output_mb_is_stopped_and_removed() {
    let app = spawn_app_with(|c| c.file.max_output_mb = 1).await;
    // 30 KB of text read; each of the 200 generated objects/statements repeats the 30,000-character name.
    let input = long_header(30_000, 200);
    let header = "k".repeat(30_000);
    // The SQL column named like the source column, so every statement repeats it.
    let mapping = json!({ &header: &header }).to_string();
    for (path, fields) in [
        ("/json/generate", vec![]),
        ("/sql/generate-to-text", vec![("table_name", "t"), ("column_mapping", mapping.as_str())]),
        (
            "/sql/generate",
            vec![("table_name", "t"), ("column_mapping", mapping.as_str()), ("return_file", "true")],
        ),
    ] {
        let r = post(&app, path, file_form("wide.xlsx", input.clone(), &fields)).await;
        assert_error(&app, &r, 413, "PayloadTooLarge", OUTPUT_TOO_LARGE);
        assert_eq!(details(&r), json!({"limit_mb": 1, "config_key": "file.max_output_mb"}), "{path}");
    }
    // Under the cap the same generators succeed.
    let r = post(&app, "/json/generate", file_form("narrow.xlsx", long_header(100, 200), &[])).await;
    assert_eq!(r.0, 200, "{}", r.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_step_writing_more_than_max_output_mb_fails_and_leaves_nothing() {
    let app = spawn_app_with(|c| c.file.max_output_mb = 1).await;
    let chat = create_chat(&app).await;
    let (status, body) = upload(&app, &chat, "wide.xlsx", long_header(30_000, 200)).await;
    assert_eq!(status, 200, "{body}");
    let steps = json!({"steps": [{"operation": "json/generate", "arguments": {}}]});
    let (status, res) = execute(&app, &chat, &steps).await;
    // A failed workflow step is a 422 whatever the cause (chat-workflows spec); the cause is in the text.
    assert_eq!(status, 422, "{res}");
    assert_eq!(res["data"]["details"]["failed_step"], 1);
    assert_eq!(
        res["message"],
        format!("Workflow execution failed: Workflow failed at step 1/1: JSON generation operation failed: {OUTPUT_TOO_LARGE}")
    );
    let outputs: Vec<String> = tree(&app.config.chat_workflows.storage.workflows_path)
        .into_iter()
        .filter(|p| p.contains(&chat) && (p.contains("/outputs/") || p.contains("/intermediate/")))
        .collect();
    assert_eq!(outputs, Vec::<String>::new());
}

// ---- item 9: CSV width and field size -------------------------------------------------------------------

#[tokio::test]
async fn csv_rows_wider_than_excel_are_refused_while_parsing() {
    let app = spawn_app().await;
    // `a,` 200,000 times: 400 KB on the wire, 200,001 columns.
    let wide = "a,".repeat(200_000).into_bytes();
    for path in ["/csv/info", "/csv/convert-to-excel"] {
        let started = std::time::Instant::now();
        let r = post(&app, path, file_form("wide.csv", wide.clone(), &[])).await;
        assert_error_prefix(&app, &r, 422, "ValidationError", "");
        assert!(
            r.1["message"]
                .as_str()
                .unwrap()
                .ends_with("CSV row 1 has more than 16384 columns (Excel's limit)"),
            "{}",
            r.1
        );
        assert_eq!(details(&r), json!({"row": 1, "max_columns": 16_384}));
        assert!(started.elapsed().as_secs() < 5, "{path} took {:?}", started.elapsed());
    }
    // The widest sheet Excel allows is still read.
    let widest = format!("{}z\n", "c,".repeat(16_383)).into_bytes();
    let r = post(&app, "/csv/info", file_form("widest.csv", widest, &[])).await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(r.1["data"]["columns"], 16_384);
}

#[tokio::test]
async fn csv_fields_longer_than_excels_cell_limit_are_refused() {
    let app = spawn_app().await;
    let csv = format!("id,text\n1,short\n2,\"{}\"\n", "é".repeat(EXCEL_MAX_CHARS + 1)).into_bytes();
    let r = post(&app, "/csv/info", file_form("long.csv", csv, &[])).await;
    assert_error_prefix(&app, &r, 422, "ValidationError", "");
    assert!(
        r.1["message"]
            .as_str()
            .unwrap()
            .ends_with("CSV row 3, column 2 is longer than Excel's limit of 32767 characters"),
        "{}",
        r.1
    );
    assert_eq!(details(&r), json!({"row": 3, "column": 2, "max_characters": EXCEL_MAX_CHARS}));
    // Exactly at the limit (in characters, not bytes) is fine.
    let csv = format!("id,text\n1,{}\n", "é".repeat(EXCEL_MAX_CHARS)).into_bytes();
    let r = post(&app, "/csv/info", file_form("limit.csv", csv, &[])).await;
    assert_eq!(r.0, 200, "{}", r.1);
}

// ---- item 10: deflate bomb under the size limits --------------------------------------------------------

#[tokio::test]
async fn a_sheet_that_deflates_beyond_the_ratio_is_refused_up_front() {
    // Parts from 1 MB up are judged (the default, 16 MB, would need a large fixture).
    let app = spawn_app_with(|c| c.file.compression_check_min_mb = 1).await;
    let bomb = deflate_bomb(200_000);
    let (size, compressed) = sheet_sizes(&bomb);
    let ratio = size / compressed;
    assert!(size > 1 << 20 && ratio > 100, "{size} from {compressed}");
    let want = format!(
        "File too large: workbook part 'xl/worksheets/sheet1.xml' expands {ratio}:1 when unzipped, more than \
         the allowed 100:1 (config file.max_compression_ratio)"
    );
    for (path, fields) in [
        ("/excel/extract-columns", vec![("columns", r#"["a"]"#)]),
        ("/excel/info", vec![]),
        ("/json/generate", vec![]),
    ] {
        let r = post(&app, path, file_form("bomb.xlsx", bomb.clone(), &fields)).await;
        assert_eq!(r.0, 413, "{path}: {}", r.1);
        assert_eq!(r.1["data"]["error_type"], "PayloadTooLarge");
        assert!(r.1["message"].as_str().unwrap().ends_with(&want), "{path}: {}", r.1);
        assert_eq!(
            details(&r),
            json!({"part": "xl/worksheets/sheet1.xml", "ratio": ratio, "max_ratio": 100,
                   "config_key": "file.max_compression_ratio"})
        );
        assert_nothing_left(&app);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_step_always_reads_the_output_of_an_earlier_step() {
    // A guard so strict that the step's own workbook would fail it if it came from a client.
    let app = spawn_app_with(|c| {
        c.file.max_compression_ratio = 2;
        c.file.compression_check_min_mb = 0;
    })
    .await;
    let mut csv = String::from("customer_id,status\n");
    for i in 0..3_000 {
        csv.push_str(&format!("CUST{:04},active\n", i % 10));
    }
    let chat = create_chat(&app).await;
    let (status, body) = upload(&app, &chat, "many.csv", csv.into_bytes()).await;
    assert_eq!(status, 200, "{body}");
    let steps = json!({"steps": [
        {"operation": "csv/convert-to-excel", "arguments": {"sheet_name": "Data"}},
        {"operation": "normalization/apply", "arguments": {"normalizations": [
            {"column": "customer_id", "type": "lowercase"}]}}
    ]});
    let (status, res) = execute(&app, &chat, &steps).await;
    assert_eq!(status, 200, "{res}");
    // The intermediate workbook, sent back by a client, is judged by the ratio.
    let intermediate = tree(&app.config.chat_workflows.storage.workflows_path)
        .into_iter()
        .find(|p| p.contains(&chat) && p.contains("/intermediate/") && p.ends_with(".xlsx"))
        .expect("an intermediate workbook");
    let bytes = std::fs::read(app.config.chat_workflows.storage.workflows_path.join(&intermediate))
        .or_else(|_| std::fs::read(&intermediate))
        .unwrap();
    let r = post(&app, "/excel/info", file_form("again.xlsx", bytes, &[])).await;
    assert_eq!(r.0, 413, "{}", r.1);
    assert_nothing_left(&app);
}

// ---- item 11: normalization amplification ---------------------------------------------------------------

fn notes() -> Vec<u8> {
    xlsx(&[&["c", "d"], &["abcdefghij", "x"], &["", "y"], &["k", ""]])
}

#[tokio::test]
async fn normalization_parameters_longer_than_a_cell_are_refused_before_reading() {
    let app = spawn_app().await;
    let huge = "R".repeat(1 << 20);
    let steps = json!([
        {"column_name": "c", "normalization_type": "regex_replace",
         "parameters": {"pattern": "", "replacement": huge}},
        {"column_name": "d", "normalization_type": "fill_null_values", "parameters": {"value": "v".repeat(40_000)}},
        {"column_name": "d", "normalization_type": "uppercase"},
    ])
    .to_string();
    let r =
        post(&app, "/normalization/apply", file_form("n.xlsx", notes(), &[("normalizations", &steps)])).await;
    assert_error(&app, &r, 422, "ValidationError", "Invalid normalization configuration");
    assert_eq!(
        details(&r),
        json!({"errors": [
            {"step": 0, "field": "parameters.replacement",
             "error": format!("parameter 'replacement' has {} characters, more than Excel's cell limit of 32767", 1 << 20)},
            {"step": 1, "field": "parameters.value",
             "error": "parameter 'value' has 40000 characters, more than Excel's cell limit of 32767"},
        ]})
    );
}

#[tokio::test]
async fn a_normalized_value_longer_than_a_cell_is_refused() {
    let app = spawn_app().await;
    // 11 empty matches in `abcdefghij`, each replaced by 5,000 characters: 55,010 characters.
    let steps = json!([{"column_name": "c", "normalization_type": "regex_replace",
        "parameters": {"pattern": "", "replacement": "R".repeat(5_000)}}])
    .to_string();
    let r =
        post(&app, "/normalization/apply", file_form("n.xlsx", notes(), &[("normalizations", &steps)])).await;
    assert_error(
        &app,
        &r,
        422,
        "ValidationError",
        "Normalizing column 'c' would produce a value longer than Excel's limit of 32767 characters",
    );
    assert_eq!(details(&r), json!({"column": "c", "row": 1, "characters": 55_010, "max_characters": 32_767}));

    // 30,000 replacements per match: refused from the projection, before any value is built.
    let steps = json!([{"column_name": "c", "normalization_type": "regex_replace",
        "parameters": {"pattern": "", "replacement": "R".repeat(30_000)}}])
    .to_string();
    let r =
        post(&app, "/normalization/apply", file_form("n.xlsx", notes(), &[("normalizations", &steps)])).await;
    assert_eq!(r.0, 422, "{}", r.1);
    assert_eq!(details(&r)["row"], Value::Null);
    assert_nothing_left(&app);
}

#[tokio::test]
async fn a_normalization_producing_more_than_max_output_mb_is_refused() {
    let app = spawn_app_with(|c| c.file.max_output_mb = 1).await;
    let mut rows: Vec<Vec<&str>> = vec![vec!["c", "d"]];
    rows.extend((0..100).map(|_| vec!["", "x"]));
    let refs: Vec<&[&str]> = rows.iter().map(Vec::as_slice).collect();
    // 100 blanks filled with 30,000 characters each: 3 MB produced from a tiny sheet.
    let steps = json!([{"column_name": "c", "normalization_type": "fill_null_values",
        "parameters": {"value": "F".repeat(30_000)}}])
    .to_string();
    let r =
        post(&app, "/normalization/apply", file_form("n.xlsx", xlsx(&refs), &[("normalizations", &steps)]))
            .await;
    assert_error(&app, &r, 413, "PayloadTooLarge", OUTPUT_TOO_LARGE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_normalization_workflow_step_refuses_oversized_parameters() {
    let app = spawn_app().await;
    let chat = create_chat(&app).await;
    let (status, body) = upload(&app, &chat, "n.xlsx", notes()).await;
    assert_eq!(status, 200, "{body}");
    let body = json!({"steps": [{"operation": "normalization/apply", "arguments": {"normalizations": [
        {"column": "c", "type": "regex_replace", "parameters": {"pattern": "", "replacement": "R".repeat(40_000)}}]}}]});
    let (status, res) = execute(&app, &chat, &body).await;
    assert_eq!(status, 422, "{res}");
    assert_eq!(
        res["message"],
        "Workflow execution failed: Workflow failed at step 1/1: Normalization operation failed: \
         Invalid normalization configuration: step 0 parameters.replacement: parameter 'replacement' has \
         40000 characters, more than Excel's cell limit of 32767"
    );
    let outputs: Vec<String> = tree(&app.config.chat_workflows.storage.workflows_path)
        .into_iter()
        .filter(|p| p.contains(&chat) && (p.contains("/outputs/") || p.contains("/intermediate/")))
        .collect();
    assert_eq!(outputs, Vec::<String>::new());
}

// ---- item 17: byte-order marks --------------------------------------------------------------------------

fn utf16(text: &str, big_endian: bool) -> Vec<u8> {
    let mut bytes = if big_endian { vec![0xFE, 0xFF] } else { vec![0xFF, 0xFE] };
    for unit in text.encode_utf16() {
        bytes.extend(if big_endian { unit.to_be_bytes() } else { unit.to_le_bytes() });
    }
    bytes
}

#[tokio::test]
async fn csv_with_a_utf16_bom_is_decoded_as_utf16() {
    let app = spawn_app().await;
    let text = "name,city\r\nJosé,Zürich\r\n李,東京\r\n";
    for big_endian in [false, true] {
        let bytes = utf16(text, big_endian);
        let r = post(&app, "/csv/info", file_form("u16.csv", bytes.clone(), &[])).await;
        assert_eq!(r.0, 200, "{}", r.1);
        assert_eq!(r.1["data"]["column_names"], json!(["name", "city"]));
        assert_eq!(r.1["data"]["rows"], 2);
        assert_eq!(r.1["data"]["encoding"], "utf-16");
        let r = post(
            &app,
            "/csv/search",
            file_form(
                "u16.csv",
                bytes,
                &[
                    ("conditions", r#"[{"column": "city", "operator": "equals", "value": "Zürich"}]"#),
                    ("output_format", "csv"),
                ],
            ),
        )
        .await;
        assert_eq!(r.0, 200, "{}", r.1);
        let url = r.1["data"]["download_url"].as_str().unwrap();
        let rows = csv_rows(&app.download(url).await);
        assert_eq!(rows, vec![vec!["name", "city"], vec!["José", "Zürich"]]);
    }
}

#[tokio::test]
async fn csv_with_a_utf32_bom_is_refused_naming_the_encoding() {
    let app = spawn_app().await;
    for (bom, name) in [(&b"\xFF\xFE\0\0"[..], "UTF-32LE"), (&b"\0\0\xFE\xFF"[..], "UTF-32BE")] {
        let mut bytes = bom.to_vec();
        for c in "a,b\n1,2\n".chars() {
            let unit = c as u32;
            bytes.extend(if name.ends_with("LE") { unit.to_le_bytes() } else { unit.to_be_bytes() });
        }
        let r = post(&app, "/csv/info", file_form("u32.csv", bytes, &[])).await;
        assert_eq!(r.0, 415, "{}", r.1);
        assert_eq!(r.1["data"]["error_type"], "UnsupportedFileTypeError");
        let message = r.1["message"].as_str().unwrap();
        assert!(message.contains(&format!("Unsupported file encoding: {name}")), "{message}");
        assert_eq!(details(&r), json!({"encoding": name}));
        assert_nothing_left(&app);
    }
}
