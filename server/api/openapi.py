"""What /openapi.json says beyond the routes themselves: every error status an endpoint can
answer, in the OpenAI error shape, and no 422 (bad input is a 400 here, as with OpenAI)."""

from __future__ import annotations

from http import HTTPStatus

from fastapi import FastAPI

from server.protocol.errors import ErrorResponse

_WHY = {
    400: "Bad parameters: the message names the field (`param`) and the reason.",
    401: "Missing or wrong API key.",
    403: "The API key may not do this.",
    404: "Unknown model or adapter (or one the API key may not use).",
    409: "Name conflict.",
    429: "A queue limit is reached; retry after `Retry-After` seconds.",
    500: "The engine failed this request; the server log has the details.",
    503: "The engine is starting, has stopped, or the server is shutting down.",
    504: "The request passed its deadline.",
}
GENERATION = (400, 401, 404, 429, 500, 503, 504)


def errors(*statuses: int) -> dict:
    """`responses=` for a route or router: these statuses, with the error body."""
    return {status: {"model": ErrorResponse, "description": _WHY.get(
        status, HTTPStatus(status).phrase)} for status in statuses}


def streamed_or_whole(model) -> dict:
    """The 200 of an endpoint that answers JSON, or server-sent events when `stream` is true."""
    return {200: {"model": model, "description": "The result; with `stream: true`, server-sent "
                  "events instead.", "content": {"text/event-stream": {}}}}


def without_422(app: FastAPI) -> None:
    """Drop FastAPI's default 422 entries: validation errors are answered 400."""
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = build()
            for path in schema.get("paths", {}).values():
                for operation in path.values():
                    operation.get("responses", {}).pop("422", None)
            for name in ("HTTPValidationError", "ValidationError"):
                schema.get("components", {}).get("schemas", {}).pop(name, None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
