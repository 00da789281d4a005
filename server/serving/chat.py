"""POST /v1/chat/completions: messages through the chat template, assistant message out."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from server.errors import bad_request
from server.protocol.chat import (
    AssistantMessage,
    ChatChoice,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChunkChoice,
    Delta,
)
from server.serving import common
from server.serving.generation import generate
from server.serving.logprobs import chat_logprobs
from server.serving.sampling import sampling_params
from server.state import ServerState


def _top_logprobs(request: ChatCompletionRequest) -> int | None:
    if request.top_logprobs is not None and not request.logprobs:
        raise bad_request("top_logprobs needs logprobs=true", param="top_logprobs")
    return (request.top_logprobs or 0) if request.logprobs else None


async def create_chat_completion(
    state: ServerState, request: ChatCompletionRequest
) -> ChatCompletionResponse | AsyncIterator[str]:
    renderer = state.renderer
    assert renderer is not None
    top_logprobs = _top_logprobs(request)
    target = await common.target_for(state, request)
    try:
        prompt = await renderer.chat_prompt(
            request.messages, request.add_generation_prompt,
            target.apply_template if request.use_adapter_template else None)
        prompt_tokens = len(prompt.token_ids) + target.num_virtual_tokens
        requested, param = request.max_completion_tokens, "max_completion_tokens"
        if requested is None and request.max_tokens is not None:
            requested, param = request.max_tokens, "max_tokens"
        params = sampling_params(
            request, max_tokens=renderer.max_tokens(prompt_tokens, requested, param),
            logprobs=top_logprobs, max_logprobs=state.config.max_logprobs,
            vocab_size=renderer.vocab_size)
    except BaseException:
        target.release()
        raise
    rid = common.request_id("chatcmpl")
    created = int(time.time())
    counter = common.UsageCounter(prompt_tokens)
    outputs = await common.started(
        generate(state, target, "chat", rid, [prompt.token_ids], params, counter))

    def logprobs(o):
        if top_logprobs is None:
            return None
        return chat_logprobs(o.token_ids, o.logprobs or [], top_logprobs, renderer.tokenizer)

    def token_ids(o):
        return list(o.token_ids) if request.return_token_ids else None

    if not request.stream:
        choices = []
        async for _, out in outputs:
            for o in out.outputs:
                choices.append(ChatChoice(
                    index=o.index, message=AssistantMessage(content=o.text),
                    finish_reason=common.finish_reason(o.finish_reason),
                    logprobs=logprobs(o), token_ids=token_ids(o)))
        choices.sort(key=lambda c: c.index)
        return ChatCompletionResponse(
            id=rid, created=created, model=request.model, choices=choices,
            usage=counter.usage(),
            prompt_token_ids=prompt.token_ids if request.return_token_ids else None)

    include_usage = bool(request.stream_options and request.stream_options.include_usage)

    def chunk(choices: list[ChunkChoice], usage=None) -> ChatCompletionChunk:
        return ChatCompletionChunk(id=rid, created=created, model=request.model,
                                   choices=choices, usage=usage)

    async def chunks() -> AsyncIterator[ChatCompletionChunk]:
        opened: set[int] = set()
        async for _, out in outputs:
            for o in out.outputs:
                if o.index not in opened:
                    # OpenAI opens every choice with a role-only delta.
                    opened.add(o.index)
                    yield chunk([ChunkChoice(index=o.index, delta=Delta(role="assistant", content=""))])
                finish = common.finish_reason(o.finish_reason)
                if o.text or o.token_ids or finish:
                    yield chunk([ChunkChoice(
                        index=o.index, delta=Delta(content=o.text or None) if o.text else Delta(),
                        finish_reason=finish, logprobs=logprobs(o), token_ids=token_ids(o))])
        if include_usage:
            yield chunk([], counter.usage())

    return common.sse_stream(chunks())
