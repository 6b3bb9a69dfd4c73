"""One encoder over FFmpeg through PyAV (no subprocess), shared by the formats FFmpeg codes for us.

Each format only names its muxer, codec and settings (``AvSetup``); this module feeds float PCM
in, hands bytes out as the muxer writes them, and translates FFmpeg's errors once. The muxer
writes to a queue with no ``seek``, so FFmpeg treats the output as unseekable and cannot rewrite
bytes that were already handed out: what ``encode`` returned stays valid, which is what a stream
needs.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction

import av
import numpy as np

from shared.audio.resample import as_pcm
from shared.engines.base import Pcm
from shared.errors import InternalError

# flush_packets: hand each finished packet (or Ogg page) to the sink at once rather than in 32 KB
# bursts. bitexact: no random Ogg serial number and no FFmpeg version in the tags, so the same
# audio always gives the same bytes (and a stream fed without resampling equals the whole file).
_CONTAINER_DEFAULTS: Mapping[str, str] = {"flush_packets": "1", "fflags": "+bitexact"}


@dataclass(frozen=True, slots=True)
class AvSetup:
    """What one format asks of FFmpeg: ``label`` names it in errors (e.g. ``aac``)."""

    label: str
    container: str
    codec: str
    # The codec's own float layout, so PyAV never converts: mono "fltp" and "flt" are both one
    # run of float32, exactly our PCM.
    sample_format: str
    bit_rate: int
    codec_options: Mapping[str, str] = field(default_factory=dict)
    container_options: Mapping[str, str] = field(default_factory=dict)


class _ByteQueue:
    """Write-only file object for the muxer: hands out bytes as they are written."""

    def __init__(self) -> None:
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._pending.append(bytes(data))
        return len(data)

    def drain(self) -> bytes:
        out = b"".join(self._pending)
        self._pending.clear()
        return out


class PyAvEncoder:
    """Mono float32 PCM in [-1, 1] at ``rate`` Hz in, container bytes out as packets complete.

    Codecs take only whole frames (1024 samples for AAC, 20 ms for Opus): PyAV's encoder
    re-frames any input (its ``AudioResampler`` with the codec's ``frame_size``) and keeps the
    partial frame until the next ``encode``; ``close`` flushes it, the encoder's lookahead and the
    container's trailer.
    """

    def __init__(self, setup: AvSetup, rate: int) -> None:
        self._setup = setup
        self._rate = rate
        self._time_base = Fraction(1, rate)
        self._samples = 0
        self._sink = _ByteQueue()
        with self._errors():
            self._container = av.open(
                self._sink,
                mode="w",
                format=setup.container,
                container_options={**_CONTAINER_DEFAULTS, **setup.container_options},
            )
            self._stream = self._container.add_stream(
                setup.codec, rate=rate, layout="mono", options=dict(setup.codec_options)
            )
            self._stream.format = setup.sample_format
            self._stream.bit_rate = setup.bit_rate

    def encode(self, audio: Pcm) -> bytes:
        """Encode the next samples; returns the bytes finished so far (often b"" at first)."""
        samples = as_pcm(audio)
        if samples.size:
            with self._errors():
                self._mux(samples)
        return self._sink.drain()

    def close(self) -> bytes:
        """Flush the last partial frame and the lookahead; call once, after the last ``encode``."""
        with self._errors():
            if self._samples == 0:
                # No frames is a 0-byte or headers-only file, which ffmpeg rejects; one sample of
                # silence (42 us at 24 kHz) makes a valid, still "empty" one.
                self._mux(np.zeros(1, dtype=np.float32))
            self._container.mux(self._stream.encode(None))
            self._container.close()
        return self._sink.drain()

    def _mux(self, samples: Pcm) -> None:
        frame = av.AudioFrame.from_ndarray(
            samples.reshape(1, -1), format=self._setup.sample_format, layout="mono"
        )
        frame.sample_rate = self._rate
        frame.time_base = self._time_base
        frame.pts = self._samples
        self._samples += samples.size
        self._container.mux(self._stream.encode(frame))

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Translate FFmpeg failures once: rates are validated before this, so a failure is ours."""
        try:
            yield
        except av.FFmpegError as exc:
            raise InternalError(f"{self._setup.label} encoding failed: {exc}") from exc
