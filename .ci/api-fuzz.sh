#!/usr/bin/env bash
# Schema-driven fuzzing of the REST port: Schemathesis (pinned, from PyPI, in a throw-away venv) reads
# /openapi.json from a debug server started on free loopback ports with a temporary config and storage,
# sends a bounded number of generated requests per operation and fails on any 5xx, on a status the document
# does not list, and on an answer that does not match its documented schema or content type.
# Usage: .ci/api-fuzz.sh [SERVER_BINARY]   (builds the debug binary when none is given)
# Environment: API_FUZZ_EXAMPLES (default 25) examples per operation, API_FUZZ_SEED (default 1).
set -euo pipefail
cd "$(dirname "$0")/.."

examples="${API_FUZZ_EXAMPLES:-25}"
seed="${API_FUZZ_SEED:-1}"
work="$(mktemp -d)"
server_pid=""
cleanup() {
  if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

python3 -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==4.32.5"

binary="${1:-}"
if [[ -z "$binary" ]]; then
  cargo build --locked --bin oxcelize
  # The target directory may be moved by the environment or a cargo config file.
  target_dir="$(cargo metadata --locked --format-version 1 --no-deps \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
  binary="$target_dir/debug/oxcelize"
fi

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
fetch() {
  python3 -c 'import sys, urllib.request; sys.stdout.buffer.write(urllib.request.urlopen(sys.argv[1], timeout=5).read())' "$1"
}
rest_port="$(free_port)"
ws_port="$(free_port)"
root="$work/data"
cat >"$work/config.yml" <<EOF
app:
  host: "127.0.0.1"
  port: $rest_port
  workers: 2
file:
  upload_folder: "$root/uploads"
  output_folder: "$root/outputs"
logging:
  level: "WARNING"
  file: ""
chat_workflows:
  enabled: true
  storage:
    workflows_path: "$root/automation/workflows"
    dumps_path: "$root/automation/dumps"
    sqlite_path: "$root/automation/sqlite/chat.db"
  backup:
    enabled: false
    snapshot_path: "$root/automation/sqlite/snapshots"
  websocket:
    host: "127.0.0.1"
    port: $ws_port
EOF

"$binary" --config "$work/config.yml" >"$work/server.log" 2>&1 &
server_pid=$!
base="http://127.0.0.1:$rest_port"
for _ in $(seq 1 300); do
  if fetch "$base/api/v1/health" >/dev/null 2>&1; then break; fi
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; echo "server exited early" >&2; exit 1; }
  sleep 0.2
done
fetch "$base/openapi.json" >"$work/openapi.json"
operations="$(python3 -c '
import json, sys
doc = json.load(open(sys.argv[1]))
print(sum(1 for item in doc["paths"].values() for m in item if m in ("get", "post", "put", "patch", "delete")))
' "$work/openapi.json")"
echo "api-fuzz: $operations operations in /openapi.json, up to $examples examples each (seed $seed)"

# WebSocket upgrade routes are described by /asyncapi.json; a plain GET there is a 405 by design.
status=0
"$work/venv/bin/st" run "$base/openapi.json" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --max-examples "$examples" --seed "$seed" --workers 2 \
  --phases examples,coverage,fuzzing \
  --exclude-tag websocket \
  --request-timeout 30 --max-redirects 0 \
  --generation-database none \
  --no-color \
  --report junit --report-dir "$work/report" || status=$?
if [[ $status -ne 0 ]]; then
  echo "api-fuzz: failures above; server log:" >&2
  tail -n 50 "$work/server.log" >&2
fi
exit $status
