"""Server-sent events as the OpenAI clients read them, and errors caught before `200 OK`."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import TypeVar

from pydantic import BaseModel

from server.errors import APIError

T = TypeVar("T")


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
