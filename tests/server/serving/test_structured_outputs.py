"""Which constraint a request asks for, and the refusals that need no engine."""

from __future__ import annotations

import json

import pytest

from server.errors import APIError
from server.protocol.completions import CompletionRequest
from server.serving import structured_outputs


def constraint(**fields):
    return structured_outputs.requested(CompletionRequest.model_validate(
        {"model": "base", "prompt": "x", **fields}))


def test_response_format_and_extensions_map_to_vllm_params():
    assert constraint() is None
    assert constraint(response_format={"type": "text"}) is None
    c = constraint(response_format={"type": "json_object"})
    assert c.params.json_object and c.param == "response_format"
    c = constraint(response_format={"type": "json_schema", "json_schema": {
        "name": "x", "schema": {"type": "integer"}}})
    assert c.params.json == {"type": "integer"}
    assert c.param == "response_format.json_schema.schema"
    # OpenAI makes the schema optional: then any object
    c = constraint(response_format={"type": "json_schema", "json_schema": {"name": "x"}})
    assert c.params.json == {"type": "object"}
    for name, value in (("choice", ["a", "b"]), ("regex", "[0-9]+"), ("grammar", 'root ::= "x"'),
                        ("json", {"type": "string"})):
        c = constraint(structured_outputs={name: value})
        assert getattr(c.params, name) == value and c.param == f"structured_outputs.{name}"


@pytest.mark.parametrize("fields, param", [
    ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
    ({"structured_outputs": {}}, "structured_outputs"),
    ({"structured_outputs": {"regex": "a", "choice": ["a"]}}, "structured_outputs"),
    ({"structured_outputs": {"regex": "a"}, "response_format": {"type": "json_object"}},
     "structured_outputs"),
])
def test_ambiguous_requests_are_refused(fields, param):
    with pytest.raises(APIError) as e:
        constraint(**fields)
    assert e.value.status == 400 and e.value.param == param


@pytest.mark.parametrize("fields, param", [({"min_tokens": 2}, "min_tokens"),
                                           ({"ignore_eos": True}, "ignore_eos")])
def test_controls_that_fight_a_grammar_are_refused(fields, param):
    request = CompletionRequest.model_validate({"model": "base", "prompt": "x", **fields})
    with pytest.raises(APIError) as e:
        structured_outputs.refuse_conflicts(request)
    assert e.value.param == param


def test_a_requests_whitespace_choice_is_marked_where_the_engine_reads_it():
    from vllm.sampling_params import StructuredOutputsParams

    from server.in_engine.grammars.json_schema import WHITESPACE_KEY

    mark = structured_outputs.with_whitespace
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    assert mark(StructuredOutputsParams(json=schema), None).json == schema  # the server's default
    assert mark(StructuredOutputsParams(json=schema), 4).json == {**schema, WHITESPACE_KEY: 4}
    assert schema == {"type": "object", "properties": {"a": {"type": "integer"}}}  # not the caller's dict
    as_text = mark(StructuredOutputsParams(json='{"type": "integer"}'), 0)
    assert as_text.json == {"type": "integer", WHITESPACE_KEY: 0}
    any_object = mark(StructuredOutputsParams(json_object=True), -1)
    assert not any_object.json_object and any_object.json == {"type": "object", WHITESPACE_KEY: -1}
    tag = mark(StructuredOutputsParams(structural_tag='{"type": "structural_tag", "format": {}}'), 2)
    assert json.loads(tag.structural_tag)[WHITESPACE_KEY] == 2
    for other in (StructuredOutputsParams(regex="[0-9]+"), StructuredOutputsParams(choice=["a"])):
        assert mark(other, 0) == other  # they say their own spaces


def test_json_max_whitespace_is_a_checked_extension():
    request = CompletionRequest.model_validate({"model": "base", "prompt": "x", "json_max_whitespace": 3})
    assert request.json_max_whitespace == 3
    with pytest.raises(ValueError):
        CompletionRequest.model_validate({"model": "base", "prompt": "x", "json_max_whitespace": -2})
