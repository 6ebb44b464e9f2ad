#!/usr/bin/env python3
"""Is build A cheaper than build B? Gateway CPU per call of two aigw binaries, in paired short runs.

A change worth a few percent hides in this VM's drift (±15% between runs minutes apart), which `floor.py
--baseline` meets with a few long interleaved rounds. This meets it with many short pairs instead: one upstream,
both gateways up at once, and per pair a run on each (the order alternating, ABBA), on the REST door (wrk) and
gRPC `Generate` (h2load), 32 in flight. Drift between the two runs of a pair is small, so the pair's difference
is what the change costs; the median difference and how many pairs A won say how sure that is.

The same binary twice with `--b-env` or `--b-config` measures what one feature costs: B runs with the feature
off (say `--b-env RUST_LOG=warn`: no log line per call), A with the default config.

Usage: python3 bench/ab.py A_BINARY B_BINARY [--pairs 20] [--seconds 4] [--b-env K=V ...] [--b-config FILE]
                           [--a-config FILE] [--out DIR]
"""

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare import GATEWAY_CONFIG, KEY, ROOT, Proc, machine, measured, scratch  # noqa: E402
from floor import grpc_body, h2load, wrk  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--pairs", type=int, default=20)
    ap.add_argument("--seconds", type=int, default=4)
    ap.add_argument("--a-config", help="A's config, a template with {upstream} (default: compare.py's)")
    ap.add_argument("--b-config", help="B's config, likewise")
    ap.add_argument("--b-env", action="append", default=[], metavar="K=V", help="an environment variable for B")
    ap.add_argument("--out", default=str(ROOT / "target" / "bench-ab"))
    opts = ap.parse_args()
    work = scratch("aigw-ab-")
    upstream = Proc([opts.a, "mock-upstream", "--listen", "127.0.0.1:0"], work / "upstream.log",
                    r"listening addr=(\S+)")
    envs = {"a": {"AIGW_BENCH_KEY": KEY}, "b": {"AIGW_BENCH_KEY": KEY, **dict(e.split("=", 1) for e in opts.b_env)}}
    for name, path in [("a", opts.a_config), ("b", opts.b_config)]:
        template = Path(path).read_text() if path else GATEWAY_CONFIG
        (work / f"gateway-{name}.toml").write_text(template.format(upstream=upstream.match.group(1)))
    gateways = [Proc([binary, "serve", "--config", str(work / f"gateway-{name}.toml"), "--listen", "127.0.0.1:0",
                      "--admin-listen", "127.0.0.1:0"], work / f"gateway-{name}.log",
                     r"aigw listening addr=(\S+) admin=(\S+)", env=envs[name])
                for name, binary in [("a", opts.a), ("b", opts.b)]]
    procs = [upstream] + gateways
    body = json.dumps({"model": "bench", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16},
                      separators=(",", ":"))
    generate = work / "generate.bin"
    generate.write_bytes(grpc_body(16))

    def cpu_per_call(which, door, seconds):
        addr = gateways[which].match.group(1)
        if door == "rest":
            load = lambda: wrk(f"http://{addr}/v1/chat/completions", body, seconds, work)  # noqa: E731
        else:
            load = lambda: h2load(f"http://{addr}/holysheepai.AIService/Generate", generate, seconds)  # noqa: E731
        (calls, errors, _), cpu = measured(procs, load)
        if errors or not calls:
            sys.exit(f"{door} through gateway {'ab'[which]}: {errors} of {calls} calls failed")
        return cpu[which + 1] / calls * 1e6

    runs = {door: ([], []) for door in ("rest", "grpc")}
    try:
        for which in (0, 1):  # warm pools and allocator arenas
            cpu_per_call(which, "rest", 1)
            cpu_per_call(which, "grpc", 1)
        for pair in range(opts.pairs):
            for door, (a, b) in runs.items():
                for which in ((0, 1) if pair % 2 == 0 else (1, 0)):
                    (a, b)[which].append(cpu_per_call(which, door, opts.seconds))
            print(f"pair {pair + 1}: " + ", ".join(f"{door} A {a[-1]:.1f} B {b[-1]:.1f} µs"
                                                    for door, (a, b) in runs.items()), file=sys.stderr)
    finally:
        for p in procs:
            p.stop()

    lines = []
    for door, (a, b) in runs.items():
        wins = sum(x < y for x, y in zip(a, b))
        diff = statistics.median(x - y for x, y in zip(a, b))
        lines.append(f"{door}: A {statistics.median(a):.1f} µs, B {statistics.median(b):.1f} µs per call (medians); "
                     f"A − B per pair: {diff:+.1f} µs (median); A cheaper in {wins} of {len(a)} pairs")
    text = "\n".join(lines) + (f"\n\n{opts.pairs} pairs of {opts.seconds} s per door, 32 in flight. "
                               f"A: {opts.a}" + (f", config {opts.a_config}" if opts.a_config else "") + f". B: {opts.b}"
                               + "".join(f", {e}" for e in opts.b_env)
                               + (f", config {opts.b_config}" if opts.b_config else "") + ".")
    print(text)
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ab.md").write_text(text + "\n")
    (out / "ab.json").write_text(json.dumps({"machine": machine(), "settings": vars(opts),
                                             "runs": {d: {"a": a, "b": b} for d, (a, b) in runs.items()}}, indent=1))


if __name__ == "__main__":
    main()
