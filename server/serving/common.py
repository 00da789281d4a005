"""Steps every generation endpoint takes before and after the engine runs."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import TypeVar

from pydantic import BaseModel
from vllm.outputs import RequestOutput

from server.auth import Grant
from server.errors import APIError, model_not_found
from server.protocol.common import PromptTokensDetails, SamplingRequest, Usage
from server.serving.targets import Target, resolve_target
from server.state import ServerState

T = TypeVar("T")


def request_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


async def target_for(state: ServerState, request: SamplingRequest, caller: Grant) -> Target:
    """The request's adapters; one its key may not use is as unknown as a missing one (404).
    Pooling requests (no `soft_prompt` field) name only `model`."""
    assert state.registry is not None
    base = state.config.model_name
    soft_prompt = getattr(request, "soft_prompt", None)
    for name, param in ((request.model, "model"), (soft_prompt, "soft_prompt")):
        if name is not None and not caller.may_use(name, base):
            error = model_not_found(name)
            error.param = param
            raise error
    return await resolve_target(state.registry, base, request.model, soft_prompt)


class UsageCounter:
    """A request's token counts, kept by `generate` as outputs arrive: the response's `usage`
    and the metrics read the same figures."""

    def __init__(self, prompt_tokens: int) -> None:
        self.prompt_tokens = prompt_tokens  # virtual tokens included
        self.completion_tokens = 0
        self._cached: dict[int, int] = {}  # prompt index -> its cached prompt tokens

    def add(self, prompt_index: int, output: RequestOutput) -> int:
        """Count one engine output; returns the tokens it brought."""
        new_tokens = sum(len(o.token_ids) for o in output.outputs)
        self.completion_tokens += new_tokens
        self._cached[prompt_index] = output.num_cached_tokens or 0
        return new_tokens

    @property
    def cached_tokens(self) -> int:
        return sum(self._cached.values())

    def usage(self) -> Usage:
        return Usage(prompt_tokens=self.prompt_tokens, completion_tokens=self.completion_tokens,
                     total_tokens=self.prompt_tokens + self.completion_tokens,
                     prompt_tokens_details=PromptTokensDetails(cached_tokens=self.cached_tokens))


def finish_reason(reason: str | None) -> str | None:
    """vLLM's reason as OpenAI's: "stop" or "length", and "abort" for a request the server ended
    (a shutdown that ran out of time); vLLM's other reasons (a repetition stop) are stops."""
    if reason is None or reason in ("length", "abort"):
        return reason
    return "stop"


def timeout(state: ServerState, request) -> float | None:
    """The request's deadline in seconds: its own `request_timeout` (pooling requests have none),
    never past the server's."""
    limits = [t for t in (state.config.request_timeout, getattr(request, "request_timeout", None))
              if t is not None]
    return min(limits) if limits else None


def sse(payload: BaseModel | dict) -> str:
    data = payload.model_dump_json(exclude_none=False) if isinstance(payload, BaseModel) \
        else json.dumps(payload)
    return f"data: {data}\n\n"


async def sse_stream(chunks: AsyncIterator[BaseModel]) -> AsyncIterator[str]:
    """Server-sent events as the OpenAI client reads them, ending with `data: [DONE]`.

    An error after the stream has started can no longer change the HTTP status; it is sent as
    an `error` event, which the OpenAI client raises as an APIError.
    """
    try:
        async for chunk in chunks:
            yield sse(chunk)
    except APIError as exc:
        yield sse(exc.to_response())
    yield "data: [DONE]\n\n"


async def started(items: AsyncIterator[T]) -> AsyncIterator[T]:
    """Pull the first item now, so that errors the engine finds on admission become an HTTP
    error status instead of a stream that fails after `200 OK`."""
    try:
        first = await anext(items)
    except StopAsyncIteration:
        first = None

    async def rest() -> AsyncIterator[T]:
        if first is None:
            return
        yield first
        async for item in items:
            yield item

    return rest()
