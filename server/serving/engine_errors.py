"""What the engine raises for a request, as the client's `APIError`: one mapping for every
endpoint that runs the engine (generation and pooling alike)."""

from __future__ import annotations

from vllm.exceptions import (
    GracefulHTTPError,
    MaxQueuedTokensError,
    QueueOverflowError,
    VLLMClientError,
)
from vllm.v1.engine.exceptions import EngineDeadError

from server.errors import APIError

# `except ENGINE_ERRORS` catches what `client_error` maps; anything else is a bug (a 500).
ENGINE_ERRORS = (TimeoutError, EngineDeadError, GracefulHTTPError, VLLMClientError, ValueError)


def client_error(exc: BaseException, metrics, timeout: float | None) -> tuple[str, APIError]:
    """(the request's status label for the metrics, the error to answer) for `exc`.

    TimeoutError is the request's own deadline (`timeout` seconds): the wait for the engine was
    cancelled, which aborted the engine requests as a client disconnect does."""
    if isinstance(exc, TimeoutError):
        return "timeout", APIError(
            504, f"the request did not finish within its deadline of {timeout:g} s",
            param="request_timeout", code="timeout")
    if isinstance(exc, EngineDeadError):
        return "error", APIError(503, "the engine has stopped; the server needs a restart")
    if isinstance(exc, (QueueOverflowError, MaxQueuedTokensError)):
        reason = "queued_requests" if isinstance(exc, QueueOverflowError) else "queued_tokens"
        metrics.rejected.labels(reason=reason).inc()
        return "rejected", APIError(
            429, f"the server is busy ({reason.replace('_', ' ')} at their limit); retry after a "
            "short wait", code=reason, headers={"Retry-After": "1"})
    if isinstance(exc, GracefulHTTPError):
        return "error", APIError(int(exc.http_status), exc.message)
    return "error", APIError(400, str(exc))  # VLLMClientError, ValueError: the request's fault
