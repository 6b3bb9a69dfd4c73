"""The baseline: stock coqui-tts XTTS-v2, served the way coqui's own streaming server serves it.

The model is loaded with coqui's loader and called straight through ``Xtts.inference_stream`` and
``Xtts.inference``, with coqui's default sampling and the same chunk size and token cap as the
engine under test. One lock runs one request at a time, as a stock server must: the model keeps
the prompt of the stream in progress (``gpt_inference.cached_prefix_emb``). It is a separate model
instance from the engine's, so whatever the engine does to its own model (half precision, a
compiled or patched decoder) never leaks into the baseline.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from shared.engines.base import Pcm

if TYPE_CHECKING:
    from TTS.tts.models.xtts import Xtts

LANGUAGE = "en"


@dataclass
class StockXtts:
    model: Xtts
    gpt_cond_latent: Any
    speaker_embedding: Any
    sample_rate: int
    stream_chunk_tokens: int
    # The checkpoint's own bound on generated tokens, before any cap.
    token_bound: int
    lock: threading.Lock = field(default_factory=threading.Lock)

    def stream(self, text: str) -> Iterator[Pcm]:
        """One request's chunks; the lock is taken at the first ``next``, so a caller's wait
        for it counts in its time to first audio."""
        with self.lock:
            chunks = self.model.inference_stream(
                text,
                LANGUAGE,
                self.gpt_cond_latent,
                self.speaker_embedding,
                stream_chunk_size=self.stream_chunk_tokens,
            )
            for chunk in chunks:
                yield _pcm(chunk)

    def synthesize(self, text: str) -> Pcm:
        import torch

        with self.lock, torch.inference_mode():
            out = self.model.inference(text, LANGUAGE, self.gpt_cond_latent, self.speaker_embedding)
        return _pcm(out["wav"])

    @contextmanager
    def capped(self, tokens: int) -> Iterator[None]:
        """Generate ``tokens`` per request inside the block (random weights never stop early)."""
        gpt = self.model.gpt
        before = gpt.max_gen_mel_tokens
        with self.lock:
            gpt.max_gen_mel_tokens = min(self.token_bound, tokens)
        try:
            yield
        finally:
            with self.lock:
                gpt.max_gen_mel_tokens = before


def load_stock(
    model_dir: Path, *, device: str, max_audio_tokens: int, stream_chunk_tokens: int
) -> StockXtts:
    """coqui's documented load (config, ``load_checkpoint``, ``.to(device)``) and its first
    built-in speaker; no warm-up, as coqui's server does none."""
    from TTS.tts.configs.xtts_config import XttsConfig
    from TTS.tts.models.xtts import Xtts

    config = XttsConfig()
    config.load_json(str(model_dir / "config.json"))
    model = Xtts(config)
    model.load_checkpoint(config, checkpoint_dir=str(model_dir), eval=True)
    model.to(device)
    speakers = model.speaker_manager.speakers
    speaker = speakers[next(iter(speakers))]
    bound = int(model.gpt.max_gen_mel_tokens)
    model.gpt.max_gen_mel_tokens = min(bound, max_audio_tokens)
    return StockXtts(
        model=model,
        gpt_cond_latent=speaker["gpt_cond_latent"].to(device),
        speaker_embedding=speaker["speaker_embedding"].to(device),
        sample_rate=int(config.model_args.output_sample_rate),
        stream_chunk_tokens=stream_chunk_tokens,
        token_bound=bound,
    )


def _pcm(audio: Any) -> Pcm:
    # What a stock server does with each chunk before sending it: bring it to the host.
    if hasattr(audio, "detach"):
        audio = audio.detach().float().cpu().numpy()
    return np.asarray(audio, dtype=np.float32).reshape(-1)
