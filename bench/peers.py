#!/usr/bin/env python3
"""aigw beside the other LLM gateways: one script, one run, the same upstream and the same load for each.

Each round measures, one after the other on this machine, `aigw mock-upstream` answered directly and then each
gateway in front of it, at 8 and at 32 calls in flight (wrk, one thread, an OpenAI chat completion of 16
tokens, not streamed):
  - throughput (calls/s);
  - latency added, p50 and p99: the gateway's percentile minus the upstream's own at the same load, same round;
  - CPU per call: the gateway's processes' own accounting (/proc, every process of its tree, all threads);
  - resident memory after the loads (VmRSS of its tree).
Then the same call at fixed rates (`--rates`, default 200 and 2,000 calls/s; `aigw bench --rate`, an open loop
whose latency runs from each call's scheduled start, so a gateway that falls behind shows it in its tail instead
of slowing the load, as a closed loop lets it): calls/s, added p50/p99 against the upstream alone at the same
rate, CPU per call; a gateway whose closed-loop best at 32 in flight is below a rate is not run at it (the open
loop would measure only its queue), and a try whose load generator itself ran late (LAG_LIMIT_US) is taken
again, up to PACED_TRIES times. While one is measured the other gateways are stopped (SIGSTOP), so their
idle work does not run beside it. The order of the gateways turns by one each round. The tables show medians of the rounds
with the min–max.

The peers, each installed pinned into a cache folder on first use (AIGW_PEERS_DIR, default
~/.cache/aigw-peers) from the package registries, run as their own docs start them, with request logging at
their defaults:
  - Portkey's gateway (npm `@portkey-ai/gateway`), Node.js, the upstream given by `x-portkey-custom-host`;
  - LiteLLM proxy (PyPI `litellm[proxy]`), one uvicorn worker, a master key;
  - litellm-rs (crates.io, `cargo install`), its `gateway` binary;
  - TensorZero, built from its source when `--tensorzero-src` names a checkout (it is on no registry): its
    `gateway` binary in crates/target/release, as its own load tests configure it (observability off). Built
    here (2026.4.1, 86 minutes on two cores) with `evaluations`' default feature turned off in crates/gateway,
    crates/autopilot-tools and crates/durable-tools (else the build downloads V8's prebuilt library) and its
    two git dependencies (tensorzero/durable, hyperium/mime) taken from local mirrors through git's
    `url.<mirror>.insteadOf` with CARGO_NET_GIT_FETCH_WITH_CLI=true; see BENCHMARKS.md.
A peer that cannot be installed or started here is named in the table with the reason. Bifrost is compared by
its published figure only: its npm package downloads its binary at run time, which cannot work offline.

Needs wrk. Usage: python3 bench/peers.py [--aigw PATH] [--only NAME,...] [--rounds 3] [--duration 8]
                                        [--rates 200,2000] [--tensorzero-src DIR] [--out DIR] [--smoke]
"""

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare import GATEWAY_CONFIG, KEY, ROOT, TICK, machine, release_binary, scratch, table  # noqa: E402

PEERS_DIR = Path(os.environ.get("AIGW_PEERS_DIR", Path.home() / ".cache" / "aigw-peers"))
PORTKEY = "1.15.2"
# 1.105.7: the newest whose `proxy` extra resolves from PyPI alone (later ones need `litellm-proxy`, which the
# registry here does not hold); 1.107.0 was a compromised release and is avoided by name.
LITELLM = "1.105.7"
LITELLM_RS = "0.9.0"
IN_FLIGHT = (8, 32)
# Fixed rates (calls/s) of the open-loop rows: one every gateway here but LiteLLM keeps up with, one for the
# fastest. A call waits for a slot beyond this many in flight (the wait counts in its latency).
RATES = (200, 2000)
PACED_MAX_IN_FLIGHT = 256
# A fixed-rate measurement whose load generator ran late (its own schedule lag at p99 above this) measured the
# machine, not the gateway: it is taken again, up to PACED_TRIES times, and the least late one is kept.
LAG_LIMIT_US = 500
PACED_TRIES = 3
BODY = json.dumps({"model": "bench", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16},
                  separators=(",", ":"))


def free_port():
    """A port for a peer that must be told one (they cannot report a port they chose themselves)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree(pid):
    """pid and every process under it."""
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


@contextlib.contextmanager
def others_paused(servers, measured):
    """The gateways other than `measured` stopped (SIGSTOP, each process of their trees) while it is measured, then
    let go: idle, they still run timers and workers (LiteLLM's Python, Node's event loop) on the two cores the
    measured one shares with the load and the upstream. The upstream is never stopped."""
    pids = [p for name, s in servers.items() if name not in ("direct", measured) for p in tree(s.proc.pid)]
    for p in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGSTOP)
    try:
        yield
    finally:
        for p in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGCONT)


def cpu_seconds(pid):
    total = 0
    for p in tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / TICK


def rss_mib(pid):
    total = 0
    for p in tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


class Server:
    """A gateway (or the upstream) as a child process in its own session, its output to a log file; ready once a
    real chat completion through it answers 200 with a choice."""

    def __init__(self, name, args, work, url, headers, env=None, cwd=None, wait=120, body=BODY):
        self.name, self.url, self.headers, self.body = name, url, headers, body
        self.log_path = work / f"{name}.log"
        log = open(self.log_path, "w")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True,
                                     env={**os.environ, **(env or {})})
        deadline = time.monotonic() + wait
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                said = [line for line in self.log_path.read_text(errors="replace").splitlines() if line.strip()]
                raise RuntimeError(f"exited with {self.proc.returncode}: {said[-1][:300] if said else 'nothing said'}")
            try:
                req = urllib.request.Request(url, body.encode(), {"content-type": "application/json", **headers})
                with urllib.request.urlopen(req, timeout=5) as resp:
                    if resp.status == 200 and json.loads(resp.read()).get("choices"):
                        return
            except Exception as e:  # not up yet
                last = e
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"not answering after {wait} s ({last}); see {self.log_path}")

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()


def run(cmd, **kw):
    done = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return done


# Each peer: install (once, into PEERS_DIR) and start in front of the upstream at `up`.

def portkey(work, up, _opts):
    home = PEERS_DIR / f"portkey-{PORTKEY}"
    entry = home / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"
    if not entry.exists():
        home.mkdir(parents=True, exist_ok=True)
        (home / "package.json").write_text('{"private": true}\n')
        run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error", f"@portkey-ai/gateway@{PORTKEY}"],
            cwd=home, timeout=600)
    port = free_port()
    # The upstream on loopback must be trusted by name, or Portkey refuses it as a custom host.
    return Server("portkey", ["node", str(entry), f"--port={port}", "--headless"], work,
                  f"http://127.0.0.1:{port}/v1/chat/completions",
                  {"authorization": f"Bearer {KEY}", "x-portkey-provider": "openai",
                   "x-portkey-custom-host": f"http://{up}/v1"},
                  env={"TRUSTED_CUSTOM_HOSTS": "127.0.0.1", "NODE_ENV": "production"})


def litellm(work, up, _opts):
    home = PEERS_DIR / f"litellm-{LITELLM}"
    exe = home / "bin" / "litellm"
    if not exe.exists():
        run([sys.executable, "-m", "venv", str(home)], timeout=120)
        run([str(home / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check",
             f"litellm[proxy]=={LITELLM}"], timeout=1800)
    (work / "litellm.yaml").write_text(f"""
model_list:
  - model_name: bench
    litellm_params:
      model: openai/bench
      api_base: http://{up}/v1
      api_key: sk-upstream
general_settings:
  master_key: {KEY}
litellm_settings:
  telemetry: false
""")
    port = free_port()
    return Server("litellm", [str(exe), "--config", str(work / "litellm.yaml"), "--host", "127.0.0.1",
                              "--port", str(port), "--num_workers", "1"], work,
                  f"http://127.0.0.1:{port}/v1/chat/completions", {"authorization": f"Bearer {KEY}"},
                  env={"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY": "False",
                       "DISABLE_ADMIN_UI": "True"})


def litellm_rs(work, up, _opts):
    home = PEERS_DIR / f"litellm-rs-{LITELLM_RS}"
    exe = home / "bin" / "gateway"
    if not exe.exists():
        run(["cargo", "install", "--locked", f"litellm-rs@{LITELLM_RS}", "--features", "sqlite", "--bin",
             "gateway", "--root", str(home)], timeout=5400)
    port = free_port()
    (work / "litellm-rs.yaml").write_text(LITELLM_RS_CONFIG.format(port=port, up=up))
    return Server("litellm-rs", [str(exe), "--config", str(work / "litellm-rs.yaml")], work,
                  f"http://127.0.0.1:{port}/v1/chat/completions", {"authorization": f"Bearer {KEY}"})


LITELLM_RS_CONFIG = """
schema_version: "1.0"
server:
  host: "127.0.0.1"
  port: {port}
  dev_mode: false
providers:
  - name: "mock"
    provider_type: "openai"
    api_key: "sk-upstream"
    base_url: "http://{up}/v1"
    endpoint_access: private_network
    max_concurrent_requests: 100000
    rpm: 100000000
    tpm: 4000000000
    timeout: 30
    max_retries: 0
    models: ["bench"]
    settings:
      model_identity_mappings:
        bench:
          capability_catalog_model: gpt-4o
          pricing_model: null
    enabled: true
router:
  strategy: "round_robin"
storage:
  database:
    url: "postgresql://localhost/unused"
    enabled: false
    auto_migrate: false
  redis:
    url: "redis://localhost:6379"
    enabled: false
auth:
  enable_jwt: false
  enable_api_key: false
  allow_anonymous: true
  jwt_secret: ""
pricing:
  source: "embedded://model_prices_extended"
  unpriced_model_policy: allow_unpriced
  unpriced_fallback_cost_per_1k_tokens: 0.0
rate_limit:
  enabled: false
cache:
  enabled: false
monitoring:
  metrics:
    enabled: false
  tracing:
    enabled: false
"""


def tensorzero(work, up, opts):
    if not opts.tensorzero_src:
        raise RuntimeError("on no package registry; built from source with --tensorzero-src DIR")
    src = Path(opts.tensorzero_src)
    exe = src / "crates" / "target" / "release" / "gateway"
    if not exe.exists():
        raise RuntimeError(f"{exe} is not built (BENCHMARKS.md, issue 34's section, says how it was built here)")
    port = free_port()
    # As its own load tests run it (crates/tensorzero-core/tests/load/tensorzero-without-observability.toml).
    (work / "tensorzero.toml").write_text(f"""
[gateway]
bind_address = "127.0.0.1:{port}"
observability.enabled = false
[models.bench]
routing = ["mock"]
[models.bench.providers.mock]
type = "openai"
model_name = "bench"
api_base = "http://{up}/v1/"
api_key_location = "none"
""")
    return Server("tensorzero", [str(exe), "--config-file", str(work / "tensorzero.toml")], work,
                  f"http://127.0.0.1:{port}/openai/v1/chat/completions", {},
                  env={"TENSORZERO_DISABLE_PSEUDONYMOUS_USAGE_ANALYTICS": "1"},
                  body=BODY.replace('"bench"', '"tensorzero::model_name::bench"'))


PEERS = {"portkey": portkey, "litellm": litellm, "litellm-rs": litellm_rs, "tensorzero": tensorzero}
LABELS = {"direct": "`aigw mock-upstream` alone (the upstream)", "aigw": "**aigw** (REST door)",
          "portkey": f"Portkey gateway {PORTKEY} (Node.js)", "litellm": f"LiteLLM proxy {LITELLM} (Python)",
          "litellm-rs": f"litellm-rs {LITELLM_RS} (Rust)", "tensorzero": "TensorZero (Rust, from source)"}


def seconds(text):
    value, unit = float(text[:-2] if text[-2:] in ("us", "ms") else text[:-1]), text.lstrip("0123456789.")
    return value * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


def wrk(server, in_flight, duration, work):
    script = work / f"{server.name}.lua"
    script.write_text('wrk.method = "POST"\n' f"wrk.body = '{server.body}'\n"
                      'wrk.headers["Content-Type"] = "application/json"\n'
                      + "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in server.headers.items()))
    done = subprocess.run(["wrk", "-t1", f"-c{in_flight}", f"-d{duration}s", "--timeout", "10s", "--latency",
                           "-s", str(script), server.url], capture_output=True, text=True,
                          timeout=duration * 4 + 60)
    text = done.stdout
    calls = re.search(r"(\d+) requests in", text)
    if not calls:
        raise RuntimeError(f"wrk said:\n{text}\n{done.stderr}")
    bad = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", text))
    bad += sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", text))
    pcts = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", text, re.M))
    return {"calls": int(calls.group(1)), "errors": bad, "p50_ms": seconds(pcts["50"]) * 1e3,
            "p99_ms": seconds(pcts["99"]) * 1e3, "raw": text}


def measure(server, in_flight, duration, work):
    before = cpu_seconds(server.proc.pid)
    out = wrk(server, in_flight, duration, work)
    out["cpu_us"] = (cpu_seconds(server.proc.pid) - before) / max(out["calls"], 1) * 1e6
    out["calls_s"] = out["calls"] / duration
    return out


def paced(server, rate, duration, work, aigw):
    """The same call at a fixed rate, taken again while the load generator itself ran late (see LAG_LIMIT_US):
    the least late of the tries is kept, with how many there were and its lag."""
    tries = []
    for _ in range(PACED_TRIES):
        tries.append(paced_once(server, rate, duration, work, aigw))
        if tries[-1]["lag_p99_ms"] * 1e3 <= LAG_LIMIT_US:
            break
    best = min(tries, key=lambda t: t["lag_p99_ms"])
    best["tries"] = len(tries)
    return best


def paced_once(server, rate, duration, work, aigw):
    """The same call at a fixed rate (`aigw bench`'s open loop, one thread): latency is counted from each call's
    scheduled start, so a gateway that falls behind shows it in its tail instead of by slowing the load."""
    before = cpu_seconds(server.proc.pid)
    cmd = [aigw, "bench", "--protocol", "rest", "--target", server.url.removesuffix("/chat/completions"),
           "--model", json.loads(server.body)["model"], "--prompt", "hi", "--max-tokens", "16",
           "--rate", str(rate), "--duration", f"{duration}s", "--warmup", "1s", "--timeout", "10s",
           "--max-in-flight", str(PACED_MAX_IN_FLIGHT), "--threads", "1", "--json", "-"]
    for k, v in server.headers.items():
        cmd += ["--header", f"{k}: {v}"]
    env = {k: v for k, v in os.environ.items() if k != "AIGW_BENCH_KEY"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=duration * 4 + 60)
    if done.returncode != 0:
        raise RuntimeError(f"aigw bench said:\n{done.stdout}\n{done.stderr}")
    report = json.loads(done.stdout)
    lat = report.get("latency_us") or {}
    lag = report.get("schedule_lag_us") or {}
    ok = report["ok"]
    return {"calls_s": report["throughput_per_s"], "errors": report["calls"] - ok,
            "p50_ms": lat.get("p50", float("nan")) / 1e3, "p99_ms": lat.get("p99", float("nan")) / 1e3,
            "lag_p99_ms": lag.get("p99", 0.0) / 1e3,
            "cpu_us": (cpu_seconds(server.proc.pid) - before) / max(ok, 1) * 1e6, "raw": done.stdout}


def measure_one(servers, name, row, r, rates, opts, work, out, aigw):
    """One gateway (or the upstream alone) in one round: both closed loops, then each fixed rate it can reach."""
    for n in IN_FLIGHT:
        m = measure(servers[name], n, opts.duration, work)
        (out / f"round{r + 1}-{name}-{n}.txt").write_text(m.pop("raw"))
        row[f"{name}@{n}"] = m
    for rate in rates:
        if row[f"{name}@32"]["calls_s"] < rate:
            # Beyond its closed-loop best the open loop only measures a growing queue (and takes as long to drain
            # as the schedule is late): not run.
            row[f"{name}@{rate}/s"] = None
            continue
        m = paced(servers[name], rate, opts.duration, work, aigw)
        (out / f"round{r + 1}-{name}-rate{rate}.json").write_text(m.pop("raw"))
        row[f"{name}@{rate}/s"] = m


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--aigw", help="the aigw binary (default: build target/release/aigw)")
    ap.add_argument("--only", help="peers to run, comma-separated (default: all)")
    ap.add_argument("--tensorzero-src", help="a TensorZero checkout whose gateway is built in crates/target")
    ap.add_argument("--duration", type=int, default=8, help="seconds per measurement")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rates", default=",".join(map(str, RATES)),
                    help="fixed rates (calls/s) of the open-loop rows, comma-separated; empty for none")
    ap.add_argument("--out", default=str(ROOT / "target" / "bench-peers"))
    ap.add_argument("--smoke", action="store_true", help="a few seconds in all: checks the script, not speed")
    opts = ap.parse_args()
    if opts.smoke:
        opts.duration, opts.rounds = 1, 1
    rates = [int(r) for r in opts.rates.split(",") if r.strip()]
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (Debian: apt-get install wrk)")
    aigw = release_binary(opts.aigw)
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    work = scratch("aigw-peers-")

    up_port = free_port()
    up = f"127.0.0.1:{up_port}"
    headers = {"authorization": f"Bearer {KEY}"}
    servers, missing = {}, {}
    try:
        servers["direct"] = Server("direct", [aigw, "mock-upstream", "--listen", up, "--tokens", "16"], work,
                                   f"http://{up}/v1/chat/completions", headers)
        (work / "aigw.toml").write_text(GATEWAY_CONFIG.format(upstream=up))
        port = free_port()
        servers["aigw"] = Server("aigw", [aigw, "serve", "--config", str(work / "aigw.toml"), "--listen",
                                          f"127.0.0.1:{port}", "--admin-listen", "127.0.0.1:0"], work,
                                 f"http://127.0.0.1:{port}/v1/chat/completions", headers,
                                 env={"AIGW_BENCH_KEY": KEY})
        for name, start in PEERS.items():
            if opts.only and name not in opts.only.split(","):
                continue
            try:
                servers[name] = start(work, up, opts)
            except Exception as e:
                missing[name] = str(e).strip().splitlines()[0]
                print(f"{name}: not measured: {e}", file=sys.stderr)
        names = list(servers)
        gateways = names[1:]
        for s in servers.values():  # warm: pools, JITs, caches
            measure(s, 32, 2 if not opts.smoke else 1, work)
        rounds = []
        for r in range(opts.rounds):
            turn = gateways[r % len(gateways):] + gateways[:r % len(gateways)]
            row = {}
            for name in ["direct"] + turn:
                with others_paused(servers, name):
                    measure_one(servers, name, row, r, rates, opts, work, out, aigw)
            for name in gateways:
                row[f"{name}@rss"] = rss_mib(servers[name].proc.pid)
            rounds.append(row)
            print(f"round {r + 1}: {json.dumps(row)}", file=sys.stderr)
    finally:
        for s in servers.values():
            s.stop()

    def values(name, n, key):
        return [r[f"{name}@{n}"][key] for r in rounds]

    def added(name, n, key):
        return [r[f"{name}@{n}"][key] - r[f"direct@{n}"][key] for r in rounds]

    def cell(vals, fmt):
        med = statistics.median(vals)
        lo, hi = fmt.format(min(vals)), fmt.format(max(vals))
        return fmt.format(med) + ("" if lo == hi else f" ({lo}–{hi})")

    def lag_cell(name, rate):
        # The kept try's lag, and how many tries the rounds took in all (more than one a round: the machine was
        # busy and the measurement was taken again).
        tries = sum(r[f"{name}@{rate}/s"].get("tries", 1) for r in rounds)
        return cell(values(name, f"{rate}/s", "lag_p99_ms"), "{:.2f}") + (
            f", {tries} tries" if tries > len(rounds) else "")

    headers_row = ["gateway", "calls/s @8", "calls/s @32", "added p50 @8 (ms)", "added p99 @8 (ms)",
                   "added p50 @32 (ms)", "added p99 @32 (ms)", "CPU per call @32 (µs)", "RSS (MiB)", "errors"]
    rows = [[LABELS["direct"], cell(values("direct", 8, "calls_s"), "{:,.0f}"),
             cell(values("direct", 32, "calls_s"), "{:,.0f}"), "—", "—", "—", "—", "—", "—",
             sum(values("direct", 8, "errors") + values("direct", 32, "errors"))]]
    for name in gateways:
        rows.append([LABELS[name], cell(values(name, 8, "calls_s"), "{:,.0f}"),
                     cell(values(name, 32, "calls_s"), "{:,.0f}"),
                     cell(added(name, 8, "p50_ms"), "{:.2f}"), cell(added(name, 8, "p99_ms"), "{:.2f}"),
                     cell(added(name, 32, "p50_ms"), "{:.2f}"), cell(added(name, 32, "p99_ms"), "{:.2f}"),
                     cell(values(name, 32, "cpu_us"), "{:,.0f}"), cell([r[f"{name}@rss"] for r in rounds], "{:.0f}"),
                     sum(values(name, 8, "errors") + values(name, 32, "errors"))])
    for name, why in missing.items():
        rows.append([LABELS[name], f"not measured: {why}"] + [""] * 8)
    paced_text = []
    if rates:
        paced_head = ["gateway"] + [h for rate in rates for h in (
            f"calls/s @{rate}/s", f"added p50 @{rate}/s (ms)", f"added p99 @{rate}/s (ms)",
            f"CPU per call @{rate}/s (µs)", f"errors @{rate}/s", f"load's own lag p99 @{rate}/s (ms)")]
        paced_rows = [[LABELS["direct"]] + [c for rate in rates for c in (
            cell(values("direct", f"{rate}/s", "calls_s"), "{:,.0f}"), "—", "—", "—",
            sum(values("direct", f"{rate}/s", "errors")), lag_cell("direct", rate))]]
        for name in gateways:
            cells = []
            for rate in rates:
                if any(r[f"{name}@{rate}/s"] is None for r in rounds):
                    best = cell(values(name, 32, "calls_s"), "{:,.0f}")
                    cells += [f"not run: below the rate ({best} calls/s at 32 in flight)", "", "", "", "", ""]
                    continue
                cells += [cell(values(name, f"{rate}/s", "calls_s"), "{:,.0f}"),
                          cell(added(name, f"{rate}/s", "p50_ms"), "{:.2f}"),
                          cell(added(name, f"{rate}/s", "p99_ms"), "{:.2f}"),
                          cell(values(name, f"{rate}/s", "cpu_us"), "{:,.0f}"),
                          sum(values(name, f"{rate}/s", "errors")), lag_cell(name, rate)]
            paced_rows.append([LABELS[name]] + cells)
        paced_text = ["", "Fixed rates (open loop, `aigw bench --rate`, latency from each call's scheduled start; at "
                      f"most {PACED_MAX_IN_FLIGHT} in flight, a gateway below the rate falls behind and its tail "
                      "shows it; a try whose load generator itself ran late by more than "
                      f"{LAG_LIMIT_US / 1e3:.1f} ms at p99 is taken again, up to {PACED_TRIES} tries, and the least "
                      "late kept):", "", table(paced_head, paced_rows)]
    text = "\n".join([
        table(headers_row, rows)] + paced_text + ["",
        f"{opts.rounds} rounds of {opts.duration} s per load, medians (min–max). Machine: {machine()}.",
        "Bifrost (not run here: its npm package downloads its binary at run time) publishes 11 µs of mean "
        "overhead at 5,000 RPS on its own hardware.",
    ])
    print(text)
    (out / "peers.md").write_text(text + "\n")
    (out / "peers.json").write_text(json.dumps({"rounds": rounds, "missing": missing, "opts": vars(opts)},
                                               indent=1))


if __name__ == "__main__":
    main()
