#!/usr/bin/env python3
"""Two side measurements behind BENCHMARKS.md, each run twice:
  1. the REST door against gRPC: `aigw bench` at one release gateway with the in-process mock (no pacing),
     open loop — `Generate` and REST JSON at 1,000/s, `StreamGenerate` and REST SSE at 500/s;
  2. shared limits against local ones: `Generate` at 1,000/s for a key with rpm and tpm, its windows kept in
     this replica, in a Redis on loopback, or in a Redis Cluster of three primaries on loopback (`redis-server`
     and `redis-cli --cluster create`, started here) — the admission's cost is the gateway's own time
     (`aigw-overhead-us`).
Every report is written to --out; the tables are printed and written to --out/doors.md.

Only the standard library; needs redis-server and redis-cli for part 2.
Usage: python3 bench/doors.py [--smoke] [--part doors|limits] [--out DIR]
"""

import argparse
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare import release_binary, KEY, ROOT, Proc, bench, machine, table, scratch  # noqa: E402

CONFIG = """
[server]
listen = "127.0.0.1:0"
[admin]
listen = "127.0.0.1:0"
[limits]
max_in_flight = 1000000
[limits.default]
concurrency = 1000000
{limits}
{shared}
[[keys]]
name = "bench"
env = "AIGW_BENCH_KEY"
[[upstreams]]
name = "mock"
kind = "mock"
first_token_latency = "0s"
tokens_per_second = 100000000
[[models]]
name = "bench"
max_output_tokens = 100000
routes = [{{ upstream = "mock", model = "bench" }}]
"""


def gateway(aigw, work, name, shared="", key_limits=""):
    path = work / f"{name}.toml"
    text = CONFIG.format(limits="", shared=shared)
    if key_limits:
        text = text.replace('env = "AIGW_BENCH_KEY"', f'env = "AIGW_BENCH_KEY"\n{key_limits}')
    path.write_text(text)
    return Proc([aigw, "serve", "--config", str(path)], work / f"{name}.log",
                r"aigw listening addr=(\S+) admin=(\S+)", env={"AIGW_BENCH_KEY": KEY})


def redis_server(work, *extra):
    for _ in range(10):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        home = work / f"redis-{port}"
        home.mkdir(exist_ok=True)
        proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                 "--appendonly", "no", "--dir", str(home), *extra], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        for _ in range(500):
            if proc.poll() is not None:
                break
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as c:
                    c.sendall(b"PING\r\n")
                    if c.recv(7) == b"+PONG\r\n":
                        return proc, port
            except OSError:
                time.sleep(0.02)
        proc.kill()
    sys.exit("redis-server did not start")


def redis_cluster(work):
    """Three cluster-enabled primaries with the slots spread over them; the servers and their ports."""
    nodes = [redis_server(work, "--cluster-enabled", "yes") for _ in range(3)]
    subprocess.run(["redis-cli", "--cluster", "create", *[f"127.0.0.1:{port}" for _, port in nodes],
                    "--cluster-replicas", "0", "--cluster-yes"], check=True, capture_output=True)
    for _ in range(500):
        infos = [subprocess.run(["redis-cli", "-p", str(port), "cluster", "info"], capture_output=True,
                                text=True).stdout for _, port in nodes]
        if all("cluster_state:ok" in i for i in infos):
            return nodes
        time.sleep(0.05)
    sys.exit("the Redis Cluster did not come up")


def q(report, section, key):
    return (report.get(section) or {}).get(key, float("nan"))


def span(values, unit="µs", scale=1.0):
    lo, hi = min(values) / scale, max(values) / scale
    fmt = (lambda v: f"{v:.0f}") if scale == 1.0 else (lambda v: f"{v:.2f}")
    return f"{fmt(lo)}–{fmt(hi)} {unit}" if fmt(lo) != fmt(hi) else f"{fmt(lo)} {unit}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--aigw", help="the aigw binary (default: build target/release/aigw)")
    ap.add_argument("--duration", default="4s")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "target" / "bench-doors"))
    ap.add_argument("--smoke", action="store_true", help="short runs: checks the script, not the figures")
    ap.add_argument("--part", choices=["doors", "limits"], help="only this part (default: both)")
    opts = ap.parse_args()
    if opts.smoke:
        opts.duration, opts.runs = "1s", 1
    aigw = release_binary(opts.aigw)
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    work = scratch("aigw-doors-")
    common = ["--duration", opts.duration, "--warmup", "1s", "--threads", "1"]
    results = {"machine": machine(), "settings": vars(opts), "doors": {}, "limits": {}}

    if opts.part != "limits":
        doors(aigw, work, common, out, opts, results)
    if opts.part != "doors":
        limits(aigw, work, common, out, opts, results)
    tables = []
    if results["doors"]:
        tables.append(table(["", "p50", "p90", "p99"], [
            [label, span([q(r, "latency_us", "p50") for r in rs]), span([q(r, "latency_us", "p90") for r in rs]),
             span([q(r, "latency_us", "p99") for r in rs])] for label, rs in results["doors"].items()]))
    if results["limits"]:
        tables.append(table(["", "in-gateway p50", "in-gateway p99", "end-to-end p50"], [
            [label, span([q(r, "gateway_overhead_us", "p50") for r in rs]),
             span([q(r, "gateway_overhead_us", "p99") for r in rs]),
             span([q(r, "latency_us", "p50") for r in rs])] for label, rs in results["limits"].items()]))
    errors = sum(sum(r["errors"].values()) for group in ("doors", "limits")
                 for rs in results[group].values() for r in rs)
    md = "\n\n".join([results["machine"], *tables, f"errors: {errors}"]) + "\n"
    (out / "doors.json").write_text(json.dumps(results, indent=2))
    (out / "doors.md").write_text(md)
    print(md)


def doors(aigw, work, common, out, opts, results):
    gw = gateway(aigw, work, "doors")
    grpc, rest = f"http://{gw.match.group(1)}", f"http://{gw.match.group(1)}/v1"
    rows = [("gRPC `Generate`, 1,000/s", ["--target", grpc, "--rate", 1000, "--max-tokens", 16]),
            ("REST JSON (HTTP/1.1), 1,000/s", ["--protocol", "rest", "--target", rest, "--rate", 1000,
                                              "--max-tokens", 16]),
            ("gRPC `StreamGenerate`, 500/s", ["--target", grpc, "--rpc", "stream", "--rate", 500]),
            ("REST SSE (HTTP/1.1), 500/s", ["--protocol", "rest", "--target", rest, "--rpc", "stream",
                                           "--rate", 500])]
    try:
        for label, args in rows:
            reports = [bench(aigw, [*args, *common], out, f"door-{i}-{label[:12]}".replace(" ", "_"))
                       for i in range(opts.runs)]
            results["doors"][label] = reports
    finally:
        gw.stop()


def limits(aigw, work, common, out, opts, results):
    redis, port = redis_server(work)
    cluster = redis_cluster(work)
    nodes = ", ".join(f'"redis://127.0.0.1:{p}"' for _, p in cluster)
    # The key has (huge) rpm and tpm, so admission consults the windows: this replica's, or Redis's.
    key_limits = "limits = { rpm = 100000000, tpm = 100000000000 }"
    # A generous bound: one slow command on a loaded machine must not mark Redis down.
    closed = '\non_failure = "closed"\ntimeout = "5s"'
    try:
        for name, label, shared in [("local", "local limits", ""),
                                    ("redis", "shared limits (Redis on loopback)",
                                     f'[shared]\nredis_url = "redis://127.0.0.1:{port}/0"{closed}'),
                                    ("cluster", "shared limits (Redis Cluster, 3 primaries on loopback)",
                                     f'[shared]\ncluster_nodes = [{nodes}]{closed}')]:
            gw = gateway(aigw, work, "limits", shared=shared, key_limits=key_limits)
            time.sleep(1.5)  # the shared-state monitor connects within its first second
            try:
                reports = [bench(aigw, ["--target", f"http://{gw.match.group(1)}", "--rate", 1000,
                                        "--max-tokens", 16, *common], out,
                                 f"limits-{i}-{name}") for i in range(opts.runs)]
            finally:
                gw.stop()
            results["limits"][label] = reports
    finally:
        redis.kill()
        for proc, _ in cluster:
            proc.kill()


if __name__ == "__main__":
    main()
