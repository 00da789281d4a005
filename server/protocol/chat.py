"""POST /v1/chat/completions, as in the OpenAI API reference."""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from server.protocol.common import (
    EXTENSION,
    ExtensionIds,
    OpenAIModel,
    SamplingRequest,
    Usage,
    omit_none,
)

FunctionName = Annotated[str, Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")]


class TextPart(OpenAIModel):
    type: Literal["text"]
    text: str


class FunctionCall(OpenAIModel):
    name: str
    arguments: str
    """The arguments as a JSON string, as the model wrote them."""


class ToolCall(OpenAIModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(OpenAIModel):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None
    refusal: str | None = None  # sent back by clients that replay an assistant message
    tool_calls: list[ToolCall] | None = None
    """Calls an assistant message made (replayed from an earlier response)."""
    tool_call_id: str | None = None
    """The call a `tool` message answers."""

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class FunctionDefinition(OpenAIModel):
    name: FunctionName
    description: str | None = None
    parameters: dict[str, Any] | None = None
    """A JSON schema of the arguments object; none: no arguments."""
    strict: bool | None = None


class Tool(OpenAIModel):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(OpenAIModel):
    name: str


class NamedToolChoice(OpenAIModel):
    type: Literal["function"]
    function: NamedFunction


class ChatCompletionRequest(SamplingRequest):
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    model: str
    logprobs: bool | None = False
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    max_tokens: Annotated[int, Field(ge=1)] | None = None  # deprecated by OpenAI; still sent
    parallel_tool_calls: bool | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    """Default: `auto` when `tools` are given, else `none`."""
    tools: list[Tool] | None = None
    top_logprobs: Annotated[int, Field(ge=0)] | None = None

    # Extensions (not in the OpenAI API)
    add_generation_prompt: Annotated[bool, EXTENSION] = True
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
    tool_calls: Annotated[list[ToolCall] | None, omit_none] = None


# "abort" (not in OpenAI's list): the server ended the request while shutting down.
FinishReason = Literal["stop", "length", "tool_calls", "abort"]


class ChatChoice(BaseModel):
    finish_reason: FinishReason | None
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


class FunctionCallDelta(BaseModel):
    # A field a delta does not carry is left out: the client joins deltas field by field.
    name: Annotated[str | None, omit_none] = None
    arguments: Annotated[str | None, omit_none] = None


class ToolCallDelta(BaseModel):
    index: int
    id: Annotated[str | None, omit_none] = None
    type: Annotated[Literal["function"] | None, omit_none] = None
    function: Annotated[FunctionCallDelta | None, omit_none] = None


class Delta(BaseModel):
    content: str | None = None
    role: Literal["assistant"] | None = None
    tool_calls: Annotated[list[ToolCallDelta] | None, omit_none] = None


class ChunkChoice(BaseModel):
    delta: Delta
    finish_reason: FinishReason | None = None
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
