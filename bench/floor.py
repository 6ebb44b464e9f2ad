#!/usr/bin/env python3
"""The gateway's CPU per call against the floor: a do-nothing upstream's own CPU per call, in the same run.

Load comes from peers' tools, not ours: wrk for REST (OpenAI chat completions) and h2load for gRPC (a framed
`GenerateRequest`), 32 calls in flight. Each round measures, one after the other on this machine:
  1. `aigw mock-upstream` answered directly by wrk: its calls/s and CPU per call (the floor's unit);
  2. the REST door (`POST /v1/chat/completions`) through the gateway to that upstream;
  3. gRPC `Generate` through the gateway;
  4. gRPC `StreamGenerate` of 256-token answers: chunks relayed per gateway CPU-second;
  5. `examples/bare_proxy.rs` in aigw's place (wrk): a do-nothing HTTP/1.1 proxy on the same hyper stack, the
     least any gateway pays here for a server side, a client side and the kernel's loopback work; the same
     proxy with reqwest as its client (`--reqwest`), as aigw's is; and its gRPC mode (`--grpc`, h2load): an
     HTTP/2 server that posts a fixed chat request through reqwest and answers the upstream's body in one gRPC
     frame, the floor of the gRPC door without protobuf, JSON or tonic.
CPU is each process's own accounting (/proc/PID/stat, all threads). Three rounds; the table shows medians and
the min–max. Needs wrk and h2load (Debian: wrk, nghttp2-client); Linux only.

Usage: python3 bench/floor.py [--aigw PATH] [--baseline PATH] [--upstream-aigw PATH] [--bare-proxy PATH]
                             [--upstream-http2]
                             [--duration 8] [--rounds 3] [--out DIR] [--smoke]
"""

import argparse
import json
import re
import shutil
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare import (GATEWAY_CONFIG, KEY, ROOT, Proc, machine, measured, release_binary, scratch,  # noqa: E402
                     table)

IN_FLIGHT = 32


def field(number, payload):
    """A length-delimited protobuf field."""
    return bytes([number << 3 | 2]) + varint(len(payload)) + payload


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def grpc_body(max_tokens):
    """A gRPC-framed GenerateRequest (StreamGenerateRequest has the same fields)."""
    message = field(1, b"user") + field(2, b"hi")
    request = field(1, b"bench") + field(2, message)
    if max_tokens:
        request += field(3, bytes([2 << 3]) + varint(max_tokens))
    return b"\x00" + struct.pack(">I", len(request)) + request


def wrk(url, body, seconds, out):
    script = out / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = '{body}'\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {KEY}"\n')
    done = subprocess.run(["wrk", "-t1", f"-c{IN_FLIGHT}", f"-d{seconds}s", "-s", str(script), url],
                          capture_output=True, text=True, timeout=seconds * 4 + 30)
    text = done.stdout
    calls = int(re.search(r"(\d+) requests in", text).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errors = int(bad.group(1)) if bad else 0
    return calls, errors, text


def h2load(url, body_path, seconds):
    # 4 connections x 8 streams: 32 calls in flight, as wrk's 32 connections.
    done = subprocess.run(["h2load", "-t1", "-c4", f"-m{IN_FLIGHT // 4}", "-D", str(seconds), "-d", str(body_path),
                           "-H", "content-type: application/grpc", "-H", "te: trailers",
                           "-H", f"authorization: Bearer {KEY}", url],
                          capture_output=True, text=True, timeout=seconds * 4 + 30)
    text = done.stdout
    m = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored",
                  text)
    if not m:
        sys.exit(f"h2load said:\n{text}\n{done.stderr}")
    return int(m.group(2)), int(m.group(3)) + int(m.group(4)), text


def bare_proxy_binary():
    """The do-nothing proxy beside which aigw is measured (examples/bare_proxy.rs), built now."""
    subprocess.run(["cargo", "build", "--release", "--locked", "--example", "bare_proxy"], cwd=ROOT, check=True)
    return str(ROOT / "target" / "release" / "examples" / "bare_proxy")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--aigw", help="the aigw binary (default: build target/release/aigw)")
    ap.add_argument("--upstream-aigw", help="the binary whose mock-upstream is the floor (default: --aigw); a "
                    "fixed build keeps the floor still while the gateway changes")
    ap.add_argument("--baseline", help="a second aigw binary measured in the same rounds, interleaved with the "
                    "first: a before/after on one run, where the VM's drift hits both alike")
    ap.add_argument("--bare-proxy", help="the bare_proxy example binary (default: build it)")
    ap.add_argument("--upstream-http2", action="store_true",
                    help="the gateway speaks HTTP/2 to the upstream (`http2 = true`) instead of an HTTP/1.1 pool")
    ap.add_argument("--duration", type=int, default=8, help="seconds per measurement")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=16, help="tokens in each unary answer")
    ap.add_argument("--stream-tokens", type=int, default=256)
    ap.add_argument("--out", default=str(ROOT / "target" / "bench-floor"))
    ap.add_argument("--smoke", action="store_true", help="a few seconds in all: checks the script, not speed")
    opts = ap.parse_args()
    if opts.smoke:
        opts.duration, opts.rounds, opts.stream_tokens = 1, 1, 32
    for tool in ["wrk", "h2load"]:
        if not shutil.which(tool):
            sys.exit(f"{tool} is not installed (Debian: apt-get install wrk nghttp2-client)")
    aigw = release_binary(opts.aigw)
    bare = opts.bare_proxy or bare_proxy_binary()
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    work = scratch("aigw-floor-")
    upstream = Proc([opts.upstream_aigw or aigw, "mock-upstream", "--listen", "127.0.0.1:0", "--tokens", str(opts.stream_tokens)],
                    work / "upstream.log", r"listening addr=(\S+)")
    gateway_config = GATEWAY_CONFIG.format(upstream=upstream.match.group(1))
    if opts.upstream_http2:
        gateway_config = gateway_config.replace("pool_max_idle = 1024", "pool_max_idle = 1024\nhttp2 = true")
        assert "http2 = true" in gateway_config
    (work / "gateway.toml").write_text(gateway_config)
    # The gateway under test, and the baseline if one is given: ("", proc), ("baseline ", proc).
    gateways = [(name, Proc([binary, "serve", "--config", str(work / "gateway.toml"), "--listen", "127.0.0.1:0",
                             "--admin-listen", "127.0.0.1:0"], work / f"gateway{i}.log",
                            r"aigw listening addr=(\S+) admin=(\S+)", env={"AIGW_BENCH_KEY": KEY}))
                for i, (name, binary) in enumerate([("", aigw)] + ([("baseline ", opts.baseline)]
                                                                  if opts.baseline else []))]
    up = upstream.match.group(1)
    body = json.dumps({"model": "bench", "messages": [{"role": "user", "content": "hi"}],
                       "max_tokens": opts.tokens}, separators=(",", ":"))
    unary_body = work / "generate.bin"
    unary_body.write_bytes(grpc_body(opts.tokens))
    stream_body = work / "stream.bin"
    stream_body.write_bytes(grpc_body(0))
    d = opts.duration

    def rest(addr, seconds):
        return wrk(f"http://{addr}/v1/chat/completions", body, seconds, work)

    def generate(addr, seconds):
        return h2load(f"http://{addr}/holysheepai.AIService/Generate", unary_body, seconds)

    # The do-nothing proxy in its three modes, each measured with its door's load.
    bares = [(name, Proc([bare, "127.0.0.1:0", f"http://{up}", *mode], work / f"{name.replace(' ', '-')}.log",
                         r"listening addr=(\S+)"), load)
             for name, mode, load in [("bare", [], rest), ("bare reqwest", ["--reqwest"], rest),
                                      ("bare grpc", ["--grpc"], generate)]]
    procs = [upstream] + [p for _, p, _ in bares] + [g for _, g in gateways]

    def unary(load, addr, proc):
        """One unary row: `load` on `addr`, with `proc`'s CPU per call and the upstream's."""
        (calls, bad, _), cpu = measured(procs, lambda: load(addr, d))
        return {"calls_s": calls / d, "gateway_us": cpu[procs.index(proc)] / calls * 1e6,
                "upstream_us": cpu[0] / calls * 1e6, "errors": bad}

    rounds = []
    try:
        # Warm all (pools, allocator arenas, page cache) before anything is counted.
        for _, p, load in bares:
            load(p.match.group(1), 1)
        for _, g in gateways:
            rest(g.match.group(1), 1)
            generate(g.match.group(1), 1)
        for r in range(opts.rounds):
            row = {}
            (calls, bad, _), cpu = measured(procs, lambda: rest(up, d))
            row["direct"] = {"calls_s": calls / d, "upstream_us": cpu[0] / calls * 1e6, "errors": bad}
            # Gateways take turns, each starting first in every other round.
            for name, g in gateways if r % 2 == 0 else gateways[::-1]:
                gw = g.match.group(1)
                row[name + "rest"] = unary(rest, gw, g)
                row[name + "grpc"] = unary(generate, gw, g)
                (calls, bad, _), cpu = measured(
                    procs, lambda: h2load(f"http://{gw}/holysheepai.AIService/StreamGenerate", stream_body, d))
                row[name + "stream"] = {"calls_s": calls / d,
                                        "chunks_per_cpu_s": calls * opts.stream_tokens / cpu[procs.index(g)],
                                        "errors": bad}
            for name, p, load in bares:
                row[name] = unary(load, p.match.group(1), p)
            rounds.append(row)
            print(f"round {r + 1}: {json.dumps(row)}", file=sys.stderr)
    finally:
        for _, p, _ in bares:
            p.stop()
        for _, g in gateways:
            g.stop()
        upstream.stop()

    def med(kind, key):
        values = [r[kind][key] for r in rounds]
        return statistics.median(values), min(values), max(values)

    def cell(kind, key, fmt="{:,.1f}"):
        m, lo, hi = med(kind, key)
        return fmt.format(m) + (f" ({fmt.format(lo)}–{fmt.format(hi)})" if len(rounds) > 1 else "")

    floor = med("direct", "upstream_us")[0]
    rows = [["`aigw mock-upstream` answering directly (wrk)", cell("direct", "calls_s", "{:,.0f}"),
             "—", cell("direct", "upstream_us"), "1x"]]
    kinds = [("rest", "aigw REST door → mock-upstream (wrk)"),
             ("grpc", "aigw gRPC `Generate` → mock-upstream (h2load)")]
    if opts.baseline:
        kinds += [("baseline " + k, "baseline: " + n) for k, n in kinds]
    for kind, name in kinds + [("bare", "`bare_proxy` (no gateway work) → mock-upstream (wrk)"),
                               ("bare reqwest", "`bare_proxy --reqwest` → mock-upstream (wrk)"),
                               ("bare grpc", "`bare_proxy --grpc` → mock-upstream (h2load)")]:
        rows.append([name, cell(kind, "calls_s", "{:,.0f}"), cell(kind, "gateway_us"),
                     cell(kind, "upstream_us"), f"{med(kind, 'gateway_us')[0] / floor:.1f}x"])
    text = table(["", "calls/s", "gateway CPU per call (µs)", "upstream CPU per call (µs)",
                  "gateway ÷ upstream direct"], rows)
    text += (f"\n\nStreams of {opts.stream_tokens} tokens over gRPC (h2load, {IN_FLIGHT} in flight): "
             f"{cell('stream', 'chunks_per_cpu_s', '{:,.0f}')} chunks per gateway CPU-second, "
             f"{cell('stream', 'calls_s', '{:,.0f}')} streams/s.")
    if opts.baseline:
        text += (f" Baseline: {cell('baseline stream', 'chunks_per_cpu_s', '{:,.0f}')} chunks per CPU-second, "
                 f"{cell('baseline stream', 'calls_s', '{:,.0f}')} streams/s. Baseline binary: {opts.baseline}.")
    errors = sum(r[k]["errors"] for r in rounds for k in r)
    text += f"\n\n{opts.rounds} rounds of {opts.duration} s each, medians (min–max); errors: {errors}."
    if opts.upstream_aigw:
        text += f" Upstream binary: {opts.upstream_aigw}."
    if opts.upstream_http2:
        text += " The gateway spoke HTTP/2 to the upstream (`http2 = true`)."
    print(text)
    (out / "floor.md").write_text(text + "\n")
    (out / "floor.json").write_text(json.dumps({"machine": machine(), "settings": vars(opts), "rounds": rounds},
                                               indent=1))
    if errors:
        sys.exit(f"{errors} calls failed")


if __name__ == "__main__":
    main()
