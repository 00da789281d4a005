"""POST /v1/chat/completions, as in the OpenAI API reference."""

from __future__ import annotations

import time
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from server.protocol.common import ExtensionIds, OpenAIModel, SamplingRequest, Usage


class TextPart(OpenAIModel):
    type: Literal["text"]
    text: str


class ChatMessage(OpenAIModel):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class ResponseFormat(OpenAIModel):
    type: Literal["text"]


class ChatCompletionRequest(SamplingRequest):
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    model: str
    logprobs: bool | None = False
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    max_tokens: Annotated[int, Field(ge=1)] | None = None  # deprecated by OpenAI; still sent
    response_format: ResponseFormat | None = None
    top_logprobs: Annotated[int, Field(ge=0)] | None = None

    # Extensions (not in the OpenAI API)
    add_generation_prompt: bool = True
    """Open an assistant turn after the messages (the chat template's generation prompt)."""


class TopLogprob(BaseModel):
    token: str
    bytes: list[int] | None
    logprob: float


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChoiceLogprobs(BaseModel):
    content: list[TokenLogprob] | None


class AssistantMessage(BaseModel):
    content: str | None
    refusal: str | None = None
    role: Literal["assistant"] = "assistant"


class ChatChoice(BaseModel):
    finish_reason: Literal["stop", "length"] | None
    index: int
    logprobs: ChoiceLogprobs | None = None
    message: AssistantMessage

    # Extensions (not in the OpenAI API)
    token_ids: ExtensionIds = None


class ChatCompletionResponse(BaseModel):
    id: str
    choices: list[ChatChoice]
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    object: Literal["chat.completion"] = "chat.completion"
    system_fingerprint: str | None = None
    usage: Usage | None = None

    # Extensions (not in the OpenAI API)
    prompt_token_ids: ExtensionIds = None


class Delta(BaseModel):
    content: str | None = None
    role: Literal["assistant"] | None = None


class ChunkChoice(BaseModel):
    delta: Delta
    finish_reason: Literal["stop", "length"] | None = None
    index: int
    logprobs: ChoiceLogprobs | None = None

    # Extensions (not in the OpenAI API)
    token_ids: ExtensionIds = None


class ChatCompletionChunk(BaseModel):
    id: str
    choices: list[ChunkChoice]
    created: int
    model: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    system_fingerprint: str | None = None
    usage: Usage | None = None
