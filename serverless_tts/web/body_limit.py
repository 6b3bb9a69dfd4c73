"""A bound on request bodies, enforced before anything parses them.

Pure ASGI, outside FastAPI's routing: a route that parses JSON holds the whole body in memory
first (a 50 MB body took the server from 243 to 438 MB before any check could refuse it), and
no API key is needed to send one.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serverless_tts.web.errors import error_reply
from shared.errors import RequestTooLarge


class _TooLarge(Exception):
    """Raised out of ``receive`` once a streamed body passes the bound."""


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self._app = app
        self._max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self._max_bytes:
            await self._refuse(scope, receive, send)  # at the headers: not one byte is read
            return
        received = 0
        responding = False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self._max_bytes:
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
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        err = RequestTooLarge(
            f"the body has more than {self._max_bytes} bytes; send less (split long text into "
            "several jobs) or raise the server's TTS_MAX_BODY_BYTES"
        )
        # The rest of the body is never read: closing the connection is the only way to stop it.
        await error_reply(err, path=scope["path"], headers={"Connection": "close"})(
            scope, receive, send
        )


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None
