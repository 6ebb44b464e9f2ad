#!/usr/bin/env python3
"""Soak: a long mixed load on one gateway, watching whether its memory or open file descriptors grow.

It starts `aigw mock-upstream` and `aigw serve` on loopback, then for --duration keeps four loads running at
once, each a loop of one-minute `aigw bench` runs:
  - unary `Generate` at --rate calls a second (open loop, as are the others);
  - `StreamGenerate` at half that rate, 64-token streams paced at 2,000 tokens a second;
  - `InteractiveStream` sessions of 3 turns at a tenth of it;
  - cancellations, at a tenth of it: streams whose client gives up after 20 ms, mid-answer (the gateway must
    drop the upstream call and free everything it held for it).
Every --every seconds it samples the gateway's resident memory (VmRSS) and its open descriptors
(/proc/<pid>/fd). Growth is the median of the last 10 % of samples over the median of the first 10 % after
--warmup, in percent. It prints a summary and writes every sample to --out/soak.json.

Only the standard library; Linux only (/proc). Usage: python3 bench/soak.py [--duration 1h] [--smoke]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare import release_binary, GATEWAY_CONFIG, KEY, ROOT, Proc, machine, scratch  # noqa: E402


def seconds(text):
    units = {"s": 1, "m": 60, "h": 3600}
    return float(text[:-1]) * units[text[-1]] if text[-1] in units else float(text)


def load(aigw, target, args, until, out, name, counts):
    """Runs `aigw bench` with `args` in one-minute runs until `until`, adding up its calls and errors."""
    i = 0
    while time.monotonic() < until:
        left = until - time.monotonic()
        run = round(min(60.0, max(left, 1.0)), 3)
        path = out / f"{name}-{i}.json"
        cmd = [aigw, "bench", "--target", target, "--model", "bench", "--warmup", "0s", "--duration", f"{run}s",
               "--json", str(path), *map(str, args)]
        done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "AIGW_BENCH_KEY": KEY},
                              timeout=run + 120)
        try:
            report = json.loads(path.read_text())
            counts[name]["ok"] += report["ok"]
            for code, n in report["errors"].items():
                counts[name]["errors"][code] = counts[name]["errors"].get(code, 0) + n
            path.unlink()
        except (OSError, ValueError, KeyError):
            counts[name]["failed_runs"] += 1
            counts[name]["last_failure"] = done.stderr.strip()[-300:]
        i += 1


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def growth(samples, key, warmup):
    after = [s[key] for s in samples if s["t"] >= warmup]
    if len(after) < 10:
        return None, None, None
    tenth = max(len(after) // 10, 1)
    first, last = statistics.median(after[:tenth]), statistics.median(after[-tenth:])
    return first, last, 100.0 * (last - first) / first


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--aigw", help="the aigw binary (default: build target/release/aigw)")
    ap.add_argument("--duration", default="1h", help="how long the load runs, e.g. 30m, 1h")
    ap.add_argument("--warmup", default="5m", help="samples before this are not compared")
    ap.add_argument("--every", type=float, default=5.0, help="seconds between samples")
    ap.add_argument("--rate", type=int, default=200, help="unary calls a second")
    ap.add_argument("--out", default=str(ROOT / "target" / "bench-soak"), help="directory for the results")
    ap.add_argument("--smoke", action="store_true", help="20 seconds: checks the script, not the figures")
    opts = ap.parse_args()
    if opts.smoke:
        opts.duration, opts.warmup, opts.every, opts.rate = "20s", "2s", 1.0, 50
    aigw = release_binary(opts.aigw)
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    work = scratch("aigw-soak-")
    duration, warmup = seconds(opts.duration), seconds(opts.warmup)

    upstream = Proc([aigw, "mock-upstream", "--listen", "127.0.0.1:0", "--tokens", "64", "--tokens-per-second",
                     "2000"], work / "upstream.log", r"listening addr=(\S+)")
    (work / "gateway.toml").write_text(GATEWAY_CONFIG.format(upstream=upstream.match.group(1)))
    gateway = Proc([aigw, "serve", "--config", str(work / "gateway.toml"), "--listen", "127.0.0.1:0",
                    "--admin-listen", "127.0.0.1:0"], work / "gateway.log",
                   r"aigw listening addr=(\S+) admin=(\S+)", env={"AIGW_BENCH_KEY": KEY})
    target = f"http://{gateway.match.group(1)}"
    loads = {
        "unary": ["--rpc", "generate", "--rate", opts.rate, "--max-tokens", 16],
        "streams": ["--rpc", "stream", "--rate", opts.rate // 2],
        "sessions": ["--rpc", "interactive", "--rate", max(opts.rate // 10, 1), "--turns", 3, "--max-tokens", 16],
        "cancellations": ["--rpc", "stream", "--rate", max(opts.rate // 10, 1), "--timeout", "20ms"],
    }
    counts = {name: {"ok": 0, "errors": {}, "failed_runs": 0} for name in loads}
    samples = []
    start = time.monotonic()
    until = start + duration
    try:
        threads = [threading.Thread(target=load, args=(aigw, target, args, until, work, name, counts))
                   for name, args in loads.items()]
        for t in threads:
            t.start()
        while time.monotonic() < until:
            samples.append({"t": round(time.monotonic() - start, 1), "rss_kib": gateway.rss_kib(),
                            "fds": open_fds(gateway.pid)})
            time.sleep(opts.every)
        for t in threads:
            t.join()
        time.sleep(2)  # let the last calls end
        idle = {"rss_kib": gateway.rss_kib(), "fds": open_fds(gateway.pid)}
    finally:
        gateway.stop()
        upstream.stop()
    rss = growth(samples, "rss_kib", warmup)
    fds = growth(samples, "fds", warmup)
    result = {"machine": machine(), "settings": vars(opts), "calls": counts, "idle_after": idle,
              "rss_kib": {"after_warmup": rss[0], "end": rss[1], "growth_percent": rss[2]},
              "fds": {"after_warmup": fds[0], "end": fds[1], "growth_percent": fds[2]},
              "peak_rss_kib": max(s["rss_kib"] for s in samples), "samples": samples}
    (out / "soak.json").write_text(json.dumps(result, indent=2))
    pct = lambda g: "n/a" if g is None else f"{g:+.1f} %"
    print(f"soak {opts.duration}: RSS {rss[0]} -> {rss[1]} KiB ({pct(rss[2])}), peak {result['peak_rss_kib']} KiB; "
          f"open fds {fds[0]} -> {fds[1]} ({pct(fds[2])}); after the load: {idle}")
    for name, c in counts.items():
        print(f"  {name}: {c['ok']} OK, errors {c['errors'] or '-'}, failed runs {c['failed_runs']}"
              + (f" (last: {c['last_failure']})" if c.get("last_failure") else ""))


if __name__ == "__main__":
    main()
