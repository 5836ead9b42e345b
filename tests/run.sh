#!/usr/bin/env bash
# The test command (README): formatting, lints, then every test in the workspace: unit and
# property tests of each crate, and the end-to-end tests in tests/ that start the real `socai`
# binary and kill it. Installs whatever the tests need on a fresh machine with only Rust.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "error: cargo not found; install the Rust toolchain (rustup) first" >&2
  exit 1
fi

# A clean clone gains nothing from incremental compilation, and its cache doubles the disk the
# build needs (CI machines can be short of disk). Set CARGO_INCREMENTAL=1 to keep it locally.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

echo "== nats-server (the ingestion tests start real ones)"
SOCAI_NATS_SERVER=$(deploy/install-nats.sh)
export SOCAI_NATS_SERVER
"$SOCAI_NATS_SERVER" --version

echo "== chromium and chromedriver (the dashboard's browser tests drive a real Chromium)"
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: chromium and chromedriver are missing and there is no apt-get to install them; install Chromium and its WebDriver (chromedriver) of the same version, on PATH" >&2
    exit 1
  fi
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
      echo "error: installing chromium needs root: run 'apt-get install chromium chromium-driver' as root, then this again" >&2
      exit 1
    fi
    sudo="sudo"
  fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi
chromium --version
chromedriver --version

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== canonical bytes in the chain crate's own build (features not unified with the binary's)"
cargo test -p socai-chain --locked --test number_canon
echo "== cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --locked "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line for the whole run (cargo prints one per test binary, the last often a doc-test
# binary with nothing in it).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed;?$/) p += $(i-1); if ($i ~ /^failed;?$/) f += $(i-1) } }
     END { printf "summary: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
