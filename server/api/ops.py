"""GET /health, GET /ready and GET /metrics (no API key: probes and scrapers have none).

/health is liveness (the process and its engine are up: restart the server when it fails);
/ready is readiness (send it traffic: also not shutting down, adapters directory readable).
"""

from __future__ import annotations

import os

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from server.api.deps import State, live_state
from server.api.openapi import errors
from server.errors import APIError
from server.metrics import LoraResidency

router = APIRouter()


@router.get("/health", dependencies=[Depends(live_state)], responses=errors(503))
async def health() -> dict:
    return {"status": "ok"}


@router.get("/ready", responses=errors(503))
async def ready(state: State) -> dict:
    adapters = state.registry.root
    if not (adapters.is_dir() and os.access(adapters, os.R_OK | os.X_OK)):
        raise APIError(503, f"the adapters directory {adapters} is not readable")
    return {"status": "ready"}


@router.get("/metrics", response_class=Response, responses={200: {
    "description": "Prometheus text exposition.", "content": {CONTENT_TYPE_LATEST: {}}}})
async def metrics(request: Request) -> Response:
    """`?name[]=A&name[]=B`: only those series (prometheus_client's own filter, as on vLLM's
    /metrics). With a thousand adapters the whole exposition is megabytes (each adapter's
    counters and histograms) and costs the API process ~0.5 s of CPU; a poller that reads two
    gauges once a second would take that from the engine."""
    state = request.app.state.server
    registry = request.app.state.metrics_registry
    names = request.query_params.getlist("name[]")
    if not names or set(names) & LoraResidency.SERIES:
        await state.lora_residency.sample(state.engine, state.registry)
    if names:
        registry = registry.restricted_registry(names)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
