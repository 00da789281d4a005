"""Endpoints of vLLM's own server that RL trainers and routers call, answered the way vLLM does.

TRL's AsyncGRPO (and verl, SkyRL, prime-rl) drive a vLLM server through them: it reads the
LoRA limits from `/server_info?config_format=json`, loads each new policy version with
`/v1/load_lora_adapter` between `/pause?mode=keep` and `/resume`, and unloads stale versions.
Here the adapter endpoints go through the same registry as `/v1/adapters` (validation, private
snapshots, a fresh engine LoRA per version, paths confined to the adapters directory and
`--lora-roots`), and all of them need a key that may manage adapters. vLLM hides them behind
`VLLM_SERVER_DEV_MODE` / `VLLM_ALLOW_RUNTIME_LORA_UPDATING`; a key is this server's gate.
"""

from __future__ import annotations

from typing import Annotated, Literal

import pydantic
from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse, PlainTextResponse
from vllm.config import VllmConfig

from server.api.deps import State, managing_grant
from server.api.openapi import errors
from server.errors import APIError, bad_request
from server.protocol.models import LoadLoRAAdapterRequest, UnloadLoRAAdapterRequest

router = APIRouter(dependencies=[Depends(managing_grant)], responses=errors(400, 401, 403, 503))

_VLLM_CONFIG = pydantic.TypeAdapter(VllmConfig)


# vLLM answers these two with a sentence, not JSON; their errors are JSON in the OpenAI shape.
_SENTENCE = {200: {"description": "A sentence saying what was done.",
                   "content": {"text/plain": {"schema": {"type": "string"}}}}}


@router.post("/v1/load_lora_adapter", response_model=None,
             responses={**_SENTENCE, **errors(400, 404, 409)})
async def load_lora_adapter(request: LoadLoRAAdapterRequest, state: State) -> PlainTextResponse:
    name = request.lora_name
    if request.is_3d_lora_weight:
        raise bad_request("3-D (mixture-of-experts) LoRA weights are not served here",
                          param="is_3d_lora_weight")
    if name == state.config.model_name:
        raise APIError(409, f"`{name}` is the base model's name", param="lora_name")
    if not request.load_inplace and state.registry.serves(name):
        # vLLM's answer; a new policy version under a new name needs no in-place load.
        raise bad_request(f"The lora adapter '{name}' has already been loaded. If you want to "
                          "load the adapter in place, set 'load_inplace' to True.",
                          param="lora_name")
    try:
        await state.registry.register(name, request.lora_path)
    except APIError as exc:
        exc.param = {"name": "lora_name", "path": "lora_path"}.get(exc.param, exc.param)
        raise
    return PlainTextResponse(f"Success: LoRA adapter '{name}' added successfully.")


@router.post("/v1/unload_lora_adapter", response_model=None, responses={**_SENTENCE, **errors(404)})
async def unload_lora_adapter(request: UnloadLoRAAdapterRequest, state: State) -> PlainTextResponse:
    name = request.lora_name
    try:
        await state.registry.unregister(name)
    except APIError as exc:
        if exc.status == 404:  # vLLM's wording
            raise APIError(404, f"The lora adapter '{name}' cannot be found.",
                           param="lora_name", code="model_not_found") from exc
        raise
    return PlainTextResponse(f"Success: LoRA adapter '{name}' removed successfully.")


@router.get("/server_info")
async def server_info(
    state: State, config_format: Annotated[Literal["text", "json"], Query()] = "text",
) -> JSONResponse:
    """The engine's resolved configuration, as vLLM's `/server_info` gives it (`vllm_config`:
    `lora_config.max_loras`, `max_lora_rank`, `parallel_config`, `model_config.dtype` ...)."""
    config = state.engine.vllm_config
    dumped = str(config) if config_format == "text" else \
        _VLLM_CONFIG.dump_python(config, mode="json", fallback=str)
    return JSONResponse({"vllm_config": dumped})


@router.post("/pause", responses=errors(400))
async def pause(state: State, mode: Annotated[Literal["abort", "wait", "keep"], Query()] = "abort",
                clear_cache: Annotated[bool, Query()] = True) -> dict:
    """Hold generation, as vLLM's `/pause`: `abort` ends the requests in flight, `wait` lets them
    finish first, `keep` freezes them where they are until `/resume`. Requests that arrive
    meanwhile wait. A shutdown resumes generation, so that its drain can finish what it keeps."""
    await state.engine.pause_generation(mode=mode, clear_cache=clear_cache)
    state.paused = True
    return {"status": "paused"}


@router.post("/resume")
async def resume(state: State) -> dict:
    await state.engine.resume_generation()
    state.paused = False
    return {"status": "resumed"}


@router.get("/is_paused")
async def is_paused(state: State) -> dict:
    return {"is_paused": await state.engine.is_paused()}
