"""OpenAI's ``stream_format: "sse"``: the audio as Server-Sent Events.

Each piece of audio is a ``speech.audio.delta`` event with its bytes in base64; the end is one
``speech.audio.done`` event with usage. OpenAI counts tokens; this worker has none, so usage
counts the input's characters (``output_tokens`` is 0). A failure after the first event cannot
change the status any more, so it ends the stream as an ``error`` event in OpenAI's error shape.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from serverless_tts.web.errors import Surface, error_body
from shared.errors import TTSError
from shared.jobs import AudioChunk

MEDIA_TYPE = "text/event-stream"


def event(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def audio_delta(audio: bytes) -> bytes:
    return event({"type": "speech.audio.delta", "audio": base64.b64encode(audio).decode()})


def audio_done(input_chars: int) -> bytes:
    usage = {"input_tokens": input_chars, "output_tokens": 0, "total_tokens": input_chars}
    return event({"type": "speech.audio.done", "usage": usage})


def error_event(err: TTSError) -> bytes:
    return event({"type": "error", "error": error_body(err, Surface.OPENAI)["error"]})


def whole_file(audio: bytes, input_chars: int) -> bytes:
    """The events of audio that was made whole (a format that cannot stream)."""
    return audio_delta(audio) + audio_done(input_chars)


class SseFrames:
    """An ``AudioStreamResponse`` frame: each chunk as a delta, the last one also as done."""

    def __init__(self, input_chars: int) -> None:
        self._input_chars = input_chars

    def __call__(self, chunk: AudioChunk) -> bytes:
        frame = audio_delta(chunk.data) if chunk.data else b""
        return frame + audio_done(self._input_chars) if chunk.final else frame
