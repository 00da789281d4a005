"""Abort a non-streaming request whose client has disconnected.

Starlette cancels a streaming response when its client goes away, but a plain request runs to
the end. Racing the handler against the ASGI `http.disconnect` message cancels it, and the
cancellation reaches `AsyncLLM.generate`, which aborts the engine request.
"""

from __future__ import annotations

import asyncio
import functools

from fastapi import Request


async def _wait_for_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def cancel_on_disconnect(handler):
    @functools.wraps(handler)
    async def wrapper(*args, **kwargs):
        request: Request = kwargs["raw_request"]
        work = asyncio.create_task(handler(*args, **kwargs))
        watch = asyncio.create_task(_wait_for_disconnect(request))
        done, _ = await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
        if work in done:
            watch.cancel()
            return work.result()
        work.cancel()
        try:
            await work
        except asyncio.CancelledError:
            pass
        return None  # nobody is listening

    return wrapper
