"""Tool calling: `tools` and `tool_choice` -> how generation is constrained, and the output read
back as tool calls, with vLLM's own parsers.

- `required` and a named function are enforced by structured outputs (vLLM's JSON schema of
  the tool calls, or the parser's structural tag), so they work on any model.
- `auto` leaves the model free and reads its own tool-call format with the parser that
  `--tool-call-parser` names (hermes, llama3_json, mistral, qwen3, ...); without one it is a 400.

vLLM's parsers read vLLM's request type, so each request gets a vLLM `ChatCompletionRequest`
view holding its tools and tool choice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import jsonschema
from vllm.entrypoints.openai.chat_completion.protocol import (
    ChatCompletionRequest as VllmChatRequest,
)
from vllm.parser.abstract_parser import Parser
from vllm.renderers.chat_utils import make_tool_call_id

from server.errors import bad_request
from server.protocol.chat import (
    ChatCompletionRequest,
    FunctionCall,
    FunctionCallDelta,
    NamedToolChoice,
    Tool,
    ToolCall,
    ToolCallDelta,
)
from server.rendering.tool_parsing import ToolCalling
from server.serving.structured_outputs import Constraint


def plan(calling: ToolCalling, request: ChatCompletionRequest) -> ToolPlan | None:
    """How this request's tools shape its generation; None when it has none to call."""
    tools = request.tools or []
    choice = request.tool_choice
    if choice is None:
        choice = "auto" if tools else "none"
    if choice != "none" and not tools:
        raise bad_request("tool_choice needs `tools`", param="tool_choice")
    _check_tools(tools)
    if choice == "none":
        return None
    if isinstance(choice, NamedToolChoice) and \
            choice.function.name not in {t.function.name for t in tools}:
        raise bad_request(f"tool_choice names `{choice.function.name}`, which is not in "
                          "`tools`", param="tool_choice.function.name")
    if choice == "auto" and calling.parser_name is None:
        raise bad_request(
            "tool_choice `auto` (the default when `tools` are given) needs the model's own "
            "tool-call format, and this server was started without --tool-call-parser "
            "(for example --tool-call-parser hermes). `required` or a named function works "
            "on any model.", param="tool_choice")
    view = VllmChatRequest.model_validate({
        "model": request.model,
        "messages": [{"role": "user", "content": ""}],  # parsers read tools, not messages
        "tools": [t.model_dump(exclude_none=True) for t in tools],
        "tool_choice": choice if isinstance(choice, str) else choice.model_dump(),
        "parallel_tool_calls": request.parallel_tool_calls,
    })
    view = calling.parser_cls(calling.tokenizer, view.tools).adjust_request(view)
    constraint = None
    if view.structured_outputs is not None:
        constraint = Constraint(view.structured_outputs, "tools")
    return ToolPlan(view=view, calling=calling, constraint=constraint,
                    forced=choice != "auto")


def _check_tools(tools: list[Tool]) -> None:
    names = set()
    for i, tool in enumerate(tools):
        name = tool.function.name
        if name in names:
            raise bad_request(f"two tools are named `{name}`", param=f"tools.{i}.function.name")
        names.add(name)
        schema = tool.function.parameters
        if schema is None:
            continue
        try:
            jsonschema.validators.validator_for(schema).check_schema(schema)
        except jsonschema.SchemaError as exc:
            raise bad_request(f"the parameters of tool `{name}` are not a valid JSON schema: "
                              f"{exc.message}", param=f"tools.{i}.function.parameters") from exc


@dataclass
class ToolPlan:
    view: VllmChatRequest
    calling: ToolCalling
    constraint: Constraint | None
    forced: bool
    """`required` or a named function: the output is a tool call, whatever the model wanted."""

    @property
    def skip_special_tokens(self) -> bool:
        # Some parsers need the special tokens that mark a call (hermes on models where
        # <tool_call> is one), so they ask to keep them in the text.
        return self.view.skip_special_tokens

    def parser(self) -> Parser:
        """A fresh parser; parsers keep state, so one per choice."""
        return self.calling.parser_cls(self.calling.tokenizer, self.view.tools)

    def parse(self, text: str, token_ids: Sequence[int]) -> tuple[str | None, list[ToolCall]]:
        """A whole output -> (content, tool calls)."""
        _, content, calls = self.parser().parse(
            text, self.view, enable_auto_tools=self.calling.parser_name is not None,
            model_output_token_ids=token_ids)
        tool_calls = [ToolCall(id=c.id or make_tool_call_id(),
                               function=FunctionCall(name=c.name, arguments=c.arguments))
                      for c in calls or []]
        if self.view.parallel_tool_calls is False:
            tool_calls = tool_calls[:1]
        if self.forced and not tool_calls:
            content = text  # cut short (`length`): show what there is rather than nothing
        return content or None, tool_calls

    def parse_delta(self, parser: Parser, delta_text: str, delta_ids: Sequence[int],
                    prompt_ids: list[int], finished: bool) -> tuple[str | None, list[ToolCallDelta]]:
        """The next piece of one choice's stream -> (content, tool-call deltas)."""
        delta = parser.parse_delta(delta_text, list(delta_ids), self.view, prompt_ids,
                                   finished=finished)
        if delta is None:
            return None, []
        calls = [ToolCallDelta(index=c.index, id=c.id, type=c.type,
                               function=FunctionCallDelta(name=c.function.name,
                                                          arguments=c.function.arguments)
                               if c.function is not None else None)
                 for c in delta.tool_calls
                 if self.view.parallel_tool_calls is not False or c.index == 0]
        return delta.content or None, calls

    def finish_reason(self, called: bool, reason: str | None) -> str | None:
        # OpenAI: "tool_calls" when the model chose to call (auto) or had to (required); a
        # named function ends with "stop".
        if called and reason == "stop" and self.view.tool_choice in ("auto", "required"):
            return "tool_calls"
        return reason


def template_tools(request: ChatCompletionRequest) -> list[dict] | None:
    """`tools` as chat templates take them (transformers' format: the OpenAI objects)."""
    return [t.model_dump(exclude_none=True) for t in request.tools] if request.tools else None
