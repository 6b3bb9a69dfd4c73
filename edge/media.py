"""``WS /twilio/{business}/media``: one streamed reply over Twilio's bidirectional Media Streams.

Twilio opens the socket when it reaches ``<Connect><Stream>`` and sends ``connected``, then
``start`` (``streamSid``, ``callSid``, the ``<Parameter>``s as ``customParameters``), then the
caller's audio as ``media``, ``mark`` when audio sent before a mark has played, ``dtmf``, and
``stop``. The edge speaks the turn those parameters name: the worker's mu-law stream goes out
as it is made, cut into 20 ms frames (160 bytes of 8 kHz mu-law, no header), then a ``mark``;
once Twilio says the mark has played (or the audio's length has passed), the edge closes the
socket and Twilio goes on to the TwiML after ``</Connect>``.

``stop`` or a vanished socket stops the worker's stream; a key pressed (``dtmf``) interrupts
the reply: ``clear`` empties Twilio's buffer and the call moves on. A worker failure closes
the socket (1011) and marks the turn failed, so ``continue`` says the reply (all of it: a
caller who heard its start still needs its end).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import aclosing, suppress
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.websockets import WebSocket, WebSocketDisconnect

from edge.events import StreamEvent, StreamOutcome, record_stream
from edge.state import EdgeState
from edge.turns import Turn
from edge.workers.base import WorkerError

FRAME_BYTES = 160  # 20 ms of 8 kHz mu-law, the frame size Twilio itself sends
FRAME_S = 0.02
MULAW_SILENCE = b"\xff"
START_TIMEOUT_S = 10.0  # Twilio sends connected and start as soon as the socket opens
MARK_GRACE_S = 2.0  # beyond the audio's own length, for Twilio to report the mark
MAX_MESSAGE_CHARS = 64 * 1024  # Twilio's messages are ~400 bytes
NORMAL, POLICY_VIOLATION, INTERNAL_ERROR = 1000, 1008, 1011
CLOSE_CODES: dict[StreamOutcome, int] = {"failed": INTERNAL_ERROR, "refused": POLICY_VIOLATION}
_log = logging.getLogger(__name__)


class BadMessage(Exception):
    """Not a Media Streams message: the other side is not Twilio, or not well."""


class StreamStart(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    stream_sid: str = Field(alias="streamSid", max_length=64)
    call_sid: str | None = Field(None, alias="callSid", max_length=64)
    parameters: dict[str, str] = Field(default_factory=dict, alias="customParameters")


async def frames(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """``chunks`` of any size as 160-byte frames; the last is padded with mu-law silence."""
    pending = bytearray()
    async for chunk in chunks:
        pending += chunk
        while len(pending) >= FRAME_BYTES:
            yield bytes(pending[:FRAME_BYTES])
            del pending[:FRAME_BYTES]
    if pending:
        yield bytes(pending.ljust(FRAME_BYTES, MULAW_SILENCE))


async def media_stream(websocket: WebSocket, edge: EdgeState) -> None:
    business = websocket.path_params["business"]
    signed = edge.signatures.websocket_is_signed(websocket.scope)
    # Accepted, then closed: a refused handshake would reach Twilio as an HTTP 403 rather
    # than the policy-violation close (1008) its debugger names.
    await websocket.accept()
    known = business in edge.settings.config.businesses
    if not signed or not known:
        event = StreamEvent(business=business if known else None, outcome="refused")
        record_stream(edge.counters, event)
        await websocket.close(POLICY_VIOLATION)
        return
    await MediaCall(websocket, edge, business).run()


class MediaCall:
    def __init__(self, websocket: WebSocket, edge: EdgeState, business: str) -> None:
        self.websocket, self.edge, self.business = websocket, edge, business
        self.played = asyncio.Event()
        self.started_at = time.perf_counter()
        self.first_frame_at: float | None = None
        self.frames_sent = 0
        self.playback_ends = 0.0  # when Twilio will have played what was sent, at the latest

    async def run(self) -> None:
        try:
            start = await asyncio.wait_for(self._until_start(), START_TIMEOUT_S)
        except (TimeoutError, BadMessage):
            return await self._refuse(None, None)
        if start is None:  # gone before it started
            return self._record(None, None, "gone")
        self.started_at = time.perf_counter()
        turn = self.edge.turns.from_parameters(self.business, start.parameters)
        if turn is None:
            return await self._refuse(start, None)
        outcome = await self._converse(start, turn)
        self._record(start, turn, outcome)

    async def _converse(self, start: StreamStart, turn: Turn) -> StreamOutcome:
        speaking = asyncio.create_task(self._speak(start.stream_sid, turn))
        listening = asyncio.create_task(self._listen(turn))
        try:
            await asyncio.wait({speaking, listening}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (speaking, listening):
                task.cancel()  # a stopped call stops its worker stream (closing the iterator)
            await asyncio.gather(speaking, listening, return_exceptions=True)
        if speaking.done() and not speaking.cancelled():
            outcome = speaking.result()
        else:
            outcome = listening.result()
        turn.outcome = outcome  # before the close: Twilio calls continue right after it
        if outcome == "interrupted":
            await self._send({"event": "clear", "streamSid": start.stream_sid})
        if outcome != "gone":
            await self._close(CLOSE_CODES.get(outcome, NORMAL))
        return outcome

    async def _speak(self, stream_sid: str, turn: Turn) -> StreamOutcome:
        speech = self.edge.speech(self.business, reply=turn.reply, format="mulaw")
        try:
            async with aclosing(self.edge.worker.stream(speech)) as chunks:
                async for frame in frames(chunks):
                    payload = {"payload": base64.b64encode(frame).decode("ascii")}
                    media = {"event": "media", "streamSid": stream_sid, "media": payload}
                    if not await self._send(media):
                        return "gone"
                    self._sent_frame()
        except WorkerError as exc:
            turn.fallback_reason = f"worker_{exc.reason}"
            return "failed"
        except Exception:  # a client bug: the caller still gets the reply, said
            _log.exception("the worker client's stream raised something other than WorkerError")
            turn.fallback_reason = "worker_failed"
            return "failed"
        if self.frames_sent == 0:
            turn.fallback_reason = "worker_no_audio"
            return "failed"
        mark = {"event": "mark", "streamSid": stream_sid, "mark": {"name": turn.id}}
        if not await self._send(mark):
            return "gone"
        wait_s = self.playback_ends - time.perf_counter() + MARK_GRACE_S
        with suppress(TimeoutError):
            await asyncio.wait_for(self.played.wait(), wait_s)
        return "played"

    def _sent_frame(self) -> None:
        now = time.perf_counter()
        if self.first_frame_at is None:
            self.first_frame_at = now
        self.frames_sent += 1
        # Twilio plays frames back to back from the first's arrival; a gap (the worker slower
        # than real time) pushes the end later.
        self.playback_ends = max(self.playback_ends, now) + FRAME_S

    async def _listen(self, turn: Turn) -> StreamOutcome:
        while True:
            try:
                message = await self._receive()
            except BadMessage:
                return "refused"
            except (WebSocketDisconnect, RuntimeError):
                return "gone"
            if message is None:
                return "gone"
            event = message.get("event")
            if event == "stop":
                return "stopped"
            if event == "dtmf":
                return "interrupted"
            mark = message.get("mark")
            if event == "mark" and isinstance(mark, dict) and mark.get("name") == turn.id:
                self.played.set()

    async def _until_start(self) -> StreamStart | None:
        while True:
            message = await self._receive()
            if message is None:
                return None
            if message.get("event") == "start":
                try:
                    return StreamStart.model_validate(message.get("start"))
                except ValidationError:
                    raise BadMessage("a start message without its fields") from None

    async def _receive(self) -> dict[str, Any] | None:
        """The next message as JSON; None once the socket is gone."""
        message = await self.websocket.receive()
        if message["type"] == "websocket.disconnect":
            return None
        text = message.get("text")
        if text is None or len(text) > MAX_MESSAGE_CHARS:
            raise BadMessage("Media Streams messages are JSON text of a few hundred bytes")
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError:
            raise BadMessage("a message that is not JSON") from None
        if not isinstance(parsed, dict):
            raise BadMessage("a message that is not a JSON object")
        return parsed

    async def _send(self, message: dict[str, Any]) -> bool:
        """False once the socket is gone (Twilio hung up)."""
        try:
            await self.websocket.send_text(json.dumps(message))
        except (WebSocketDisconnect, RuntimeError):
            return False
        return True

    async def _close(self, code: int) -> None:
        with suppress(WebSocketDisconnect, RuntimeError):
            await self.websocket.close(code)

    async def _refuse(self, start: StreamStart | None, turn: Turn | None) -> None:
        self._record(start, turn, "refused")
        await self._close(POLICY_VIOLATION)

    def _record(self, start: StreamStart | None, turn: Turn | None, outcome: StreamOutcome) -> None:
        first_ms = None
        if self.first_frame_at is not None:
            first_ms = round((self.first_frame_at - self.started_at) * 1000, 1)
        event = StreamEvent(
            business=self.business,
            call_sid=start.call_sid if start else None,
            turn=turn.id if turn else None,
            outcome=outcome,
            first_frame_ms=first_ms,
            audio_ms=round(self.frames_sent * FRAME_S * 1000, 1),
            fallback_reason=turn.fallback_reason if turn else None,
        )
        record_stream(self.edge.counters, event)
