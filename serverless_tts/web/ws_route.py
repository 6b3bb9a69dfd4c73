"""``WS /v1/stream``: speech as binary WebSocket frames, several utterances per connection (a
phone agent speaks turn after turn without a new handshake).

The protocol is the endpoint's docstring, which ``/openapi.json`` serves as well.

The connection reads client messages all the time, beside the task that sends a job's audio,
so a cancel or a disconnect is seen while the sender waits on the engine; every wait for audio
runs on a worker thread, and closing the stream releases it at once, so no thread is left
waiting for a client that is gone.
"""

from __future__ import annotations

import hmac
import json
import logging
from contextlib import suppress
from typing import Any

import anyio
from anyio.abc import TaskGroup
from fastapi import APIRouter, WebSocket
from fastapi.concurrency import run_in_threadpool
from starlette.websockets import WebSocketDisconnect

from handlers.dispatch import authenticate, dispatch
from handlers.stream import AudioStream
from serverless_tts.web.bearer import bearer_credentials
from serverless_tts.web.ws_messages import (
    STREAM_FAILED,
    Cancel,
    JobMessage,
    cancelled_message,
    done_message,
    error_message,
    frames,
    read_message,
    refusal_code,
    start_message,
)
from shared.errors import Conflict, InvalidInput, TTSError
from shared.jobs import ApiKeyCredentials, StreamSummary
from shared.worker import WorkerContext

router = APIRouter()
_log = logging.getLogger(__name__)


@router.websocket("/v1/stream")
async def stream(websocket: WebSocket) -> None:
    """Stream speech: a JSON job in, a start message, binary audio frames and a done message out.

    - The key: ``Authorization: Bearer KEY`` on the upgrade request (checked at once, so a wrong
      key is refused before any job is sent), or ``"api_key"`` in the first job message, which
      then holds for the connection (a later job may repeat the same key, or leave it out). A key
      in both places is refused: nothing is guessed about which one was meant.
    - A job is a JSON text message with a synthesize job's speech fields: ``text`` or ``ssml``,
      ``voice``, ``language``, ``speed``, ``format`` (the streamable ones: wav, mp3, ogg_opus,
      pcm16, mulaw, aac, voice_note), ``sample_rate``, ``request_id``, ``cache``;
      ``"type": "synthesize"`` is optional, ``delivery`` is always ``stream``.
    - The server answers ``{"type": "start", format, content_type, sample_rate, voice,
      request_id, ...}`` (how to play what follows), then binary frames of audio as the engine
      makes it (each at most 32 KiB), then ``{"type": "done", duration_s, bytes, timings, ...}``.
      The connection then waits for the next job. One job at a time: a job sent while one runs
      is refused with ``{"type": "error", "error": {"code": "conflict", ...}}``, and the running
      job goes on.
    - ``{"type": "cancel"}`` stops the running job at once and frees the engine; the server
      answers ``{"type": "cancelled", "request_id": ...}`` and waits for the next job. No frame is
      sent once the cancel is read (frames already on the wire still arrive before it). A cancel
      with no job running is ignored, and one that comes after the last audio was made gets
      ``done`` instead. Closing the connection cancels the job too.
    - Any other error: ``{"type": "error", "error": {"code", "message"}}`` (``retry_after_s`` too
      for ``rate_limited`` and ``queue_full``), then the server closes the connection. Before the
      job's ``start`` the close code is 4000 + the HTTP status native v1 gives the error (4401
      unauthorized, 4400 invalid input, bad JSON or a binary message, 4403 quota, 4404 voice,
      4413 a message over ``TTS_MAX_BODY_BYTES``, 4422 unspeakable, 4429 rate limited, 4503
      unavailable, 4500 internal); after it, 1011 (the audio was cut short). The close reason is
      the error code.
    """
    await websocket.accept()
    await _Connection(websocket).serve()


class _Gone(Exception):
    """The connection is closed or the client went away: nothing more can be sent."""


class _Job:
    """The job under way; its stream exists once the dispatcher has opened it. Touched only on
    the event loop; ``AudioStream.close`` may release a worker thread waiting on the engine."""

    def __init__(self) -> None:
        self.cancelled = False
        # Set once the last chunk is sent: the audio is whole, so a cancel no longer closes the
        # stream, and the dispatcher logs the job as done, as the reply says.
        self.summary: StreamSummary | None = None
        self._stream: AudioStream | None = None

    def attach(self, stream: AudioStream) -> None:
        self._stream = stream
        if self.cancelled:  # cancelled while the dispatcher was still opening it
            stream.close()

    def cancel(self) -> None:
        if self.summary is not None:
            return
        self.cancelled = True
        if self._stream is not None:
            self._stream.close()


class _Connection:
    def __init__(self, websocket: WebSocket) -> None:
        self._ws = websocket
        self._ctx: WorkerContext = websocket.app.state.worker
        header = bearer_credentials(websocket)
        self._header = header if header.api_key is not None else None
        self._bound: ApiKeyCredentials | None = None  # the first job's key, without a header
        self._job: _Job | None = None
        self._closed = False
        self._sending = anyio.Lock()  # the reader (refusals) and the job task both send
        self._reading = anyio.CancelScope()

    async def serve(self) -> None:
        async with anyio.create_task_group() as jobs:
            with self._reading:
                try:
                    if self._header is not None:
                        await run_in_threadpool(authenticate, self._header, self._ctx)
                    await self._read(jobs)
                except TTSError as err:
                    await self._refuse(err, refusal_code(err))
                except _Gone:  # closed by the job task while a refusal of a second job waited
                    pass
            self._stop_job()  # the client left or the connection closed: free the engine

    async def _read(self, jobs: TaskGroup) -> None:
        max_bytes = self._ctx.settings.max_body_bytes
        while True:
            received = await self._ws.receive()
            if received["type"] == "websocket.disconnect":
                self._closed = True
                return
            message = read_message(received, max_bytes=max_bytes)
            if isinstance(message, Cancel):
                if self._job is not None:
                    self._job.cancel()
                continue
            if self._job is not None:
                await self._send_json(
                    error_message(
                        Conflict(
                            "a job is already running on this connection: wait for its done, "
                            'or send {"type": "cancel"} first'
                        )
                    )
                )
                continue
            credentials = self._credentials(message)
            self._job = _Job()
            jobs.start_soon(self._run, self._job, message.job, credentials)

    def _credentials(self, message: JobMessage) -> ApiKeyCredentials:
        if self._header is not None:
            if message.credentials is not None:
                raise InvalidInput(
                    "give the key once: in the Authorization header or as api_key, not both"
                )
            return self._header
        if self._bound is None:
            self._bound = message.credentials or ApiKeyCredentials.of(None)
        elif message.credentials is not None and not _same_key(message.credentials, self._bound):
            raise InvalidInput("a connection speaks for one key: the one its first job carried")
        return self._bound

    async def _run(self, job: _Job, raw: dict[str, Any], credentials: ApiKeyCredentials) -> None:
        try:
            await self._stream_job(job, raw, credentials)
        except _Gone:
            pass
        finally:
            if self._job is job:  # no await since its last message: the next job may come
                self._job = None

    async def _stream_job(
        self, job: _Job, raw: dict[str, Any], credentials: ApiKeyCredentials
    ) -> None:
        try:
            output = await run_in_threadpool(dispatch, raw, credentials, self._ctx)
        except TTSError as err:
            await self._refuse(err, refusal_code(err))
            return
        assert isinstance(output, AudioStream)  # read_message makes every job a stream
        job.attach(output)
        try:
            await self._send_json(start_message(output.info))
            summary = await self._send_audio(job, output)
        except TTSError as err:
            _log.warning("stream failed after its start: %s", err)
            await self._refuse(err, STREAM_FAILED)
            return
        finally:
            output.close()
        if summary is None:  # the stream was closed before its end
            await self._send_json(cancelled_message(output.info.request_id))
        else:
            await self._send_json(done_message(summary))

    async def _send_audio(self, job: _Job, output: AudioStream) -> StreamSummary | None:
        """Send the audio as it comes, to the stream's end (where the dispatcher logs the job);
        the summary, or None when the job was cancelled."""
        chunks = iter(output)
        # On a worker thread: the next chunk may wait on the engine.
        while (chunk := await run_in_threadpool(next, chunks, None)) is not None:
            for frame in frames(chunk.data):
                if job.cancelled:  # closed: the next chunk is None at once
                    break
                await self._send({"type": "websocket.send", "bytes": frame})
            if chunk.summary is not None and not job.cancelled:
                job.summary = chunk.summary
        return job.summary

    def _stop_job(self) -> None:
        if self._job is not None:
            self._job.cancel()

    async def _refuse(self, err: TTSError, code: int) -> None:
        """Send ``err`` and close with ``code``; the job under way, if any, is cancelled."""
        self._stop_job()
        async with self._sending:
            if not self._closed:
                self._closed = True
                with suppress(WebSocketDisconnect):
                    await self._ws.send_json(error_message(err))
                    await self._ws.close(code, reason=err.code.value)
        self._reading.cancel()

    async def _send_json(self, data: dict[str, Any]) -> None:
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
        await self._send({"type": "websocket.send", "text": text})

    async def _send(self, message: dict[str, Any]) -> None:
        async with self._sending:
            if self._closed:
                raise _Gone
            try:
                await self._ws.send(message)
            except WebSocketDisconnect:
                self._closed = True
                raise _Gone from None


def _same_key(a: ApiKeyCredentials, b: ApiKeyCredentials) -> bool:
    if a.api_key is None or b.api_key is None:
        return a.api_key is b.api_key
    return hmac.compare_digest(
        a.api_key.get_secret_value().encode(), b.api_key.get_secret_value().encode()
    )
