"""GET /health and GET /metrics (no API key: probes and scrapers have none)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from server.api.deps import ready_state

router = APIRouter()


@router.get("/health", dependencies=[Depends(ready_state)])
async def health() -> dict:
    return {"status": "ok"}


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics_registry),
                    media_type=CONTENT_TYPE_LATEST)
