"""POST /v1/responses: a Responses request runs as the chat request it amounts to (same prompt,
adapters, constraints and tool calls), and its output is shaped as output items and, when
streamed, as the typed event sequence the official client assembles.

Stateless: nothing is stored, `previous_response_id` is a 400.
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

from openai.types.responses import (
    Response,
    ResponseCompletedEvent,
    ResponseContentPartAddedEvent,
    ResponseContentPartDoneEvent,
    ResponseCreatedEvent,
    ResponseErrorEvent,
    ResponseFailedEvent,
    ResponseFunctionCallArgumentsDeltaEvent,
    ResponseFunctionCallArgumentsDoneEvent,
    ResponseFunctionToolCall,
    ResponseIncompleteEvent,
    ResponseInProgressEvent,
    ResponseOutputItemAddedEvent,
    ResponseOutputItemDoneEvent,
    ResponseOutputMessage,
    ResponseOutputText,
    ResponseTextDeltaEvent,
    ResponseTextDoneEvent,
    ResponseUsage,
)
from pydantic import BaseModel

from server.auth import FULL_ACCESS, Grant
from server.errors import APIError, bad_request
from server.protocol.chat import (
    ChatCompletionRequest,
    ChatMessage,
    FunctionCall,
    FunctionDefinition,
    NamedFunction,
    NamedToolChoice,
    Tool,
    ToolCall,
)
from server.protocol.common import ResponseFormat
from server.protocol.responses import (
    FunctionCallItem,
    FunctionCallOutputItem,
    FunctionToolChoice,
    ResponsesRequest,
)
from server.serving.chat import ChatRun, start_chat
from server.state import ServerState

# Chat parameter names in errors -> the Responses field the client sent.
_PARAMS = (("response_format.json_schema.schema", "text.format.schema"),
           ("response_format", "text.format"), ("max_completion_tokens", "max_output_tokens"),
           (".function.", "."))


def _item_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def chat_request(request: ResponsesRequest) -> ChatCompletionRequest:
    """The chat request a Responses request amounts to."""
    if request.previous_response_id is not None:
        raise bad_request("this server keeps no responses, so previous_response_id cannot be "
                          "used; send the whole conversation in `input` (earlier output items "
                          "can be replayed as they came)", param="previous_response_id")
    messages = [ChatMessage(role="system", content=request.instructions)] \
        if request.instructions is not None else []
    items = [] if isinstance(request.input, str) else request.input
    if isinstance(request.input, str):
        messages.append(ChatMessage(role="user", content=request.input))
    for item in items:
        if isinstance(item, FunctionCallItem):
            call = ToolCall(id=item.call_id, function=FunctionCall(name=item.name,
                                                                   arguments=item.arguments))
            last = messages[-1] if messages else None
            if last is not None and last.role == "assistant":
                # Text and calls of one model turn arrive as separate items: one message again.
                last.tool_calls = [*(last.tool_calls or []), call]
            else:
                messages.append(ChatMessage(role="assistant", content=None, tool_calls=[call]))
        elif isinstance(item, FunctionCallOutputItem):
            messages.append(ChatMessage(role="tool", tool_call_id=item.call_id, content=item.text()))
        else:
            messages.append(ChatMessage(role=item.role, content=item.text()))
    fmt = request.text.format if request.text else None
    choice = request.tool_choice
    return ChatCompletionRequest(
        model=request.model, messages=messages, stream=request.stream,
        max_completion_tokens=request.max_output_tokens,
        temperature=request.temperature, top_p=request.top_p, seed=request.seed,
        top_k=request.top_k, min_p=request.min_p, repetition_penalty=request.repetition_penalty,
        soft_prompt=request.soft_prompt, use_adapter_template=request.use_adapter_template,
        request_timeout=request.request_timeout, json_max_whitespace=request.json_max_whitespace,
        user=request.user, parallel_tool_calls=request.parallel_tool_calls,
        response_format=None if fmt is None else ResponseFormat(type=fmt.type,
                                                               json_schema=fmt.json_schema()),
        tools=[Tool(type="function", function=FunctionDefinition(
            name=t.name, description=t.description, parameters=t.parameters, strict=t.strict))
            for t in request.tools] if request.tools else None,
        tool_choice=NamedToolChoice(type="function", function=NamedFunction(name=choice.name))
        if isinstance(choice, FunctionToolChoice) else choice)


def _as_responses_error(exc: APIError) -> APIError:
    """Name the Responses field in an error the chat request raised."""
    if exc.param is None:
        return exc
    if exc.param.startswith("messages"):
        # Items and messages do not line up one to one (instructions, merged calls).
        param = "input"
    else:
        param = exc.param
        for chat_name, name in _PARAMS:
            param = param.replace(chat_name, name)
    exc.message = exc.message.replace(exc.param, param)
    exc.param = param
    return exc


async def create_response(state: ServerState, request: ResponsesRequest,
                          caller: Grant = FULL_ACCESS) -> dict | AsyncIterator[str]:
    try:
        run = await start_chat(state, chat_request(request), caller, endpoint="responses",
                               id_prefix="resp")
    except APIError as exc:
        raise _as_responses_error(exc) from exc
    shape = _Shape(request, run)
    if not request.stream:
        output, finish = [], None
        async for _, out in run.outputs:
            for o in out.outputs:
                content, calls, finish = run.message(o)
                status = _item_status(finish)
                if content:
                    output.append(shape.message(content, status))
                output.extend(shape.function_call(c.id, c.function.name, c.function.arguments,
                                                  status) for c in calls)
        return _dump(shape.response(output, finish))
    return _sse(shape.events())


class _Shape:
    """Output items, the response object and the stream events of one request."""

    def __init__(self, request: ResponsesRequest, run: ChatRun) -> None:
        self.request = request
        self.run = run
        self.message_id = _item_id("msg")
        self.seq = itertools.count()

    def message(self, text: str | None, status: str) -> ResponseOutputMessage:
        """The message item; no text: as it opens, before its content part is added."""
        return ResponseOutputMessage(id=self.message_id, type="message", role="assistant",
                                     status=status,
                                     content=[] if text is None else [self.text_part(text)])

    @staticmethod
    def text_part(text: str) -> ResponseOutputText:
        return ResponseOutputText(type="output_text", text=text, annotations=[], logprobs=[])

    @staticmethod
    def function_call(call_id: str, name: str, arguments: str,
                      status: str, item_id: str | None = None) -> ResponseFunctionToolCall:
        return ResponseFunctionToolCall(type="function_call", id=item_id or _item_id("fc"),
                                        call_id=call_id, name=name, arguments=arguments,
                                        status=status)

    def response(self, output: list, finish: str | None, status: str | None = None) -> Response:
        request = self.request
        if status is None:
            status = {"length": "incomplete", "abort": "failed"}.get(finish, "completed")
        usage = self.run.counter.usage()
        fmt = request.text.format if request.text and request.text.format else None
        return Response(
            id=self.run.id, object="response", created_at=self.run.created,
            model=request.model, status=status, output=output,
            incomplete_details={"reason": "max_output_tokens"} if status == "incomplete" else None,
            error={"code": "server_error", "message": "the server shut down before the response "
                   "was finished"} if status == "failed" else None,
            instructions=request.instructions, metadata=request.metadata,
            max_output_tokens=request.max_output_tokens, temperature=request.temperature,
            top_p=request.top_p, user=request.user, store=False, truncation="disabled",
            parallel_tool_calls=request.parallel_tool_calls is not False,
            tool_choice=request.tool_choice.model_dump() if isinstance(
                request.tool_choice, BaseModel) else (request.tool_choice or "auto"),
            tools=[t.model_dump(exclude_none=True) for t in request.tools or []],
            text={"format": fmt.model_dump(by_alias=True, exclude_none=True)
                  if fmt else {"type": "text"}},
            usage=ResponseUsage(
                input_tokens=usage.prompt_tokens, output_tokens=usage.completion_tokens,
                total_tokens=usage.total_tokens,
                # Cache writes cost nothing here, so none are counted.
                input_tokens_details={"cached_tokens": usage.prompt_tokens_details.cached_tokens,
                                      "cache_write_tokens": 0},
                output_tokens_details={"reasoning_tokens": 0}) if status != "in_progress" else None)

    def event(self, cls, **fields: Any):
        return cls(sequence_number=next(self.seq), **fields)

    async def events(self) -> AsyncIterator[BaseModel]:
        """response.created, in_progress, then per output item added / deltas / done, then
        response.completed (or .incomplete when max_output_tokens cut it)."""
        started = self.response([], None, status="in_progress")
        yield self.event(ResponseCreatedEvent, type="response.created", response=started)
        yield self.event(ResponseInProgressEvent, type="response.in_progress", response=started)
        indexes = itertools.count()  # output_index of each item, in the order they open
        text: list[str] | None = None  # the message item's text so far, once opened
        message_index = 0
        calls: dict[int, dict] = {}  # tool-call index -> its item's state
        finish = None
        try:
            async for _, out in self.run.outputs:
                for o in out.outputs:
                    content, deltas, finish = self.run.delta(o)
                    if content:
                        if text is None:
                            text, message_index = [], next(indexes)
                            yield self.event(ResponseOutputItemAddedEvent,
                                             type="response.output_item.added",
                                             output_index=message_index,
                                             item=self.message(None, "in_progress"))
                            yield self.event(ResponseContentPartAddedEvent,
                                             type="response.content_part.added",
                                             item_id=self.message_id, output_index=message_index,
                                             content_index=0, part=self.text_part(""))
                        text.append(content)
                        yield self.event(ResponseTextDeltaEvent, type="response.output_text.delta",
                                         item_id=self.message_id, output_index=message_index,
                                         content_index=0, delta=content, logprobs=[])
                    for d in deltas:
                        call = calls.get(d.index)
                        if call is None:
                            call = calls[d.index] = {
                                "index": next(indexes), "id": _item_id("fc"),
                                "call_id": d.id or _item_id("call"),
                                "name": d.function.name if d.function else "", "arguments": ""}
                            yield self.event(ResponseOutputItemAddedEvent,
                                             type="response.output_item.added",
                                             output_index=call["index"], item=self.function_call(
                                                 call["call_id"], call["name"], "", "in_progress",
                                                 call["id"]))
                        piece = d.function.arguments if d.function else None
                        if piece:
                            call["arguments"] += piece
                            yield self.event(ResponseFunctionCallArgumentsDeltaEvent,
                                             type="response.function_call_arguments.delta",
                                             item_id=call["id"], output_index=call["index"],
                                             delta=piece)
        except APIError as exc:
            error = exc.to_response().error
            yield self.event(ResponseErrorEvent, type="error", message=error.message,
                             code=error.code, param=error.param)
            return
        status = _item_status(finish)
        done: dict[int, BaseModel] = {}
        if text is not None:
            full = "".join(text)
            yield self.event(ResponseTextDoneEvent, type="response.output_text.done",
                             item_id=self.message_id, output_index=message_index,
                             content_index=0, text=full, logprobs=[])
            yield self.event(ResponseContentPartDoneEvent, type="response.content_part.done",
                             item_id=self.message_id, output_index=message_index,
                             content_index=0, part=self.text_part(full))
            done[message_index] = self.message(full, status)
            yield self.event(ResponseOutputItemDoneEvent, type="response.output_item.done",
                             output_index=message_index, item=done[message_index])
        for call in calls.values():
            yield self.event(ResponseFunctionCallArgumentsDoneEvent,
                             type="response.function_call_arguments.done", item_id=call["id"],
                             output_index=call["index"], arguments=call["arguments"])
            done[call["index"]] = self.function_call(call["call_id"], call["name"],
                                                     call["arguments"], status, call["id"])
            yield self.event(ResponseOutputItemDoneEvent, type="response.output_item.done",
                             output_index=call["index"], item=done[call["index"]])
        final = self.response([done[i] for i in sorted(done)], finish)
        end = {"incomplete": ResponseIncompleteEvent, "failed": ResponseFailedEvent}.get(
            final.status, ResponseCompletedEvent)
        yield self.event(end, type=f"response.{final.status}", response=final)


def _item_status(finish: str | None) -> str:
    return "incomplete" if finish in ("length", "abort") else "completed"


def _dump(model: BaseModel) -> dict:
    return model.model_dump(mode="json", exclude_unset=True)


async def _sse(events: AsyncIterator[BaseModel]) -> AsyncIterator[str]:
    """Typed server-sent events: `event: <type>` and the event as `data`."""
    async for event in events:
        yield f"event: {event.type}\ndata: {json.dumps(_dump(event))}\n\n"
