"""Dependencies shared by the routers: the server state, readiness and API-key checks."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from server.errors import APIError
from server.state import ServerState


def get_state(request: Request) -> ServerState:
    return request.app.state.server


def ready_state(state: Annotated[ServerState, Depends(get_state)]) -> ServerState:
    if not state.ready:
        if state.startup_error:
            raise APIError(503, f"the engine failed to start: {state.startup_error}")
        if state.engine is not None and state.engine.errored:
            raise APIError(503, "the engine has stopped; the server needs a restart")
        raise APIError(503, "the engine is starting; retry in a few seconds")
    return state


def check_api_key(request: Request, state: Annotated[ServerState, Depends(get_state)]) -> None:
    keys: list[str] = request.app.state.api_keys
    if not keys:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    given_bytes = given.strip().encode()
    # Compare against every key, always, so timing reveals neither a key nor which one matched.
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(given_bytes, key.encode())
    if scheme.lower() != "bearer" or not matched:
        raise APIError(401, "Incorrect or missing API key. Send `Authorization: Bearer <key>`.",
                       code="invalid_api_key")


State = Annotated[ServerState, Depends(ready_state)]
