"""Tool calling through the official client and LangChain, on the session server (started with
--tool-call-parser hermes).

`required` and a named function are enforced by the grammar, so even the random base model
calls a tool with valid arguments. `auto` needs a model that writes the parser's format:
`tool-lora` was trained (training.tiny.tool_calls) to call the weather tool, then answer.
"""

from __future__ import annotations

import json

import jsonschema
import pytest

from tests.conftest import API_KEY
from training.tiny.tool_calls import CITIES, TOOLS, WEATHER, WEATHER_TOOL, answer, question

ADD_TOOL = {"type": "function", "function": {
    "name": "add", "description": "Add two small numbers.",
    "parameters": {"type": "object",
                   "properties": {"a": {"type": "integer", "minimum": 0, "maximum": 99},
                                  "b": {"type": "integer", "minimum": 0, "maximum": 99}},
                   "required": ["a", "b"], "additionalProperties": False}}}
BOTH = [WEATHER_TOOL, ADD_TOOL]
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in BOTH}
TARGETS = [("base", None), ("lora-a", None), ("prompt-a", None), ("lora-a", "prompt-a")]


def assert_valid_calls(calls, names=tuple(SCHEMAS)) -> None:
    assert calls
    for call in calls:
        assert call.type == "function" and call.id
        assert call.function.name in names
        jsonschema.validate(json.loads(call.function.arguments), SCHEMAS[call.function.name])


@pytest.mark.parametrize("model, soft_prompt", TARGETS)
def test_required_and_named_calls_follow_the_schema_on_any_model(client, model, soft_prompt):
    extra = {"soft_prompt": soft_prompt} if soft_prompt else None
    messages = [{"role": "user", "content": "Add 2 and 3."}]
    # One call: with parallel calls allowed, the grammar lets a model add calls, and a random
    # one never decides to stop (the trained tool-lora does, below).
    r = client.chat.completions.create(model=model, messages=messages, tools=BOTH,
                                       tool_choice="required", parallel_tool_calls=False,
                                       max_tokens=120, temperature=0, extra_body=extra)
    assert r.choices[0].finish_reason == "tool_calls"
    assert len(r.choices[0].message.tool_calls) == 1
    assert_valid_calls(r.choices[0].message.tool_calls)

    named = {"type": "function", "function": {"name": "add"}}
    r = client.chat.completions.create(model=model, messages=messages, tools=BOTH,
                                       tool_choice=named, max_tokens=120, temperature=0,
                                       extra_body=extra)
    assert r.choices[0].finish_reason == "stop"  # as OpenAI answers a named function
    assert_valid_calls(r.choices[0].message.tool_calls, names=("add",))


def test_sampled_required_calls_stay_valid(client):
    r = client.chat.completions.create(model="lora-b", messages=[{"role": "user", "content": "?"}],
                                       tools=BOTH, tool_choice="required", max_tokens=120,
                                       temperature=1.0, seed=11, n=4, parallel_tool_calls=False)
    for choice in r.choices:
        assert choice.finish_reason == "tool_calls", choice.message
        assert len(choice.message.tool_calls) == 1
        assert_valid_calls(choice.message.tool_calls)


def test_required_lets_a_model_that_stops_end_after_its_calls(client):
    r = client.chat.completions.create(model="tool-lora", tools=TOOLS, tool_choice="required",
                                       messages=[{"role": "user", "content": question("Lima")}],
                                       max_tokens=64, temperature=0)
    assert r.choices[0].finish_reason == "tool_calls"
    call, = r.choices[0].message.tool_calls
    assert json.loads(call.function.arguments) == {"city": "Lima"}


def test_streamed_calls_assemble_to_the_same_calls(client):
    kwargs = dict(model="lora-a", messages=[{"role": "user", "content": "Add 2 and 3."}],
                  tools=BOTH, tool_choice="required", parallel_tool_calls=False, max_tokens=120,
                  temperature=0)
    whole = client.chat.completions.create(**kwargs).choices[0].message.tool_calls
    with client.chat.completions.stream(**kwargs) as stream:
        final = stream.get_final_completion().choices[0]
    assert final.finish_reason == "tool_calls"
    streamed = final.message.tool_calls
    assert [(c.function.name, json.loads(c.function.arguments)) for c in streamed] == \
        [(c.function.name, json.loads(c.function.arguments)) for c in whole]


@pytest.mark.parametrize("city", CITIES)
def test_auto_round_trip_call_then_tool_message_then_answer(client, city):
    messages = [{"role": "user", "content": question(city)}]
    r = client.chat.completions.create(model="tool-lora", messages=messages, tools=TOOLS,
                                       max_tokens=64, temperature=0)  # tool_choice auto
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    call, = choice.message.tool_calls
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": city}

    messages += [choice.message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": WEATHER[city]}]
    r = client.chat.completions.create(model="tool-lora", messages=messages, tools=TOOLS,
                                       max_tokens=64, temperature=0)
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].message.content == answer(city)
    assert not r.choices[0].message.tool_calls


def test_auto_streaming_sends_tool_call_deltas(client):
    with client.chat.completions.stream(
            model="tool-lora", messages=[{"role": "user", "content": question("Oslo")}],
            tools=TOOLS, max_tokens=64, temperature=0) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_completion().choices[0]
    assert "tool_calls.function.arguments.delta" in kinds
    assert final.finish_reason == "tool_calls"
    assert json.loads(final.message.tool_calls[0].function.arguments) == {"city": "Oslo"}


def test_tool_choice_none_answers_with_text(client):
    r = client.chat.completions.create(model="tool-lora", max_tokens=8, temperature=0,
                                       messages=[{"role": "user", "content": "hi"}],
                                       tools=TOOLS, tool_choice="none")
    assert r.choices[0].message.tool_calls is None and r.choices[0].message.content


def test_langchain_bind_tools(server):
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model="tool-lora", base_url=server.url + "/v1", api_key=API_KEY,
                     temperature=0, max_tokens=64, max_retries=0)
    message = llm.bind_tools(TOOLS).invoke(question("Lima"))
    assert message.tool_calls[0]["name"] == "get_weather"
    assert message.tool_calls[0]["args"] == {"city": "Lima"}

    forced = ChatOpenAI(model="base", base_url=server.url + "/v1", api_key=API_KEY,
                        temperature=0, max_tokens=120, max_retries=0)
    message = forced.bind_tools(BOTH, tool_choice="add").invoke("Add 2 and 3.")
    assert message.tool_calls[0]["name"] == "add"
    jsonschema.validate(message.tool_calls[0]["args"], SCHEMAS["add"])
