"""Dependencies shared by the routers: the server state, readiness and API-key checks."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from server.auth import FULL_ACCESS, Grant, KeyRing
from server.errors import APIError
from server.state import ServerState


def get_state(request: Request) -> ServerState:
    return request.app.state.server


def live_state(state: Annotated[ServerState, Depends(get_state)]) -> ServerState:
    """The engine is up (also while the server drains for a shutdown)."""
    if not state.ready:
        if state.startup_error:
            raise APIError(503, f"the engine failed to start: {state.startup_error}")
        if state.engine is not None and state.engine.errored:
            raise APIError(503, "the engine has stopped; the server needs a restart")
        raise APIError(503, "the engine is starting; retry in a few seconds")
    return state


def ready_state(state: Annotated[ServerState, Depends(live_state)]) -> ServerState:
    """The engine is up and the server takes new requests."""
    if state.draining:
        raise APIError(503, "the server is shutting down; retry on another replica")
    return state


def check_api_key(request: Request) -> Grant:
    """The caller's grant (what its key may use); 401 without a valid key."""
    keys: KeyRing = request.app.state.api_keys
    if not keys.enabled:
        return FULL_ACCESS
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    grant = keys.grant(given.strip())
    if scheme.lower() != "bearer" or grant is None:
        raise APIError(401, "Incorrect or missing API key. Send `Authorization: Bearer <key>`.",
                       code="invalid_api_key")
    return grant


def managing_grant(grant: Annotated[Grant, Depends(check_api_key)]) -> Grant:
    if not grant.manage:
        raise APIError(403, "this API key may not manage adapters", code="permission_denied")
    return grant


State = Annotated[ServerState, Depends(ready_state)]
Caller = Annotated[Grant, Depends(check_api_key)]
