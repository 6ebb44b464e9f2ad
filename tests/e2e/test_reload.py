"""SIGHUP reloads the config file of the running binary: a model added to the file becomes callable without a
restart; an invalid file is refused with the error logged, and the gateway goes on with the config it had."""

import shutil
import signal
import time

from conftest import KEY, ROOT, rest_chat, spawn_gateway

NEW_MODEL = """
[[models]]
name = "added-by-reload"
max_output_tokens = 1000
routes = [{ upstream = "mock", model = "added-by-reload" }]
"""


def eventually(what, check):
    """Polls until `check` holds; the bound only guards against a hang."""
    deadline = time.monotonic() + 60
    while not check():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.05)


def test_sighup_reloads_the_file(tmp_path):
    cfg = tmp_path / "config.toml"
    shutil.copy(ROOT / "config.toml", cfg)
    proc, addr, lines = spawn_gateway(cfg)
    try:
        assert rest_chat(addr["grpc"], KEY, "added-by-reload")[0] == 404
        cfg.write_text(cfg.read_text() + NEW_MODEL)
        proc.send_signal(signal.SIGHUP)
        eventually("the reload is logged", lambda: any("config reloaded" in l for l in lines))
        assert rest_chat(addr["grpc"], KEY, "added-by-reload")[0] == 200

        # An invalid file: refused, logged, and the process goes on with what it had.
        cfg.write_text(cfg.read_text() + "\n[[models]]\nname = \"half\"\n")
        proc.send_signal(signal.SIGHUP)
        eventually("the refusal is logged", lambda: any("config not reloaded" in l for l in lines))
        assert proc.poll() is None
        assert rest_chat(addr["grpc"], KEY, "added-by-reload")[0] == 200
        assert rest_chat(addr["grpc"], KEY, "gpt-4.1")[0] == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, "".join(lines)
