"""The openai SDK's Responses API (`client.responses`) against the REST door, on the default config."""

import json

import openai
import pytest
from pydantic import BaseModel

from test_openai_sdk import client


def test_create_plain(gateway):
    resp = client(gateway).responses.create(model="gpt-4.1", input="hello responses",
                                            instructions="Be brief.", max_output_tokens=40)
    assert resp.object == "response" and resp.id.startswith("resp_")
    assert resp.status == "completed"
    assert resp.model == "gpt-4.1"
    assert "hello responses" in resp.output_text
    [item] = resp.output
    assert item.type == "message" and item.role == "assistant"
    assert resp.usage.input_tokens > 0 and resp.usage.output_tokens > 0
    assert resp.usage.total_tokens == resp.usage.input_tokens + resp.usage.output_tokens
    assert resp.usage.input_tokens_details.cached_tokens == 0
    assert resp.instructions == "Be brief."


def test_create_streamed(gateway):
    stream = client(gateway).responses.create(model="claude-sonnet-4.5", input="stream it", stream=True)
    events = list(stream)
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) > 1
    done = events[-1].response
    assert done.output_text == "".join(deltas)
    assert "response.output_text.done" in kinds and "response.output_item.done" in kinds
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert done.usage.output_tokens == len(deltas)


def test_an_output_limit_is_incomplete(gateway):
    resp = client(gateway).responses.create(model="gpt-4.1", input="a long one", max_output_tokens=3)
    assert resp.status == "incomplete"
    assert resp.incomplete_details.reason == "max_output_tokens"


class Weather(BaseModel):
    city: str
    days: int


def test_parse_with_a_schema(gateway):
    resp = client(gateway).responses.parse(model="gpt-4.1", input="weather in Paris for the next 3 days",
                                           text_format=Weather)
    assert resp.output_parsed == Weather(city="Paris", days=3)


def test_a_tool_round_trip_and_a_continuation(gateway):
    sdk = client(gateway)
    tools = [{"type": "function", "name": "get_weather", "description": "Weather in a city",
              "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                             "required": ["city"]}}]
    first = sdk.responses.create(model="gpt-4.1", input="weather in Seoul?", tools=tools,
                                 tool_choice={"type": "function", "name": "get_weather"})
    [call] = [o for o in first.output if o.type == "function_call"]
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Seoul"}
    # The tool's output goes back on the kept conversation.
    second = sdk.responses.create(model="gpt-4.1", previous_response_id=first.id, tools=tools,
                                  input=[{"type": "function_call_output", "call_id": call.call_id,
                                          "output": "sunny, 21C"}])
    assert second.status == "completed" and second.previous_response_id == first.id
    assert second.usage.input_tokens > first.usage.input_tokens
    # Streamed calls come as function-call argument events.
    stream = sdk.responses.create(model="gpt-4.1", input="weather in Lima?", tools=tools,
                                  tool_choice="required", stream=True)
    events = list(stream)
    [args] = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert json.loads(args.arguments) == {"city": "Lima"}
    assert events[-1].type == "response.completed"


def test_a_stored_response_is_the_keys_alone_and_store_false_keeps_nothing(gateway):
    sdk = client(gateway)
    kept = sdk.responses.create(model="gpt-4.1", input="remember me")
    again = sdk.responses.create(model="gpt-4.1", input="and now?", previous_response_id=kept.id)
    assert again.status == "completed"
    unkept = sdk.responses.create(model="gpt-4.1", input="forget me", store=False)
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.responses.create(model="gpt-4.1", input="x", previous_response_id=unkept.id)
    assert "previous_response_id" in str(refused.value)


def test_hosted_tools_are_left_out_and_named_unless_forced(gateway):
    raw = client(gateway).responses.with_raw_response.create(model="gpt-4.1", input="x",
                                                               tools=[{"type": "web_search"}])
    assert raw.headers["aigw-dropped"] == "tools[0]:web_search"
    assert raw.parse().status == "completed"
    with pytest.raises(openai.BadRequestError) as refused:
        client(gateway).responses.create(model="gpt-4.1", input="x", tools=[{"type": "web_search"}],
                                         tool_choice={"type": "web_search"})
    assert "tool_choice" in str(refused.value)
