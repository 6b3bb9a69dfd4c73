"""Speech over this product's ``WS /v1/stream``: one job per connection, its binary frames
yielded as they come.

The key goes in the upgrade's headers, so a wrong one is refused before the job is sent. The
connection is closed when the iterator is (the worker cancels the render when its client goes),
and each wait for the next message is bounded by the timeout, not the whole reply: a long reply
takes as long as it takes to make, as long as it keeps coming.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from edge.workers.base import WorkerError
from edge.workers.http_calls import retry_after_s, status_failure
from edge.workers.reasons import coded_error, plain_code
from edge.workers.retry import Retryable, deadline, with_retries

WHERE = "WS /v1/stream"
# The worker's frames are at most 32 KiB; leave room for a JSON message with a long error.
MAX_MESSAGE_BYTES = 1 << 20
# A close is a courtesy (the worker stops rendering when the socket goes): never wait long.
CLOSE_TIMEOUT_S = 2.0


class _NoDebug(logging.LoggerAdapter):  # type: ignore[type-arg]
    """websockets logs every handshake header (the Bearer key) and frame (the text) at DEBUG:
    its connections here never do, whatever the log level."""

    def isEnabledFor(self, level: int) -> bool:
        return level > logging.DEBUG and super().isEnabledFor(level)


_LOGGER = _NoDebug(logging.getLogger("websockets.client"), {})


async def stream_audio(
    url: str,
    job: dict[str, Any],
    *,
    headers: Mapping[str, str],
    timeout_s: float,
    retries: int,
) -> AsyncIterator[bytes]:
    """``job``'s audio from the WebSocket at ``url``; ``WorkerError`` on an error message, a
    silence longer than ``timeout_s`` or a close before ``done``."""
    with deadline(timeout_s, WHERE):
        ws = await with_retries(lambda: _open(url, headers), retries)
    async with ws:
        try:
            with deadline(timeout_s, WHERE):
                await ws.send(json.dumps(job))
        except ConnectionClosed as exc:
            raise _closed(exc, started=False) from exc
        started = False
        while True:
            message = await _receive(ws, timeout_s, started=started)
            if isinstance(message, bytes):
                if not started:
                    raise WorkerError("failed", f"{WHERE}: audio before the start message")
                yield message
                continue
            kind, body = _parse(message)
            if kind == "start" and not started:
                started = True
            elif kind == "done" and started:
                return
            elif kind == "error":
                error = body.get("error")
                raise coded_error(
                    plain_code(error.get("code")) if isinstance(error, dict) else None, WHERE
                )
            else:
                unexpected = plain_code(kind) or "unknown"
                raise WorkerError("failed", f"{WHERE}: an unexpected {unexpected} message")


async def _open(url: str, headers: Mapping[str, str]) -> ClientConnection:
    try:
        return await connect(
            url,
            additional_headers=dict(headers),
            open_timeout=None,  # the caller's deadline bounds it
            close_timeout=CLOSE_TIMEOUT_S,
            max_size=MAX_MESSAGE_BYTES,
            compression=None,  # encoded audio does not deflate
            logger=_LOGGER,
        )
    except InvalidStatus as exc:
        response = exc.response
        after_s = retry_after_s(response.headers.get("Retry-After"))
        raise status_failure(
            response.status_code, f"{WHERE}: HTTP {response.status_code}", after_s
        ) from exc
    except InvalidHandshake as exc:
        raise WorkerError("unavailable", f"{WHERE}: the handshake failed") from exc
    except OSError as exc:  # nothing reached the worker
        raise Retryable(WorkerError("unavailable", f"{WHERE}: cannot connect")) from exc


async def _receive(ws: ClientConnection, timeout_s: float, *, started: bool) -> str | bytes:
    try:
        with deadline(timeout_s, WHERE):
            return await ws.recv()
    except ConnectionClosed as exc:
        raise _closed(exc, started=started) from exc


def _closed(exc: ConnectionClosed, *, started: bool) -> WorkerError:
    code = exc.rcvd.code if exc.rcvd is not None else None
    if not started and code is not None and 4000 <= code < 5000 and exc.rcvd is not None:
        # A refusal whose error message was lost to the close (the worker refuses a wrong key
        # right after the upgrade, which may be before the job is even sent): the close reason
        # is the error code.
        return coded_error(plain_code(exc.rcvd.reason), WHERE)
    # After the start the job ran and was cut short; before it, the worker never answered.
    return WorkerError(
        "failed" if started else "unavailable", f"{WHERE}: closed ({code}) before done"
    )


def _parse(message: str) -> tuple[str, dict[str, Any]]:
    try:
        body = json.loads(message)
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("type"), str):
        raise WorkerError("failed", f"{WHERE}: a text message that is not a typed JSON object")
    return body["type"], body
