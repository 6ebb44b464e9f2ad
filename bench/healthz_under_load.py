#!/usr/bin/env python3
"""The admin /healthz latency while CPU-heavy calls run: four threads each make three REST embeddings calls of
2,048 texts (about 3 million numbers to encode per answer) against a gateway on the default config, while this
polls /healthz every 20 ms. Prints p50, p99 and max of the probe's latency.

    target/debug/aigw serve &        # or the release build
    python3 bench/healthz_under_load.py [http://127.0.0.1:50051] [http://127.0.0.1:9090]

Figures and their raw output: BENCHMARKS.md, "Health probes while CPU-heavy calls run"."""

import json
import sys
import threading
import time
import urllib.request

GATEWAY = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:50051"
ADMIN = sys.argv[2] if len(sys.argv) > 2 else "http://127.0.0.1:9090"
BODY = json.dumps({"model": "text-embedding-3-small",
                   "input": [f"text number {i} with some words" for i in range(2048)]}).encode()


def embed():
    for _ in range(3):
        req = urllib.request.Request(f"{GATEWAY}/v1/embeddings", data=BODY, headers={
            "authorization": "Bearer sk-aigw-dev", "content-type": "application/json", "cache-control": "no-cache"})
        urllib.request.urlopen(req, timeout=300).read()


def main():
    load = [threading.Thread(target=embed) for _ in range(4)]
    for t in load:
        t.start()
    seen = []
    while any(t.is_alive() for t in load):
        start = time.perf_counter()
        urllib.request.urlopen(f"{ADMIN}/healthz", timeout=60).read()
        seen.append(time.perf_counter() - start)
        time.sleep(0.02)
    seen.sort()
    ms = lambda q: 1000 * seen[min(len(seen) - 1, int(len(seen) * q))]
    print(f"/healthz under load: {len(seen)} probes, p50 {ms(0.5):.1f} ms, p99 {ms(0.99):.1f} ms, "
          f"max {1000 * seen[-1]:.1f} ms")


if __name__ == "__main__":
    main()
