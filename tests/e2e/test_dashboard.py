"""The live dashboard in a real browser: a gateway of its own (the default config with an admin key and one
more client key), known calls, then Debian's headless chromium driven by puppeteer-core
(tests/e2e/dashboard/drive.mjs) reads the rendered page, the keys tab and a playground chat."""

import json
import signal
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import KEY, ROOT, rest_chat, spawn_gateway

ADMIN_KEY = "aigw-dev-admin-key"  # the default config's documented development admin key
TEAM_KEY = "sk-dash-team-not-a-secret"


@pytest.fixture(scope="module")
def dash_gateway(tmp_path_factory):
    text = (ROOT / "config.toml").read_text()
    text += '\n[[keys]]\nname = "dash-team"\nenv = "AIGW_DASH_TEAM_KEY"\nlimits = { rpm = 60, daily_budget_usd = 1.0 }\n'
    # An organisation and a team in it: the key's calls count in both.
    text += 'group = "ml"\n[[groups]]\nname = "acme"\nlimits = { monthly_budget_usd = 500.0 }\n'
    text += '[[groups]]\nname = "ml"\nparent = "acme"\nlimits = { rpm = 100, daily_budget_usd = 20.0 }\n'
    cfg = tmp_path_factory.mktemp("dash") / "config.toml"
    cfg.write_text(text)
    proc, addr, lines = spawn_gateway(cfg, {"AIGW_ADMIN_KEY": ADMIN_KEY, "AIGW_DASH_TEAM_KEY": TEAM_KEY})
    yield addr
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0, "".join(lines)


def admin_request(gateway, method, path, body=None, origin=None):
    """The admin API's JSON answer (or the HTTPError it raised)."""
    req = urllib.request.Request(f"http://{gateway['admin']}{path}", method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"authorization": f"Bearer {ADMIN_KEY}", **({"origin": origin} if origin else {})})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def test_the_admin_api_refuses_another_origins_requests(dash_gateway):
    """With the right admin key, a request that a page of another origin sent (its Origin header says so) is
    refused; one from the dashboard's own origin, or from a client that sends no Origin, is served."""
    with pytest.raises(urllib.error.HTTPError) as refused:
        admin_request(dash_gateway, "POST", "/v1/keys", {"name": "from-elsewhere"}, origin="https://evil.example")
    assert refused.value.code == 403
    with pytest.raises(urllib.error.HTTPError) as sandboxed:
        admin_request(dash_gateway, "GET", "/v1/keys", origin="null")
    assert sandboxed.value.code == 403
    own = admin_request(dash_gateway, "GET", "/v1/keys", origin=f"http://{dash_gateway['admin']}")
    assert not any(k["name"] == "from-elsewhere" for k in own["keys"])


def test_the_page_shows_the_calls_just_made(dash_gateway, tmp_path):
    for i in range(3):
        assert rest_chat(dash_gateway["grpc"], TEAM_KEY, "deepseek-v3.2", f"dashboard call {i}")[0] == 200
    assert rest_chat(dash_gateway["grpc"], TEAM_KEY, "no-such-model", "x")[0] == 404
    assert rest_chat(dash_gateway["grpc"], "sk-not-a-key", "deepseek-v3.2", "x")[0] == 401
    done = subprocess.run(
        ["node", "drive.mjs", f"http://{dash_gateway['admin']}", ADMIN_KEY, KEY, "gpt-4.1", str(tmp_path),
         f"http://{dash_gateway['grpc']}"],
        cwd=Path(__file__).parent / "dashboard", capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["errors"] == [], seen["errors"]

    # The overview: the model, the key and their counts, the refusal by its status, and every route.
    models = {row[0]: row for row in seen["models"]}
    assert models["deepseek-v3.2"][1:3] == ["3", "0"], models
    assert int(models["deepseek-v3.2"][3]) > 0  # tokens
    keys = {row[0]: row for row in seen["keys"]}
    assert keys["dash-team"][1:3] == ["4", "1"], keys
    codes = dict(seen["codes"])
    # An unknown model is INVALID_ARGUMENT in gRPC terms (HTTP 404 at the REST door), counted without a model;
    # a wrong key is counted without a key (and without a model), and each says so.
    assert codes == {"OK": "3", "INVALID_ARGUMENT": "1", "UNAUTHENTICATED": "1"}, codes
    assert models["(no model: refused before routing)"][1:3] == ["2", "2"], models
    assert keys["(no key: unauthenticated)"][1:3] == ["1", "1"], keys
    assert {r[0] for r in seen["routes"]} == {"gpt-4.1", "claude-sonnet-4.5", "gemini-2.5-flash", "deepseek-v3.2",
                                                "text-embedding-3-small"}
    assert all(r[2] == "closed" for r in seen["routes"])
    assert seen["tiles"]["recommended replicas"] == "1"

    # The keys tab, with the admin key: this minute's use against the key's limits.
    usage = {row[0]: row for row in seen["usage"]}
    # (the usage book counts the calls that reached a model: the refused one is not among them)
    assert usage["dash-team"][1:3] == ["3", "60"] and usage["dash-team"][5] == "3", usage
    # By group: the team and its organisation, each with its own limits and budgets.
    groups = {row[0]: row for row in seen["groups"]}
    assert groups["ml"][1:4] == ["3", "100", "3"] and groups["ml"][6] == "$20", groups
    assert groups["acme"][3] == "3" and groups["acme"][8] == "$500", groups

    # Keys made, rotated and revoked from the page: each secret works until it should not.
    assert seen["made"] == {"status": 200}, seen
    assert seen["rotated"] == {"status": 200, "old": 200}, seen  # the old one works through the grace period
    assert seen["revoked"] == {"status": 401, "old": 401}, seen
    assert "dash-made" not in {row[0] for row in seen["managed"]}, seen["managed"]
    # Another origin's page made nothing: the no-cors form post was refused, the one with the key never sent.
    assert seen["crossOrigin"] == ["sent", "blocked"], seen["crossOrigin"]
    listed = admin_request(dash_gateway, "GET", "/v1/keys")
    assert not any(k["name"].startswith("csrf-made") for k in listed["keys"]), listed

    # The playground streamed a chat through the REST door with the client key.
    assert "Hello from the playground" in seen["answer"], seen
    assert "tokens" in seen["meta"]
    for shot in ["dashboard.png", "dashboard-keys.png", "dashboard-manage.png", "dashboard-playground.png"]:
        assert (tmp_path / shot).stat().st_size > 10_000


def test_the_data_is_open_and_the_usage_needs_the_key(dash_gateway):
    with urllib.request.urlopen(f"http://{dash_gateway['admin']}/dashboard/data", timeout=10) as resp:
        data = json.load(resp)
    assert "aigw_requests_total" in data["metrics"] and "gpt-4.1" in data["models"]
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"http://{dash_gateway['admin']}/v1/usage", timeout=10)
    assert e.value.code == 401
