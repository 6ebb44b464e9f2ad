"""The one log line per RPC, as the built binary writes it to a pipe (the gateway writes it straight into its
log buffer, not through tracing's formatter): the documented text and JSON layouts, and RUST_LOG still rules
it."""

import http.server
import json
import re
import signal
import urllib.error
import urllib.request

import grpc
import pytest

from conftest import KEY, ROOT, rest_chat, serve_upstream, spawn_gateway

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


class Refuses(http.server.BaseHTTPRequestHandler):
    """An upstream that always says 429 and asks for an 11-day wait, which the gateway clamps (and warns of)."""
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        self.rfile.read(int(self.headers["content-length"]))
        body = b'{"error":{"message":"slow down","type":"rate_limit_exceeded"}}'
        self.send_response(429)
        self.send_header("retry-after", "999999")
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def in_call_lines(tmp_path, stubs, layout, env=None):
    """The warning a call logs in the middle of its work, from a unary and a streaming call on each door."""
    pb, pb_grpc = stubs
    upstream = serve_upstream(Refuses)
    config = tmp_path / "config.toml"
    config.write_text(f"""
[server]
listen = "127.0.0.1:0"
[log]
format = "{layout}"
[[keys]]
name = "ctx-team"
env = "CTX_KEY"
[[upstreams]]
name = "refuser"
kind = "openai"
base_url = "http://127.0.0.1:{upstream.server_address[1]}/v1"
max_retry_after = "2s"
[[models]]
name = "m"
max_output_tokens = 100
routes = [{{ upstream = "refuser", model = "up" }}]
[models.policy]
retry = {{ attempts = 1 }}
""")
    proc, addr, lines = spawn_gateway(config, {"CTX_KEY": "sk-ctx-test", **(env or {})})
    try:
        for rid, stream in [("rest-unary-1", False), ("rest-stream-1", True)]:
            req = urllib.request.Request(
                f"http://{addr['grpc']}/v1/chat/completions", method="POST",
                headers={"authorization": "Bearer sk-ctx-test", "content-type": "application/json",
                         "x-request-id": rid},
                data=json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}],
                                 "stream": stream}).encode())
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(req, timeout=60)
            assert refused.value.code == 429
        stub = pb_grpc.AIServiceStub(grpc.insecure_channel(addr["grpc"]))
        meta = lambda rid: [("authorization", "Bearer sk-ctx-test"), ("x-request-id", rid)]
        ask = [pb.Message(role="user", content="hi")]
        with pytest.raises(grpc.RpcError) as refused:
            stub.Generate(pb.GenerateRequest(model="m", messages=ask), metadata=meta("grpc-unary-1"), timeout=60)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        with pytest.raises(grpc.RpcError) as refused:
            list(stub.StreamGenerate(pb.StreamGenerateRequest(model="m", messages=ask), metadata=meta("grpc-stream-1"),
                                     timeout=60))
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, "".join(lines)
        upstream.shutdown()
    return [line for line in lines if "clamped to max_retry_after" in line]


CALLS = [("ChatCompletions", "rest-unary-1"), ("ChatCompletionsStream", "rest-stream-1"), ("Generate", "grpc-unary-1"),
         ("StreamGenerate", "grpc-stream-1")]


@pytest.mark.parametrize("rust_log", ["info", "info,aigw::upstream=debug"])
def test_a_line_logged_inside_a_call_names_the_call(tmp_path, stubs, rust_log):
    """Docs: every other line written while serving an RPC is inside the RPC's span, and so carries its request id
    and key, in the span context tracing-subscriber writes (`rpc{...}:`). With debug lines on (for one target is
    enough), the attempt's span is inside it."""
    warned = in_call_lines(tmp_path, stubs, "text", {"RUST_LOG": rust_log})
    assert len(warned) == len(CALLS), warned
    attempt = 'upstream{upstream="refuser" attempt=1}:' if "debug" in rust_log else ""
    for line, (rpc, rid) in zip(warned, CALLS):
        want = f' WARN rpc{{rpc="{rpc}" request_id={rid} key=ctx-team}}:{attempt} aigw::upstream::http: '
        assert want in line, line


def test_a_json_line_logged_inside_a_call_names_the_call(tmp_path, stubs):
    warned = [json.loads(line) for line in in_call_lines(tmp_path, stubs, "json")]
    assert len(warned) == len(CALLS), warned
    for record, (rpc, rid) in zip(warned, CALLS):
        want = {"name": "rpc", "rpc": rpc, "request_id": rid, "key": "ctx-team"}
        assert record["span"] == want and record["spans"] == [want], record
        assert record["level"] == "WARN" and record["upstream"] == "refuser", record
