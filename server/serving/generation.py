"""Run one client request on the engine: one engine request per prompt, merged, measured.

Engine failures become `APIError`s here, so callers deal with one error type.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from vllm.exceptions import GracefulHTTPError, VLLMClientError
from vllm.outputs import RequestOutput
from vllm.sampling_params import SamplingParams
from vllm.utils.async_utils import merge_async_iterators
from vllm.v1.engine.exceptions import EngineDeadError

from server.errors import APIError
from server.serving.common import UsageCounter
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
) -> AsyncIterator[tuple[int, RequestOutput]]:
    """Yield (prompt index, output) as the engine produces them, counted into `counter`; record
    metrics at the end.

    Takes over the target's hold on its adapters and releases it when the last output is out.
    """
    engine = state.engine
    if engine is None or engine.errored:
        target.release()
        raise APIError(503, "the engine is not running")
    m = state.metrics
    labels = (endpoint, target.adapter_label, target.soft_prompt_label)
    lora_request = target.lora.lora_request if target.lora else None
    started = time.perf_counter()
    first_token_at = None
    status = "error"
    streams = [
        engine.generate(engine_input(target, ids), params, f"{request_id}-{i}",
                        lora_request=lora_request)
        for i, ids in enumerate(prompts)
    ]
    try:
        async for index, output in merge_async_iterators(*streams):
            if any(o.finish_reason == "error" for o in output.outputs):
                # The engine failed this request alone (e.g. a grammar that passed the checks
                # but did not compile); the engine core logged why.
                raise APIError(500, "the engine could not complete this request; the server "
                               "log has the details")
            if counter.add(index, output) and first_token_at is None:
                first_token_at = time.perf_counter()
                m.time_to_first_token.labels(*labels).observe(first_token_at - started)
            yield index, output
        status = "ok"
    except (asyncio.CancelledError, GeneratorExit):
        status = "aborted"  # the client went away; vLLM aborts the engine requests
        raise
    except EngineDeadError as exc:
        raise APIError(503, "the engine has stopped; the server needs a restart") from exc
    except GracefulHTTPError as exc:
        raise APIError(int(exc.http_status), exc.message) from exc
    except (VLLMClientError, ValueError) as exc:
        raise APIError(400, str(exc)) from exc
    finally:
        target.release()
        if status == "ok":
            m.request_latency.labels(*labels).observe(time.perf_counter() - started)
        m.requests.labels(*labels, status).inc()
        m.prompt_tokens.labels(*labels).inc(counter.prompt_tokens)
        m.cached_prompt_tokens.labels(*labels).inc(counter.cached_tokens)
        m.generation_tokens.labels(*labels).inc(counter.completion_tokens)
