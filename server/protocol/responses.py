"""POST /v1/responses, as in the OpenAI API reference: the request, checked field by field.

The response and its stream events are OpenAI's own types (`openai.types.responses`), which the
official client parses, as vLLM's Responses server uses them.

The server keeps no state: `previous_response_id` is refused and `store` is answered `false`;
send the whole conversation in `input`, with earlier output items replayed as they came.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from server.protocol.chat import FunctionName
from server.protocol.common import EXTENSION, JSONSchema, OpenAIModel, Temperature

ItemStatus = Literal["in_progress", "completed", "incomplete"]


class InputText(OpenAIModel):
    type: Literal["input_text"]
    text: str


class OutputText(OpenAIModel):
    """Text of an assistant message replayed from an earlier response."""

    type: Literal["output_text"]
    text: str
    annotations: list[Any] | None = None
    logprobs: list[Any] | None = None


class InputMessage(OpenAIModel):
    type: Literal["message"] | None = None
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[InputText | OutputText]
    # Set on a replayed output message.
    id: str | None = None
    status: ItemStatus | None = None
    phase: Literal["commentary", "final_answer"] | None = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class FunctionCallItem(OpenAIModel):
    """A call the model made in an earlier response, replayed."""

    type: Literal["function_call"]
    call_id: str
    name: str
    arguments: str
    id: str | None = None
    status: ItemStatus | None = None


class FunctionCallOutputItem(OpenAIModel):
    """The result of a call, sent back to the model."""

    type: Literal["function_call_output"]
    call_id: str
    output: str | list[InputText]
    id: str | None = None
    status: ItemStatus | None = None

    def text(self) -> str:
        if isinstance(self.output, str):
            return self.output
        return "".join(part.text for part in self.output)


InputItem = InputMessage | FunctionCallItem | FunctionCallOutputItem


class TextFormat(OpenAIModel):
    """`text`, `json_object`, or `json_schema` (whose fields sit beside `type` here)."""

    type: Literal["text", "json_object", "json_schema"]
    name: Annotated[str, Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")] | None = None
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None

    def json_schema(self) -> JSONSchema | None:
        if self.type != "json_schema":
            return None
        return JSONSchema(name=self.name or "response", description=self.description,
                          schema=self.schema_, strict=self.strict)


class TextConfig(OpenAIModel):
    format: TextFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = None  # accepted; no effect


class FunctionTool(OpenAIModel):
    type: Literal["function"]
    name: FunctionName
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class FunctionToolChoice(OpenAIModel):
    type: Literal["function"]
    name: str


class ResponsesRequest(OpenAIModel):
    model: str
    input: str | Annotated[list[InputItem], Field(min_length=1)]
    instructions: str | None = None
    """A system message put before `input`."""
    max_output_tokens: Annotated[int, Field(ge=1)] | None = None
    metadata: dict[str, str] | None = None
    parallel_tool_calls: bool | None = None
    previous_response_id: str | None = None
    """Refused: this server keeps no responses (send the conversation in `input`)."""
    store: bool | None = None
    """Accepted; nothing is stored, and the response says `store: false`."""
    stream: bool | None = False
    temperature: Temperature | None = None
    text: TextConfig | None = None
    tool_choice: Literal["none", "auto", "required"] | FunctionToolChoice | None = None
    tools: list[FunctionTool] | None = None
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    truncation: Literal["disabled"] | None = None
    user: str | None = None

    # Extensions (not in the OpenAI API), as on /v1/chat/completions
    seed: Annotated[int | None, EXTENSION] = None
    """Seed of the sampler, for reproducible sampled outputs."""
    top_k: Annotated[Annotated[int, Field(ge=-1)] | None, EXTENSION] = None
    """Sample from the k most likely tokens only; -1 or 0 means no limit."""
    min_p: Annotated[Annotated[float, Field(ge=0.0, le=1.0)] | None, EXTENSION] = None
    """Drop tokens whose probability is below min_p times the most likely token's."""
    repetition_penalty: Annotated[Annotated[float, Field(gt=0.0, le=2.0)] | None, EXTENSION] = None
    """Multiplicative penalty on tokens already in prompt or output (1.0 = none)."""
    request_timeout: Annotated[Annotated[float, Field(gt=0)] | None, EXTENSION] = None
    """Seconds this request may take (at most the server's --request-timeout); past them it is
    aborted and answered 504."""
    json_max_whitespace: Annotated[Annotated[int, Field(ge=-1)] | None, EXTENSION] = None
    """Whitespace a constrained JSON output may have between its tokens: 0 compact, N at most N
    characters per gap, -1 no bound. Default: the server's --json-max-whitespace (1)."""
    soft_prompt: Annotated[str | None, EXTENSION] = None
    """Name of a soft-prompt adapter to put in front of the input, stacked on `model`'s LoRA."""
    use_adapter_template: Annotated[bool | None, EXTENSION] = False
    """Wrap the last user message in the adapter manifest's prompt template."""
