"""A bound on request bodies, enforced before anything parses them.

Pure ASGI, outside FastAPI's routing: a route that parses JSON holds the whole body in memory
first (a 50 MB body took the server from 243 to 438 MB before any check could refuse it), and
no API key is needed to send one.

Every body gets ``TTS_MAX_BODY_BYTES``, except on the few routes named with a bound of their
own (a voice's reference audio needs room for 10 MB): one table, read at the headers, so no
route can widen its bound by reading past it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serverless_tts.web.errors import error_reply
from shared.errors import RequestTooLarge


@dataclass(frozen=True, slots=True)
class Bound:
    """The most bytes a body may have, and what a client over it should do instead."""

    max_bytes: int
    advice: str


# A route's method and exact path, as the ASGI scope carries them.
Route = tuple[str, str]
_DEFAULT_ADVICE = (
    "send less (split long text into several jobs) or raise the server's TTS_MAX_BODY_BYTES"
)


class _TooLarge(Exception):
    """Raised out of ``receive`` once a streamed body passes the bound."""


class BodyLimit:
    def __init__(
        self, app: ASGIApp, max_bytes: int, *, routes: Mapping[Route, Bound] | None = None
    ) -> None:
        self._app = app
        self._default = Bound(max_bytes, _DEFAULT_ADVICE)
        self._routes = dict(routes or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        bound = self._routes.get((scope["method"], scope["path"]), self._default)
        declared = _content_length(scope)
        if declared is not None and declared > bound.max_bytes:
            await _refuse(bound, scope, receive, send)  # at the headers: not one byte is read
            return
        received = 0
        responding = False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > bound.max_bytes:
                    raise _TooLarge  # chunked: no length was declared, so count as it arrives
            return message

        async def watched(message: Message) -> None:
            nonlocal responding
            responding = responding or message["type"] == "http.response.start"
            await send(message)

        try:
            await self._app(scope, counted, watched)
        except _TooLarge:
            if responding:
                raise  # a reply is under way; too late to replace it
            await _refuse(bound, scope, receive, send)


async def _refuse(bound: Bound, scope: Scope, receive: Receive, send: Send) -> None:
    err = RequestTooLarge(f"the body has more than {bound.max_bytes} bytes; {bound.advice}")
    # The rest of the body is never read: closing the connection is the only way to stop it.
    await error_reply(err, path=scope["path"], headers={"Connection": "close"})(
        scope, receive, send
    )


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None
