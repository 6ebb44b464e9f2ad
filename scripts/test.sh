#!/usr/bin/env bash
# Runs every test of aigw from a fresh clone, installing what the tests need:
#   1. unit and integration tests (cargo test): in-process gateway, scripted upstream, TLS, shutdown;
#   2. end-to-end tests (pytest): the built binary on the default config.toml, called by the real grpcurl
#      and by Python clients with stubs generated from proto/ by grpcio-tools; smoke runs of the k6 script,
#      the Locust gRPC user and bench/compare.py.
# Python packages go to .venv (pinned in tests/e2e/requirements.txt); nothing is installed system-wide.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r tests/e2e/requirements.txt

echo "== cargo test"
cargo build --locked --bins
cargo test --locked

echo "== end-to-end (grpcurl, Python stubs)"
AIGW_BIN="$PWD/target/debug/aigw" GRPCURL="$PWD/.venv/bin/grpcurl" \
  .venv/bin/python -m pytest tests/e2e -q -p no:cacheprovider
