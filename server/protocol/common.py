"""Parts shared by the completions and chat protocols."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class OpenAIModel(BaseModel):
    # OpenAI answers an unknown argument with 400; so do we, which also catches typos like top_K.
    # Field docstrings become the descriptions in /openapi.json. Strict: a value must have its
    # documented JSON type (`"max_tokens": "5"` or `"top_k": false` is a 400, not coerced).
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, strict=True)


# Marks a field OpenAI does not have, in the code and as `x-extension: true` in /openapi.json.
EXTENSION = Field(json_schema_extra={"x-extension": True})


class StreamOptions(OpenAIModel):
    include_usage: bool | None = False
    include_obfuscation: bool | None = None  # accepted for client compatibility; no effect


def _is_none(value) -> bool:
    return value is None


# A response field left out entirely when it has no value (`Annotated[T | None, omit_none]`).
omit_none = Field(exclude_if=_is_none)
# An extension field in a response: left out entirely unless the request asked for it.
ExtensionIds = Annotated[list[int] | None, Field(default=None, exclude_if=_is_none), EXTENSION]


class PromptTokensDetails(BaseModel):
    cached_tokens: int
    """Prompt tokens whose keys and values came from a cache instead of being computed: the
    prefix cache, and a soft prompt's virtual tokens after its first request."""


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails | None = None


class JSONSchema(OpenAIModel):
    name: Annotated[str, Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")]
    description: str | None = None
    # `schema` would shadow a pydantic BaseModel attribute.
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(OpenAIModel):
    """`text` (no constraint), `json_object` (any JSON object) or `json_schema`."""

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchema | None = None


class StructuredOutputs(OpenAIModel):
    """Extension (not in the OpenAI API): constraints OpenAI has no field for, named as vLLM's
    `structured_outputs` names them. Exactly one of the fields."""

    choice: Annotated[list[str], Field(min_length=1)] | None = None
    """The output is one of these strings."""
    regex: str | None = None
    """The output matches this regular expression."""
    grammar: str | None = None
    """The output is a sentence of this grammar: EBNF (GBNF, as xgrammar reads it) or Lark."""
    json_: dict[str, Any] | None = Field(default=None, alias="json")
    """The output is JSON valid against this schema (same as response_format json_schema)."""


Temperature = Annotated[float, Field(ge=0.0, le=2.0)]
Penalty = Annotated[float, Field(ge=-2.0, le=2.0)]


class SamplingRequest(OpenAIModel):
    """Sampling controls common to /v1/completions and /v1/chat/completions."""

    frequency_penalty: Penalty | None = 0.0
    logit_bias: dict[str, Annotated[float, Field(ge=-100.0, le=100.0)]] | None = None
    n: Annotated[int, Field(ge=1, le=128)] | None = 1
    presence_penalty: Penalty | None = 0.0
    response_format: ResponseFormat | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    temperature: Temperature | None = 1.0
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] | None = 1.0
    user: str | None = None

    # Extensions (not in the OpenAI API)
    top_k: Annotated[Annotated[int, Field(ge=-1)] | None, EXTENSION] = None
    """Sample from the k most likely tokens only; -1 or 0 means no limit."""
    min_p: Annotated[Annotated[float, Field(ge=0.0, le=1.0)] | None, EXTENSION] = None
    """Drop tokens whose probability is below min_p times the most likely token's."""
    repetition_penalty: Annotated[Annotated[float, Field(gt=0.0, le=2.0)] | None, EXTENSION] = None
    """Multiplicative penalty on tokens already in prompt or output (1.0 = none)."""
    min_tokens: Annotated[Annotated[int, Field(ge=0)] | None, EXTENSION] = None
    """Generate at least this many tokens before EOS or a stop string may end the output."""
    ignore_eos: Annotated[bool | None, EXTENSION] = False
    """Keep generating past the end-of-sequence token (fixed-length outputs for benchmarks)."""
    use_adapter_template: Annotated[bool | None, EXTENSION] = False
    """Wrap the prompt (or the last user message) in the adapter manifest's prompt template."""
    soft_prompt: Annotated[str | None, EXTENSION] = None
    """Name of a soft-prompt adapter to put in front of the input, stacked on `model`'s LoRA."""
    return_token_ids: Annotated[bool | None, EXTENSION] = False
    """Also return the prompt's and each choice's token ids (for exact comparisons)."""
    request_timeout: Annotated[Annotated[float, Field(gt=0)] | None, EXTENSION] = None
    """Seconds this request may take (at most the server's --request-timeout); past them it is
    aborted and answered 504."""
    json_max_whitespace: Annotated[Annotated[int, Field(ge=-1)] | None, EXTENSION] = None
    """Whitespace a constrained JSON output may have between its tokens: 0 compact, N at most N
    characters per gap, -1 no bound. Default: the server's --json-max-whitespace (1)."""
    structured_outputs: Annotated[StructuredOutputs | None, EXTENSION] = None
    """Constrain the output to a choice of strings, a regex or a grammar (see StructuredOutputs)."""


# The pooling endpoints' input (/v1/embeddings, /classify): a text, texts, token ids, or lists of
# token ids, as OpenAI's embeddings take it. At most 2048 items, as OpenAI allows.
PoolingInput = str | Annotated[list[str], Field(max_length=2048)] | list[int] \
    | Annotated[list[list[int]], Field(max_length=2048)]


class PoolingUsage(BaseModel):
    """Nothing is generated: every token is a prompt token."""

    prompt_tokens: int
    total_tokens: int
