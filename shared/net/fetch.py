"""GET a user's URL (a reference recording) into memory, within bounds on size and time.

Each hop, the first URL and every redirect, passes the same checks before it is contacted
(https unless plain http is allowed, every address public) and is sent to the address that was
checked (``open_pinned``); redirects are followed here, by hand, because their targets must be
checked too. The body is counted as it arrives, so an endless or mislabelled one costs at most
the bound.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx

from shared.net.errors import DestinationRefused, ResponseTooLarge, SendFailed
from shared.net.pinned import check_http_url, open_pinned
from shared.net.resolve import Resolver, system_resolver

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# The whole fetch, redirects included, may take this many per-phase timeouts: httpx bounds
# each read, not their sum, so a server sending a byte just before each read timeout could
# otherwise hold the worker for hours.
TOTAL_TIMEOUT_FACTOR = 3
# A compressed body would make the bound count compressed bytes (a small gzip can expand a
# thousandfold), so ask for none, and refuse one that comes anyway.
_HEADERS = {"Accept-Encoding": "identity"}


@dataclass(frozen=True)
class FetchedBody:
    body: bytes
    host: str  # the final URL's host, after redirects: where the bytes came from
    content_type: str | None  # as the server declared it, unchecked


def fetch_bounded(
    url: str,
    *,
    max_bytes: int,
    timeout_s: float,
    allow_http: bool = False,
    max_redirects: int = 3,
    resolve: Resolver = system_resolver,
    verify: ssl.SSLContext | bool = True,
) -> FetchedBody:
    """The body at ``url`` (a 2xx answer, at most ``max_bytes``), following at most
    ``max_redirects`` redirects.

    ``allow_http`` (local development) also allows plain http and loopback hosts, never
    private, link-local or metadata addresses. ``timeout_s`` bounds each phase (connect, TLS,
    each read); the whole fetch gets ``TOTAL_TIMEOUT_FACTOR`` times that. ``verify`` is the
    trust for https, as in ``open_pinned``.
    Raises ``DestinationRefused`` (the policy will not go there) or ``SendFailed`` (it could
    not be fetched; ``ResponseTooLarge`` for the size bound).
    """
    target = _allowed(url, allow_http=allow_http, where="the URL")
    where = f"host {target.host}"
    with _Deadline(TOTAL_TIMEOUT_FACTOR * timeout_s) as deadline:
        try:
            for redirect in range(max_redirects + 1):
                outcome = _exchange(
                    target,
                    where,
                    max_bytes=max_bytes,
                    timeout_s=timeout_s,
                    allow_loopback=allow_http,
                    resolve=resolve,
                    verify=verify,
                    deadline=deadline,
                )
                if isinstance(outcome, FetchedBody):
                    return outcome
                if redirect == max_redirects:
                    break
                try:
                    joined = str(target.join(outcome))
                except httpx.InvalidURL as exc:
                    raise DestinationRefused(
                        f"redirect {redirect + 1}: the Location is not a valid URL"
                    ) from exc
                target = _allowed(joined, allow_http=allow_http, where=f"redirect {redirect + 1}")
                where = f"redirect {redirect + 1} to host {target.host}"
        except SendFailed as err:
            if type(err) is SendFailed and deadline.expired:
                raise deadline.failure() from err  # the cut connection broke off the read
            raise
    raise SendFailed(f"{where}: more than {max_redirects} redirects")


def _allowed(url: str, *, allow_http: bool, where: str) -> httpx.URL:
    try:
        target = check_http_url(url)
    except DestinationRefused as err:
        raise DestinationRefused(f"{where}: {err.message}") from err
    if target.scheme != "https" and not allow_http:
        raise DestinationRefused(f"{where}: only https URLs are allowed")
    return target


def _exchange(
    target: httpx.URL,
    where: str,
    *,
    max_bytes: int,
    timeout_s: float,
    allow_loopback: bool,
    resolve: Resolver,
    verify: ssl.SSLContext | bool,
    deadline: _Deadline,
) -> FetchedBody | str:
    """One request: the body, or a redirect's Location (unchecked)."""
    with ExitStack() as stack:
        try:
            response = stack.enter_context(
                open_pinned(
                    "GET",
                    str(target),
                    timeout_s=timeout_s,
                    headers=_HEADERS,
                    allow_loopback=allow_loopback,
                    resolve=resolve,
                    verify=verify,
                    trace=deadline.trace,
                )
            )
        except (DestinationRefused, SendFailed) as err:
            raise type(err)(f"{where}: {err.message}") from err
        status = response.status_code
        if status in REDIRECT_STATUSES:
            location = response.headers.get("location")
            if not location:
                raise SendFailed(f"{where}: answered a redirect ({status}) without a Location")
            return location
        if not 200 <= status < 300:
            raise SendFailed(f"{where}: answered HTTP {status}")
        return FetchedBody(
            body=_read_bounded(response, where, max_bytes=max_bytes, deadline=deadline),
            host=target.host,
            content_type=response.headers.get("content-type"),
        )


def _read_bounded(
    response: httpx.Response, where: str, *, max_bytes: int, deadline: _Deadline
) -> bytes:
    declared = response.headers.get("content-length")  # h11 has checked it is one number
    if declared is not None and int(declared) > max_bytes:
        raise ResponseTooLarge(
            f"{where}: declares {declared} bytes, more than the {max_bytes} bytes allowed"
        )
    encoding = response.headers.get("content-encoding", "identity")
    if encoding.strip().lower() != "identity":
        raise SendFailed(f"{where}: sent a compressed body ({encoding}); send it uncompressed")
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in response.iter_raw():
            size += len(chunk)
            if size > max_bytes:
                raise ResponseTooLarge(f"{where}: sent more than the {max_bytes} bytes allowed")
            if deadline.expired:
                raise deadline.failure()
            chunks.append(chunk)
    except httpx.HTTPError as exc:
        raise SendFailed(f"{where}: reading the body failed: {type(exc).__name__}: {exc}") from exc
    if deadline.expired:  # a cut connection ends a body without a length as if it were complete
        raise deadline.failure()
    return b"".join(chunks)


class _Deadline:
    """The time limit of a whole fetch. A read blocks for up to its own timeout, so at the limit
    this shuts the current connection's socket down, which ends any read waiting on it."""

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._ends_at = time.monotonic() + seconds
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None
        self._timer = threading.Timer(seconds, self._cut)
        self._timer.daemon = True

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self._ends_at

    def failure(self) -> SendFailed:
        return SendFailed(f"the fetch did not finish within {self._seconds:g} s")

    def trace(self, event: str, info: dict[str, Any]) -> None:
        """httpcore's trace hook: keeps each new connection's socket, as a duplicate, because
        TLS takes the original's descriptor over (shutting a duplicate down ends both)."""
        if event != "connection.connect_tcp.complete":
            return
        with self._lock:
            self._release()
            self._socket = info["return_value"].get_extra_info("socket").dup()
        if self.expired:  # connected after the timer fired
            self._cut()

    def _cut(self) -> None:
        with self._lock:
            if self._socket is not None:
                with suppress(OSError):  # the peer closed it first
                    self._socket.shutdown(socket.SHUT_RDWR)

    def _release(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._timer.cancel()
        with self._lock:
            self._release()
