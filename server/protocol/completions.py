"""POST /v1/completions, as in the OpenAI API reference (legacy completions)."""

from __future__ import annotations

import time
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from server.protocol.common import ExtensionIds, SamplingRequest, Usage


class CompletionRequest(SamplingRequest):
    model: str
    prompt: str | list[str] | list[int] | list[list[int]]
    best_of: Annotated[int, Field(ge=1)] | None = None
    echo: bool | None = False
    logprobs: Annotated[int, Field(ge=0)] | None = None
    max_tokens: Annotated[int, Field(ge=1)] | None = 16
    suffix: str | None = None


class CompletionLogprobs(BaseModel):
    text_offset: list[int] = Field(default_factory=list)
    token_logprobs: list[float | None] = Field(default_factory=list)
    tokens: list[str] = Field(default_factory=list)
    top_logprobs: list[dict[str, float] | None] = Field(default_factory=list)


class CompletionChoice(BaseModel):
    # "abort" (not in OpenAI's list): the server ended the request while shutting down.
    finish_reason: Literal["stop", "length", "abort"] | None
    index: int
    logprobs: CompletionLogprobs | None = None
    text: str

    # Extensions (not in the OpenAI API)
    token_ids: ExtensionIds = None
    prompt_token_ids: ExtensionIds = None


class CompletionResponse(BaseModel):
    id: str
    choices: list[CompletionChoice]
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    object: Literal["text_completion"] = "text_completion"
    system_fingerprint: str | None = None
    usage: Usage | None = None
