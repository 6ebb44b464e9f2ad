"""A Responses stream of a very long answer, seen from the gateway's memory: a scripted OpenAI-style upstream on
loopback streams `--mib` MiB of text in 64 KiB deltas, the client reads the stream through `POST /v1/responses`,
and the script prints how the stream ended and the gateway's peak RSS (VmHWM).

A Responses stream repeats its answer in its closing events; before issue 29 it kept the whole answer several
times over. Now it keeps at most 8 MiB and fails the stream past that. Figures and their raw output:
BENCHMARKS.md, "A very long answer through a Responses stream".

Usage: python3 bench/responses_big_answer.py [--aigw PATH] [--mib 200]
"""

import argparse
import http.server
import json
import socketserver
import sys
import threading
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare import KEY, Proc, release_binary, scratch  # noqa: E402


def upstream(mib):
    piece = "x" * (64 << 10)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def frame(self, text):
            data = text.encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

        def do_POST(self):
            self.rfile.read(int(self.headers["content-length"]))
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            chunk = lambda d, f=None: self.frame("data: " + json.dumps(
                {"id": "c", "object": "chat.completion.chunk", "model": "up",
                 "choices": [{"index": 0, "delta": d, "finish_reason": f}]}) + "\n\n")
            try:
                chunk({"role": "assistant", "content": ""})
                for _ in range(mib * 16):
                    chunk({"content": piece})
                chunk({}, "stop")
                self.frame("data: [DONE]\n\n")
                self.frame("")
            except OSError:
                pass  # the gateway let the stream go

        def log_message(self, *args):
            pass

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def peak_rss_mib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--aigw", help="the aigw binary (default: build target/release/aigw)")
    ap.add_argument("--mib", type=int, default=200, help="MiB of answer text the upstream streams")
    opts = ap.parse_args()
    aigw = release_binary(opts.aigw)
    work = scratch("aigw-big-answer-")
    server = upstream(opts.mib)
    (work / "gateway.toml").write_text(f"""
[server]
listen = "127.0.0.1:0"
[[keys]]
name = "bench"
env = "AIGW_BENCH_KEY"
[[upstreams]]
name = "openai-style"
kind = "openai"
base_url = "http://127.0.0.1:{server.server_address[1]}/v1"
[[models]]
name = "long"
max_output_tokens = 1000
routes = [{{ upstream = "openai-style", model = "up" }}]
""")
    gateway = Proc([aigw, "serve", "--config", str(work / "gateway.toml"), "--listen", "127.0.0.1:0",
                    "--admin-listen", "127.0.0.1:0"], work / "gateway.log", r"aigw listening addr=(\S+) admin=(\S+)",
                   env={"AIGW_BENCH_KEY": KEY})
    addr = gateway.match.group(1)
    try:
        body = {"model": "long", "stream": True, "store": False, "input": "write forever"}
        req = urllib.request.Request(f"http://{addr}/v1/responses", data=json.dumps(body).encode(), method="POST",
                                     headers={"content-type": "application/json", "authorization": f"Bearer {KEY}"})
        received, last = 0, ""
        with urllib.request.urlopen(req, timeout=600) as resp:
            for line in resp:
                received += len(line)
                if line.startswith(b"event: "):
                    last = line.decode().strip()[len("event: "):]
        peak = peak_rss_mib(gateway.proc.pid)
    finally:
        gateway.stop()
        server.shutdown()
    print(f"{opts.mib} MiB answer through a Responses stream: {received >> 20} MiB received, last event {last}, "
          f"gateway peak RSS {peak:.0f} MiB")


if __name__ == "__main__":
    main()
