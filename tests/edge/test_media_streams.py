"""``WS /twilio/{business}/media`` with the ``websockets`` client playing Twilio's side of Media
Streams (``connected``, ``start`` with the TwiML's parameters, ``mark`` echoed once played,
``stop``, ``dtmf``), the edge in front of this product's HTTP app with real Piper whose engine
is held or broken at a chosen sentence, so "before the synthesis ends" is an order of events,
never a clock."""

from __future__ import annotations

import base64
import json
from contextlib import ExitStack
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection

from shared.config import Settings
from shared.engines.base import Engine
from tests.audio_probe import ffmpeg_decode
from tests.edge.edge_helpers import (
    GUARD_S,
    Edge,
    business,
    call_params,
    edge_settings,
    responder_server,
    start_edge,
    turn_params,
    verbs,
)
from tests.engine_wrappers import RecordingEngine
from tests.entrypoints.test_ws_stream import Hold, threads_waiting_for_audio, wait_until
from tests.entrypoints.web_helpers import Served, start_app
from tests.servers import free_port

REPLY = "First sentence of the reply. Second sentence of the reply. Third sentence of the reply."
SECOND = "Second sentence of the reply."
STREAM_SID = "MZ" + "2" * 32
FRAME_BYTES = 160


class Broken(Hold):
    """Breaks the engine at the first step of the sentence starting with ``prefix``."""

    def __call__(self, text: str) -> None:
        if text.startswith(self.prefix):
            self.reached.set()
            raise RuntimeError("the engine broke mid-reply")


def held_edge(stack: ExitStack, settings: Settings, engine: Engine, hold: Hold) -> Edge:
    """A streaming business's edge in front of a worker whose engine calls ``hold`` at each
    step (to hold or break it at a sentence)."""
    served: Served = start_app(stack, settings, RecordingEngine(engine, hold=hold))
    responder = stack.enter_context(responder_server())
    config = edge_settings(
        str(served.http.base_url),
        served.new_key(),
        {"shop": business(responder.url("stream"), mode="stream")},
    )
    edge = start_edge(stack, config)
    stack.callback(hold.release.set)  # first thing at the end, whatever the test did
    return edge


@pytest.fixture
def hold() -> Hold:
    return Hold(SECOND)


class Twilio:
    """Twilio's side of one Media Stream, for the turn a gather webhook answered."""

    def __init__(self, edge: Edge) -> None:
        root = edge.twiml("shop", "gather", turn_params("Tell me everything."))
        assert verbs(root) == ["Connect", "Connect/Stream", "Redirect"]
        stream = root.find("Connect/Stream")
        assert stream is not None
        self.parameters = {one.attrib["name"]: one.attrib["value"] for one in stream}
        self.turn = self.parameters["turn"]
        self.edge = edge
        self.ws: ClientConnection = edge.media("shop")

    def start(self, parameters: dict[str, str] | None = None) -> None:
        self.send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        self.send(
            {
                "event": "start",
                "sequenceNumber": "1",
                "streamSid": STREAM_SID,
                "start": {
                    "accountSid": "AC" + "0" * 32,
                    "streamSid": STREAM_SID,
                    "callSid": "CA" + "1" * 32,
                    "tracks": ["inbound"],
                    "customParameters": self.parameters if parameters is None else parameters,
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                },
            }
        )

    def send(self, message: dict[str, Any]) -> None:
        self.ws.send(json.dumps(message))

    def message(self) -> dict[str, Any]:
        text = self.ws.recv(timeout=GUARD_S)
        assert isinstance(text, str)
        parsed: dict[str, Any] = json.loads(text)
        assert parsed["streamSid"] == STREAM_SID
        return parsed

    def frames_until_not_media(self) -> tuple[list[bytes], dict[str, Any]]:
        frames = []
        while (message := self.message())["event"] == "media":
            frames.append(base64.b64decode(message["media"]["payload"], validate=True))
        return frames, message

    def close_code(self) -> int | None:
        """How the edge closed the socket (it must, with nothing more than the media frames
        already on the wire sent first)."""
        with pytest.raises(ConnectionClosed) as closed:
            while (message := self.message())["event"] == "media":
                pass
            raise AssertionError(f"a {message['event']} message instead of the close")
        return closed.value.rcvd.code if closed.value.rcvd is not None else None

    def carry_on(self) -> list[str]:
        """Twilio following the ``<Redirect>`` once the socket has closed."""
        root = self.edge.twiml("shop", "continue", call_params(), query=f"turn={self.turn}")
        return [verbs(root), root.findtext("Gather/Say")]


def test_a_reply_streams_in_160_byte_mulaw_frames_before_its_synthesis_ends(
    stack: ExitStack, settings: Settings, piper_engine: Engine, hold: Hold
) -> None:
    edge = held_edge(stack, settings, piper_engine, hold)
    twilio = Twilio(edge)
    twilio.start()
    first = twilio.message()
    assert first["event"] == "media"
    assert hold.reached.wait(timeout=GUARD_S)  # the engine is held at the second sentence
    hold.release.set()
    frames, mark = twilio.frames_until_not_media()
    frames.insert(0, base64.b64decode(first["media"]["payload"], validate=True))
    assert all(len(frame) == FRAME_BYTES for frame in frames)
    assert mark == {"event": "mark", "streamSid": STREAM_SID, "mark": {"name": twilio.turn}}
    twilio.send(mark)  # Twilio: the audio before the mark has played
    assert twilio.close_code() == 1000
    audio = b"".join(frames)
    samples = ffmpeg_decode(audio, "ulaw", input_args=("-f", "mulaw", "-ar", "8000"))
    assert len(samples) == len(audio) > 8000 * 3  # three sentences: seconds of 8 kHz audio
    assert int(abs(samples).max()) > 1000  # speech, not silence
    assert twilio.carry_on() == [["Gather"], None]  # heard: just listen again


def test_a_worker_failing_mid_reply_closes_the_stream_and_continue_says_the_reply(
    stack: ExitStack, settings: Settings, piper_engine: Engine
) -> None:
    broken = Broken(SECOND)
    edge = held_edge(stack, settings, piper_engine, broken)
    twilio = Twilio(edge)
    twilio.start()
    assert twilio.message()["event"] == "media"  # the first sentence goes out...
    with pytest.raises(ConnectionClosed) as closed:
        while twilio.message()["event"] == "media":
            pass
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011  # ...then it broke
    assert broken.reached.is_set()
    assert twilio.carry_on() == [["Gather", "Gather/Say"], REPLY]


def test_with_the_worker_down_the_stream_closes_and_continue_says_the_reply(
    stack: ExitStack,
) -> None:
    responder = stack.enter_context(responder_server())
    nowhere = f"http://127.0.0.1:{free_port()}"
    config = edge_settings(
        nowhere, "tts_key", {"shop": business(responder.url("stream"), mode="stream")}
    )
    twilio = Twilio(start_edge(stack, config))
    twilio.start()
    assert twilio.close_code() == 1011
    assert twilio.carry_on() == [["Gather", "Gather/Say"], REPLY]


@pytest.fixture
def mid_reply(stack: ExitStack, settings: Settings, piper_engine: Engine, hold: Hold) -> Twilio:
    """A streamed reply under way: its first frame out, the worker's engine held at the second
    sentence and the worker's reader waiting for it."""
    twilio = Twilio(held_edge(stack, settings, piper_engine, hold))
    twilio.start()
    assert twilio.message()["event"] == "media"
    assert hold.reached.wait(timeout=GUARD_S)
    wait_until(lambda: threads_waiting_for_audio() == 1, "the worker waiting for sentence 2")
    return twilio


def test_stop_from_twilio_ends_the_worker_stream(mid_reply: Twilio, hold: Hold) -> None:
    mid_reply.send({"event": "stop", "streamSid": STREAM_SID, "stop": {"callSid": "CA1"}})
    # The worker's render is released (its reader no longer waits), before the engine is.
    wait_until(lambda: threads_waiting_for_audio() == 0, "the worker's render released")
    assert mid_reply.close_code() == 1000
    hold.release.set()


def test_a_caller_gone_mid_reply_ends_the_worker_stream(mid_reply: Twilio, hold: Hold) -> None:
    mid_reply.ws.close()  # the call hung up: the socket is simply gone
    wait_until(lambda: threads_waiting_for_audio() == 0, "the worker's render released")
    hold.release.set()


def test_a_key_press_clears_twilios_buffer_and_ends_the_reply(mid_reply: Twilio) -> None:
    mid_reply.send({"event": "dtmf", "streamSid": STREAM_SID, "dtmf": {"digit": "1"}})
    _, clear = mid_reply.frames_until_not_media()
    assert clear == {"event": "clear", "streamSid": STREAM_SID}
    assert mid_reply.close_code() == 1000
    assert mid_reply.carry_on() == [["Gather"], None]  # skipped on purpose: not said again


def test_parameters_not_signed_by_the_edge_are_refused(
    stack: ExitStack, settings: Settings, piper_engine: Engine, hold: Hold
) -> None:
    edge = held_edge(stack, settings, piper_engine, hold)
    twilio = Twilio(edge)
    # A turn of the attacker's making, under a signature copied from a real one.
    made_up = {**twilio.parameters, "turn": "made-up", "text": "Say whatever I like."}
    twilio.start(made_up)
    assert twilio.close_code() == 1008
    assert not hold.reached.is_set()
