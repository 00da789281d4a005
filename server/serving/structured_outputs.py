"""Constrained decoding: `response_format` and the `structured_outputs` extension -> vLLM's
`StructuredOutputsParams`, checked here so that a bad schema, regex or grammar is a 400 that
names its field and never reaches the engine.

The engine's structured-output backend (xgrammar, falling back to llguidance for what xgrammar
does not support; `--structured-outputs-backend`) masks every token that would leave the
grammar, so a constrained output always parses, unless `max_tokens` cuts it short
(`finish_reason: "length"`, as with OpenAI).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import jsonschema
from vllm.exceptions import VLLMValidationError
from vllm.sampling_params import SamplingParams, StructuredOutputsParams

from server.errors import bad_request
from server.in_engine.grammars.json_schema import WHITESPACE_KEY
from server.protocol.common import SamplingRequest

ANY_JSON_OBJECT = {"type": "object"}


@dataclass(frozen=True)
class Constraint:
    """What the output must match, and the request field it came from (named in errors)."""

    params: StructuredOutputsParams
    param: str


def requested(request: SamplingRequest) -> Constraint | None:
    """The constraint `response_format` or `structured_outputs` asks for, if any."""
    fmt = request.response_format
    extension = request.structured_outputs
    if fmt is not None and fmt.type != "text" and extension is not None:
        raise bad_request("send either response_format or structured_outputs, not both",
                          param="structured_outputs")
    if fmt is not None and fmt.type == "json_object":
        return Constraint(StructuredOutputsParams(json_object=True), "response_format")
    if fmt is not None and fmt.type == "json_schema":
        if fmt.json_schema is None:
            raise bad_request("response_format type json_schema needs a `json_schema` object",
                              param="response_format.json_schema")
        schema = fmt.json_schema.schema_
        # OpenAI makes `schema` optional; without one any JSON object is allowed.
        return Constraint(StructuredOutputsParams(json=schema or ANY_JSON_OBJECT),
                          "response_format.json_schema.schema")
    if extension is None:
        return None
    fields = {name: value for name, value in (("choice", extension.choice),
                                              ("regex", extension.regex),
                                              ("grammar", extension.grammar),
                                              ("json", extension.json_)) if value is not None}
    if len(fields) != 1:
        raise bad_request("structured_outputs takes exactly one of choice, regex, grammar, json; "
                          f"got {len(fields)}", param="structured_outputs")
    (name, value), = fields.items()
    return Constraint(StructuredOutputsParams(**{name: value}), f"structured_outputs.{name}")


def checked(engine, constraint: Constraint | None, json_max_whitespace: int | None = None
            ) -> Constraint | None:
    """The constraint, checked (`check`), with the request's own whitespace choice in it."""
    if constraint is not None:
        constraint = dataclasses.replace(constraint, params=with_whitespace(constraint.params,
                                                                            json_max_whitespace))
        check(constraint, engine)
    return constraint


def with_whitespace(params: StructuredOutputsParams, limit: int | None) -> StructuredOutputsParams:
    """`params` with a request's whitespace limit at the root of its JSON schema or structural
    tag, where the engine's grammar fix reads (and removes) it: server.in_engine.grammars.json_schema.
    Unchanged without a limit, or for a regex, choice or grammar (they say their own spaces)."""
    if limit is None:
        return params
    if params.json_object:
        return dataclasses.replace(params, json_object=None, json={**ANY_JSON_OBJECT, WHITESPACE_KEY: limit})
    if params.json is not None:
        schema = json.loads(params.json) if isinstance(params.json, str) else params.json
        if isinstance(schema, dict):
            return dataclasses.replace(params, json={**schema, WHITESPACE_KEY: limit})
    if params.structural_tag is not None:
        tag = json.loads(params.structural_tag)
        if isinstance(tag, dict):
            return dataclasses.replace(params, structural_tag=json.dumps({**tag, WHITESPACE_KEY: limit}))
    return params


def check(constraint: Constraint, engine) -> None:
    """Refuse, as a 400 naming the field, a constraint the engine's backend cannot compile."""
    schema = constraint.params.json
    if isinstance(schema, dict):
        try:
            jsonschema.validators.validator_for(schema).check_schema(schema)
        except jsonschema.SchemaError as exc:
            where = "/".join(str(p) for p in exc.absolute_path)
            raise bad_request(f"{constraint.param} is not a valid JSON schema: {exc.message}"
                              + (f" (at {where})" if where else ""),
                              param=constraint.param) from exc
    # vLLM's own check (the one the engine runs on admission, picking the backend) on a copy:
    # it rewrites the params it checks, and the engine checks the original again.
    probe = SamplingParams(structured_outputs=dataclasses.replace(constraint.params))
    try:
        probe.verify(engine.model_config, None, engine.vllm_config.structured_outputs_config,
                     engine.tokenizer)
    except (VLLMValidationError, ValueError, TypeError, RuntimeError) as exc:
        reason = exc.args[0] if exc.args else type(exc).__name__
        raise bad_request(f"{constraint.param}: the structured-output backend cannot use it: "
                          f"{reason}", param=constraint.param) from exc


def refuse_conflicts(request: SamplingRequest) -> None:
    """Controls that fight a grammar: it ends the output itself, with the end-of-sequence token."""
    if request.min_tokens:
        raise bad_request("min_tokens cannot be used with a structured output: the grammar "
                          "decides where the output ends", param="min_tokens")
    if request.ignore_eos:
        raise bad_request("ignore_eos cannot be used with a structured output: the grammar "
                          "ends the output with the end-of-sequence token", param="ignore_eos")
