"""Parts shared by the completions and chat protocols."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field


class OpenAIModel(BaseModel):
    # OpenAI answers an unknown argument with 400; so do we, which also catches typos like top_K.
    model_config = ConfigDict(extra="forbid")


class StreamOptions(OpenAIModel):
    include_usage: bool | None = False
    include_obfuscation: bool | None = None  # accepted for client compatibility; no effect


def _is_none(value) -> bool:
    return value is None


# An extension field in a response: left out entirely unless the request asked for it.
ExtensionIds = Annotated[list[int] | None, Field(default=None, exclude_if=_is_none)]


class PromptTokensDetails(BaseModel):
    cached_tokens: int
    """Prompt tokens whose keys and values came from a cache instead of being computed: the
    prefix cache, and a soft prompt's virtual tokens after its first request."""


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails | None = None


Temperature = Annotated[float, Field(ge=0.0, le=2.0)]
Penalty = Annotated[float, Field(ge=-2.0, le=2.0)]


class SamplingRequest(OpenAIModel):
    """Sampling controls common to /v1/completions and /v1/chat/completions."""

    frequency_penalty: Penalty | None = 0.0
    logit_bias: dict[str, Annotated[float, Field(ge=-100.0, le=100.0)]] | None = None
    n: Annotated[int, Field(ge=1, le=128)] | None = 1
    presence_penalty: Penalty | None = 0.0
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    temperature: Temperature | None = 1.0
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] | None = 1.0
    user: str | None = None

    # Extensions (not in the OpenAI API)
    top_k: Annotated[int, Field(ge=-1)] | None = None
    """Sample from the k most likely tokens only; -1 or 0 means no limit."""
    min_p: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    """Drop tokens whose probability is below min_p times the most likely token's."""
    repetition_penalty: Annotated[float, Field(gt=0.0, le=2.0)] | None = None
    """Multiplicative penalty on tokens already in prompt or output (1.0 = none)."""
    min_tokens: Annotated[int, Field(ge=0)] | None = None
    """Generate at least this many tokens before EOS or a stop string may end the output."""
    ignore_eos: bool | None = False
    """Keep generating past the end-of-sequence token (fixed-length outputs for benchmarks)."""
    use_adapter_template: bool | None = False
    """Wrap the prompt (or the last user message) in the adapter manifest's prompt template."""
    soft_prompt: str | None = None
    """Name of a soft-prompt adapter to put in front of the input, stacked on `model`'s LoRA."""
    return_token_ids: bool | None = False
    """Also return the prompt's and each choice's token ids (for exact comparisons)."""
