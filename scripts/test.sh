#!/usr/bin/env bash
# Runs every test of aigw from a fresh clone, installing what the tests need. First the gates: rustfmt,
# clippy with warnings denied, the layer rule (scripts/layers.py: no import circle across src/'s folders) and
# cargo deny (bans: no OpenSSL or native-tls; licenses; sources); then
#   1. unit and integration tests (cargo test): in-process gateway, scripted upstream, TLS, shutdown;
#   2. end-to-end tests (pytest): the built binary on the default config.toml, called by the real grpcurl
#      and by Python clients with stubs generated from proto/ by grpcio-tools; smoke runs of the k6 script,
#      the Locust gRPC user and bench/compare.py; the example clients in examples/ (Python, Node.js,
#      gRPC-Web); the official `openai` SDK against the REST door; checkov and hadolint on deploy/ and the
#      Dockerfile.
# Python packages go to .venv (pinned in tests/e2e/requirements.txt); the one system package is Debian's
# redis-server, installed if missing, for the shared-state tests (they start and stop their own servers).
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r tests/e2e/requirements.txt
# The deployment's linters (checkov on deploy/kubernetes, hadolint on the Dockerfile), in a venv of their own:
# checkov's dependencies would otherwise fight the test clients' pins.
if [ ! -x .venv-lint/bin/python ]; then
  "$python" -m venv .venv-lint
fi
.venv-lint/bin/python -m pip install --quiet --disable-pip-version-check -r tests/e2e/requirements-lint.txt
# The Node.js example clients' dependencies, pinned by their package-lock.json; the gRPC-Web client's stubs
# are generated from proto/ by buf + protoc-gen-es, both from npm.
npm ci --prefix examples/node --no-audit --no-fund --loglevel=error
npm ci --prefix examples/grpc-web --no-audit --no-fund --loglevel=error
npm run --prefix examples/grpc-web --silent generate

# The shared-state tests (tests/it/shared.rs) run three gateways against a real Redis they start themselves.
if ! command -v redis-server >/dev/null; then
  echo "== installing redis-server (Debian package)"
  sudo_cmd=""
  if [ "$(id -u)" != 0 ]; then sudo_cmd=sudo; fi
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq redis-server >/dev/null
fi

echo "== gates: rustfmt, clippy, the layer rule, cargo deny"
cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings
python3 scripts/layers.py > /dev/null || { python3 scripts/layers.py; exit 1; }
if ! command -v cargo-deny > /dev/null; then
  echo "== installing cargo-deny (crates.io)"
  cargo install --locked cargo-deny --version 0.20.2
fi
cargo deny --log-level error check bans licenses sources

echo "== cargo test"
cargo build --locked --bins
cargo test --locked

echo "== end-to-end (grpcurl, Python stubs)"
AIGW_BIN="$PWD/target/debug/aigw" GRPCURL="$PWD/.venv/bin/grpcurl" \
  .venv/bin/python -m pytest tests/e2e -q -p no:cacheprovider
