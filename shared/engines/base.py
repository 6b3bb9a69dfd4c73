"""The engine protocol: what every speech engine (XTTS, Piper, vendor APIs) offers the handlers.

Engines produce float32 mono PCM in [-1, 1] at their own ``sample_rate``; encoding and resampling
belong to ``shared.audio``. An engine owns its sample rate: nothing else hard-codes it.

An engine speaks with a ``Voice``: a value the voice resolver hands it, carrying the engine's own
conditioning (XTTS: the speaker latents), so an engine never looks a voice up by name mid-job.
Each engine says how it streams (``StreamingTraits``), so the render policy can choose between
its streaming and whole-segment paths without knowing the engine's internals.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from shared.voices.latents import VoiceLatents

Pcm = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class StreamingTraits:
    """How an engine's ``stream`` behaves, measured (bench/engines.py), not assumed.

    ``incremental``: ``stream`` yields audio before the segment is complete.
    ``cost_ratio``: total compute of ``stream`` over ``synthesize`` for one segment; 1.0 means
    streaming is free, XTTS's stock streaming re-decodes everything so far at each chunk.
    ``interleavable``: another request's step may run between two steps of one ``stream``; an
    engine whose streams keep state in the model itself must finish a segment first.
    """

    incremental: bool
    cost_ratio: float
    interleavable: bool

    @property
    def cheap(self) -> bool:
        """Streaming costs about what a whole segment does (within 15 %)."""
        return self.cost_ratio <= 1.15


@dataclass(frozen=True, slots=True)
class Voice:
    """A voice resolved for a job: which voice, which version of it, and how the engine speaks it.

    ``version`` changes whenever the audio this voice makes would change (for built-in voices,
    the model version: their conditioning ships with the weights), so it keys the audio cache.
    ``conditioning`` is the engine's own value (XTTS latents; None for a one-voice engine).
    """

    id: str
    name: str
    engine: str
    version: str
    language: str | None = None
    conditioning: object = field(default=None, repr=False, compare=False)


@runtime_checkable
class Engine(Protocol):
    name: str
    model_version: str
    sample_rate: int
    languages: frozenset[str]
    default_voice: str
    streaming: StreamingTraits

    def voices(self) -> Sequence[Voice]:
        """The engine's built-in voices, the same for every tenant."""
        ...

    def voice(self, voice_id: str) -> Voice:
        """One built-in voice; ``VoiceNotFound`` naming the ones there are."""
        ...

    def segment_limit(self, language: str) -> int:
        """Most characters one ``synthesize`` call may take for ``language``; raises
        ``UnsupportedLanguage`` for a language the engine does not speak."""
        ...

    def synthesize(self, text: str, *, voice: Voice, language: str, speed: float) -> Pcm:
        """Speak one segment (already within ``segment_limit``) and return all of its audio."""
        ...

    def stream(self, text: str, *, voice: Voice, language: str, speed: float) -> Iterator[Pcm]:
        """Speak one segment, yielding audio as soon as the engine has it."""
        ...


@runtime_checkable
class CloningEngine(Engine, Protocol):
    """An engine that speaks cloned voices (XTTS): it computes a voice's conditioning from
    reference audio once, and speaks from that conditioning, never from the reference."""

    reference_rate: int

    def compute_latents(self, pcm: Pcm) -> VoiceLatents:
        """The conditioning of the voice in ``pcm`` (float32 mono at ``reference_rate``)."""
        ...

    def cloned_voice(
        self, voice_id: str, *, version: str, latents: VoiceLatents, language: str | None = None
    ) -> Voice:
        """A ``Voice`` to speak with, its conditioning ready on the engine's device."""
        ...
