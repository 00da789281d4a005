"""The load generator's preludes, against a tiny in-process SSE server (well under a second)."""

from __future__ import annotations

import asyncio
import json

import aiohttp
from aiohttp import web

from loadtests.bench.load import Prelude, PreludeError, one_request


async def _with_server(scenario):
    async def completions(request):
        resp = web.StreamResponse()
        await resp.prepare(request)
        for text in ("a", "b"):
            await resp.write(b"data: " + json.dumps({"choices": [{"text": text}]}).encode() + b"\n\n")
        await resp.write(b'data: {"choices": [], "usage": {"completion_tokens": 2}}\n\ndata: [DONE]\n\n')
        return resp

    app = web.Application()
    app.router.add_post("/v1/completions", completions)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as session:
            return await scenario(session)
    finally:
        await runner.cleanup()


def test_timed_prelude_counts_in_ttft_and_setup_does_not():
    async def scenario(session):
        async def timed(_session):
            await asyncio.sleep(0.3)

        def setup():
            import time
            time.sleep(0.3)

        sink = []
        plain = await one_request(session, "/v1/completions", {}, sink)
        untimed = await one_request(session, "/v1/completions", {}, sink, Prelude(setup=setup))
        timed_rec = await one_request(session, "/v1/completions", {}, sink, Prelude(timed=timed))
        return plain, untimed, timed_rec, sink

    plain, untimed, timed, sink = asyncio.run(_with_server(scenario))
    assert len(sink) == 3 and all(r.error is None and r.tokens == 2 for r in sink)
    assert untimed.ttft < 0.25 and plain.ttft < 0.25
    assert timed.ttft >= 0.3 and timed.end - timed.start >= 0.3


def test_a_failed_prelude_is_the_requests_error():
    async def scenario(session):
        async def refuse(_session):
            raise PreludeError("load_lora_adapter x: HTTP 400: nope")

        def broken():
            raise FileExistsError("exists")

        sink = []
        a = await one_request(session, "/v1/completions", {}, sink, Prelude(timed=refuse))
        b = await one_request(session, "/v1/completions", {}, sink, Prelude(setup=broken))
        return a, b, sink

    a, b, sink = asyncio.run(_with_server(scenario))
    assert len(sink) == 2 and a.finished and b.finished
    assert "HTTP 400" in a.error and b.error.startswith("prelude setup: FileExistsError")
