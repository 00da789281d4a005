"""Errors as values: serving code raises `APIError`; `app` turns it into one HTTP response.

Every status a client can cause is a 4xx with the OpenAI error shape; anything unexpected is a
500 without internals (the traceback goes to the log, never to the client).
"""

from __future__ import annotations

from http import HTTPStatus

from server.protocol.errors import ErrorInfo, ErrorResponse

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable",
    504: "timeout_error",
}


class APIError(Exception):
    def __init__(
        self, status: int, message: str, *, param: str | None = None, code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers

    def to_response(self) -> ErrorResponse:
        return error_body(self.status, self.message, param=self.param, code=self.code)


def error_body(
    status: int, message: str, *, param: str | None = None, code: str | None = None
) -> ErrorResponse:
    kind = _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return ErrorResponse(
        error=ErrorInfo(message=message, type=kind, param=param,
                        code=code or HTTPStatus(status).phrase.lower().replace(" ", "_"))
    )


def bad_request(message: str, param: str | None = None) -> APIError:
    return APIError(400, message, param=param)


def model_not_found(name: str) -> APIError:
    return APIError(404, f"The model `{name}` does not exist.", param="model",
                    code="model_not_found")
