"""The engine protocol: what every speech engine (XTTS, Piper, vendor APIs) offers the handlers.

Engines produce float32 mono PCM in [-1, 1] at their own ``sample_rate``; encoding and resampling
belong to ``shared.audio``. An engine owns its sample rate: nothing else hard-codes it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

Pcm = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class VoiceInfo:
    id: str
    name: str
    engine: str
    language: str | None = None


@runtime_checkable
class Engine(Protocol):
    name: str
    model_version: str
    sample_rate: int
    languages: frozenset[str]
    default_voice: str

    def voices(self) -> Sequence[VoiceInfo]:
        """Voices this engine can speak with right now."""
        ...

    def segment_limit(self, language: str) -> int:
        """Most characters one ``synthesize`` call may take for ``language``."""
        ...

    def synthesize(self, text: str, *, voice: str, language: str, speed: float) -> Pcm:
        """Speak one segment (already within ``segment_limit``) and return all of its audio."""
        ...

    def stream(self, text: str, *, voice: str, language: str, speed: float) -> Iterator[Pcm]:
        """Speak one segment, yielding audio as soon as the engine has it."""
        ...
