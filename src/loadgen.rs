//! Shared pieces of the load tools (`loadgen` feature): fixture files, readings of a server process from
//! /proc, and latency statistics.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

const CITIES: [&str; 8] = ["Oslo", "Hà Nội", "Lima", "Porto", "Kyiv", "Quito", "Accra", "Perth"];
pub const COLUMNS: [&str; 10] =
    ["id", "name", "code", "amount", "date", "flag", "note", "city", "qty", "status"];

/// Row `i` of the generated table: numbers, dates, booleans, text and blanks.
pub fn row_values(i: usize) -> [String; 10] {
    let day =
        chrono::NaiveDate::from_ymd_opt(2024, 1, 1).unwrap_or_default() + chrono::Days::new((i % 730) as u64);
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

/// A CSV of `rows` generated rows (plus the header).
pub fn write_csv(path: &Path, rows: usize) -> std::io::Result<()> {
    let mut w = csv::Writer::from_writer(BufWriter::new(File::create(path)?));
    w.write_record(COLUMNS)?;
    for i in 0..rows {
        w.write_record(row_values(i))?;
    }
    w.flush()
}

/// A workbook of `rows` generated rows with the first four columns typed (numbers and text).
pub fn write_xlsx(path: &Path, rows: usize) -> Result<(), rust_xlsxwriter::XlsxError> {
    let mut wb = rust_xlsxwriter::Workbook::new();
    let ws = wb.add_worksheet_with_constant_memory()?;
    for (c, h) in COLUMNS.iter().take(4).enumerate() {
        ws.write_string(0, c as u16, *h)?;
    }
    for i in 0..rows {
        let r = (i + 1) as u32;
        let v = row_values(i);
        ws.write_number(r, 0, (i + 1) as f64)?;
        ws.write_string(r, 1, &v[1])?;
        ws.write_string(r, 2, &v[2])?;
        ws.write_number(r, 3, v[3].parse::<f64>().unwrap_or(0.0))?;
    }
    wb.save(path)
}

/// User + system CPU seconds of a process (clock ticks assumed 100 Hz, the Linux default).
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// A `Vm…:` line of /proc/PID/status in KiB (`VmRSS:`, `VmHWM:`).
pub fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Only loopback targets are allowed: the tools are for a server on this machine.
pub fn require_loopback(url: &str) -> Result<(), String> {
    let host = url.split("://").nth(1).unwrap_or("").split(['/', ':']).next().unwrap_or("");
    if host == "127.0.0.1" || host == "localhost" {
        Ok(())
    } else {
        Err(format!("{url}: only 127.0.0.1 is allowed"))
    }
}
