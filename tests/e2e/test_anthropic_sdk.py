"""The official `anthropic` Python SDK against the Messages door (`POST /v1/messages`), on the default config:
any configured model answers, whatever its upstream speaks."""

import json

import anthropic
import pytest

from conftest import KEY


def client(gateway, key=KEY):
    # The SDK sends the key as x-api-key, and anthropic-version; no SDK retries.
    return anthropic.Anthropic(base_url=f"http://{gateway}", api_key=key, max_retries=0, timeout=30)


def test_messages_create(gateway):
    msg = client(gateway).messages.create(
        model="claude-sonnet-4.5", max_tokens=64, system="Be brief.",
        messages=[{"role": "user", "content": "hello anthropic sdk"}])
    assert msg.type == "message" and msg.role == "assistant" and msg.id.startswith("msg_")
    assert msg.model == "claude-sonnet-4.5"
    [block] = msg.content
    assert block.type == "text" and "hello anthropic sdk" in block.text
    assert msg.stop_reason == "end_turn"
    assert msg.usage.input_tokens > 0 and msg.usage.output_tokens > 0


def test_messages_stream(gateway):
    with client(gateway).messages.stream(
            model="gpt-4.1", max_tokens=8, messages=[{"role": "user", "content": "stream it"}]) as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(texts) > 1
    assert final.content[0].text == "".join(texts)
    assert final.stop_reason == "max_tokens"
    assert final.usage.output_tokens == 8
    assert final.usage.input_tokens > 0


def test_a_tool_round_trip(gateway):
    sdk = client(gateway)
    tools = [{"name": "get_weather", "description": "Weather in a city",
              "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
    asked = [{"role": "user", "content": "weather in Seoul?"}]
    first = sdk.messages.create(model="claude-sonnet-4.5", max_tokens=64, tools=tools,
                                tool_choice={"type": "tool", "name": "get_weather"}, messages=asked)
    assert first.stop_reason == "tool_use"
    [call] = [b for b in first.content if b.type == "tool_use"]
    assert call.name == "get_weather" and call.input == {"city": "Seoul"}
    answered = asked + [{"role": "assistant", "content": first.content},
                        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id,
                                                      "content": "sunny, 21C"}]}]
    second = sdk.messages.create(model="claude-sonnet-4.5", max_tokens=64, tools=tools, messages=answered)
    assert second.stop_reason == "end_turn"
    assert second.content[0].type == "text"
    # Streamed, the call's input arrives as input_json_delta and the SDK assembles it.
    with sdk.messages.stream(model="claude-sonnet-4.5", max_tokens=64, tools=tools, tool_choice={"type": "any"},
                             messages=[{"role": "user", "content": "weather in Lima?"}]) as stream:
        final = stream.get_final_message()
    [call] = [b for b in final.content if b.type == "tool_use"]
    assert call.input == {"city": "Lima"}


def test_errors_are_anthropic_errors(gateway):
    with pytest.raises(anthropic.AuthenticationError) as refused:
        client(gateway, key="sk-wrong").messages.create(
            model="claude-sonnet-4.5", max_tokens=8, messages=[{"role": "user", "content": "x"}])
    assert refused.value.body["error"]["type"] == "authentication_error"
    with pytest.raises(anthropic.NotFoundError) as unknown:
        client(gateway).messages.create(model="no-such-model", max_tokens=8,
                                        messages=[{"role": "user", "content": "x"}])
    assert unknown.value.body["type"] == "error"
    assert "no-such-model" in unknown.value.body["error"]["message"]
    with pytest.raises(anthropic.BadRequestError) as bad:
        client(gateway).messages.create(model="claude-sonnet-4.5", max_tokens=8,
                                        messages=[{"role": "user", "content": "x"}],
                                        thinking={"type": "enabled"})
    assert "thinking.budget_tokens" in bad.value.body["error"]["message"]


def test_count_tokens_and_models_as_anthropic_answers_them(gateway):
    sdk = client(gateway)
    counted = sdk.messages.count_tokens(model="claude-sonnet-4.5",
                                        messages=[{"role": "user", "content": "count these words please"}])
    assert counted.input_tokens > 0
    ids = [m.id for m in sdk.models.list()]
    assert "claude-sonnet-4.5" in ids and "gpt-4.1" in ids
