"""The official `openai` Python SDK against the REST door of the built gateway, on the default config."""

import openai
import pytest
from openai import OpenAI

from conftest import KEY


def client(gateway, key=KEY):
    # No SDK retries: a refusal must show as the error it is, once.
    return OpenAI(base_url=f"http://{gateway}/v1", api_key=key, max_retries=0, timeout=30)


def test_plain_completion(gateway):
    resp = client(gateway).chat.completions.create(
        model="gemini-2.5-flash",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello sdk"}],
        max_tokens=5,
        temperature=0.3,
    )
    assert resp.object == "chat.completion"
    assert resp.id.startswith("mock-")
    choice = resp.choices[0]
    assert choice.message.role == "assistant"
    assert "hello sdk" in choice.message.content
    assert choice.finish_reason == "length"
    assert resp.usage.completion_tokens == 5
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + 5


def test_streamed_completion(gateway):
    stream = client(gateway).chat.completions.create(
        model="gpt-4.1",
        messages=[{"role": "user", "content": "stream please"}],
        max_tokens=6,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "stream please" in text
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["length"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 6
    assert len({c.id for c in chunks}) == 1


def test_models_list(gateway):
    ids = [m.id for m in client(gateway).models.list()]
    assert "gpt-4.1" in ids and "deepseek-v3.2" in ids


def test_errors_are_the_sdk_exceptions(gateway):
    with pytest.raises(openai.AuthenticationError):
        client(gateway, key="sk-wrong").chat.completions.create(
            model="gpt-4.1", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.NotFoundError) as e:
        client(gateway).chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    assert e.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError):
        client(gateway).chat.completions.create(
            model="gpt-4.1", messages=[{"role": "user", "content": "x"}], max_tokens=10**9)


TOOLS = [{"type": "function", "function": {
    "name": "lookup", "description": "Look something up",
    "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}}}]


def test_tool_call_round_trip(gateway):
    """The mock model calls the offered tool with the user's words; the tool's answer comes back quoted."""
    import json
    sdk = client(gateway)
    messages = [{"role": "user", "content": "find aigw"}]
    first = sdk.chat.completions.create(model="gpt-4.1", messages=messages, tools=TOOLS)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "lookup"
    assert json.loads(call.function.arguments) == {"query": "find aigw"}
    messages.append(choice.message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": "a gRPC gateway"})
    second = sdk.chat.completions.create(model="gpt-4.1", messages=messages, tools=TOOLS)
    assert second.choices[0].finish_reason == "stop"
    assert "a gRPC gateway" in second.choices[0].message.content


def test_streamed_tool_call(gateway):
    import json
    stream = client(gateway).chat.completions.create(
        model="gpt-4.1", messages=[{"role": "user", "content": "stream a call"}], tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "lookup"}}, stream=True)
    calls = {}
    finish = None
    for chunk in stream:
        delta = chunk.choices[0].delta
        for tc in delta.tool_calls or []:
            slot = calls.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
            slot["id"] += tc.id or ""
            slot["name"] += (tc.function.name or "") if tc.function else ""
            slot["arguments"] += (tc.function.arguments or "") if tc.function else ""
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls"
    assert list(calls) == [0]
    assert calls[0]["name"] == "lookup" and calls[0]["id"].startswith("call_")
    assert json.loads(calls[0]["arguments"]) == {"query": "stream a call"}


def test_json_mode(gateway):
    """response_format reaches the model (the mock answers a JSON object in JSON mode)."""
    import json
    resp = client(gateway).chat.completions.create(
        model="gpt-4.1", messages=[{"role": "user", "content": "as json"}],
        response_format={"type": "json_schema", "json_schema": {
            "name": "answer", "schema": {"type": "object", "properties": {"answer": {"type": "string"}}}}})
    assert "as json" in json.loads(resp.choices[0].message.content)["answer"]


def test_embeddings(gateway):
    """Two inputs, two unit vectors; the SDK asks for base64 and decodes it; the same text, the same vector."""
    import math
    sdk = client(gateway)
    resp = sdk.embeddings.create(model="text-embedding-3-small", input=["the gateway streams", "bananas"])
    assert resp.object == "list" and resp.model == "text-embedding-3-small"
    assert [d.index for d in resp.data] == [0, 1]
    first, second = (d.embedding for d in resp.data)
    assert len(first) == len(second) == 1536
    assert abs(math.sqrt(sum(x * x for x in first)) - 1.0) < 1e-4
    assert first != second
    assert resp.usage.prompt_tokens == 4 and resp.usage.total_tokens == 4
    again = sdk.embeddings.create(model="text-embedding-3-small", input="bananas", dimensions=1536,
                                  encoding_format="float")
    # JSON floats print the f32 shortest, base64 carries its exact bits: equal as f32s.
    assert max(abs(a - b) for a, b in zip(again.data[0].embedding, second)) < 1e-8
    short = sdk.embeddings.create(model="text-embedding-3-small", input="bananas", dimensions=8)
    assert len(short.data[0].embedding) == 8
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.embeddings.create(model="gpt-4.1", input="x")
    assert "chat model" in str(refused.value)
