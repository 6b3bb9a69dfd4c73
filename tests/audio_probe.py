"""Independent checks of encoded audio with ffprobe/ffmpeg, for audio, engine and handler tests.

ffmpeg is a different implementation from the encoders under test (libsndfile, LAME), so a file it
accepts is a file real clients accept. A missing ffmpeg fails the test instead of skipping it, so a
CI image without it cannot pass by checking nothing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

_TIMEOUT_S = 60


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: apt-get install ffmpeg", pytrace=False)
    return path


def _as_file(data: bytes, suffix: str, tmp: str) -> Path:
    # A real file, not stdin: ffprobe reports durations only for seekable input.
    path = Path(tmp) / f"probe.{suffix.lstrip('.')}"
    path.write_bytes(data)
    return path


def ffprobe_json(data: bytes, suffix: str) -> dict[str, Any]:
    """``ffprobe -show_streams -show_format`` of ``data`` saved as ``*.suffix``; fails on errors."""
    with tempfile.TemporaryDirectory() as tmp:
        path = _as_file(data, suffix, tmp)
        cmd = [_tool("ffprobe"), "-v", "error", "-show_streams", "-show_format", "-of", "json"]
        done = subprocess.run(
            [*cmd, str(path)], capture_output=True, timeout=_TIMEOUT_S, check=False
        )
    if done.returncode != 0:
        pytest.fail(f"ffprobe rejected the {suffix} data: {done.stderr.decode(errors='replace')}")
    return json.loads(done.stdout)


def audio_stream(probe: dict[str, Any]) -> dict[str, Any]:
    """The single audio stream of an ``ffprobe_json`` result."""
    streams = [s for s in probe.get("streams", []) if s.get("codec_type") == "audio"]
    assert len(streams) == 1, f"expected one audio stream, got {probe.get('streams')}"
    return streams[0]


def probe_duration_s(probe: dict[str, Any]) -> float:
    """Duration ffprobe reports, from the stream or else the container."""
    value = audio_stream(probe).get("duration") or probe.get("format", {}).get("duration")
    assert value not in (None, "N/A"), f"ffprobe reports no duration: {probe}"
    return float(value)


def ffmpeg_decode(
    data: bytes,
    suffix: str,
    *,
    input_args: tuple[str, ...] = (),
    rate: int | None = None,
) -> npt.NDArray[np.int16]:
    """Decode ``data`` to mono int16 samples (at ``rate`` if given, else the stream's own rate).

    ``input_args`` describe headerless input, e.g. ``("-f", "mulaw", "-ar", "8000")``.
    """
    with tempfile.TemporaryDirectory() as tmp:
        path = _as_file(data, suffix, tmp)
        cmd = [_tool("ffmpeg"), "-v", "error", *input_args, "-i", str(path), "-ac", "1"]
        if rate is not None:
            cmd += ["-ar", str(rate)]
        done = subprocess.run(
            [*cmd, "-f", "s16le", "-"], capture_output=True, timeout=_TIMEOUT_S, check=False
        )
    if done.returncode != 0:
        pytest.fail(
            f"ffmpeg could not decode the {suffix} data: {done.stderr.decode(errors='replace')}"
        )
    return np.frombuffer(done.stdout, dtype="<i2").astype(np.int16)


def sine_sweep(
    seconds: float, rate: int, *, f0: float = 100.0, f1: float = 3500.0, amplitude: float = 0.5
) -> npt.NDArray[np.float32]:
    """Exponential sweep f0..f1 Hz: speech-band content that survives even 8 kHz (4 kHz Nyquist)."""
    t = np.arange(round(seconds * rate)) / rate
    k = np.log(f1 / f0) / seconds
    phase = 2 * np.pi * f0 * (np.exp(k * t) - 1) / k
    return (amplitude * np.sin(phase)).astype(np.float32)


def correlation(a: npt.ArrayLike, b: npt.ArrayLike) -> float:
    """Pearson correlation of two signals over their common length."""
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    n = min(x.size, y.size)
    return float(np.corrcoef(x[:n], y[:n])[0, 1])
