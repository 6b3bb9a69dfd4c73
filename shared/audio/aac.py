"""AAC-LC in ADTS framing, with FFmpeg's native ``aac`` encoder through PyAV (no subprocess).

ADTS gives every frame its own 7-byte header and has no file header or trailer, so the bytes
written so far are a playable file at every frame boundary: the muxer never seeks back, and a
stream is just the frames in order. That is what OpenAI's ``response_format: aac`` returns and what
WhatsApp takes as audio/aac.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction

import av
import numpy as np

from shared.audio.resample import as_pcm
from shared.engines.base import Pcm
from shared.errors import InternalError


def aac_bitrate(rate: int) -> int:
    """Target bits per second for mono speech at ``rate`` Hz.

    Below 22.05 kHz the band ends at 8 kHz or lower and 32 kbps already codes all of it (white noise
    keeps its full band through FFmpeg's encoder); 8 kHz AAC cannot spend more than ~39 kbps anyway.
    At 22.05/24 kHz (the engines' rates) 64 kbps keeps the full 11-12 kHz band; at 44.1/48 kHz the
    encoder low-passes at ~17 kHz, far above speech. Real output runs ~5 % above the target.
    """
    return 32_000 if rate < 22050 else 64_000


@contextmanager
def _av_errors() -> Iterator[None]:
    """Translate FFmpeg failures once; rates are validated before we get here, so they are ours."""
    try:
        yield
    except av.FFmpegError as exc:
        raise InternalError(f"aac encoding failed: {exc}") from exc


class _ByteQueue:
    """Write-only file object for the muxer: hands out bytes as they are written.

    It has no ``seek``, so FFmpeg treats the output as unseekable and cannot rewrite bytes that
    were already sent.
    """

    def __init__(self) -> None:
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._pending.append(bytes(data))
        return len(data)

    def drain(self) -> bytes:
        out = b"".join(self._pending)
        self._pending.clear()
        return out


class AdtsEncoder:
    """Mono float32 PCM in [-1, 1] at ``rate`` Hz in, ADTS bytes out as frames complete.

    The codec takes only whole 1024-sample frames: PyAV's encoder re-frames any input (its
    ``AudioResampler`` with the codec's ``frame_size``) and keeps the partial frame until the next
    ``encode``; ``close`` flushes it and the encoder's lookahead. FFmpeg primes each stream with
    1024 samples of delay, and ADTS has no field to tell a decoder to skip them, so decoded audio
    starts ~43 ms late at 24 kHz (the same holds for every ADTS encoder).
    """

    def __init__(self, rate: int) -> None:
        self._rate = rate
        self._time_base = Fraction(1, rate)
        self._samples = 0
        self._sink = _ByteQueue()
        with _av_errors():
            # flush_packets: hand every frame to the sink at once rather than in 32 KB bursts.
            self._container = av.open(
                self._sink, mode="w", format="adts", container_options={"flush_packets": "1"}
            )
            self._stream = self._container.add_stream("aac", rate=rate, layout="mono")
            self._stream.bit_rate = aac_bitrate(rate)

    def encode(self, audio: Pcm) -> bytes:
        """Encode the next samples; returns the frames finished so far (often b"" at first)."""
        samples = as_pcm(audio)
        if samples.size:
            with _av_errors():
                self._mux(samples)
        return self._sink.drain()

    def close(self) -> bytes:
        """Flush the last partial frame and the lookahead; call once, after the last ``encode``."""
        with _av_errors():
            if self._samples == 0:
                # No frames is a 0-byte file, which ffmpeg rejects; one sample of silence (42 us
                # at 24 kHz) makes a valid, still "empty" one.
                self._mux(np.zeros(1, dtype=np.float32))
            self._container.mux(self._stream.encode(None))
            self._container.close()
        return self._sink.drain()

    def _mux(self, samples: Pcm) -> None:
        # Mono fltp is one plane of float32, exactly our PCM: no sample-format conversion.
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="fltp", layout="mono")
        frame.sample_rate = self._rate
        frame.time_base = self._time_base
        frame.pts = self._samples
        self._samples += samples.size
        self._container.mux(self._stream.encode(frame))
