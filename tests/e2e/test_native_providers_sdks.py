"""The official SDKs in front of the native providers: the built binary routes a model to a scripted Gemini
(`streamGenerateContent`, thought parts and a signed function call) and one to a scripted Bedrock
(ConverseStream's event-stream frames, written here from AWS's format: prelude, headers, CRC-32s). The Anthropic
SDK reads its thinking, signature and tool input from the Messages door and sends the turn back, and the
upstream gets the signature on the call it came with; the OpenAI SDK reads the chat door's stream."""

import binascii
import http.server
import json
import signal
import struct

import anthropic
import openai
import pytest

from conftest import serve_upstream, spawn_gateway

KEY = "sk-native-e2e"
SIGNATURE = "CiQB0e2Kb3native+sig/=="
THOUGHTS = ["Look at ", "the file ", "first."]
ARGS = {"path": "src/main.rs"}


def gemini_chunks():
    for t in THOUGHTS:
        yield {"candidates": [{"content": {"role": "model", "parts": [{"text": t, "thought": True}]}}]}
    yield {"candidates": [{"content": {"role": "model", "parts": [
        {"functionCall": {"name": "edit_file", "args": ARGS}, "thoughtSignature": SIGNATURE}]},
        "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 20, "candidatesTokenCount": 8, "thoughtsTokenCount": 30}}


def frame(event_type, payload):
    """One AWS event-stream frame (prelude, CRCs, string headers), as Bedrock writes them."""
    headers = b""
    for name, value in ((":event-type", event_type), (":content-type", "application/json"),
                        (":message-type", "event")):
        headers += bytes([len(name)]) + name.encode() + b"\x07" + struct.pack(">H", len(value)) + value.encode()
    body = json.dumps(payload).encode()
    total = 12 + len(headers) + len(body) + 4
    prelude = struct.pack(">II", total, len(headers))
    prelude += struct.pack(">I", binascii.crc32(prelude))
    message = prelude + headers + body
    return message + struct.pack(">I", binascii.crc32(message))


def bedrock_frames():
    yield frame("messageStart", {"role": "assistant"})
    for t in THOUGHTS:
        yield frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": t}}})
    yield frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": SIGNATURE}}})
    yield frame("contentBlockStop", {"contentBlockIndex": 0})
    yield frame("contentBlockStart", {"contentBlockIndex": 1,
                                      "start": {"toolUse": {"toolUseId": "tooluse_e2e", "name": "edit_file"}}})
    text = json.dumps(ARGS)
    for piece in (text[:9], text[9:]):
        yield frame("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": piece}}})
    yield frame("contentBlockStop", {"contentBlockIndex": 1})
    yield frame("messageStop", {"stopReason": "tool_use"})
    yield frame("metadata", {"usage": {"inputTokens": 20, "outputTokens": 38, "totalTokens": 58}})


class Upstream(http.server.BaseHTTPRequestHandler):
    """Gemini under /v1beta, Bedrock under /model: each request kept, each answered with its API's stream."""
    protocol_version = "HTTP/1.1"
    seen = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        Upstream.seen.append((self.path, body))
        gemini = self.path.startswith("/v1beta/")
        self.send_response(200)
        self.send_header("content-type", "text/event-stream" if gemini else "application/vnd.amazon.eventstream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        parts = ((f"data: {json.dumps(c)}\r\n\r\n").encode() for c in gemini_chunks()) if gemini else bedrock_frames()
        for data in parts:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    upstream = serve_upstream(Upstream)
    port = upstream.server_address[1]
    config = tmp_path_factory.mktemp("native") / "config.toml"
    config.write_text(f"""
[server]
listen = "127.0.0.1:0"
[[keys]]
name = "sdks"
env = "NATIVE_KEY"
[[upstreams]]
name = "google"
kind = "gemini"
base_url = "http://127.0.0.1:{port}/v1beta"
api_key_env = "NATIVE_GEMINI_KEY"
[[upstreams]]
name = "aws"
kind = "bedrock"
base_url = "http://127.0.0.1:{port}"
region = "us-east-1"
access_key_id_env = "NATIVE_AWS_ID"
secret_access_key_env = "NATIVE_AWS_SECRET"
[[models]]
name = "gemini-x"
max_output_tokens = 64000
routes = [{{ upstream = "google", model = "gemini-2.5-pro" }}]
[[models]]
name = "bedrock-x"
max_output_tokens = 64000
routes = [{{ upstream = "aws", model = "anthropic.claude-sonnet-4-5-20250929-v1:0" }}]
""")
    proc, addr, lines = spawn_gateway(config, {"NATIVE_KEY": KEY, "NATIVE_GEMINI_KEY": "g-key",
                                               "NATIVE_AWS_ID": "AKIDE2E", "NATIVE_AWS_SECRET": "secret"})
    yield addr["grpc"]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0, "".join(lines)
    upstream.shutdown()


@pytest.mark.parametrize("model", ["gemini-x", "bedrock-x"])
def test_anthropic_sdk_thinks_calls_and_sends_the_signature_back(gateway, model):
    sdk = anthropic.Anthropic(base_url=f"http://{gateway}", api_key=KEY, max_retries=0, timeout=60)
    tools = [{"name": "edit_file", "input_schema": {"type": "object"}}]
    asked = [{"role": "user", "content": "fix main.rs"}]
    kinds = []
    with sdk.messages.stream(model=model, max_tokens=16000, tools=tools, messages=asked,
                             thinking={"type": "enabled", "budget_tokens": 8000}) as stream:
        for event in stream:
            if event.type == "content_block_delta":
                kinds.append(event.delta.type)
        final = stream.get_final_message()
    # Every thought piece as it came, the signature, the call's input.
    assert kinds.count("thinking_delta") == len(THOUGHTS)
    assert kinds.count("signature_delta") == 1
    assert kinds.count("input_json_delta") >= 1
    thinking = [b for b in final.content if b.type == "thinking"]
    assert "".join(b.thinking for b in thinking) == "".join(THOUGHTS)
    assert [b.signature for b in thinking if b.signature] == [SIGNATURE]
    [call] = [b for b in final.content if b.type == "tool_use"]
    assert call.input == ARGS and final.stop_reason == "tool_use"
    # Turn 2, the SDK's own content sent back: the signature reaches the upstream with the call.
    Upstream.seen.clear()
    answered = asked + [{"role": "assistant", "content": final.content},
                        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id,
                                                      "content": "done"}]}]
    with sdk.messages.stream(model=model, max_tokens=16000, tools=tools, messages=answered,
                             thinking={"type": "enabled", "budget_tokens": 8000}) as stream:
        stream.get_final_message()
    [(path, body)] = Upstream.seen
    if model == "gemini-x":
        assert path == "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse"
        [signed] = [p for p in body["contents"][1]["parts"] if "functionCall" in p]
        assert signed["thoughtSignature"] == SIGNATURE and signed["functionCall"]["args"] == ARGS
        assert body["contents"][2]["parts"][0]["functionResponse"]["name"] == "edit_file"
    else:
        assert path == "/model/anthropic.claude-sonnet-4-5-20250929-v1%3A0/converse-stream"
        turn = body["messages"][1]["content"]
        assert turn[0] == {"reasoningContent": {"reasoningText": {"text": "".join(THOUGHTS),
                                                                  "signature": SIGNATURE}}}
        assert turn[1]["toolUse"]["input"] == ARGS


@pytest.mark.parametrize("model", ["gemini-x", "bedrock-x"])
def test_openai_sdk_streams_reasoning_and_the_call(gateway, model):
    sdk = openai.OpenAI(base_url=f"http://{gateway}/v1", api_key=KEY, max_retries=0, timeout=60)
    reasoning, args, finish = [], [], None
    for chunk in sdk.chat.completions.create(
            model=model, stream=True, reasoning_effort="high", messages=[{"role": "user", "content": "fix"}],
            tools=[{"type": "function", "function": {"name": "edit_file", "parameters": {"type": "object"}}}]):
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        piece = getattr(delta, "reasoning_content", None) or (delta.model_extra or {}).get("reasoning_content")
        if piece:
            reasoning.append(piece)
        for call in delta.tool_calls or []:
            if call.function and call.function.arguments:
                args.append(call.function.arguments)
        finish = chunk.choices[0].finish_reason or finish
    assert reasoning == THOUGHTS
    assert json.loads("".join(args)) == ARGS
    assert finish == "tool_calls"
