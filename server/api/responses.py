"""POST /v1/responses."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from openai.types.responses import Response
from fastapi.responses import JSONResponse, StreamingResponse

from server.api.cancellation import cancel_on_disconnect
from server.api.deps import Caller, State, check_api_key
from server.api.generation import SSE_HEADERS
from server.api.openapi import GENERATION, errors, streamed_or_whole
from server.protocol.responses import ResponsesRequest
from server.serving.responses import create_response

router = APIRouter(dependencies=[Depends(check_api_key)], responses=errors(*GENERATION))


@router.post("/v1/responses", response_model=None, responses=streamed_or_whole(Response))
@cancel_on_disconnect
async def responses(request: ResponsesRequest, state: State, caller: Caller,
                    raw_request: Request):
    result = await create_response(state, request, caller)
    if isinstance(result, dict):
        return JSONResponse(result)
    return StreamingResponse(result, media_type="text/event-stream", headers=SSE_HEADERS)
