"""A reasoning model's silence, seen from the client: seconds to the response's headers, when the keep-alives
come, and how many upstream calls one long think costs.

A scripted upstream on loopback accepts each call at once (headers and a first event), then thinks for
`--think` seconds before it answers: an OpenAI-style model in silence, an Anthropic one with a `ping` every 10 s.
The gateway (its default stream limits unless `--keepalive` is given) is called through the chat-completions
door and the Messages door, and the script prints what the client saw.

Usage: python3 bench/silence.py [--aigw PATH] [--think 150] [--keepalive 15s] [--out DIR]
"""

import argparse
import http.server
import json
import socketserver
import sys
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare import KEY, ROOT, Proc, machine, release_binary, scratch  # noqa: E402


def upstream(think):
    """An upstream that answers after `think` seconds; counts its calls."""
    calls = []

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def frame(self, text):
            data = text.encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        def do_POST(self):
            self.rfile.read(int(self.headers["content-length"]))
            calls.append(self.path)
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            anthropic = self.path.endswith("/messages")
            if anthropic:
                ev = lambda e: self.frame(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n")
                ev({"type": "message_start", "message": {"id": "m", "type": "message", "role": "assistant",
                    "model": "claude", "content": [], "usage": {"input_tokens": 5, "output_tokens": 1}}})
                waited = 0.0
                while waited < think:  # Anthropic pings while the model thinks.
                    step = min(10.0, think - waited)
                    time.sleep(step)
                    waited += step
                    ev({"type": "ping"})
                ev({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
                ev({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Done."}})
                ev({"type": "content_block_stop", "index": 0})
                ev({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 2}})
                ev({"type": "message_stop"})
            else:
                chunk = lambda d, f=None: self.frame("data: " + json.dumps(
                    {"id": "c", "object": "chat.completion.chunk", "model": "up",
                     "choices": [{"index": 0, "delta": d, "finish_reason": f}]}) + "\n\n")
                chunk({"role": "assistant", "content": ""})
                time.sleep(think)  # silent, as OpenAI's reasoning models are
                chunk({"content": "Done."})
                chunk({}, "stop")
                self.frame("data: [DONE]\n\n")
            self.frame("")

        def log_message(self, *args):
            pass

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, calls


def watch(url, body, headers):
    """Posts and reads the stream: seconds to the headers, to each keep-alive, and to the end; the text."""
    t0 = time.monotonic()
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"content-type": "application/json", **headers})
    with urllib.request.urlopen(req, timeout=3600) as resp:
        headers_at = time.monotonic() - t0
        keepalives, text = [], ""
        for line in resp:
            line = line.decode()
            if line.startswith(": keep-alive") or line.startswith("event: ping"):
                keepalives.append(round(time.monotonic() - t0, 2))
            text += line
    return {"headers_s": round(headers_at, 3), "keepalives_s": keepalives, "end_s": round(time.monotonic() - t0, 2),
            "answered": "Done." in text}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--aigw", help="the aigw binary (default: build target/release/aigw)")
    ap.add_argument("--think", type=float, default=150.0, help="seconds the model thinks before it answers")
    ap.add_argument("--keepalive", help="the stream keep-alive (default: the gateway's default, 15 s)")
    ap.add_argument("--out", default=str(ROOT / "target" / "bench-silence"))
    opts = ap.parse_args()
    aigw = release_binary(opts.aigw)
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    work = scratch("aigw-silence-")
    server, calls = upstream(opts.think)
    base = f"http://127.0.0.1:{server.server_address[1]}/v1"
    stream = f'stream = {{ keepalive = "{opts.keepalive}" }}' if opts.keepalive else ""
    (work / "gateway.toml").write_text(f"""
[server]
listen = "127.0.0.1:0"
[[keys]]
name = "bench"
env = "AIGW_BENCH_KEY"
[[upstreams]]
name = "openai-style"
kind = "openai"
base_url = "{base}"
[[upstreams]]
name = "claude-api"
kind = "anthropic"
base_url = "{base}"
[[models]]
name = "reasoner"
max_output_tokens = 1000
routes = [{{ upstream = "openai-style", model = "up" }}]
[[models]]
name = "claude"
max_output_tokens = 1000
routes = [{{ upstream = "claude-api", model = "claude" }}]
[model_defaults]
{stream}
""")
    gateway = Proc([aigw, "serve", "--config", str(work / "gateway.toml"), "--listen", "127.0.0.1:0",
                    "--admin-listen", "127.0.0.1:0"], work / "gateway.log", r"aigw listening addr=(\S+) admin=(\S+)",
                   env={"AIGW_BENCH_KEY": KEY})
    addr = gateway.match.group(1)
    results = {}
    try:
        for name, path, model in [("chat completions → silent OpenAI-style model", "/v1/chat/completions", "reasoner"),
                                  ("Messages → Anthropic model pinging every 10 s", "/v1/messages", "claude")]:
            before = len(calls)
            body = {"model": model, "stream": True, "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}
            seen = watch(f"http://{addr}{path}", body, {"authorization": f"Bearer {KEY}"})
            seen["upstream_calls"] = len(calls) - before
            results[name] = seen
            print(f"{name}: {json.dumps(seen)}", file=sys.stderr)
    finally:
        gateway.stop()
        server.shutdown()
    lines = [f"A think of {opts.think:g} s before the answer (keep-alive {opts.keepalive or 'default, 15 s'}):", "",
             "| door → upstream | headers after | keep-alives at (s) | answered | upstream calls |",
             "|---|---:|---|---|---:|"]
    for name, r in results.items():
        beats = ", ".join(f"{t:g}" for t in r["keepalives_s"]) or "none"
        lines.append(f"| {name} | {r['headers_s']:.3f} s | {beats} | {'yes' if r['answered'] else 'no'} at "
                     f"{r['end_s']:g} s | {r['upstream_calls']} |")
    text = "\n".join(lines)
    print(text)
    (out / "silence.md").write_text(text + "\n")
    (out / "silence.json").write_text(json.dumps({"machine": machine(), "settings": vars(opts),
                                                  "results": results}, indent=1))
    if not all(r["answered"] and r["upstream_calls"] == 1 for r in results.values()):
        sys.exit("a call was not answered by exactly one upstream call")


if __name__ == "__main__":
    main()
