"""XTTS's GPT-2 stack over per-row key/value caches: one sequence per row, each at its own length.

Hugging Face's GPT2Model keeps one cache length for a whole batch, so sequences of different
lengths would need padding and re-alignment at every step. Here each row of a preallocated cache
holds one sequence from position 0; a decode step writes each row's new key/value at that row's
own length and masks the positions past it. XTTS's GPT has no position embedding inside the
transformer (coqui replaces ``wpe`` with zeros and adds its own text and mel position embeddings
to the inputs), so a row's position matters only through its inputs and its mask.

The layer weights are the model's own modules (``ln_1``, ``attn.c_attn``, ``attn.c_proj``,
``ln_2``, ``mlp``, ``ln_f``); only the attention around the cache is written here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class RowCache:
    """Keys and values of every layer: (layers, rows, heads, length, head_dim) each."""

    def __init__(
        self,
        *,
        layers: int,
        rows: int,
        heads: int,
        length: int,
        head_dim: int,
        dtype: torch.dtype,
        device: torch.device,
    ) -> None:
        shape = (layers, rows, heads, length, head_dim)
        self.keys = torch.zeros(shape, dtype=dtype, device=device)
        self.values = torch.zeros(shape, dtype=dtype, device=device)
        self.length = length

    def move_row(self, source: int, target: int, used: int) -> None:
        """Copy the first ``used`` positions of row ``source`` into row ``target``."""
        self.keys[:, target, :, :used] = self.keys[:, source, :, :used]
        self.values[:, target, :, :used] = self.values[:, source, :, :used]


class RowForward:
    """Prefill one row, or advance every row one token, through the GPT-2 blocks of ``gpt``."""

    def __init__(self, transformer: nn.Module) -> None:
        self._blocks = list(transformer.h)
        self._final = transformer.ln_f
        first = self._blocks[0].attn
        self.heads = int(first.num_heads)
        self.head_dim = int(first.head_dim)
        self.layers = len(self._blocks)
        config = transformer.config
        if getattr(config, "add_cross_attention", False):
            raise ValueError("XTTS's GPT has no cross-attention; this stack cannot run one")
        # As GPT2Attention scales: 1/sqrt(head_dim), optionally divided by the layer number.
        self._scales = [_scale(config, self.head_dim, layer) for layer in range(len(self._blocks))]

    def prefill(self, cache: RowCache, row: int, inputs: torch.Tensor) -> torch.Tensor:
        """Run ``inputs`` (1, P, D) causally from position 0 into ``row``; ln_f(h) (1, P, D)."""
        hidden = inputs
        used = inputs.shape[1]
        for layer, block in enumerate(self._blocks):
            query, key, value = self._qkv(block, hidden)
            cache.keys[layer, row, :, :used] = key[0]
            cache.values[layer, row, :, :used] = value[0]
            attended = F.scaled_dot_product_attention(
                query, key, value, is_causal=True, scale=self._scales[layer]
            )
            hidden = self._finish(block, hidden, attended)
        return self._final(hidden)

    def step(
        self, cache: RowCache, inputs: torch.Tensor, positions: torch.Tensor, span: int
    ) -> torch.Tensor:
        """One token for rows 0..n-1: ``inputs`` (n, 1, D) go in at ``positions`` (n,) long.

        ``span`` is max(positions) + 1: attention reads that much of every row, each row masked
        to its own length. Returns ln_f(h), (n, 1, D).
        """
        count = inputs.shape[0]
        rows = torch.arange(count, device=inputs.device)
        visible = torch.arange(span, device=inputs.device).unsqueeze(0) <= positions.unsqueeze(1)
        mask = visible[:, None, None, :]
        hidden = inputs
        for layer, block in enumerate(self._blocks):
            query, key, value = self._qkv(block, hidden)
            keys, values = cache.keys[layer], cache.values[layer]
            keys[rows, :, positions] = key[:, :, 0]
            values[rows, :, positions] = value[:, :, 0]
            attended = F.scaled_dot_product_attention(
                query,
                keys[:count, :, :span],
                values[:count, :, :span],
                attn_mask=mask,
                scale=self._scales[layer],
            )
            hidden = self._finish(block, hidden, attended)
        return self._final(hidden)

    def _qkv(
        self, block: nn.Module, hidden: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        batch, length, width = hidden.shape
        mixed = block.attn.c_attn(block.ln_1(hidden))
        query, key, value = mixed.split(width, dim=2)
        shape = (batch, length, self.heads, self.head_dim)
        return tuple(part.view(shape).transpose(1, 2) for part in (query, key, value))  # type: ignore[return-value]

    def _finish(
        self, block: nn.Module, hidden: torch.Tensor, attended: torch.Tensor
    ) -> torch.Tensor:
        batch, _, length, _ = attended.shape
        merged = attended.transpose(1, 2).reshape(batch, length, self.heads * self.head_dim)
        hidden = hidden + block.attn.c_proj(merged)
        return hidden + block.mlp(block.ln_2(hidden))


def _scale(config: object, head_dim: int, layer: int) -> float:
    scale = head_dim**-0.5 if getattr(config, "scale_attn_weights", True) else 1.0
    if getattr(config, "scale_attn_by_inverse_layer_idx", False):
        scale /= float(layer + 1)
    return scale
