"""What went wrong with one call to a vendor, typed for the failover layer that decides what next.

An engine makes one attempt. Its ``VendorError`` says whether another attempt at the same vendor
may help (``retryable``) and when (``retry_after_s``, from the vendor's own headers); deciding to
retry, wait or fail over belongs to the caller. 400, 401, 403 and 422 are never retryable: the
same request would fail the same way (the vendors' SDKs never retry them either).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum

from shared.errors import EngineUnavailable

# Vendor messages are quoted in ours (they name what was wrong), kept short.
_MAX_DETAIL_CHARS = 200
_REDACTED = "[redacted]"
# A run this long shared with the text or key counts as quoting it.
_QUOTE_CHARS = 12


class VendorErrorKind(StrEnum):
    AUTH = "auth"  # 401/403: the key is wrong, revoked, out of credit or lacks a permission
    RATE_LIMITED = "rate_limited"  # 429: this account is over a limit
    OVERLOADED = "overloaded"  # 503/529, ElevenLabs' 429 system_busy: the vendor is
    SERVER = "server"  # other 5xx, 409: the vendor failed
    TIMEOUT = "timeout"  # connect or read timeout, 408
    UNREACHABLE = "unreachable"  # no connection, or it broke part way
    BAD_AUDIO = "bad_audio"  # a 200 that is not the audio asked for
    REFUSED = "refused"  # other 4xx (400, 404, 422...), 402, a spent quota: the request itself


# What each kind means for another attempt when nothing more specific is known.
_RETRYABLE = {
    VendorErrorKind.AUTH: False,
    VendorErrorKind.RATE_LIMITED: True,
    VendorErrorKind.OVERLOADED: True,
    VendorErrorKind.SERVER: True,
    VendorErrorKind.TIMEOUT: True,
    VendorErrorKind.UNREACHABLE: True,
    VendorErrorKind.BAD_AUDIO: False,
    VendorErrorKind.REFUSED: False,
}
_NEVER_RETRIED = frozenset({400, 401, 403, 422})


class VendorError(EngineUnavailable):
    """One failed call to ``vendor``; ``status`` is None when no HTTP answer came. The message
    never holds the API key or the text spoken (``redact``)."""

    def __init__(
        self,
        vendor: str,
        kind: VendorErrorKind,
        message: str,
        *,
        status: int | None = None,
        retryable: bool | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        suffix = f"; retry after {retry_after_s:g} s" if retry_after_s is not None else ""
        super().__init__(f"{vendor}: {message}{suffix}")
        self.vendor = vendor
        self.kind = kind
        self.status = status
        self.retryable = _RETRYABLE[kind] if retryable is None else retryable
        if status in _NEVER_RETRIED:
            self.retryable = False
        self.retry_after_s = retry_after_s


def kind_for_status(status: int) -> VendorErrorKind:
    """The kind an HTTP error status means when the vendor's body says nothing more."""
    if status in (401, 403):
        return VendorErrorKind.AUTH
    if status == 408:
        return VendorErrorKind.TIMEOUT
    if status == 429:
        return VendorErrorKind.RATE_LIMITED
    if status in (503, 529):
        return VendorErrorKind.OVERLOADED
    if status >= 500 or status == 409:
        return VendorErrorKind.SERVER
    return VendorErrorKind.REFUSED


def retry_after_s(headers: Mapping[str, str], now: datetime) -> float | None:
    """Seconds the vendor asks us to wait: ``retry-after-ms`` (OpenAI's), else ``Retry-After``
    as seconds or an HTTP-date (relative to ``now``); None when absent or unreadable.
    ``headers`` must look names up case-insensitively (httpx's do)."""
    millis = _finite(headers.get("retry-after-ms"))
    if millis is not None:
        return max(millis, 0.0) / 1000.0
    value = headers.get("retry-after")
    if value is None:
        return None
    seconds = _finite(value)
    if seconds is not None:
        return max(seconds, 0.0)
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - now).total_seconds(), 0.0)


def _finite(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def redact(message: str, secrets: Iterable[str]) -> str:
    """``message`` with each secret (the key, the text) kept out of it, shortened to one line.

    Vendors' error messages sometimes quote the request back, whole or in part; ours must
    never carry it, so a message sharing any ``_QUOTE_CHARS`` run with a secret is withheld.
    """
    message = message[: _MAX_DETAIL_CHARS * 4]
    for secret in secrets:
        if not secret.strip():
            continue
        message = message.replace(secret, _REDACTED)
        if _quotes(message, secret):
            return "its message quoted the request: withheld"
    line = " ".join(message.split())
    return line if len(line) <= _MAX_DETAIL_CHARS else line[: _MAX_DETAIL_CHARS - 3] + "..."


def _quotes(message: str, secret: str) -> bool:
    runs = {message[i : i + _QUOTE_CHARS] for i in range(len(message) - _QUOTE_CHARS + 1)}
    return any(secret[i : i + _QUOTE_CHARS] in runs for i in range(len(secret) - _QUOTE_CHARS + 1))
