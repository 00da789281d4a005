"""The endpoints of each engine runner (--runner): a server mounts its runner's routers, and
the other runner's paths answer 400 saying which server to use instead of a bare 404."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.routing import APIRoute

from server.api import classify, embeddings, generation, responses
from server.api.deps import check_api_key
from server.errors import APIError

ROUTERS = {
    "generate": (generation.router, responses.router),
    "pooling": (embeddings.router, classify.router),
}
_WHAT = {"generate": "text generation", "pooling": "embeddings and classification"}


def routers(runner: str) -> list[APIRouter]:
    """`runner`'s routers, then the other runners' paths answering 400."""
    return [*ROUTERS[runner], *(_refusing(router, runner, other)
                                for other, routers_ in ROUTERS.items() if other != runner
                                for router in routers_)]


def _refusing(router: APIRouter, runner: str, other: str) -> APIRouter:
    refusal = APIRouter(dependencies=[Depends(check_api_key)], include_in_schema=False)
    for route in router.routes:
        if isinstance(route, APIRoute):
            refusal.add_api_route(route.path, _refuse(
                f"{route.path} is not served here: this server runs the {runner} runner "
                f"({_WHAT[runner]}); {_WHAT[other]} needs a server started with "
                f"--runner {other}"), methods=list(route.methods))
    return refusal


def _refuse(message: str):
    async def refuse():
        raise APIError(400, message, code="wrong_runner")
    return refuse
