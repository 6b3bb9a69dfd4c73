"""From OpenAI's speech request to this worker's synthesize job, and from the job's refusals
back to the OpenAI field at fault (its ``param``).

OpenAI's model names all speak with the worker's engine; its voice names speak with the voice
``TTS_OPENAI_VOICES`` maps them to, or the engine's default; anything else is this worker's own
voice id. What the engine can do (voices, text length, formats) stays the job contract's call,
so every surface refuses alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from serverless_tts.web.errors import ParamError
from serverless_tts.web.openai_request import OpenAIFormat, SpeechBody
from shared.audio.formats import FORMAT_SPECS, AudioFormat
from shared.errors import ErrorCode, TTSError
from shared.jobs import MAX_SPEED, MIN_SPEED, Delivery

OPENAI_MODELS = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts", "gpt-4o-mini-tts-2025-12-15")
OPENAI_VOICES = frozenset(
    [
        "alloy",
        "ash",
        "ballad",
        "coral",
        "echo",
        "fable",
        "onyx",
        "nova",
        "sage",
        "shimmer",
        "verse",
        "marin",
        "cedar",
    ]
)


@dataclass(frozen=True, slots=True)
class JobFormat:
    """``sample_rate`` None: the format's own default for the engine (no needless resampling)."""

    format: AudioFormat
    sample_rate: int | None = None


JOB_FORMATS: Mapping[OpenAIFormat, JobFormat] = {
    "mp3": JobFormat(AudioFormat.MP3),
    "opus": JobFormat(AudioFormat.OGG_OPUS),  # OpenAI's opus is an Ogg file
    "aac": JobFormat(AudioFormat.AAC),
    "flac": JobFormat(AudioFormat.FLAC),
    "wav": JobFormat(AudioFormat.WAV),
    # Headerless, so clients cannot learn the rate: OpenAI's is always 24 kHz.
    "pcm": JobFormat(AudioFormat.PCM16, sample_rate=24_000),
}


def speech_job(
    body: SpeechBody, *, engines: Sequence[str], voice_map: Mapping[str, str]
) -> dict[str, Any]:
    """The raw synthesize job ``body`` asks for; ``ParamError`` for a model this worker does
    not serve or a speed OpenAI allows and the engine cannot speak."""
    if body.model not in (*OPENAI_MODELS, *engines):
        choices = ", ".join((*OPENAI_MODELS, *engines))
        raise ParamError(f"unknown model; use one of: {choices}", "model")
    if not MIN_SPEED <= body.speed <= MAX_SPEED:
        raise ParamError(
            f"speed {body.speed} is outside what this engine can speak: {MIN_SPEED}-{MAX_SPEED}",
            "speed",
        )
    output = JOB_FORMATS[body.response_format]
    job: dict[str, Any] = {
        "action": "synthesize",
        "text": body.input,
        "speed": body.speed,
        "format": output.format.value,
        "delivery": delivery_for(output.format),
    }
    voice = engine_voice(body.voice, voice_map)
    if voice is not None:
        job["voice"] = voice
    if output.sample_rate is not None:
        job["sample_rate"] = output.sample_rate
    return job


def engine_voice(voice: str, voice_map: Mapping[str, str]) -> str | None:
    """The voice id the job speaks with; None: the engine's default."""
    if voice in voice_map:
        return voice_map[voice]
    return None if voice in OPENAI_VOICES else voice


def delivery_for(job_format: AudioFormat) -> Delivery:
    """Streamed as it is made where the format allows it; a whole file otherwise (flac
    rewrites its header at the end)."""
    return "stream" if FORMAT_SPECS[job_format].streamable else "base64"


# Codes that are always about one OpenAI field, and the OpenAI field behind each job field
# the contract can refuse.
_PARAM_BY_CODE = {
    ErrorCode.TEXT_TOO_LONG: "input",
    ErrorCode.VOICE_NOT_FOUND: "voice",
    ErrorCode.UNSUPPORTED_FORMAT: "response_format",
}
_PARAM_BY_FIELD = {
    "text": "input",
    "voice": "voice",
    "format": "response_format",
    "sample_rate": "response_format",
    "speed": "speed",
}


def param_for(err: TTSError) -> str | None:
    """The OpenAI field a refusal of the job is about, if it is about one."""
    return _PARAM_BY_CODE.get(err.code) or _PARAM_BY_FIELD.get(err.field or "")
