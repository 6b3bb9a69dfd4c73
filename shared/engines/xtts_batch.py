"""Batched GPT decode steps for concurrent XTTS requests: ``BatchedGpt``.

The GPU reads all GPT weights once per decode step whether it advances one sequence or many,
so running the steps of N active requests as one batch costs little more than one request's.
Requests join and leave between steps; each keeps its own cache row, positions, sampling
settings, random generator and stop, so a request's tokens do not depend on what shares its
batch (exactly, with deterministic sampling such as top_k=1).

Each step hands back, per request, the sampled token and its latent: the GPT hidden state after
``ln_f`` and ``final_norm`` at the position that predicted the token. That is what coqui's
``inference`` computes for the same codes (``gpt(..., return_latent=True)``) and feeds HiFi-GAN,
and what its ``inference_stream`` yields beside each token.

Not thread-safe: one thread (the engine's) calls ``join``, ``step`` and ``leave``.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from shared.engines.xtts_batch_forward import RowCache, RowForward
from shared.engines.xtts_batch_sampling import RowSettings, SamplingSettings, draw, warp
from shared.errors import InternalError, InvalidInput

# coqui's compute_embeddings fills the prompt's places in ``input_ids`` with this token id, and
# Hugging Face's repetition penalty counts everything in ``input_ids``: so does this module.
PROMPT_PLACEHOLDER_TOKEN = 1


@dataclass(frozen=True, slots=True)
class GptRequest:
    """One segment to decode.

    ``text_tokens``: ``tokenizer.encode(text.strip().lower(), lang=language)`` as coqui's
    ``inference`` makes them (the language token included; start and stop are added here).
    ``cond_latent``: the voice's ``gpt_cond_latent``, (1, C, D). ``seed`` fixes the sampling
    draws; ``None`` draws a fresh one.
    """

    text_tokens: Sequence[int]
    cond_latent: torch.Tensor
    max_new_tokens: int
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    seed: int | None = None


@dataclass(frozen=True, slots=True)
class StepOut:
    """One step of one request. ``latent`` (1, D) is the HiFi-GAN input for ``token``, shaped as
    coqui's stream generator yields it; the last step (``stopped``) still carries one, as coqui
    decodes the stop token's latent too."""

    token: int
    latent: torch.Tensor
    stopped: bool


@dataclass(slots=True)
class _Row:
    slot: int
    prompt: int  # cache positions the prompt takes
    max_new: int
    sampling: SamplingSettings
    generator: torch.Generator
    fed: int = 0  # audio tokens fed so far: the next token's mel position
    next_token: int = 0


class BatchedGpt:
    """Up to ``max_batch`` XTTS GPT decodes advanced together, one token each per ``step``.

    Built from a loaded coqui ``Xtts``'s ``gpt`` (``model.gpt``, in eval mode, on ``device``);
    ``gpt.max_gen_mel_tokens`` (the engine's token cap) is read once, here, as the most a request
    may ask for. ``max_len`` bounds prompt plus generated tokens per request; the default fits
    the longest text XTTS accepts and that many tokens. The cache is allocated once, at
    ``max_batch`` x ``max_len`` (XTTS-v2 at fp16: ~123 KB per position).
    """

    def __init__(
        self,
        gpt: nn.Module,
        *,
        device: str | torch.device,
        max_batch: int,
        max_len: int | None = None,
    ) -> None:
        if max_batch < 1:
            raise InvalidInput(f"max_batch must be at least 1, got {max_batch}")
        self._gpt = gpt
        self._device = torch.device(device)
        self._forward = RowForward(gpt.gpt)
        self.max_batch = max_batch
        self._max_new = int(gpt.max_gen_mel_tokens)
        self._max_text = int(gpt.text_pos_embedding.seq_len)
        if max_len is None:
            max_len = int(gpt.max_prompt_tokens) + self._max_text + self._max_new + 1
        weight = gpt.mel_head.weight
        self._vocabulary = int(weight.shape[0])
        with torch.inference_mode():
            self._cache = RowCache(
                layers=self._forward.layers,
                rows=max_batch,
                heads=self._forward.heads,
                length=max_len,
                head_dim=self._forward.head_dim,
                dtype=weight.dtype,
                device=self._device,
            )
            self._seen = torch.zeros(
                max_batch, self._vocabulary, dtype=torch.bool, device=self._device
            )
        self._rows: list[_Row] = []
        self._settings: RowSettings | None = None  # rebuilt when the batch changes
        self._next_slot = 0

    @property
    def active(self) -> int:
        """Requests decoding now."""
        return len(self._rows)

    @property
    def free(self) -> int:
        """Requests that can join before the batch is full."""
        return self.max_batch - len(self._rows)

    def join(self, request: GptRequest) -> int:
        """Prefill ``request``'s prompt alone into a free cache row; it takes part in every
        ``step`` from the next one. Returns its slot id (never reused)."""
        prompt = self._check(request)
        if not self.free:
            raise InternalError(f"the GPT batch is full ({self.max_batch}); join after a leave")
        row = len(self._rows)
        with torch.inference_mode():
            self._forward.prefill(self._cache, row, self._prompt_embedding(request))
            self._seen[row] = False
            self._seen[row, [PROMPT_PLACEHOLDER_TOKEN, int(self._gpt.start_audio_token)]] = True
        generator = torch.Generator(device="cpu")
        generator.manual_seed(secrets.randbits(63) if request.seed is None else request.seed)
        slot = self._next_slot
        self._next_slot += 1
        self._rows.append(
            _Row(
                slot=slot,
                prompt=prompt,
                max_new=request.max_new_tokens,
                sampling=request.sampling,
                generator=generator,
                next_token=int(self._gpt.start_audio_token),
            )
        )
        self._settings = None
        return slot

    def step(self) -> dict[int, StepOut]:
        """One decode step for every active request, as one batched forward.

        A request that sampled the stop token or reached its ``max_new_tokens`` is reported
        ``stopped`` and leaves the batch by itself.
        """
        if not self._rows:
            return {}
        gpt = self._gpt
        with torch.inference_mode():
            tokens = self._column([row.next_token for row in self._rows])
            mel_positions = self._column([row.fed for row in self._rows])
            positions = self._column([row.prompt + row.fed for row in self._rows])
            span = max(row.prompt + row.fed for row in self._rows) + 1
            # Each row's own mel position: XTTS adds them to the inputs, not inside GPT-2.
            inputs = gpt.mel_embedding(tokens) + gpt.mel_pos_embedding.emb(mel_positions)
            hidden = self._forward.step(self._cache, inputs.unsqueeze(1), positions, span)
            latents = gpt.final_norm(hidden[:, 0])
            logits = gpt.mel_head(latents).float()
            count = len(self._rows)
            scores = warp(logits, self._seen[:count], self._row_settings())
            sampled = draw(scores, [row.generator for row in self._rows])
            self._seen[torch.arange(count, device=self._device), sampled] = True
        stop = int(gpt.stop_audio_token)
        out: dict[int, StepOut] = {}
        for index, (row, token) in enumerate(zip(self._rows, sampled.tolist(), strict=True)):
            row.fed += 1
            row.next_token = token
            out[row.slot] = StepOut(
                token=token,
                latent=latents[index : index + 1],
                stopped=token == stop or row.fed >= row.max_new,
            )
        for slot, result in out.items():
            if result.stopped:
                self.leave(slot)
        return out

    def leave(self, slot: int) -> None:
        """Drop ``slot`` between steps (cancelled or done); the others are untouched.

        Leaving twice, or after stopping, is a no-op, so a cancel racing a stop is harmless.
        """
        index = next((i for i, row in enumerate(self._rows) if row.slot == slot), None)
        if index is None:
            return
        last = len(self._rows) - 1
        if index != last:
            moved = self._rows[last]
            with torch.inference_mode():
                self._cache.move_row(last, index, moved.prompt + moved.fed)
                self._seen[index] = self._seen[last]
            self._rows[index] = moved
        self._rows.pop()
        self._settings = None

    def _check(self, request: GptRequest) -> int:
        """Validate ``request`` before it takes a row; returns its prompt length in positions."""
        if not 1 <= request.max_new_tokens <= self._max_new:
            raise InvalidInput(
                f"max_new_tokens must be within 1..{self._max_new}, got {request.max_new_tokens}"
            )
        text = len(request.text_tokens) + 2  # with the start and stop text tokens
        if not request.text_tokens or text > self._max_text:
            raise InvalidInput(
                f"a segment takes 1..{self._max_text - 2} text tokens, got "
                f"{len(request.text_tokens)}"
            )
        latent = request.cond_latent
        width = int(self._gpt.model_dim)
        if latent.ndim != 3 or latent.shape[0] != 1 or latent.shape[2] != width:
            raise InvalidInput(f"cond_latent must be (1, C, {width}), got {tuple(latent.shape)}")
        prompt = latent.shape[1] + text
        if prompt + request.max_new_tokens > self._cache.length:
            raise InvalidInput(
                f"prompt ({prompt}) plus max_new_tokens ({request.max_new_tokens}) exceed this "
                f"batch's max_len ({self._cache.length})"
            )
        return prompt

    def _prompt_embedding(self, request: GptRequest) -> torch.Tensor:
        """The voice's latents then the text, as coqui's ``GPT.compute_embeddings`` builds them
        (without storing them in the shared model, which other requests use too)."""
        gpt = self._gpt
        text = [int(gpt.start_text_token), *request.text_tokens, int(gpt.stop_text_token)]
        ids = torch.tensor([text], dtype=torch.long, device=self._device)
        embedded = gpt.text_embedding(ids) + gpt.text_pos_embedding(ids)
        latent = request.cond_latent.to(device=self._device, dtype=embedded.dtype)
        return torch.cat([latent, embedded], dim=1)

    def _column(self, values: list[int]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.long, device=self._device)

    def _row_settings(self) -> RowSettings:
        if self._settings is None:
            self._settings = RowSettings.build(
                [row.sampling for row in self._rows], self._vocabulary, self._device
            )
        return self._settings
