"""Prometheus, alerts, Grafana and the compose quickstart (deploy/monitoring, compose.yaml), checked with
Debian's promtool and against a live gateway that has made every kind of call the panels chart."""

import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.request

import pytest
import yaml

from conftest import KEY, ROOT, rest_chat, spawn_gateway

MON = ROOT / "deploy" / "monitoring"
LIMITED_KEY = "sk-monitoring-limited-not-a-secret"


def promtool(*args, stdin=None):
    done = subprocess.run(["promtool", *args], input=stdin, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_scrape_config_and_the_rules_are_valid_and_the_alerts_fire():
    promtool("check", "config", str(MON / "prometheus.yml"))
    promtool("check", "rules", str(MON / "alerts.yml"))
    # Each alert fires on the series that should fire it, with its labels and annotations (alerts_test.yml).
    promtool("test", "rules", str(MON / "alerts_test.yml"))
    names = {r["alert"] for g in yaml.safe_load((MON / "alerts.yml").read_text())["groups"] for r in g["rules"]}
    assert names == {"AigwBreakerOpen", "AigwSharedStateDown", "AigwServerErrorRatio", "AigwOverheadP99High",
                     "AigwBudgetAt80Percent", "AigwForecastAboveCapacity"}


@pytest.fixture(scope="module")
def busy_gateway(tmp_path_factory):
    """A gateway with [shared] on a real Redis (unix socket), a dead first route, a cached model, a key with a
    budget and a key with rpm = 1, after calls that make every charted series exist."""
    work = tmp_path_factory.mktemp("monitoring")
    sock = work / "redis.sock"
    redis = subprocess.Popen(["redis-server", "--port", "0", "--unixsocket", str(sock), "--save", "",
                              "--appendonly", "no", "--dir", str(work)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # A port that refuses: bound, never listening, held for the test's life.
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    cfg = work / "config.toml"
    cfg.write_text(f"""
[server]
listen = "127.0.0.1:0"
[admin]
listen = "127.0.0.1:0"
[shared]
redis_url = "redis+unix://{sock}"
timeout = "5s"
[[keys]]
name = "budgeted"
sha256 = "2f0527c3d35a1f337ec6033b75e33c053e72e7122963d86dffe7c2f10bcbb482"
limits = {{ daily_budget_usd = 10.0 }}
[[keys]]
name = "limited"
env = "AIGW_LIMITED_KEY"
limits = {{ rpm = 1 }}
[[upstreams]]
name = "dead"
kind = "openai"
base_url = "http://127.0.0.1:{dead.getsockname()[1]}/v1"
[[upstreams]]
name = "mock"
kind = "mock"
first_token_latency = "1ms"
tokens_per_second = 10000
[[models]]
name = "gpt-4.1"
max_output_tokens = 1000
price = {{ input_per_million = 2.0, output_per_million = 8.0 }}
routes = [{{ upstream = "dead", model = "gpt-4.1" }}, {{ upstream = "mock", model = "gpt-4.1" }}]
policy = {{ retry = {{ backoff = "1ms" }} }}
cache = {{ ttl = "10m" }}
""")
    deadline = time.monotonic() + 60  # a hang guard only
    while not sock.exists():
        assert redis.poll() is None and time.monotonic() < deadline, "redis-server did not start"
        time.sleep(0.02)
    proc, addr, lines = spawn_gateway(cfg, {"AIGW_LIMITED_KEY": LIMITED_KEY}, listen=False)
    try:
        for body, key in [({"temperature": 0}, KEY), ({"temperature": 0}, KEY),  # a miss, then a hit
                          ({"stream": True}, KEY), ({}, LIMITED_KEY), ({}, LIMITED_KEY)]:  # the 2nd is refused
            rest_chat(addr["grpc"], key, "gpt-4.1", "monitor me please", **body)
        yield addr
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        redis.kill()
        dead.close()


def scrape(addr):
    with urllib.request.urlopen(f"http://{addr['admin']}/metrics", timeout=10) as resp:
        return resp.read().decode()


def test_a_live_scrape_passes_promtool(busy_gateway):
    promtool("check", "metrics", stdin=scrape(busy_gateway))


def test_every_grafana_panel_queries_metrics_the_gateway_exports(busy_gateway):
    text = scrape(busy_gateway)
    families = set(re.findall(r"^# TYPE (\S+) ", text, re.M))
    dashboard = json.loads((MON / "grafana" / "dashboards" / "aigw.json").read_text())
    used = set()
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "prometheus"
            for name in re.findall(r"\baigw_[a-z_]+", target["expr"]):
                family = re.sub(r"_(bucket|sum|count)$", "", name)
                assert family in families, f"panel {panel['title']!r} queries {name}, not in a live scrape"
                used.add(family)
    # And the alerts too.
    for name in re.findall(r"\baigw_[a-z_]+", (MON / "alerts.yml").read_text()):
        assert re.sub(r"_(bucket|sum|count)$", "", name) in families, name
    # The panels cover the dashboard's subjects: calls, latency, first token, overhead, tokens, cost, budgets,
    # limits, breakers, retries, cache, in flight, the forecast, Redis and connections.
    assert len(used) >= 18, sorted(used)


def test_the_grafana_provisioning_points_at_the_dashboard_and_prometheus():
    ds = yaml.safe_load((MON / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert ds["datasources"][0]["uid"] == "prometheus"
    provider = yaml.safe_load((MON / "grafana" / "provisioning" / "dashboards" / "aigw.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def test_the_compose_quickstart_is_consistent():
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"aigw", "redis", "prometheus", "grafana"}
    # Every mounted file exists (or is a named volume the file declares), and every published port is on
    # loopback.
    for svc in services.values():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            assert source in compose.get("volumes", {}) or (ROOT / source).exists(), volume
        for port in svc.get("ports", []):
            assert port.startswith("127.0.0.1:"), port
    # Prometheus scrapes the aigw service's admin port; Grafana mounts the dashboard the provider reads.
    prom = yaml.safe_load((MON / "prometheus.yml").read_text())
    assert prom["scrape_configs"][0]["static_configs"][0]["targets"] == ["aigw:9090"]
    assert any(v.endswith(":/var/lib/grafana/dashboards:ro") for v in services["grafana"]["volumes"])
    # The gateway's compose config is valid, listens where compose publishes, and shares state in the redis
    # service.
    cfg_path = ROOT / "deploy" / "compose" / "config.toml"
    done = subprocess.run([os.environ.get("AIGW_BIN", str(ROOT / "target" / "debug" / "aigw")), "check-config",
                           str(cfg_path)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **services["aigw"]["environment"]})
    assert done.returncode == 0, done.stderr
    import tomllib
    cfg = tomllib.loads(cfg_path.read_text())
    assert cfg["server"]["listen"].endswith(":50051") and cfg["admin"]["listen"].endswith(":9090")
    assert cfg["shared"]["redis_url"].startswith("redis://redis:")
