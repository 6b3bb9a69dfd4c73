"""The one error hierarchy: every failure a user can see has a stable code and a message.

Third-party errors (torch, soundfile, sqlite, boto3, httpx) are translated into these once, at the
module that talks to the library, with ``raise ... from exc`` so the cause stays in the traceback.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar


class ErrorCode(StrEnum):
    INVALID_INPUT = "invalid_input"
    INVALID_SSML = "invalid_ssml"
    TEXT_TOO_LONG = "text_too_long"
    UNSUPPORTED_FORMAT = "unsupported_format"
    UNSUPPORTED_LANGUAGE = "unsupported_language"
    VOICE_NOT_FOUND = "voice_not_found"
    UNAUTHORIZED = "unauthorized"
    QUOTA_EXCEEDED = "quota_exceeded"
    RATE_LIMITED = "rate_limited"
    AUTH_UNAVAILABLE = "auth_unavailable"
    STORAGE_UNAVAILABLE = "storage_unavailable"
    RESULT_TOO_LARGE = "result_too_large"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    REQUEST_TOO_LARGE = "request_too_large"
    QUEUE_FULL = "queue_full"
    INVALID_CONFIG = "invalid_config"
    ENGINE_UNAVAILABLE = "engine_unavailable"
    # Engine faults a worker survives (shared/engines/device_faults.py, shared/engines/runner.py),
    # and one it does not: a device error leaves the model untrusted, the worker is replaced.
    ENGINE_OUT_OF_MEMORY = "engine_out_of_memory"
    ENGINE_TIMEOUT = "engine_timeout"
    DEVICE_ERROR = "device_error"
    # Reference audio a tenant sends to clone a voice (shared/voices/reference.py).
    REFERENCE_TOO_LARGE = "reference_too_large"
    REFERENCE_UNREADABLE = "reference_unreadable"
    REFERENCE_TOO_SHORT = "reference_too_short"
    REFERENCE_TOO_LONG = "reference_too_long"
    REFERENCE_SILENT = "reference_silent"
    REFERENCE_CLIPPED = "reference_clipped"
    # A reference by URL that policy refuses to fetch, or that could not be fetched.
    REFERENCE_URL_REFUSED = "reference_url_refused"
    REFERENCE_UNREACHABLE = "reference_unreachable"
    # What the worker's engine cannot do at all (Piper cannot clone a voice).
    UNSUPPORTED_BY_ENGINE = "unsupported_by_engine"
    INTERNAL = "internal"


class TTSError(Exception):
    """Base of every user-visible failure; ``str(err)`` is ``"code: message"`` (RunPod's error).

    ``field`` names the one job field at fault, when there is one, so a surface can point at
    its own name for it (OpenAI's ``param``) without reading the message.
    """

    code: ClassVar[ErrorCode] = ErrorCode.INTERNAL

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self) -> str:
        return f"{self.code.value}: {self.message}"


class InvalidInput(TTSError):
    code = ErrorCode.INVALID_INPUT


class InvalidSSML(TTSError):
    code = ErrorCode.INVALID_SSML


class TextTooLong(TTSError):
    code = ErrorCode.TEXT_TOO_LONG


class UnsupportedFormat(TTSError):
    code = ErrorCode.UNSUPPORTED_FORMAT


class UnsupportedLanguage(TTSError):
    code = ErrorCode.UNSUPPORTED_LANGUAGE


class VoiceNotFound(TTSError):
    code = ErrorCode.VOICE_NOT_FOUND


class Unauthorized(TTSError):
    code = ErrorCode.UNAUTHORIZED


class QuotaExceeded(TTSError):
    code = ErrorCode.QUOTA_EXCEEDED


class RateLimited(TTSError):
    """Too many requests in a window; ``retry_after_s`` says when the window reopens."""

    code = ErrorCode.RATE_LIMITED

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(f"{message}; retry after {retry_after_s} s")
        self.retry_after_s = retry_after_s


class AuthUnavailable(TTSError):
    """The tenant database cannot be reached and the key is not cached: fail closed."""

    code = ErrorCode.AUTH_UNAVAILABLE


class StorageUnavailable(TTSError):
    code = ErrorCode.STORAGE_UNAVAILABLE


class ResultTooLarge(TTSError):
    code = ErrorCode.RESULT_TOO_LARGE


class NotFound(TTSError):
    code = ErrorCode.NOT_FOUND


class Conflict(TTSError):
    """The thing to create already exists (a tenant name, say)."""

    code = ErrorCode.CONFLICT


class RequestTooLarge(TTSError):
    """A request body above the configured bound, refused before it is parsed."""

    code = ErrorCode.REQUEST_TOO_LARGE


class QueueFull(TTSError):
    """The worker's job queue is at its bound; ``retry_after_s`` is a hint for clients."""

    code = ErrorCode.QUEUE_FULL

    def __init__(self, message: str, retry_after_s: int = 5) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class InvalidConfig(TTSError):
    """A setting from the environment is out of bounds; the message names the variable."""

    code = ErrorCode.INVALID_CONFIG


class EngineUnavailable(TTSError):
    code = ErrorCode.ENGINE_UNAVAILABLE


class ShuttingDown(EngineUnavailable):
    """The worker is draining before it exits: a new job belongs on another worker."""


class EngineOutOfMemory(EngineUnavailable):
    """The device ran out of memory on this job; what it held is freed and the worker serves
    on, so the same job may fit on a retry (or with a shorter text)."""

    code = ErrorCode.ENGINE_OUT_OF_MEMORY


class EngineTimeout(EngineUnavailable):
    """An engine step ran past ``TTS_ENGINE_TIMEOUT_S``: the job stopped waiting for it."""

    code = ErrorCode.ENGINE_TIMEOUT


class DeviceError(EngineUnavailable):
    """The device failed in a way that leaves the model's state untrusted (an illegal memory
    access, a device-side assert): this worker refuses the engine until it is replaced."""

    code = ErrorCode.DEVICE_ERROR


class ReferenceTooLarge(TTSError):
    """Reference audio above the byte limit, refused before any decoding."""

    code = ErrorCode.REFERENCE_TOO_LARGE


class ReferenceUnreadable(TTSError):
    """Not audio, not a supported format or codec, no audio stream, or damaged part way."""

    code = ErrorCode.REFERENCE_UNREADABLE


class ReferenceTooShort(TTSError):
    code = ErrorCode.REFERENCE_TOO_SHORT


class ReferenceTooLong(TTSError):
    """Longer than the limit; ``decoded_s`` is how much was decoded before decoding stopped."""

    code = ErrorCode.REFERENCE_TOO_LONG

    def __init__(self, message: str, decoded_s: float) -> None:
        super().__init__(message)
        self.decoded_s = decoded_s


class ReferenceSilent(TTSError):
    code = ErrorCode.REFERENCE_SILENT


class ReferenceClipped(TTSError):
    code = ErrorCode.REFERENCE_CLIPPED


class ReferenceUrlRefused(TTSError):
    """Not https (plain http only with the development setting), or a host that resolves to a
    non-public address: trying again cannot help."""

    code = ErrorCode.REFERENCE_URL_REFUSED


class ReferenceUnreachable(TTSError):
    """The reference URL's host could not be reached, timed out, redirected too often or
    answered an error status."""

    code = ErrorCode.REFERENCE_UNREACHABLE


class UnsupportedByEngine(TTSError):
    code = ErrorCode.UNSUPPORTED_BY_ENGINE


class InternalError(TTSError):
    code = ErrorCode.INTERNAL
