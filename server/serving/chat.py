"""POST /v1/chat/completions: messages through the chat template, assistant message out."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from vllm.outputs import CompletionOutput, RequestOutput
from vllm.parser.abstract_parser import Parser

from server.auth import FULL_ACCESS, Grant
from server.errors import bad_request
from server.protocol.chat import (
    AssistantMessage,
    ChatChoice,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChunkChoice,
    Delta,
    ToolCall,
    ToolCallDelta,
)
from server.rendering.prompts import Prompt
from server.serving import request_info, streaming, structured_outputs, targets, tool_calls
from server.serving.generation import generate
from server.serving.logprobs import chat_logprobs
from server.serving.sampling import sampling_params
from server.serving.tool_calls import ToolPlan, template_tools
from server.serving.usage import UsageCounter
from server.state import ServerState


def _top_logprobs(request: ChatCompletionRequest) -> int | None:
    if request.top_logprobs is not None and not request.logprobs:
        raise bad_request("top_logprobs needs logprobs=true", param="top_logprobs")
    return (request.top_logprobs or 0) if request.logprobs else None


@dataclass
class ChatRun:
    """A chat request running on the engine, and its outputs read as messages: content and
    tool calls (also for /v1/responses, which runs its requests as chats)."""

    id: str
    created: int
    prompt: Prompt
    tools: ToolPlan | None
    counter: UsageCounter
    outputs: AsyncIterator[tuple[int, RequestOutput]]
    _parsers: dict[int, Parser] = field(default_factory=dict)  # choice -> its stream's parser
    _called: set[int] = field(default_factory=set)  # choices that have streamed a tool call

    def message(self, o: CompletionOutput) -> tuple[str | None, list[ToolCall], str | None]:
        """A whole output -> (content, tool calls, finish reason)."""
        finish = request_info.finish_reason(o.finish_reason)
        if self.tools is None:
            return o.text, [], finish
        content, calls = self.tools.parse(o.text, o.token_ids)
        return content, calls, self.tools.finish_reason(bool(calls), finish)

    def delta(self, o: CompletionOutput) -> tuple[str | None, list[ToolCallDelta], str | None]:
        """The next piece of a streamed output -> (content, tool-call deltas, finish reason)."""
        finish = request_info.finish_reason(o.finish_reason)
        if self.tools is None:
            return o.text or None, [], finish
        if o.index not in self._parsers:
            self._parsers[o.index] = self.tools.parser()  # parsers keep state: one per choice
        content, calls = self.tools.parse_delta(self._parsers[o.index], o.text, o.token_ids,
                                                self.prompt.token_ids, finished=finish is not None)
        if calls:
            self._called.add(o.index)
        return content, calls, self.tools.finish_reason(o.index in self._called, finish)


async def start_chat(state: ServerState, request: ChatCompletionRequest, caller: Grant, *,
                     endpoint: str = "chat", id_prefix: str = "chatcmpl") -> ChatRun:
    """Render, check and submit a chat request; errors on admission are raised here."""
    renderer = state.renderer
    assert renderer is not None and state.tool_calling is not None
    top_logprobs = _top_logprobs(request)
    tools = tool_calls.plan(state.tool_calling, request)
    target = await targets.target_for(state, request, caller)
    try:
        prompt = await renderer.chat_prompt(
            request.messages, request.add_generation_prompt,
            target.apply_template if request.use_adapter_template else None,
            tools=template_tools(request))
        prompt_tokens = len(prompt.token_ids) + target.num_virtual_tokens
        requested, param = request.max_completion_tokens, "max_completion_tokens"
        if requested is None and request.max_tokens is not None:
            requested, param = request.max_tokens, "max_tokens"
        # A forced tool call's constraint replaces response_format, which shapes a message.
        constraint = structured_outputs.checked(
            state.engine, tools.constraint if tools and tools.constraint
            else structured_outputs.requested(request), request.json_max_whitespace)
        params = sampling_params(
            request, max_tokens=renderer.max_tokens(prompt_tokens, requested, param),
            logprobs=top_logprobs, max_logprobs=state.config.max_logprobs,
            vocab_size=renderer.vocab_size, constraint=constraint,
            skip_special_tokens=tools.skip_special_tokens if tools else True)
    except BaseException:
        target.release()
        raise
    rid = request_info.request_id(id_prefix)
    counter = UsageCounter(prompt_tokens)
    outputs = await streaming.started(
        generate(state, target, endpoint, rid, [prompt.token_ids], params, counter,
                 request_info.timeout(state, request), constraint.param if constraint else None))
    return ChatRun(id=rid, created=int(time.time()), prompt=prompt, tools=tools,
                   counter=counter, outputs=outputs)


async def create_chat_completion(
    state: ServerState, request: ChatCompletionRequest, caller: Grant = FULL_ACCESS
) -> ChatCompletionResponse | AsyncIterator[str]:
    run = await start_chat(state, request, caller)
    tokenizer = state.renderer.tokenizer
    top_logprobs = _top_logprobs(request)

    def logprobs(o):
        if top_logprobs is None:
            return None
        return chat_logprobs(o.token_ids, o.logprobs or [], top_logprobs, tokenizer)

    def token_ids(o):
        return list(o.token_ids) if request.return_token_ids else None

    if not request.stream:
        choices = []
        async for _, out in run.outputs:
            for o in out.outputs:
                content, calls, finish = run.message(o)
                choices.append(ChatChoice(
                    index=o.index, message=AssistantMessage(content=content,
                                                            tool_calls=calls or None),
                    finish_reason=finish, logprobs=logprobs(o), token_ids=token_ids(o)))
        choices.sort(key=lambda c: c.index)
        return ChatCompletionResponse(
            id=run.id, created=run.created, model=request.model, choices=choices,
            usage=run.counter.usage(),
            prompt_token_ids=run.prompt.token_ids if request.return_token_ids else None)

    include_usage = bool(request.stream_options and request.stream_options.include_usage)

    def chunk(choices: list[ChunkChoice], usage=None) -> ChatCompletionChunk:
        return ChatCompletionChunk(id=run.id, created=run.created, model=request.model,
                                   choices=choices, usage=usage)

    async def chunks() -> AsyncIterator[ChatCompletionChunk]:
        opened: set[int] = set()
        async for _, out in run.outputs:
            for o in out.outputs:
                if o.index not in opened:
                    # OpenAI opens every choice with a role-only delta.
                    opened.add(o.index)
                    yield chunk([ChunkChoice(index=o.index, delta=Delta(role="assistant", content=""))])
                content, calls, finish = run.delta(o)
                if content or calls or o.token_ids or finish:
                    yield chunk([ChunkChoice(
                        index=o.index, delta=Delta(content=content, tool_calls=calls or None),
                        finish_reason=finish, logprobs=logprobs(o), token_ids=token_ids(o))])
        if include_usage:
            yield chunk([], run.counter.usage())

    return streaming.sse_stream(chunks())
