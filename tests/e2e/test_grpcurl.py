"""The real grpcurl against the built binary, through server reflection only (no proto files)."""

import json
import subprocess

from conftest import KEY

AUTH = f"authorization: Bearer {KEY}"


def run(grpcurl, addr, *args, data=None, auth=True, flags=()):
    cmd = [grpcurl, "-plaintext", "-max-time", "30", *flags]
    if auth:
        cmd += ["-H", AUTH]
    if data is not None:
        cmd += ["-d", "@"]
    cmd += [addr, *args]
    return subprocess.run(cmd, input=data, capture_output=True, text=True, timeout=60)


def objects(text):
    """grpcurl prints one pretty JSON object per message."""
    decoder, out, i = json.JSONDecoder(), [], 0
    while i < len(text):
        if text[i].isspace():
            i += 1
            continue
        obj, i = decoder.raw_decode(text, i)
        out.append(obj)
    return out


def test_list_and_describe_by_reflection(gateway, grpcurl):
    listed = run(grpcurl, gateway, "list", auth=False)
    assert listed.returncode == 0, listed.stderr
    services = listed.stdout.split()
    for name in ["holysheepai.AIService", "grpc.health.v1.Health",
                 "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"]:
        assert name in services
    described = run(grpcurl, gateway, "describe", "holysheepai.AIService", auth=False)
    assert described.returncode == 0, described.stderr
    for rpc in ["Generate", "StreamGenerate", "InteractiveStream", "Embed"]:
        assert f"rpc {rpc}" in described.stdout
    config = run(grpcurl, gateway, "describe", "holysheepai.GenerationConfig", auth=False)
    assert "optional float temperature = 1;" in config.stdout


def test_health(gateway, grpcurl):
    out = run(grpcurl, gateway, "grpc.health.v1.Health/Check", data="{}", auth=False)
    assert out.returncode == 0, out.stderr
    assert objects(out.stdout) == [{"status": "SERVING"}]


def test_generate(gateway, grpcurl):
    req = json.dumps({"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}]})
    out = run(grpcurl, gateway, "holysheepai.AIService/Generate", data=req)
    assert out.returncode == 0, out.stderr
    [resp] = objects(out.stdout)
    assert resp["content"].startswith('Reply 1 to "hi".')
    assert resp["model"] == "gpt-4.1"
    assert resp["finishReason"] == "stop"
    usage = resp["usage"]
    assert usage["totalTokens"] == usage["promptTokens"] + usage["completionTokens"] > 0


def test_tools_and_provider_options_by_reflection(gateway, grpcurl):
    """The README's tool example: reflection serves the new fields (struct.proto included), the mock calls the
    tool, and a google.protobuf.Struct goes in as plain JSON."""
    req = json.dumps({"model": "gpt-4.1", "messages": [{"role": "user", "content": "find aigw"}],
                      "config": {"tools": [{"name": "lookup", "parametersJson": json.dumps(
                          {"type": "object", "properties": {"query": {"type": "string"}}})}],
                                 "providerOptions": {"reasoning_effort": "low"}}})
    out = run(grpcurl, gateway, "holysheepai.AIService/StreamGenerate", data=req)
    assert out.returncode == 0, out.stderr
    [last] = objects(out.stdout)
    assert last["isComplete"] and last["finishReason"] == "tool_calls"
    [call] = last["toolCalls"]
    assert call["name"] == "lookup" and json.loads(call["arguments"]) == {"query": "find aigw"}


def test_stream_generate(gateway, grpcurl):
    req = json.dumps({"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "안녕하세요, 세계"}]})
    out = run(grpcurl, gateway, "holysheepai.AIService/StreamGenerate", data=req)
    assert out.returncode == 0, out.stderr
    chunks = objects(out.stdout)
    assert len(chunks) > 3
    assert all(c.get("delta") for c in chunks[:-1])
    last = chunks[-1]
    assert last["isComplete"] is True
    assert last["usage"]["completionTokens"] == len(chunks) - 1
    text = "".join(c.get("delta", "") for c in chunks)
    assert "안녕하세요, 세계" in text


def test_interactive_two_turns(gateway, grpcurl):
    msgs = "\n".join(json.dumps(m) for m in [
        {"start": {"model": "deepseek-v3.2", "systemPrompt": "be brief"}},
        {"turn": {"content": "my name is Ann"}},
        {"turn": {"content": "what is my name?"}},
    ])
    out = run(grpcurl, gateway, "holysheepai.AIService/InteractiveStream", data=msgs)
    assert out.returncode == 0, out.stderr
    events = objects(out.stdout)
    assert events[0]["started"]["model"] == "deepseek-v3.2"
    # Turn 2 was refused in-band (turn 1 still in flight when grpcurl sent it), or answered; either way each
    # turn ends with complete or error, and the session ended OK.
    answers = {}
    for e in events[1:]:
        if "delta" in e:
            answers[e["turn"]] = answers.get(e["turn"], "") + e["delta"]["delta"]
    assert answers[1].startswith('Reply 1 to "my name is Ann"')
    assert any("complete" in e and e["turn"] == 1 for e in events)


def test_errors_carry_the_right_codes(gateway, grpcurl):
    req = json.dumps({"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}]})
    out = run(grpcurl, gateway, "holysheepai.AIService/Generate", data=req, auth=False)
    assert out.returncode != 0 and "Unauthenticated" in out.stderr
    req = json.dumps({"model": "gpt-5-imaginary", "messages": [{"role": "user", "content": "hi"}]})
    out = run(grpcurl, gateway, "holysheepai.AIService/Generate", data=req)
    assert "InvalidArgument" in out.stderr and "gpt-4.1" in out.stderr


def test_a_repeated_deterministic_request_is_a_cache_hit(gateway, grpcurl):
    # config.toml caches gpt-4.1's temperature-0 answers; grpcurl -v prints the response headers.
    req = json.dumps({"model": "gpt-4.1", "messages": [{"role": "user", "content": "cache me, e2e"}],
                      "config": {"temperature": 0, "max_tokens": 4}})
    first = run(grpcurl, gateway, "holysheepai.AIService/Generate", data=req, flags=["-v"])
    second = run(grpcurl, gateway, "holysheepai.AIService/Generate", data=req, flags=["-v"])
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert "aigw-cache: miss" in first.stdout
    assert "aigw-cache: hit" in second.stdout
    body = lambda out: out[out.index("Response contents:"):out.index("Response trailers")]  # noqa: E731
    assert body(first.stdout) == body(second.stdout)
    bypass = run(grpcurl, gateway, "holysheepai.AIService/Generate", data=req,
                 flags=["-v", "-H", "cache-control: no-cache"])
    assert "aigw-cache: bypass" in bypass.stdout


def test_embed(gateway, grpcurl):
    out = run(grpcurl, gateway, "holysheepai.AIService/Embed",
              data=json.dumps({"model": "text-embedding-3-small", "input": ["one text", "another"], "dimensions": 4}))
    assert out.returncode == 0, out.stderr
    [resp] = objects(out.stdout)
    assert resp["model"] == "text-embedding-3-small"
    assert [len(e["values"]) for e in resp["embeddings"]] == [4, 4]
    assert resp["usage"]["promptTokens"] == 3
