"""Output formats: what each one is called on the wire and which sample rates it can carry.

Codec facts live here so the job contract, the encoder and the HTTP layer agree on them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from shared.errors import UnsupportedFormat


class AudioFormat(StrEnum):
    WAV = "wav"
    MP3 = "mp3"
    OGG_OPUS = "ogg_opus"
    FLAC = "flac"
    PCM16 = "pcm16"
    MULAW = "mulaw"
    AAC = "aac"
    VOICE_NOTE = "voice_note"


@dataclass(frozen=True, slots=True)
class FormatSpec:
    """``allowed_rates`` None: any rate in ``MIN_RATE..MAX_RATE``; ``fixed_rate`` overrides both."""

    content_type: str
    extension: str
    allowed_rates: frozenset[int] | None
    fixed_rate: int | None
    streamable: bool


# Rates a job may ask for; per-format limits below may narrow this further.
SUPPORTED_SAMPLE_RATES: frozenset[int] = frozenset({8000, 16000, 22050, 24000, 44100, 48000})

# Bounds for the formats that carry any rate (wav, flac, pcm16).
MIN_RATE = 8000
MAX_RATE = 48000

# G.711 mu-law as telephony (Twilio Media Streams) uses it: 8 kHz only.
MULAW_RATE = 8000

# libopus only runs at these rates; anything else must be resampled first.
OPUS_RATES: frozenset[int] = frozenset({8000, 12000, 16000, 24000, 48000})

# A WhatsApp voice note's one rate: above both engines' own (22,050 and 24,000 Hz), so no band is
# lost, and Opus codes at most 12 kHz of audio from it, which is all that speech TTS makes.
VOICE_NOTE_RATE = 24000

# MPEG-1 (32/44.1/48k), MPEG-2 (16/22.05/24k) and MPEG-2.5 (8/11.025/12k) layer III rates.
MP3_RATES: frozenset[int] = frozenset(
    {8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000}
)

# MPEG-4 audio's sampling-frequency table within MIN_RATE..MAX_RATE: FFmpeg's aac encoder opens
# at these and refuses others (e.g. 20000 or 44000 Hz) with EINVAL.
AAC_RATES: frozenset[int] = frozenset(
    {8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000}
)

FORMAT_SPECS: Mapping[AudioFormat, FormatSpec] = MappingProxyType(
    {
        AudioFormat.WAV: FormatSpec("audio/wav", "wav", None, None, streamable=True),
        AudioFormat.MP3: FormatSpec("audio/mpeg", "mp3", MP3_RATES, None, streamable=True),
        # libopus through PyAV (see voice_note.py); FFmpeg's Ogg muxer writes strictly forward.
        AudioFormat.OGG_OPUS: FormatSpec("audio/ogg", "ogg", OPUS_RATES, None, streamable=True),
        # libsndfile seeks back at close to rewrite STREAMINFO, so FLAC needs the whole file.
        AudioFormat.FLAC: FormatSpec("audio/flac", "flac", None, None, streamable=False),
        AudioFormat.PCM16: FormatSpec("audio/pcm", "pcm", None, None, streamable=True),
        AudioFormat.MULAW: FormatSpec("audio/x-mulaw", "ulaw", None, MULAW_RATE, streamable=True),
        # ADTS: every frame carries its own header, so the output is valid at each frame boundary.
        AudioFormat.AAC: FormatSpec("audio/aac", "aac", AAC_RATES, None, streamable=True),
        # A preset (see voice_note.py): one rate and bitrate. FFmpeg's Ogg muxer writes forward.
        AudioFormat.VOICE_NOTE: FormatSpec(
            "audio/ogg", "ogg", None, VOICE_NOTE_RATE, streamable=True
        ),
    }
)


def parse_format(name: str) -> AudioFormat:
    """Turn a user-supplied format name into an ``AudioFormat`` or fail with the valid choices."""
    try:
        return AudioFormat(name)
    except ValueError:
        choices = ", ".join(f.value for f in AudioFormat)
        raise UnsupportedFormat(f"unknown format {name!r}; choose one of {choices}") from None


def rate_allowed(fmt: AudioFormat, rate: int) -> bool:
    """Whether ``fmt`` can carry audio at ``rate`` Hz."""
    spec = FORMAT_SPECS[fmt]
    if spec.fixed_rate is not None:
        return rate == spec.fixed_rate
    if spec.allowed_rates is not None:
        return rate in spec.allowed_rates
    return MIN_RATE <= rate <= MAX_RATE


def check_sample_rate(fmt: AudioFormat, rate: int) -> None:
    """Raise ``UnsupportedFormat`` naming the valid rates when ``fmt`` cannot carry ``rate``."""
    if rate_allowed(fmt, rate):
        return
    spec = FORMAT_SPECS[fmt]
    if spec.fixed_rate is not None:
        valid = f"only {spec.fixed_rate} Hz"
    elif spec.allowed_rates is not None:
        valid = "one of " + ", ".join(str(r) for r in sorted(spec.allowed_rates)) + " Hz"
    else:
        valid = f"{MIN_RATE}..{MAX_RATE} Hz"
    raise UnsupportedFormat(f"{fmt.value} does not support {rate} Hz; use {valid}")


def resolve_sample_rate(fmt: AudioFormat, requested: int | None, native: int) -> int:
    """The rate to deliver ``fmt`` at: ``requested`` if the format takes it, else a default.

    The default keeps the engine's ``native`` rate when the format allows it (no resampling),
    otherwise the nearest allowed rate above it so no bandwidth is lost.
    """
    if requested is not None:
        check_sample_rate(fmt, requested)
        return requested
    spec = FORMAT_SPECS[fmt]
    if spec.fixed_rate is not None:
        return spec.fixed_rate
    if spec.allowed_rates is None:
        return min(max(native, MIN_RATE), MAX_RATE)
    if native in spec.allowed_rates:
        return native
    higher = [r for r in spec.allowed_rates if r >= native]
    return min(higher) if higher else max(spec.allowed_rates)
