"""Sample-rate conversion with soxr, whole-signal and chunked.

Streaming needs its own resampler: resampling each chunk independently restarts the filter at every
join (audible clicks) and rounds every chunk's length (drift). ``StreamResampler`` keeps the filter
state, so chunked output equals whole-signal output.
"""

from __future__ import annotations

import numpy as np
import soxr

from shared.engines.base import Pcm
from shared.errors import InternalError

# soxr "HQ": 20-bit precision, far below PCM16's noise floor, and still ~1 ms per 10 s of speech.
_QUALITY = "HQ"


def as_pcm(pcm: Pcm) -> Pcm:
    """Contiguous 1-D float32 view/copy of ``pcm``; soxr and the encoders need exactly that."""
    arr = np.ascontiguousarray(pcm, dtype=np.float32)
    if arr.ndim != 1:
        # Engines promise mono; anything else is a bug upstream, not a user error.
        raise InternalError(f"expected mono 1-D PCM, got shape {arr.shape}")
    return arr


def resample(pcm: Pcm, src_rate: int, dst_rate: int) -> Pcm:
    """Whole-signal conversion from ``src_rate`` to ``dst_rate`` Hz (identity when equal)."""
    arr = as_pcm(pcm)
    if src_rate == dst_rate or arr.size == 0:
        return arr
    return np.asarray(soxr.resample(arr, src_rate, dst_rate, quality=_QUALITY), dtype=np.float32)


class StreamResampler:
    """Chunked conversion: ``feed`` each chunk in order, then ``flush`` once for the filter tail."""

    def __init__(self, src_rate: int, dst_rate: int) -> None:
        self.src_rate = src_rate
        self.dst_rate = dst_rate
        self._stream: soxr.ResampleStream | None = None
        if src_rate != dst_rate:
            self._stream = soxr.ResampleStream(
                src_rate, dst_rate, 1, dtype="float32", quality=_QUALITY
            )

    def feed(self, pcm: Pcm) -> Pcm:
        """Resampled audio available so far; soxr holds back a few ms for its filter."""
        arr = as_pcm(pcm)
        if self._stream is None:
            return arr
        return np.asarray(self._stream.resample_chunk(arr, last=False), dtype=np.float32)

    def flush(self) -> Pcm:
        """The held-back tail; call once, after the last ``feed``."""
        if self._stream is None:
            return np.zeros(0, dtype=np.float32)
        empty = np.zeros(0, dtype=np.float32)
        return np.asarray(self._stream.resample_chunk(empty, last=True), dtype=np.float32)
