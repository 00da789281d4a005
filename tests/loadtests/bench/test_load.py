"""The load generator's preludes and its sampling of the engine's queue, against a tiny in-process
SSE server (about a second)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry, Gauge, generate_latest

from loadtests.bench.load import Prelude, PreludeError, one_request, parse_queue, run_cell, summarize


@contextlib.asynccontextmanager
async def _server(metrics: str | None = None):
    """An SSE completions server (two one-token chunks), with `metrics` at /metrics if given."""
    async def completions(request):
        resp = web.StreamResponse()
        await resp.prepare(request)
        for text in ("a", "b"):
            await resp.write(b"data: " + json.dumps({"choices": [{"text": text}]}).encode() + b"\n\n")
        await resp.write(b'data: {"choices": [], "usage": {"completion_tokens": 2}}\n\ndata: [DONE]\n\n')
        return resp

    app = web.Application()
    app.router.add_post("/v1/completions", completions)
    if metrics is not None:
        app.router.add_get("/metrics", lambda _request: web.Response(text=metrics))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
    finally:
        await runner.cleanup()


async def _with_server(scenario):
    async with _server() as url, aiohttp.ClientSession(url) as session:
        return await scenario(session)


def _exposition(running: dict[str, float], waiting: float) -> str:
    """What vLLM's /metrics says: one series per engine."""
    registry = CollectorRegistry()
    run = Gauge("vllm:num_requests_running", "running", ["engine"], registry=registry)
    for engine, value in running.items():
        run.labels(engine=engine).set(value)
    Gauge("vllm:num_requests_waiting", "waiting", registry=registry).set(waiting)
    return generate_latest(registry).decode()


def test_queue_gauges_are_summed_over_engines():
    sample = parse_queue(_exposition({"0": 3, "1": 2}, waiting=7))
    assert (sample.running, sample.waiting) == (5, 7)
    assert parse_queue("# no vLLM gauges here\nother_metric 1\n") is None


def test_a_cell_samples_the_engines_queue_during_its_window():
    async def cell(metrics):
        async with _server(metrics) as url:
            queue = []
            records, t0, t1 = await run_cell(url, lambda i: ("/v1/completions", {}), concurrency=2,
                                             warmup=0.2, duration=1.5, queue=queue)
            return summarize(records, t0, t1, max_tokens=2, queue=queue)

    stats = asyncio.run(cell(_exposition({"0": 4}, waiting=12)))
    assert (stats.running_mean, stats.waiting_mean) == (4, 12)
    stats = asyncio.run(cell(None))  # a server without the gauges (HF+PEFT's)
    assert stats.running_mean is None and stats.requests > 0


def test_on_window_is_called_as_the_window_opens_and_closes_under_load():
    calls = []

    def on_window(edge):
        calls.append((edge, time.perf_counter()))

    async def cell():
        async with _server() as url:
            return await run_cell(url, lambda i: ("/v1/completions", {}), concurrency=2,
                                  warmup=0.3, duration=0.6, on_window=on_window)

    records, t0, t1 = asyncio.run(cell())
    assert [edge for edge, _ in calls] == ["start", "end"]
    (_, start), (_, end) = calls
    assert t0 <= start < t0 + 0.1 and t1 <= end < t1 + 0.1
    assert any(start <= r.start <= end for r in records)  # requests ran between the two calls


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
