"""The README's first commands, run exactly as written on the default config: the quick start's server
(`cargo run -- serve`), then every command of "Try it" in one bash session from the repository root, its chat
client fed a conversation on standard input. A command that stops working as written fails here."""

import os
import re
import signal
import socket
import subprocess
import time

from conftest import ROOT

README = (ROOT / "README.md").read_text()


def blocks(section):
    """The `sh` code blocks of a README section."""
    body = README.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", body, re.S)


def listening(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_the_quick_start_and_try_it_work_as_written(tmp_path):
    quick = blocks("Two commands")[0].splitlines()
    # The other line of the quick start is the test command, which runs this very test.
    serve = next(line for line in quick if line.startswith("cargo run")).split("#")[0].strip()
    assert not listening(50051), "something else listens on the default config's port"
    log = open(tmp_path / "serve.log", "w")
    server = subprocess.Popen(["bash", "-c", serve], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 300  # cargo may still have to build
        while not listening(50051):
            assert server.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.2)
        [try_it] = blocks("Try it")
        env = {k: v for k, v in os.environ.items() if k not in ("AIGW_KEY", "AIGW_CONFIG")}
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", try_it], cwd=ROOT, env=env,
                              input="my name is Ann\n/model nope\nwhat is my name?\n/quit\n",
                              capture_output=True, text=True, timeout=300)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(60)
        log.close()
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "holysheepai.AIService" in out                      # list, by reflection
    assert '"finishReason": "stop"' in out                     # Generate
    assert '"isComplete": true' in out                         # StreamGenerate
    assert '"complete": {' in out                              # InteractiveStream
    assert '"status": "SERVING"' in out                        # health
    # The chat client: a wrong model keeps the session, and the second turn sees the first.
    assert "(no new session: INVALID_ARGUMENT" in out, out
    assert 'earlier you said "my name is Ann"' in out, out


def test_the_gates_the_readme_names_are_the_ones_the_test_command_runs():
    """The README's gates sentence against scripts/test.sh: each gate it names is a command the script runs, and
    each gate the script runs is named."""
    script = (ROOT / "scripts" / "test.sh").read_text()
    sentence = README.split("It runs the gates first", 1)[1].split("then `cargo test`", 1)[0]
    gates = {
        "`cargo fmt\n--check`": "cargo fmt --check",
        "`cargo clippy -D warnings`": "cargo clippy --locked --all-targets -- -D warnings",
        "`cargo doc` with warnings denied": 'RUSTDOCFLAGS="-D warnings" cargo doc',
        "`scripts/layers.py`": "python3 scripts/layers.py",
        "`cargo deny check bans licenses\nsources`": "cargo deny --log-level error check bans licenses sources",
    }
    for named, command in gates.items():
        assert named in sentence, f"the README no longer names {named!r}"
        assert command in script, f"scripts/test.sh no longer runs {command!r}"
    prefix = r'^(?:[A-Z_]+="[^"]*" )?'
    ran = set(re.findall(prefix + r"(cargo (?:fmt|clippy|doc|deny)|python3 scripts/layers\.py)", script, re.M))
    named = {re.match(prefix + r"(cargo \w+|python3 \S+)", c)[1] for c in gates.values()}
    assert ran == named, "a gate of scripts/test.sh is not named in the README, or the other way round"
