#!/usr/bin/env bash
# ./run.sh        build in release mode and start both servers with configs/application.yml
# ./run.sh test   the whole test suite: format check, clippy with warnings as errors, all tests
set -euo pipefail
cd "$(dirname "$0")"

case "${1:-serve}" in
  serve)
    shift || true
    cargo build --release --locked
    exec ./target/release/oxcelize --config "${OXCELIZE_CONFIG:-configs/application.yml}" "$@"
    ;;
  test)
    cargo fmt --all -- --check
    cargo clippy --locked --all-targets -- -D warnings
    # Benches are type-checked by clippy above; running them is `cargo bench` (see README).
    cargo test --locked
    ;;
  *)
    echo "usage: ./run.sh [test]" >&2
    exit 2
    ;;
esac
