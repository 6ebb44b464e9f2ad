#!/usr/bin/env python3
"""Goodput under faults: the share of calls that end OK through aigw versus a direct client with three retries,
in front of `aigw mock-upstream` injecting faults, and the gateway's CPU per call meanwhile.

For each upstream error rate E (default 0, 10, 20, 40 %) the upstream answers E/2 of calls with 503 and E/2 with
429, both with Retry-After 1 s, and breaks E/4 of the remaining streams (E/16 each by disconnect, truncation, a
stall and a malformed chunk). A last row runs the resilience issue's mix: 10 % 503 + 10 % 429 and 5 % of each
stream fault (stall 8 s). Each row is N calls (default 400), half unary, half streamed, 16 in flight:
  - through aigw: `aigw bench` (Generate, then StreamGenerate) against `aigw serve` with attempts = 3; a stream
    counts as OK only when it ended with its final chunk;
  - direct: a Python client speaking OpenAI's REST API to the same upstream, three attempts, waiting the
    Retry-After between them, and retrying a stream only before its first content (as the gateway does).
The upstream's own score (`GET /stats`) says how many retries came earlier than their Retry-After.

Only the standard library; Linux only (/proc). Usage: python3 bench/goodput.py [--smoke] [--out DIR]
"""

import argparse
import concurrent.futures
import http.client
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare import release_binary, GATEWAY_CONFIG, KEY, ROOT, Proc, bench, machine, table, scratch  # noqa: E402

MODEL_POLICY = """
[models.policy]
retry = { attempts = 3 }
"""


def faults(rate, issue_mix):
    """mock-upstream flags for one row."""
    if issue_mix:
        errors, stream, stall = (0.1, 0.1), 0.05, "8s"
    else:
        errors, stream, stall = (rate / 2, rate / 2), rate / 16, "2s"
    flags = ["--error-rate", f"503={errors[0]}", "--error-rate", f"429={errors[1]}", "--retry-after", "1s",
             "--stall", stall]
    for kind in ("disconnect", "truncate", "stall", "malformed"):
        flags += ["--stream-fault", f"{kind}={stream}"]
    return flags


def direct_call(addr, stream, timeout):
    """One call straight to the upstream with three attempts; True when it ended OK (streams: [DONE] seen)."""
    host, port = addr.rsplit(":", 1)
    body = json.dumps({"model": "bench", "stream": stream, "max_tokens": 16,
                       "stream_options": {"include_usage": True} if stream else None,
                       "messages": [{"role": "user", "content": "Say hello in one short sentence."}]})
    request_id = f"direct-{time.monotonic_ns()}-{id(body)}"
    for attempt in range(3):
        conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
        started = False
        try:
            conn.request("POST", "/v1/chat/completions", body,
                         {"content-type": "application/json", "x-request-id": request_id})
            resp = conn.getresponse()
            if resp.status in (429, 500, 502, 503, 504):
                wait = float(resp.getheader("retry-after") or 0)
                resp.read()
                if attempt < 2:
                    time.sleep(wait)
                continue
            if resp.status != 200:
                return False
            if not stream:
                json.loads(resp.read())
                return True
            for raw in resp:
                line = raw.decode("utf-8", "replace").strip()
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    return True
                chunk = json.loads(data)  # a malformed chunk raises: the stream failed
                choices = chunk.get("choices") or [{}]
                if (choices[0].get("delta") or {}).get("content"):
                    started = True
            if started:
                return False  # cut after content reached the user: no retry
        except (OSError, ValueError, http.client.HTTPException):
            if started:
                return False
        finally:
            conn.close()
    return False


def direct(addr, calls, concurrency, timeout):
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        outcomes = list(pool.map(lambda i: direct_call(addr, i % 2 == 1, timeout), range(calls)))
    return sum(outcomes)


def stats(addr):
    conn = http.client.HTTPConnection(*addr.rsplit(":", 1), timeout=10)
    conn.request("GET", "/stats")
    return json.loads(conn.getresponse().read())


def row(aigw, opts, work, raw, rate, issue_mix):
    name = "issue-mix" if issue_mix else f"e{int(rate * 100)}"
    upstream_args = [aigw, "mock-upstream", "--listen", "127.0.0.1:0", "--tokens", "16", "--seed", "7"]
    upstream = Proc(upstream_args + faults(rate, issue_mix), work / f"{name}-upstream.log",
                    r"listening addr=(\S+)")
    addr = upstream.match.group(1)
    config = work / f"{name}.toml"
    config.write_text(GATEWAY_CONFIG.format(upstream=addr) + MODEL_POLICY)
    gateway = Proc([aigw, "serve", "--config", str(config), "--listen", "127.0.0.1:0", "--admin-listen",
                    "127.0.0.1:0"], work / f"{name}-gateway.log", r"aigw listening addr=(\S+) admin=(\S+)",
                   env={"AIGW_BENCH_KEY": KEY})
    try:
        half = opts.calls // 2
        load = ["--target", f"http://{gateway.match.group(1)}", "--concurrency", 16, "--requests", half,
                "--warmup", "0s", "--duration", "600s", "--timeout", "60s", "--max-tokens", 16]
        cpu0 = gateway.cpu_seconds()
        reports = [bench(aigw, ["--rpc", rpc, *load], raw, f"{name}-{rpc}") for rpc in ("generate", "stream")]
        cpu = gateway.cpu_seconds() - cpu0
        through = stats(addr)
        ok = sum(r["ok"] for r in reports)
        calls = sum(r["ok"] + sum(r["errors"].values()) for r in reports)
        errors = {}
        for r in reports:
            for code, n in r["errors"].items():
                errors[code] = errors.get(code, 0) + n
        before = stats(addr)
        direct_ok = direct(addr, opts.calls, 16, 60)
        after = stats(addr)
        return {
            "row": name, "error_rate": None if issue_mix else rate, "calls": calls, "aigw_ok": ok,
            "aigw_errors": errors, "upstream_requests_aigw": through["requests"],
            "early_retries_aigw": through["early_retries"], "direct_ok": direct_ok,
            "upstream_requests_direct": after["requests"] - before["requests"],
            "gateway_cpu_us_per_call": round(cpu * 1e6 / max(calls, 1)),
        }
    finally:
        gateway.stop()
        upstream.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--aigw", help="the aigw binary (default: build target/release/aigw)")
    ap.add_argument("--rates", default="0,0.1,0.2,0.4", help="upstream error rates")
    ap.add_argument("--calls", type=int, default=400, help="calls per row, half unary, half streamed")
    ap.add_argument("--out", default=str(ROOT / "target" / "bench-goodput"), help="directory for the results")
    ap.add_argument("--smoke", action="store_true", help="a few calls per row: checks the script, not figures")
    opts = ap.parse_args()
    if opts.smoke:
        opts.rates, opts.calls = "0,0.2", 40
    aigw = release_binary(opts.aigw)
    out = Path(opts.out)
    raw = out / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    work = scratch("aigw-goodput-")
    rows = [row(aigw, opts, work, raw, float(r), False) for r in opts.rates.split(",")]
    if not opts.smoke:
        rows.append(row(aigw, opts, work, raw, 0.0, True))
    results = {"machine": machine(), "settings": vars(opts), "rows": rows}
    (out / "goodput.json").write_text(json.dumps(results, indent=2))
    md = table(
        ["faults", "calls", "OK through aigw", "OK direct, 3 retries", "upstream calls (aigw / direct)",
         "early retries", "gateway CPU µs/call", "aigw errors"],
        [[r["row"], r["calls"], f"{r['aigw_ok']} ({100 * r['aigw_ok'] / max(r['calls'], 1):.1f} %)",
          f"{r['direct_ok']} ({100 * r['direct_ok'] / max(r['calls'], 1):.1f} %)",
          f"{r['upstream_requests_aigw']} / {r['upstream_requests_direct']}", r["early_retries_aigw"],
          r["gateway_cpu_us_per_call"], ", ".join(f"{k} {v}" for k, v in sorted(r["aigw_errors"].items())) or "-"]
         for r in rows])
    (out / "goodput.md").write_text(md + "\n")
    print(md)


if __name__ == "__main__":
    main()
