"""``WS /v1/stream`` over a real WebSocket (the ``websockets`` client) against the app under
uvicorn on loopback, with real Piper speech (and the tiny XTTS once)."""

from __future__ import annotations

import json
import logging
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from shared.config import Settings
from shared.engines.base import Engine
from shared.engines.runner import EngineRunner
from shared.telemetry import JOB_LOGGER
from shared.tenants.base import UNLIMITED, TenantLimits
from tests.audio_probe import audio_stream, ffprobe_json, probe_duration_s
from tests.engine_wrappers import RecordingEngine
from tests.entrypoints.web_helpers import Served, job_events, start_app
from tests.worker_fixtures import usage_rows

# Guards against a hang, never a measure: a reply that never comes fails the test.
RECV_TIMEOUT_S = 120
MAX_FRAME_BYTES = 32 * 1024
ALPHA = " ".join(f"Alpha sentence number {n}." for n in range(12))


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    with ExitStack() as stack:
        yield stack


@pytest.fixture
def served(stack: ExitStack, settings: Settings, piper_engine: Engine) -> Served:
    return start_app(stack, settings, piper_engine)


@pytest.fixture
def key(served: Served) -> str:
    return served.new_key()


class Hold:
    """Holds the engine once, at the first step of the sentence starting with ``prefix``, until
    the test releases it (``reached``: the engine is really held there)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.reached = threading.Event()
        self.release = threading.Event()

    def __call__(self, text: str) -> None:
        if text.startswith(self.prefix) and not self.reached.is_set():
            self.reached.set()
            assert self.release.wait(timeout=60), "the test never released the engine"


def held_app(
    stack: ExitStack, settings: Settings, piper_engine: Engine, prefix: str
) -> tuple[Served, RecordingEngine, Hold]:
    hold = Hold(prefix)
    recording = RecordingEngine(piper_engine, hold=hold)
    served = start_app(stack, settings, recording)
    stack.callback(hold.release.set)  # before the app stops, whatever the test did
    return served, recording, hold


@dataclass
class Spoken:
    start: dict[str, Any]
    frames: list[bytes]
    end: dict[str, Any]

    @property
    def audio(self) -> bytes:
        return b"".join(self.frames)


class Client:
    """A connection that keeps everything the server sent, to search it for the key."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.received: list[str | bytes] = []

    def send(self, message: dict[str, Any] | str | bytes) -> None:
        self.ws.send(json.dumps(message) if isinstance(message, dict) else message)

    def recv(self) -> str | bytes:
        message = self.ws.recv(timeout=RECV_TIMEOUT_S)
        self.received.append(message)
        return message

    def message(self) -> dict[str, Any]:
        """The next message, which must be JSON (``frames_then`` reads past binary frames)."""
        message = self.recv()
        assert isinstance(message, str), "expected a JSON message, got a binary frame"
        return json.loads(message)

    def frames_then(self) -> tuple[list[bytes], dict[str, Any]]:
        """Binary frames up to the next JSON message, and that message."""
        frames = []
        while isinstance(message := self.recv(), bytes):
            frames.append(message)
        return frames, json.loads(message)

    def speak(self, job: dict[str, Any] | str) -> Spoken:
        self.send(job)
        start = self.message()
        assert start["type"] == "start", start
        frames, end = self.frames_then()
        return Spoken(start, frames, end)

    def refusal(self) -> tuple[dict[str, Any], int, str]:
        """The error message that comes before the server closes, the close code and reason."""
        error = self.message()
        with pytest.raises(ConnectionClosed) as closed:
            self.recv()
        assert closed.value.rcvd is not None
        return error, closed.value.rcvd.code, closed.value.rcvd.reason

    def leaks(self, secret: str) -> bool:
        needle = secret.encode()
        return any(needle in (m.encode() if isinstance(m, str) else m) for m in self.received)


def open_client(stack: ExitStack, served: Served, key: str | None = None) -> Client:
    url = str(served.http.base_url).rstrip("/").replace("http://", "ws://", 1) + "/v1/stream"
    headers = {"Authorization": f"Bearer {key}"} if key is not None else None
    return Client(stack.enter_context(connect(url, additional_headers=headers, open_timeout=30)))


def threads_waiting_for_audio() -> int:
    """Threads blocked in the engine runner, waiting for a render's next chunk."""
    take = EngineRunner._take.__code__
    count = 0
    for frame in sys._current_frames().values():
        while frame is not None:
            if frame.f_code is take:
                count += 1
                break
            frame = frame.f_back
    return count


def wait_until(condition: Any, what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.01)


# --- speaking ----------------------------------------------------------------------------------


# format: (content type, ffprobe's codec, or None for headerless audio)
FORMATS = {
    "wav": ("audio/wav", "pcm_s16le"),
    "mp3": ("audio/mpeg", "mp3"),
    "ogg_opus": ("audio/ogg", "opus"),
    "voice_note": ("audio/ogg", "opus"),
    "aac": ("audio/aac", "aac"),
    "pcm16": ("audio/pcm", None),
    "mulaw": ("audio/x-mulaw", None),
}
BYTES_PER_SAMPLE = {"pcm16": 2, "mulaw": 1}


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_a_header_key_streams_start_frames_and_done_as_a_playable_file(
    stack: ExitStack, served: Served, key: str, fmt: str
) -> None:
    client = open_client(stack, served, key)
    spoken = client.speak({"text": "Hello over a socket. Here is more.", "format": fmt})
    start, end, audio = spoken.start, spoken.end, spoken.audio
    content_type, codec = FORMATS[fmt]
    assert start["format"] == fmt and start["content_type"] == content_type
    assert start["engine"] == "piper"
    assert end["type"] == "done" and end["request_id"] == start["request_id"]
    assert end["bytes"] == len(audio) and end["sample_rate"] == start["sample_rate"]
    assert spoken.frames and all(0 < len(frame) <= MAX_FRAME_BYTES for frame in spoken.frames)
    if codec is None:  # headerless: its length is its duration
        samples = len(audio) / BYTES_PER_SAMPLE[fmt]
        assert samples == int(samples)
        assert abs(samples / start["sample_rate"] - end["duration_s"]) < 0.01
    else:
        probe = ffprobe_json(audio, {"ogg_opus": "ogg", "voice_note": "ogg"}.get(fmt, fmt))
        assert audio_stream(probe)["codec_name"] == codec
        assert abs(probe_duration_s(probe) - end["duration_s"]) < 0.1
    assert not client.leaks(key)
    [row] = usage_rows(served.ctx)
    assert row["request_id"] == start["request_id"] and row["error_code"] is None
    assert row["delivery"] == "stream" and row["streaming"] == 1


def test_a_key_in_the_first_message_holds_for_the_connection(
    stack: ExitStack, served: Served, key: str
) -> None:
    client = open_client(stack, served)
    client.send({"type": "cancel"})  # nothing runs yet: ignored, the connection stays
    turns = [
        {"api_key": key, "text": "First turn.", "format": "pcm16", "request_id": "turn-1"},
        {"text": "Second turn, no key.", "format": "pcm16", "request_id": "turn-2"},
        {"api_key": key, "text": "Third, same key.", "request_id": "turn-3", "type": "synthesize"},
    ]
    for turn in turns:
        spoken = client.speak(turn)
        assert spoken.end["type"] == "done" and spoken.end["request_id"] == turn["request_id"]
        assert spoken.audio and len(spoken.audio) == spoken.end["bytes"]
    other = served.ctx.tenants.create_tenant("globex", UNLIMITED).api_key
    client.send({"api_key": other, "text": "Another tenant's key."})
    error, code, reason = client.refusal()
    assert error["error"]["code"] == "invalid_input" and "one key" in error["error"]["message"]
    assert (code, reason) == (4400, "invalid_input")
    assert not client.leaks(key) and not client.leaks(other)
    assert [row["request_id"] for row in usage_rows(served.ctx)] == ["turn-1", "turn-2", "turn-3"]


def test_frames_arrive_before_later_sentences_are_rendered(
    stack: ExitStack, settings: Settings, piper_engine: Engine
) -> None:
    """Causal: the engine may not begin the third sentence until the client has the first
    frame, so a server that waited for the whole text would never send it."""
    served, recording, hold = held_app(stack, settings, piper_engine, "Alpha sentence number 2.")
    client = open_client(stack, served, served.new_key())
    client.send({"text": ALPHA, "format": "pcm16"})
    assert client.message()["type"] == "start"
    first = client.recv()
    assert isinstance(first, bytes) and first
    spoken = {text for kind, text in recording.events if kind == "end"}
    assert not any(text.startswith("Alpha sentence number 2.") for text in spoken)
    hold.release.set()
    frames, end = client.frames_then()
    assert end["type"] == "done" and end["bytes"] == len(first) + sum(map(len, frames))
    assert hold.reached.is_set()


def test_xtts_streams_over_the_socket(
    stack: ExitStack, settings: Settings, xtts_engine: Engine
) -> None:
    served = start_app(stack, settings, xtts_engine)
    client = open_client(stack, served, served.new_key())
    spoken = client.speak({"text": "The tiny model speaks.", "format": "wav"})
    assert spoken.start["engine"] == "xtts" and spoken.start["sample_rate"] == 24000
    assert spoken.end["type"] == "done" and spoken.end["bytes"] == len(spoken.audio)
    stream = audio_stream(ffprobe_json(spoken.audio, "wav"))
    assert stream["codec_name"] == "pcm_s16le" and int(stream["sample_rate"]) == 24000


# --- cancelling --------------------------------------------------------------------------------


def test_cancel_stops_the_render_and_the_engine_serves_the_next_jobs(
    stack: ExitStack,
    settings: Settings,
    piper_engine: Engine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    served, recording, hold = held_app(stack, settings, piper_engine, "Alpha sentence number 2.")
    key = served.new_key()
    client = open_client(stack, served, key)
    with caplog.at_level(logging.INFO, logger=JOB_LOGGER):
        client.send({"text": ALPHA, "format": "mp3", "request_id": "first"})
        assert client.message()["type"] == "start"
        assert hold.reached.wait(timeout=60)  # the engine is mid-render, on sentence 2
        client.send({"type": "cancel"})
        _, answer = client.frames_then()  # frames already on the wire may come first
        assert answer == {"type": "cancelled", "request_id": "first"}
        hold.release.set()
        again = client.speak({"text": "Same connection.", "request_id": "second"})
        other = open_client(stack, served, key).speak({"text": "Other.", "request_id": "third"})
    assert again.end["type"] == "done" and other.end["type"] == "done"
    began = {text for kind, text in recording.events if kind == "begin"}
    assert "Alpha sentence number 3." not in began  # the render stopped, it did not run on
    assert served.ctx.engines.default.active == 0
    rows = usage_rows(served.ctx)
    assert [(row["request_id"], row["error_code"]) for row in rows] == [
        ("first", "cancelled"),
        ("second", None),
        ("third", None),
    ]
    events = [json.loads(line) for line in job_events(caplog)]
    assert [(e["request_id"], e["success"], e.get("error_code")) for e in events] == [
        ("first", False, "cancelled"),
        ("second", True, None),
        ("third", True, None),
    ]


def test_a_client_that_vanishes_mid_stream_frees_its_thread_and_the_engine(
    stack: ExitStack, settings: Settings, piper_engine: Engine
) -> None:
    served, recording, hold = held_app(stack, settings, piper_engine, "Alpha sentence number 2.")
    key = served.new_key()
    gone = open_client(stack, served, key)
    gone.send({"text": ALPHA, "format": "pcm16", "request_id": "gone"})
    assert gone.message()["type"] == "start"
    assert hold.reached.wait(timeout=60)
    # Sentences 0 and 1 are made; the server's reader now waits on a thread for sentence 2.
    wait_until(lambda: threads_waiting_for_audio() == 1, "a thread waiting for audio")
    gone.ws.socket.shutdown(socket.SHUT_RDWR)  # no close frame: the client just vanishes
    gone.ws.socket.close()
    wait_until(lambda: threads_waiting_for_audio() == 0, "the waiting thread released")
    hold.release.set()
    after = open_client(stack, served, key).speak({"text": "Still here.", "request_id": "next"})
    assert after.end["type"] == "done"
    began = {text for kind, text in recording.events if kind == "begin"}
    assert "Alpha sentence number 3." not in began
    rows = usage_rows(served.ctx)
    assert [(row["request_id"], row["error_code"]) for row in rows] == [
        ("gone", "cancelled"),
        ("next", None),
    ]


def test_a_second_job_while_one_runs_is_refused_and_the_first_goes_on(
    stack: ExitStack, settings: Settings, piper_engine: Engine
) -> None:
    served, _, hold = held_app(stack, settings, piper_engine, "Alpha sentence number 2.")
    client = open_client(stack, served, served.new_key())
    client.send({"text": ALPHA, "format": "pcm16", "request_id": "running"})
    assert client.message()["type"] == "start"
    assert hold.reached.wait(timeout=60)
    client.send({"text": "Me too.", "request_id": "eager"})
    before, refused = client.frames_then()
    assert refused["type"] == "error" and refused["error"]["code"] == "conflict"
    hold.release.set()
    after, end = client.frames_then()
    assert end["type"] == "done" and end["request_id"] == "running"
    assert end["bytes"] == sum(map(len, before + after))
    assert client.speak({"text": "Now my turn.", "request_id": "eager"}).end["type"] == "done"


# --- refusals ----------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["nowhere", "wrong header", "wrong api_key"])
def test_no_key_or_a_wrong_key_is_refused_before_any_frame(
    stack: ExitStack, served: Served, where: str
) -> None:
    wrong = "stts_wrongkey_0123456789"
    client = open_client(stack, served, wrong if where == "wrong header" else None)
    if where != "wrong header":  # a header key is checked at connect: nothing needs sending
        job: dict[str, Any] = {"text": "Let me in."}
        if where == "wrong api_key":
            job["api_key"] = wrong
        client.send(job)
    error, code, reason = client.refusal()
    assert error == {"type": "error", "error": error["error"]}
    assert error["error"]["code"] == "unauthorized"
    assert (code, reason) == (4401, "unauthorized")
    assert not any(isinstance(message, bytes) for message in client.received)
    assert not client.leaks(wrong)
    assert usage_rows(served.ctx) == []


@pytest.mark.parametrize(
    ("message", "header", "code", "error_code"),
    [
        pytest.param('{"api_key": "KEY", "text": ', False, 4400, "invalid_input", id="bad JSON"),
        pytest.param('["KEY"]', True, 4400, "invalid_input", id="not an object"),
        pytest.param({"text": "Fast.", "speed": 5}, True, 4400, "invalid_input", id="speed"),
        pytest.param(
            {"text": "Hi", "ssml": "<speak>Hi</speak>"}, True, 4400, "invalid_input", id="both"
        ),
        pytest.param(
            {"text": "Whole files only.", "format": "flac"},
            True,
            4422,
            "unsupported_format",
            id="flac",
        ),
        pytest.param({"text": "A link.", "delivery": "url"}, True, 4400, "invalid_input", id="url"),
        pytest.param({"action": "voices"}, True, 4400, "invalid_input", id="voices"),
        pytest.param({"type": "dance"}, True, 4400, "invalid_input", id="unknown type"),
        pytest.param(
            {"api_key": "KEY", "text": "Two keys."}, True, 4400, "invalid_input", id="two keys"
        ),
        pytest.param(
            {"text": "Who?", "voice": "nobody-here"}, True, 4404, "voice_not_found", id="voice"
        ),
        pytest.param(b'{"text": "binary"}', True, 4400, "invalid_input", id="binary"),
    ],
)
def test_invalid_messages_are_refused_with_their_close_code_and_never_echo_the_key(
    stack: ExitStack,
    served: Served,
    key: str,
    message: dict[str, Any] | str | bytes,
    header: bool,
    code: int,
    error_code: str,
) -> None:
    client = open_client(stack, served, key if header else None)
    if isinstance(message, dict):
        message = json.dumps(message)
    if isinstance(message, str):
        message = message.replace("KEY", key)
    client.send(message)
    error, closed_with, reason = client.refusal()
    assert error["type"] == "error" and error["error"]["code"] == error_code
    assert (closed_with, reason) == (code, error_code)
    assert not client.leaks(key)


def test_a_message_over_the_body_bound_is_refused_before_it_is_parsed(
    stack: ExitStack, settings: Settings, piper_engine: Engine
) -> None:
    served = start_app(stack, settings.model_copy(update={"max_body_bytes": 1000}), piper_engine)
    key = served.new_key()
    not_json = "{" + "x" * 1000  # 1,001 bytes: parsed, it would be invalid_input
    multibyte = json.dumps({"text": "é" * 600}, ensure_ascii=False)  # 612 chars, 1,212 bytes
    for message in (not_json, multibyte):
        client = open_client(stack, served, key)
        client.send(message)
        error, code, reason = client.refusal()
        assert error["error"]["code"] == "request_too_large"
        assert "TTS_MAX_BODY_BYTES" in error["error"]["message"]
        assert (code, reason) == (4413, "request_too_large")
    at_bound = json.dumps({"text": "Exactly at the bound.", "format": "pcm16"})
    at_bound = at_bound[:-1] + " " * (1000 - len(at_bound)) + "}"
    assert len(at_bound.encode()) == 1000
    spoken = open_client(stack, served, key).speak(at_bound)
    assert spoken.end["type"] == "done"


def test_a_rate_limited_job_is_refused_saying_when_to_retry(
    stack: ExitStack, served: Served
) -> None:
    limits = TenantLimits(
        monthly_char_quota=None, requests_per_minute=1, requests_per_hour=None, max_voices=None
    )
    key = served.ctx.tenants.create_tenant("metered", limits).api_key
    client = open_client(stack, served, key)
    assert client.speak({"text": "One per minute.", "format": "pcm16"}).end["type"] == "done"
    client.send({"text": "Two is too many.", "format": "pcm16"})
    error, code, reason = client.refusal()
    assert error["error"]["code"] == "rate_limited"
    assert isinstance(error["error"]["retry_after_s"], int) and error["error"]["retry_after_s"] > 0
    assert (code, reason) == (4429, "rate_limited")
