"""Tool plans and the reading of outputs as tool calls, with vLLM's real parsers (no engine)."""

from __future__ import annotations

import json

import pytest
from transformers import AutoTokenizer

from server.errors import APIError
from server.protocol.chat import ChatCompletionRequest
from server.rendering.tool_parsing import ToolCalling
from server.serving import tool_calls

ADD = {"type": "function", "function": {"name": "add", "parameters": {
    "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
    "required": ["a", "b"]}}}
ECHO = {"type": "function", "function": {"name": "echo"}}


@pytest.fixture(scope="module")
def tokenizer(tiny):
    return AutoTokenizer.from_pretrained(tiny["base"])


def request(**fields) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {"model": "base", "messages": [{"role": "user", "content": "hi"}], "tools": [ADD, ECHO],
         **fields})


def plan_for(tokenizer, parser: str | None, **fields):
    return tool_calls.plan(ToolCalling(parser, tokenizer, "base"), request(**fields))


def stream(plan, text: str, pieces: int = 7) -> tuple[str, list[tuple[str, dict]]]:
    """Feed `text` in chunks; return (content, [(name, arguments)]) as a client assembles it."""
    parser, content, calls = plan.parser(), "", {}
    step = max(1, len(text) // pieces)
    chunks = [text[i:i + step] for i in range(0, len(text), step)]
    for i, chunk in enumerate(chunks):
        piece, deltas = plan.parse_delta(parser, chunk, [], [1], finished=i == len(chunks) - 1)
        content += piece or ""
        for d in deltas:
            call = calls.setdefault(d.index, {"name": "", "arguments": ""})
            if d.function is not None:
                call["name"] += d.function.name or ""
                call["arguments"] += d.function.arguments or ""
    return content, [(c["name"], json.loads(c["arguments"])) for c in calls.values()]


def test_required_without_a_parser_is_a_json_array_of_calls(tokenizer):
    plan = plan_for(tokenizer, None, tool_choice="required", parallel_tool_calls=False)
    schema = plan.constraint.params.json
    assert schema["type"] == "array" and schema["maxItems"] == 1
    text = '[{"name": "add", "parameters": {"a": 1, "b": 2}}]'
    content, calls = plan.parse(text, [])
    assert content is None
    assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == \
        [("add", {"a": 1, "b": 2})]
    assert plan.finish_reason(True, "stop") == "tool_calls"
    assert stream(plan, text) == ("", [("add", {"a": 1, "b": 2})])


def test_named_function_without_a_parser_constrains_its_arguments(tokenizer):
    plan = plan_for(tokenizer, None, tool_choice={"type": "function", "function": {"name": "add"}})
    assert plan.constraint.params.json == ADD["function"]["parameters"]
    _, calls = plan.parse('{"a": 4, "b": 5}', [])
    assert calls[0].function.name == "add" and json.loads(calls[0].function.arguments) == \
        {"a": 4, "b": 5}
    assert plan.finish_reason(True, "stop") == "stop"
    # a function without parameters still gets an object
    plan = plan_for(tokenizer, None, tool_choice={"type": "function", "function": {"name": "echo"}})
    assert plan.constraint.params.json["type"] == "object"


def test_a_cut_short_forced_call_keeps_its_text(tokenizer):
    plan = plan_for(tokenizer, None, tool_choice="required")
    assert plan.parse('[{"name": "ad', []) == ('[{"name": "ad', [])


def test_auto_needs_a_parser(tokenizer):
    calling = ToolCalling(None, tokenizer, "base")
    for fields in ({}, {"tool_choice": "auto"}):
        with pytest.raises(APIError) as e:
            tool_calls.plan(calling, request(**fields))
        assert e.value.status == 400 and e.value.param == "tool_choice"
    assert tool_calls.plan(calling, request(tool_choice="none")) is None
    assert tool_calls.plan(calling, request(tools=None)) is None


def test_hermes_reads_the_models_own_format(tokenizer):
    plan = plan_for(tokenizer, "hermes")
    text = 'Sure. <tool_call>{"name": "add", "arguments": {"a": 1, "b": 2}}</tool_call>'
    content, calls = plan.parse(text, [])
    assert content.strip() == "Sure."
    assert calls[0].function.name == "add"
    assert plan.finish_reason(True, "stop") == "tool_calls"
    assert plan.parse("no call here", []) == ("no call here", [])
    content, calls = stream(plan, text)
    assert content.strip() == "Sure." and calls == [("add", {"a": 1, "b": 2})]


def test_unknown_parser_fails_at_start_up(tokenizer):
    with pytest.raises(Exception, match="not-a-parser"):
        ToolCalling("not-a-parser", tokenizer, "base")
