#!/usr/bin/env python3
"""The gateway's overhead, measured: the same workload sent straight to a fast OpenAI-style upstream over REST
and through aigw over gRPC, on one machine, with `aigw bench` as the load generator for both.

It starts `aigw mock-upstream` and `aigw serve` (both on loopback, random ports), then measures:
  1. memory: resident size idle and with N idle InteractiveStream sessions held open (on the fresh process);
  2. unary latency added (p50, p99) at fixed arrival rates, the highest rate whose added p99 stays under 1 ms,
     and the gateway's CPU per call (from /proc/<pid>/stat: the process's own accounting);
  3. the most unary calls per second the gateway sustains here (closed loop) and its CPU per call then;
  4. streams: time to first token added, and chunks relayed per gateway CPU-second;
  5. payload: bytes per request and response, gRPC vs the same OpenAI JSON/SSE.
It prints Markdown tables (the ones in BENCHMARKS.md) and writes them, with every raw report, to --out.

Only the standard library; Linux only (/proc). Usage: python3 bench/compare.py [--smoke] [--out DIR]
"""

import argparse
import atexit
import json
import os
import statistics
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEY = "sk-bench-not-a-secret-0001"
TICK = os.sysconf("SC_CLK_TCK")

GATEWAY_CONFIG = """
[server]
listen = "127.0.0.1:0"
shutdown_grace = "5s"
[admin]
listen = "127.0.0.1:0"
[log]
format = "text"
[limits]
max_in_flight = 1000000
[limits.default]
concurrency = 1000000
[[keys]]
name = "bench"
env = "AIGW_BENCH_KEY"
[[upstreams]]
name = "fast"
kind = "openai"
base_url = "http://{upstream}/v1"
pool_max_idle = 1024
[[models]]
name = "bench"
max_output_tokens = 100000
routes = [{{ upstream = "fast", model = "bench" }}]
"""


def scratch(prefix):
    """A work folder for the processes' configs and logs, removed when the script exits (each run used to leave
    one in /tmp). `AIGW_KEEP_WORK=1` keeps it, and says where, for reading the logs after a failure."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    if os.environ.get("AIGW_KEEP_WORK"):
        print(f"work folder kept: {work}", file=sys.stderr)
    else:
        atexit.register(shutil.rmtree, work, ignore_errors=True)
    return work


class Proc:
    """A child process whose stderr is drained (to a file) so it never blocks on a full pipe."""

    def __init__(self, args, log_path, ready, env=None, wait=30):
        self.log = open(log_path, "w", buffering=1)  # line by line: a script may read it as it grows
        self.proc = subprocess.Popen(args, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                                     env={**os.environ, **(env or {})})
        self.match = None
        found = threading.Event()

        def pump():
            for line in self.proc.stderr:
                self.log.write(line)
                if self.match is None:
                    m = re.search(ready, line)
                    if m:
                        self.match = m
                        found.set()
            self.log.flush()

        threading.Thread(target=pump, daemon=True).start()
        if not found.wait(wait):
            self.stop()
            sys.exit(f"{args[0]} {args[1]} did not start; see {log_path}")

    @property
    def pid(self):
        return self.proc.pid

    def cpu_seconds(self):
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime, all threads

    def rss_kib(self):
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def release_binary(given):
    """The aigw binary to measure: `given`, or the release build (built now)."""
    if given:
        return given
    subprocess.run(["cargo", "build", "--release", "--locked", "--bin", "aigw"], cwd=ROOT, check=True)
    return str(ROOT / "target" / "release" / "aigw")


def bench(aigw, args, out_dir, name):
    """Runs `aigw bench` with `args`; returns its JSON report."""
    path = out_dir / f"{name}.json"
    cmd = [aigw, "bench", "--model", "bench", "--json", str(path), *map(str, args)]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "AIGW_BENCH_KEY": KEY},
                          timeout=600)
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stderr}")
    return json.loads(path.read_text())


def measured(procs, fn):
    """Runs fn() and returns (its result, [CPU seconds each of procs spent meanwhile])."""
    before = [p.cpu_seconds() for p in procs]
    result = fn()
    return result, [p.cpu_seconds() - b for p, b in zip(procs, before)]


def pct(report, section, q):
    s = report.get(section) or {}
    return s.get(q, float("nan"))


SPREAD = ("added_p50_us", "added_p99_us", "in_gateway_p99_us", "gateway_cpu_us_per_call",
          "upstream_cpu_us_per_call")


def spread(values):
    """min–max of a list, as whole numbers."""
    lo, hi = min(values), max(values)
    return f"{lo:.0f}" if round(lo) == round(hi) else f"{lo:.0f}–{hi:.0f}"


def table(headers, rows):
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---:" for _ in headers) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(lines)


def errors(report):
    return sum(report["errors"].values())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--aigw", help="the aigw binary (default: build target/release/aigw)")
    ap.add_argument("--rates", default="500,1000,2000,3000,4000,5000,6000,8000",
                    help="unary arrival rates per second, ascending")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per measured run")
    ap.add_argument("--repeat", type=int, default=3, help="runs per unary rate (the table shows medians)")
    ap.add_argument("--tokens", type=int, default=16, help="tokens in each unary answer")
    ap.add_argument("--stream-tokens", type=int, default=256, help="tokens (chunks) in each streamed answer")
    ap.add_argument("--streams", default="1000,10000", help="idle sessions held open for the memory figures")
    ap.add_argument("--out", default=str(ROOT / "target" / "bench"), help="directory for the results")
    ap.add_argument("--smoke", action="store_true", help="a few seconds in all: checks the script, not speed")
    opts = ap.parse_args()
    if opts.smoke:
        opts.rates, opts.duration, opts.streams, opts.stream_tokens, opts.repeat = "200,400", 1.0, "50", 32, 1

    aigw = release_binary(opts.aigw)
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    raw = out / "raw"
    raw.mkdir(exist_ok=True)
    work = scratch("aigw-bench-")
    dur = f"{opts.duration}s"
    warm = "0.5s" if opts.smoke else "1s"
    results = {"machine": machine(), "settings": vars(opts)}

    # One upstream for everything: answers as long as the stream runs need; unary calls cap it with max_tokens.
    upstream = Proc([aigw, "mock-upstream", "--listen", "127.0.0.1:0", "--tokens", str(opts.stream_tokens)],
                    work / "upstream.log", r"listening addr=(\S+)")
    (work / "gateway.toml").write_text(GATEWAY_CONFIG.format(upstream=upstream.match.group(1)))
    gateway = Proc([aigw, "serve", "--config", str(work / "gateway.toml"), "--listen", "127.0.0.1:0",
                    "--admin-listen", "127.0.0.1:0"], work / "gateway.log",
                   r"aigw listening addr=(\S+) admin=(\S+)", env={"AIGW_BENCH_KEY": KEY})
    grpc = f"http://{gateway.match.group(1)}"
    rest = f"http://{upstream.match.group(1)}/v1"
    try:
        time.sleep(0.5)
        results["rss_idle_kib"] = gateway.rss_kib()
        unary = ["--max-tokens", opts.tokens, "--duration", dur, "--warmup", warm]

        # 1. Memory, first, while the process is fresh: idle, then with N idle sessions held open (1,024 streams
        # per HTTP/2 connection at most). Per stream: the growth over idle, divided by the sessions open.
        mem_rows = [["idle", "-", f"{results['rss_idle_kib'] / 1024:.1f}", "-"]]
        results["memory"] = []
        for n in [int(x) for x in opts.streams.split(",")]:
            base = results["rss_idle_kib"]
            hold = 4.0 if opts.smoke else 8.0
            peak, stop = [base], threading.Event()

            def sample():
                while not stop.is_set():
                    peak.append(gateway.rss_kib())
                    time.sleep(0.1)

            sampler = threading.Thread(target=sample)
            sampler.start()
            idle = bench(aigw, ["--target", grpc, "--rpc", "idle", "--concurrency", n,
                                "--connections", max(1, -(-n // 1000)), "--duration", f"{hold}s",
                                "--warmup", "0s"], raw, f"idle-{n}")
            stop.set()
            sampler.join()
            per_stream = (max(peak) - base) * 1024 / max(1, idle["ok"])
            time.sleep(1.0)  # let the sessions' teardown finish before the next step
            results["memory"].append({"streams": n, "opened": idle["ok"], "rss_before_kib": base,
                                      "rss_peak_kib": max(peak), "bytes_per_stream": per_stream})
            mem_rows.append([f"{n} idle InteractiveStream sessions", idle["ok"], f"{max(peak) / 1024:.1f}",
                             f"{per_stream / 1024:.1f}"])
        mem_table = table(["gateway state", "streams open", "RSS MiB", "KiB per stream"], mem_rows)

        # 2. Added latency at fixed rates.
        rows, sweep, span_rows = [], [], []
        best_under_1ms = None
        for rate in [float(r) for r in opts.rates.split(",")]:
            pairs, gw_cpu, up_cpu = [], [], []
            # Repeated, alternating direct and through: one run's p99 moves with whatever else the machine
            # did meanwhile, so the table shows the median of the repeats, and the ranges table their spread.
            for i in range(opts.repeat):
                direct, (u,) = measured([upstream], lambda: bench(
                    aigw, ["--protocol", "rest", "--target", rest, "--rate", rate, *unary], raw,
                    f"unary-direct-{rate:g}-{i}"))
                through, (g,) = measured([gateway], lambda: bench(
                    aigw, ["--target", grpc, "--rate", rate, *unary], raw, f"unary-aigw-{rate:g}-{i}"))
                pairs.append((direct, through))
                # CPU goes to the warm-up's calls too: rate x warm-up of them, on schedule.
                warm_calls = int(rate * through["setup"]["warmup_s"])
                gw_cpu.append(g * 1e6 / max(1, through["calls"] + warm_calls))
                up_cpu.append(u * 1e6 / max(1, direct["calls"] + warm_calls))
            per_run = {
                "achieved_per_s": [t["throughput_per_s"] for d, t in pairs],
                "direct_p50_us": [pct(d, "latency_us", "p50") for d, t in pairs],
                "aigw_p50_us": [pct(t, "latency_us", "p50") for d, t in pairs],
                "added_p50_us": [pct(t, "latency_us", "p50") - pct(d, "latency_us", "p50") for d, t in pairs],
                "direct_p99_us": [pct(d, "latency_us", "p99") for d, t in pairs],
                "aigw_p99_us": [pct(t, "latency_us", "p99") for d, t in pairs],
                "added_p99_us": [pct(t, "latency_us", "p99") - pct(d, "latency_us", "p99") for d, t in pairs],
                "in_gateway_p99_us": [pct(t, "gateway_overhead_us", "p99") for d, t in pairs],
                "gateway_cpu_us_per_call": gw_cpu,
                "upstream_cpu_us_per_call": up_cpu,
            }
            point = {"rate": rate, "runs": [{"direct": d, "aigw": t} for d, t in pairs], "per_run": per_run}
            point.update({k: statistics.median(v) for k, v in per_run.items()})
            point["errors"] = sum(errors(d) + errors(t) for d, t in pairs)
            point["kept_up"] = point["achieved_per_s"] >= 0.95 * rate and point["errors"] == 0
            sweep.append(point)
            rows.append([f"{rate:g}", f"{point['achieved_per_s']:.0f}"]
                        + [f"{point[k]:.0f}" for k in ("direct_p50_us", "aigw_p50_us", "added_p50_us",
                                                      "direct_p99_us", "aigw_p99_us", "added_p99_us",
                                                      "in_gateway_p99_us", "gateway_cpu_us_per_call",
                                                      "upstream_cpu_us_per_call")]
                        + [point["errors"]])
            span_rows.append([f"{rate:g}"] + [spread(per_run[k]) for k in SPREAD] + [
                f"{sum(v < 1000 for v in per_run['added_p99_us'])} of {len(pairs)}"])
            if point["kept_up"] and point["added_p99_us"] < 1000:
                best_under_1ms = rate
            if not point["kept_up"]:
                break
        results["unary_sweep"] = sweep
        results["max_rate_added_p99_under_1ms"] = best_under_1ms
        unary_table = table(["rate/s", "achieved/s", "direct p50", "aigw p50", "added p50", "direct p99",
                             "aigw p99", "added p99", "in-gateway p99", "gateway CPU µs/call",
                             "upstream CPU µs/call", "errors"], rows)
        span_table = table(["rate/s", "added p50", "added p99", "in-gateway p99", "gateway CPU µs/call",
                            "upstream CPU µs/call", "runs with added p99 < 1 ms"], span_rows)

        # 3. Saturation: closed loop, as many calls as the machine allows.
        sat_conc = 8 if opts.smoke else 32
        sat, (cpu,) = measured([gateway], lambda: bench(
            aigw, ["--target", grpc, "--concurrency", sat_conc, "--max-tokens", opts.tokens, "--duration", dur,
                   "--warmup", "0s"], raw, "unary-aigw-saturated"))
        sat_direct = bench(aigw, ["--protocol", "rest", "--target", rest, "--concurrency", sat_conc,
                                  "--max-tokens", opts.tokens, "--duration", dur, "--warmup", "0s"], raw,
                           "unary-direct-saturated")
        results["saturated"] = {"aigw": sat, "direct": sat_direct,
                                "gateway_cpu_us_per_call": cpu * 1e6 / max(1, sat["calls"])}
        sat_table = table(["closed loop", "calls/s", "p50 µs", "p99 µs", "gateway CPU µs/call"], [
            [f"direct REST, {sat_conc} in flight", f"{sat_direct['throughput_per_s']:.0f}",
             f"{pct(sat_direct, 'latency_us', 'p50'):.0f}", f"{pct(sat_direct, 'latency_us', 'p99'):.0f}", "-"],
            [f"through aigw, {sat_conc} in flight", f"{sat['throughput_per_s']:.0f}",
             f"{pct(sat, 'latency_us', 'p50'):.0f}", f"{pct(sat, 'latency_us', 'p99'):.0f}",
             f"{results['saturated']['gateway_cpu_us_per_call']:.0f}"]])

        # 4. Streams: TTFT added at a fixed rate, then chunks per gateway CPU-second flat out.
        srate = 50 if opts.smoke else 200
        sargs = ["--rpc", "stream", "--rate", srate, "--duration", dur, "--warmup", warm]
        sdirect = bench(aigw, ["--protocol", "rest", "--target", rest, *sargs], raw, "stream-direct")
        sthrough = bench(aigw, ["--target", grpc, *sargs], raw, "stream-aigw")
        flats = []
        for i in range(opts.repeat):
            flat, (cpu,) = measured([gateway], lambda: bench(
                aigw, ["--target", grpc, "--rpc", "stream", "--concurrency", 16, "--duration", dur,
                       "--warmup", "0s"], raw, f"stream-aigw-saturated-{i}"))
            flats.append((flat, flat["chunks"] / cpu if cpu > 0 else float("nan")))
        per_cpu_runs = [c for _, c in flats]
        chunks_per_cpu_s = statistics.median(per_cpu_runs)
        sflat = sorted(flats, key=lambda fc: fc[1])[len(flats) // 2][0]
        results["streams"] = {"direct": sdirect, "aigw": sthrough, "saturated": [f for f, _ in flats],
                              "chunks_per_gateway_cpu_second": chunks_per_cpu_s,
                              "chunks_per_gateway_cpu_second_runs": per_cpu_runs}
        stream_table = table(["streams", "TTFT p50 µs", "TTFT p99 µs", "total p50 µs", "chunks/s"], [
            [f"direct SSE, {srate}/s", f"{pct(sdirect, 'ttft_us', 'p50'):.0f}",
             f"{pct(sdirect, 'ttft_us', 'p99'):.0f}", f"{pct(sdirect, 'latency_us', 'p50'):.0f}",
             f"{sdirect['chunks_per_s']:.0f}"],
            [f"StreamGenerate via aigw, {srate}/s", f"{pct(sthrough, 'ttft_us', 'p50'):.0f}",
             f"{pct(sthrough, 'ttft_us', 'p99'):.0f}", f"{pct(sthrough, 'latency_us', 'p50'):.0f}",
             f"{sthrough['chunks_per_s']:.0f}"],
            ["added", f"{pct(sthrough, 'ttft_us', 'p50') - pct(sdirect, 'ttft_us', 'p50'):.0f}",
             f"{pct(sthrough, 'ttft_us', 'p99') - pct(sdirect, 'ttft_us', 'p99'):.0f}",
             f"{pct(sthrough, 'latency_us', 'p50') - pct(sdirect, 'latency_us', 'p50'):.0f}", ""],
            ["via aigw, 16 in flight", "", "", "", f"{sflat['chunks_per_s']:.0f} "
             f"({chunks_per_cpu_s:.0f} per gateway CPU-second, median of {len(flats)} runs; "
             f"{spread(per_cpu_runs)} across them)"]])

        # 5. Payload bytes: from the runs above.
        d, t = sweep[0]["runs"][0]["direct"], sweep[0]["runs"][0]["aigw"]
        payload_table = table(["call", "OpenAI JSON request", "gRPC request", "OpenAI JSON response",
                               "gRPC response"], [
            [f"unary, {opts.tokens} tokens", d["request_bytes_per_call"], t["request_bytes_per_call"],
             d["response_bytes_per_call"], t["response_bytes_per_call"]],
            [f"stream, {opts.stream_tokens} tokens", sdirect["request_bytes_per_call"],
             sthrough["request_bytes_per_call"], sdirect["response_bytes_per_call"],
             sthrough["response_bytes_per_call"]]])
    finally:
        gateway.stop()
        upstream.stop()

    summary = "\n\n".join([
        f"Machine: {results['machine']}",
        "Unary (Generate vs POST /v1/chat/completions), open loop, latency from the scheduled send time, µs:\n\n"
        + unary_table,
        "Spread of the unary runs (min–max over the repeats at each rate), µs:\n\n" + span_table,
        f"Highest rate with median added p99 under 1 ms: {best_under_1ms or 'none'}/s",
        "Saturation, closed loop:\n\n" + sat_table,
        "Streams (StreamGenerate vs SSE), µs:\n\n" + stream_table,
        "Memory:\n\n" + mem_table,
        "Payload bytes per call (messages only: gRPC frames incl. 5-byte prefix, HTTP bodies; no headers):\n\n"
        + payload_table,
    ])
    print(summary)
    (out / "results.md").write_text(summary + "\n")
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten: {out / 'results.md'}, {out / 'results.json'}, raw reports in {raw}")
    # The figures in BENCHMARKS.md, from the JSON just written.
    subprocess.run([sys.executable, str(ROOT / "bench" / "plot.py"), str(out / "results.json"), str(out / "results")],
                   check=True)


def machine():
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return (f"{os.cpu_count()} cores ({cpu}), Linux {os.uname().release}; "
            f"thread wake-up round trip {wake_round_trip_us():.0f} µs")


def wake_round_trip_us(n=5000):
    """Two threads passing a byte back and forth over pipes: what one sleep-and-wake costs here, twice.
    Every hop of a request (client, gateway, upstream, and back) pays about half of it; on bare metal it is a
    few microseconds, in some VMs tens."""
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()

    def echo():
        for _ in range(n):
            os.read(r1, 1)
            os.write(w2, b"x")

    t = threading.Thread(target=echo)
    t.start()
    start = time.perf_counter()
    for _ in range(n):
        os.write(w1, b"x")
        os.read(r2, 1)
    elapsed = time.perf_counter() - start
    t.join()
    for fd in (r1, w1, r2, w2):
        os.close(fd)
    return elapsed / n * 1e6


if __name__ == "__main__":
    main()
