"""Run one pooling request on the engine (--runner pooling): inputs rendered and checked, one
engine request per input, the finished outputs in input order.

The pooling counterpart of `serving.generation`: the same adapters (`Target`), error mapping
(`engine_runs`) and request metrics (no generated tokens). vLLM builds a pooling model's
pooler for one task, `embed` or `classify` (--convert), so a server does one of the two.
"""

from __future__ import annotations

import asyncio

from vllm.outputs import PoolingRequestOutput
from vllm.pooling_params import PoolingParams
from vllm.utils.async_utils import merge_async_iterators

from server.errors import APIError, bad_request
from server.protocol.common import PoolingInput
from server.rendering.prompts import PromptRenderer
from server.serving.engine_runs import engine_run
from server.serving.targets import Target
from server.state import ServerState

ENDPOINTS = {"embed": "/v1/embeddings", "classify": "/classify"}


async def served_task(engine) -> str | None:
    """The pooling task of the engine's model: `embed`, `classify`, or None (not pooling)."""
    tasks = await engine.get_supported_tasks()
    return next((task for task in ENDPOINTS if task in tasks), None)


def require_task(state: ServerState, task: str) -> None:
    """400 unless the served model does `task` (an embedding model has no classifier head, and
    a classifier's pooler returns class probabilities, not embeddings)."""
    served = state.pooling_task
    if served != task:
        raise bad_request(
            f"{ENDPOINTS[task]} needs a model served for `{task}` (--convert {task}); this "
            f"server's model does `{served}`: use {ENDPOINTS.get(served, 'another server')}")


async def inputs(renderer: PromptRenderer, given: PoolingInput) -> list[list[int]]:
    """`input` as token ids, each non-empty and within the context window."""
    if given == "" or (isinstance(given, list) and "" in given):
        raise bad_request("input must not contain empty strings", param="input")
    prompts = await renderer.completion_prompts(given, param="input")
    for i, prompt in enumerate(prompts):
        renderer.check_fits(len(prompt.token_ids),
                            "the input" if len(prompts) == 1 else f"input[{i}]", "input")
    return [prompt.token_ids for prompt in prompts]


async def encode(
    state: ServerState,
    target: Target,
    endpoint: str,
    request_id: str,
    prompts: list[list[int]],
    params: PoolingParams,
    timeout: float | None = None,
) -> list[PoolingRequestOutput]:
    """Each prompt's finished output, in order; metrics recorded. Past `timeout` seconds the
    engine requests are aborted and a 504 raised.

    Takes over the target's hold on its adapters and releases it when done.
    """
    results: list[PoolingRequestOutput | None] = [None] * len(prompts)
    with engine_run(state, target, endpoint, request_id, len(prompts), timeout) as run:
        try:
            # A deadline cancels the wait, which aborts the engine requests as a disconnect does.
            async with asyncio.timeout(timeout):
                async for i, output in merge_async_iterators(*(
                        run.engine.encode({"prompt_token_ids": ids}, params.clone(), engine_id,
                                          lora_request=run.lora_request)
                        for engine_id, ids in zip(run.engine_ids, prompts))):
                    if output.error is not None:  # the engine failed this request alone
                        raise APIError(500, "the engine could not complete this request; the "
                                       "server log has the details")
                    results[i] = output
        finally:
            state.metrics.prompt_tokens.labels(*run.labels).inc(sum(map(len, prompts)))
    return results  # type: ignore[return-value]  # every slot is filled when status is ok
