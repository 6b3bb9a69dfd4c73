"""Refusals the web app answers itself, before a job runs: one JSON shape, ``{"error": "code:
message"}`` (RunPod's string form), with the HTTP status that says what to do next.

Failures of a job that ran keep RunPod's shape instead (HTTP 200, ``"status": "FAILED"``).
No reply ever echoes what was sent: FastAPI's validation errors carry the input (an API key, a
whole job), so they are answered without it.
"""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from shared.errors import ErrorCode, QueueFull, TTSError

_STATUS = {
    ErrorCode.INVALID_INPUT: 422,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.AUTH_UNAVAILABLE: 503,
    ErrorCode.QUEUE_FULL: 503,
    ErrorCode.ENGINE_UNAVAILABLE: 503,
    ErrorCode.REQUEST_TOO_LARGE: 413,
}


def error_reply(err: TTSError, *, headers: Mapping[str, str] | None = None) -> JSONResponse:
    extra = dict(headers or {})
    if isinstance(err, QueueFull):
        extra["Retry-After"] = str(err.retry_after_s)
    return JSONResponse({"error": str(err)}, status_code=_STATUS.get(err.code, 500), headers=extra)


def install_error_handlers(app: FastAPI) -> None:
    async def tts_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, TTSError)
        return error_reply(exc)

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        details = [
            {name: value for name, value in error.items() if name not in ("input", "ctx")}
            for error in exc.errors()
        ]
        return JSONResponse({"detail": details}, status_code=422)

    app.add_exception_handler(TTSError, tts_error)
    app.add_exception_handler(RequestValidationError, validation_error)
