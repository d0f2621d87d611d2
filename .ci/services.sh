#!/usr/bin/env bash
# Starts (or stops) the outside services the cluster tests need, on free loopback ports:
#   PostgreSQL from the machine's binaries (initdb + pg_ctl, run as the `postgres` user when started as root)
#   Redis from Debian's redis-server package (installed with apt-get when missing)
#
#   eval "$(.ci/services.sh start DIR)"   prints `export OXCELIZE_TEST_POSTGRES_URL=… OXCELIZE_TEST_REDIS_URL=…`
#   .ci/services.sh stop DIR              stops both and removes DIR
#
# The S3-compatible store needs no service: the tests run one in-process.
set -euo pipefail

cmd="${1:-}"
dir="${2:-}"
[[ -n "$cmd" && -n "$dir" ]] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

pg_bin() {
  local name="$1"
  if command -v "$name" >/dev/null; then command -v "$name"; return; fi
  local found
  found="$(ls -d /usr/lib/postgresql/*/bin/"$name" 2>/dev/null | sort -V | tail -1 || true)"
  [[ -n "$found" ]] || { echo "PostgreSQL's $name was not found (install postgresql)" >&2; exit 1; }
  echo "$found"
}

# Runs a command as the postgres user when we are root (PostgreSQL refuses to run as root).
as_pg() {
  if [[ "$(id -u)" == 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

start() {
  mkdir -p "$dir"
  if ! command -v redis-server >/dev/null; then
    echo "installing redis-server" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  fi

  local pg_port redis_port
  pg_port="$(free_port)"
  redis_port="$(free_port)"

  # PostgreSQL: a throwaway cluster, trust auth on loopback only, fsync off (test data). Its folder is made
  # by the postgres user itself, so the server can reach it whatever the permissions of DIR's parents.
  local pg_dir
  pg_dir="$(as_pg mktemp -d)"
  echo "$pg_dir" >"$dir/pg-dir"
  as_pg "$(pg_bin initdb)" -D "$pg_dir/data" -U postgres -A trust --no-sync >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; exit 1; }
  as_pg "$(pg_bin pg_ctl)" -D "$pg_dir/data" -l "$pg_dir/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $pg_port -c unix_socket_directories='' -c fsync=off -c max_connections=300" \
    start >&2
  as_pg "$(pg_bin psql)" -h 127.0.0.1 -p "$pg_port" -U postgres -qc "CREATE DATABASE oxcelize_test" >&2

  # Redis: no persistence, never evicts (the cluster bus requires noeviction).
  mkdir -p "$dir/redis"
  redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no \
    --maxmemory-policy noeviction --daemonize yes --pidfile "$dir/redis/redis.pid" \
    --logfile "$dir/redis/redis.log" --dir "$dir/redis" >&2
  for _ in $(seq 50); do
    redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
    sleep 0.1
  done
  echo "$redis_port" >"$dir/redis/port"

  echo "export OXCELIZE_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:$pg_port/oxcelize_test"
  echo "export OXCELIZE_TEST_REDIS_URL=redis://127.0.0.1:$redis_port/"
}

stop() {
  [[ -d "$dir" ]] || return 0
  if [[ -f "$dir/pg-dir" ]]; then
    local pg_dir
    pg_dir="$(cat "$dir/pg-dir")"
    as_pg "$(pg_bin pg_ctl)" -D "$pg_dir/data" -m immediate -w stop >&2 || true
    rm -rf "$pg_dir"
  fi
  if [[ -f "$dir/redis/port" ]]; then
    redis-cli -p "$(cat "$dir/redis/port")" shutdown nosave >/dev/null 2>&1 || true
  fi
  rm -rf "$dir"
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
