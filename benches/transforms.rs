//! Transform endpoints through the real HTTP server (the release binary, started as a child process) next
//! to a bare pipeline doing the same work with calamine + std/serde_json only (no oxcelize code, no HTTP).
//! Workbooks of 100k and 1M rows × 10 mixed columns are generated once and cached in the target folder.
//!
//!   cargo bench --bench transforms                      # 100k and 1M rows
//!   OXCELIZE_BENCH_SKIP_1M=1 cargo bench --bench transforms
//!   OXCELIZE_BENCH_RSS_ONLY=1 cargo bench --bench transforms  # no timings: only the 1M RSS figures below
//!
//! After the timings the peak RSS of the server during each 1M-row SQL and JSON generation is printed, each
//! measured on a freshly started server (VmHWM from /proc/{pid}/status; Linux only).

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use calamine::{open_workbook, Data, Reader, Xlsx};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode};
use rust_xlsxwriter::Workbook;
use serde_json::{json, Map, Value};

const COLUMNS: [&str; 10] =
    ["id", "name", "email", "age", "score", "active", "created", "city", "amount", "note"];
const CITIES: [&str; 6] = ["Lisboa", "O'Hare", "São Paulo", "Zürich", "New York", "Back\\slash"];

// ------------------------------------------------------------------------------------------------
// Data
// ------------------------------------------------------------------------------------------------

fn data_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("bench-data")
}

/// `rows` data rows of 10 mixed columns (numbers, booleans, text with quotes, backslashes and braces).
fn workbook(rows: usize) -> PathBuf {
    let dir = data_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("transforms_{rows}.xlsx"));
    if path.exists() {
        return path;
    }
    eprintln!("generating {} ...", path.display());
    let mut book = Workbook::new();
    let sheet = book.add_worksheet_with_constant_memory().unwrap();
    sheet.set_name("Sheet1").unwrap();
    for (c, name) in COLUMNS.iter().enumerate() {
        sheet.write_string(0, c as u16, *name).unwrap();
    }
    for i in 0..rows {
        let r = (i + 1) as u32;
        sheet.write_number(r, 0, (i + 1) as f64).unwrap();
        sheet
            .write_string(r, 1, format!("  person {} {}  ", i % 9973, ["smith", "o'neil", "{x}"][i % 3]))
            .unwrap();
        sheet.write_string(r, 2, format!("User{}@Example.COM", i % 50_000)).unwrap();
        sheet.write_number(r, 3, (18 + i % 70) as f64).unwrap();
        sheet.write_number(r, 4, (i % 10_000) as f64 / 7.0).unwrap();
        sheet.write_boolean(r, 5, i % 2 == 0).unwrap();
        sheet.write_string(r, 6, format!("2024-{:02}-{:02}", 1 + i % 12, 1 + i % 28)).unwrap();
        sheet.write_string(r, 7, CITIES[i % CITIES.len()]).unwrap();
        sheet.write_string(r, 8, format!("${},{:03}.{:02}", i % 900 + 1, i % 1000, i % 100)).unwrap();
        if i % 5 != 0 {
            sheet.write_string(r, 9, format!("note {i}: it's 3rd; '; DROP TABLE t; --")).unwrap();
        }
    }
    let partial = path.with_extension("partial");
    book.save(&partial).unwrap();
    std::fs::rename(&partial, &path).unwrap();
    path
}

// ------------------------------------------------------------------------------------------------
// The server (child process) and its client
// ------------------------------------------------------------------------------------------------

struct Server {
    child: Child,
    api: String,
    outputs: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let config = format!(
            "app:\n  port: 0\n  workers: 2\nfile:\n  upload_folder: \"{up}\"\n  output_folder: \"{out}\"\n  \
             max_file_size_mb: 4096\n  max_uncompressed_mb: 16384\n  output_retention_hours: 0\n\
             logging:\n  level: \"WARNING\"\n  file: \"\"\n",
            up = root.join("uploads").display(),
            out = root.join("outputs").display(),
        );
        let config_path = root.join("bench.yml");
        std::fs::write(&config_path, config).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_oxcelize"))
            .arg("--config")
            .arg(&config_path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the oxcelize binary");
        let mut banner = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut banner).unwrap();
        // `... | REST http://127.0.0.1:PORT/api/v1 | ...`
        let api = banner
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no REST address in the banner: {banner}"))
            .to_string();
        Server { child, api, outputs: root.join("outputs"), _dir: dir }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn clear_outputs(&self) {
        for entry in std::fs::read_dir(&self.outputs).into_iter().flatten().flatten() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// One request of a transform endpoint.
#[derive(Clone)]
struct Call {
    path: &'static str,
    fields: Vec<(&'static str, String)>,
}

fn calls() -> Vec<(&'static str, Call)> {
    let mapping: Map<String, Value> = COLUMNS.iter().map(|c| (c.to_string(), json!(c))).collect();
    vec![
        (
            "normalization_apply",
            Call {
                path: "/normalization/apply",
                fields: vec![(
                    "normalizations",
                    json!([
                        {"column_name": "name", "normalization_type": "trim_whitespace"},
                        {"column_name": "email", "normalization_type": "email_format"},
                        {"column_name": "city", "normalization_type": "uppercase"},
                        {"column_name": "score", "normalization_type": "round_decimal", "parameters": {"decimals": 1}},
                    ])
                    .to_string(),
                )],
            },
        ),
        (
            "sql_generate_to_text",
            Call {
                path: "/sql/generate-to-text",
                fields: vec![("table_name", "people".into()), ("column_mapping", Value::Object(mapping).to_string())],
            },
        ),
        (
            "sql_generate_custom_to_text",
            Call {
                path: "/sql/generate-custom-to-text",
                fields: vec![
                    ("template", CUSTOM_TEMPLATE.into()),
                    (
                        "column_mapping",
                        json!({"id": "id", "name": "name", "age": "age", "score": "score", "active": "active", "note": "note"})
                            .to_string(),
                    ),
                ],
            },
        ),
        ("json_generate", Call { path: "/json/generate", fields: vec![] }),
        (
            "json_generate_with_template",
            Call {
                path: "/json/generate-with-template",
                fields: vec![
                    ("template", JSON_TEMPLATE.into()),
                    (
                        "column_mapping",
                        json!({"id": "id", "name": "name", "email": "email", "score": "score", "active": "active", "city": "city"})
                            .to_string(),
                    ),
                ],
            },
        ),
    ]
}

const CUSTOM_TEMPLATE: &str =
    "INSERT INTO t (id, name, age, score, active, note) VALUES ({id:int}, {name}, {age:int}, {score:float}, {active:bool}, {note});";
const JSON_TEMPLATE: &str = r#"{"id": "{id:int}", "user": {"name": "{name}", "email": "{email}"}, "score": "{score:float}", "active": "{active:bool}", "label": "{name} ({city})"}"#;

/// Uploads `bytes` and waits for the answer; panics unless it is a 200.
async fn send(client: &reqwest::Client, server: &Server, call: &Call, bytes: Vec<u8>) {
    let mut form = reqwest::multipart::Form::new()
        .part("file", reqwest::multipart::Part::bytes(bytes).file_name("data.xlsx"));
    for (k, v) in &call.fields {
        form = form.text(*k, v.clone());
    }
    let res = client.post(format!("{}{}", server.api, call.path)).multipart(form).send().await.unwrap();
    let status = res.status();
    let body = res.text().await.unwrap();
    assert_eq!(status, 200, "{}: {body}", call.path);
}

// ------------------------------------------------------------------------------------------------
// The bare pipeline: calamine read, the same formatting with std/serde_json, plain files
// ------------------------------------------------------------------------------------------------

fn read_range(path: &Path) -> calamine::Range<Data> {
    let mut book: Xlsx<_> = open_workbook(path).unwrap();
    let name = book.sheet_names()[0].clone();
    book.worksheet_range(&name).unwrap()
}

fn text(cell: &Data) -> String {
    match cell {
        Data::Empty => String::new(),
        Data::Bool(true) => "True".into(),
        Data::Bool(false) => "False".into(),
        Data::Float(f) if f.fract() == 0.0 => format!("{f:.0}"),
        other => other.to_string(),
    }
}

fn quoted(out: &mut String, s: &str) {
    out.push('\'');
    for ch in s.chars() {
        if ch == '\'' {
            out.push('\'');
        }
        out.push(ch);
    }
    out.push('\'');
}

fn bare_sql(path: &Path, out: &Path) {
    let range = read_range(path);
    let mut w = BufWriter::new(File::create(out).unwrap());
    let rows = range.height().saturating_sub(1);
    write!(w, "-- Generated by Pycelize\n-- Generated at: now\n-- Total statements: {}\n\n", rows + 8)
        .unwrap();
    write!(w, "-- Generated SQL statements\n-- Database: postgresql\n-- Table: people\n-- Generated at: now\n-- Total rows: {rows}\n\nBEGIN;\n").unwrap();
    let prefix = format!("INSERT INTO people ({}) VALUES (", COLUMNS.join(", "));
    let mut line = String::new();
    for row in range.rows().skip(1) {
        line.clear();
        line.push_str(&prefix);
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str(", ");
            }
            quoted(&mut line, &text(cell));
        }
        line.push_str(");\n");
        w.write_all(line.as_bytes()).unwrap();
    }
    w.write_all(b"COMMIT;\n").unwrap();
    w.flush().unwrap();
}

fn bare_custom_sql(path: &Path, out: &Path) {
    let range = read_range(path);
    let mut w = BufWriter::new(File::create(out).unwrap());
    let rows = range.height().saturating_sub(1);
    write!(w, "-- Generated by Pycelize\n-- Generated at: now\n-- Total statements: {rows}\n\n").unwrap();
    let mut line = String::new();
    for row in range.rows().skip(1) {
        line.clear();
        let t = |i: usize| text(&row[i]);
        let int = |s: String| s.parse::<f64>().map(|f| (f.trunc() as i64).to_string()).unwrap_or(s);
        let float = |s: String| s.parse::<f64>().map(|f| format!("{f:?}")).unwrap_or(s);
        let boolean = |s: String| if matches!(s.as_str(), "True" | "true" | "1") { "TRUE" } else { "FALSE" };
        line.push_str("INSERT INTO t (id, name, age, score, active, note) VALUES (");
        line.push_str(&int(t(0)));
        line.push_str(", ");
        quoted(&mut line, &t(1));
        line.push_str(", ");
        line.push_str(&int(t(3)));
        line.push_str(", ");
        line.push_str(&float(t(4)));
        line.push_str(", ");
        line.push_str(boolean(t(5)));
        line.push_str(", ");
        match &row[9] {
            Data::Empty => line.push_str("NULL"),
            cell => quoted(&mut line, &text(cell)),
        }
        line.push_str(");\n");
        w.write_all(line.as_bytes()).unwrap();
    }
    w.flush().unwrap();
}

/// Writes `[obj, obj, ...]` pretty-printed, streaming one object at a time.
fn write_objects(out: &Path, objects: impl Iterator<Item = Value>) {
    use serde::Serializer;
    let mut w = BufWriter::new(File::create(out).unwrap());
    let mut ser = serde_json::Serializer::pretty(&mut w);
    ser.collect_seq(objects).unwrap();
    w.flush().unwrap();
}

fn bare_json(path: &Path, out: &Path) {
    let range = read_range(path);
    let objects = range.rows().skip(1).map(|row| {
        let obj: Map<String, Value> = COLUMNS
            .iter()
            .zip(row)
            .map(|(k, c)| {
                (k.to_string(), if matches!(c, Data::Empty) { Value::Null } else { Value::String(text(c)) })
            })
            .collect();
        Value::Object(obj)
    });
    write_objects(out, objects);
}

fn bare_json_template(path: &Path, out: &Path) {
    let range = read_range(path);
    let objects = range.rows().skip(1).map(|row| {
        let t = |i: usize| text(&row[i]);
        json!({
            "id": t(0).parse::<f64>().map(|f| json!(f.trunc() as i64)).unwrap_or(Value::Null),
            "user": {"name": t(1), "email": t(2)},
            "score": t(4).parse::<f64>().map(|f| json!(f)).unwrap_or(Value::Null),
            "active": t(5) == "True",
            "label": format!("{} ({})", t(1), t(7)),
        })
    });
    write_objects(out, objects);
}

fn bare_normalize(path: &Path, out: &Path) {
    let range = read_range(path);
    let mut book = Workbook::new();
    let sheet = book.add_worksheet_with_constant_memory().unwrap();
    sheet.set_name("Sheet1").unwrap();
    let backups = ["name", "email", "city", "score"];
    for (c, name) in COLUMNS.iter().chain(backups.iter()).enumerate() {
        let header = if c < COLUMNS.len() { name.to_string() } else { format!("{name}_original") };
        sheet.write_string(0, c as u16, header).unwrap();
    }
    for (r, row) in range.rows().skip(1).enumerate() {
        let r = (r + 1) as u32;
        for (c, cell) in row.iter().enumerate() {
            let t = text(cell);
            let c16 = c as u16;
            match c {
                1 => sheet.write_string(r, c16, t.trim()),
                2 => sheet.write_string(r, c16, t.trim().to_lowercase()),
                7 => sheet.write_string(r, c16, t.to_uppercase()),
                4 => sheet.write_number(r, c16, (t.parse::<f64>().unwrap_or(f64::NAN) * 10.0).round() / 10.0),
                _ if t.is_empty() => continue,
                _ => sheet.write_string(r, c16, &t),
            }
            .unwrap();
        }
        for (b, source) in [1usize, 2, 7, 4].iter().enumerate() {
            sheet.write_string(r, (COLUMNS.len() + b) as u16, text(&row[*source])).unwrap();
        }
    }
    book.save(out).unwrap();
}

fn bare(name: &str) -> fn(&Path, &Path) {
    match name {
        "normalization_apply" => bare_normalize,
        "sql_generate_to_text" => bare_sql,
        "sql_generate_custom_to_text" => bare_custom_sql,
        "json_generate" => bare_json,
        "json_generate_with_template" => bare_json_template,
        other => panic!("no bare pipeline for {other}"),
    }
}

// ------------------------------------------------------------------------------------------------
// Measurements
// ------------------------------------------------------------------------------------------------

fn sizes() -> Vec<usize> {
    let mut sizes = vec![100_000];
    if std::env::var_os("OXCELIZE_BENCH_SKIP_1M").is_none() {
        sizes.push(1_000_000);
    }
    sizes
}

/// A field of /proc/{pid}/status in KiB (Linux only).
fn proc_status_kib(pid: u32, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Peak RSS of a fresh server around one request: (RSS idle before, peak during, RSS after), in MiB.
fn fresh_server_rss(
    rt: &tokio::runtime::Runtime,
    client: &reqwest::Client,
    call: &Call,
    bytes: Vec<u8>,
) -> Option<(f64, f64, f64)> {
    let server = Server::start();
    let pid = server.pid();
    let mib = |kib: u64| kib as f64 / 1024.0;
    let before = proc_status_kib(pid, "VmRSS:")?;
    rt.block_on(send(client, &server, call, bytes));
    let peak = proc_status_kib(pid, "VmHWM:")?;
    let after = proc_status_kib(pid, "VmRSS:")?;
    Some((mib(before), mib(peak), mib(after)))
}

fn transforms(c: &mut Criterion) {
    let rss_only = std::env::var_os("OXCELIZE_BENCH_RSS_ONLY").is_some();
    // The shared server of the timings; the RSS figures start their own.
    let server = (!rss_only).then(Server::start);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    // No pooled connections: the server closes idle keep-alive connections while a bare run is going on.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(1800))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let scratch = tempfile::tempdir().unwrap();

    for rows in sizes() {
        if rss_only && rows < 1_000_000 {
            continue;
        }
        let path = workbook(rows);
        let bytes = std::fs::read(&path).unwrap();
        if let Some(server) = &server {
            let mut group = c.benchmark_group(format!("transforms_{rows}"));
            group.sample_size(10).sampling_mode(SamplingMode::Flat).warm_up_time(Duration::from_millis(1));
            // One iteration per sample: the runs are long enough to time singly.
            group.measurement_time(Duration::from_secs(1));
            for (name, call) in calls() {
                group.bench_function(BenchmarkId::new("http", name), |b| {
                    b.iter_custom(|iters| {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            let body = bytes.clone();
                            let start = Instant::now();
                            rt.block_on(send(&client, server, &call, body));
                            total += start.elapsed();
                            server.clear_outputs();
                        }
                        total
                    })
                });
                let run_bare = bare(name);
                let out = scratch.path().join("bare.out");
                group.bench_function(BenchmarkId::new("bare", name), |b| {
                    b.iter_custom(|iters| {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            let start = Instant::now();
                            run_bare(&path, &out);
                            total += start.elapsed();
                            let _ = std::fs::remove_file(&out);
                        }
                        total
                    })
                });
            }
            group.finish();
        }

        if rows >= 1_000_000 {
            // A fresh server per measurement, so the high-water mark belongs to this request alone.
            for (name, call) in
                calls().into_iter().filter(|(n, _)| n.starts_with("sql_") || n.starts_with("json_"))
            {
                match fresh_server_rss(&rt, &client, &call, bytes.clone()) {
                    Some((before, peak, after)) => println!(
                        "server RSS for {name} ({rows} rows, {:.1} MB upload): idle {before:.0} MiB, \
                         peak {peak:.0} MiB, after the request {after:.0} MiB",
                        bytes.len() as f64 / 1e6,
                    ),
                    None => println!("RSS not available (needs Linux /proc/PID/status)"),
                }
            }
        }
    }
}

criterion_group!(benches, transforms);
criterion_main!(benches);
