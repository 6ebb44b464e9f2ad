#!/usr/bin/env python3
"""Which files of src/ one REST chat stream runs code in, counted from the running program.

For a commit (default: HEAD), in a scratch worktree: the gateway is built (debug, so little is inlined) and run
under valgrind's callgrind with its instrumentation off; it is turned on, one `POST /v1/chat/completions` with
`stream: true` goes through it to `aigw mock-upstream` (over HTTP, so the real client and SSE reader run), and
off once the call's record is written. The files of src/ whose functions ran meanwhile are
the call's path: the answer prints them and their count. A second window of the same length with no call shows
what runs anyway (tickers), and is left out. Nothing is left in the repository; callgrind makes the gateway some
50 times slower, which one call does not mind.

    python3 scripts/call_path.py               # HEAD
    python3 scripts/call_path.py --commit 22f310d
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from compare import Proc  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIG = """
[server]
listen = "127.0.0.1:0"
[admin]
listen = "127.0.0.1:0"
[[keys]]
name = "path"
env = "AIGW_PATH_KEY"
[[upstreams]]
name = "up"
kind = "openai"
base_url = "http://{upstream}/v1"
[[models]]
name = "m"
max_output_tokens = 1000
routes = [{{ upstream = "up", model = "m" }}]
"""
KEY = "call-path-key"


def ran(out):
    """The files of src/ whose functions ran, from a callgrind output file."""
    done = subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=100", str(out)],
                          capture_output=True, text=True, check=True)
    return set(re.findall(r"/tree/(src/[\w/]+\.rs):", done.stdout))


def collect(gateway, out, during):
    """Callgrind's collection on for `during()`, then its counts dumped to `out`."""
    pid = str(gateway.proc.pid)
    subprocess.run(["callgrind_control", "-i", "on", pid], check=True, capture_output=True)
    during()
    subprocess.run(["callgrind_control", "-i", "off", pid], check=True, capture_output=True)
    before = set(out.parent.glob(out.name + "*"))
    subprocess.run(["callgrind_control", "-d", pid], check=True, capture_output=True)
    for _ in range(300):
        dumped = set(out.parent.glob(out.name + "*")) - before
        if dumped:
            time.sleep(1)
            return dumped.pop()
        time.sleep(0.1)
    sys.exit("callgrind wrote no dump")


def run(binary, work):
    """(files that ran during the call, files that ran in a window without one)."""
    upstream = Proc([binary, "mock-upstream", "--listen", "127.0.0.1:0", "--tokens", "3"], work / "upstream.log",
                    r"listening addr=(\S+)")
    (work / "gateway.toml").write_text(CONFIG.format(upstream=upstream.match.group(1)))
    out = work / "callgrind.out"
    gateway = Proc(["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
                    binary, "serve", "--config", str(work / "gateway.toml")], work / "gateway.log",
                   r"aigw listening addr=(\S+) admin=(\S+)", env={"AIGW_PATH_KEY": KEY}, wait=300)
    try:
        def call():
            body = json.dumps({"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
            req = urllib.request.Request(f"http://{gateway.match.group(1)}/v1/chat/completions",
                                         data=body.encode(),
                                         headers={"authorization": f"Bearer {KEY}",
                                                  "content-type": "application/json"})
            with urllib.request.urlopen(req, timeout=300) as resp:
                answer = resp.read().decode()
            assert "data: [DONE]" in answer, answer
            # The record is written after the answer's last byte.
            for _ in range(600):
                if 'rpc="ChatCompletionsStream"' in (work / "gateway.log").read_text():
                    return
                time.sleep(0.1)
            sys.exit("the call's record was not written")

        started = time.monotonic()
        with_call = ran(collect(gateway, out, call))
        took = time.monotonic() - started
        without = ran(collect(gateway, out, lambda: time.sleep(took)))
    finally:
        gateway.stop()
        upstream.stop()
    return with_call, without


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--commit", default="HEAD")
    ap.add_argument("--target", default=str(ROOT / "target" / "call-path"),
                    help="cargo's target folder for the instrumented build (kept between runs)")
    opts = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="aigw-call-path-"))
    tree = work / "tree"
    subprocess.run(["git", "worktree", "add", "--detach", "-q", str(tree), opts.commit], cwd=ROOT, check=True)
    try:
        subprocess.run(["cargo", "build", "--locked", "--bin", "aigw", "-q"], cwd=tree, check=True,
                       env={**os.environ, "CARGO_TARGET_DIR": opts.target})
        with_call, without = run(str(Path(opts.target) / "debug" / "aigw"), work)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False)
    path = sorted(with_call - without)
    for file in path:
        print(file)
    print(f"{opts.commit}: one REST chat stream runs code in {len(path)} files of src/ "
          f"({len(without)} more run without a call too: {', '.join(sorted(without)) or 'none'})")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
