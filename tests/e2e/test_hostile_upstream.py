"""A hostile upstream against the built binary, with the process's own memory accounting as the judge: a stream
of 1,000 one-character chunks, each carrying a 1 MB logprob token the client never asked for. The gateway must
answer the client whole, without the logprobs, and its peak resident memory (VmHWM) must stay far below the
gigabyte the flood would cost if it were kept."""

import http.server
import json
import os
import re
import signal
import subprocess
import threading
from pathlib import Path

import grpc

from conftest import serve_upstream, start_event_stream

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-hostile-test-key"
CHUNKS = 1000
TOKEN = "x" * (1 << 20)


class Flood(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        self.rfile.read(int(self.headers["content-length"]))
        start_event_stream(self)

        def send(data):
            body = f"data: {data}\n\n".encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(body), body))

        chunk = json.dumps({"id": "flood", "model": "up", "choices": [{"index": 0, "delta": {"content": "a"},
                            "logprobs": {"content": [{"token": TOKEN, "logprob": -0.1, "top_logprobs": []}]},
                            "finish_reason": None}]})
        try:
            for _ in range(CHUNKS):
                send(chunk)
            send(json.dumps({"id": "flood", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
            send("[DONE]")
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args):
        pass


def peak_rss_mib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_a_logprob_flood_does_not_balloon_the_gateway(tmp_path, stubs):
    pb, pb_grpc = stubs
    upstream = serve_upstream(Flood)
    config = tmp_path / "config.toml"
    config.write_text(f"""
[server]
listen = "127.0.0.1:0"
[admin]
listen = "127.0.0.1:0"
[[keys]]
name = "tester"
env = "HOSTILE_KEY"
[[upstreams]]
name = "flood"
kind = "openai"
base_url = "http://127.0.0.1:{upstream.server_address[1]}/v1"
[[models]]
name = "m"
max_output_tokens = 100
routes = [{{ upstream = "flood", model = "up" }}]
""")
    binary = os.environ.get("AIGW_BIN", str(ROOT / "target" / "debug" / "aigw"))
    proc = subprocess.Popen([binary, "serve", "--config", str(config)], stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "HOSTILE_KEY": KEY, "RUST_LOG": "warn,aigw=info"})
    try:
        addr = None
        for line in proc.stderr:
            m = re.search(r"aigw listening addr=(\S+)", line)
            if m:
                addr = m.group(1)
                break
        assert addr, "the gateway did not start"
        threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
        channel = grpc.insecure_channel(addr, options=[("grpc.max_receive_message_length", 64 << 20)])
        stub = pb_grpc.AIServiceStub(channel)
        req = pb.StreamGenerateRequest(model="m", messages=[pb.Message(role="user", content="hi")])
        chunks = list(stub.StreamGenerate(req, metadata=[("authorization", f"Bearer {KEY}")], timeout=300))
        assert "".join(c.delta for c in chunks) == "a" * CHUNKS
        assert chunks[-1].is_complete and not chunks[-1].logprobs
        peak = peak_rss_mib(proc.pid)
        assert peak < 256, f"peak RSS {peak:.0f} MiB"
        print(f"peak RSS through a {CHUNKS} MB logprob flood: {peak:.1f} MiB")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        upstream.shutdown()
