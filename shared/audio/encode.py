"""Turn engine PCM (float32 mono in [-1, 1]) into delivered bytes, whole-file or streamed.

Every path resamples with soxr first (the codecs' own resamplers are slower or silent about it),
then clips, because resampling overshoots near full scale and codecs wrap instead of saturating.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Protocol

import lameenc
import numpy as np
import numpy.typing as npt
import soundfile as sf

from shared.audio.aac import AdtsEncoder
from shared.audio.formats import FORMAT_SPECS, AudioFormat, check_sample_rate, parse_format
from shared.audio.pyav_encoder import PyAvEncoder
from shared.audio.resample import StreamResampler, as_pcm, resample
from shared.audio.voice_note import OggOpusEncoder, VoiceNoteEncoder
from shared.engines.base import Pcm
from shared.errors import InternalError, InvalidInput, UnsupportedFormat

Int16 = npt.NDArray[np.int16]

# --- sample conversion -----------------------------------------------------------------------


def _clean(pcm: Pcm) -> Pcm:
    """Replace NaN/inf (a diverging model can emit them) and clip to [-1, 1]."""
    return np.clip(np.nan_to_num(pcm, nan=0.0, posinf=1.0, neginf=-1.0), -1.0, 1.0)


def float_to_int16(pcm: Pcm) -> Int16:
    """Full-scale float to PCM16; scale by 32767 so +1.0 and -1.0 stay symmetric."""
    return np.rint(_clean(as_pcm(pcm)) * 32767.0).astype(np.int16)


def _build_ulaw_table() -> npt.NDArray[np.uint8]:
    """G.711 mu-law code for every int16, indexed by the sample's uint16 bit pattern.

    Same arithmetic as CPython's ``audioop.lin2ulaw`` (Sun's g711.c): drop to 14 bits, add the
    bias 33, find the segment, keep 4 mantissa bits, invert all bits.
    """
    samples = np.arange(-32768, 32768, dtype=np.int32)
    value = samples >> 2  # 14-bit linear, arithmetic shift like the C code
    negative = value < 0
    magnitude = np.where(negative, -value, value) + 33
    segment_ends = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
    # First segment whose end >= magnitude; 8 (past the table) means overload -> max code 0x7F.
    segment = np.searchsorted(segment_ends, magnitude)
    mantissa = (magnitude >> (segment + 1)) & 0xF
    code = np.where(segment >= 8, 0x7F, (segment << 4) | mantissa)
    mask = np.where(negative, 0x7F, 0xFF)
    table = np.empty(65536, dtype=np.uint8)
    table[samples.astype(np.int16).view(np.uint16)] = (code ^ mask).astype(np.uint8)
    return table


_ULAW_TABLE = _build_ulaw_table()


def int16_to_mulaw(samples: Int16) -> bytes:
    """G.711 mu-law bytes, one per sample (bit-identical to ``audioop.lin2ulaw(..., 2)``)."""
    return _ULAW_TABLE[np.ascontiguousarray(samples, dtype=np.int16).view(np.uint16)].tobytes()


def _pcm16_bytes(samples: Int16) -> bytes:
    return samples.astype("<i2", copy=False).tobytes()


# --- codec helpers ---------------------------------------------------------------------------


@contextmanager
def _codec_errors(fmt: AudioFormat) -> Iterator[None]:
    """Translate libsndfile (FLAC) and LAME failures once; rates are validated, so they are ours."""
    try:
        yield
    except (sf.SoundFileError, RuntimeError) as exc:
        raise InternalError(f"{fmt.value} encoding failed: {exc}") from exc


_WAV_HEADER = struct.Struct("<4sI4s4sIHHIIHH4sI")
WAV_HEADER_BYTES = _WAV_HEADER.size
# A RIFF size field of 0xFFFFFFFF means "unknown length": ffmpeg and libsndfile then read the
# data chunk to EOF, which is what a stream needs since its length is unknown when the header goes.
_WAV_STREAM_SIZE = 0xFFFFFFFF


def wav_header(rate: int, data_bytes: int | None) -> bytes:
    """44-byte PCM16 mono RIFF header; ``data_bytes=None`` for a stream of unknown length."""
    data_size = _WAV_STREAM_SIZE if data_bytes is None else data_bytes
    riff_size = _WAV_STREAM_SIZE if data_bytes is None else 36 + data_bytes
    block_align = 2  # 1 channel * 2 bytes
    fmt_chunk = (16, 1, 1, rate, rate * block_align, block_align, 16)  # size, PCM, mono, ..., bits
    return _WAV_HEADER.pack(b"RIFF", riff_size, b"WAVE", b"fmt ", *fmt_chunk, b"data", data_size)


def _mp3_kbps(rate: int) -> int:
    # Speech at <=16 kHz has no content above 8 kHz; 32 kbps is transparent enough there.
    return 32 if rate <= 16000 else 64


def _lame(rate: int) -> lameenc.Encoder:
    encoder = lameenc.Encoder()
    encoder.set_channels(1)
    encoder.set_bit_rate(_mp3_kbps(rate))
    encoder.set_in_sample_rate(rate)
    # Otherwise LAME silently picks the output rate from the bitrate: at 32 kbps, 24/32/44.1/48 kHz
    # input comes out at 22,050 Hz. Our bitrates avoid that today; this keeps it from coming back.
    encoder.set_out_sample_rate(rate)
    encoder.set_quality(2)  # 2 = high; ~6 ms per second of 24 kHz audio here
    return encoder


# FFmpeg's default Ogg page length is 1 s of audio, so a stream would arrive in 1 s bursts;
# 200 ms pages cost ~40 bytes of page header each (~1.6 kbps) for 5x lower latency.
_STREAM_OGG_PAGE_MS = 200.0


# --- whole-file encoding ---------------------------------------------------------------------


def _encode_wav(audio: Pcm, rate: int) -> bytes:
    data = _pcm16_bytes(float_to_int16(audio))
    return wav_header(rate, len(data)) + data


def _encode_mp3(audio: Pcm, rate: int) -> bytes:
    encoder = _lame(rate)
    # Always call encode(), even with no samples: flush() on a fresh encoder raises
    # "Not currently encoding".
    body = bytes(encoder.encode(_pcm16_bytes(float_to_int16(audio))))
    return body + bytes(encoder.flush())


def _encode_flac(audio: Pcm, rate: int) -> bytes:
    # With no samples libsndfile writes FLAC as 0 bytes, which ffmpeg rejects; one sample of
    # silence (42 us at 24 kHz) makes a valid, still "empty" file.
    audio = audio if audio.size else np.zeros(1, dtype=np.float32)
    buffer = io.BytesIO()
    with sf.SoundFile(
        buffer, mode="w", samplerate=rate, channels=1, format="FLAC", subtype="PCM_16"
    ) as out:
        out.write(audio)
    return buffer.getvalue()


def _encode_pyav(encoder: PyAvEncoder, audio: Pcm) -> bytes:
    return encoder.encode(audio) + encoder.close()


def _encode_ogg_opus(audio: Pcm, rate: int) -> bytes:
    return _encode_pyav(OggOpusEncoder(rate), audio)


def _encode_aac(audio: Pcm, rate: int) -> bytes:
    return _encode_pyav(AdtsEncoder(rate), audio)


def _encode_voice_note(audio: Pcm, rate: int) -> bytes:
    return _encode_pyav(VoiceNoteEncoder(rate), audio)


def _encode_pcm16(audio: Pcm, rate: int) -> bytes:
    return _pcm16_bytes(float_to_int16(audio))


def _encode_mulaw(audio: Pcm, rate: int) -> bytes:
    return int16_to_mulaw(float_to_int16(audio))


_WHOLE_FILE: dict[AudioFormat, Callable[[Pcm, int], bytes]] = {
    AudioFormat.WAV: _encode_wav,
    AudioFormat.MP3: _encode_mp3,
    AudioFormat.OGG_OPUS: _encode_ogg_opus,
    AudioFormat.FLAC: _encode_flac,
    AudioFormat.PCM16: _encode_pcm16,
    AudioFormat.MULAW: _encode_mulaw,
    AudioFormat.AAC: _encode_aac,
    AudioFormat.VOICE_NOTE: _encode_voice_note,
}


def encode(pcm: Pcm, *, in_rate: int, fmt: AudioFormat, out_rate: int) -> bytes:
    """Encode a whole utterance recorded at ``in_rate`` as ``fmt`` at ``out_rate``."""
    fmt = parse_format(fmt)
    check_sample_rate(fmt, out_rate)
    audio = _clean(resample(pcm, in_rate, out_rate))
    with _codec_errors(fmt):
        return _WHOLE_FILE[fmt](audio, out_rate)


# --- streaming encoding ----------------------------------------------------------------------


class StreamEncoder(Protocol):
    """Chunked encoder: all ``feed`` results plus the ``close`` result, joined, are one file."""

    def feed(self, pcm: Pcm) -> bytes:
        """Encode the next chunk; may return b"" while the codec buffers."""
        ...

    def close(self) -> bytes:
        """Flush everything still buffered; call exactly once, after the last ``feed``."""
        ...


class _ResamplingStream:
    """Shared plumbing: stream-resample, clip, hand to ``_encode``; ``_finish`` on close."""

    def __init__(self, fmt: AudioFormat, in_rate: int, out_rate: int) -> None:
        self._fmt = fmt
        self._rate = out_rate
        self._resampler = StreamResampler(in_rate, out_rate)
        self._closed = False

    def feed(self, pcm: Pcm) -> bytes:
        self._check_open()
        audio = _clean(self._resampler.feed(pcm))
        with _codec_errors(self._fmt):
            return self._encode(audio)

    def close(self) -> bytes:
        self._check_open()
        self._closed = True
        audio = _clean(self._resampler.flush())
        with _codec_errors(self._fmt):
            return self._encode(audio) + self._finish()

    def _check_open(self) -> None:
        if self._closed:
            raise InternalError(f"{self._fmt.value} stream encoder used after close()")

    def _encode(self, audio: Pcm) -> bytes:
        raise NotImplementedError

    def _finish(self) -> bytes:
        return b""


class _RawStream(_ResamplingStream):
    def _encode(self, audio: Pcm) -> bytes:
        return _WHOLE_FILE[self._fmt](audio, self._rate)


class _WavStream(_ResamplingStream):
    def __init__(self, fmt: AudioFormat, in_rate: int, out_rate: int) -> None:
        super().__init__(fmt, in_rate, out_rate)
        self._header_sent = False

    def _encode(self, audio: Pcm) -> bytes:
        data = _pcm16_bytes(float_to_int16(audio))
        if self._header_sent:
            return data
        # Header goes out with the first call so a player can start before any audio exists.
        self._header_sent = True
        return wav_header(self._rate, None) + data


class _Mp3Stream(_ResamplingStream):
    def __init__(self, fmt: AudioFormat, in_rate: int, out_rate: int) -> None:
        super().__init__(fmt, in_rate, out_rate)
        self._lame = _lame(out_rate)

    def _encode(self, audio: Pcm) -> bytes:
        return bytes(self._lame.encode(_pcm16_bytes(float_to_int16(audio))))

    def _finish(self) -> bytes:
        return bytes(self._lame.flush())


# The PyAV formats' encoders already hand out bytes as packets complete; a stream only needs one
# per request (the Ogg ones with short pages). Without resampling a stream holds the whole file's
# Opus packets, only cut into shorter pages, so it decodes to the same samples.
_PYAV_STREAMS: dict[AudioFormat, Callable[[int], PyAvEncoder]] = {
    AudioFormat.AAC: AdtsEncoder,
    AudioFormat.OGG_OPUS: partial(OggOpusEncoder, page_ms=_STREAM_OGG_PAGE_MS),
    AudioFormat.VOICE_NOTE: partial(VoiceNoteEncoder, page_ms=_STREAM_OGG_PAGE_MS),
}


class _PyAvStream(_ResamplingStream):
    def __init__(self, fmt: AudioFormat, in_rate: int, out_rate: int) -> None:
        super().__init__(fmt, in_rate, out_rate)
        self._encoder = _PYAV_STREAMS[fmt](out_rate)

    def _encode(self, audio: Pcm) -> bytes:
        return self._encoder.encode(audio)

    def _finish(self) -> bytes:
        return self._encoder.close()


_STREAMS: dict[AudioFormat, type[_ResamplingStream]] = {
    AudioFormat.WAV: _WavStream,
    AudioFormat.MP3: _Mp3Stream,
    AudioFormat.OGG_OPUS: _PyAvStream,
    AudioFormat.PCM16: _RawStream,
    AudioFormat.MULAW: _RawStream,
    AudioFormat.AAC: _PyAvStream,
    AudioFormat.VOICE_NOTE: _PyAvStream,
}


def open_stream_encoder(fmt: AudioFormat, *, in_rate: int, out_rate: int) -> StreamEncoder:
    """A ``StreamEncoder`` for ``fmt``; formats that must rewrite their header are refused."""
    fmt = parse_format(fmt)
    if not FORMAT_SPECS[fmt].streamable or fmt not in _STREAMS:
        raise UnsupportedFormat(
            f"{fmt.value} cannot be streamed (its header is rewritten after the last sample); "
            "use url or base64 delivery"
        )
    check_sample_rate(fmt, out_rate)
    return _STREAMS[fmt](fmt, in_rate, out_rate)


# --- small helpers ---------------------------------------------------------------------------


def silence(seconds: float, rate: int) -> Pcm:
    """``seconds`` of digital silence at ``rate`` Hz (SSML breaks, pauses between segments)."""
    if seconds < 0:
        raise InvalidInput(f"silence length must be >= 0 s, got {seconds}")
    return np.zeros(round(seconds * rate), dtype=np.float32)


def pcm_duration_s(num_samples: int, rate: int) -> float:
    """Playing time of ``num_samples`` mono samples at ``rate`` Hz."""
    return num_samples / rate
