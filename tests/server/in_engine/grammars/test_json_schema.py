"""The engine-side JSON grammar fixes, checked with xgrammar's own matcher."""

from __future__ import annotations

import json

import pytest
import xgrammar
from xgrammar.testing import _is_grammar_accept_string

from server.in_engine.grammars.json_schema import (
    STRING_CHAR,
    WHITESPACE_KEY,
    fix_schema,
    fix_structural_tag,
    json_schema_arguments,
    structural_tag_argument,
)

BOUNDED = {"type": "object", "properties": {"a": {"type": "string", "minLength": 1,
                                                  "maxLength": 5}},
           "required": ["a"], "additionalProperties": False}


def accepts(schema: dict, text: str, **kwargs) -> bool:
    return _is_grammar_accept_string(xgrammar.Grammar.from_json_schema(schema, **kwargs), text)


def test_xgrammar_bounded_strings_admit_raw_control_characters():
    """The upstream bug (xgrammar #800) the rewrite exists for: if this starts failing, xgrammar
    has fixed it and the rewrite can go."""
    assert accepts(BOUNDED, '{"a": "a\tb"}')


@pytest.mark.parametrize("text, ok", [
    ('{"a": "abc"}', True), ('{"a": "éé"}', True), ('{"a": "a\tb"}', False),
    ('{"a": "a\x0fb"}', False), ('{"a": ""}', False), ('{"a": "abcdef"}', False),
    ('{"a": "a"b"}', False),
])
def test_rewritten_bounds_keep_lengths_and_refuse_control_characters(text, ok):
    assert accepts(fix_schema(BOUNDED), text) is ok
    if ok:
        json.loads(text)  # everything accepted is strict JSON


def test_rewrite_leaves_other_strings_and_data_alone():
    schema = {"type": "object", "properties": {
        "p": {"type": "string", "maxLength": 3, "pattern": "^x+$"},
        "f": {"type": "string", "maxLength": 30, "format": "date"},
        "type": {"type": "string", "maxLength": 2}},
        "examples": [{"type": "string", "maxLength": 1}]}
    fixed = fix_schema(schema)
    assert fixed["properties"]["p"] == schema["properties"]["p"]
    assert fixed["properties"]["f"] == schema["properties"]["f"]
    assert fixed["properties"]["type"] == {"type": "string", "pattern": f"^{STRING_CHAR}{{0,2}}$"}
    assert fixed["examples"] == schema["examples"]
    assert fix_schema({"type": "string"}) == {"type": "string", "pattern": f"^{STRING_CHAR}*$"}
    assert fix_schema({"type": "string", "enum": ["x"]}) == {"type": "string", "enum": ["x"]}


def byte_matcher_accepts():
    """accepts(schema, raw bytes): xgrammar's matcher fed one byte per token, so that any byte
    sequence can be tried, invalid UTF-8 included (what a byte-level BPE model can sample)."""
    vocab = [bytes([i]) for i in range(256)] + [b"<eos>"]
    compiler = xgrammar.GrammarCompiler(xgrammar.TokenizerInfo(vocab, stop_token_ids=[256]))

    def accepts_bytes_with(schema: dict, data: bytes, **kwargs) -> bool:
        matcher = xgrammar.GrammarMatcher(compiler.compile_json_schema(json.dumps(schema), **kwargs))
        return all(matcher.accept_token(b) for b in data) and matcher.accept_token(256)

    return (lambda schema, data: accepts_bytes_with(schema, data, any_whitespace=False)), accepts_bytes_with


accepts_bytes, accepts_bytes_with = byte_matcher_accepts()
INVALID_UTF8 = [b"\xe0\x8a\x8a", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf0\x8f\xbf\xbf", b"\xf4\x90\x80\x80", b"\x80",
                b"\xe4\xb8"]  # overlong, overlong, surrogate, overlong, above U+10FFFF, lone, cut
VALID = ["a", "ʊ", "中", "😀", "ࠀ", "퟿", "\ue000", "\ufffd", '"', "\\", "\n", "/", "~ #[]"]


def test_xgrammar_admits_invalid_utf8_in_strings():
    """The upstream behaviour the rewrite exists for (a `maxLength: 8` string came back 10
    characters long): if this starts failing, xgrammar builds exact UTF-8 and the class can go."""
    bounded = {"type": "object", "properties": {"w": {"type": "string", "pattern": "^.{0,8}$"}}, "required": ["w"]}
    plain = {"type": "object", "properties": {"w": {"type": "string"}}, "required": ["w"]}
    assert accepts_bytes(bounded, b'{"w": "\xe0\x8a\x8a"}')
    assert accepts_bytes(plain, b'{"w": "\xed\xa0\x80"}')


@pytest.mark.parametrize("string", [{"type": "string"}, {"type": "string", "maxLength": 8},
                                    {"type": "string", "minLength": 1, "maxLength": 300}])
def test_rewritten_strings_take_only_valid_utf8(string):
    schema = fix_schema({"type": "object", "properties": {"w": string}, "required": ["w"]})
    assert not [b for b in INVALID_UTF8 if accepts_bytes(schema, b'{"w": "' + b + b'"}')]
    for text in VALID:
        data = json.dumps({"w": text}, ensure_ascii=False).encode()
        assert accepts_bytes(schema, data), data
        assert json.loads(data.decode("utf-8"))["w"] == text  # strict UTF-8, decoded as sent


def test_bounded_strings_count_characters_not_bytes():
    schema = fix_schema({"type": "object", "properties": {"w": {"type": "string", "maxLength": 8}}, "required": ["w"]})
    for text, ok in [("中" * 8, True), ("中" * 9, False), ('"' * 8, True), ('"' * 9, False), ("😀" * 8, True)]:
        assert accepts_bytes(schema, json.dumps({"w": text}, ensure_ascii=False).encode()) is ok, text


def test_whitespace_bound():
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    assert accepts(schema, '{"a":' + " " * 50 + "1}")
    assert accepts(schema, '{"a":' + " " * 4 + "1}", max_whitespace_cnt=4)
    assert not accepts(schema, '{"a":' + " " * 5 + "1}", max_whitespace_cnt=4)


PAIR = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "array", "items": {"type": "integer"}}},
        "required": ["a", "b"], "additionalProperties": False}


def compiled_accepts(schema, bound, data: str) -> bool:
    """What the engine's wrapped compile_json_schema accepts, for the server's limit `bound`."""
    schema, kwargs = json_schema_arguments(json.dumps(schema), bound)
    return accepts_bytes_with(schema, data.encode(), **kwargs)


@pytest.mark.parametrize("bound, text, ok", [
    (0, '{"a":1,"b":[1,2]}', True), (0, '{"a": 1,"b":[1,2]}', False), (0, '{\n"a":1,"b":[1,2]}', False),
    (2, '{"a":  1,\n"b":[1, 2]}', True), (2, '{"a":   1,"b":[1,2]}', False),
    (None, '{"a":' + " " * 40 + '1,"b":[1,2]}', True),
])
def test_compact_by_default_bounded_or_free_on_request(bound, text, ok):
    assert compiled_accepts(PAIR, bound, text) is ok


@pytest.mark.parametrize("request_limit, text, ok", [
    (0, '{"a":1,"b":[1,2]}', True), (0, '{"a": 1,"b":[1,2]}', False),
    (3, '{"a":   1,"b":[1,2]}', True), (-1, '{"a":' + " " * 40 + '1,"b":[1,2]}', True),
])
def test_a_requests_own_limit_beats_the_servers(request_limit, text, ok):
    marked = {**PAIR, WHITESPACE_KEY: request_limit}
    assert compiled_accepts(marked, 0, text) is ok
    schema, _ = json_schema_arguments(marked, 0)
    assert WHITESPACE_KEY not in schema  # never reaches xgrammar


def test_vllms_own_compact_setting_stands():
    schema, kwargs = json_schema_arguments(PAIR, 5, any_whitespace=False, separators=(",", ":"))
    assert kwargs["any_whitespace"] is False and kwargs["max_whitespace_cnt"] is None


def test_structural_tags_get_both_fixes():
    tag = {"type": "structural_tag", "format": {"type": "tags_with_separator", "separator": "", "tags": [
        {"type": "tag", "begin": "<tool_call>", "end": "</tool_call>",
         "content": {"type": "json_schema", "json_schema": BOUNDED, "max_whitespace_cnt": None}}]}}
    content = fix_structural_tag(tag, 7)["format"]["tags"][0]["content"]
    assert content["max_whitespace_cnt"] == 7
    assert content["json_schema"] == fix_schema(BOUNDED)
    xgrammar.Grammar.from_structural_tag(json.dumps(fix_structural_tag(tag, 7)))  # still valid
    # Compact (0): xgrammar's structural tags bound runs at 1 at least.
    assert fix_structural_tag(tag, 0)["format"]["tags"][0]["content"]["max_whitespace_cnt"] == 1
    # A request's own limit, at the tag's root, wins and is removed.
    fixed = json.loads(structural_tag_argument(json.dumps({**tag, WHITESPACE_KEY: 3}), 0))
    assert WHITESPACE_KEY not in fixed and fixed["format"]["tags"][0]["content"]["max_whitespace_cnt"] == 3
    fixed = json.loads(structural_tag_argument(json.dumps({**tag, WHITESPACE_KEY: -1}), 0))
    assert fixed["format"]["tags"][0]["content"]["max_whitespace_cnt"] is None


@pytest.mark.parametrize("low, high", [(0, 5), (3, None), (150, 300), (0, 129), (256, 256)])
def test_long_bounds_compile_in_runs_xgrammar_can_cache(tokenizer_info, low, high):
    compiler = xgrammar.GrammarCompiler(tokenizer_info)  # cached, as in the engine
    schema = fix_schema({"type": "string", "minLength": low,
                         **({"maxLength": high} if high is not None else {})})
    compiler.compile_json_schema(schema)
    for n in (low, (high or low + 300), max(low - 1, 0), (high or 10**6) + 1):
        ok = low <= n <= (high if high is not None else n)
        assert accepts(schema, json.dumps("a" * n)) is ok, n


def test_xgrammar_cached_compiler_fails_on_long_repeats(tokenizer_info):
    """Why the runs: if this stops failing, xgrammar has fixed it."""
    with pytest.raises(RuntimeError):
        xgrammar.GrammarCompiler(tokenizer_info).compile_json_schema(
            {"type": "string", "pattern": "^.{0,129}$"})


@pytest.fixture(scope="module")
def tokenizer_info(tiny):
    from transformers import AutoTokenizer

    return xgrammar.TokenizerInfo.from_huggingface(AutoTokenizer.from_pretrained(tiny["base"]),
                                                   vocab_size=512)
