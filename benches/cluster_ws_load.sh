#!/usr/bin/env bash
# Cluster load run for the README: N nodes (default 3) in cluster mode on a throwaway PostgreSQL and Redis
# (.ci/services.sh), LISTENERS WebSocket clients on one chat spread over the nodes, RUNS workflow runs
# submitted round-robin through the nodes; then the same on one node alone for comparison. Everything runs
# on 127.0.0.1 and is stopped at the end.
#
#   cargo build --release --locked --features loadgen --bins
#   benches/cluster_ws_load.sh [NODES=3] [LISTENERS=3000] [RUNS=10]
set -euo pipefail
cd "$(dirname "$0")/.."

nodes="${1:-3}"
listeners="${2:-3000}"
runs="${3:-10}"
bin=target/release/oxcelize
load=target/release/ws_load
[[ -x "$bin" && -x "$load" ]] || { echo "build first: cargo build --release --locked --features loadgen --bins" >&2; exit 2; }

work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  .ci/services.sh stop "$work/services" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

eval "$(.ci/services.sh start "$work/services")"
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Starts `count` nodes sharing one folder (storage.backend local) and the services; sets rest, ws and pid lists.
start_nodes() {
  local count="$1" shared="$2"
  mkdir -p "$shared"
  rest="" ws="" pid_list=""
  for n in $(seq "$count"); do
    local rp wp
    rp="$(free_port)"
    wp="$(free_port)"
    (cd "$shared" && OXCELIZE_CLUSTER__ENABLED=true OXCELIZE_CLUSTER__NODE_ID="node-$n" \
      OXCELIZE_CLUSTER__POSTGRES_URL="$OXCELIZE_TEST_POSTGRES_URL" OXCELIZE_CLUSTER__REDIS_URL="$OXCELIZE_TEST_REDIS_URL" \
      OXCELIZE_APP__PORT="$rp" OXCELIZE_CHAT_WORKFLOWS__WEBSOCKET__PORT="$wp" \
      OXCELIZE_CHAT_WORKFLOWS__MAX_CONNECTIONS=10000 \
      exec "$OLDPWD/$bin" --config "$OLDPWD/configs/application.yml" >"node-$n.log" 2>&1) &
    pids+=("$!")
    pid_list+="${pid_list:+,}$!"
    rest+="${rest:+,}http://127.0.0.1:$rp/api/v1"
    ws+="${ws:+,}ws://127.0.0.1:$wp"
    local up=""
    for _ in $(seq 150); do
      curl -sf "http://127.0.0.1:$rp/api/v1/health" >/dev/null && { up=1; break; }
      sleep 0.2
    done
    [[ -n "$up" ]] || { echo "node-$n did not start:" >&2; cat "$shared/node-$n.log" >&2; exit 1; }
  done
}

stop_nodes() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=()
}

echo "== $nodes nodes, $listeners listeners on one chat, $runs runs (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
start_nodes "$nodes" "$work/cluster"
"$load" --rest "$rest" --ws "$ws" --pid "$pid_list" --clients "$listeners" --runs "$runs" --timeout-secs 600
stop_nodes

echo "== 1 node, $listeners listeners on one chat, $runs runs (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
start_nodes 1 "$work/single"
"$load" --rest "$rest" --ws "$ws" --pid "$pid_list" --clients "$listeners" --runs "$runs" --timeout-secs 600
stop_nodes
