"""Reasoning models and agents, read by the official SDKs: the built binary in front of a scripted upstream on
loopback that streams as current reasoning models do (thinking with a signature, pings, tool arguments in many
small pieces). The Anthropic SDK reads the Messages door and the OpenAI SDK the chat and Responses doors; each
counts the reasoning and argument deltas it got, and the signature goes back byte-exact in turn 2. An upstream
failure the gateway already retried is not retried again by the SDK."""

import http.server
import json
import signal
import threading

import anthropic
import openai
import pytest

from conftest import anthropic_event, serve_upstream, spawn_gateway, sse_chunk, start_event_stream

KEY = "sk-reasoning-e2e"
SIGNATURE = "EqQBCkYIBxgCKkDX+/9z=="
THOUGHTS = ["I should ", "read the ", "file ", "first."]
ARGS = ['{"path"', ': "src/', 'main.rs"', ', "text"', ': "fn ', 'main() {}"', "}"]


def anthropic_events():
    yield {"type": "message_start", "message": {"id": "msg_up", "type": "message", "role": "assistant",
           "model": "claude-sonnet-4-5", "content": [], "stop_reason": None, "stop_sequence": None,
           "usage": {"input_tokens": 25, "output_tokens": 1}}}
    yield {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "",
                                                                        "signature": ""}}
    for t in THOUGHTS:
        yield {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": t}}
        yield {"type": "ping"}
    yield {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": SIGNATURE}}
    yield {"type": "content_block_stop", "index": 0}
    yield {"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_01",
                                                                        "name": "edit_file", "input": {}}}
    for a in ARGS:
        yield {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": a}}
    yield {"type": "content_block_stop", "index": 1}
    yield {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
           "usage": {"output_tokens": 60}}
    yield {"type": "message_stop"}


def openai_events():
    def chunk(delta, finish=None):
        return {"id": "chatcmpl-r", "object": "chat.completion.chunk", "created": 1, "model": "up",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    yield chunk({"role": "assistant", "content": ""})
    for t in THOUGHTS:
        yield chunk({"reasoning_content": t})
    yield chunk({"content": "Editing."})
    yield chunk({"tool_calls": [{"index": 0, "id": "call_01", "type": "function",
                                 "function": {"name": "edit_file", "arguments": ""}}]})
    for a in ARGS:
        yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": a}}]})
    yield chunk({}, "tool_calls")
    yield {"id": "chatcmpl-r", "object": "chat.completion.chunk", "created": 1, "model": "up", "choices": [],
           "usage": {"prompt_tokens": 25, "completion_tokens": 60, "total_tokens": 85}}


class Upstream(http.server.BaseHTTPRequestHandler):
    """Anthropic's Messages API at /v1/messages, chat completions at /v1/chat/completions; a model named
    "failing" gets 503. Every request body is kept, in order."""
    protocol_version = "HTTP/1.1"
    bodies = []
    lock = threading.Lock()

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        with self.lock:
            self.bodies.append((self.path, body))
        if body.get("model") == "failing":
            data = b'{"error": {"message": "overloaded", "type": "server_error"}}'
            self.send_response(503)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        start_event_stream(self)
        if self.path.endswith("/messages"):
            for e in anthropic_events():
                anthropic_event(self.wfile, e)
        else:
            for e in openai_events():
                sse_chunk(self.wfile, f"data: {json.dumps(e)}\n\n")
            sse_chunk(self.wfile, "data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    upstream = serve_upstream(Upstream)
    base = f"http://127.0.0.1:{upstream.server_address[1]}/v1"
    config = tmp_path_factory.mktemp("reasoning") / "config.toml"
    config.write_text(f"""
[server]
listen = "127.0.0.1:0"
[[keys]]
name = "agents"
env = "REASONING_KEY"
[[upstreams]]
name = "claude-api"
kind = "anthropic"
base_url = "{base}"
[[upstreams]]
name = "reasoner"
kind = "openai"
base_url = "{base}"
[[models]]
name = "claude-x"
max_output_tokens = 64000
routes = [{{ upstream = "claude-api", model = "claude-sonnet-4-5" }}]
[[models]]
name = "reasoner-x"
max_output_tokens = 64000
routes = [{{ upstream = "reasoner", model = "up" }}]
[[models]]
name = "failing"
max_output_tokens = 100
routes = [{{ upstream = "reasoner", model = "failing" }}]
[models.policy]
retry = {{ backoff = "1ms" }}
""")
    proc, addr, lines = spawn_gateway(config, {"REASONING_KEY": KEY})
    yield addr["grpc"]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0, "".join(lines)
    upstream.shutdown()


def test_anthropic_sdk_streams_thinking_and_tool_input_and_sends_the_signature_back(gateway):
    sdk = anthropic.Anthropic(base_url=f"http://{gateway}", api_key=KEY, max_retries=0, timeout=60)
    tools = [{"name": "edit_file", "input_schema": {"type": "object"}}]
    asked = [{"role": "user", "content": "fix main.rs"}]
    kinds = []
    with sdk.messages.stream(model="claude-x", max_tokens=16000, tools=tools, messages=asked,
                             thinking={"type": "enabled", "budget_tokens": 8000}) as stream:
        for event in stream:
            if event.type == "content_block_delta":
                kinds.append(event.delta.type)
        final = stream.get_final_message()
    assert kinds.count("thinking_delta") == len(THOUGHTS)
    assert kinds.count("signature_delta") == 1
    assert kinds.count("input_json_delta") == len(ARGS)
    thinking, call = final.content
    assert thinking.type == "thinking" and thinking.thinking == "".join(THOUGHTS)
    assert thinking.signature == SIGNATURE
    assert call.type == "tool_use" and call.input == json.loads("".join(ARGS))
    # Turn 2: the SDK's own content goes back; the upstream gets the signed block, byte-exact, first.
    Upstream.bodies.clear()
    answered = asked + [{"role": "assistant", "content": final.content},
                        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id,
                                                      "content": "done"}]}]
    with sdk.messages.stream(model="claude-x", max_tokens=16000, tools=tools, messages=answered,
                             thinking={"type": "enabled", "budget_tokens": 8000}) as stream:
        stream.get_final_message()
    [(path, body)] = Upstream.bodies
    assert path == "/v1/messages"
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 8000}
    assert body["messages"][1]["content"][0] == {"type": "thinking", "thinking": "".join(THOUGHTS),
                                                 "signature": SIGNATURE}


def test_openai_sdk_streams_reasoning_and_argument_pieces(gateway):
    sdk = openai.OpenAI(base_url=f"http://{gateway}/v1", api_key=KEY, max_retries=0, timeout=60)
    tools = [{"type": "function", "function": {"name": "edit_file", "parameters": {"type": "object"}}}]
    for model in ["reasoner-x", "claude-x"]:
        reasoning, args, text = [], [], ""
        stream = sdk.chat.completions.create(model=model, stream=True, reasoning_effort="high", tools=tools,
                                             messages=[{"role": "user", "content": "fix main.rs"}])
        for chunk in stream:
            if not chunk.choices:
                continue
            delta = chunk.choices[0].delta
            extra = delta.model_extra or {}
            if extra.get("reasoning_content"):
                reasoning.append(extra["reasoning_content"])
            text += delta.content or ""
            for call in delta.tool_calls or []:
                if call.function and call.function.arguments:
                    args.append(call.function.arguments)
        assert reasoning == THOUGHTS, model
        assert args == ARGS, model
        assert text == ("Editing." if model == "reasoner-x" else ""), model

    # The Responses door: reasoning summary deltas and argument deltas, as events.
    kinds = []
    with sdk.responses.stream(model="reasoner-x", input="fix main.rs", reasoning={"effort": "high"},
                              tools=[{"type": "function", "name": "edit_file", "parameters": {"type": "object"},
                                      "strict": False}]) as stream:
        for event in stream:
            kinds.append(event.type)
        done = stream.get_final_response()
    assert kinds.count("response.reasoning_summary_text.delta") == len(THOUGHTS)
    assert kinds.count("response.function_call_arguments.delta") == len(ARGS)
    assert [item.type for item in done.output] == ["reasoning", "message", "function_call"]
    assert done.output[2].arguments == "".join(ARGS)


def test_sdk_retries_do_not_multiply_the_gateways(gateway):
    Upstream.bodies.clear()
    sdk = openai.OpenAI(base_url=f"http://{gateway}/v1", api_key=KEY, max_retries=2, timeout=60)
    with pytest.raises(openai.APIStatusError) as failed:
        sdk.chat.completions.create(model="failing", messages=[{"role": "user", "content": "hi"}])
    assert failed.value.response.headers["x-should-retry"] == "false"
    # The gateway's three attempts, and not three more for each of the SDK's two retries.
    assert len(Upstream.bodies) == 3
    Upstream.bodies.clear()
    claude = anthropic.Anthropic(base_url=f"http://{gateway}", api_key=KEY, max_retries=2, timeout=60)
    with pytest.raises(anthropic.APIStatusError):
        claude.messages.create(model="failing", max_tokens=8, messages=[{"role": "user", "content": "hi"}])
    assert len(Upstream.bodies) == 3
