//! WebSocket load generator (dev tool): opens N clients on one or more chats of a running oxcelize, runs
//! workflows through REST, and reports per-client delivery (received/expected), the first-to-last receipt
//! spread of every event across the clients of its chat (p50/p99/max), the server's RSS and the number of
//! connections held. Every loop is bounded in count and time; all traffic goes to 127.0.0.1.
//!
//! `ws_load --rest http://127.0.0.1:15050/api/v1 --ws ws://127.0.0.1:15051 --clients 1000 [--chats 1]
//!  [--runs 3] [--pid SERVER_PID] [--connect-concurrency 200] [--timeout-secs 300] [--per-event] [--threads 1]`
//!
//! Cluster runs: `--rest`, `--ws` and `--pid` take comma-separated lists, one entry per node. Client `i`
//! listens on node `i % nodes`, workflow run `r` is submitted through node `r % nodes`, and RSS and CPU are
//! reported per node.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use oxcelize::loadgen::{cpu_secs, status_kib};
use serde_json::{json, Value};
use tokio::sync::{watch, Semaphore};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

const SAMPLE_CSV: &str = "customer_id,amount,status,date\nCUST001,1500,active,2026-01-15\n\
CUST002,500,inactive,2026-01-16\nCUST003,2000,active,2026-01-17\nCUST004,800,active,2026-01-18\n\
CUST005,300,inactive,2026-01-19\n";

struct Args {
    rest: Vec<String>,
    ws: Vec<String>,
    clients: usize,
    chats: usize,
    runs: usize,
    pids: Vec<u32>,
    connect_concurrency: usize,
    timeout: Duration,
    per_event: bool,
    threads: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        rest: vec!["http://127.0.0.1:15050/api/v1".into()],
        ws: vec!["ws://127.0.0.1:15051".into()],
        clients: 100,
        chats: 1,
        runs: 3,
        pids: Vec::new(),
        connect_concurrency: 200,
        timeout: Duration::from_secs(300),
        per_event: false,
        threads: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--rest" => a.rest = list(&value()?),
            "--ws" => a.ws = list(&value()?),
            "--clients" => a.clients = value()?.parse().map_err(|e| format!("--clients: {e}"))?,
            "--chats" => a.chats = value()?.parse().map_err(|e| format!("--chats: {e}"))?,
            "--runs" => a.runs = value()?.parse().map_err(|e| format!("--runs: {e}"))?,
            "--pid" => {
                a.pids = list(&value()?)
                    .iter()
                    .map(|p| p.parse().map_err(|e| format!("--pid: {e}")))
                    .collect::<Result<_, _>>()?
            }
            "--connect-concurrency" => {
                a.connect_concurrency = value()?.parse().map_err(|e| format!("--connect-concurrency: {e}"))?
            }
            "--timeout-secs" => {
                a.timeout = Duration::from_secs(value()?.parse().map_err(|e| format!("--timeout-secs: {e}"))?)
            }
            "--per-event" => a.per_event = true,
            "--threads" => a.threads = value()?.parse().map_err(|e| format!("--threads: {e}"))?,
            "--help" | "-h" => return Err("usage: see the module documentation of src/bin/ws_load.rs".into()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    for url in a.rest.iter().chain(&a.ws) {
        let host = url.split("://").nth(1).unwrap_or("").split(['/', ':']).next().unwrap_or("");
        if host != "127.0.0.1" && host != "localhost" {
            return Err(format!("{url}: only 127.0.0.1 is allowed"));
        }
    }
    if a.rest.is_empty() || a.ws.is_empty() {
        return Err("--rest and --ws need at least one URL".into());
    }
    if a.threads == 0 || a.threads > 64 {
        return Err("--threads must be 1..=64".into());
    }
    if a.clients == 0 || a.chats == 0 || a.runs == 0 || a.clients > 100_000 || a.runs > 1000 {
        return Err("clients (1..=100000), chats and runs (1..=1000) must be positive".into());
    }
    Ok(a)
}

/// The non-empty entries of a comma-separated list.
fn list(value: &str) -> Vec<String> {
    value.split(',').map(str::trim).filter(|v| !v.is_empty()).map(String::from).collect()
}

/// Raises the soft open-file limit to the hard limit (each client is one socket).
fn raise_nofile() -> u64 {
    // SAFETY: getrlimit/setrlimit only read and write the struct passed by pointer.
    unsafe {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every target
        let cur = lim.rlim_cur as u64;
        cur
    }
}

/// The top-level `"seq":N` of an event (the last occurrence: nested objects never carry one).
fn scan_seq(text: &str) -> Option<u64> {
    let at = text.rfind("\"seq\":")? + 6;
    let digits: String = text[at..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The VmRSS of a process in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS:")
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// What one client saw: chat index, `seq` → receipt time.
struct ClientLog {
    chat: usize,
    received: BTreeMap<u64, Instant>,
    connected: bool,
    baseline: u64,
}

async fn run_client(
    url: String,
    chat: usize,
    connect_gate: Arc<Semaphore>,
    mut target: watch::Receiver<Option<u64>>,
    deadline: tokio::time::Instant,
    ready: tokio::sync::mpsc::Sender<bool>,
) -> ClientLog {
    let mut log = ClientLog { chat, received: BTreeMap::new(), connected: false, baseline: 0 };
    let connect = {
        let _permit = connect_gate.acquire().await;
        // A small read buffer: tungstenite zero-fills its whole read buffer before every read, and with the
        // 128 KiB default that memset was a third of the generator's CPU (perf), taken from the server.
        let config = WebSocketConfig::default().read_buffer_size(4096);
        tokio::time::timeout_at(
            deadline,
            tokio_tungstenite::connect_async_with_config(url, Some(config), true),
        )
        .await
    };
    let mut ws = match connect {
        Ok(Ok((ws, _))) => ws,
        _ => {
            let _ = ready.send(false).await;
            return log;
        }
    };
    // The first frame is `connected`, carrying the chat's current seq.
    if let Ok(Some(Ok(Message::Text(t)))) = tokio::time::timeout_at(deadline, ws.next()).await {
        let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
        log.connected = v["type"] == "connected";
        log.baseline = v["last_seq"].as_u64().unwrap_or(0);
    }
    let _ = ready.send(log.connected).await;
    if !log.connected {
        return log;
    }
    // One timer for the whole wait (not one per message): the generator shares the machine with the
    // server, so its own per-message cost shows up in the spread it measures.
    let expired = tokio::time::sleep_until(deadline);
    tokio::pin!(expired);
    let mut wanted = *target.borrow();
    loop {
        if wanted.is_some_and(|t| log.received.keys().next_back().is_some_and(|last| *last >= t)) {
            break;
        }
        tokio::select! {
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(t))) => {
                    let now = Instant::now();
                    // A scan instead of a full JSON parse keeps the generator's own CPU use (and its effect on
                    // the measured spread) low; the server always writes `"seq":N` unspaced.
                    if let Some(seq) = scan_seq(t.as_str()) {
                        log.received.entry(seq).or_insert(now);
                    }
                }
                Some(Ok(_)) => {}
                _ => break,
            },
            changed = target.changed() => {
                if changed.is_err() {
                    break;
                }
                wanted = *target.borrow();
            }
            _ = &mut expired => break,
        }
    }
    let _ = ws.close(None).await;
    log
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("ws_load: {e}");
            std::process::exit(2);
        }
    };
    // One thread by default: the generator shares the machine with the server it measures, and every
    // core it takes is one the server cannot use.
    let runtime = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()?
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(args.threads).enable_all().build()?
    };
    runtime.block_on(run(args))
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let nofile = raise_nofile();
    println!("open-file limit: {nofile}");
    let deadline = tokio::time::Instant::now() + args.timeout;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(120)).build()?;

    let mut chats = Vec::new();
    for _ in 0..args.chats {
        let v: Value = http.post(format!("{}/chat/workflows", args.rest[0])).send().await?.json().await?;
        let id = v["data"]["chat_id"].as_str().ok_or("create failed")?.to_string();
        let part = reqwest::multipart::Part::bytes(SAMPLE_CSV.as_bytes().to_vec()).file_name("sales.csv");
        let form = reqwest::multipart::Form::new().part("file", part);
        http.post(format!("{}/chat/workflows/{id}/upload", args.rest[0])).multipart(form).send().await?;
        chats.push(id);
    }
    let rss_all = |pids: &[u32]| pids.iter().map(|p| rss_kib(*p)).collect::<Vec<_>>();
    let cpu_all = |pids: &[u32]| pids.iter().map(|p| cpu_secs(*p)).collect::<Vec<_>>();
    let rss_before = rss_all(&args.pids);

    let gate = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    type Target = (watch::Sender<Option<u64>>, watch::Receiver<Option<u64>>);
    let targets: Vec<Target> = (0..args.chats).map(|_| watch::channel(None)).collect();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(args.clients.min(10_000));
    let started_connecting = Instant::now();
    let mut handles = Vec::with_capacity(args.clients);
    for i in 0..args.clients {
        let chat = i % args.chats;
        let url = format!("{}/chat/{}", args.ws[i % args.ws.len()], chats[chat]);
        handles.push(tokio::spawn(run_client(
            url,
            chat,
            gate.clone(),
            targets[chat].1.clone(),
            deadline,
            ready_tx.clone(),
        )));
    }
    drop(ready_tx);
    let mut held = 0usize;
    for _ in 0..args.clients {
        match tokio::time::timeout_at(deadline, ready_rx.recv()).await {
            Ok(Some(true)) => held += 1,
            Ok(Some(false)) => {}
            _ => break,
        }
    }
    let connect_secs = started_connecting.elapsed().as_secs_f64();
    let rss_connected = rss_all(&args.pids);
    println!("connections held: {held}/{} (connected in {connect_secs:.2}s)", args.clients);

    // Run the workflows: chats in parallel, runs of one chat one after another.
    let body = json!({"steps": [
        {"operation": "csv/convert-to-excel", "arguments": {"sheet_name": "Sales"}},
        {"operation": "excel/search", "arguments": {"conditions": [{"column": "status", "operator": "equals", "value": "active"}]}},
        {"operation": "normalization/apply", "arguments": {"normalizations": [{"column": "customer_id", "type": "lowercase"}]}}
    ]});
    let runs_started = Instant::now();
    let cpu_before = cpu_all(&args.pids);
    let own_cpu_before = cpu_secs(std::process::id());
    let mut run_tasks = Vec::new();
    for id in chats.clone() {
        let (http, rests, body, runs) = (http.clone(), args.rest.clone(), body.clone(), args.runs);
        run_tasks.push(tokio::spawn(async move {
            for run in 0..runs {
                let rest = &rests[run % rests.len()];
                let res = http.post(format!("{rest}/chat/workflows/{id}/execute")).json(&body).send().await;
                if !res.map(|r| r.status().is_success()).unwrap_or(false) {
                    return false;
                }
            }
            true
        }));
    }
    let mut runs_ok = true;
    for t in run_tasks {
        runs_ok &= t.await.unwrap_or(false);
    }
    let runs_secs = runs_started.elapsed().as_secs_f64();

    // The authoritative event list of each chat (from the persisted log), then tell the clients the last seq.
    let mut expected: HashMap<usize, Vec<u64>> = HashMap::new();
    for (i, id) in chats.iter().enumerate() {
        let mut after = 0u64;
        let mut seqs = Vec::new();
        for _ in 0..10_000 {
            let v: Value = http
                .get(format!("{}/chat/workflows/{id}/events?after_seq={after}&limit=1000", args.rest[0]))
                .send()
                .await?
                .json()
                .await?;
            let page: Vec<u64> = v["data"]["events"]
                .as_array()
                .map(|a| a.iter().filter_map(|e| e["seq"].as_u64()).collect())
                .unwrap_or_default();
            let Some(last) = page.last().copied() else { break };
            after = last;
            seqs.extend(page);
        }
        let _ = targets[i].0.send(seqs.last().copied());
        expected.insert(i, seqs);
    }

    let mut logs = Vec::with_capacity(handles.len());
    for h in handles {
        if let Ok(log) = h.await {
            logs.push(log);
        }
    }
    let rss_after = rss_all(&args.pids);
    let server_cpu: Vec<Option<f64>> =
        cpu_all(&args.pids).into_iter().zip(cpu_before).map(|(a, b)| a.zip(b).map(|(a, b)| a - b)).collect();
    let own_cpu = cpu_secs(std::process::id()).zip(own_cpu_before).map(|(a, b)| a - b);

    // Delivery per client and receipt spread per event.
    let mut complete = 0usize;
    let (mut delivered_total, mut expected_total) = (0usize, 0usize);
    let mut min_ratio: f64 = 1.0;
    let mut by_event: HashMap<(usize, u64), (Instant, Instant)> = HashMap::new();
    for log in logs.iter().filter(|l| l.connected) {
        let want: Vec<u64> = expected[&log.chat].iter().copied().filter(|s| *s > log.baseline).collect();
        let got = want.iter().filter(|s| log.received.contains_key(s)).count();
        delivered_total += got;
        expected_total += want.len();
        if got == want.len() {
            complete += 1;
        }
        if !want.is_empty() {
            min_ratio = min_ratio.min(got as f64 / want.len() as f64);
        }
        for (seq, at) in &log.received {
            let e = by_event.entry((log.chat, *seq)).or_insert((*at, *at));
            e.0 = e.0.min(*at);
            e.1 = e.1.max(*at);
        }
    }
    if args.per_event {
        // First and last receipt of every event, relative to the first receipt of the run.
        let origin = by_event.values().map(|(a, _)| *a).min();
        let mut rows: Vec<_> = by_event.iter().collect();
        rows.sort_by_key(|((chat, seq), _)| (*chat, *seq));
        for ((chat, seq), (first, last)) in rows {
            let at = |t: &Instant| origin.map(|o| t.duration_since(o).as_secs_f64() * 1000.0).unwrap_or(0.0);
            println!("chat {chat} seq {seq}: first {:.2} ms, last {:.2} ms", at(first), at(last));
        }
    }
    let mut spreads: Vec<f64> =
        by_event.values().map(|(a, b)| b.duration_since(*a).as_secs_f64() * 1000.0).collect();
    spreads.sort_by(f64::total_cmp);
    println!(
        "workflows: {} run(s) x {} chat(s) in {runs_secs:.2}s, all succeeded: {runs_ok}",
        args.runs, args.chats
    );
    println!(
        "delivery: {delivered_total}/{expected_total} events; clients with every event: {complete}/{held}; worst client ratio {min_ratio:.4}"
    );
    println!(
        "receipt spread over {} events (ms): p50 {:.2}, p99 {:.2}, max {:.2}",
        spreads.len(),
        percentile(&spreads, 50.0),
        percentile(&spreads, 99.0),
        spreads.last().copied().unwrap_or(0.0)
    );
    let kib =
        |v: Option<u64>| v.map(|k| format!("{:.1} MiB", k as f64 / 1024.0)).unwrap_or_else(|| "n/a".into());
    for (node, cpu) in server_cpu.iter().enumerate() {
        if let Some(cpu) = cpu {
            println!("server {node} CPU during runs and delivery: {cpu:.2}s");
        }
    }
    if let Some(cpu) = own_cpu {
        println!("generator CPU during runs and delivery: {cpu:.2}s");
    }
    for node in 0..args.pids.len() {
        println!(
            "server {node} RSS: before connecting {}, connected {}, after the runs {}",
            kib(rss_before[node]),
            kib(rss_connected[node]),
            kib(rss_after[node])
        );
    }
    Ok(())
}
