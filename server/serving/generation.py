"""Run one client request on the engine: one engine request per prompt, merged, measured.

Engine failures become `APIError`s here (serving.engine_runs), so callers deal with one error
type.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from vllm.outputs import RequestOutput
from vllm.sampling_params import SamplingParams
from vllm.utils.async_utils import merge_async_iterators

from server.errors import APIError
from server.serving.usage import UsageCounter
from server.serving.engine_runs import engine_run
from server.serving.targets import Target
from server.state import ServerState


def engine_input(target: Target, token_ids: list[int]) -> dict:
    if target.soft_prompt is not None:
        return target.soft_prompt.soft_prompt.engine_input(token_ids)
    return {"prompt_token_ids": token_ids}


async def generate(
    state: ServerState,
    target: Target,
    endpoint: str,
    request_id: str,
    prompts: list[list[int]],
    params: SamplingParams,
    counter: UsageCounter,
    timeout: float | None = None,
    constraint_param: str | None = None,
) -> AsyncIterator[tuple[int, RequestOutput]]:
    """Yield (prompt index, output) as the engine produces them, counted into `counter`; record
    metrics at the end. Past `timeout` seconds the engine requests are aborted and a 504 raised.
    `constraint_param`: the request field of its structured-output constraint, if any.

    Takes over the target's hold on its adapters and releases it when the last output is out.
    """
    m = state.metrics
    first_token_at = None
    with engine_run(state, target, endpoint, request_id, len(prompts), timeout) as run:
        merged = merge_async_iterators(*(
            run.engine.generate(engine_input(target, ids), params, engine_id,
                                lora_request=run.lora_request)
            for engine_id, ids in zip(run.engine_ids, prompts)))
        deadline = None if timeout is None else run.started + timeout
        try:
            while True:
                try:
                    index, output = await _next(merged, deadline)
                except StopAsyncIteration:
                    break
                if any(o.finish_reason == "error" for o in output.outputs):
                    # The engine failed this request alone; the engine core logged why.
                    if constraint_param is not None and not counter.completion_tokens:
                        # A grammar that passed the checks but did not compile (an xgrammar
                        # limit).
                        raise APIError(400, f"{constraint_param}: the structured-output backend "
                                       "could not compile it", param=constraint_param)
                    raise APIError(500, "the engine could not complete this request; the "
                                   "server log has the details")
                if counter.add(index, output) and first_token_at is None:
                    first_token_at = time.perf_counter()
                    m.time_to_first_token.labels(*run.labels).observe(first_token_at - run.started)
                yield index, output
        finally:
            m.prompt_tokens.labels(*run.labels).inc(counter.prompt_tokens)
            m.cached_prompt_tokens.labels(*run.labels).inc(counter.cached_tokens)
            m.generation_tokens.labels(*run.labels).inc(counter.completion_tokens)


async def _next(outputs: AsyncIterator, deadline: float | None):
    """The next output; past `deadline` (perf_counter time) a TimeoutError, having cancelled
    the wait, which aborts the engine requests as a client disconnect does."""
    if deadline is None:
        return await anext(outputs)
    return await asyncio.wait_for(anext(outputs), max(0.0, deadline - time.perf_counter()))
