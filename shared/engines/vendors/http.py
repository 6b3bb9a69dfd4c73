"""One vendor's HTTP: a POST whose audio body is read as it arrives, failures typed once here.

Each engine owns one ``httpx.Client`` (its pool, its timeouts, its auth header). httpx errors are
translated into ``VendorError`` here and nowhere else, chained with ``from``. A 2xx answer is
checked for being audio before its bytes are handed on: a JSON or HTML page sent with 200 (a
proxy's error page, an API change) is refused instead of being played as noise.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from shared.engines.vendors.errors import (
    VendorError,
    VendorErrorKind,
    kind_for_status,
    redact,
    retry_after_s,
)

Clock = Callable[[], datetime]
# Enough of an error body for the vendor's message; the rest is not read.
_MAX_ERROR_BODY = 16 * 1024
# Content types that are never the audio asked for.
_NOT_AUDIO = ("json", "html", "xml", "text/")


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class VendorRequest:
    path: str
    params: Mapping[str, str]
    body: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ErrorDetail:
    """What a vendor's error body says: its own code (``too_many_concurrent_requests``), its
    message, and the kind and retryability when the code decides them."""

    code: str | None = None
    message: str | None = None
    kind: VendorErrorKind | None = None
    retryable: bool | None = None


# Reads a vendor's parsed error body (None: not JSON) for one status.
DescribeError = Callable[[int, Any], ErrorDetail]


class VendorHttp:
    def __init__(
        self,
        vendor: str,
        *,
        base_url: str,
        auth_headers: Mapping[str, str],
        connect_timeout_s: float,
        read_timeout_s: float,
        describe_error: DescribeError,
        secrets: Sequence[str],
        clock: Clock = utc_now,
    ) -> None:
        self._vendor = vendor
        self._describe = describe_error
        self._secrets = tuple(secrets)
        self._clock = clock
        # A read timeout bounds each wait for bytes, the first audio included; a write timeout
        # as long (the body is small). No redirects: an API that redirects is misconfigured.
        self._client = httpx.Client(
            base_url=base_url,
            headers=dict(auth_headers),
            timeout=httpx.Timeout(read_timeout_s, connect=connect_timeout_s),
            follow_redirects=False,
        )

    def post_audio(self, request: VendorRequest, *, text: str) -> Iterator[bytes]:
        """The answer's audio bytes as they arrive; ``VendorError`` for an error status, a
        timeout, a broken connection, a body that is not audio or is empty. ``text`` is kept
        out of every message. The request is sent at the first ``next``."""
        secrets = (*self._secrets, text)
        received = 0
        try:
            with self._client.stream(
                "POST", request.path, params=dict(request.params), json=dict(request.body)
            ) as response:
                self._check_answer(response, secrets)
                for piece in response.iter_bytes():
                    received += len(piece)
                    if piece:
                        yield piece
        except httpx.TimeoutException as exc:
            raise VendorError(
                self._vendor, VendorErrorKind.TIMEOUT, f"timed out ({type(exc).__name__})"
            ) from exc
        except httpx.TransportError as exc:
            what = f"connection failed ({type(exc).__name__})"
            raise VendorError(self._vendor, VendorErrorKind.UNREACHABLE, what) from exc
        if received == 0:
            raise VendorError(self._vendor, VendorErrorKind.BAD_AUDIO, "answered 200 with no audio")

    def close(self) -> None:
        self._client.close()

    def _check_answer(self, response: httpx.Response, secrets: Sequence[str]) -> None:
        status = response.status_code
        if 200 <= status < 300:
            content_type = response.headers.get("content-type", "").lower()
            if any(marker in content_type for marker in _NOT_AUDIO):
                raise VendorError(
                    self._vendor,
                    VendorErrorKind.BAD_AUDIO,
                    f"answered {status} with {content_type.split(';')[0]} instead of audio",
                    status=status,
                )
            return
        detail = self._describe(status, _json_or_none(_read_some(response)))
        kind = detail.kind or kind_for_status(status)
        said = [redact(part, secrets) for part in (detail.code, detail.message) if part]
        message = f"answered {status}" + (f" ({': '.join(said)})" if said else "")
        retryable = detail.retryable
        if response.headers.get("x-should-retry", "").lower() == "false":
            retryable = False  # OpenAI's way of saying a retry cannot help (a spent quota)
        raise VendorError(
            self._vendor,
            kind,
            message,
            status=status,
            retryable=retryable,
            retry_after_s=retry_after_s(response.headers, self._clock()),
        )


def _read_some(response: httpx.Response) -> bytes:
    body = b""
    for piece in response.iter_bytes():
        body += piece
        if len(body) >= _MAX_ERROR_BODY:
            break
    return body[:_MAX_ERROR_BODY]


def _json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
