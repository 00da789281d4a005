"""Two fixes to the JSON grammars xgrammar compiles in the engine (from `server.vllm_plugin`).

1. Bounded whitespace. The grammars allow any amount of whitespace between JSON tokens, and some
   models then write whitespace until `max_tokens` (vLLM issue #38696: real models,
   `finish_reason: "length"`, an unfinished object); small fine-tuned adapters do so more
   easily. vLLM's remedy, `disable_any_whitespace`, forbids whitespace altogether (models that
   pretty-print then write worse JSON) and cannot be combined with the `auto` backend. xgrammar
   can bound each run instead (`max_whitespace_cnt`), which keeps indented JSON and ends the loop
   (--json-max-whitespace).
2. Length-bounded strings. xgrammar 0.2.8 compiles a string with `minLength`/`maxLength` to a
   character class that admits raw control characters (xgrammar issue #800): a TAB inside such a
   string is invalid JSON that strict parsers (json.loads, pydantic) refuse. The same bound
   written as a `pattern` goes through xgrammar's JSON-aware regex, which refuses them, so
   bounded strings are rewritten to `"pattern": "^.{min,max}$"`, in runs of at most 128
   (`MAX_REPEAT`: a longer repeat fails to compile in xgrammar 0.2.8's cached compiler).

Both apply to JSON schemas, JSON objects and the JSON inside structural tags (tool calls).
"""

from __future__ import annotations

import json
import os

LIMIT_ENV = "ADAPTER_SERVE_JSON_MAX_WHITESPACE"
"""Set by server.engine from ServerConfig.json_max_whitespace (empty: no bound)."""

MAX_REPEAT = 128

# Keys whose values are JSON data, not schemas: never rewritten.
_DATA_KEYS = frozenset({"enum", "const", "default", "examples"})
_STRING_CONSTRAINTS = frozenset({"pattern", "format", "enum", "const"})


def whitespace_limit() -> int | None:
    value = os.environ.get(LIMIT_ENV)
    return int(value) if value else None


def fix_schema(schema):
    """The schema with length-bounded strings as patterns (see 2. above)."""
    if isinstance(schema, list):
        return [fix_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    fixed = {key: value if key in _DATA_KEYS else fix_schema(value)
             for key, value in schema.items()}
    lengths = ("minLength" in fixed, "maxLength" in fixed)
    if fixed.get("type") == "string" and any(lengths) and not _STRING_CONSTRAINTS & fixed.keys():
        fixed["pattern"] = length_pattern(fixed.pop("minLength", 0), fixed.pop("maxLength", None))
    return fixed


def length_pattern(low: int, high: int | None) -> str:
    """A regex for strings of `low` to `high` (None: any more) characters, no repeat above
    MAX_REPEAT: the required characters in exact runs, then the optional ones in bounded runs."""
    def runs(count: int, optional: bool) -> str:
        sizes = [MAX_REPEAT] * (count // MAX_REPEAT) + [count % MAX_REPEAT] * bool(count % MAX_REPEAT)
        return "".join(f".{{0,{n}}}" if optional else f".{{{n}}}" for n in sizes)

    rest = ".*" if high is None else runs(max(high - low, 0), optional=True)
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
            tag["max_whitespace_cnt"] = bound
        return tag
    return {key: fix_structural_tag(value, bound) for key, value in tag.items()}


def install() -> None:
    """Wrap xgrammar's JSON-schema and structural-tag compilation with both fixes."""
    import xgrammar

    cls = xgrammar.GrammarCompiler
    if getattr(cls, "_adapter_serve_json_fixes", False):
        return
    bound = whitespace_limit()
    json_schema, structural_tag = cls.compile_json_schema, cls.compile_structural_tag

    def compile_json_schema(self, schema, *, any_whitespace: bool = True,
                            max_whitespace_cnt: int | None = None, **kwargs):
        if isinstance(schema, (str, dict)):
            schema = fix_schema(json.loads(schema) if isinstance(schema, str) else schema)
        if any_whitespace and max_whitespace_cnt is None:
            max_whitespace_cnt = bound
        return json_schema(self, schema, any_whitespace=any_whitespace,
                           max_whitespace_cnt=max_whitespace_cnt, **kwargs)

    def compile_structural_tag(self, *args, **kwargs):
        if len(args) == 1 and not kwargs and isinstance(args[0], str):  # vLLM's current form
            args = (json.dumps(fix_structural_tag(json.loads(args[0]), bound)),)
        return structural_tag(self, *args, **kwargs)

    cls.compile_json_schema = compile_json_schema
    cls.compile_structural_tag = compile_structural_tag
    cls._adapter_serve_json_fixes = True
