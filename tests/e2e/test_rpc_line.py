"""The one log line per RPC, as the built binary writes it to a pipe (the gateway writes it straight into its
log buffer, not through tracing's formatter): the documented text and JSON layouts, and RUST_LOG still rules
it."""

import json
import re
import signal

from conftest import KEY, ROOT, rest_chat, spawn_gateway

TEXT = re.compile(
    r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z  INFO aigw::rpc: rpc="ChatCompletions" key=local-dev '
    r'request_id=(?P<id>[0-9a-f]{32}) model=gpt-4\.1 upstream=mock code="OK" error="" '
    r'latency_ms=\d+\.\d\d overhead_us=\d+ prompt_tokens=\d+ completion_tokens=3 cached_prompt_tokens=0 '
    r'reasoning_tokens=0 usage_estimated=false cost_usd=\d+\.\d{6} turns=1 attempts=1 cache="(miss|bypass|)"\n$')


def lines_of_one_call(config, env=None):
    proc, addr, lines = spawn_gateway(config, env)
    try:
        status, _ = rest_chat(addr["grpc"], KEY, "gpt-4.1", content="log me", max_tokens=3)
        assert status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, "".join(lines)
    return [line for line in lines if "aigw::rpc" in line]


def test_text_line(tmp_path):
    (line,) = lines_of_one_call(ROOT / "config.toml")
    assert TEXT.match(line), line


def test_json_line(tmp_path):
    config = tmp_path / "json.toml"
    text = (ROOT / "config.toml").read_text()
    assert 'format = "text"' in text
    config.write_text(text.replace('format = "text"', 'format = "json"', 1))
    (line,) = lines_of_one_call(config)
    record = json.loads(line)
    assert list(record) == ["timestamp", "level", "rpc", "key", "request_id", "model", "upstream", "code", "error",
                            "latency_ms", "overhead_us", "prompt_tokens", "completion_tokens",
                            "cached_prompt_tokens", "reasoning_tokens", "usage_estimated", "cost_usd", "turns",
                            "attempts", "cache", "target"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", record["timestamp"])
    assert (record["level"], record["target"], record["rpc"], record["code"]) == \
        ("INFO", "aigw::rpc", "ChatCompletions", "OK")
    assert record["completion_tokens"] == 3 and record["usage_estimated"] is False
    assert isinstance(record["latency_ms"], str) and isinstance(record["cost_usd"], str)


def test_rust_log_can_turn_it_off():
    assert lines_of_one_call(ROOT / "config.toml", {"RUST_LOG": "info,aigw::rpc=warn"}) == []
