"""Structured output on the default config: the built-in mock answers tool calls and `json_schema` formats with
values that validate against the schema, so clients that parse what a model returns (the openai SDK's
`parse()`, pydantic, LangChain's `with_structured_output` and `bind_tools`) work through aigw out of the box."""

import json
from typing import List, Literal, Optional

import jsonschema
import pytest
from openai import OpenAI, pydantic_function_tool
from pydantic import BaseModel, Field

from conftest import KEY


def client(gateway):
    return OpenAI(base_url=f"http://{gateway}/v1", api_key=KEY, max_retries=0, timeout=30)


# A table of schemas of the shapes clients send: every type, required and optional, enums, nesting, arrays,
# unions with null, $defs and $ref (as pydantic writes them), formats and bounds.
SCHEMAS = {
    "flat": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
             "required": ["city", "days"], "additionalProperties": False},
    "every type": {"type": "object", "required": ["s", "i", "n", "b", "z", "a", "o"], "properties": {
        "s": {"type": "string"}, "i": {"type": "integer"}, "n": {"type": "number"}, "b": {"type": "boolean"},
        "z": {"type": "null"}, "a": {"type": "array", "items": {"type": "integer"}},
        "o": {"type": "object", "properties": {"k": {"type": "string"}}, "required": ["k"]}}},
    "enum and const": {"type": "object", "required": ["unit", "v"], "properties": {
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}, "v": {"const": 2}}},
    "nested arrays": {"type": "object", "required": ["rows"], "properties": {"rows": {
        "type": "array", "minItems": 2, "items": {"type": "object", "required": ["id", "tags"], "properties": {
            "id": {"type": "integer", "minimum": 10},
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 3}}}}}}},
    "nullable union": {"type": "object", "required": ["note", "when"], "properties": {
        "note": {"anyOf": [{"type": "string", "minLength": 30}, {"type": "null"}]},
        "when": {"type": "string", "format": "date-time"}}},
    "defs and refs": {"$defs": {"Item": {"type": "object", "required": ["name", "qty"], "properties": {
        "name": {"type": "string"}, "qty": {"type": "integer", "exclusiveMinimum": 0}}}},
        "type": "object", "required": ["items"],
        "properties": {"items": {"type": "array", "items": {"$ref": "#/$defs/Item"}, "minItems": 1}}},
    "bounds": {"type": "object", "required": ["ratio", "n"], "properties": {
        "ratio": {"type": "number", "minimum": 0, "exclusiveMaximum": 1},
        "n": {"type": ["integer", "null"], "maximum": -3}}},
}


@pytest.mark.parametrize("name", list(SCHEMAS))
def test_tool_arguments_and_json_schema_answers_validate(gateway, name):
    schema = SCHEMAS[name]
    sdk = client(gateway)
    messages = [{"role": "user", "content": "Plan a trip to Lisbon for 4 days in fahrenheit."}]
    tools = [{"type": "function", "function": {"name": "plan", "parameters": schema}}]
    call = sdk.chat.completions.create(model="gpt-4.1", messages=messages, tools=tools)
    (tc,) = call.choices[0].message.tool_calls
    jsonschema.validate(json.loads(tc.function.arguments), schema)

    answer = sdk.chat.completions.create(model="gpt-4.1", messages=messages, response_format={
        "type": "json_schema", "json_schema": {"name": "out", "schema": schema, "strict": False}})
    jsonschema.validate(json.loads(answer.choices[0].message.content), schema)


def test_the_prompt_fills_what_it_can(gateway):
    sdk = client(gateway)
    tools = [{"type": "function", "function": {"name": "weather", "parameters": SCHEMAS["flat"]}}]
    call = sdk.chat.completions.create(model="gpt-4.1", tools=tools, messages=[
        {"role": "user", "content": "What is the weather in Paris for the next 3 days?"}])
    (tc,) = call.choices[0].message.tool_calls
    assert json.loads(tc.function.arguments) == {"city": "Paris", "days": 3}


class Weather(BaseModel):
    city: str
    days: int = Field(ge=1)
    unit: Literal["celsius", "fahrenheit"]
    notes: Optional[str] = None


class Trip(BaseModel):
    destination: str
    legs: List[Weather]


def test_the_sdks_parse_helpers(gateway):
    sdk = client(gateway)
    parsed = sdk.chat.completions.parse(
        model="gpt-4.1", response_format=Trip,
        messages=[{"role": "user", "content": "A trip to Rome for 5 days, in celsius."}])
    trip = parsed.choices[0].message.parsed
    assert isinstance(trip, Trip) and trip.destination == "Rome" and trip.legs

    call = sdk.chat.completions.parse(
        model="gpt-4.1", tools=[pydantic_function_tool(Weather)],
        messages=[{"role": "user", "content": "Weather in Oslo for 2 days, in celsius."}])
    (tc,) = call.choices[0].message.tool_calls
    weather = tc.function.parsed_arguments
    assert isinstance(weather, Weather)
    assert (weather.city, weather.days, weather.unit) == ("Oslo", 2, "celsius")


def test_json_object_mode_answers_an_object(gateway):
    answer = client(gateway).chat.completions.create(
        model="gpt-4.1", response_format={"type": "json_object"},
        messages=[{"role": "user", "content": "answer in JSON"}])
    assert isinstance(json.loads(answer.choices[0].message.content), dict)
