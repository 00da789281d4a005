"""What every response carries whatever the endpoint: its id, its deadline, how it ended."""

from __future__ import annotations

import uuid

from server.state import ServerState


def request_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def timeout(state: ServerState, request) -> float | None:
    """The request's deadline in seconds: its own `request_timeout` (pooling requests have none),
    never past the server's."""
    limits = [t for t in (state.config.request_timeout, getattr(request, "request_timeout", None))
              if t is not None]
    return min(limits) if limits else None


def finish_reason(reason: str | None) -> str | None:
    """vLLM's reason as OpenAI's: "stop" or "length", and "abort" for a request the server ended
    (a shutdown that ran out of time); vLLM's other reasons (a repetition stop) are stops."""
    if reason is None or reason in ("length", "abort"):
        return reason
    return "stop"
