"""Check and decode the reference audio a tenant uploads to clone a voice.

A reference is checked once, when the voice is created, so every refusal names what to change.
Checks run cheapest first: the byte size before anything is parsed, the container from its own
magic bytes (file names and declared content types are never trusted), then a bounded decode, the
duration, and the level.

Decoding is FFmpeg in-process through PyAV, with the demuxer forced to the one the magic bytes
name. Letting FFmpeg probe untrusted bytes would hand them to whichever of its several hundred
demuxers scores highest, the HLS and concat playlist readers among them, which open further URLs
and files; forcing one of four audio demuxers keeps every other reader away from the bytes.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import av
import av.audio.stream
import av.container
import numpy as np
import numpy.typing as npt

from shared.audio.resample import resample
from shared.engines.base import Pcm
from shared.errors import (
    InternalError,
    ReferenceClipped,
    ReferenceSilent,
    ReferenceTooLarge,
    ReferenceTooLong,
    ReferenceTooShort,
    ReferenceUnreadable,
)
from shared.jobs import MAX_REFERENCE_BYTES

# --- limits ----------------------------------------------------------------------------------

# MAX_REFERENCE_BYTES (the job contract's, so it bounds a job before anything decodes): 30 s
# of 16-bit stereo wav at 48 kHz is 5.76 MB (24-bit: 8.64 MB), so every usable reference fits.

# XTTS needs a few seconds of one speaker for its speaker embedding and GPT conditioning (coqui
# shows 6 s clips); below 3 s the clone is poor. XTTS's get_conditioning_latents cuts every
# reference at 30 s (max_ref_length=30), so anything longer would be decoded for nothing.
MIN_DURATION_S = 3.0
MAX_DURATION_S = 30.0

# Telephone audio (8 kHz) is the poorest input still worth cloning; 192 kHz is the highest rate
# recorders write. The ceiling and MAX_CHANNELS bound decode work and memory: 30 s x 192 kHz x 2
# channels of float32 is 46 MB at most. A voice reference is a mono or stereo recording; averaging
# surround channels (LFE, rears) is not a sensible mix of one voice.
MIN_SOURCE_RATE = 8_000
MAX_SOURCE_RATE = 192_000
MAX_CHANNELS = 2

# Speech recorded for use sits at -30..-15 dBFS rms (Piper's output: -19 dBFS) with peaks 15-20 dB
# higher; a quiet room's noise floor is -60..-70 dBFS. Below -50 dBFS rms the voice is within
# 10-20 dB of that floor, so the speaker encoder would learn the room; a loudest peak below
# -40 dBFS means nothing in the file rises 20 dB above it, however long its pauses.
SILENT_RMS_DBFS = -50.0
SILENT_PEAK_DBFS = -40.0

# Clipping flattens peaks into plateaus at full scale. Lossless files keep them flat, but mp3 and
# opus ripple a decoded plateau by several percent (measured here: 0.95-1.3 of full scale), so "at
# full scale" must mean within 5 % of it to be seen through a codec. A plateau lasts several
# samples, while a clean waveform crosses its peak in one or two: only runs of CLIP_MIN_RUN or more
# count. Real speech peak-normalized to 0 dBFS puts under 0.01 % of its samples there (Piper
# speech as wav, mp3 and opus, measured); driven 12 dB into clipping it puts 2-6 %. A full-scale
# steady pure tone would count as clipped, but a voice reference is speech.
CLIP_LEVEL = 0.95
CLIP_MIN_RUN = 3
MAX_CLIPPED_FRACTION = 0.01

# Ogg and flac state their exact length (ogg: the last page's granule position; flac: STREAMINFO),
# and FFmpeg skips a damaged ogg page or flac frame without an error, so decoding more than this
# short of the stated length means the file is damaged. 10 ms is less than one lost flac frame
# (libFLAC: 1152-4608 samples, 24-96 ms at 48 kHz) or ogg page (opus/vorbis: 0.2-1 s) takes.
# (A wav or ogg cut short just reads as a shorter file: FFmpeg bounds a wav's data chunk by the
# bytes present, and an ogg's last page is whatever page came last. Its length is still checked.)
MAX_SHORTFALL_S = 0.01

# The floor for levels in dBFS, so digital silence reads -120 instead of -inf; 24-bit audio's own
# noise floor is -144 dBFS, so no real recording is reported wrongly.
_LEVEL_FLOOR = 1e-6

_FORMATS_HINT = "wav, mp3, ogg (opus or vorbis) or flac"


@dataclass(frozen=True, slots=True)
class ReferenceAudio:
    """A reference fit to clone from: ``pcm`` is float32 mono in [-1, 1] at ``sample_rate``
    (read-only), the channel average of the source resampled with soxr, as XTTS's own loader
    would make it. Levels are of ``pcm``; ``clipped_fraction`` is of the source channels, since
    mixing and resampling blur the plateaus it counts."""

    pcm: Pcm
    sample_rate: int
    duration_s: float
    container: str
    codec: str
    source_rate: int
    source_channels: int
    peak_dbfs: float
    rms_dbfs: float
    clipped_fraction: float


def decode_reference(data: bytes, *, target_rate: int) -> ReferenceAudio:
    """Decode ``data`` and check it is usable to clone a voice; a ``Reference*`` error if not."""
    if target_rate <= 0:
        raise InternalError(f"target rate must be positive, got {target_rate}")
    if len(data) > MAX_REFERENCE_BYTES:
        megabytes = math.ceil(len(data) / 100_000) / 10  # rounded up: never shows <= the limit
        raise ReferenceTooLarge(
            f"reference audio is {megabytes:.1f} MB, over the 10 MB limit; send 3-30 s of "
            "speech (30 s of 16-bit stereo wav at 48 kHz is 5.8 MB; mp3, ogg or flac is smaller)"
        )
    container = sniff_container(data)
    decoded = _decode(data, container)
    channels, rate = decoded.samples.shape[0], decoded.rate
    duration_s = decoded.samples.shape[1] / rate
    if duration_s < MIN_DURATION_S:
        shown = math.floor(duration_s * 10) / 10  # rounded down: never shows >= the limit
        raise ReferenceTooShort(
            f"reference audio is {shown:.1f} s long; send at least 3 s of speech "
            "(6 s or more of one clear speaker clones best)"
        )

    clipped = clipped_fraction(decoded.samples)
    mono = decoded.samples.mean(axis=0, dtype=np.float32)
    # Resampling overshoots near full scale; XTTS clips its references to [-1, 1] the same way.
    pcm = np.clip(resample(mono, rate, target_rate), -1.0, 1.0)
    peak_dbfs = _dbfs(float(np.max(np.abs(pcm))))
    rms_dbfs = _dbfs(float(np.sqrt(np.mean(np.square(pcm, dtype=np.float64)))))
    if rms_dbfs < SILENT_RMS_DBFS or peak_dbfs < SILENT_PEAK_DBFS:
        raise ReferenceSilent(
            f"reference audio is silent or too quiet (peak {peak_dbfs:.0f} dBFS, rms "
            f"{rms_dbfs:.0f} dBFS; speech needs peaks above -40 dBFS and rms above -50 dBFS); "
            "record closer to the microphone or raise the input level"
        )
    if clipped > MAX_CLIPPED_FRACTION:
        raise ReferenceClipped(
            f"reference audio is clipped: {clipped * 100:.1f} % of its samples sit flat at full "
            "scale (at most 1 % may); record again with the input level lower, so the loudest "
            "speech stays below full scale"
        )
    pcm.flags.writeable = False
    return ReferenceAudio(
        pcm=pcm,
        sample_rate=target_rate,
        duration_s=duration_s,
        container=container,
        codec=decoded.codec,
        source_rate=rate,
        source_channels=channels,
        peak_dbfs=peak_dbfs,
        rms_dbfs=rms_dbfs,
        clipped_fraction=clipped,
    )


def _dbfs(level: float) -> float:
    return 20.0 * math.log10(max(level, _LEVEL_FLOOR))


def clipped_fraction(samples: npt.NDArray[np.float32]) -> float:
    """Share of ``samples`` (channels x n) in runs of ``CLIP_MIN_RUN`` or more consecutive samples
    at or above ``CLIP_LEVEL`` of full scale, each channel on its own."""
    if samples.size == 0:
        return 0.0
    hot = np.abs(samples) >= CLIP_LEVEL
    # A False on both sides of each channel: every run gets a start and an end, and runs never
    # join across channels once the rows are laid end to end.
    edges = np.diff(np.pad(hot, ((0, 0), (1, 1))).ravel().astype(np.int8))
    lengths = np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)
    return float(lengths[lengths >= CLIP_MIN_RUN].sum() / samples.size)


# --- what the bytes are ----------------------------------------------------------------------

# Layer III bitrates in kbps by bitrate index (0: free format, 15: invalid; both refused).
_MP3_KBPS = {
    "mpeg1": (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    "mpeg2": (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
# Sample rates by the header's version bits (3: MPEG-1, 2: MPEG-2, 0: MPEG-2.5; 1 is reserved).
_MP3_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


def _mp3_frame_bytes(header: bytes) -> int | None:
    """Length of the MPEG audio layer III frame that ``header`` (4 bytes) starts, None if the
    bytes are not such a header."""
    if len(header) < 4 or header[0] != 0xFF or header[1] & 0xE0 != 0xE0:
        return None
    version = (header[1] >> 3) & 0b11
    layer = (header[1] >> 1) & 0b11  # 0b01 is layer III
    bitrate_index = header[2] >> 4
    rate_index = (header[2] >> 2) & 0b11
    if version == 1 or layer != 0b01 or bitrate_index in (0, 15) or rate_index == 3:
        return None
    kbps = _MP3_KBPS["mpeg1" if version == 3 else "mpeg2"][bitrate_index]
    padding = (header[2] >> 1) & 1
    # 1152 samples per MPEG-1 frame, 576 per MPEG-2/2.5 frame: bytes = samples / 8 * bps / rate.
    return (144 if version == 3 else 72) * kbps * 1000 // _MP3_RATES[version][rate_index] + padding


def _after_id3v2(data: bytes) -> int:
    """Offset past any ID3v2 tags at the start (mp3 files, and some flac files, carry one)."""
    offset = 0
    while data[offset : offset + 3] == b"ID3" and len(data) >= offset + 10:
        size = data[offset + 6 : offset + 10]
        if any(byte & 0x80 for byte in size):  # not "syncsafe": not a tag
            break
        body = (size[0] << 21) | (size[1] << 14) | (size[2] << 7) | size[3]
        footer = 10 if data[offset + 5] & 0x10 else 0
        offset += 10 + body + footer
    return offset


def sniff_container(data: bytes) -> str:
    """The FFmpeg demuxer for ``data`` (wav, ogg, flac or mp3), from its magic bytes alone."""
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "wav"
    if data[:4] == b"OggS":
        return "ogg"
    start = _after_id3v2(data)
    if data[start : start + 4] == b"fLaC":
        return "flac"
    # One frame sync is two bytes that random data matches 1 time in ~30,000: ask for two valid
    # frame headers back to back, as FFmpeg's own mp3 probe does.
    first = _mp3_frame_bytes(data[start : start + 4])
    if first is not None and _mp3_frame_bytes(data[start + first : start + first + 4]):
        return "mp3"
    raise ReferenceUnreadable(
        f"reference audio is not a {_FORMATS_HINT} file; export the recording as one of those"
    )


# --- decoding --------------------------------------------------------------------------------

# FFmpeg decoder names per container, and the codec name reported for each. wav must hold PCM
# (any pcm_* decoder); a compressed codec in a wav wrapper is refused rather than widening the
# set of decoders that touch untrusted bytes.
_CODECS: dict[str, dict[str, str]] = {
    "mp3": {"mp3float": "mp3", "mp3": "mp3"},
    "ogg": {"opus": "opus", "libopus": "opus", "vorbis": "vorbis", "libvorbis": "vorbis"},
    "flac": {"flac": "flac"},
}
_CODEC_ADVICE = {
    "wav": "a wav reference must hold PCM samples; export it as 16-bit PCM wav, or send mp3, "
    "ogg/opus or flac",
    "ogg": "an ogg reference must hold opus or vorbis audio; export it as ogg/opus, or send wav, "
    "mp3 or flac",
}


@dataclass(frozen=True, slots=True)
class _Decoded:
    samples: npt.NDArray[np.float32]  # channels x n, at the source rate
    rate: int
    codec: str


def _codec_of(container: str, stream: av.audio.stream.AudioStream) -> str:
    decoder = stream.codec_context.name if stream.codec_context is not None else ""
    if container == "wav" and decoder.startswith("pcm_"):
        return decoder
    codec = _CODECS.get(container, {}).get(decoder)
    if codec is None:
        fallback = f"reference audio's codec is not one we decode; send {_FORMATS_HINT}"
        raise ReferenceUnreadable(_CODEC_ADVICE.get(container, fallback))
    return codec


def _decode(data: bytes, container: str) -> _Decoded:
    try:
        # metadata_errors: a tag in a broken text encoding must not fail (or leak into) a decode.
        box = av.open(io.BytesIO(data), mode="r", format=container, metadata_errors="ignore")
    except av.FFmpegError as exc:
        raise ReferenceUnreadable(
            f"reference audio starts like {container} but cannot be read as it; export it "
            f"again as {_FORMATS_HINT}"
        ) from exc
    with box:
        if not box.streams.audio:
            raise ReferenceUnreadable(
                f"reference file holds no audio stream; send a recording as {_FORMATS_HINT}"
            )
        stream = box.streams.audio[0]
        codec = _codec_of(container, stream)
        samples, rate = _decode_stream(box, stream)
    if not np.isfinite(samples).all():
        raise ReferenceUnreadable(
            "reference audio holds invalid (NaN or infinite) samples; export it again as "
            "16-bit PCM wav"
        )
    declared_s = _declared_duration_s(container, stream)
    decoded_s = samples.shape[1] / rate
    if declared_s is not None and decoded_s < declared_s - MAX_SHORTFALL_S:
        raise ReferenceUnreadable(
            f"reference audio ends at {decoded_s:.1f} s but its header says {declared_s:.1f} s: "
            "the file is damaged or cut short; export or upload it again"
        )
    return _Decoded(samples=samples, rate=rate, codec=codec)


def _decode_stream(
    box: av.container.InputContainer, stream: av.audio.stream.AudioStream
) -> tuple[npt.NDArray[np.float32], int]:
    """Planar float samples of ``stream`` and their rate; stops once past ``MAX_DURATION_S``."""
    to_float = av.AudioResampler(format="fltp")  # sample format only: rate and layout kept
    chunks: list[npt.NDArray[np.float32]] = []
    rate = channels = 0
    decoded = 0
    try:
        for packet in box.demux(stream):
            for frame in packet.decode():
                if not rate:
                    rate, channels = frame.sample_rate, frame.layout.nb_channels
                    _check_shape(rate, channels)
                elif (frame.sample_rate, frame.layout.nb_channels) != (rate, channels):
                    raise ReferenceUnreadable(
                        "reference audio changes its sample rate or channels part way; "
                        "export it again as one continuous recording"
                    )
                chunks.extend(f.to_ndarray() for f in to_float.resample(frame))
                decoded += frame.samples
                if decoded > MAX_DURATION_S * rate:
                    raise ReferenceTooLong(
                        "reference audio runs past 30 s; trim it to 3-30 s of speech "
                        "(XTTS uses at most the first 30 s)",
                        decoded_s=decoded / rate,
                    )
        chunks.extend(f.to_ndarray() for f in to_float.resample(None))
    except av.FFmpegError as exc:
        where = f"past {decoded / rate:.1f} s" if rate else "at all"
        raise ReferenceUnreadable(
            f"reference audio could not be decoded {where}: the file is damaged or cut short; "
            "export or upload it again"
        ) from exc
    if not chunks:
        raise ReferenceUnreadable(
            f"reference audio holds no samples; send 3-30 s of speech as {_FORMATS_HINT}"
        )
    return np.concatenate(chunks, axis=1).astype(np.float32, copy=False), rate


def _check_shape(rate: int, channels: int) -> None:
    if not MIN_SOURCE_RATE <= rate <= MAX_SOURCE_RATE:
        raise ReferenceUnreadable(
            f"reference audio is sampled at {rate} Hz; send audio sampled at 8,000 to "
            "192,000 Hz (16,000 Hz or more clones best)"
        )
    if not 1 <= channels <= MAX_CHANNELS:
        raise ReferenceUnreadable(
            f"reference audio has {channels} channels; send a mono or stereo recording"
        )


def _declared_duration_s(container: str, stream: av.audio.stream.AudioStream) -> float | None:
    """The length an ogg or flac file states exactly, in seconds of decoded audio; None for the
    others (an mp3 without a Xing tag only estimates) or a flac written as a stream (states 0)."""
    if container not in ("ogg", "flac") or stream.duration is None or stream.time_base is None:
        return None
    declared = float(stream.duration * stream.time_base)
    extradata = stream.codec_context.extradata or b""
    if extradata[:8] == b"OpusHead":
        # RFC 7845 5.1: the granule positions count the encoder's pre-skip (bytes 10-11, samples
        # at 48 kHz), which the decoder drops from its output.
        declared -= int.from_bytes(extradata[10:12], "little") / 48_000
    return declared
