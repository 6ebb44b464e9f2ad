#!/usr/bin/env bash
# Runs every test of aigw from a fresh clone, installing what the tests need. First the gates: rustfmt,
# clippy with warnings denied, the code's docs with warnings denied (every intra-doc link resolves), the layer
# rule (scripts/layers.py: no import circle across src/'s folders) and cargo deny (bans: no OpenSSL or native-tls; licenses; sources); then
#   1. unit and integration tests (cargo test): in-process gateway, scripted upstream, TLS, shutdown;
#   2. end-to-end tests (pytest): the built binary on the default config.toml, called by the real grpcurl
#      and by Python clients with stubs generated from proto/ by grpcio-tools; smoke runs of the k6 script,
#      the Locust gRPC user and bench/compare.py; the example clients in examples/ (Python, Node.js,
#      gRPC-Web); the official `openai` SDK against the REST door; the dashboard in headless chromium;
#      promtool on the alert rules, the scrape config and a live /metrics; checkov and hadolint on deploy/
#      and the Dockerfile.
# Python packages go to .venv (pinned in tests/e2e/requirements.txt), npm packages to each test's own folder
# (package-lock.json); Debian's redis-server, chromium and prometheus are installed when missing.
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

npm ci --prefix tests/e2e/dashboard --no-audit --no-fund --loglevel=error
# Real coding agents (Claude Code, Codex, qwen-code), pinned by the lock file, driven by tests/e2e/test_agents.py.
# `npm install`, not `ci`: qwen-code's optional macOS clipboard package is not on every registry mirror, so the
# lock cannot name it and `npm ci` calls the lock out of sync; `install` follows the lock and skips it.
npm install --prefix tests/e2e/agents --no-audit --no-fund --loglevel=error

# Debian packages the tests run: redis-server, with redis-cli from redis-tools (tests/it/shared.rs starts real
# Redis servers; tests/it/redis_topologies.rs a Redis Cluster, made by `redis-cli --cluster create`, and a Sentinel
# set), chromium (the
# dashboard in a headless browser, tests/e2e/test_dashboard.py) and prometheus for promtool (rules, config and a
# live /metrics, tests/e2e/test_monitoring.py); wrk and h2load (nghttp2-client), the load tools of
# bench/floor.py, run in smoke mode by tests/e2e/test_load_tools.py.
missing=""
command -v redis-server >/dev/null || missing="$missing redis-server"
command -v redis-cli >/dev/null || missing="$missing redis-tools"
command -v chromium >/dev/null || missing="$missing chromium"
command -v promtool >/dev/null || missing="$missing prometheus"
command -v wrk >/dev/null || missing="$missing wrk"
command -v h2load >/dev/null || missing="$missing nghttp2-client"
if [ -n "$missing" ]; then
  echo "== installing Debian packages:$missing"
  sudo_cmd=""
  if [ "$(id -u)" != 0 ]; then sudo_cmd=sudo; fi
  $sudo_cmd apt-get update -qq
  # shellcheck disable=SC2086 # one word per package
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq $missing >/dev/null
fi

echo "== gates: rustfmt, clippy, docs, the layer rule, cargo deny, the container build"
cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --locked --no-deps --document-private-items --quiet
python3 scripts/layers.py > /dev/null || { python3 scripts/layers.py; exit 1; }
if ! command -v cargo-deny > /dev/null; then
  echo "== installing cargo-deny (crates.io)"
  cargo install --locked cargo-deny --version 0.20.2
fi
cargo deny --log-level error check bans licenses sources
# The Dockerfile's stages laid out as their COPY lines say and built there (cargo check), without a container
# engine: a file the image build needs but does not copy fails here.
python3 scripts/docker_build_check.py > /dev/null || { python3 scripts/docker_build_check.py; exit 1; }

echo "== cargo test"
cargo build --locked --bins
cargo test --locked

echo "== end-to-end (grpcurl, Python stubs)"
AIGW_BIN="$PWD/target/debug/aigw" GRPCURL="$PWD/.venv/bin/grpcurl" \
  .venv/bin/python -m pytest tests/e2e -q -p no:cacheprovider
