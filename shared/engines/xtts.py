"""Coqui XTTS-v2 through coqui-tts's own loading and inference code, on CUDA when there is one.

torch and TTS are imported inside ``load``, so importing this module stays cheap, and a missing
package becomes ``EngineUnavailable`` naming the extra to install.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from shared.engines.base import Pcm, StreamingTraits, Voice
from shared.engines.fingerprint import fingerprint
from shared.engines.xtts_latents import gpt_latents, text_tokens
from shared.engines.xtts_streams import BatchedStreams, SegmentChunks
from shared.engines.xtts_vocoder import BatchedVocoder, lookahead_latents
from shared.errors import (
    EngineUnavailable,
    InternalError,
    InvalidInput,
    TTSError,
    UnsupportedLanguage,
    VoiceNotFound,
)
from shared.text.limits import XTTS_LANGUAGES, xtts_char_limit
from shared.voices.latents import VoiceLatents

if TYPE_CHECKING:
    import torch
    from TTS.tts.models.xtts import Xtts

REQUIRED_FILES: tuple[str, ...] = ("config.json", "model.pth", "vocab.json")
SPEAKERS_FILE = "speakers_xtts.pth"
PREFERRED_DEFAULT_VOICE = "Ana Florence"
WARMUP_TEXT = "Hello."
# XTTS's cloning code works on 22,050 Hz audio (it resamples anything else itself, and its speaker
# encoder resamples on to 16 kHz); references are decoded straight to it.
REFERENCE_RATE = 22050
# As coqui's get_conditioning_latents: at most 30 s of reference, GPT latents from 6 s chunks.
MAX_REFERENCE_S = 30
GPT_COND_CHUNK_S = 6
# Stream chunks: the first holds this many tokens of audio (4 = 186 ms), later ones double.
DEFAULT_FIRST_CHUNK_TOKENS = 4
# Total compute of stream over synthesize for one segment, the worst measured (CPU, one thread:
# test checkpoint 0.80 / 0.76 / 0.66 at 24 / 64 / 160 tokens, stock inference_stream 1.62 /
# 2.77 / 4.79; full-size XTTS-v2 architecture 0.79 / 0.85 at 24 / 64). Under 1: the stream skips
# synthesize's second GPT pass, and its short decoder calls stay in cache where long ones do not.
STREAM_COST_RATIO = 0.85


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """GPT sampling settings, pinned here: ``inference()``, config.json and coqui's docs disagree.

    ``enable_text_splitting`` stays False because the product splits text itself, within each
    language's limit, before calling the engine.
    """

    temperature: float = 0.75
    length_penalty: float = 1.0
    repetition_penalty: float = 10.0
    top_k: int = 50
    top_p: float = 0.85
    enable_text_splitting: bool = False


SAMPLING = SamplingParams()


@dataclass(frozen=True, slots=True)
class _Latents:
    """A voice as XTTS conditions on it: computed once, kept on the model's device."""

    gpt_cond_latent: torch.Tensor
    speaker_embedding: torch.Tensor

    def to(self, device: str) -> _Latents:
        return _Latents(self.gpt_cond_latent.to(device), self.speaker_embedding.to(device))


class XttsEngine:
    """XTTS-v2 behind the ``Engine`` protocol.

    One lock serializes all model work: a model on one GPU runs one call at a time. With
    ``max_batch`` 1 a stream holds it for its whole text (coqui's generator keeps the segment's
    prompt in the model); with a shared batch, for each step only, and concurrent streams'
    steps interleave, each one's state in its own cache row.
    """

    name = "xtts"
    # The stream decodes each latent once (xtts_vocoder), so it costs no more than synthesize
    # (STREAM_COST_RATIO) and every segment of a text streams. GPT's generator keeps the prompt
    # in the model (gpt_inference.cached_prefix_emb), so one stream must finish its segment
    # before another one steps the model.
    streaming = StreamingTraits(incremental=True, cost_ratio=STREAM_COST_RATIO, interleavable=False)
    # With a shared GPT batch (max_batch > 1) each stream keeps its own cache row, so streams may
    # step in any order, and concurrent ones share each GPT forward.
    batched_streaming = replace(streaming, interleavable=True)

    def __init__(
        self,
        model: Xtts,
        *,
        device: str,
        model_version: str,
        sample_rate: int,
        languages: frozenset[str],
        latents: dict[str, _Latents],
        stream_chunk_tokens: int,
        stream_first_chunk_tokens: int = DEFAULT_FIRST_CHUNK_TOKENS,
        max_batch: int = 1,
        decode_batch: int = 4,
        sampling: SamplingParams = SAMPLING,
    ) -> None:
        for label, value in (("max_batch", max_batch), ("decode_batch", decode_batch)):
            if value < 1:
                raise InvalidInput(f"{label} must be at least 1, got {value}")
        self._model = model
        self.device = device
        self.model_version = model_version
        self.sample_rate = sample_rate
        self.languages = languages
        # Voice id -> latents. Built-in speakers now; cloned voices are added here later.
        self._latents = latents
        self.stream_chunk_tokens = stream_chunk_tokens
        self.stream_first_chunk_tokens = min(stream_first_chunk_tokens, stream_chunk_tokens)
        # Latents the decoder must see past a sample before it emits it (5 for XTTS-v2).
        self._lookahead = lookahead_latents(model.hifigan_decoder)
        self._max_text_tokens = int(model.args.gpt_max_text_tokens)
        self._lock = threading.Lock()
        self._sampling = asdict(sampling)  # built once: inference takes them on every call
        # Streams: coqui's generator, one segment at a time (1), or GPT steps and decoder
        # chunks shared by up to max_batch concurrent streams.
        self.max_batch = max_batch
        self.decode_batch = decode_batch
        self._batched: BatchedStreams | None = None
        if max_batch > 1:
            self._batched = self._new_batch(device)
            self.streaming = self.batched_streaming
        self.default_voice = _pick_default_voice(list(latents))

    @classmethod
    def load(
        cls,
        model_dir: Path,
        *,
        device: str = "auto",
        max_audio_tokens: int | None = None,
        stream_chunk_tokens: int = 20,
        stream_first_chunk_tokens: int = DEFAULT_FIRST_CHUNK_TOKENS,
        max_batch: int = 1,
        decode_batch: int = 4,
        sampling: SamplingParams = SAMPLING,
        warmup: bool = True,
    ) -> XttsEngine:
        """Load config.json, model.pth, vocab.json and (optional) speakers_xtts.pth from
        ``model_dir`` the way coqui-tts does, move the model to ``device`` and warm it up.

        ``max_audio_tokens`` caps the GPT tokens generated per segment (about 21.5 per second of
        audio); ``None`` keeps the checkpoint's own bound. A stream's first chunk holds
        ``stream_first_chunk_tokens`` of audio, and each later one twice the one before, up to
        ``stream_chunk_tokens``: first audio early, then fewer, larger decoder calls.
        ``max_batch`` > 1 runs up to that many concurrent streams' GPT steps as one batched
        forward, and the chunks due together in decoder calls of up to ``decode_batch``
        (``BatchedStreams``); 1 keeps coqui's generator, one stream at a time.
        ``sampling`` pins GPT sampling (``top_k=1`` makes it deterministic).

        coqui-tts rewrites a legacy model.pth (one that pickles its XttsConfig) in place on its
        first load, so that load needs a writable directory; ``model_version`` is read after it.
        """
        for label, value in (
            ("stream_chunk_tokens", stream_chunk_tokens),
            ("stream_first_chunk_tokens", stream_first_chunk_tokens),
        ):
            if value < 1:
                raise InvalidInput(f"{label} must be at least 1, got {value}")
        if max_audio_tokens is not None and max_audio_tokens < 1:
            raise InvalidInput(f"max_audio_tokens must be at least 1, got {max_audio_tokens}")
        model_dir = Path(model_dir)
        missing = [name for name in REQUIRED_FILES if not (model_dir / name).is_file()]
        if missing:
            raise EngineUnavailable(
                f"XTTS model directory {model_dir} is missing {', '.join(missing)}"
            )

        try:
            import torch
            from TTS.tts.configs.xtts_config import XttsConfig
            from TTS.tts.models.xtts import Xtts
        except (ImportError, OSError) as exc:  # OSError: a torchaudio/torch build mismatch
            raise EngineUnavailable(
                f"the xtts engine needs torch and coqui-tts ({exc}): pip install -e .[xtts]"
            ) from exc

        target = _resolve_device(device, cuda_available=torch.cuda.is_available())
        try:
            config = XttsConfig()
            config.load_json(str(model_dir / "config.json"))
            # Xtts(config) is what coqui's init_from_config does (deprecated in coqui-tts 0.28).
            model = Xtts(config)
            model.load_checkpoint(config, checkpoint_dir=str(model_dir), eval=True)
            model.to(target)
            model.eval()
        except Exception as exc:
            raise EngineUnavailable(
                f"cannot load the XTTS checkpoint in {model_dir}: {type(exc).__name__}: {exc}"
            ) from exc

        if max_audio_tokens is not None:
            # Caps generation only: the position tables (and so the checkpoint) keep their size.
            # Random test weights never emit the stop token and would run to the full bound.
            model.gpt.max_gen_mel_tokens = min(model.gpt.max_gen_mel_tokens, max_audio_tokens)

        languages = frozenset(lang.lower() for lang in config.languages) & XTTS_LANGUAGES
        if not languages:
            raise EngineUnavailable(
                f"{model_dir / 'config.json'} lists none of XTTS-v2's languages: {config.languages}"
            )
        engine = cls(
            model,
            device=target,
            model_version=_model_version(model_dir),
            sample_rate=int(config.model_args.output_sample_rate),
            languages=languages,
            latents=_speaker_latents(model, target),
            stream_chunk_tokens=stream_chunk_tokens,
            stream_first_chunk_tokens=stream_first_chunk_tokens,
            max_batch=max_batch,
            decode_batch=decode_batch,
            sampling=sampling,
        )
        if warmup:
            engine.warm_up()
        return engine

    def warm_up(self) -> None:
        """One short synthesis: the first call on a device pays for CUDA kernels and allocator
        growth, and a user should not."""
        if self.default_voice:
            voice = self.voice(self.default_voice)
            self.synthesize(WARMUP_TEXT, voice=voice, language=self._warmup_language(), speed=1.0)

    def to_device(self, device: str) -> None:
        """Move the model and its voices' latents to ``device`` (auto, cuda, cuda:N, cpu).

        Modal loads the model on the CPU into a memory snapshot, where no GPU is attached, and
        moves it to the GPU once the container is restored. The move holds the model lock, so no
        model call runs beside it; voices resolved before it keep their latents where they were,
        so move before jobs start (a batched engine's GPT batch is rebuilt on the device, and a
        stream in flight keeps the old one).
        """
        import torch

        target = _resolve_device(device, cuda_available=torch.cuda.is_available())
        with self._lock:
            try:
                self._model.to(target)
                latents = {name: one.to(target) for name, one in self._latents.items()}
                if self._batched is not None:  # its cache lives on the device
                    self._batched = self._new_batch(target)
            except Exception as exc:  # torch: no such device ordinal, out of GPU memory
                raise EngineUnavailable(
                    f"cannot move XTTS to {target}: {type(exc).__name__}: {exc}"
                ) from exc
            self._latents = latents
            self.device = target

    def voices(self) -> Sequence[Voice]:
        return [self._builtin(name, latents) for name, latents in self._latents.items()]

    def voice(self, voice_id: str) -> Voice:
        latents = self._latents.get(voice_id)
        if latents is None:
            known = ", ".join(self._latents) or "none"
            raise VoiceNotFound(f"XTTS has no such voice; available: {known}")
        return self._builtin(voice_id, latents)

    reference_rate = REFERENCE_RATE

    def compute_latents(self, pcm: Pcm) -> VoiceLatents:
        """Clone a voice from ``pcm`` (float32 mono at ``reference_rate``, e.g. from
        ``decode_reference``): what coqui's ``get_conditioning_latents`` computes from a file,
        from audio already in memory. Slow (a GPT and a speaker-encoder pass), so run once per
        voice and store the result."""
        audio = np.asarray(pcm, dtype=np.float32)
        if audio.ndim != 1 or audio.size < REFERENCE_RATE:
            raise InvalidInput(f"reference audio must be mono with 1 s or more, got {audio.shape}")
        if not np.isfinite(audio).all():
            raise InvalidInput("reference audio holds NaN or infinite samples")
        import torch

        with self._lock, torch.inference_mode():
            try:
                clip = torch.from_numpy(audio[: REFERENCE_RATE * MAX_REFERENCE_S].copy())
                clip = clip.unsqueeze(0).to(self.device)
                gpt = self._model.get_gpt_cond_latents(
                    clip, REFERENCE_RATE, length=GPT_COND_CHUNK_S, chunk_length=GPT_COND_CHUNK_S
                )
                speaker = self._model.get_speaker_embedding(clip, REFERENCE_RATE)
                return VoiceLatents(
                    gpt_cond_latent=gpt.detach().float().cpu().numpy(),
                    speaker_embedding=speaker.detach().float().cpu().numpy(),
                )
            except Exception as exc:
                raise _inference_error(exc) from exc

    def cloned_voice(
        self, voice_id: str, *, version: str, latents: VoiceLatents, language: str | None = None
    ) -> Voice:
        """A cloned voice to speak with: its latents copied to the model's device once, here,
        rather than on every segment. ``version`` is the stored latents' digest."""
        expected = (int(self._model.args.gpt_n_model_channels), int(self._model.args.d_vector_dim))
        got = (latents.gpt_cond_latent.shape[2], latents.speaker_embedding.shape[1])
        if got != expected:
            raise InternalError(
                f"voice {voice_id} was cloned for another model: latents of {got}, this XTTS "
                f"conditions on {expected}; clone it again"
            )
        import torch

        with self._lock:  # self.device is stable only under the lock (to_device)
            conditioning = _Latents(
                torch.tensor(latents.gpt_cond_latent, device=self.device),
                torch.tensor(latents.speaker_embedding, device=self.device),
            )
        # Shaped as a built-in speaker is, but versioned by its own latents, not the model.
        return replace(self._builtin(voice_id, conditioning), version=version, language=language)

    def _builtin(self, name: str, latents: _Latents) -> Voice:
        # The speakers file is part of the model version, so it versions these voices too.
        return Voice(
            id=name,
            name=name,
            engine=self.name,
            version=self.model_version,
            conditioning=latents,
        )

    def segment_limit(self, language: str) -> int:
        return xtts_char_limit(self._check_language(language))

    def synthesize(self, text: str, *, voice: Voice, language: str, speed: float) -> Pcm:
        latents, language = self._prepare(text, voice, language, speed)
        import torch

        pieces = []
        with self._lock, torch.inference_mode():
            for part in self._fitting_parts(text, language):
                try:
                    out = self._model.inference(
                        part,
                        language,
                        latents.gpt_cond_latent,
                        latents.speaker_embedding,
                        speed=speed,
                        **self._sampling,
                    )
                except Exception as exc:
                    raise _inference_error(exc) from exc
                pieces.append(_to_pcm(out["wav"]))
        return np.concatenate(pieces)

    def stream(self, text: str, *, voice: Voice, language: str, speed: float) -> Iterator[Pcm]:
        # Validate before the generator starts: bad input fails at the call, not at next().
        latents, language = self._prepare(text, voice, language, speed)
        with self._lock:
            parts = self._fitting_parts(text, language)
        return self._stream(parts, latents, language, speed)

    def _stream(
        self, parts: list[str], latents: _Latents, language: str, speed: float
    ) -> Iterator[Pcm]:
        if self._batched is not None:
            for part in parts:
                yield from self._stream_batched(self._batched, part, latents, language, speed)
            return
        # Held for the whole text: closing the generator (or dropping it) releases it.
        with self._lock:
            for part in parts:
                yield from self._stream_part(part, latents, language, speed)

    def _stream_part(
        self, text: str, latents: _Latents, language: str, speed: float
    ) -> Iterator[Pcm]:
        """One part's audio as GPT makes it, with the lock held: latents from coqui's
        generator (``gpt_latents``), decoded once each in chunks that grow from the first
        chunk's size."""
        import torch

        with torch.inference_mode():
            try:
                tokens = text_tokens(self._model, text, language)
                vocoder = BatchedVocoder(self._model.hifigan_decoder)
                chunks = self._chunks(vocoder, latents, speed)
            except Exception as exc:
                raise _inference_error(exc) from exc
        source = gpt_latents(self._model, tokens, latents.gpt_cond_latent, self._sampling)
        try:
            while True:
                with torch.inference_mode():
                    try:
                        latent = next(source, None)
                        if latent is not None:
                            chunks.add(latent)
                            if not chunks.due:
                                continue
                        (pcm,) = vocoder.push([chunks.take(final=latent is None)])
                        pcm = _to_pcm(pcm)
                    except Exception as exc:
                        raise _inference_error(exc) from exc
                if pcm.size:
                    yield pcm
                if latent is None:
                    return
        finally:
            source.close()

    def _stream_batched(
        self, batched: BatchedStreams, text: str, latents: _Latents, language: str, speed: float
    ) -> Iterator[Pcm]:
        """One part's audio from the shared batch, the lock taken for each step only: other
        streams' steps run in between, each in its own rows."""
        import torch

        with self._lock, torch.inference_mode():
            try:
                tokens = text_tokens(self._model, text, language)
            except Exception as exc:
                raise _inference_error(exc) from exc
        audio = batched.stream(
            tokens,
            latents.gpt_cond_latent,
            latents.speaker_embedding,
            length_scale=_length_scale(speed),
        )
        try:
            while True:
                with self._lock, torch.inference_mode():
                    try:
                        pcm = next(audio, None)
                        if pcm is None:
                            return
                        pcm = _to_pcm(pcm)
                    except Exception as exc:
                        raise _inference_error(exc) from exc
                yield pcm
        finally:
            with self._lock:
                audio.close()

    def _chunks(self, vocoder: BatchedVocoder, latents: _Latents, speed: float) -> SegmentChunks:
        row = vocoder.open(latents.speaker_embedding, length_scale=_length_scale(speed))
        return SegmentChunks(
            row,
            first=self.stream_first_chunk_tokens,
            most=self.stream_chunk_tokens,
            lookahead=self._lookahead,
        )

    def _new_batch(self, device: str) -> BatchedStreams:
        return BatchedStreams(
            self._model,
            device=device,
            max_batch=self.max_batch,
            decode_batch=self.decode_batch,
            sampling=self._sampling,
            first_chunk_tokens=self.stream_first_chunk_tokens,
            chunk_tokens=self.stream_chunk_tokens,
            lookahead=self._lookahead,
        )

    def _prepare(
        self, text: str, voice: Voice, language: str, speed: float
    ) -> tuple[_Latents, str]:
        language = self._check_language(language)
        latents = voice.conditioning
        if voice.engine != self.name or not isinstance(latents, _Latents):
            raise VoiceNotFound("that voice is not an XTTS voice")
        if not text.strip():
            raise InvalidInput("text is empty")
        if not math.isfinite(speed) or speed <= 0:
            raise InvalidInput(f"speed must be a positive number, got {speed}")
        return latents, language

    def _fitting_parts(self, text: str, language: str) -> list[str]:
        """``text`` as parts under XTTS's text-token limit (coqui asserts at 400 tokens).

        Number expansion ("1999" -> "one thousand nine hundred ...") can push a segment within
        the character limit over the token limit; such a segment is halved at a space (mid-word
        when it has none) until every part fits, so any text still speaks. Call with the lock
        held: the Japanese romanizer (MeCab through cutlet) is not thread-safe.
        """
        if self._token_count(text, language) < self._max_text_tokens:
            return [text]
        if len(text) < 2:
            raise InvalidInput(f"{text!r} expands past XTTS's {self._max_text_tokens} tokens")
        middle = len(text) // 2
        cut = text.rfind(" ", 0, middle)
        if cut <= 0:
            cut = text.find(" ", middle)
        if cut <= 0:
            cut = middle
        left, right = text[:cut].strip(), text[cut:].strip()
        return [*self._fitting_parts(left, language), *self._fitting_parts(right, language)]

    def _token_count(self, text: str, language: str) -> int:
        try:
            return len(self._model.tokenizer.encode(text.strip().lower(), lang=language))
        except Exception as exc:
            raise _inference_error(exc) from exc

    def _check_language(self, language: str) -> str:
        code = language.lower()
        if code not in self.languages:
            supported = ", ".join(sorted(self.languages))
            raise UnsupportedLanguage(
                f"this XTTS model does not speak {language!r}; supported: {supported}"
            )
        return code

    def _warmup_language(self) -> str:
        return "en" if "en" in self.languages else min(self.languages)


def _length_scale(speed: float) -> float:
    """The decoder's stretch for ``speed``, as coqui's ``inference`` computes it."""
    return 1.0 / max(speed, 0.05)


def _resolve_device(device: str, *, cuda_available: bool) -> str:
    if device == "auto":
        return "cuda" if cuda_available else "cpu"
    if device == "cpu":
        return device
    if device == "cuda" or device.startswith("cuda:"):
        if not cuda_available:
            raise EngineUnavailable(f"XTTS device {device!r} requested but CUDA is not available")
        return device
    raise EngineUnavailable(f"unknown XTTS device {device!r}: use auto, cuda, cuda:N or cpu")


def _pick_default_voice(voices: list[str]) -> str:
    """Coqui's own examples speak with "Ana Florence"; otherwise the file's first speaker.

    Empty when the checkpoint has no built-in speakers (a later issue adds cloned voices).
    """
    if PREFERRED_DEFAULT_VOICE in voices:
        return PREFERRED_DEFAULT_VOICE
    return voices[0] if voices else ""


def _speaker_latents(model: Xtts, device: str) -> dict[str, _Latents]:
    manager = getattr(model, "speaker_manager", None)
    if manager is None:
        return {}
    try:
        return {
            str(name): _Latents(
                gpt_cond_latent=entry["gpt_cond_latent"].to(device),
                speaker_embedding=entry["speaker_embedding"].to(device),
            )
            for name, entry in manager.speakers.items()
        }
    except (KeyError, AttributeError, TypeError) as exc:
        raise EngineUnavailable(
            f"{SPEAKERS_FILE} does not map speaker names to gpt_cond_latent and "
            f"speaker_embedding: {exc}"
        ) from exc


def _model_version(model_dir: Path) -> str:
    """Changes whenever the config, vocab, speakers or weights change."""
    whole = [model_dir / name for name in ("config.json", "vocab.json", SPEAKERS_FILE)]
    return fingerprint("xtts", whole, [model_dir / "model.pth"])


def _to_pcm(audio: Any) -> Pcm:
    if hasattr(audio, "detach"):
        audio = audio.detach().float().cpu().numpy()
    pcm = np.asarray(audio, dtype=np.float32).reshape(-1)
    # HiFi-GAN can overshoot full scale slightly; the protocol promises [-1, 1].
    return np.clip(pcm, -1.0, 1.0)


def _inference_error(exc: Exception) -> TTSError:
    if isinstance(exc, TTSError):
        return exc
    if isinstance(exc, ImportError):
        # coqui-tts imports its per-language text packages (cutlet, pypinyin, ...) lazily.
        return EngineUnavailable(
            f"XTTS is missing a text package: {exc}; install it with: pip install -e .[xtts]"
        )
    return EngineUnavailable(f"XTTS inference failed: {type(exc).__name__}: {exc}")
