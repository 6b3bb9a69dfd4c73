"""Per-row GPT sampling for a batch: the same warpers coqui's ``generate`` runs, vectorized.

coqui's ``Xtts.inference`` samples through Hugging Face ``generate`` with do_sample=True, which
applies, in this order: repetition penalty, temperature, top-k, top-p, then softmax and a draw.
Each row of a batch has its own settings, so the warpers here take one value per row and compute
exactly what transformers' ``RepetitionPenaltyLogitsProcessor``, ``TemperatureLogitsWarper``,
``TopKLogitsWarper`` and ``TopPLogitsWarper`` compute for that row alone (the tests check it).

The draw uses one uniform number per row from that request's own CPU generator, so a seeded
request samples the same tokens whatever else shares its batch, on any device.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from shared.errors import InvalidInput


@dataclass(frozen=True, slots=True)
class SamplingSettings:
    """One request's GPT sampling settings, as ``Xtts.inference`` takes them.

    ``length_penalty`` is absent: Hugging Face applies it only in beam search, which XTTS streaming
    never uses. ``top_k=1`` makes a request deterministic.
    """

    temperature: float = 0.75
    top_k: int = 50
    top_p: float = 0.85
    repetition_penalty: float = 10.0

    def __post_init__(self) -> None:
        # The same bounds transformers' warpers check when they are built.
        if not self.temperature > 0:
            raise InvalidInput(f"temperature must be positive, got {self.temperature}")
        if self.top_k < 0:
            raise InvalidInput(f"top_k must be 0 (off) or more, got {self.top_k}")
        if not 0 <= self.top_p <= 1:
            raise InvalidInput(f"top_p must be within [0, 1], got {self.top_p}")
        if not self.repetition_penalty > 0:
            raise InvalidInput(
                f"repetition_penalty must be positive, got {self.repetition_penalty}"
            )

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any]) -> SamplingSettings:
        """From the keyword arguments ``Xtts.inference`` takes (the engine's sampling kwargs);
        ``length_penalty`` (beam search only) and ``enable_text_splitting`` do not apply."""
        return cls(
            temperature=float(kwargs["temperature"]),
            top_k=int(kwargs["top_k"]),
            top_p=float(kwargs["top_p"]),
            repetition_penalty=float(kwargs["repetition_penalty"]),
        )


@dataclass(frozen=True, slots=True)
class RowSettings:
    """Settings of every row of a batch as device tensors, built once per change of the batch."""

    temperature: torch.Tensor  # (n, 1) float
    top_k: torch.Tensor  # (n, 1) long, already clamped to [1, vocabulary]
    keep_mass: torch.Tensor  # (n, 1) float: 1 - top_p
    top_p_on: torch.Tensor  # (n, 1) bool
    penalty: torch.Tensor  # (n, 1) float

    @classmethod
    def build(
        cls, settings: list[SamplingSettings], vocabulary: int, device: torch.device
    ) -> RowSettings:
        def column(values: list[float], dtype: torch.dtype) -> torch.Tensor:
            return torch.tensor(values, dtype=dtype, device=device).unsqueeze(1)

        # top_k=0 turns top-k off in transformers, the same as keeping the whole vocabulary.
        top_k = [min(s.top_k, vocabulary) if s.top_k else vocabulary for s in settings]
        return cls(
            temperature=column([s.temperature for s in settings], torch.float32),
            top_k=column(top_k, torch.long),
            keep_mass=column([1 - s.top_p for s in settings], torch.float32),
            top_p_on=column([s.top_p < 1.0 for s in settings], torch.bool),
            penalty=column([s.repetition_penalty for s in settings], torch.float32),
        )


def warp(logits: torch.Tensor, seen: torch.Tensor, rows: RowSettings) -> torch.Tensor:
    """Scores after repetition penalty, temperature, top-k and top-p, per row.

    ``logits`` (n, V) float32; ``seen`` (n, V) bool: the tokens each row's ``input_ids`` holds in
    coqui's generate (its prompt placeholders and start token, and every token generated so far).
    """
    penalized = torch.where(logits < 0, logits * rows.penalty, logits / rows.penalty)
    scores = torch.where(seen, penalized, logits) / rows.temperature
    descending = torch.sort(scores, dim=-1, descending=True).values
    kth = descending.gather(1, rows.top_k - 1)
    scores = scores.masked_fill(scores < kth, -float("inf"))
    # Top-p as transformers computes it: over ascending scores, drop the tokens whose cumulative
    # probability stays at or under 1 - top_p, and always keep the most likely one.
    ascending, order = torch.sort(scores, dim=-1, descending=False)
    cumulative = ascending.softmax(dim=-1).cumsum(dim=-1)
    drop_sorted = (cumulative <= rows.keep_mass) & rows.top_p_on
    drop_sorted[:, -1] = False
    drop = drop_sorted.scatter(1, order, drop_sorted)
    return scores.masked_fill(drop, -float("inf"))


def draw(scores: torch.Tensor, generators: list[torch.Generator]) -> torch.Tensor:
    """One token per row from softmax(scores), by inverse CDF with each row's own uniform draw.

    Returns (n,) long on the scores' device. A token of zero probability is never drawn: the
    search finds the first token whose cumulative probability exceeds the draw.
    """
    uniforms = torch.cat([torch.rand(1, generator=g, dtype=torch.float64) for g in generators])
    cdf = scores.softmax(dim=-1).to(torch.float64).cumsum(dim=-1)
    targets = uniforms.to(cdf.device).unsqueeze(1) * cdf[:, -1:]
    tokens = torch.searchsorted(cdf, targets, right=True).squeeze(1)
    return tokens.clamp_(max=scores.shape[-1] - 1)
