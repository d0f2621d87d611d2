//! Soak and burst load tool (dev tool) against a running oxcelize on loopback.
//!
//! Soak: for `--duration-secs`, `--clients` clients split into three classes loop over their requests:
//! * light: health, `csv/info` on 10k rows, conversation listing, one request every `--light-interval-ms`
//!   per client (a dashboard refreshing; 0 = back to back, which measures the light lane's capacity
//!   rather than its latency, and takes the CPU the heavy lane would use);
//! * heavy: normalization and excel/search on 100k and 1M rows, csv→xlsx on 100k and 1M rows;
//! * chat: a conversation with a 10k-row CSV, a WebSocket listener, and three-step workflows run one
//!   after another; every chat event's `seq` is checked (a gap is a lost event).
//!
//! It reports per class the requests done, errors by status, p50/p99 latency (the light class also per
//! kind, the p99 of every 10 s window and the worst of them), the server's peak RSS (VmHWM and the highest
//! VmRSS sampled) and CPU, and per light route what the server itself measured (its
//! `http_request_duration` histogram on `/metrics`: the time in the server, without the kernel's and this
//! tool's share). Refused heavy clients wait the `Retry-After` the server sends before they retry.
//! `--light-reference-secs S` (default 30) first runs the light clients alone for S seconds: their
//! latency then is the reference the mix is compared with ("flat" under heavy load).
//! `--sequential-baseline` first runs each heavy request once, and one chat workflow run (the same three
//! steps), one after another, and compares the soak's heavy throughput (REST requests and workflow runs)
//! with doing the same work sequentially.
//!
//! Burst (`--burst N`): N simultaneous 1M-row workbook normalizations, while health is polled; reports how
//! many were admitted and finished, how fast the refusals came, health latency and RSS. `--warm` first
//! runs one normalization alone, so the server has measured its service time (as a running one has).
//!
//! The light clients and the burst's health poll run on a runtime thread of their own, apart from the
//! tasks that push the uploads, so their latencies are the server's and not this tool's queueing.
//!
//! The server must accept 1M-row uploads and many bodies from one address: start it with
//! `OXCELIZE_FILE__MAX_FILE_SIZE_MB=200 OXCELIZE_FILE__MAX_CONCURRENT_UPLOADS_PER_IP=0`.
//!
//! `soak --rest http://127.0.0.1:5050/api/v1 --ws ws://127.0.0.1:5051 --pid SERVER_PID [--clients 64]
//!  [--duration-secs 300] [--light 40] [--heavy 16] [--chat 8] [--light-interval-ms 500]
//!  [--light-reference-secs 30] [--workdir DIR] [--skip-1m] [--sequential-baseline] [--burst N [--warm]]`

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use oxcelize::loadgen::{cpu_secs, percentile, require_loopback, status_kib, write_csv, write_xlsx};
use serde_json::{json, Value};
use tokio::runtime::Handle;
use tokio_tungstenite::tungstenite::Message;

struct Args {
    rest: String,
    ws: String,
    pid: Option<u32>,
    duration: Duration,
    light: usize,
    heavy: usize,
    chat: usize,
    workdir: Option<PathBuf>,
    skip_1m: bool,
    baseline: bool,
    burst: Option<usize>,
    warm: bool,
    light_interval: Duration,
    light_reference: Duration,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        rest: "http://127.0.0.1:5050/api/v1".into(),
        ws: "ws://127.0.0.1:5051".into(),
        pid: None,
        duration: Duration::from_secs(300),
        light: 40,
        heavy: 16,
        chat: 8,
        workdir: None,
        skip_1m: false,
        baseline: false,
        burst: None,
        warm: false,
        light_interval: Duration::from_millis(500),
        light_reference: Duration::from_secs(30),
    };
    let mut clients: Option<usize> = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let number = |v: String| v.parse::<usize>().map_err(|e| format!("{e}"));
        match flag.as_str() {
            "--rest" => a.rest = value()?,
            "--ws" => a.ws = value()?,
            "--pid" => a.pid = Some(value()?.parse().map_err(|e| format!("--pid: {e}"))?),
            "--duration-secs" => a.duration = Duration::from_secs(number(value()?)? as u64),
            "--clients" => clients = Some(number(value()?)?),
            "--light" => a.light = number(value()?)?,
            "--heavy" => a.heavy = number(value()?)?,
            "--chat" => a.chat = number(value()?)?,
            "--workdir" => a.workdir = Some(PathBuf::from(value()?)),
            "--skip-1m" => a.skip_1m = true,
            "--sequential-baseline" => a.baseline = true,
            "--burst" => a.burst = Some(number(value()?)?),
            "--warm" => a.warm = true,
            "--light-interval-ms" => a.light_interval = Duration::from_millis(number(value()?)? as u64),
            "--light-reference-secs" => a.light_reference = Duration::from_secs(number(value()?)? as u64),
            "--help" | "-h" => return Err("usage: see the module documentation of src/bin/soak.rs".into()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    // `--clients N` splits N like the default 40/16/8 of 64.
    if let Some(n) = clients {
        a.light = n * 5 / 8;
        a.chat = n / 8;
        a.heavy = n - a.light - a.chat;
    }
    require_loopback(&a.rest)?;
    require_loopback(&a.ws)?;
    if a.light + a.heavy + a.chat == 0 || a.light + a.heavy + a.chat > 10_000 {
        return Err("between 1 and 10000 clients".into());
    }
    if a.burst.is_some_and(|n| n == 0 || n > 1000) {
        return Err("--burst must be 1..=1000".into());
    }
    Ok(a)
}

/// The generated input files, read once into memory (uploads clone the bytes, not the data).
struct Fixtures {
    csv_10k: Bytes,
    csv_100k: Bytes,
    csv_1m: Option<Bytes>,
    xlsx_100k: Bytes,
    xlsx_1m: Option<Bytes>,
}

fn fixture(dir: &Path, name: &str, rows: usize) -> Result<Bytes, String> {
    let path = dir.join(name);
    if !path.exists() {
        let started = Instant::now();
        let made = if name.ends_with(".csv") {
            write_csv(&path, rows).map_err(|e| e.to_string())
        } else {
            write_xlsx(&path, rows).map_err(|e| e.to_string())
        };
        made.map_err(|e| format!("{name}: {e}"))?;
        eprintln!("generated {name} in {:.1}s", started.elapsed().as_secs_f64());
    }
    std::fs::read(&path).map(Bytes::from).map_err(|e| format!("{name}: {e}"))
}

fn fixtures(dir: &Path, skip_1m: bool) -> Result<Fixtures, String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let xlsx_100k = fixture(dir, "rows_100k.xlsx", 100_000)?;
    Ok(Fixtures {
        csv_10k: fixture(dir, "rows_10k.csv", 10_000)?,
        csv_100k: fixture(dir, "rows_100k.csv", 100_000)?,
        csv_1m: if skip_1m { None } else { Some(fixture(dir, "rows_1m.csv", 1_000_000)?) },
        xlsx_100k,
        xlsx_1m: if skip_1m { None } else { Some(fixture(dir, "rows_1m.xlsx", 1_000_000)?) },
    })
}

/// One heavy request kind: endpoint, input, extra form fields.
#[derive(Clone)]
struct HeavyKind {
    label: &'static str,
    path: &'static str,
    file_name: &'static str,
    bytes: Bytes,
    fields: Vec<(&'static str, String)>,
}

fn heavy_kinds(f: &Fixtures) -> Vec<HeavyKind> {
    // Normalization takes workbooks (a CSV gets 415), so it runs on the xlsx fixtures.
    let normalize = json!([{"column_name": "name", "normalization_type": "uppercase"}]).to_string();
    let conditions = json!([{"column": "amount", "operator": "greater_than", "value": 5000}]).to_string();
    let mut kinds = vec![
        HeavyKind {
            label: "normalize_100k",
            path: "/normalization/apply",
            file_name: "rows.xlsx",
            bytes: f.xlsx_100k.clone(),
            fields: vec![("normalizations", normalize.clone())],
        },
        HeavyKind {
            label: "excel_search_100k",
            path: "/excel/search",
            file_name: "rows.xlsx",
            bytes: f.xlsx_100k.clone(),
            fields: vec![("conditions", conditions.clone()), ("output_format", "csv".into())],
        },
        HeavyKind {
            label: "csv_to_xlsx_100k",
            path: "/csv/convert-to-excel",
            file_name: "rows.csv",
            bytes: f.csv_100k.clone(),
            fields: vec![],
        },
    ];
    if let Some(csv) = &f.csv_1m {
        kinds.push(HeavyKind {
            label: "csv_to_xlsx_1m",
            path: "/csv/convert-to-excel",
            file_name: "rows.csv",
            bytes: csv.clone(),
            fields: vec![],
        });
    }
    if let Some(xlsx) = &f.xlsx_1m {
        kinds.push(HeavyKind {
            label: "normalize_1m",
            path: "/normalization/apply",
            file_name: "rows.xlsx",
            bytes: xlsx.clone(),
            fields: vec![("normalizations", normalize)],
        });
        kinds.push(HeavyKind {
            label: "excel_search_1m",
            path: "/excel/search",
            file_name: "rows.xlsx",
            bytes: xlsx.clone(),
            fields: vec![("conditions", conditions), ("output_format", "csv".into())],
        });
    }
    kinds
}

fn upload_form(
    name: &'static str,
    bytes: &Bytes,
    fields: &[(&'static str, String)],
) -> reqwest::multipart::Form {
    let part =
        reqwest::multipart::Part::stream_with_length(reqwest::Body::from(bytes.clone()), bytes.len() as u64)
            .file_name(name);
    let mut form = reqwest::multipart::Form::new().part("file", part);
    for (k, v) in fields {
        form = form.text(*k, v.clone());
    }
    form
}

/// Outcomes of one class: latencies of successes, and failures by status (`net` for transport errors).
#[derive(Default)]
struct ClassStats {
    latencies: Vec<f64>,
    errors: BTreeMap<String, u64>,
    /// (seconds since start, latency) of every success, for the per-window light p99.
    timeline: Vec<(f64, f64)>,
    by_kind: BTreeMap<&'static str, (u64, f64)>,
    /// Latencies of the successes per light request kind.
    light_kinds: BTreeMap<&'static str, Vec<f64>>,
}

impl ClassStats {
    fn record(&mut self, at: f64, took: f64, status: Result<u16, String>) {
        match status {
            Ok(s) if (200..300).contains(&s) => {
                self.latencies.push(took);
                self.timeline.push((at, took));
            }
            Ok(s) => *self.errors.entry(s.to_string()).or_default() += 1,
            Err(_) => *self.errors.entry("net".into()).or_default() += 1,
        }
    }
}

type Shared = Arc<Mutex<ClassStats>>;

async fn send(req: reqwest::RequestBuilder) -> Result<u16, String> {
    match req.send().await {
        Ok(res) => {
            let status = res.status().as_u16();
            // Read the answer to its end: the latency is the whole exchange.
            res.bytes().await.map_err(|e| e.to_string())?;
            Ok(status)
        }
        Err(e) => Err(e.to_string()),
    }
}

/// How often each light client sends a request, and how many there are (to spread their starts).
#[derive(Clone, Copy)]
struct Pace {
    interval: Duration,
    clients: usize,
}

async fn light_client(
    rest: String,
    f: Arc<Fixtures>,
    stats: Shared,
    stop: Arc<AtomicBool>,
    t0: Instant,
    n: usize,
    pace: Pace,
) {
    let Pace { interval, clients } = pace;
    let client = reqwest::Client::new();
    // Clients start spread over one interval, so their requests do not come in waves.
    let offset = interval.mul_f64(n as f64 / clients.max(1) as f64);
    let mut ticks = tokio::time::interval_at(
        tokio::time::Instant::now() + offset,
        interval.max(Duration::from_micros(1)),
    );
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut i = n;
    while !stop.load(Ordering::Relaxed) {
        if !interval.is_zero() {
            ticks.tick().await;
        }
        let (kind, req) = match i % 3 {
            0 => ("health", client.get(format!("{rest}/health"))),
            1 => (
                "csv_info_10k",
                client.post(format!("{rest}/csv/info")).multipart(upload_form("rows.csv", &f.csv_10k, &[])),
            ),
            _ => ("chat_list", client.get(format!("{rest}/chat/workflows?limit=20"))),
        };
        let started = Instant::now();
        let status = send(req).await;
        let took = started.elapsed().as_secs_f64();
        let mut s = stats.lock().unwrap_or_else(|e| e.into_inner());
        if status.as_ref().is_ok_and(|s| (200..300).contains(s)) {
            s.light_kinds.entry(kind).or_default().push(took);
        }
        s.record(t0.elapsed().as_secs_f64(), took, status);
        i += 1;
    }
}

/// Seconds of the `Retry-After` of an answer (at most a minute), if any.
fn retry_after(res: &reqwest::Response) -> Option<Duration> {
    let secs: u64 = res.headers().get("retry-after")?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs.min(60)))
}

async fn heavy_client(
    rest: String,
    kinds: Arc<Vec<HeavyKind>>,
    stats: Shared,
    stop: Arc<AtomicBool>,
    n: usize,
) {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(600)).build().unwrap_or_default();
    let mut i = n;
    while !stop.load(Ordering::Relaxed) {
        let kind = &kinds[i % kinds.len()];
        let req = client.post(format!("{rest}{}", kind.path)).multipart(upload_form(
            kind.file_name,
            &kind.bytes,
            &kind.fields,
        ));
        let started = Instant::now();
        let (status, wait) = match req.send().await {
            Ok(res) => {
                let status = res.status().as_u16();
                let wait = retry_after(&res);
                match res.bytes().await {
                    Ok(_) => (Ok(status), wait),
                    Err(e) => (Err(e.to_string()), None),
                }
            }
            Err(e) => (Err(e.to_string()), None),
        };
        let took = started.elapsed().as_secs_f64();
        let refused = matches!(status, Ok(503));
        {
            let mut s = stats.lock().unwrap_or_else(|e| e.into_inner());
            if status.as_ref().is_ok_and(|s| *s == 200) {
                let e = s.by_kind.entry(kind.label).or_default();
                e.0 += 1;
                e.1 += took;
            }
            s.record(0.0, took, status);
        }
        if stop.load(Ordering::Relaxed) {
            break;
        }
        i += 1;
        // A refused client waits as the server asks before it retries (a quarter second without a
        // Retry-After).
        if refused {
            let pause = wait.unwrap_or(Duration::from_millis(250));
            let until = Instant::now() + pause;
            while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// The workflow every chat client runs: three steps on its 10k-row CSV.
fn workflow(run_async: bool) -> Value {
    json!({"async": run_async, "steps": [
        {"operation": "csv/convert-to-excel", "arguments": {"sheet_name": "Rows"}},
        {"operation": "excel/search", "arguments": {"conditions": [
            {"column": "amount", "operator": "greater_than", "value": 5000}], "output_format": "excel"}},
        {"operation": "normalization/apply", "arguments": {"normalizations": [{"column": "name", "type": "uppercase"}]}}
    ]})
}

/// A conversation holding the 10k-row CSV, or `None` if the server refused.
async fn conversation_with_csv(client: &reqwest::Client, rest: &str, f: &Fixtures) -> Option<String> {
    let res = client.post(format!("{rest}/chat/workflows")).send().await.ok()?;
    let body: Value = res.json().await.ok()?;
    let id = body["data"]["chat_id"].as_str()?.to_string();
    let form = upload_form("rows.csv", &f.csv_10k, &[]);
    let res = client.post(format!("{rest}/chat/workflows/{id}/upload")).multipart(form).send().await.ok()?;
    res.status().is_success().then_some(id)
}

/// Chat workflows with a WebSocket listener; counts events and `seq` gaps.
struct ChatTotals {
    events: AtomicU64,
    gaps: AtomicU64,
    runs_done: AtomicU64,
}

async fn chat_client(
    rest: String,
    ws: String,
    f: Arc<Fixtures>,
    stats: Shared,
    totals: Arc<ChatTotals>,
    stop: Arc<AtomicBool>,
) {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(600)).build().unwrap_or_default();
    let Some(chat) = conversation_with_csv(&client, &rest, &f).await else {
        *stats.lock().unwrap_or_else(|e| e.into_inner()).errors.entry("setup".into()).or_default() += 1;
        return;
    };
    let Ok((socket, _)) = tokio_tungstenite::connect_async(format!("{ws}/chat/{chat}")).await else {
        *stats.lock().unwrap_or_else(|e| e.into_inner()).errors.entry("ws_connect".into()).or_default() += 1;
        return;
    };
    let (_sink, mut stream) = socket.split();
    // The listener: every chat-scoped event's seq must follow the previous one.
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let t = totals.clone();
    let listener = tokio::spawn(async move {
        let mut last: Option<u64> = None;
        while let Some(Ok(msg)) = stream.next().await {
            let Message::Text(text) = msg else { continue };
            let Ok(v) = serde_json::from_str::<Value>(&text) else { continue };
            let Some(seq) = v.get("seq").and_then(Value::as_u64) else { continue };
            t.events.fetch_add(1, Ordering::Relaxed);
            if let Some(prev) = last {
                if seq > prev + 1 {
                    t.gaps.fetch_add(seq - prev - 1, Ordering::Relaxed);
                }
            }
            last = Some(last.map_or(seq, |p| p.max(seq)));
            if matches!(v["type"].as_str(), Some("workflow_completed" | "workflow_failed")) {
                let _ = done_tx.send(());
            }
        }
    });
    let steps = workflow(true);
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let res = client.post(format!("{rest}/chat/workflows/{chat}/execute")).json(&steps).send().await;
        let status = match res {
            Ok(r) => r.status().as_u16(),
            Err(e) => {
                stats.lock().unwrap_or_else(|e| e.into_inner()).record(0.0, 0.0, Err(e.to_string()));
                continue;
            }
        };
        if status != 202 {
            stats.lock().unwrap_or_else(|e| e.into_inner()).record(0.0, 0.0, Ok(status));
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        // The run ends with its terminal event on the socket.
        let finished = tokio::time::timeout(Duration::from_secs(600), done_rx.recv()).await;
        let took = started.elapsed().as_secs_f64();
        let outcome =
            if matches!(finished, Ok(Some(()))) { Ok(200) } else { Err("no terminal event".into()) };
        stats.lock().unwrap_or_else(|e| e.into_inner()).record(0.0, took, outcome);
        totals.runs_done.fetch_add(1, Ordering::Relaxed);
    }
    listener.abort();
}

fn summary(name: &str, s: &ClassStats, wall: f64) {
    let mut l = s.latencies.clone();
    l.sort_by(|a, b| a.total_cmp(b));
    let errors: Vec<String> = s.errors.iter().map(|(k, v)| format!("{k}:{v}")).collect();
    println!(
        "{name:<6} done {:>6}  ({:>7.2}/s)  p50 {:>8.1} ms  p99 {:>8.1} ms  max {:>8.1} ms  errors [{}]",
        l.len(),
        l.len() as f64 / wall,
        percentile(&l, 50.0) * 1000.0,
        percentile(&l, 99.0) * 1000.0,
        l.last().copied().unwrap_or(0.0) * 1000.0,
        errors.join(" ")
    );
}

/// The light clients alone, at the same pace, for `--light-reference-secs`.
async fn light_reference(a: &Args, f: Arc<Fixtures>, lane: &Handle) -> ClassStats {
    println!("light reference: {} light clients alone for {} s", a.light, a.light_reference.as_secs());
    let stats = Shared::default();
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..a.light)
        .map(|n| {
            let (rest, f, stats, stop) = (a.rest.clone(), f.clone(), stats.clone(), stop.clone());
            lane.spawn(light_client(
                rest,
                f,
                stats,
                stop,
                t0,
                n,
                Pace { interval: a.light_interval, clients: a.light },
            ))
        })
        .collect();
    tokio::time::sleep(a.light_reference).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let mut taken = stats.lock().unwrap_or_else(|e| e.into_inner());
    std::mem::take(&mut *taken)
}

/// p50/p99 per light request kind.
fn light_kinds(s: &ClassStats) {
    for (kind, latencies) in &s.light_kinds {
        let mut l = latencies.clone();
        l.sort_by(|a, b| a.total_cmp(b));
        println!(
            "  {kind:<14} done {:>6}  p50 {:>7.1} ms  p99 {:>7.1} ms  max {:>7.1} ms",
            l.len(),
            percentile(&l, 50.0) * 1000.0,
            percentile(&l, 99.0) * 1000.0,
            l.last().copied().unwrap_or(0.0) * 1000.0
        );
    }
}

/// The p99 of every 10 s window in time order, as (window start in seconds, p99): light latency
/// "throughout", not only on average.
fn window_p99s(timeline: &[(f64, f64)]) -> Vec<(usize, f64)> {
    let mut windows: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    for (at, took) in timeline {
        windows.entry((*at / 10.0) as u64).or_default().push(*took);
    }
    windows
        .into_iter()
        .map(|(w, mut v)| {
            v.sort_by(|a, b| a.total_cmp(b));
            (w as usize * 10, percentile(&v, 99.0))
        })
        .collect()
}

/// Samples the server's RSS every 200 ms until stopped; returns the highest VmRSS seen (KiB).
fn spawn_rss_sampler(pid: Option<u32>, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut peak = 0;
        while !stop.load(Ordering::Relaxed) {
            if let Some(kib) = pid.and_then(|p| status_kib(p, "VmRSS:")) {
                peak = peak.max(kib);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        peak
    })
}

fn server_report(pid: Option<u32>, cpu_before: Option<f64>, sampled_peak_kib: u64, wall: f64) {
    let Some(pid) = pid else {
        println!("server: no --pid given, no RSS/CPU figures");
        return;
    };
    let hwm = status_kib(pid, "VmHWM:").unwrap_or(0);
    let rss = status_kib(pid, "VmRSS:").unwrap_or(0);
    let cpu = match (cpu_before, cpu_secs(pid)) {
        (Some(a), Some(b)) => b - a,
        _ => 0.0,
    };
    println!(
        "server: peak RSS (VmHWM since start) {:.0} MiB, highest sampled VmRSS {:.0} MiB, now {:.0} MiB; \
         CPU {:.1} s over {:.0} s ({:.2} cores)",
        hwm as f64 / 1024.0,
        sampled_peak_kib as f64 / 1024.0,
        rss as f64 / 1024.0,
        cpu,
        wall,
        cpu / wall.max(0.001)
    );
}

async fn processing_snapshot(client: &reqwest::Client, rest: &str) -> Value {
    match client.get(format!("{rest}/health")).send().await {
        Ok(res) => res.json::<Value>().await.map(|v| v["data"]["processing"].clone()).unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

/// The light requests as the server's latency histogram labels them (method, route).
const LIGHT_ROUTES: [(&str, &str); 3] =
    [("GET", "/api/v1/health"), ("POST", "/api/v1/csv/info"), ("GET", "/api/v1/chat/workflows")];

/// Cumulative bucket counts of the server's `http_request_duration` per light route: (upper bound in
/// seconds, count) in the order `/metrics` lists them.
type ServerLatency = BTreeMap<&'static str, Vec<(f64, u64)>>;

/// The server's own handling time of the light routes so far (from `/metrics`, empty if unreadable).
async fn server_latency(client: &reqwest::Client, rest: &str) -> ServerLatency {
    let origin = rest.find("/api/").map_or(rest, |i| &rest[..i]);
    let text = match client.get(format!("{origin}/metrics")).send().await {
        Ok(res) => res.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    let mut out = ServerLatency::new();
    for line in text.lines().filter(|l| l.starts_with("oxcelize_http_request_duration_seconds_bucket{")) {
        let labelled = |(method, route): &&(&str, &str)| {
            line.contains(&format!("method=\"{method}\"")) && line.contains(&format!("route=\"{route}\""))
        };
        let Some((_, route)) = LIGHT_ROUTES.iter().find(labelled) else { continue };
        let le = line.split("le=\"").nth(1).and_then(|t| t.split('"').next());
        let le = match le {
            Some("+Inf") => f64::INFINITY,
            Some(v) => v.parse().unwrap_or(f64::INFINITY),
            None => continue,
        };
        let count = line.rsplit(' ').next().and_then(|c| c.parse().ok()).unwrap_or(0);
        out.entry(*route).or_default().push((le, count));
    }
    out
}

/// Per light route, what the server measured between two readings: requests, and the upper bounds (in
/// seconds) of the buckets that hold 99 % and all of them. Time outside the handler (the kernel, this
/// tool) is not in it.
fn server_latency_between(
    before: &ServerLatency,
    after: &ServerLatency,
) -> Vec<(&'static str, u64, f64, f64)> {
    let mut out = Vec::new();
    for (route, buckets) in after {
        let earlier =
            |le: f64| before.get(route).and_then(|b| b.iter().find(|(l, _)| *l == le)).map_or(0, |(_, c)| *c);
        let counts: Vec<(f64, u64)> =
            buckets.iter().map(|(le, c)| (*le, c.saturating_sub(earlier(*le)))).collect();
        let total = counts.last().map_or(0, |(_, c)| *c);
        if total == 0 {
            continue;
        }
        let within = |share: f64| {
            counts.iter().find(|(_, c)| *c as f64 >= share * total as f64).map_or(f64::INFINITY, |(l, _)| *l)
        };
        out.push((*route, total, within(0.99), within(1.0)));
    }
    out
}

fn bucket_ms(le: f64) -> String {
    if le.is_finite() {
        format!("{:.0}", le * 1000.0)
    } else {
        "inf".into()
    }
}

fn server_latency_report(before: &ServerLatency, after: &ServerLatency) {
    for (route, total, p99, all) in server_latency_between(before, after) {
        println!(
            "  server-side {route:<24} {total:>6} requests  99 % within {} ms  all within {} ms",
            bucket_ms(p99),
            bucket_ms(all)
        );
    }
}

/// The same per 10 s window of the mix (readings taken every 10 s): the 99 % bound of each route.
fn server_window_report(readings: &[ServerLatency]) {
    let mut lines: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (i, pair) in readings.windows(2).enumerate() {
        for (route, _, p99, _) in server_latency_between(&pair[0], &pair[1]) {
            lines.entry(route).or_default().push(format!("{}s:{}", i * 10, bucket_ms(p99)));
        }
    }
    for (route, windows) in lines {
        println!("  server-side {route} 99 % bound per 10 s window (ms): {}", windows.join(" "));
    }
}

/// The label of one chat workflow run in the baseline and the throughput comparison.
const CHAT_RUN: &str = "chat_workflow_run";

/// Each heavy kind once, then one chat workflow run, one after another: seconds per kind.
async fn sequential_baseline(
    rest: &str,
    kinds: &[HeavyKind],
    f: &Fixtures,
    pid: Option<u32>,
) -> BTreeMap<&'static str, f64> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(600)).build().unwrap_or_default();
    let mut out = BTreeMap::new();
    let report = |label: &str, took: f64, status: &Result<u16, String>, input: usize| {
        // VmHWM only grows: a rise after a request is that request's peak.
        let hwm = pid.and_then(|p| status_kib(p, "VmHWM:")).unwrap_or(0);
        println!(
            "baseline {label:<18} {took:>7.2} s  status {status:?}  input {:.1} MiB  server VmHWM after it {:.0} MiB",
            input as f64 / 1048576.0,
            hwm as f64 / 1024.0
        );
    };
    for kind in kinds {
        let started = Instant::now();
        let req = client.post(format!("{rest}{}", kind.path)).multipart(upload_form(
            kind.file_name,
            &kind.bytes,
            &kind.fields,
        ));
        let status = send(req).await;
        let took = started.elapsed().as_secs_f64();
        report(kind.label, took, &status, kind.bytes.len());
        out.insert(kind.label, took);
    }
    // The chat clients' work: the same three steps, run synchronously (the answer comes when they end).
    if let Some(chat) = conversation_with_csv(&client, rest, f).await {
        let started = Instant::now();
        let req = client.post(format!("{rest}/chat/workflows/{chat}/execute")).json(&workflow(false));
        let status = send(req).await;
        let took = started.elapsed().as_secs_f64();
        report(CHAT_RUN, took, &status, f.csv_10k.len());
        out.insert(CHAT_RUN, took);
    } else {
        println!("baseline {CHAT_RUN}: could not create the conversation");
    }
    out
}

async fn soak(a: &Args, f: Arc<Fixtures>, lane: &Handle) {
    let kinds = Arc::new(heavy_kinds(&f));
    let baseline =
        if a.baseline { Some(sequential_baseline(&a.rest, &kinds, &f, a.pid).await) } else { None };
    let reference = if a.light > 0 && !a.light_reference.is_zero() {
        Some(light_reference(a, f.clone(), lane).await)
    } else {
        None
    };
    let stop = Arc::new(AtomicBool::new(false));
    let (light, heavy, chat) = (Shared::default(), Shared::default(), Shared::default());
    let totals = Arc::new(ChatTotals {
        events: AtomicU64::new(0),
        gaps: AtomicU64::new(0),
        runs_done: AtomicU64::new(0),
    });
    let probe = reqwest::Client::new();
    let latency_before = server_latency(&probe, &a.rest).await;
    let cpu_before = a.pid.and_then(cpu_secs);
    let sampler_stop = Arc::new(AtomicBool::new(false));
    let sampler = spawn_rss_sampler(a.pid, sampler_stop.clone());
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for n in 0..a.light {
        let (rest, f, stats, stop) = (a.rest.clone(), f.clone(), light.clone(), stop.clone());
        tasks.push(lane.spawn(light_client(
            rest,
            f,
            stats,
            stop,
            t0,
            n,
            Pace { interval: a.light_interval, clients: a.light },
        )));
    }
    for n in 0..a.heavy {
        tasks.push(tokio::spawn(heavy_client(a.rest.clone(), kinds.clone(), heavy.clone(), stop.clone(), n)));
    }
    for _ in 0..a.chat {
        let args = (a.rest.clone(), a.ws.clone(), f.clone(), chat.clone(), totals.clone(), stop.clone());
        tasks.push(tokio::spawn(chat_client(args.0, args.1, args.2, args.3, args.4, args.5)));
    }
    println!(
        "soak: {} light (one request every {} ms each) + {} heavy + {} chat clients for {} s ({} heavy kinds)",
        a.light,
        a.light_interval.as_millis(),
        a.heavy,
        a.chat,
        a.duration.as_secs(),
        kinds.len()
    );
    let mut max_running = 0;
    let mut max_queued = 0;
    let mut readings = vec![latency_before.clone()];
    while t0.elapsed() < a.duration {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if t0.elapsed() >= Duration::from_secs(10 * readings.len() as u64) {
            readings.push(server_latency(&probe, &a.rest).await);
        }
        let p = processing_snapshot(&probe, &a.rest).await;
        max_running = max_running.max(p["running"].as_u64().unwrap_or(0));
        max_queued = max_queued.max(p["queued"].as_u64().unwrap_or(0));
    }
    stop.store(true, Ordering::Relaxed);
    let load_wall = t0.elapsed().as_secs_f64();
    // In-flight requests finish (bounded by the clients' timeouts).
    for t in tasks {
        let _ = t.await;
    }
    let wall = t0.elapsed().as_secs_f64();
    sampler_stop.store(true, Ordering::Relaxed);
    let sampled_peak = sampler.await.unwrap_or(0);
    println!("load for {load_wall:.0} s, all clients done after {wall:.0} s");
    let take = |s: &Shared| std::mem::take(&mut *s.lock().unwrap_or_else(|e| e.into_inner()));
    let (light, heavy, chat) = (take(&light), take(&heavy), take(&chat));
    if let Some(reference) = &reference {
        summary("light alone (reference)", reference, a.light_reference.as_secs_f64());
        light_kinds(reference);
    }
    summary("light", &light, load_wall);
    light_kinds(&light);
    let windows = window_p99s(&light.timeline);
    let (at, worst) = windows.iter().copied().max_by(|a, b| a.1.total_cmp(&b.1)).unwrap_or((0, 0.0));
    println!("light  worst 10 s window p99 {:.1} ms (window starting at {at} s)", worst * 1000.0);
    let over = windows.iter().filter(|(_, p)| *p >= 0.050).count();
    let listed: Vec<String> = windows.iter().map(|(at, p)| format!("{at}s:{:.0}", p * 1000.0)).collect();
    println!(
        "light  p99 per 10 s window (ms), {over} of {} at or over 50 ms: {}",
        windows.len(),
        listed.join(" ")
    );
    server_latency_report(&latency_before, &server_latency(&probe, &a.rest).await);
    server_window_report(&readings);
    summary("heavy", &heavy, load_wall);
    for (kind, (n, secs)) in &heavy.by_kind {
        println!("  {kind:<18} done {n:>4}  mean {:>7.2} s", secs / *n as f64);
    }
    summary("chat", &chat, load_wall);
    println!(
        "chat   runs {}  events received {}  seq gaps (lost events) {}",
        totals.runs_done.load(Ordering::Relaxed),
        totals.events.load(Ordering::Relaxed),
        totals.gaps.load(Ordering::Relaxed)
    );
    let p = processing_snapshot(&probe, &a.rest).await;
    println!("processing: max running {max_running}, max queued {max_queued}; at end {p}");
    if let Some(base) = baseline {
        // The work done, if it had run one request (or workflow run) after another at baseline speed.
        let chat_runs = chat.latencies.len() as u64;
        let done = heavy.by_kind.iter().map(|(k, (n, _))| (*k, *n)).chain([(CHAT_RUN, chat_runs)]);
        let mut sequential = 0.0;
        for (kind, n) in done {
            match base.get(kind) {
                Some(secs) => sequential += secs * n as f64,
                None if n > 0 => println!("heavy throughput: {kind} has no baseline, left out"),
                None => {}
            }
        }
        println!(
            "heavy throughput: the completed heavy requests and workflow runs take {sequential:.1} s one after \
             another at baseline speed; the soak did them in {wall:.1} s ({:.0} % of sequential throughput)",
            100.0 * sequential / wall
        );
    }
    server_report(a.pid, cpu_before, sampled_peak, wall);
}

async fn burst(a: &Args, f: Arc<Fixtures>, n: usize, lane: &Handle) {
    let Some(csv) = f.xlsx_1m.clone() else {
        eprintln!("--burst needs the 1M-row file (drop --skip-1m)");
        return;
    };
    let normalize = json!([{"column_name": "name", "normalization_type": "uppercase"}]).to_string();
    if a.warm {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(900)).build().unwrap_or_default();
        let form = upload_form("rows_1m.xlsx", &csv, &[("normalizations", normalize.clone())]);
        let started = Instant::now();
        let status = send(client.post(format!("{}/normalization/apply", a.rest)).multipart(form)).await;
        println!(
            "warm-up: one normalization alone, status {status:?} in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    let latency_before = server_latency(&reqwest::Client::new(), &a.rest).await;
    let cpu_before = a.pid.and_then(cpu_secs);
    let sampler_stop = Arc::new(AtomicBool::new(false));
    let sampler = spawn_rss_sampler(a.pid, sampler_stop.clone());
    let stop = Arc::new(AtomicBool::new(false));
    // Health every 100 ms during the burst.
    let health = {
        let (rest, stop) = (a.rest.clone(), stop.clone());
        lane.spawn(async move {
            let client = reqwest::Client::new();
            let mut lat = Vec::new();
            let mut failures = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                match send(client.get(format!("{rest}/health"))).await {
                    Ok(200) => lat.push(started.elapsed().as_secs_f64()),
                    _ => failures += 1,
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (lat, failures)
        })
    };
    let t0 = Instant::now();
    let mut uploads = Vec::new();
    for _ in 0..n {
        let (rest, csv, normalize) = (a.rest.clone(), csv.clone(), normalize.clone());
        uploads.push(tokio::spawn(async move {
            let client =
                reqwest::Client::builder().timeout(Duration::from_secs(900)).build().unwrap_or_default();
            let form = upload_form("rows_1m.xlsx", &csv, &[("normalizations", normalize)]);
            let started = Instant::now();
            let status = send(client.post(format!("{rest}/normalization/apply")).multipart(form)).await;
            (status, started.elapsed().as_secs_f64())
        }));
    }
    let mut by_status: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for u in uploads {
        if let Ok((status, took)) = u.await {
            let key = status.map(|s| s.to_string()).unwrap_or_else(|e| format!("net({e})"));
            by_status.entry(key).or_default().push(took);
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let (mut lat, failures) = health.await.unwrap_or_default();
    sampler_stop.store(true, Ordering::Relaxed);
    let sampled_peak = sampler.await.unwrap_or(0);
    println!(
        "burst: {n} simultaneous 1M-row workbook normalizations ({} MiB each), all answered after {wall:.1} s",
        csv.len() / (1 << 20)
    );
    for (status, mut took) in by_status {
        took.sort_by(|a, b| a.total_cmp(b));
        println!(
            "  status {status:<6} {:>3} requests  answer time min {:.2} s  p50 {:.2} s  max {:.2} s",
            took.len(),
            took[0],
            percentile(&took, 50.0),
            took[took.len() - 1]
        );
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    println!(
        "  health during the burst: {} answers, p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms, failures {failures}",
        lat.len(),
        percentile(&lat, 50.0) * 1000.0,
        percentile(&lat, 99.0) * 1000.0,
        lat.last().copied().unwrap_or(0.0) * 1000.0
    );
    let probe = reqwest::Client::new();
    server_latency_report(&latency_before, &server_latency(&probe, &a.rest).await);
    println!("  processing at end: {}", processing_snapshot(&probe, &a.rest).await);
    server_report(a.pid, cpu_before, sampled_peak, wall);
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("soak: {e}");
            std::process::exit(2);
        }
    };
    let dir = args.workdir.clone().unwrap_or_else(|| std::env::temp_dir().join("oxcelize-soak"));
    let f = match fixtures(&dir, args.skip_1m) {
        Ok(f) => Arc::new(f),
        Err(e) => {
            eprintln!("soak: fixtures: {e}");
            std::process::exit(1);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("soak: runtime: {e}");
            std::process::exit(1);
        }
    };
    // The measured light clients (and the burst's health poll) get a thread of their own: on the load
    // runtime they would wait behind the tasks pushing 80 MiB uploads, and their latency would include
    // this tool's own queueing rather than only the server's.
    let light_lane = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("soak-light")
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("soak: light runtime: {e}");
            std::process::exit(1);
        }
    };
    let lane = light_lane.handle().clone();
    runtime.block_on(async {
        match args.burst {
            Some(n) => burst(&args, f, n, &lane).await,
            None => soak(&args, f, &lane).await,
        }
    });
}
