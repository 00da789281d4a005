"""POST /v1/completions and POST /v1/chat/completions."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from server.api.cancellation import cancel_on_disconnect
from server.api.deps import Caller, State, check_api_key
from server.api.openapi import GENERATION, errors, streamed_or_whole
from server.protocol.chat import ChatCompletionRequest, ChatCompletionResponse
from server.protocol.completions import CompletionRequest, CompletionResponse
from server.serving.chat import create_chat_completion
from server.serving.completions import create_completion

router = APIRouter(dependencies=[Depends(check_api_key)], responses=errors(*GENERATION))

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _respond(result):
    if isinstance(result, (CompletionResponse, ChatCompletionResponse)):
        return result
    return StreamingResponse(result, media_type="text/event-stream", headers=SSE_HEADERS)


@router.post("/v1/completions", response_model=None,
             responses=streamed_or_whole(CompletionResponse))
@cancel_on_disconnect
async def completions(request: CompletionRequest, state: State, caller: Caller,
                      raw_request: Request):
    return _respond(await create_completion(state, request, caller))


@router.post("/v1/chat/completions", response_model=None,
             responses=streamed_or_whole(ChatCompletionResponse))
@cancel_on_disconnect
async def chat_completions(request: ChatCompletionRequest, state: State, caller: Caller,
                           raw_request: Request):
    return _respond(await create_chat_completion(state, request, caller))
