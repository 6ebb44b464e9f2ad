#!/usr/bin/env python3
"""Silent connections against a running gateway (the default config.toml on loopback), as a hostile crowd
would open them:
  1. 100 connections on the gRPC port and 100 on the admin port that never send a byte: how many has the
     gateway closed after 45 s?
  2. --attempts (default 30,000) silent connections opened as fast as two processes can, held open; meanwhile
     and afterwards, does `/healthz` answer, and does a real `Generate` call (grpcurl-free: `aigw bench`)?

Only the standard library; Linux only. Usage: python3 bench/silent_crowd.py [--aigw BIN] [--attempts N]
"""

import argparse
import json
import multiprocessing
import os
import select
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare import ROOT, Proc, scratch  # noqa: E402

KEY = "sk-aigw-dev"  # the default config's documented local key


def hold_closed_count(addr, n, wait):
    """Opens n silent connections to addr; after `wait` seconds, how many the server has closed."""
    host, port = addr.rsplit(":", 1)
    socks = [socket.create_connection((host, int(port))) for _ in range(n)]
    time.sleep(wait)
    closed = 0
    for s in socks:
        r, _, _ = select.select([s], [], [], 0)
        if r and s.recv(1) == b"":
            closed += 1
        s.close()
    return closed


def crowd(addr, attempts, source, out):
    """Opens `attempts` connections from the loopback address `source`, keeping them; returns how many could be
    opened (connect errors count as refused). A source address of its own, so the crowd does not use up the
    ephemeral ports the real client needs (about 28,000 per source address and destination)."""
    host, port = addr.rsplit(":", 1)
    held, failed = [], 0
    for _ in range(attempts):
        try:
            s = socket.socket()
            s.settimeout(5)
            s.bind((source, 0))
            s.connect((host, int(port)))
            held.append(s)
        except OSError:
            failed += 1
    out.put((len(held), failed))
    time.sleep(15)


def healthz(admin):
    try:
        with urllib.request.urlopen(f"http://{admin}/healthz", timeout=10) as r:
            return r.status
    except OSError as e:
        return str(e)


def real_call(aigw, grpc):
    done = subprocess.run([aigw, "bench", "--target", f"http://{grpc}", "--key", KEY, "--model", "gpt-4.1",
                           "--requests", "3", "--concurrency", "1", "--warmup", "0s", "--timeout", "20s",
                           "--json", "-"], capture_output=True, text=True, timeout=120)
    try:
        return json.loads(done.stdout)["ok"]
    except (ValueError, KeyError):
        return done.stderr.strip()[-200:]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--aigw", default=str(ROOT / "target" / "release" / "aigw"))
    ap.add_argument("--attempts", type=int, default=30000)
    opts = ap.parse_args()
    work = scratch("aigw-crowd-")
    gateway = Proc([opts.aigw, "serve", "--config", str(ROOT / "config.toml"), "--listen", "127.0.0.1:0",
                    "--admin-listen", "127.0.0.1:0"], work / "gateway.log", r"aigw listening addr=(\S+) admin=(\S+)")
    grpc, admin = gateway.match.group(1), gateway.match.group(2)
    try:
        with multiprocessing.Pool(2) as pool:
            closed = pool.starmap(hold_closed_count, [(grpc, 100, 45), (admin, 100, 45)])
        print(f"silent connections closed by the gateway within 45 s: gRPC port {closed[0]}/100, "
              f"admin port {closed[1]}/100")
        results = multiprocessing.Queue()
        half = opts.attempts // 2
        procs = [multiprocessing.Process(target=crowd, args=(grpc, half, f"127.0.0.{10 + i}", results))
                 for i in range(2)]
        start = time.monotonic()
        for p in procs:
            p.start()
        during = (healthz(admin), real_call(opts.aigw, grpc))
        opened = [results.get(timeout=600) for _ in procs]
        took = time.monotonic() - start
        after = (healthz(admin), real_call(opts.aigw, grpc))
        for p in procs:
            p.join()
        fds = len(os.listdir(f"/proc/{gateway.pid}/fd"))
        print(f"{opts.attempts} silent connection attempts in {took:.0f} s: opened {sum(o[0] for o in opened)}, "
              f"failed {sum(o[1] for o in opened)}; during: /healthz {during[0]}, real calls OK {during[1]}/3; "
              f"after: /healthz {after[0]}, real calls OK {after[1]}/3; gateway fds now {fds}")
    finally:
        gateway.stop()


if __name__ == "__main__":
    main()
