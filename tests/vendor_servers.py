"""Local HTTP servers that speak the vendors' documented TTS shapes (shared/FIELD_NOTES.md §9, §11).

The vendors' clouds cannot run here, so each server checks what its vendor documents about a
request (method, path, auth header and its format, query parameters, JSON fields) and answers a
scripted ``Reply``: audio sent as a chunked body in the pieces given, an error in the vendor's
own error shape, a stall. A request of the wrong shape is answered 400 and kept in
``problems``, so a test that forgets to look still fails on ``assert not server.problems``.
"""

from __future__ import annotations

import contextlib
import json
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.shared.http_receiver import Received, serving

# How long a held or stalled reply waits for the test before giving up (it never should).
_HOLD_S = 30.0


@dataclass(frozen=True)
class Reply:
    """One answer. ``pieces`` go out as separate HTTP chunks, each flushed; with ``hold``, the
    server sends the first piece and waits for the event before the rest; with ``wait``, it
    waits for that event before anything (the status line included), then answers. ``stall_after``:
    after that many pieces (0: before the status line) it sends nothing more until the test
    ends."""

    status: int = 200
    pieces: Sequence[bytes] = ()
    content_type: str = "application/octet-stream"
    headers: Mapping[str, str] = field(default_factory=dict)
    hold: threading.Event | None = None
    wait: threading.Event | None = None
    stall_after: int | None = None


@dataclass(frozen=True)
class Shape:
    """One vendor's documented request shape and error body."""

    name: str
    prefix: str  # what the base URL ends with (OpenAI's includes /v1)
    check: Callable[[Received, dict[str, list[str]], Any, str], list[str]]
    error: Callable[[str, str], bytes]


@dataclass
class VendorServer:
    shape: Shape
    key: str
    port: int = 0
    requests: list[Received] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    script: list[Reply] = field(default_factory=list)
    default: Reply = field(default_factory=Reply)
    release: threading.Event = field(default_factory=threading.Event)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.shape.prefix}"

    def reset(self) -> None:
        """Forget the last test: its requests, problems and script; free its stalled replies."""
        self.release.set()
        self.release = threading.Event()
        self.requests.clear()
        self.problems.clear()
        self.script.clear()
        self.default = Reply()

    def answer(self, *replies: Reply) -> None:
        """Answer the next requests with ``replies``, in order; then ``default``."""
        self.script.extend(replies)

    def error_reply(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> Reply:
        body = self.shape.error(code, message)
        return Reply(status, [body], "application/json", headers=dict(headers or {}))

    def wait_for_requests(self, count: int, timeout_s: float = 30.0) -> bool:
        """Whether ``count`` requests have arrived (waiting up to ``timeout_s`` for them): the
        evidence that a request reached the vendor, with no clock in the test."""
        with self.arrived:
            return self.arrived.wait_for(lambda: len(self.requests) >= count, timeout=timeout_s)

    def query(self, index: int = -1) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.requests[index].path).query)

    def route(self, index: int = -1) -> str:
        return urlsplit(self.requests[index].path).path


@contextmanager
def vendor_server(shape: Shape, key: str) -> Iterator[VendorServer]:
    state = VendorServer(shape=shape, key=key)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # chunked bodies, as the vendors send them

        def do_POST(self) -> None:
            self._answer()

        do_GET = do_POST

        def _answer(self) -> None:
            received = Received.read(self)
            problems = _check(shape, received, key)
            with lock, state.arrived:
                state.requests.append(received)
                state.problems.extend(problems)
                reply = state.script.pop(0) if state.script else state.default
                state.arrived.notify_all()
            if problems:
                reply = state.error_reply(400, "bad_request", "; ".join(problems))
            # The client may have gone (a timeout, a closed stream): nothing to tell it then.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self._send(reply)
            self.close_connection = True

        def _send(self, reply: Reply) -> None:
            if reply.wait is not None and not reply.wait.wait(_HOLD_S):
                state.problems.append("the waiting reply was released by the timeout")
            if reply.stall_after == 0:
                state.release.wait(_HOLD_S)
                return
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Connection", "close")
            self.end_headers()
            for index, piece in enumerate(reply.pieces):
                if reply.stall_after == index:
                    state.release.wait(_HOLD_S)
                    return
                self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                self.wfile.flush()
                if index == 0 and reply.hold is not None and not reply.hold.wait(_HOLD_S):
                    state.problems.append("the held piece was released by the timeout")
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = int(server.server_address[1])
    try:
        with serving(server, tls=None, sni_names=[]):
            yield state
            state.release.set()  # let stalled handlers finish before the server stops
    finally:
        state.release.set()


def _check(shape: Shape, received: Received, key: str) -> list[str]:
    if received.method != "POST":
        return [f"method {received.method}, not POST"]
    if received.headers.get("content-type", "").split(";")[0] != "application/json":
        return [f"content-type {received.headers.get('content-type')!r}, not application/json"]
    try:
        body = json.loads(received.body)
    except ValueError:
        return ["the body is not JSON"]
    if not isinstance(body, dict):
        return ["the body is not a JSON object"]
    query = parse_qs(urlsplit(received.path).query, keep_blank_values=True)
    return shape.check(received, query, body, key)


def _fields(body: dict[str, Any], required: set[str], optional: set[str]) -> list[str]:
    missing = sorted(required - body.keys())
    unknown = sorted(body.keys() - required - optional)
    return [f"missing {name}" for name in missing] + [f"unknown field {name}" for name in unknown]


def _route(received: Received, path: str, authorization: str) -> list[str]:
    problems = []
    if urlsplit(received.path).path != path:
        problems.append(f"path {received.path} is not {path}")
    if received.headers.get("authorization") != authorization:
        scheme = authorization.split()[0]
        problems.append(f"Authorization is not '{scheme} KEY'")
    return problems


def _text(body: dict[str, Any], name: str, limit: int) -> list[str]:
    text = body.get(name)
    if not isinstance(text, str) or not text.strip() or len(text) > limit:
        return [f"{name} must be 1 to {limit} characters"]
    return []


def _one(query: dict[str, list[str]], name: str, allowed: set[str]) -> list[str]:
    values = query.get(name, [])
    if len(values) != 1 or values[0] not in allowed:
        return [f"query {name}={values} is not one of {sorted(allowed)}"]
    return []


# --- ElevenLabs: POST /v1/text-to-speech/{voice_id}[/stream], xi-api-key -----------------------

ELEVENLABS_FORMATS = {"pcm_16000", "pcm_22050", "pcm_24000", "pcm_44100", "ulaw_8000"}
ELEVENLABS_VOICE_SETTINGS = {"stability", "similarity_boost", "style", "use_speaker_boost", "speed"}


def _check_elevenlabs(
    received: Received, query: dict[str, list[str]], body: Any, key: str
) -> list[str]:
    parts = urlsplit(received.path).path.split("/")
    problems = []
    if parts[:3] != ["", "v1", "text-to-speech"] or len(parts) not in (4, 5) or not parts[3]:
        problems.append(f"path {received.path} is not /v1/text-to-speech/{{voice_id}}[/stream]")
    elif len(parts) == 5 and parts[4] != "stream":
        problems.append(f"path {received.path}: only /stream may follow the voice id")
    if received.headers.get("xi-api-key") != key:
        problems.append("xi-api-key is missing or wrong")
    if "authorization" in received.headers:
        problems.append("ElevenLabs takes xi-api-key, not Authorization")
    problems += _one(query, "output_format", ELEVENLABS_FORMATS)
    problems += _fields(body, {"text", "model_id"}, {"language_code", "voice_settings"})
    problems += _text(body, "text", 40_000)  # the longest model's limit
    settings = body.get("voice_settings", {})
    if not isinstance(settings, dict) or not settings.keys() <= ELEVENLABS_VOICE_SETTINGS:
        problems.append(f"voice_settings {settings!r} has unknown fields")
    elif "speed" in settings and not 0.7 <= settings["speed"] <= 1.2:
        problems.append("voice_settings.speed must be 0.7 to 1.2")
    return problems


def _elevenlabs_error(code: str, message: str) -> bytes:
    return json.dumps({"detail": {"status": code, "message": message}}).encode()


ELEVENLABS = Shape("elevenlabs", "", _check_elevenlabs, _elevenlabs_error)

# --- OpenAI: POST /v1/audio/speech, Authorization: Bearer -------------------------------------

OPENAI_FORMATS = {"mp3", "opus", "aac", "flac", "wav", "pcm"}


def _check_openai(
    received: Received, query: dict[str, list[str]], body: Any, key: str
) -> list[str]:
    problems = _route(received, "/v1/audio/speech", f"Bearer {key}")
    if query:
        problems.append(f"unexpected query {query}")
    problems += _fields(
        body,
        {"model", "voice", "input"},
        {"response_format", "speed", "instructions", "stream_format"},
    )
    problems += _text(body, "input", 4096)
    if body.get("response_format", "mp3") not in OPENAI_FORMATS:
        problems.append(f"response_format {body.get('response_format')!r} is not a format")
    speed = body.get("speed", 1.0)
    if not isinstance(speed, int | float) or not 0.25 <= speed <= 4.0:
        problems.append("speed must be 0.25 to 4.0")
    return problems


def _openai_error(code: str, message: str) -> bytes:
    error = {"message": message, "type": "invalid_request_error", "param": None, "code": code}
    return json.dumps({"error": error}).encode()


OPENAI = Shape("openai", "/v1", _check_openai, _openai_error)

# --- Deepgram: POST /v1/speak?model&encoding&sample_rate&container, Authorization: Token -------

DEEPGRAM_ENCODINGS = {"linear16", "mulaw", "alaw", "mp3", "opus", "flac", "aac"}


def _check_deepgram(
    received: Received, query: dict[str, list[str]], body: Any, key: str
) -> list[str]:
    problems = _route(received, "/v1/speak", f"Token {key}")
    model = query.get("model", [""])
    if len(model) != 1 or not model[0].startswith("aura"):
        problems.append(f"query model={model} is not an Aura model")
    problems += _one(query, "encoding", DEEPGRAM_ENCODINGS)
    problems += _one(query, "container", {"none", "wav", "ogg"})
    problems += _one(query, "sample_rate", {"8000", "16000", "24000", "32000", "48000"})
    if query.get("encoding") == ["mulaw"] and query.get("sample_rate") != ["8000"]:
        problems.append("mulaw is 8000 Hz here")
    problems += _fields(body, {"text"}, set())
    problems += _text(body, "text", 2000)
    return problems


def _deepgram_error(code: str, message: str) -> bytes:
    error = {"err_code": code, "err_msg": message, "request_id": str(uuid.uuid4())}
    return json.dumps(error).encode()


DEEPGRAM = Shape("deepgram", "", _check_deepgram, _deepgram_error)

SHAPES: dict[str, Shape] = {shape.name: shape for shape in (ELEVENLABS, OPENAI, DEEPGRAM)}
