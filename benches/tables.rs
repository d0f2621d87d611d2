//! Table endpoints on generated 100k- and 1M-row files, three ways:
//! - `http`: the whole request through the real server (upload, the operation, the durable output, the reply);
//! - `core`: the endpoint's core operation, the same oxcelize functions its handler runs on the blocking
//!   pool, called directly on the file on disk (no HTTP, no upload);
//! - `bare`: a pipeline doing the same work with the same crates (csv, calamine, rust_xlsxwriter) and none of
//!   ours (no encoding detection, no number grammar, no fsync of the output).
//!
//!   cargo bench --bench tables                      # timings (OXCELIZE_BENCH_SKIP_1M=1 skips 1M rows)
//!   OXCELIZE_BENCH_RSS=1 cargo bench --bench tables # peak RSS of a server process converting 1M CSV rows
//!
//! The RSS mode starts this binary again as a server-only child process and reads its VmHWM.

use std::collections::BTreeMap;
use std::fs::File;
use std::hint::black_box;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use calamine::{Data, Reader, Xlsx};
use criterion::{BenchmarkId, Criterion, SamplingMode};
use oxcelize::config::Config;
use oxcelize::http::tables::{read_limits, workbook_style};
use oxcelize::ops::convert::csv_file_to_xlsx;
use oxcelize::ops::extract::extract_columns_to_file;
use oxcelize::ops::info::{csv_file_info, excel_info};
use oxcelize::ops::search::{search_csv_file, search_to_file, SearchRequest};
use oxcelize::table::read::{read_workbook, summarize_workbook};
use oxcelize::table::write::OutputFormat;
use oxcelize::App;
use rust_xlsxwriter::{ExcelDateTime, Format, Workbook};
use serde_json::{json, Value};

const COLUMNS: [&str; 10] =
    ["id", "name", "code", "amount", "date", "active", "note", "city", "qty", "status"];
const CITIES: [&str; 8] = ["Oslo", "Hà Nội", "Lima", "Porto", "Kyiv", "Quito", "Accra", "Perth"];
const SEARCH_AMOUNT: f64 = 5000.0;
/// `id`, `name`, `amount`: the extraction benchmark's columns.
const EXTRACT: [usize; 3] = [0, 1, 3];

fn row_values(i: usize) -> [String; 10] {
    let day = chrono::NaiveDate::from_ymd_opt(2024, 1, 1).unwrap() + chrono::Days::new((i % 730) as u64);
    [
        (i + 1).to_string(),
        format!("Customer {i}"),
        format!("{:06}", i % 1_000_000),
        format!("{}.{:02}", (i * 37) % 10_000, i % 100),
        day.format("%Y-%m-%d").to_string(),
        if i.is_multiple_of(2) { "true" } else { "false" }.to_string(),
        if i.is_multiple_of(3) { String::new() } else { format!("note {}", i % 97) },
        CITIES[i % CITIES.len()].to_string(),
        ((i * 7) % 500).to_string(),
        if i.is_multiple_of(4) { "inactive" } else { "active" }.to_string(),
    ]
}

fn write_csv(path: &Path, rows: usize) {
    let mut w = csv::Writer::from_writer(BufWriter::new(File::create(path).unwrap()));
    w.write_record(COLUMNS).unwrap();
    for i in 0..rows {
        w.write_record(row_values(i)).unwrap();
    }
    w.flush().unwrap();
}

/// The same data as a workbook with typed cells: numbers, dates, booleans, text and blanks.
fn write_xlsx(path: &Path, rows: usize) {
    let mut wb = Workbook::new();
    let date = Format::new().set_num_format("yyyy-mm-dd");
    let ws = wb.add_worksheet_with_constant_memory().unwrap();
    for (c, h) in COLUMNS.iter().enumerate() {
        ws.write_string(0, c as u16, *h).unwrap();
    }
    for i in 0..rows {
        let r = (i + 1) as u32;
        let v = row_values(i);
        ws.write_number(r, 0, (i + 1) as f64).unwrap();
        ws.write_string(r, 1, &v[1]).unwrap();
        ws.write_string(r, 2, &v[2]).unwrap();
        ws.write_number(r, 3, v[3].parse::<f64>().unwrap()).unwrap();
        let d = ExcelDateTime::parse_from_str(&v[4]).unwrap();
        ws.write_datetime_with_format(r, 4, &d, &date).unwrap();
        ws.write_boolean(r, 5, i % 2 == 0).unwrap();
        if !v[6].is_empty() {
            ws.write_string(r, 6, &v[6]).unwrap();
        }
        ws.write_string(r, 7, &v[7]).unwrap();
        ws.write_number(r, 8, v[8].parse::<f64>().unwrap()).unwrap();
        ws.write_string(r, 9, &v[9]).unwrap();
    }
    wb.save(path).unwrap();
}

fn server_config(root: &Path) -> Config {
    let mut c = Config::default();
    c.app.port = 0;
    c.app.workers = 1;
    c.chat_workflows.enabled = false;
    c.file.upload_folder = root.join("uploads");
    c.file.output_folder = root.join("outputs");
    c.file.max_file_size_mb = 2048;
    c.file.output_retention_hours = 0;
    c.logging.file = String::new();
    let cw = &mut c.chat_workflows;
    cw.storage.workflows_path = root.join("automation/workflows");
    cw.storage.dumps_path = root.join("automation/dumps");
    cw.storage.sqlite_path = root.join("automation/sqlite/chat.db");
    cw.backup.snapshot_path = root.join("automation/sqlite/snapshots");
    c
}

/// The `file` part: streamed from disk (the RSS mode, where client and server are separate processes) or
/// from memory loaded once (the timings, so the client's file reading is not measured).
enum Upload<'a> {
    Disk(&'a Path),
    Memory(&'static [u8], &'a str),
}

impl Upload<'_> {
    async fn part(&self) -> reqwest::multipart::Part {
        let (body, len, name) = match self {
            Upload::Disk(path) => {
                let handle = tokio::fs::File::open(path).await.unwrap();
                let len = handle.metadata().await.unwrap().len();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                (reqwest::Body::from(handle), len, name)
            }
            Upload::Memory(bytes, name) => {
                (reqwest::Body::from(*bytes), bytes.len() as u64, name.to_string())
            }
        };
        reqwest::multipart::Part::stream_with_length(body, len).file_name(name)
    }
}

/// One endpoint call: multipart upload, 200 asserted, the output file removed afterwards.
async fn call(
    client: &reqwest::Client,
    api: &str,
    route: &str,
    upload: Upload<'_>,
    fields: &[(&str, String)],
    out: &Path,
) {
    // Text fields first, then the file, as Python `requests` sends a form: the CSV endpoints then parse
    // the file while it uploads with every field they read already known.
    let mut form = reqwest::multipart::Form::new();
    for (k, v) in fields {
        form = form.text(k.to_string(), v.clone());
    }
    let form = form.part("file", upload.part().await);
    let res = client.post(format!("{api}{route}")).multipart(form).send().await.unwrap();
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, 200, "{route}: {body}");
    if let Some(url) = body["data"]["download_url"].as_str() {
        let name = url.rsplit('/').next().unwrap();
        std::fs::remove_file(out.join(name)).unwrap();
    }
}

// ---- bare pipelines: the same work with the same crates, none of our code ----

fn csv_reader(path: &Path) -> csv::Reader<File> {
    csv::ReaderBuilder::new().has_headers(true).flexible(true).from_path(path).unwrap()
}

/// Per column: which of boolean / integer / number / date every non-empty value could be.
#[derive(Clone, Copy)]
struct BareTypes {
    boolean: bool,
    integer: bool,
    number: bool,
    date: bool,
}

impl BareTypes {
    const ANY: BareTypes = BareTypes { boolean: true, integer: true, number: true, date: true };
    const NONE: BareTypes = BareTypes { boolean: false, integer: false, number: false, date: false };

    fn push(&mut self, text: &str) {
        let t = text.trim();
        if t.is_empty() {
            return;
        }
        // Each check runs only while the column can still be of that type.
        if self.boolean {
            self.boolean = t.eq_ignore_ascii_case("true") || t.eq_ignore_ascii_case("false");
        }
        if self.integer {
            self.integer = t.parse::<i64>().is_ok();
        }
        if self.number {
            self.number = t.parse::<f64>().is_ok();
        }
        if self.date {
            self.date = chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d").is_ok()
                || chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S").is_ok();
        }
    }
}

/// Row count and per-column content types.
fn bare_csv_info(path: &Path) -> (u64, Vec<BareTypes>) {
    let mut reader = csv_reader(path);
    let width = reader.headers().unwrap().len();
    let mut types = vec![BareTypes::ANY; width];
    let mut record = csv::StringRecord::new();
    let mut rows = 0;
    while reader.read_record(&mut record).unwrap() {
        rows += 1;
        for (slot, field) in types.iter_mut().zip(record.iter()) {
            slot.push(field);
        }
    }
    (rows, types)
}

/// Standard workbook: data sheet with widths, then an info sheet.
fn bare_csv_convert(path: &Path, out: &Path) {
    let mut reader = csv_reader(path);
    let header: Vec<String> = reader.headers().unwrap().iter().map(str::to_string).collect();
    let mut wb = Workbook::new();
    let ws = wb.add_worksheet_with_constant_memory().unwrap();
    ws.set_name("Sheet1").unwrap();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for (c, h) in header.iter().enumerate() {
        ws.write_string(0, c as u16, h).unwrap();
    }
    let mut record = csv::StringRecord::new();
    let mut r = 1u32;
    while reader.read_record(&mut record).unwrap() {
        for (c, field) in record.iter().enumerate() {
            if !field.is_empty() {
                ws.write_string(r, c as u16, field).unwrap();
            }
            widths[c] = widths[c].max(field.chars().count());
        }
        r += 1;
    }
    for (c, w) in widths.iter().enumerate() {
        ws.set_column_width(c as u16, ((w + 2).min(50)) as f64).unwrap();
    }
    let info = wb.add_worksheet();
    info.set_name("Info").unwrap();
    info.write_string(0, 0, "Rows").unwrap();
    info.write_number(0, 1, f64::from(r - 1)).unwrap();
    wb.save(out).unwrap();
}

fn bare_csv_search(path: &Path, out: &Path) -> u64 {
    let mut reader = csv_reader(path);
    let mut writer = csv::Writer::from_writer(BufWriter::new(File::create(out).unwrap()));
    writer.write_byte_record(reader.byte_headers().unwrap()).unwrap();
    let mut record = csv::ByteRecord::new();
    let mut matched = 0;
    while reader.read_byte_record(&mut record).unwrap() {
        let amount = std::str::from_utf8(&record[3]).unwrap().parse::<f64>().unwrap_or(f64::NAN);
        if amount > SEARCH_AMOUNT && &record[9] == b"active" {
            writer.write_byte_record(&record).unwrap();
            matched += 1;
        }
    }
    writer.flush().unwrap();
    matched
}

fn first_sheet(path: &Path) -> calamine::Range<Data> {
    let mut wb: Xlsx<_> = calamine::open_workbook(path).unwrap();
    let name = wb.sheet_names()[0].clone();
    wb.worksheet_range(&name).unwrap()
}

fn bare_excel_info(path: &Path) -> (usize, Vec<BareTypes>) {
    let range = first_sheet(path);
    let mut types = vec![BareTypes::ANY; range.width()];
    for row in range.rows().skip(1) {
        for (slot, cell) in types.iter_mut().zip(row) {
            let keep = match cell {
                Data::Empty => continue,
                Data::String(s) => {
                    slot.push(s);
                    continue;
                }
                Data::Float(f) => BareTypes { integer: f.fract() == 0.0, number: true, ..BareTypes::NONE },
                Data::Int(_) => BareTypes { integer: true, number: true, ..BareTypes::NONE },
                Data::Bool(_) => BareTypes { boolean: true, ..BareTypes::NONE },
                Data::DateTime(_) | Data::DateTimeIso(_) => BareTypes { date: true, ..BareTypes::NONE },
                _ => BareTypes::NONE,
            };
            slot.boolean &= keep.boolean;
            slot.integer &= keep.integer;
            slot.number &= keep.number;
            slot.date &= keep.date;
        }
    }
    (range.height().saturating_sub(1), types)
}

fn cell_string(cell: &Data) -> String {
    match cell {
        Data::Empty => String::new(),
        Data::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn bare_excel_search(path: &Path, out: &Path) -> u64 {
    let range = first_sheet(path);
    let mut wb = Workbook::new();
    let bold = Format::new().set_bold();
    let ws = wb.add_worksheet_with_constant_memory().unwrap();
    let mut rows = range.rows();
    for (c, h) in rows.next().unwrap().iter().enumerate() {
        ws.write_string_with_format(0, c as u16, cell_string(h), &bold).unwrap();
    }
    let mut r = 1u32;
    for row in rows {
        let amount = match &row[3] {
            Data::Float(f) => *f,
            other => cell_string(other).parse().unwrap_or(f64::NAN),
        };
        if amount > SEARCH_AMOUNT && matches!(&row[9], Data::String(s) if s == "active") {
            for (c, cell) in row.iter().enumerate() {
                let text = cell_string(cell);
                if !text.is_empty() {
                    ws.write_string(r, c as u16, text).unwrap();
                }
            }
            r += 1;
        }
    }
    wb.save(out).unwrap();
    u64::from(r - 1)
}

fn bare_excel_extract(path: &Path, out: &Path) {
    let range = first_sheet(path);
    let mut wb = Workbook::new();
    let ws = wb.add_worksheet_with_constant_memory().unwrap();
    for (r, row) in range.rows().enumerate() {
        for (c, &source) in EXTRACT.iter().enumerate() {
            let text = cell_string(&row[source]);
            if !text.is_empty() {
                ws.write_string(r as u32, c as u16, text).unwrap();
            }
        }
    }
    let info = wb.add_worksheet();
    info.set_name("Info").unwrap();
    info.write_number(0, 1, (range.height() - 1) as f64).unwrap();
    wb.save(out).unwrap();
}

// ---- the core operations: what each handler runs on the blocking pool, called directly ----

fn core_search_request(format: &str) -> SearchRequest {
    let fields = search_fields(format);
    let default = if format == "csv" { OutputFormat::Csv } else { OutputFormat::Xlsx };
    SearchRequest::parse(Some(&fields[0].1), None, Some(&fields[1].1), None, default).unwrap()
}

fn core_csv_info(config: &Config, path: &Path) -> usize {
    csv_file_info("data.csv", path, &config.file.supported_encodings).unwrap().columns
}

fn core_csv_convert(config: &Config, path: &Path, out: &Path) -> u64 {
    let style = workbook_style(config, &config.excel.default_sheet_name);
    csv_file_to_xlsx(path, &config.file.supported_encodings, out, &style).unwrap()
}

fn core_csv_search(config: &Config, path: &Path, out: &Path) -> u64 {
    let request = core_search_request("csv");
    search_csv_file(path, &config.file.supported_encodings, &request, out).unwrap().filtered_rows
}

fn core_excel_info(config: &Config, path: &Path) -> usize {
    let sheet = summarize_workbook(path, None, &read_limits(config)).unwrap();
    excel_info("data.xlsx", &sheet).columns
}

fn core_excel_search(config: &Config, path: &Path, out: &Path) -> u64 {
    let request = core_search_request("xlsx");
    let table = read_workbook(path, None, &read_limits(config)).unwrap().table;
    let compiled = request.compile(&table.columns).unwrap();
    search_to_file(&table.columns, table.rows.iter().map(Ok), &compiled, request.format, out)
        .unwrap()
        .filtered_rows
}

fn core_excel_extract(config: &Config, path: &Path, out: &Path) -> u64 {
    let table = read_workbook(path, None, &read_limits(config)).unwrap().table;
    let columns: Vec<String> = EXTRACT.iter().map(|&c| COLUMNS[c].to_string()).collect();
    extract_columns_to_file(&table, &columns, false, out, &workbook_style(config, "Sheet1")).unwrap()
}

// ---- the benchmark ----

type Run<'a> = Box<dyn Fn() + 'a>;

fn row_counts() -> Vec<usize> {
    let mut counts = vec![100_000];
    if std::env::var_os("OXCELIZE_BENCH_SKIP_1M").is_none() {
        counts.push(1_000_000);
    }
    counts
}

fn search_fields(format: &str) -> Vec<(&'static str, String)> {
    let conditions = json!([
        {"column": "amount", "operator": "greater_than", "value": SEARCH_AMOUNT},
        {"column": "status", "operator": "equals", "value": "active"},
    ]);
    vec![("conditions", conditions.to_string()), ("output_format", format.to_string())]
}

fn criterion_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"))
        .join("criterion")
}

fn run_benchmarks() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let config = server_config(dir.path());
    let core_config = config.clone();
    let out = config.file.output_folder.clone();
    let app = rt.block_on(App::build(config)).unwrap();
    let api = format!("http://{}/api/v1", app.rest_addr());
    let handle = app.handle();
    rt.spawn(app.run());
    let client = reqwest::Client::builder().timeout(Duration::from_secs(600)).build().unwrap();
    let bare_out = dir.path().join("bare");
    std::fs::create_dir_all(&bare_out).unwrap();

    let mut c = Criterion::default()
        .output_directory(&criterion_dir())
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let mut group = c.benchmark_group("tables");
    group.sampling_mode(SamplingMode::Flat);
    let mut ids = Vec::new();

    for rows in row_counts() {
        let csv_path = dir.path().join(format!("data_{rows}.csv"));
        let xlsx_path = dir.path().join(format!("data_{rows}.xlsx"));
        let started = Instant::now();
        write_csv(&csv_path, rows);
        write_xlsx(&xlsx_path, rows);
        eprintln!(
            "generated {rows} rows in {:.1?}: csv {} MB, xlsx {} MB",
            started.elapsed(),
            std::fs::metadata(&csv_path).unwrap().len() >> 20,
            std::fs::metadata(&xlsx_path).unwrap().len() >> 20
        );
        // Loaded once and leaked: each upload is served from memory without copying.
        let csv_bytes: &'static [u8] = Box::leak(std::fs::read(&csv_path).unwrap().into_boxed_slice());
        let xlsx_bytes: &'static [u8] = Box::leak(std::fs::read(&xlsx_path).unwrap().into_boxed_slice());
        let http = |route: &'static str, file: &'static [u8], fields: Vec<(&'static str, String)>| {
            let (client, api, out, rt) = (&client, &api, &out, &rt);
            let name = if file.starts_with(b"PK") { "data.xlsx" } else { "data.csv" };
            move || rt.block_on(call(client, api, route, Upload::Memory(file, name), &fields, out))
        };
        let bare_file = bare_out.join("out");
        let core_file = bare_out.join("core");
        let cfg = &core_config;
        let cases: Vec<(&str, Run<'_>, Run<'_>, Run<'_>)> = vec![
            (
                "csv_info",
                Box::new(http("/csv/info", csv_bytes, vec![])),
                Box::new(|| {
                    black_box(core_csv_info(cfg, &csv_path));
                }),
                Box::new(|| {
                    black_box(bare_csv_info(&csv_path));
                }),
            ),
            (
                "csv_convert_to_excel",
                Box::new(http("/csv/convert-to-excel", csv_bytes, vec![])),
                Box::new(|| {
                    black_box(core_csv_convert(cfg, &csv_path, &core_file.with_extension("xlsx")));
                }),
                Box::new(|| bare_csv_convert(&csv_path, &bare_file.with_extension("xlsx"))),
            ),
            (
                "csv_search",
                Box::new(http("/csv/search", csv_bytes, search_fields("csv"))),
                Box::new(|| {
                    black_box(core_csv_search(cfg, &csv_path, &core_file.with_extension("csv")));
                }),
                Box::new(|| {
                    black_box(bare_csv_search(&csv_path, &bare_file.with_extension("csv")));
                }),
            ),
            (
                "excel_info",
                Box::new(http("/excel/info", xlsx_bytes, vec![])),
                Box::new(|| {
                    black_box(core_excel_info(cfg, &xlsx_path));
                }),
                Box::new(|| {
                    black_box(bare_excel_info(&xlsx_path));
                }),
            ),
            (
                "excel_search",
                Box::new(http("/excel/search", xlsx_bytes, search_fields("xlsx"))),
                Box::new(|| {
                    black_box(core_excel_search(cfg, &xlsx_path, &core_file.with_extension("xlsx")));
                }),
                Box::new(|| {
                    black_box(bare_excel_search(&xlsx_path, &bare_file.with_extension("xlsx")));
                }),
            ),
            (
                "excel_extract_columns_to_file",
                Box::new(http(
                    "/excel/extract-columns-to-file",
                    xlsx_bytes,
                    vec![("columns", json!(["id", "name", "amount"]).to_string())],
                )),
                Box::new(|| {
                    black_box(core_excel_extract(cfg, &xlsx_path, &core_file.with_extension("xlsx")));
                }),
                Box::new(|| bare_excel_extract(&xlsx_path, &bare_file.with_extension("xlsx"))),
            ),
        ];
        for (op, http_run, core_run, bare_run) in &cases {
            group.bench_function(BenchmarkId::new(format!("{op}_http"), rows), |b| b.iter(http_run));
            group.bench_function(BenchmarkId::new(format!("{op}_core"), rows), |b| b.iter(core_run));
            group.bench_function(BenchmarkId::new(format!("{op}_bare"), rows), |b| b.iter(bare_run));
            ids.push((op.to_string(), rows));
        }
        drop(cases);
        std::fs::remove_file(&csv_path).ok();
        std::fs::remove_file(&xlsx_path).ok();
    }
    group.finish();
    rt.block_on(handle.stop());
    print_summary(&ids);
}

fn median_ns(id: &str, rows: usize) -> Option<f64> {
    let path = criterion_dir().join("tables").join(id).join(rows.to_string()).join("new/estimates.json");
    let estimates: Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    estimates["median"]["point_estimate"].as_f64()
}

fn print_summary(ids: &[(String, usize)]) {
    println!(
        "\n{:<32} {:>9} {:>12} {:>12} {:>12} {:>10} {:>10}",
        "operation", "rows", "http median", "core median", "bare median", "http/bare", "core/bare"
    );
    for (op, rows) in ids {
        let median = |kind: &str| median_ns(&format!("{op}_{kind}"), *rows);
        let (Some(http), Some(core), Some(bare)) = (median("http"), median("core"), median("bare")) else {
            continue;
        };
        println!(
            "{op:<32} {rows:>9} {:>10.1}ms {:>10.1}ms {:>10.1}ms {:>10.2} {:>10.2}",
            http / 1e6,
            core / 1e6,
            bare / 1e6,
            http / bare,
            core / bare
        );
    }
}

// ---- peak RSS of the server while converting a 1M-row CSV ----

/// Child mode: run only the server, print its port, serve until killed.
fn serve(root: PathBuf) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        let app = App::build(server_config(&root)).await.unwrap();
        println!("PORT {}", app.rest_addr().port());
        std::io::stdout().flush().unwrap();
        app.run().await.unwrap();
    });
}

fn status_kb(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(key)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn measure_rss() {
    let rows: usize =
        std::env::var("OXCELIZE_BENCH_RSS_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let csv_path = dir.path().join("big.csv");
    write_csv(&csv_path, rows);
    let server_root = dir.path().join("server");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .env("OXCELIZE_BENCH_SERVE", &server_root)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let port: u16 = line.trim().strip_prefix("PORT ").unwrap().parse().unwrap();
    let idle_kb = status_kb(pid, "VmRSS:");

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(1200)).build().unwrap();
    let api = format!("http://127.0.0.1:{port}/api/v1");
    let out = server_root.join("outputs");
    let mut results = BTreeMap::new();
    for (route, fields) in [("/csv/convert-to-excel", vec![]), ("/csv/search", search_fields("xlsx"))] {
        let started = Instant::now();
        rt.block_on(call(&client, &api, route, Upload::Disk(&csv_path), &fields, &out));
        results.insert(route, (started.elapsed(), status_kb(pid, "VmHWM:"), status_kb(pid, "VmRSS:")));
    }
    child.kill().ok();
    child.wait().ok();
    println!(
        "\nRSS of the server process ({rows} CSV rows, {} MiB upload): idle {:.1} MiB",
        std::fs::metadata(&csv_path).unwrap().len() >> 20,
        idle_kb as f64 / 1024.0
    );
    // VmHWM is the peak since the process started, so the second route's figure covers both.
    for (route, (took, hwm_kb, rss_kb)) in results {
        println!(
            "  after {route:<24} peak (VmHWM) {:>7.1} MiB, RSS after {:>7.1} MiB  ({took:.1?})",
            hwm_kb as f64 / 1024.0,
            rss_kb as f64 / 1024.0
        );
    }
}

fn main() {
    if let Some(root) = std::env::var_os("OXCELIZE_BENCH_SERVE") {
        serve(PathBuf::from(root));
    } else if std::env::var_os("OXCELIZE_BENCH_RSS").is_some() {
        measure_rss();
    } else {
        run_benchmarks();
    }
}
