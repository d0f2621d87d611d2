#!/usr/bin/env python3
"""Peak memory of each heavy operation on a fresh release server (Linux; needs only `requests`).

    cargo build --release --bin oxcelize
    python3 benches/rss_per_op.py [--rows 1000000] [--binary target/release/oxcelize] [--only OP,OP]

Generates a 10-column CSV of `--rows` rows and turns it into a workbook once (a setup server's
csv/convert-to-excel). Then, for every operation of the issue's table, starts a new server in a fresh
temporary folder, waits until it is idle, sends ONE request (or one workflow run, or four concurrent
normalizations), and reads the server's VmHWM (peak RSS since start) from /proc/<pid>/status, plus VmRSS
10 s later (the heap trimmer runs every 5 s by default). The client runs in this process, so its memory is
not counted. Prints one JSON line per operation and a Markdown table at the end.

The figures depend on the machine: on a shared machine (other builds running) the times are slow, the
memory figures are not affected.
"""

import argparse
import json
import os
import subprocess
import tempfile
import threading
import time

import requests

# The same generated input and /proc helpers as the step bench (this folder is on sys.path when run).
from step_engine import free_port, rss_kb, write_csv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RULES = [("name", "lowercase"), ("email", "lowercase"), ("note", "trim_whitespace"), ("city", "uppercase")]
CONCURRENT_ENV = {"OXCELIZE_LIMITS__MAX_CONCURRENT_PROCESSING": "4",
                  "OXCELIZE_LIMITS__MAX_PROCESSING_MEMORY_MB": "100000"}
SEARCH = [{"column": "status", "operator": "equals", "value": "active"}]
# Rules that need a whole column (statistics) before they can change a cell, plus one cell-by-cell rule.
WHOLE_COLUMN_RULES = [("amount", "z_score", {}), ("score", "fill_null_values", {"method": "median"}),
                      ("name", "lowercase", {})]
MAPPING = {"Identifier": "id", "Full name": "name", "Town": {"source": "city", "default": "Unknown"},
           "Amount": "amount", "Region": {"default": "EU"}}


class Server:
    """A release server in its own temporary folder, stopped (and its folder removed) on exit."""

    def __init__(self, binary, extra_env=None):
        self.binary = binary
        self.extra_env = extra_env or {}

    def __enter__(self):
        self.work = tempfile.mkdtemp(prefix="rss-per-op-")
        rest, wsp = free_port(), free_port()
        env = dict(os.environ)
        env.update({
            "OXCELIZE_APP__PORT": str(rest),
            "OXCELIZE_CHAT_WORKFLOWS__WEBSOCKET__PORT": str(wsp),
            "OXCELIZE_CHAT_WORKFLOWS__FILE__MAX_UPLOAD_SIZE_MB": "1000",
            "OXCELIZE_FILE__MAX_FILE_SIZE_MB": "1000",
            "OXCELIZE_FILE__MAX_CONCURRENT_UPLOADS_PER_IP": "0",
            # The 1M-row workbook decompresses to more than the default 500 MB guard.
            "OXCELIZE_FILE__MAX_UNCOMPRESSED_MB": "4000",
            "OXCELIZE_LOGGING__LEVEL": "WARNING",
            # A slow (shared) machine must not turn a long step into a timeout.
            "OXCELIZE_CHAT_WORKFLOWS__EXECUTION__STEP_TIMEOUT_SECONDS": "7200",
        })
        env.update(self.extra_env)
        self.proc = subprocess.Popen(
            [self.binary, "--config", os.path.join(ROOT, "configs/application.yml")],
            cwd=self.work, env=env, stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.work, "stderr.log"), "w"),
        )
        self.api = f"http://127.0.0.1:{rest}/api/v1"
        for _ in range(200):
            try:
                requests.get(f"{self.api}/health", timeout=1)
                return self
            except requests.RequestException:
                time.sleep(0.1)
        raise RuntimeError("the server did not start")

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait(timeout=60)
        subprocess.run(["rm", "-rf", self.work])

    def post_file(self, path, file_path, name, data=None):
        with open(file_path, "rb") as f:
            r = requests.post(f"{self.api}{path}", files={"file": (name, f)}, data=data or {}, timeout=3600)
        if r.status_code != 200:
            raise RuntimeError(f"{path}: {r.status_code} {r.text[:300]}")
        return r


def normalization_form():
    rules = [{"column_name": c, "normalization_type": t} for c, t in RULES]
    return {"normalizations": json.dumps(rules)}


def whole_column_form():
    rules = [{"column_name": c, "normalization_type": t, "parameters": p} for c, t, p in WHOLE_COLUMN_RULES]
    return {"normalizations": json.dumps(rules)}


def workflow(server, workbook):
    chat = requests.post(f"{server.api}/chat/workflows").json()["data"]["chat_id"]
    with open(workbook, "rb") as f:
        requests.post(f"{server.api}/chat/workflows/{chat}/upload",
                      files={"file": ("big.xlsx", f)}, timeout=3600).raise_for_status()
    return chat


def run_workflow(server, chat, report=True):
    body = {"steps": [
        {"operation": "excel/search", "arguments": {"conditions": SEARCH, "output_format": "xlsx"}},
        {"operation": "normalization/apply", "arguments": {
            "normalizations": [{"column": c, "type": t} for c, t in RULES], "return_report": report}},
        {"operation": "sql/generate", "arguments": {"table_name": "people"}},
    ]}
    r = requests.post(f"{server.api}/chat/workflows/{chat}/execute", json=body, timeout=3600)
    if r.status_code != 200 or r.json()["data"].get("status") not in (None, "completed"):
        raise RuntimeError(f"workflow: {r.status_code} {r.text[:500]}")


def write_bind_csv(path, rows):
    """A bind file for the bench workbook (made a workbook like it): every tenth `id` with two new columns."""
    with open(path, "w") as f:
        f.write("id,segment,tier\n")
        for i in range(0, rows, 10):
            f.write(f"ID{i:07},segment {i % 17},tier {i % 3}\n")


def operations(csv_path, xlsx_path, bind_path):
    """name → (prepare(server) → state, run(server, state)); the peak covers `run` only."""
    def rest(path, file_path, name, data=None):
        return (lambda s: None, lambda s, _: s.post_file(path, file_path, name, data))

    def concurrent(s, _, form=normalization_form):
        errors = []

        def one():
            try:
                s.post_file("/normalization/apply", xlsx_path, "big.xlsx", form())
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)
        threads = [threading.Thread(target=one) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]

    def bind(s, _):
        with open(xlsx_path, "rb") as source, open(bind_path, "rb") as other:
            r = requests.post(f"{s.api}/excel/bind-single-key", timeout=3600,
                              files={"source_file": ("big.xlsx", source), "bind_file": ("bind.xlsx", other)},
                              data={"comparison_column": "id", "bind_columns": json.dumps(["segment", "tier"])})
        if r.status_code != 200:
            raise RuntimeError(f"bind: {r.status_code} {r.text[:300]}")

    cols = json.dumps(["id", "name", "email"])
    return {
        "excel/extract-columns (JSON)": rest("/excel/extract-columns", xlsx_path, "big.xlsx", {"columns": cols}),
        "excel/extract-columns-to-file": rest(
            "/excel/extract-columns-to-file", xlsx_path, "big.xlsx", {"columns": cols}),
        "normalization/apply (4 rules)": rest(
            "/normalization/apply", xlsx_path, "big.xlsx", normalization_form()),
        "normalization/apply (whole-column rules)": rest(
            "/normalization/apply", xlsx_path, "big.xlsx", whole_column_form()),
        "excel/map-columns": rest("/excel/map-columns", xlsx_path, "big.xlsx", {"mapping": json.dumps(MAPPING)}),
        "excel/bind-single-key (1/10 of the ids)": (lambda s: None, bind),
        "excel/search": rest("/excel/search", xlsx_path, "big.xlsx", {"conditions": json.dumps(SEARCH)}),
        # A workflow's normalization returns its report (with statistics) unless told not to.
        "3-step workflow (search → normalize → sql)": (lambda s: workflow(s, xlsx_path), run_workflow),
        "3-step workflow, return_report false": (
            lambda s: workflow(s, xlsx_path), lambda s, chat: run_workflow(s, chat, report=False)),
        "4 concurrent normalizations": (lambda s: None, concurrent),
        "4 concurrent whole-column normalizations": (
            lambda s: None, lambda s, state: concurrent(s, state, whole_column_form)),
        "csv/info": rest("/csv/info", csv_path, "big.csv"),
        "csv/search": rest("/csv/search", csv_path, "big.csv", {"conditions": json.dumps(SEARCH)}),
        "csv/convert-to-excel": rest("/csv/convert-to-excel", csv_path, "big.csv"),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--binary", default=os.path.join(ROOT, "target/release/oxcelize"))
    ap.add_argument("--only", default="", help="comma-separated prefixes of operation names")
    ap.add_argument("--data", default="", help="folder to keep the generated CSV and workbook in (reused)")
    args = ap.parse_args()

    data = args.data or tempfile.mkdtemp(prefix="rss-per-op-data-")
    os.makedirs(data, exist_ok=True)
    csv_path = os.path.join(data, f"big_{args.rows}.csv")
    xlsx_path = os.path.join(data, f"big_{args.rows}.xlsx")
    bind_csv = os.path.join(data, f"bind_{args.rows}.csv")
    bind_path = os.path.join(data, f"bind_{args.rows}.xlsx")
    if not os.path.exists(csv_path):
        write_csv(csv_path, args.rows)
    if not os.path.exists(bind_csv):
        write_bind_csv(bind_csv, args.rows)
    for source, target in [(csv_path, xlsx_path), (bind_csv, bind_path)]:
        if os.path.exists(target):
            continue
        with Server(args.binary) as s:
            r = s.post_file("/csv/convert-to-excel", source, "big.csv")
            url = r.json()["data"]["download_url"]
            with requests.get(url, stream=True, timeout=3600) as d, open(target, "wb") as out:
                for chunk in d.iter_content(1 << 20):
                    out.write(chunk)
    mb = lambda path: round(os.path.getsize(path) / 2**20, 1)  # noqa: E731
    print(json.dumps({"rows": args.rows, "csv_mb": mb(csv_path), "xlsx_mb": mb(xlsx_path), "binary": args.binary}))

    results = []
    wanted = [p for p in args.only.split(",") if p]
    for name, (prepare, run) in operations(csv_path, xlsx_path, bind_path).items():
        if wanted and not any(name.startswith(p) for p in wanted):
            continue
        # Four at once means four running: admission (2 slots by default on 2 cores) would queue two.
        extra = CONCURRENT_ENV if name.startswith("4 concurrent") else {}
        with Server(args.binary, extra) as s:
            state = prepare(s)
            time.sleep(1)
            idle = rss_kb(s.proc.pid, "VmRSS")
            with open(f"/proc/{s.proc.pid}/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM: the peak is this operation's, not the setup's
            t0 = time.time()
            error = None
            try:
                run(s, state)
            except Exception as e:  # noqa: BLE001 - a failed operation is a result too
                error = str(e)[:300]
                with open(os.path.join(s.work, "stderr.log")) as log:
                    print(log.read()[-2000:], flush=True)
            took = time.time() - t0
            peak = rss_kb(s.proc.pid, "VmHWM")
            time.sleep(10)
            after = rss_kb(s.proc.pid, "VmRSS")
        row = {"op": name, "seconds": round(took, 1), "idle_mb": idle // 1024, "peak_mb": peak // 1024,
               "after_10s_mb": after // 1024}
        if error:
            row["error"] = error
        results.append(row)
        print(json.dumps(row), flush=True)

    print("\n| op (fresh server each) | time | peak RSS (VmHWM) | RSS 10 s after |\n|---|---|---|---|")
    for r in results:
        failed = f" (failed: {r['error'][:80]})" if "error" in r else ""
        print(f"| {r['op']}{failed} | {r['seconds']} s | {r['peak_mb']:,} MB | {r['after_10s_mb']:,} MB |")
    if not args.data:
        subprocess.run(["rm", "-rf", data])


if __name__ == "__main__":
    main()
