"""Two fixes to the JSON grammars xgrammar compiles in the engine (from `server.in_engine.plugin`).

1. Bounded whitespace, or none. The grammars allow any amount of whitespace between JSON tokens,
   and some models then write whitespace until `max_tokens` (vLLM issue #38696: real models,
   `finish_reason: "length"`, an unfinished object); small fine-tuned adapters do so more easily
   (the 20 characters per gap once allowed here still ran answers into max_tokens). By default
   at most one character per gap (--json-max-whitespace 1: `max_whitespace_cnt`), which admits
   both compact JSON and the `json.dumps` style adapters are usually trained on. 0 is compact
   only, as OpenAI's structured outputs are (`{"a":1,"b":[2]}`: xgrammar's `any_whitespace=False`
   with separators "," and ":"; xgrammar 0.2.8 still puts one space after the commas of free-form
   parts, any-JSON values and `json_object`, its issue #945); forcing it on an adapter trained
   on spaced JSON costs that adapter its accuracy (loadtests/RESULTS.md, "JSON answers"). N
   allows up to N characters per gap (indentation), -1 leaves it unbounded. A request's own
   choice (`json_max_whitespace`) reaches this process inside its schema or structural tag,
   under WHITESPACE_KEY, which is removed before xgrammar sees it. Structural tags (forced tool
   calls) can only bound runs in xgrammar 0.2.8, at 1 or more: compact there means one at most.

2. Strings of valid UTF-8 and of the length asked. xgrammar 0.2.8 compiles a string with
   `minLength`/`maxLength` to a character class that admits raw control characters (xgrammar
   issue #800): a TAB inside such a string is invalid JSON that strict parsers (json.loads,
   pydantic) refuse. And it builds the byte automaton of `.`, and of wide character classes,
   from lead-byte and continuation ranges that also take overlong forms and UTF-16 surrogates
   (E0 8A 8A, ED A0 80): invalid UTF-8, which decodes to one U+FFFD per byte, so a string of 8
   characters to the grammar came back 10 characters long (a `maxLength: 8` broken, openai's
   `parse()` refusing the answer); plain strings take surrogates too. So every string without a
   pattern, format, enum or const of its own is rewritten to a `pattern` of `STRING_CHAR`s: a
   character class split at UTF-8 lead-byte boundaries, one alternative per range, each of which
   xgrammar builds exactly (and no raw control characters, quotes or backslashes; JSON's short
   escapes are alternatives of their own), with the bounds as repeats in runs of at most 128
   (`MAX_REPEAT`: a longer repeat fails to compile in xgrammar 0.2.8's cached compiler).
   Patterns a schema brings are compiled as written.

Both apply to JSON schemas, JSON objects and the JSON inside structural tags (tool calls).
"""

from __future__ import annotations

import json
import os

LIMIT_ENV = "ADAPTER_SERVE_JSON_MAX_WHITESPACE"
"""Set by server.engine from ServerConfig.json_max_whitespace (empty: no bound, 0: compact)."""
WHITESPACE_KEY = "x-adapter-serve-json-max-whitespace"
"""A request's own json_max_whitespace, put at the root of its schema or structural tag by
server.serving.structured_outputs (-1: no bound)."""

MAX_REPEAT = 128

STRING_CHAR = ("(?:[ !#-\\[\\]-~]|\\\\[\"\\\\/bfnrt]|[\u00a0-\u07ff]|[\u0800-\u0fff]|[\u1000-\ucfff]"
               "|[\ud000-\ud7ff]|[\ue000-\ufffd]|[\U00010000-\U0003ffff]|[\U00040000-\U000fffff]"
               "|[\U00100000-\U0010ffff])")
"""One character of a JSON string, as valid UTF-8 only (see 2.): printable ASCII but the quote and
the backslash; a short escape (one character once decoded); or a code point of a range within
which every UTF-8 lead byte takes its full continuation range (the ranges are written as the
characters themselves: xgrammar's regex has no escape for code points above U+FFFF)."""

# Keys whose values are JSON data, not schemas: never rewritten.
_DATA_KEYS = frozenset({"enum", "const", "default", "examples"})
_STRING_CONSTRAINTS = frozenset({"pattern", "format", "enum", "const"})


def whitespace_limit() -> int | None:
    """The server's limit: None unbounded, 0 compact, N at most N characters per gap."""
    value = os.environ.get(LIMIT_ENV)
    return int(value) if value else None


def _request_limit(root, default: int | None) -> int | None:
    """Pop a request's own limit from a schema's or tag's root (-1 there: unbounded)."""
    if not isinstance(root, dict) or WHITESPACE_KEY not in root:
        return default
    limit = int(root.pop(WHITESPACE_KEY))
    return None if limit < 0 else limit


def fix_schema(schema):
    """The schema with its strings as patterns of valid UTF-8 and their lengths (see 2. above)."""
    if isinstance(schema, list):
        return [fix_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    fixed = {key: value if key in _DATA_KEYS else fix_schema(value)
             for key, value in schema.items()}
    if fixed.get("type") == "string" and not _STRING_CONSTRAINTS & fixed.keys():
        fixed["pattern"] = length_pattern(fixed.pop("minLength", 0), fixed.pop("maxLength", None))
    return fixed


def length_pattern(low: int, high: int | None) -> str:
    """A regex for strings of `low` to `high` (None: any more) STRING_CHARs, no repeat above
    MAX_REPEAT: the required characters in exact runs, then the optional ones in bounded runs."""
    def runs(count: int, optional: bool) -> str:
        sizes = [MAX_REPEAT] * (count // MAX_REPEAT) + [count % MAX_REPEAT] * bool(count % MAX_REPEAT)
        return "".join(f"{STRING_CHAR}{{0,{n}}}" if optional else f"{STRING_CHAR}{{{n}}}" for n in sizes)

    rest = f"{STRING_CHAR}*" if high is None else runs(max(high - low, 0), optional=True)
    return f"^{runs(low, optional=False)}{rest}$"


def fix_structural_tag(tag, bound: int | None):
    """The structural tag (parsed JSON) with its JSON-schema parts fixed and bounded."""
    if isinstance(tag, list):
        return [fix_structural_tag(item, bound) for item in tag]
    if not isinstance(tag, dict):
        return tag
    if tag.get("type") == "json_schema" and "json_schema" in tag:
        tag = {**tag, "json_schema": fix_schema(tag["json_schema"])}
        if bound is not None and tag.get("max_whitespace_cnt") is None:
            tag["max_whitespace_cnt"] = max(bound, 1)  # xgrammar's least: 1 (see 1.)
        return tag
    return {key: fix_structural_tag(value, bound) for key, value in tag.items()}


def json_schema_arguments(schema, bound: int | None, *, any_whitespace: bool = True,
                          max_whitespace_cnt: int | None = None, **kwargs) -> tuple[object, dict]:
    """What xgrammar's compile_json_schema gets for `schema` (a JSON string or dict) under the
    server's whitespace limit `bound`: both fixes, and the request's own limit if it has one."""
    limit = bound
    if isinstance(schema, (str, dict)):
        schema = json.loads(schema) if isinstance(schema, str) else dict(schema)
        limit = _request_limit(schema, bound)
        schema = fix_schema(schema)
    # What vLLM asked (its engine-wide disable_any_whitespace, a caller's bound) stands.
    if any_whitespace and max_whitespace_cnt is None and limit is not None:
        if limit == 0:
            any_whitespace = False
            if kwargs.get("separators") is None:
                kwargs["separators"] = (",", ":")
        else:
            max_whitespace_cnt = limit
    return schema, {"any_whitespace": any_whitespace, "max_whitespace_cnt": max_whitespace_cnt, **kwargs}


def structural_tag_argument(tag: str, bound: int | None) -> str:
    """What xgrammar's compile_structural_tag gets for vLLM's structural tag (a JSON string)."""
    parsed = json.loads(tag)
    return json.dumps(fix_structural_tag(parsed, _request_limit(parsed, bound)))


def install() -> None:
    """Wrap xgrammar's JSON-schema and structural-tag compilation with both fixes."""
    import xgrammar

    from server.vllm_patches import mark

    cls = xgrammar.GrammarCompiler
    if getattr(cls, "_adapter_serve_json_fixes", False):
        return
    bound = whitespace_limit()
    json_schema, structural_tag = cls.compile_json_schema, cls.compile_structural_tag

    def compile_json_schema(self, schema, **kwargs):
        schema, kwargs = json_schema_arguments(schema, bound, **kwargs)
        return json_schema(self, schema, **kwargs)

    def compile_structural_tag(self, *args, **kwargs):
        if len(args) == 1 and not kwargs and isinstance(args[0], str):  # vLLM's current form
            args = (structural_tag_argument(args[0], bound),)
        return structural_tag(self, *args, **kwargs)

    cls.compile_json_schema = mark("xgrammar-json-schema", compile_json_schema, json_schema)
    cls.compile_structural_tag = mark("xgrammar-structural-tag", compile_structural_tag, structural_tag)
    cls._adapter_serve_json_fixes = True
