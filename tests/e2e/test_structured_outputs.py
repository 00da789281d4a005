"""Structured outputs through the official client: every constrained output parses (and
validates), for every adapter kind and with the other sampling controls in play.

The test model is random, so anything it writes that parses is the grammar's doing.
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor

import jsonschema
import pytest
from pydantic import BaseModel, Field

# Bounded strings and numbers: a random model at temperature 1 would otherwise write until
# max_tokens, and the point here is that what it writes always parses. `note` is free text: the
# tiny model's byte-level vocabulary can write any byte sequence, and under xgrammar 0.2.8 alone
# it wrote invalid UTF-8 there (U+FFFD once decoded, past maxLength); server.in_engine.grammars.json_schema
# admits valid UTF-8 only.
NESTED = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "pattern": "^[A-Za-z ]{1,12}$"},
        "note": {"type": "string", "maxLength": 8},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "tags": {"type": "array", "items": {"type": "string", "enum": ["red", "green"]},
                 "maxItems": 3},
        "address": {
            "type": "object",
            "properties": {"city": {"type": "string", "enum": ["Oslo", "Lima", "Rome"]},
                           "zip": {"type": "string", "pattern": "^[0-9]{5}$"}},
            "required": ["city", "zip"], "additionalProperties": False},
        "active": {"type": "boolean"},
    },
    "required": ["name", "note", "age", "tags", "address", "active"],
    "additionalProperties": False,
}
TARGETS = [("base", None), ("lora-a", None), ("prompt-a", None), ("lora-a", "prompt-a")]
MESSAGES = [{"role": "user", "content": "Describe a person."}]


class Person(BaseModel):
    name: str = Field(max_length=12)
    age: int = Field(ge=0, le=120)
    active: bool


def json_schema_format(schema: dict) -> dict:
    return {"type": "json_schema", "json_schema": {"name": "person", "schema": schema,
                                                   "strict": True}}


@pytest.mark.parametrize("model, soft_prompt", TARGETS)
def test_parse_returns_a_validated_object_for_every_adapter_kind(client, model, soft_prompt):
    extra = {"soft_prompt": soft_prompt} if soft_prompt else None
    r = client.chat.completions.parse(model=model, messages=MESSAGES, response_format=Person,
                                      max_tokens=300, temperature=0, extra_body=extra)
    choice = r.choices[0]
    assert choice.finish_reason == "stop", choice.message.content
    assert isinstance(choice.message.parsed, Person)


def test_fifty_sampled_outputs_all_validate_whatever_the_other_controls(client):
    """Temperature 1, seeds, n > 1, streaming, stop strings, penalties and sampler extensions:
    none of them may break the guarantee."""

    def run(i: int) -> list[tuple[str, str]]:
        model, soft_prompt = TARGETS[i % len(TARGETS)]
        extra = {"soft_prompt": soft_prompt} if soft_prompt else {}
        extra.update([{}, {"top_k": 40}, {"min_p": 0.05}, {"repetition_penalty": 1.3}][i % 4])
        kwargs = dict(model=model, messages=MESSAGES, max_tokens=400, temperature=1.0, seed=i,
                      response_format=json_schema_format(NESTED), extra_body=extra,
                      n=1 + i % 3, presence_penalty=0.5 if i % 5 == 0 else 0.0,
                      # A stop string that occurs in any JSON must not cut it.
                      stop=["}", '"'] if i % 2 else None)
        if i % 2:
            texts: dict[int, str] = {}
            finish: dict[int, str] = {}
            for chunk in client.chat.completions.create(stream=True, **kwargs):
                for c in chunk.choices:
                    texts[c.index] = texts.get(c.index, "") + (c.delta.content or "")
                    finish[c.index] = c.finish_reason or finish.get(c.index)
            return [(texts[k], finish[k]) for k in sorted(texts)]
        r = client.chat.completions.create(**kwargs)
        return [(c.message.content, c.finish_reason) for c in r.choices]

    with ThreadPoolExecutor(8) as pool:
        results = [out for outs in pool.map(run, range(50)) for out in outs]
    assert len(results) == sum(1 + i % 3 for i in range(50))
    for text, finish in results:
        assert finish == "stop", text
        assert "\ufffd" not in text, text  # no invalid UTF-8 came out of the grammar
        jsonschema.validate(json.loads(text), NESTED)
    assert len({text for text, _ in results}) > len(results) // 2  # really sampled
    # The free-text field really was free: the model wrote more than ASCII letters into it.
    assert any(not json.loads(text)["note"].isascii() for text, _ in results)


STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def longest_whitespace_outside_strings(text: str) -> int:
    runs = re.findall(r"\s+", STRING.sub('""', text))
    return max(map(len, runs), default=0)


def test_json_whitespace_is_bounded_and_chosen_per_request(client):
    """At most one whitespace character per gap by default (--json-max-whitespace 1: a small
    adapter cannot pad its answer into max_tokens, and json.dumps-style answers still pass);
    compact on request (`json_max_whitespace: 0`, as OpenAI's); more room on request. The random
    model at temperature 1 uses whatever room it is given."""

    def answers(**extra) -> list[str]:
        r = client.chat.completions.create(model="lora-a", messages=MESSAGES, max_tokens=400, temperature=1.0,
                                           seed=11, n=6, response_format=json_schema_format(NESTED),
                                           extra_body=extra or None)
        return [c.message.content for c in r.choices if c.finish_reason == "stop"]

    default, compact, roomy = answers(), answers(json_max_whitespace=0), answers(json_max_whitespace=8)
    assert default and max(map(longest_whitespace_outside_strings, default)) == 1, default
    assert compact and max(map(longest_whitespace_outside_strings, compact)) == 0, compact
    assert roomy and max(map(longest_whitespace_outside_strings, roomy)) > 1, roomy
    for text in default + compact + roomy:
        jsonschema.validate(json.loads(text), NESTED)


def test_json_object_is_any_object(client):
    r = client.chat.completions.create(model="lora-a", messages=MESSAGES, max_tokens=300,
                                       temperature=1.0, seed=7, n=3,
                                       response_format={"type": "json_object"})
    for c in r.choices:
        if c.finish_reason == "stop":  # an open-ended object may run to max_tokens
            assert isinstance(json.loads(c.message.content), dict)
    assert any(c.finish_reason == "stop" for c in r.choices)


def test_max_tokens_cuts_with_finish_reason_length(client):
    r = client.chat.completions.create(model="base", messages=MESSAGES, max_tokens=3,
                                       temperature=0, response_format=json_schema_format(NESTED))
    assert r.choices[0].finish_reason == "length"
    assert r.choices[0].message.content.startswith("{")


def test_completions_endpoint_takes_response_format_and_the_extensions(client):
    r = client.completions.create(model="lora-a", prompt="Person:", max_tokens=300,
                                  temperature=0.8, seed=3,
                                  extra_body={"response_format": json_schema_format(NESTED)})
    jsonschema.validate(json.loads(r.choices[0].text), NESTED)

    choices = ["positive", "negative", "neutral"]
    for i in range(5):
        r = client.completions.create(model="base", prompt="Sentiment:", max_tokens=10,
                                      temperature=1.0, seed=i, extra_body={
                                          "structured_outputs": {"choice": choices},
                                          "soft_prompt": "prompt-a"})
        assert r.choices[0].text in choices

    r = client.completions.create(model="base", prompt="Phone:", max_tokens=20, temperature=1.0,
                                  seed=1, extra_body={"structured_outputs": {
                                      "regex": r"\+[0-9]{2} [0-9]{3}-[0-9]{4}"}})
    assert re.fullmatch(r"\+[0-9]{2} [0-9]{3}-[0-9]{4}", r.choices[0].text)


@pytest.mark.parametrize("grammar", [
    # EBNF (GBNF, as xgrammar reads it)
    'root ::= "SELECT " column " FROM " table\ncolumn ::= "name" | "age"\ntable ::= "users" | "pets"',
    # Lark
    'start: "SELECT " column " FROM " table\ncolumn: "name" | "age"\ntable: "users" | "pets"',
])
def test_grammar_extension_takes_ebnf_and_lark(client, grammar):
    r = client.chat.completions.create(model="lora-a", messages=MESSAGES, max_tokens=20,
                                       temperature=1.0, seed=5,
                                       extra_body={"structured_outputs": {"grammar": grammar}})
    assert re.fullmatch(r"SELECT (name|age) FROM (users|pets)", r.choices[0].message.content)


def test_langchain_with_structured_output(server):
    from langchain_openai import ChatOpenAI

    from tests.conftest import API_KEY

    llm = ChatOpenAI(model="lora-a", base_url=server.url + "/v1", api_key=API_KEY,
                     temperature=0, max_tokens=300, max_retries=0)
    person = llm.with_structured_output(Person, method="json_schema").invoke("Describe a person.")
    assert isinstance(person, Person)
