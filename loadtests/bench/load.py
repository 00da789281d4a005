"""Closed-loop load generator: N concurrent streams, each sending its next request as soon as the
previous one finished, for a warm-up then a measured window. Same code for every contender.

Requests still running when the window closes are cancelled (the client disconnects), so a cell
takes warm-up + duration seconds whatever the server's speed. Throughput counts the tokens
*streamed inside the window* (from every request, finished or not), so it stays right even when
a request takes longer than the window; latency percentiles cover requests that finished inside
the window, TTFT percentiles those whose first token arrived inside it.

    queue: list[QueueSample] = []
    records, t_window, t_end = asyncio.run(run_cell(url, make_request, concurrency=16, warmup=5,
                                                    duration=20, queue=queue))
    stats = summarize(records, t_window, t_end, max_tokens=64, queue=queue)

While the window is open the engine's own gauges are read from `/metrics` once a second
(`vllm:num_requests_running` / `_waiting`, which ours and stock vLLM both export): the batch the
engine actually ran, which says why a workload is slower (e.g. adapters that cannot share a
batch wait) where tokens/s alone cannot.

A request may come with a `Prelude` (the `cold` workload): a step that makes its adapter exist,
untimed when a publisher would do it (a copy into the adapters folder) or timed, as part of the
request's TTFT and latency, when the client must do it first (stock vLLM's load_lora_adapter).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass

import aiohttp


@dataclass(frozen=True)
class Prelude:
    """What must happen before a request is sent. `setup`: blocking, run in a thread before the
    request's clock starts (what a publisher does, not the client). `timed`: awaited after the
    clock starts, so it counts in the request's TTFT and latency (what the client itself must do
    before its first request). A failure of either makes the request an error."""

    setup: Callable[[], None] | None = None
    timed: Callable[[aiohttp.ClientSession], Awaitable[None]] | None = None


class PreludeError(RuntimeError):
    """A Prelude's step failed (e.g. the server refused to load the adapter)."""


@dataclass(frozen=True)
class QueueSample:
    """The engine's request gauges at one moment of the measured window."""

    running: float
    waiting: float


QUEUE_GAUGES = {"vllm:num_requests_running": "running", "vllm:num_requests_waiting": "waiting"}
QUEUE_INTERVAL_S = 1.0


def parse_queue(exposition: str) -> QueueSample | None:
    """Running and waiting requests from a Prometheus exposition (summed over engines), or None
    when it has neither gauge (a server without vLLM's metrics)."""
    from prometheus_client.parser import text_string_to_metric_families

    found: dict[str, float] = {}
    for family in text_string_to_metric_families(exposition):
        key = QUEUE_GAUGES.get(family.name)
        if key is not None:
            found[key] = found.get(key, 0.0) + sum(sample.value for sample in family.samples)
    return QueueSample(**found) if len(found) == len(QUEUE_GAUGES) else None


async def sample_queue(session: aiohttp.ClientSession, t_window: float, t_end: float,
                       sink: list[QueueSample]) -> None:
    """Append a QueueSample to `sink` once a second from t_window until t_end."""
    await asyncio.sleep(max(0.0, t_window - time.perf_counter()))
    while time.perf_counter() < t_end:
        try:
            # Only these two gauges (both servers filter with prometheus_client's `name[]`): the
            # whole exposition with a thousand adapters is megabytes, ~0.5 s of the server's CPU.
            async with session.get("/metrics", params=[("name[]", name) for name in QUEUE_GAUGES]) as resp:
                sample = parse_queue(await resp.text()) if resp.status == 200 else None
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
            sample = None
        if sample is None:
            return  # no gauges here: nothing to sample
        sink.append(sample)
        await asyncio.sleep(QUEUE_INTERVAL_S)


MakeRequest = Callable[[int], "tuple[str, dict] | tuple[str, dict, Prelude]"]
"""i -> (path, JSON body) of the i-th request of a cell, or (path, body, Prelude)."""


@dataclass
class Record:
    start: float
    end: float
    ttft: float | None  # seconds from sending to the first non-empty text
    tokens: int  # completion tokens (usage, else number of text chunks)
    error: str | None = None
    chunk_times: list[float] | None = None  # arrival of each non-empty text chunk
    finished: bool = True  # False: cancelled at the end of the cell

    def tokens_between(self, t0: float, t1: float) -> float:
        """Tokens that arrived in [t0, t1]: chunks in the window, times tokens per chunk
        (a server may pack several tokens into one chunk; usage says how many in all)."""
        if not self.chunk_times:
            return 0.0
        per_chunk = self.tokens / len(self.chunk_times) if self.finished and self.tokens else 1.0
        return per_chunk * sum(t0 <= t <= t1 for t in self.chunk_times)


async def one_request(session: aiohttp.ClientSession, url: str, body: dict, sink: list[Record],
                      prelude: Prelude | None = None) -> Record:
    """Send one streamed request; the record is appended to `sink` at once, so a request that
    is cancelled midway still counts the tokens it streamed."""
    if prelude is not None and prelude.setup is not None:
        try:
            await asyncio.to_thread(prelude.setup)
        except Exception as exc:  # noqa: BLE001 - any failure of the setup is this request's error
            now = time.perf_counter()
            rec = Record(now, now, None, 0, error=f"prelude setup: {type(exc).__name__}: {exc}", chunk_times=[])
            sink.append(rec)
            return rec
    start = time.perf_counter()
    tokens = None
    rec = Record(start, start, None, 0, chunk_times=[], finished=False)
    sink.append(rec)
    try:
        if prelude is not None and prelude.timed is not None:
            await prelude.timed(session)
        async with session.post(url, json=body) as resp:
            if resp.status != 200:
                text = await resp.text()
                rec.end, rec.finished, rec.error = time.perf_counter(), True, f"HTTP {resp.status}: {text[:300]}"
                return rec
            async for raw in resp.content:  # one SSE line at a time
                line = raw.strip()
                if not line.startswith(b"data: "):
                    continue
                data = line[6:]
                if data == b"[DONE]":
                    break
                event = json.loads(data)
                if "error" in event:
                    rec.end, rec.finished, rec.error = time.perf_counter(), True, f"stream error: {event['error']}"
                    return rec
                if event.get("usage"):
                    tokens = event["usage"]["completion_tokens"]
                for choice in event.get("choices") or ():
                    if choice.get("text"):
                        now = time.perf_counter()
                        rec.chunk_times.append(now)
                        if rec.ttft is None:
                            rec.ttft = now - start
    except (aiohttp.ClientError, asyncio.TimeoutError, json.JSONDecodeError, PreludeError) as exc:
        rec.end, rec.finished, rec.error = time.perf_counter(), True, f"{type(exc).__name__}: {exc}"
        return rec
    rec.end, rec.finished = time.perf_counter(), True
    rec.tokens = tokens if tokens is not None else len(rec.chunk_times)
    return rec


async def run_cell(base_url: str, make_request: MakeRequest, concurrency: int, warmup: float,
                   duration: float, queue: list[QueueSample] | None = None,
                   on_window: Callable[[str], None] | None = None
                   ) -> tuple[list[Record], float, float]:
    """Run one cell; returns (all records, window start, window end) on the perf_counter clock.
    With `queue`, the engine's request gauges during the window are appended to it.
    `on_window` is called with "start" and "end" as the window opens and closes (to read
    counters over it), with the load still running."""
    records: list[Record] = []
    counter = itertools.count()
    timeout = aiohttp.ClientTimeout(total=None, sock_read=600)
    # Idle connections are dropped after 2 s, before the servers' keep-alive timeout (uvicorn's
    # 5 s, ours and vLLM's): otherwise a request sent on a connection the server is closing
    # fails with ServerDisconnectedError (seen in slow phases, for every contender).
    connector = aiohttp.TCPConnector(limit=concurrency + 4, keepalive_timeout=2)
    async with aiohttp.ClientSession(base_url, timeout=timeout, connector=connector) as session:
        t0 = time.perf_counter()
        t_window, t_end = t0 + warmup, t0 + warmup + duration

        async def stream() -> None:
            while time.perf_counter() < t_end:
                path, body, *prelude = make_request(next(counter))
                await one_request(session, path, body, records, *prelude)

        async def window_opens() -> None:
            await asyncio.sleep(max(0.0, t_window - time.perf_counter()))
            on_window("start")

        tasks = [asyncio.create_task(stream()) for _ in range(concurrency)]
        if queue is not None:
            tasks.append(asyncio.create_task(sample_queue(session, t_window, t_end, queue)))
        if on_window is not None:
            tasks.append(asyncio.create_task(window_opens()))
        await asyncio.sleep(max(0.0, t_end - time.perf_counter()))
        if on_window is not None:
            on_window("end")
        for task in tasks:
            task.cancel()  # abandons in-flight requests: the server sees a disconnect
        await asyncio.gather(*tasks, return_exceptions=True)
    return records, t_window, t_end


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[max(0, min(98, round(q) - 1))]


@dataclass
class CellStats:
    requests: int
    errors: int
    tokens: int
    tokens_per_s: float
    requests_per_s: float
    ttft_p50_ms: float | None
    ttft_p99_ms: float | None
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    short_outputs: int  # measured requests with fewer tokens than asked (EOS or stop)
    first_error: str | None = None
    output_tokens_mean: float | None = None  # completion tokens per measured request
    running_mean: float | None = None  # requests the engine ran at once (its gauge, window mean)
    waiting_mean: float | None = None  # requests it kept waiting
    # Cores busy during the window (CPU seconds / window seconds; procs.CpuSplit): the server's
    # main process (HTTP, tokenising, detokenising), its other processes (engine core, workers),
    # and the load generator, which shares the machine.
    cpu_server_main: float | None = None
    cpu_server_others: float | None = None
    cpu_client: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def summarize(records: list[Record], t_window: float, t_end: float, max_tokens: int,
              queue: list[QueueSample] | None = None) -> CellStats:
    done = [r for r in records if r.finished and t_window <= r.end <= t_end]
    ok = [r for r in done if r.error is None]
    errors = [r for r in done if r.error is not None]
    window = t_end - t_window
    tokens = round(sum(r.tokens_between(t_window, t_end) for r in records if r.error is None))
    ttfts = [r.ttft * 1000 for r in records
             if r.error is None and r.ttft is not None and t_window <= r.start + r.ttft <= t_end]
    latencies = [(r.end - r.start) * 1000 for r in ok]
    return CellStats(
        requests=len(ok), errors=len(errors), tokens=tokens, tokens_per_s=tokens / window,
        requests_per_s=len(ok) / window,
        ttft_p50_ms=percentile(ttfts, 50), ttft_p99_ms=percentile(ttfts, 99),
        latency_p50_ms=percentile(latencies, 50), latency_p99_ms=percentile(latencies, 99),
        short_outputs=sum(r.tokens < max_tokens for r in ok),
        first_error=errors[0].error if errors else None,
        output_tokens_mean=statistics.fmean(r.tokens for r in ok) if ok else None,
        running_mean=statistics.fmean(q.running for q in queue) if queue else None,
        waiting_mean=statistics.fmean(q.waiting for q in queue) if queue else None,
    )
