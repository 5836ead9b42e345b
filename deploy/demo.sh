#!/usr/bin/env bash
# The main job (README): builds socai and runs the demo in a fresh temporary data dir.
# Usage: deploy/demo.sh [--events N]
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null 2>&1; then
  echo "error: cargo not found; install the Rust toolchain (rustup) first" >&2
  exit 1
fi
deploy/install-nats.sh >/dev/null
cargo build --release --locked -p socai
exec target/release/socai demo "$@"
