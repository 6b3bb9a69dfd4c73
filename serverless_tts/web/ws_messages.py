"""The messages of ``WS /v1/stream``: what a client may send, what the server answers, and the
close code of each refusal (the protocol itself is described in ``ws_route``).

A client message is bounded before it is parsed, and its key is taken out before the job goes
anywhere, as RunPod's ``input.api_key`` is: no reply or log ever holds it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from serverless_tts.runpod_shapes import KEY_FIELD, take_credentials
from serverless_tts.web.errors import Surface, error_body, status_for
from serverless_tts.web.json_body import json_object
from shared.errors import InvalidInput, QueueFull, RateLimited, RequestTooLarge, TTSError
from shared.jobs import ApiKeyCredentials, SpokenAs, StreamSummary

# A failure once a job's "start" has gone out: its audio is cut short (RFC 6455's "internal
# error"; the error message before it says why).
STREAM_FAILED = 1011
# A refusal closes with 4000 + the status native v1 answers over HTTP (4401, 4400, 4413...).
_REFUSAL_BASE = 4000
# Binary frames are cut to this size: a cached file replays as one chunk, and clients bound a
# message (websocat's buffer is 64 KiB, the Python websockets client's max_size 1 MiB).
MAX_FRAME_BYTES = 32 * 1024


@dataclass(frozen=True, slots=True)
class Cancel:
    """``{"type": "cancel"}``: stop the job under way."""


@dataclass(frozen=True, slots=True)
class JobMessage:
    """A job to stream: ``job`` is ready for the dispatcher (no key, ``delivery: stream``);
    ``credentials`` is the key the message carried, None when it carried no ``api_key``."""

    job: dict[str, Any]
    credentials: ApiKeyCredentials | None


ClientMessage = JobMessage | Cancel


def read_message(message: dict[str, Any], *, max_bytes: int) -> ClientMessage:
    """A client's ASGI ``websocket.receive`` message as a job or a cancel; the ``TTSError`` to
    refuse it with otherwise."""
    text = message.get("text")
    if text is None:
        raise InvalidInput("send jobs as JSON text messages; binary messages are not accepted")
    # Counted in UTF-8 bytes, as a body is; the character count alone already settles most.
    if len(text) > max_bytes or len(text.encode()) > max_bytes:
        raise RequestTooLarge(
            f"the message has more than {max_bytes} bytes; send less (split long text into "
            "several jobs) or raise the server's TTS_MAX_BODY_BYTES"
        )
    parsed = json_object(
        text, what="the message", expected='a JSON object: a job, or {"type": "cancel"}'
    )
    kind = parsed.pop("type", "synthesize")
    if kind == "cancel":
        return Cancel()
    if kind != "synthesize":
        raise InvalidInput('type must be "synthesize" (the default) or "cancel"')
    if parsed.get("action", "synthesize") != "synthesize":
        raise InvalidInput("action: this route only synthesizes speech")
    if parsed.get("delivery", "stream") != "stream":
        raise InvalidInput("delivery: this route always streams; leave delivery out")
    carried = KEY_FIELD in parsed
    credentials, job = take_credentials(parsed)
    assert isinstance(job, dict)
    return JobMessage({**job, "delivery": "stream"}, credentials if carried else None)


def start_message(info: SpokenAs) -> dict[str, Any]:
    """How to play the frames that follow (format, content type, sample rate...)."""
    return {"type": "start", **info.model_dump(mode="json")}


def done_message(summary: StreamSummary) -> dict[str, Any]:
    return {"type": "done", **summary.model_dump(mode="json")}


def cancelled_message(request_id: str) -> dict[str, Any]:
    return {"type": "cancelled", "request_id": request_id}


def error_message(err: TTSError) -> dict[str, Any]:
    """Native v1's error body; a rate limit or a full queue also says when to try again."""
    body = error_body(err, Surface.V1)
    if isinstance(err, RateLimited | QueueFull):
        body["error"]["retry_after_s"] = err.retry_after_s
    return {"type": "error", **body}


def refusal_code(err: TTSError) -> int:
    """The close code for ``err`` refused before its job's start: 4000 + its v1 HTTP status."""
    return _REFUSAL_BASE + status_for(err, Surface.V1)


def frames(data: bytes) -> Iterator[bytes]:
    """``data`` in binary frames of at most ``MAX_FRAME_BYTES``."""
    for start in range(0, len(data), MAX_FRAME_BYTES):
        yield data[start : start + MAX_FRAME_BYTES]
