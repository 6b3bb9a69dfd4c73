"""A job's ``AudioStream`` as a chunked HTTP body: each chunk goes out as the engine makes it.

The body is read on a worker thread (a chunk may wait on the engine) and never holds the event
loop. The response always listens for the client going away, whatever ASGI version the server
speaks, and closes the stream at once: the render is cancelled and the engine is free for the
next job, rather than speaking to nobody until the text ends.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping
from functools import partial

import anyio
from fastapi.concurrency import run_in_threadpool
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from handlers.stream import AudioStream
from shared.errors import TTSError
from shared.jobs import AudioChunk

_log = logging.getLogger(__name__)
Frame = Callable[[AudioChunk], bytes]
ErrorFrame = Callable[[TTSError], bytes]


def raw_audio(chunk: AudioChunk) -> bytes:
    return chunk.data


class AudioStreamResponse(StreamingResponse):
    """``frame`` turns each chunk into body bytes (raw audio by default; SSE events for
    OpenAI's ``stream_format: sse``). A failure after the first byte cannot change the status
    any more: with ``error_frame`` it is sent as a last frame, otherwise the connection is cut
    before the chunked body's end, so no client takes a truncated file for a whole one."""

    def __init__(
        self,
        stream: AudioStream,
        *,
        media_type: str,
        headers: Mapping[str, str] | None = None,
        frame: Frame = raw_audio,
        error_frame: ErrorFrame | None = None,
    ) -> None:
        self._stream = stream
        self._frame = frame
        self._error_frame = error_frame
        super().__init__(self._body(), media_type=media_type, headers=headers)

    async def _body(self) -> AsyncIterator[bytes]:
        chunks = iter(self._stream)
        try:
            while True:
                try:
                    chunk = await run_in_threadpool(next, chunks, None)
                except TTSError as err:
                    if self._error_frame is None:
                        raise
                    _log.warning("stream failed after its first byte: %s", err)
                    yield self._error_frame(err)
                    return
                if chunk is None:
                    return
                data = self._frame(chunk)
                if data:
                    yield data
        finally:
            self._stream.close()

    async def listen_for_disconnect(self, receive: Receive) -> None:
        await super().listen_for_disconnect(receive)
        self._stream.close()  # thread-safe: the reader's next() returns at once

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with anyio.create_task_group() as group:

            async def then_stop(step: Callable[[], object]) -> None:
                await step()  # type: ignore[misc]
                group.cancel_scope.cancel()

            group.start_soon(then_stop, partial(self.stream_response, send))
            await then_stop(partial(self.listen_for_disconnect, receive))
