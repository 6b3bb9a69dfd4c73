"""The headers that describe audio answered as a body (native v1, OpenAI-compatible): what made
it, and, for a whole file, how long it is, so a client needs no second request to learn either.
``X-Request-Id`` is also where the OpenAI SDK looks for a request's id."""

from __future__ import annotations

from urllib.parse import quote

from shared.audio.formats import FORMAT_SPECS
from shared.jobs import SpokenAs, SynthesisResult

# What a browser client may read of a reply (CORS hides every other header from scripts).
AUDIO_HEADERS: tuple[str, ...] = (
    "X-Request-Id",
    "X-Engine",
    "X-Voice",
    "X-Voice-Version",
    "X-Sample-Rate",
    "X-Audio-Duration-S",
    "X-Cached",
    "Content-Disposition",
    "Retry-After",
)


def stream_headers(info: SpokenAs) -> dict[str, str]:
    """Known before the first chunk: what speaks, in which format."""
    extension = FORMAT_SPECS[info.format].extension
    return {
        "X-Request-Id": info.request_id,
        "X-Engine": _header_text(info.engine),
        "X-Voice": _header_text(info.voice),
        "X-Voice-Version": _header_text(info.voice_version),
        "X-Sample-Rate": str(info.sample_rate),
        "Content-Disposition": f'inline; filename="speech.{extension}"',
    }


def file_headers(result: SynthesisResult) -> dict[str, str]:
    return {
        **stream_headers(result),
        "X-Audio-Duration-S": str(result.duration_s),
        "X-Cached": "true" if result.cached else "false",
    }


def _header_text(value: str) -> str:
    # HTTP headers carry Latin-1 at most: a voice named in another script is percent-encoded.
    return quote(value, safe=" .'-_:")
