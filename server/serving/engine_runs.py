"""One client request's engine requests, accounted the same way on every endpoint that runs
the engine (generation and pooling): their ids in flight, the adapters held, the outcome
(ok, aborted, timeout, rejected, error) counted in the request metrics, engine exceptions turned
into the client's `APIError`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from server.errors import APIError
from server.serving import engine_errors
from server.serving.targets import Target
from server.state import ServerState


@dataclass
class EngineRun:
    engine: object
    engine_ids: list[str]
    labels: tuple[str, str, str]
    """The request metrics' labels: endpoint, adapter, soft prompt."""
    lora_request: object | None
    started: float = field(default_factory=time.perf_counter)


@contextmanager
def engine_run(state: ServerState, target: Target, endpoint: str, request_id: str,
               prompts: int, timeout: float | None) -> Iterator[EngineRun]:
    """The run of `prompts` engine requests; takes over the target's hold on its adapters and
    releases it at the end. A body that completes is "ok"; a cancelled one (client gone, or a
    generator closed) "aborted"; an engine exception becomes its `APIError`."""
    engine = state.engine
    if engine is None or engine.errored:
        target.release()
        raise APIError(503, "the engine is not running")
    m = state.metrics
    run = EngineRun(engine, [f"{request_id}-{i}" for i in range(prompts)],
                    (endpoint, target.adapter_label, target.soft_prompt_label),
                    target.lora.lora_request if target.lora else None)
    status = "error"
    state.in_flight.update(run.engine_ids)
    try:
        yield run
        status = "ok"
    except (asyncio.CancelledError, GeneratorExit):
        status = "aborted"  # the client went away; vLLM aborts the engine requests
        raise
    except engine_errors.ENGINE_ERRORS as exc:
        status, error = engine_errors.client_error(exc, m, timeout)
        raise error from exc
    finally:
        state.in_flight.difference_update(run.engine_ids)
        if status == "ok":
            m.request_latency.labels(*run.labels).observe(time.perf_counter() - run.started)
        m.requests.labels(*run.labels, status).inc()
        m.finished.labels(run.labels[0], status).inc()
        # Last: releasing an adapter no longer served drops its metric series (Metrics.forget).
        target.release()
