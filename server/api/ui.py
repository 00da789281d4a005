"""GET /ui, the human-feedback page, and its API under /ui/api (mounted unless --no-ui).

The page and its static files load without a key; every data call the page makes carries the
key the person typed in, and is held to that key's scope like any API call.
"""

from __future__ import annotations

import hashlib
import html
from pathlib import Path
from string import Template
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles

from server.api.deps import Caller, State, check_api_key, get_state
from server.api.generation import SSE_HEADERS
from server.api.openapi import GENERATION, errors
from server.config import ServerConfig
from server.protocol.feedback import ComparisonRequest, Judgement, JudgementRequest, Leaderboard
from server.serving.feedback import Feedback
from server.serving.feedback.comparisons import start_comparison, target_parts
from server.serving.feedback.judgements import record_judgement
from server.state import ServerState

UI_DIR = Path(__file__).resolve().parent.parent / "ui"
# Everything from this server, nothing inline: the page works offline and injected markup
# (a model name, an answer) could not run script even if it got past the escaping.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; base-uri 'none'; "
                               "form-action 'none'; frame-ancestors 'none'",
    "Cache-Control": "no-store",
}

page = APIRouter()
api = APIRouter(prefix="/ui/api", dependencies=[Depends(check_api_key)],
                responses=errors(400, 401, 503), tags=["ui"])


def mount(app: FastAPI, config: ServerConfig) -> None:
    app.state.feedback = Feedback.at(config.preferences_file)
    app.include_router(page)
    app.include_router(api)
    app.mount("/ui/static", StaticFiles(directory=UI_DIR / "static"), name="ui-static")


def get_feedback(request: Request) -> Feedback:
    return request.app.state.feedback


def key_owner(request: Request) -> str:
    """Who made a comparison: a digest of the key presented (comparisons are per key)."""
    return hashlib.sha256(request.headers.get("authorization", "").encode()).hexdigest()


FeedbackDep = Annotated[Feedback, Depends(get_feedback)]
Owner = Annotated[str, Depends(key_owner)]


@page.get("/ui", response_class=HTMLResponse, include_in_schema=False)
async def ui(request: Request, state: Annotated[ServerState, Depends(get_state)]) -> HTMLResponse:
    template = Template((UI_DIR / "page.html").read_text(encoding="utf-8"))
    needs_key = request.app.state.api_keys.enabled
    body = template.substitute(
        base_model=html.escape(state.config.model_name), needs_key=str(needs_key).lower(),
        key_hint="This server needs an API key." if needs_key
        else "This server runs without API keys: leave it empty.")
    return HTMLResponse(body, headers=PAGE_HEADERS)


@api.post("/comparisons", response_model=None, responses={
    200: {"description": "Server-sent events: comparison, delta, answer_done, done, then [DONE].",
          "content": {"text/event-stream": {}}}, **errors(*GENERATION)})
async def create_comparison(body: ComparisonRequest, state: State, caller: Caller,
                            feedback: FeedbackDep, owner: Owner) -> StreamingResponse:
    """Answer one prompt with 2-4 targets, streamed side by side, kept to be judged."""
    events = await start_comparison(state, feedback.comparisons, body, caller, owner)
    return StreamingResponse(events, media_type="text/event-stream", headers=SSE_HEADERS)


@api.post("/judgements", responses=errors(404, 409))
async def create_judgement(body: JudgementRequest, feedback: FeedbackDep,
                           owner: Owner) -> Judgement:
    """Record a verdict on a comparison's answers in the preferences file."""
    return await record_judgement(feedback, body, owner)


@api.get("/leaderboard")
async def get_leaderboard(caller: Caller, feedback: FeedbackDep,
                          state: Annotated[ServerState, Depends(get_state)]) -> Leaderboard:
    """Elo ratings of the judged targets the caller's key may use."""
    base = state.config.model_name

    def visible(name: str) -> bool:
        return all(caller.may_use(part, base) for part in target_parts(name, base))

    return await feedback.ratings.table(visible)
