#!/usr/bin/env python3
"""Peak memory of a gateway sent 64 request bodies of 4 MiB at once, each of tiny messages (the shape that
costs the most to parse per byte): prints the answers' statuses and the process's peak RSS (VmHWM).

    target/release/aigw serve & python3 bench/memory_under_big_bodies.py $!
    python3 bench/memory_under_big_bodies.py PID [http://127.0.0.1:50051]

Figures and their raw output: BENCHMARKS.md, "Many large bodies at once"."""

import collections
import json
import sys
import threading
import urllib.error
import urllib.request

PID = sys.argv[1]
GATEWAY = sys.argv[2] if len(sys.argv) > 2 else "http://127.0.0.1:50051"
TINY = json.dumps({"role": "user", "content": ""})
COUNT = (4 << 20) // (len(TINY) + 1) - 64
BODY = ('{"model":"gemini-2.5-flash","messages":[' + ",".join([TINY] * COUNT) + "]}").encode()


def peak_rss_mib():
    with open(f"/proc/{PID}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def call(statuses):
    req = urllib.request.Request(f"{GATEWAY}/v1/chat/completions", data=BODY, headers={
        "authorization": "Bearer sk-aigw-dev", "content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=300) as resp:
            statuses[resp.status] += 1
    except urllib.error.HTTPError as e:
        statuses[e.code] += 1
    except OSError as e:
        statuses[type(e).__name__] += 1


def main():
    before = peak_rss_mib()
    statuses = collections.Counter()
    threads = [threading.Thread(target=call, args=(statuses,)) for _ in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(f"64 bodies of {len(BODY) >> 20} MiB ({COUNT} messages each): statuses {dict(statuses)}; "
          f"peak RSS {before:.0f} MiB before, {peak_rss_mib():.0f} MiB after")


if __name__ == "__main__":
    main()
