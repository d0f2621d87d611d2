#!/usr/bin/env bash
# The /console browser test: builds the debug server, installs playwright-core (npm ci, no browser download)
# and runs console.test.mjs with node's test runner against the system's Chromium.
# Without node or Chromium it skips with a message; with --require (CI) it fails instead.
set -euo pipefail
cd "$(dirname "$0")"
chromium="${CHROMIUM_BIN:-/usr/bin/chromium}"
require=false
[[ "${1:-}" == "--require" ]] && require=true
skip() {
  if $require; then
    echo "console browser test: $1" >&2
    exit 1
  fi
  echo "console browser test skipped: $1"
  exit 0
}
command -v node >/dev/null && command -v npm >/dev/null || skip "node and npm are not installed"
[[ -x "$chromium" ]] || skip "$chromium is not installed (apt-get install chromium)"
npm ci --no-audit --no-fund --loglevel=error
cargo build --locked --bin oxcelize
# Ask cargo where the binary is: the target directory may be moved by the environment or a cargo config.
target_dir="$(cargo metadata --locked --format-version 1 --no-deps \
  | node -e 'let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => console.log(JSON.parse(s).target_directory))')"
OXCELIZE_BIN="$target_dir/debug/oxcelize" CHROMIUM_BIN="$chromium" \
  node --test --test-concurrency=1 console.test.mjs
