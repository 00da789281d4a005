"""The FastAPI application: routers, error handlers, and the engine's start-up in the background.

The HTTP server answers at once (`/health` says 503 until the engine is ready), because a model
can take minutes to load and orchestrators need a live port to probe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import time
from pathlib import Path

from fastapi import FastAPI, Request
from prometheus_client import REGISTRY, CollectorRegistry
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from transformers import AutoTokenizer

from server import lifecycle
from server.adapters.base_model import BaseModelInfo
from server.auth import KeyRing
from server.adapters.registry import AdapterRegistry
from server.adapters.soft_prompt import SoftPromptLoader
from server.api import models, openapi, ops, runners, ui, vllm_compat
from server.config import ServerConfig
from server.engine import start_engine
from server.errors import APIError, error_body
from server.metrics import LoraResidency, Metrics
from server.rendering.prompts import PromptRenderer
from server.rendering.tool_parsing import ToolCalling
from server.serving import pooling
from server.startup import trace
from server.startup.breakdown import breakdown
from server.state import ServerState

log = logging.getLogger("server")


async def _start(state: ServerState) -> None:
    config = state.config
    try:
        with trace.phase("model files"):
            base = await asyncio.to_thread(BaseModelInfo.load, config.model, config.trust_remote_code)
            tokenizer = await asyncio.to_thread(
                AutoTokenizer.from_pretrained, config.model, trust_remote_code=config.trust_remote_code)
        # Before the engine: an unknown parser, or one the tokenizer lacks tokens for, fails fast.
        tool_calling = ToolCalling(config.tool_call_parser, tokenizer, config.model_name,
                                   config.tool_strict_level)
        engine = await asyncio.to_thread(start_engine, config)
        pooling_task = await pooling.served_task(engine) if config.runner == "pooling" else None
    except Exception as exc:
        log.exception("engine start-up failed; stopping the server")
        _stop_starting(state, f"{type(exc).__name__}: {exc}")
        return
    adapters_started = time.time()
    state.base = base
    state.engine = engine
    vocab_size = engine.model_config.get_vocab_size()
    state.renderer = PromptRenderer(tokenizer, vocab_size, engine.model_config.max_model_len)
    state.tool_calling = tool_calling
    state.pooling_task = pooling_task
    adapters_dir = Path(config.adapters)
    adapters_dir.mkdir(parents=True, exist_ok=True)
    state.registry = AdapterRegistry(
        adapters_dir, base, engine, max_lora_rank=config.max_lora_rank, metrics=state.metrics,
        soft_prompt_loader=SoftPromptLoader(engine.model_config.max_model_len,
                                            engine.model_config.dtype)
        if config.serves_soft_prompts else None,
        runner=config.runner, pooling_task=pooling_task,
        extra_roots=tuple(Path(r) for r in config.lora_roots),
        pinned=config.pinned_adapters, max_pinned=engine.vllm_config.lora_config.max_loras - 1,
        residency=state.lora_residency)
    try:
        await state.registry.load_pinned()
    except ValueError as exc:
        log.error("start-up stopped: %s", exc)
        _stop_starting(state, str(exc))
        return
    trace.record("adapters", adapters_started)
    state.started_at = int(time.time())
    log.info("ready: %s with adapters from %s", config.model_name, adapters_dir.resolve())
    _report_startup(state)


def _stop_starting(state: ServerState, reason: str) -> None:
    trace.end()  # removes the trace file
    state.startup_error = reason
    # An orchestrator restarts a dead process; a live one answering 503 forever helps nobody.
    os.kill(os.getpid(), signal.SIGTERM)


def _report_startup(state: ServerState) -> None:
    """Log where the start-up's seconds went and export them (`server_startup_seconds`)."""
    traced = trace.end()
    if traced is None:  # an app made without `python -m server` (tests)
        return
    events, began = traced
    result = breakdown(events, began, time.time())
    log.info("%s", result.line())
    state.metrics.startup_seconds.labels(phase="total").set(result.total)
    for phase, seconds in result.phases.items():
        state.metrics.startup_seconds.labels(phase=phase).set(seconds)


def _error_response(status: int, message: str, param: str | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message, param=param).model_dump(), status_code=status)


# pydantic puts the union member it tried into the error location (`prompt.str`,
# `stop.list[str]`); the client's parameter is the path without those tags.
_TYPE_TAG = re.compile(r"^(str|int|float|bool|list|dict|none)$|[\[\-]")


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    error = exc.errors()[0]
    loc = [str(part) for part in error.get("loc", ())
           if part != "body" and not _TYPE_TAG.search(str(part))]
    if error.get("type") == "json_invalid":
        return f"the request body is not valid JSON: {error.get('msg')}", None
    if error.get("type") == "extra_forbidden":
        return f"Unrecognized request argument supplied: {'.'.join(loc)}", ".".join(loc) or None
    where = ".".join(loc)
    return (f"{where}: {error.get('msg')}" if where else str(error.get("msg"))), where or None


def _install_error_handlers(app: FastAPI, metrics: Metrics) -> None:
    def count(request: Request, status: int) -> None:
        metrics.errors.labels(endpoint=request.url.path if request.url.path.startswith("/v1/")
                              else "other", status=str(status)).inc()

    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError):
        count(request, exc.status)
        return JSONResponse(exc.to_response().model_dump(), status_code=exc.status,
                            headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        count(request, 400)
        message, param = _validation_message(exc)
        return _error_response(400, message, param)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        count(request, exc.status_code)
        return _error_response(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        log.exception("unexpected error on %s", request.url.path)
        count(request, 500)
        return _error_response(500, "internal server error; the server log has the details")


def create_app(config: ServerConfig, *, start: bool = True,
               registry: CollectorRegistry = REGISTRY) -> FastAPI:
    """`registry`: where metrics live; the default one also holds vLLM's engine metrics."""
    state = ServerState(config=config, metrics=Metrics(registry), lora_residency=LoraResidency(registry))
    state.metrics.in_flight.set_function(lambda: len(state.in_flight))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        tasks = [asyncio.create_task(_start(state)),
                 asyncio.create_task(lifecycle.watch_engine(state))] if start else []
        yield
        for task in tasks:
            task.cancel()
        if state.registry is not None:
            state.registry.close()
        if state.engine is not None:
            state.engine.shutdown()

    app = FastAPI(title="adapter-serve", lifespan=lifespan)
    app.state.server = state
    app.state.metrics_registry = registry
    app.state.api_keys = KeyRing(
        plain=[*config.api_key, *filter(None, [os.environ.get("SERVER_API_KEY")])],
        file=Path(config.api_keys_file) if config.api_keys_file else None)
    _install_error_handlers(app, state.metrics)
    for router in (ops.router, models.router, vllm_compat.router, *runners.routers(config.runner)):
        app.include_router(router)
    if config.ui and config.runner == "generate":  # the page compares generated answers
        ui.mount(app, config)
    openapi.without_422(app)
    return app
