"""POST /classify, vLLM's classification endpoint (mounted with --runner pooling)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from server.api.cancellation import cancel_on_disconnect
from server.api.deps import Caller, State, check_api_key
from server.api.openapi import GENERATION, errors
from server.protocol.classify import ClassificationRequest, ClassificationResponse
from server.serving.classify import create_classification

router = APIRouter(dependencies=[Depends(check_api_key)], responses=errors(*GENERATION))


# response_model=None: a request whose client went away returns None (cancel_on_disconnect).
@router.post("/classify", response_model=None,
             responses={200: {"model": ClassificationResponse, "description": "The result."}})
@cancel_on_disconnect
async def classify(request: ClassificationRequest, state: State, caller: Caller,
                   raw_request: Request):
    return await create_classification(state, request, caller)
