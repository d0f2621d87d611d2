#!/usr/bin/env python3
"""Step engine figures at 1M rows on a fresh release server (Linux; needs only `requests`).

    cargo build --release --bin oxcelize
    python3 benches/step_engine.py [--rows 1000000] [--trim-interval 5]

Starts target/release/oxcelize in a temporary folder, uploads a generated CSV (10 columns), turns it into a
workbook with a csv/convert-to-excel run, then measures on that workbook:
  * a normalization/apply run: intermediate progress events per second (from the persisted event log),
    RSS before, peak (VmHWM, reset before the run) and 10 s after;
  * cancel latency: a second normalization run is cancelled mid-step; the time from the cancel request to
    the job being recorded `cancelled` (the runner records it only after the stopped step has returned,
    i.e. when the worker thread is free).
`--trim-interval 0` turns the heap trimmer off (app.memory_trim_interval_seconds) for a before/after.
"""

import argparse
import json
import os
import socket
import subprocess
import tempfile
import time

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kb(pid, key="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def write_csv(path, rows):
    with open(path, "w") as f:
        f.write("id,name,city,amount,status,email,phone,date,score,note\n")
        for i in range(rows):
            f.write(
                f"ID{i:07},Name {i},City {i % 97},{i % 1000},{'inactive' if i % 3 == 0 else 'active'},"
                f"User{i}@Example.com,555-{i % 10000:04},2026-01-{i % 28 + 1:02},{i % 100}.5,  note {i % 13}  \n"
            )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--trim-interval", type=int, default=5)
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="step-engine-bench-")
    rest, wsp = free_port(), free_port()
    env = dict(os.environ)
    env.update({
        "OXCELIZE_APP__PORT": str(rest),
        "OXCELIZE_APP__MEMORY_TRIM_INTERVAL_SECONDS": str(args.trim_interval),
        "OXCELIZE_CHAT_WORKFLOWS__WEBSOCKET__PORT": str(wsp),
        "OXCELIZE_CHAT_WORKFLOWS__FILE__MAX_UPLOAD_SIZE_MB": "1000",
        "OXCELIZE_FILE__MAX_FILE_SIZE_MB": "1000",
        "OXCELIZE_LOGGING__LEVEL": "WARNING",
    })
    server = subprocess.Popen(
        [os.path.join(ROOT, "target/release/oxcelize"), "--config", os.path.join(ROOT, "configs/application.yml")],
        cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    api = f"http://127.0.0.1:{rest}/api/v1"
    try:
        for _ in range(100):
            try:
                requests.get(f"{api}/health", timeout=1)
                break
            except requests.RequestException:
                time.sleep(0.1)
        csv_path = os.path.join(work, "big.csv")
        write_csv(csv_path, args.rows)
        chat = requests.post(f"{api}/chat/workflows").json()["data"]["chat_id"]
        with open(csv_path, "rb") as f:
            r = requests.post(f"{api}/chat/workflows/{chat}/upload", files={"file": ("big.csv", f)})
        r.raise_for_status()
        r = requests.post(f"{api}/chat/workflows/{chat}/execute",
                          json={"steps": [{"operation": "csv/convert-to-excel", "arguments": {}}]}, timeout=3600)
        r.raise_for_status()
        workbook = r.json()["data"]["results"][0]["output_file_path"]
        normalize = {"input_file": workbook, "steps": [{"operation": "normalization/apply", "arguments": {
            "normalizations": [{"column": "name", "type": "lowercase"}, {"column": "email", "type": "lowercase"},
                               {"column": "note", "type": "trim_whitespace"}, {"column": "city", "type": "uppercase"}],
            "return_report": False}}]}

        time.sleep(args.trim_interval + 1 if args.trim_interval else 1)
        before = rss_kb(server.pid)
        with open(f"/proc/{server.pid}/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM, so the peak is this run's
        last_seq = requests.get(f"{api}/chat/workflows/{chat}/events?after_seq=0&limit=1000").json()["data"]["last_seq"]
        t0 = time.time()
        r = requests.post(f"{api}/chat/workflows/{chat}/execute", json=normalize, timeout=3600)
        r.raise_for_status()
        duration = time.time() - t0
        peak = rss_kb(server.pid, "VmHWM")
        time.sleep(10)
        after = rss_kb(server.pid)
        events = requests.get(
            f"{api}/chat/workflows/{chat}/events?after_seq={last_seq}&limit=1000").json()["data"]["events"]
        running = [e for e in events if e["type"] == "progress" and e["status"] == "running" and e["progress"] > 0]
        starts = [e for e in events if e["type"] == "progress" and e["progress"] == 0]
        ends = [e for e in events if e["type"] == "progress" and e["progress"] == 100]

        def ts(e):
            from datetime import datetime
            return datetime.fromisoformat(e["timestamp"]).timestamp()

        step_s = ts(ends[0]) - ts(starts[0])
        gaps = [ts(b) - ts(a) for a, b in zip([starts[0]] + running, running + [ends[0]])]
        print(json.dumps({
            "rows": args.rows, "trim_interval_s": args.trim_interval,
            "normalize_run_s": round(duration, 2), "step_s": round(step_s, 2),
            "intermediate_events": len(running),
            "events_per_s": round(len(running) / step_s, 2) if step_s else None,
            "max_gap_s": round(max(gaps), 3), "first_after_s": round(ts(running[0]) - ts(starts[0]), 3) if running else None,
            "last_event": {k: ends[0].get(k) for k in ("rows_processed", "rows_total", "phase")},
            "sample_messages": [e["message"] for e in running[:: max(1, len(running) // 6)]],
            "rss_mb": {"before": before // 1024, "peak": peak // 1024, "after_10s": after // 1024},
        }, indent=1))

        # Cancel latency: a second run, cancelled once its step is well under way.
        normalize["async"] = True
        job = requests.post(f"{api}/chat/workflows/{chat}/execute", json=normalize).json()["data"]["job_id"]
        seq = requests.get(f"{api}/chat/workflows/{chat}/events?after_seq=0&limit=1").json()["data"]["last_seq"]
        while True:
            ev = requests.get(f"{api}/chat/workflows/{chat}/events?after_seq={seq}&limit=1000").json()["data"]["events"]
            mid = [e for e in ev if e["type"] == "progress" and e.get("job_id") == job and e["progress"] >= 30]
            if mid:
                break
            time.sleep(0.05)
        asked = time.time()
        requests.post(f"{api}/chat/workflows/{chat}/jobs/{job}/cancel").raise_for_status()
        while requests.get(f"{api}/chat/workflows/{chat}/jobs/{job}").json()["data"]["status"] != "cancelled":
            time.sleep(0.005)
        print(json.dumps({"cancel_at": mid[0]["message"], "phase": mid[0].get("phase"),
                          "cancel_to_worker_free_ms": round((time.time() - asked) * 1000)}))
    finally:
        server.terminate()
        server.wait(timeout=30)
        subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
