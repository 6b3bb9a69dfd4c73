"""Every error code has a deliberate HTTP status on the Bearer surfaces: only the server's own
failures and passing trouble answer 5xx, so a client never retries what cannot succeed."""

from __future__ import annotations

import pytest

from serverless_tts.web.errors import Surface, status_for
from shared.errors import ErrorCode, TTSError

SERVER_SIDE = {
    ErrorCode.INTERNAL: 500,
    ErrorCode.INVALID_CONFIG: 500,
    ErrorCode.AUTH_UNAVAILABLE: 503,
    ErrorCode.STORAGE_UNAVAILABLE: 503,
    ErrorCode.QUEUE_FULL: 503,
    ErrorCode.ENGINE_UNAVAILABLE: 503,
    ErrorCode.ENGINE_OUT_OF_MEMORY: 503,
    ErrorCode.ENGINE_TIMEOUT: 503,
    ErrorCode.DEVICE_ERROR: 503,
}


def _error(code: ErrorCode) -> TTSError:
    error = TTSError("x")
    error.code = code  # type: ignore[misc]  # an instance of each code, whatever its class
    return error


@pytest.mark.parametrize("surface", [Surface.V1, Surface.OPENAI])
@pytest.mark.parametrize("code", list(ErrorCode))
def test_each_code_has_its_status(surface: Surface, code: ErrorCode) -> None:
    status = status_for(_error(code), surface)
    if code in SERVER_SIDE:
        assert status == SERVER_SIDE[code]
    else:
        assert 400 <= status < 500, f"{code} answers {status} on {surface}"
