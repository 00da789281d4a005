"""POST /v1/embeddings (mounted with --runner pooling)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from server.api.cancellation import cancel_on_disconnect
from server.api.deps import Caller, State, check_api_key
from server.api.openapi import GENERATION, errors
from server.protocol.embeddings import EmbeddingRequest, EmbeddingResponse
from server.serving.embeddings import create_embeddings

router = APIRouter(dependencies=[Depends(check_api_key)], responses=errors(*GENERATION))


# response_model=None: a request whose client went away returns None (cancel_on_disconnect).
@router.post("/v1/embeddings", response_model=None,
             responses={200: {"model": EmbeddingResponse, "description": "The result."}})
@cancel_on_disconnect
async def embeddings(request: EmbeddingRequest, state: State, caller: Caller,
                     raw_request: Request):
    return await create_embeddings(state, request, caller)
