"""`aigw keys|limits|usage` against the running binary's admin API: a key made from the command line works for
a call at once, its limits change, it shows in the usage, and once revoked it is refused."""

import json
import os
import signal
import subprocess

from conftest import ROOT, rest_chat, spawn_gateway

ADMIN_KEY = "aigw-dev-admin-key"  # the default config's documented development admin key


def aigw(admin, *args):
    binary = os.environ.get("AIGW_BIN", str(ROOT / "target" / "debug" / "aigw"))
    done = subprocess.run([binary, *args, "--admin", f"http://{admin}"], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "AIGW_ADMIN_KEY": ADMIN_KEY})
    return done.returncode, done.stdout, done.stderr


def test_keys_limits_and_usage_from_the_command_line(tmp_path):
    cfg = tmp_path / "config.toml"
    text = (ROOT / "config.toml").read_text()
    cfg.write_text(text.replace("[admin]\n", f'[admin]\nstate_file = "{tmp_path / "state.json"}"\n', 1))
    proc, addr, lines = spawn_gateway(cfg, {"AIGW_ADMIN_KEY": ADMIN_KEY})
    try:
        rc, out, err = aigw(addr["admin"], "keys", "create", "cli-team", "--models", "gpt-4.1", "--rpm", "5")
        assert rc == 0, err
        made = json.loads(out)
        secret = made["key"]
        assert made["limits"]["rpm"] == 5 and made["source"] == "api"
        assert rest_chat(addr["grpc"], secret, "gpt-4.1")[0] == 200
        assert rest_chat(addr["grpc"], secret, "deepseek-v3.2")[0] == 403  # not in its models

        rc, out, err = aigw(addr["admin"], "limits", "set", "cli-team", "--rpm", "1")
        assert rc == 0 and json.loads(out)["rpm"] == 1, err
        assert rest_chat(addr["grpc"], secret, "gpt-4.1")[0] == 429  # the call before counts

        rc, out, _ = aigw(addr["admin"], "keys", "list")
        assert {k["name"] for k in json.loads(out)["keys"]} == {"local-dev", "cli-team"}
        assert secret not in out
        rc, out, _ = aigw(addr["admin"], "usage")
        assert json.loads(out)["keys"]["cli-team"]["today"]["requests"] >= 2

        rc, out, err = aigw(addr["admin"], "keys", "revoke", "cli-team")
        assert rc == 0, err
        assert rest_chat(addr["grpc"], secret, "gpt-4.1")[0] == 401
        # An error answer fails the command, with the API's message.
        rc, _, err = aigw(addr["admin"], "keys", "revoke", "local-dev")
        assert rc == 1 and "config file" in err
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, "".join(lines)
