"""Refusals the web app answers: one shape per surface, each with the HTTP status that says what
to do next, so each surface's own clients read them unchanged.

- RunPod-compatible routes: ``{"error": "code: message"}`` (RunPod's string form). Failures of
  a job that ran keep RunPod's shape instead (HTTP 200, ``"status": "FAILED"``).
- Native v1 (``/v1/...``): ``{"error": {"code", "message"}}``.
- OpenAI-compatible (``/v1/audio/...``): ``{"error": {"message", "type", "param", "code"}}``,
  the statuses the official SDK maps to its exceptions, and ``x-should-retry: false`` where a
  retry cannot help (an exhausted monthly quota).

The surface is chosen by path, so refusals made before any route runs (a body over the bound,
a malformed request) come in the shape the client expects too. No reply ever echoes what was
sent: FastAPI's validation errors carry the input (an API key, a whole job), so they are
answered without it.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.errors import (
    ErrorCode,
    InvalidInput,
    NotFound,
    QueueFull,
    RateLimited,
    TTSError,
    Unauthorized,
)


class Surface(StrEnum):
    RUNPOD = "runpod"
    V1 = "v1"
    OPENAI = "openai"


OPENAI_PREFIX = "/v1/audio/"
V1_PREFIX = "/v1/"


def surface_for(path: str) -> Surface:
    if path.startswith(OPENAI_PREFIX):
        return Surface.OPENAI
    if path.startswith(V1_PREFIX) or path == V1_PREFIX.rstrip("/"):
        return Surface.V1
    return Surface.RUNPOD


_RUNPOD_STATUS = {
    ErrorCode.INVALID_INPUT: 422,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.AUTH_UNAVAILABLE: 503,
    ErrorCode.QUEUE_FULL: 503,
    ErrorCode.ENGINE_UNAVAILABLE: 503,
    ErrorCode.ENGINE_OUT_OF_MEMORY: 503,
    ErrorCode.ENGINE_TIMEOUT: 503,
    ErrorCode.DEVICE_ERROR: 503,
    ErrorCode.REQUEST_TOO_LARGE: 413,
    ErrorCode.REFERENCE_TOO_LARGE: 413,
    **dict.fromkeys(
        (
            ErrorCode.REFERENCE_UNREADABLE,
            ErrorCode.REFERENCE_TOO_SHORT,
            ErrorCode.REFERENCE_TOO_LONG,
            ErrorCode.REFERENCE_SILENT,
            ErrorCode.REFERENCE_CLIPPED,
            ErrorCode.REFERENCE_URL_REFUSED,
            ErrorCode.REFERENCE_UNREACHABLE,
            ErrorCode.UNSUPPORTED_BY_ENGINE,
        ),
        422,
    ),
}

# Native v1: 400 for a request that is malformed, 422 for one that is well formed but cannot
# be spoken as asked, 403 for a tenant out of monthly quota (no retry helps until the month
# turns), 429 for a rate window (Retry-After says when it reopens), 503 for what passes.
_V1_STATUS = {
    ErrorCode.INVALID_INPUT: 400,
    ErrorCode.TEXT_TOO_LONG: 400,
    ErrorCode.INVALID_SSML: 422,
    ErrorCode.UNSUPPORTED_FORMAT: 422,
    ErrorCode.UNSUPPORTED_LANGUAGE: 422,
    ErrorCode.RESULT_TOO_LARGE: 422,
    # A cloned voice's reference audio: well formed requests, audio that cannot be used.
    ErrorCode.REFERENCE_UNREADABLE: 422,
    ErrorCode.REFERENCE_TOO_SHORT: 422,
    ErrorCode.REFERENCE_TOO_LONG: 422,
    ErrorCode.REFERENCE_SILENT: 422,
    ErrorCode.REFERENCE_CLIPPED: 422,
    ErrorCode.REFERENCE_TOO_LARGE: 413,
    # A reference URL we will not or could not fetch: the request names it, so it is the
    # request's problem (the message says which), not a gateway failure of ours.
    ErrorCode.REFERENCE_URL_REFUSED: 422,
    ErrorCode.REFERENCE_UNREACHABLE: 422,
    ErrorCode.UNSUPPORTED_BY_ENGINE: 422,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.QUOTA_EXCEEDED: 403,
    ErrorCode.VOICE_NOT_FOUND: 404,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.CONFLICT: 409,
    ErrorCode.REQUEST_TOO_LARGE: 413,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.AUTH_UNAVAILABLE: 503,
    ErrorCode.STORAGE_UNAVAILABLE: 503,
    ErrorCode.QUEUE_FULL: 503,
    ErrorCode.ENGINE_UNAVAILABLE: 503,
    ErrorCode.ENGINE_OUT_OF_MEMORY: 503,
    ErrorCode.ENGINE_TIMEOUT: 503,
    ErrorCode.DEVICE_ERROR: 503,
}

# OpenAI's API answers every request problem with 400 (BadRequestError in the SDK), and an
# exhausted quota with 429 ``insufficient_quota``.
_OPENAI_STATUS = {
    **{code: 400 for code, status in _V1_STATUS.items() if status in (400, 422)},
    ErrorCode.VOICE_NOT_FOUND: 400,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.CONFLICT: 409,
    ErrorCode.REQUEST_TOO_LARGE: 413,
    ErrorCode.REFERENCE_TOO_LARGE: 413,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.QUOTA_EXCEEDED: 429,
    ErrorCode.AUTH_UNAVAILABLE: 503,
    ErrorCode.STORAGE_UNAVAILABLE: 503,
    ErrorCode.QUEUE_FULL: 503,
    ErrorCode.ENGINE_UNAVAILABLE: 503,
    ErrorCode.ENGINE_OUT_OF_MEMORY: 503,
    ErrorCode.ENGINE_TIMEOUT: 503,
    ErrorCode.DEVICE_ERROR: 503,
}
_OPENAI_TYPE = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}
_OPENAI_CODE = {ErrorCode.QUOTA_EXCEEDED: "insufficient_quota"}


_STATUS = {Surface.RUNPOD: _RUNPOD_STATUS, Surface.V1: _V1_STATUS, Surface.OPENAI: _OPENAI_STATUS}


def status_for(err: TTSError, surface: Surface) -> int:
    return _STATUS[surface].get(err.code, 500)


def error_body(err: TTSError, surface: Surface, *, param: str | None = None) -> dict[str, Any]:
    """The JSON body for ``err`` on ``surface`` (also what a WebSocket sends before closing)."""
    if surface is Surface.RUNPOD:
        return {"error": str(err)}
    if surface is Surface.V1:
        return {"error": {"code": err.code.value, "message": err.message}}
    status = status_for(err, surface)
    return {
        "error": {
            "message": err.message,
            "type": _OPENAI_TYPE.get(status, "server_error" if status >= 500 else "api_error"),
            "param": param,
            "code": _OPENAI_CODE.get(err.code, err.code.value),
        }
    }


def error_headers(err: TTSError, surface: Surface) -> dict[str, str]:
    headers: dict[str, str] = {}
    if isinstance(err, RateLimited | QueueFull):
        headers["Retry-After"] = str(err.retry_after_s)
    if isinstance(err, Unauthorized) and surface is not Surface.RUNPOD:
        headers["WWW-Authenticate"] = "Bearer"
    if surface is Surface.OPENAI and err.code is ErrorCode.QUOTA_EXCEEDED:
        headers["x-should-retry"] = "false"  # the SDK would otherwise retry a 429 twice
    return headers


def error_reply(
    err: TTSError,
    *,
    path: str = "/",
    headers: Mapping[str, str] | None = None,
    param: str | None = None,
) -> JSONResponse:
    """The reply refusing ``err`` on the surface that serves ``path``."""
    surface = surface_for(path)
    extra = {**error_headers(err, surface), **(headers or {})}
    return JSONResponse(
        error_body(err, surface, param=param),
        status_code=status_for(err, surface),
        headers=extra,
    )


class ParamError(InvalidInput):
    """A bad request naming the field at fault (OpenAI's ``param``)."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


def install_error_handlers(app: FastAPI) -> None:
    async def tts_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, TTSError)
        param = exc.param if isinstance(exc, ParamError) else None
        return error_reply(exc, path=request.url.path, param=param)

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        details = [
            {name: value for name, value in error.items() if name not in ("input", "ctx")}
            for error in exc.errors()
        ]
        if surface_for(request.url.path) is Surface.RUNPOD:
            return JSONResponse({"detail": details}, status_code=422)
        message = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}" for error in details
        )
        first = details[0]["loc"][-1] if details and details[0]["loc"] else None
        return error_reply(
            InvalidInput(message), path=request.url.path, param=str(first) if first else None
        )

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        # A route's own refusal (an unknown job id, a bad signed URL) carries a code on every
        # surface, RunPod's included, so a client can tell them apart without the message.
        assert isinstance(exc, StarletteHTTPException)
        err: TTSError = (
            NotFound(str(exc.detail))
            if exc.status_code == 404
            else Unauthorized(str(exc.detail))
            if exc.status_code in (401, 403)
            else InvalidInput(str(exc.detail))
        )
        reply = error_reply(err, path=request.url.path, headers=exc.headers)
        reply.status_code = exc.status_code
        return reply

    app.add_exception_handler(TTSError, tts_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
