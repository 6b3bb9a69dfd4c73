"""The streaming HiFi-GAN decode against coqui's whole decode of the same latents.

The test checkpoint's decoder is XTTS's real HiFi-GAN architecture with random weights: equality
of two decodes of the same latents does not depend on what the weights are. Tolerance: every
sample within 1e-5 of full scale (-100 dBFS; float rounding, measured ~1e-7), at every chunk
boundary and everywhere else.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from shared.engines.base import Engine
from shared.engines.xtts import XttsEngine
from shared.engines.xtts_vocoder import BatchedVocoder, lookahead_latents

TOLERANCE = 1e-5
# One GPT latent is 1024 samples at 22,050 Hz, so this many at the decoder's 24 kHz output.
SAMPLES_PER_LATENT = 1024 * 24000 / 22050


@pytest.fixture(scope="module")
def decoder(xtts_engine: Engine) -> tuple[Any, torch.Tensor, int]:
    """The engine's HiFi-GAN, a voice's speaker embedding, and the GPT latent width."""
    assert isinstance(xtts_engine, XttsEngine)
    model = xtts_engine._model
    voice = xtts_engine.voice(xtts_engine.default_voice)
    return model.hifigan_decoder, voice.conditioning.speaker_embedding, model.args.decoder_input_dim  # type: ignore[attr-defined]


def _latents(count: int, width: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(1, count, width, generator=generator)


def _whole(decoder: Any, g: torch.Tensor, latents: torch.Tensor, length_scale: float) -> np.ndarray:
    """As coqui's ``Xtts.inference`` decodes a segment: the speed change, then HiFi-GAN."""
    if length_scale != 1.0:
        latents = F.interpolate(
            latents.transpose(1, 2), scale_factor=length_scale, mode="linear"
        ).transpose(1, 2)
    return decoder(latents, g=g).reshape(-1).numpy()


class OneSegment:
    """A ``BatchedVocoder`` of one row: how a lone stream decodes a segment."""

    def __init__(self, decoder: Any, g: torch.Tensor, *, length_scale: float = 1.0) -> None:
        self._vocoder = BatchedVocoder(decoder)
        self._row = self._vocoder.open(g, length_scale=length_scale)

    def push(self, latents: torch.Tensor, *, final: bool = False) -> torch.Tensor:
        (pcm,) = self._vocoder.push([(self._row, latents, final)])
        return pcm


def _streamed(
    decoder: Any, g: torch.Tensor, latents: torch.Tensor, chunk: int, length_scale: float
) -> list[np.ndarray]:
    stream = OneSegment(decoder, g, length_scale=length_scale)
    total = latents.shape[1]
    chunks = []
    for start in range(0, total, chunk):
        end = min(total, start + chunk)
        chunks.append(stream.push(latents[:, start:end], final=end == total).numpy())
    return chunks


@pytest.mark.parametrize(
    ("count", "chunk", "length_scale"),
    [
        *((count, chunk, 1.0) for count in (1, 2, 9, 26) for chunk in (1, 4, 13)),
        # A speed change resamples the latents first (speed 1.3: shorter, 0.8: longer).
        (17, 3, 1 / 1.3),
        (17, 5, 1 / 0.8),
    ],
)
def test_streamed_decode_matches_the_whole_decode_at_every_chunk(
    decoder: tuple[Any, torch.Tensor, int], count: int, chunk: int, length_scale: float
) -> None:
    hifigan, g, width = decoder
    latents = _latents(count, width, seed=count * 100 + chunk)
    with torch.inference_mode():
        whole = _whole(hifigan, g, latents, length_scale)
        chunks = _streamed(hifigan, g, latents, chunk, length_scale)
    streamed = np.concatenate(chunks)
    assert streamed.shape == whole.shape
    start = 0
    for index, piece in enumerate(chunks):
        # Each chunk against the same samples of the whole decode: its boundaries included.
        expected = whole[start : start + piece.size]
        assert np.abs(piece - expected).max(initial=0.0) < TOLERANCE, f"chunk {index} at {start}"
        start += piece.size
    error = streamed.astype(np.float64) - whole
    snr_db = 10 * np.log10(np.sum(whole.astype(np.float64) ** 2) / max(np.sum(error**2), 1e-30))
    assert snr_db > 80


def test_audio_is_held_back_no_more_than_the_lookahead(
    decoder: tuple[Any, torch.Tensor, int],
) -> None:
    """What the stream loop relies on to size its first chunk."""
    hifigan, g, width = decoder
    lookahead = lookahead_latents(hifigan)
    assert 2 <= lookahead <= 8  # ~150 ms each side of HiFi-GAN's receptive field, plus resampling
    latents = _latents(30, width, seed=7)
    stream = OneSegment(hifigan, g)
    emitted = 0
    with torch.inference_mode():
        for pushed in range(1, 30):
            emitted += stream.push(latents[:, pushed - 1 : pushed]).numel()
            assert emitted >= (pushed - lookahead) * SAMPLES_PER_LATENT, pushed
            # ...and nothing is emitted that a later latent could still change.
            assert emitted <= pushed * SAMPLES_PER_LATENT


def test_a_flushed_decoder_refuses_more_latents(decoder: tuple[Any, torch.Tensor, int]) -> None:
    hifigan, g, width = decoder
    stream = OneSegment(hifigan, g)
    with torch.inference_mode():
        stream.push(_latents(3, width, seed=1), final=True)
        with pytest.raises(RuntimeError, match="flushed"):
            stream.push(_latents(1, width, seed=2))


def test_segments_decoded_together_each_match_their_own_whole_decode(
    decoder: tuple[Any, torch.Tensor, int], xtts_engine: Engine
) -> None:
    """Three segments of different lengths, chunkings, speeds and speakers, pushed through one
    ``BatchedVocoder``: each round decodes whichever of them has latents left as one batch
    (rows of different widths), and a segment that ends leaves the others mid-stream."""
    hifigan, _, width = decoder
    assert isinstance(xtts_engine, XttsEngine)
    speakers = [voice.conditioning.speaker_embedding for voice in xtts_engine.voices()]  # type: ignore[attr-defined]
    # (latents, chunk, length_scale, speaker)
    plans = [(26, 4, 1.0, 0), (9, 2, 1 / 1.3, 1 % len(speakers)), (17, 7, 1 / 0.8, 0)]
    vocoder = BatchedVocoder(hifigan)
    latents = [_latents(n, width, seed=500 + n) for n, _, _, _ in plans]
    with torch.inference_mode():
        rows = [
            vocoder.open(speakers[speaker], length_scale=scale) for _, _, scale, speaker in plans
        ]
        chunks: list[list[np.ndarray]] = [[] for _ in plans]
        sent = [0 for _ in plans]
        batch_sizes = []
        while any(sent[i] < plan[0] for i, plan in enumerate(plans)):
            pushes, members = [], []
            for index, (count, chunk, _, _) in enumerate(plans):
                if sent[index] < count:
                    end = min(count, sent[index] + chunk)
                    pushes.append((rows[index], latents[index][:, sent[index] : end], end == count))
                    members.append(index)
                    sent[index] = end
            batch_sizes.append(len(pushes))
            for index, pcm in zip(members, vocoder.push(pushes), strict=True):
                chunks[index].append(pcm.numpy())
        wholes = [
            _whole(hifigan, speakers[speaker], one, scale)
            for one, (_, _, scale, speaker) in zip(latents, plans, strict=True)
        ]
    assert max(batch_sizes) == 3 and min(batch_sizes) == 1
    for index, whole in enumerate(wholes):
        streamed = np.concatenate(chunks[index])
        assert streamed.shape == whole.shape, index
        assert np.abs(streamed - whole).max() < TOLERANCE, index


def test_a_batch_refuses_a_segment_twice(decoder: tuple[Any, torch.Tensor, int]) -> None:
    hifigan, g, width = decoder
    vocoder = BatchedVocoder(hifigan)
    with torch.inference_mode():
        row = vocoder.open(g)
        with pytest.raises(ValueError, match="twice"):
            vocoder.push([(row, _latents(2, width, seed=3), False)] * 2)


def test_the_decode_bench_runs_and_reports_every_batch_size(tiny_xtts_dir: Path) -> None:
    # Imported here: the bench builds on other bench modules this file's other tests do not need.
    from bench import xtts_vocoder_batch as vocoder_bench

    out = io.StringIO()
    argv = ["--xtts-dir", str(tiny_xtts_dir), "--device", "cpu", "--batches", "1,2"]
    with contextlib.redirect_stdout(out):
        vocoder_bench.main([*argv, "--latents", "6", "--chunk", "3", "--runs", "1"])
    rows = re.findall(r"^\| (\d+) \|(?: [\d.]+x? \|){5}$", out.getvalue(), re.M)
    assert rows == ["1", "2"]
