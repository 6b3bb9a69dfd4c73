"""XTTS's HiFi-GAN decoder run incrementally: each latent decoded once, whatever the chunking,
and the chunks of concurrent segments decoded together.

coqui's ``inference_stream`` re-decodes every latent so far at each chunk (quadratic in the
segment's length). The decoder is a stack of linear resamplers and non-causal convolutions, so
each layer here keeps, per segment, the tail of its input that its next outputs still need, and
emits only the outputs that no later input can change; the final push pads the end with the
zeros a whole decode pads with. Every output sample is computed once, from the same inputs as a
whole decode: the stream equals ``HifiDecoder.forward`` of the same latents up to float rounding
(tests measure it), at the cost of the whole decode plus a few kernel calls per chunk.

Several segments' chunks (``BatchedVocoder.push``) go through each convolution as one batch,
each row zero-padded on the right to the longest: a convolution's valid outputs never read past
their own row's end, so padding changes none of them, and the weights are read once per layer
for all the rows instead of once per row.

The price of a non-causal decoder is lookahead: audio lags the latents by the right half of its
receptive field (``lookahead_latents``: 5 latents = 232 ms for XTTS-v2's decoder), held back until
later latents arrive.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch
    from TTS.tts.layers.xtts.hifigan_decoder import HifiDecoder

# coqui's HifiganGenerator: leaky ReLU slope inside the network, torch's default before conv_post.
_LRELU_SLOPE = 0.1
_POST_LRELU_SLOPE = 0.01


class _Resample:
    """``F.interpolate(x, scale_factor=scale, mode="linear")`` over a stream, computed with
    torch's own index arithmetic (float32 source positions, clamped at both ends), so each
    output equals the whole-sequence one and is emitted once both its inputs exist. One per
    segment: cheap index work, not batched."""

    def __init__(self, scale: float) -> None:
        self._scale = scale
        # torch turns the scale factor into 1/scale in double, then into the float it indexes with.
        self._step = np.float32(1.0 / scale)
        self._kept: torch.Tensor | None = None  # inputs [base, seen), [1, C, n]
        self._base = 0
        self._seen = 0
        self._emitted = 0

    def push(self, x: torch.Tensor, final: bool) -> torch.Tensor:
        import torch

        self._kept = x if self._kept is None else torch.cat([self._kept, x], dim=-1)
        self._seen += x.shape[-1]
        if math.floor(float(self._seen) * self._scale) == self._seen:
            # torch copies its input when the output is as long (a short sequence, a scale just
            # above 1): hold everything until the length rules that out, or the end says so.
            return self._kept if final else self._kept[..., :0]
        if final:
            end = math.floor(float(self._seen) * self._scale)
        else:
            end = math.floor((self._seen + 1) * self._scale) + 1
        index = np.arange(self._emitted, max(end, self._emitted), dtype=np.float32)
        source = np.maximum(self._step * (index + np.float32(0.5)) - np.float32(0.5), 0)
        lower = np.floor(source).astype(np.int64)
        if not final:
            # An output needs its upper neighbour; until the end, that input must have arrived.
            ready = lower < self._seen - 1
            lower, source = lower[ready], source[ready]
        if lower.size == 0:
            return self._kept[..., :0]
        upper = np.minimum(lower + 1, self._seen - 1)
        weight = torch.from_numpy((source - lower).astype(np.float32)).to(self._kept)
        low = torch.from_numpy(lower - self._base).to(self._kept.device)
        high = torch.from_numpy(upper - self._base).to(self._kept.device)
        out = (
            self._kept.index_select(-1, low) * (1 - weight)
            + self._kept.index_select(-1, high) * weight
        )
        self._emitted += lower.size
        keep_from = int(lower[-1])  # the next output's lower input is at least this one
        self._kept = self._kept[..., keep_from - self._base :]
        self._base = keep_from
        return out


def _width(part: torch.Tensor | int) -> int:
    return part if isinstance(part, int) else part.shape[-1]


def _join(
    heads: Sequence[torch.Tensor | int],
    xs: Sequence[torch.Tensor],
    finals: Sequence[bool],
    closing: int,
    slope: float | None,
) -> tuple[torch.Tensor, list[int]]:
    """Each row's head (its kept tail, or that many zeros), its new inputs and, at its end,
    ``closing`` zeros, as one batch [B, C, longest] zero-padded on the right, with the leaky
    ReLU applied in place to the new inputs only: kept tails are stored activated, so each
    sample is activated once, as in the whole decode. Returns the batch and each row's length.
    """
    import torch.nn.functional as F

    batch_parts = [
        [head, x, closing] if final else [head, x]
        for head, x, final in zip(heads, xs, finals, strict=True)
    ]
    lengths = [sum(_width(part) for part in parts) for parts in batch_parts]
    batch = xs[0].new_empty(len(xs), xs[0].shape[1], max(lengths))
    for index, parts in enumerate(batch_parts):
        at = 0
        for part in parts:
            width = _width(part)
            if not width:
                continue
            target = batch[index, :, at : at + width]
            if isinstance(part, int):
                target.zero_()
            else:
                target.copy_(part[0])
            at += width
        if at < batch.shape[-1]:
            batch[index, :, at:].zero_()
        if slope is not None and xs[index].shape[-1]:
            start = _width(heads[index])
            F.leaky_relu_(batch[index, :, start : start + xs[index].shape[-1]], slope)
    return batch, lengths


class VocoderRow:
    """One segment's place in a ``BatchedVocoder``: every layer's pending context for it, its
    speed's resampling and its speaker conditioning. Made by ``BatchedVocoder.open``."""

    def __init__(self, states: list[Any], resamplers: list[_Resample], conds: list[Any]) -> None:
        self.states = states
        self.resamplers = resamplers
        self.conds = conds  # [1, C, 1] per conditioned layer, or None
        self.done = False


class _Layout:
    """Hands each stateful layer a slot in every row's ``states``."""

    def __init__(self) -> None:
        self.factories: list[Callable[[], Any]] = []

    def slot(self, factory: Callable[[], Any]) -> int:
        self.factories.append(factory)
        return len(self.factories) - 1


class _ConvState:
    __slots__ = ("tail",)

    def __init__(self) -> None:
        self.tail: torch.Tensor | int | None = None  # the last 2 x pad inputs, activated


class _Conv:
    """A same-padded ``Conv1d`` over streams (after an optional leaky ReLU): zeros before the
    start and after the end, each row's input tail kept for its next outputs."""

    def __init__(self, conv: torch.nn.Conv1d, layout: _Layout, slope: float | None = None) -> None:
        self._weight, self._bias = conv.weight.detach(), conv.bias
        self._dilation = conv.dilation[0]
        self._pad = int(conv.padding[0])  # type: ignore[index]
        if 2 * self._pad != self._dilation * (conv.kernel_size[0] - 1) or conv.stride[0] != 1:
            raise ValueError(f"not a same-padded stride-1 convolution: {conv}")
        self._slope = slope
        self._slot = layout.slot(_ConvState)

    def push(
        self,
        rows: Sequence[VocoderRow],
        xs: Sequence[torch.Tensor],
        finals: Sequence[bool],
        add: torch.Tensor | None = None,
    ) -> list[torch.Tensor]:
        """Each row's outputs for its new inputs ``xs``; ``add`` ([B, C, 1]) is added to them."""
        import torch.nn.functional as F

        pad = self._pad
        states: list[_ConvState] = [row.states[self._slot] for row in rows]
        heads = [pad if state.tail is None else state.tail for state in states]
        batch, lengths = _join(heads, xs, finals, pad, self._slope)
        for index, (state, length) in enumerate(zip(states, lengths, strict=True)):
            # A copy: a view would keep the whole batch of this call alive until the next.
            state.tail = batch[index : index + 1, :, max(0, length - 2 * pad) : length].clone()
        if batch.shape[-1] <= 2 * pad:
            return [batch.new_zeros(1, self._weight.shape[0], 0) for _ in rows]
        y = F.conv1d(batch, self._weight, self._bias, dilation=self._dilation)
        if add is not None:
            y += add
        return [y[i : i + 1, :, : max(0, n - 2 * pad)] for i, n in enumerate(lengths)]


class _ConvTransposeState:
    __slots__ = ("emitted", "kept", "seen", "start")

    def __init__(self) -> None:
        self.kept: torch.Tensor | int | None = None
        self.start = 0  # the global index of the first kept input (negative: leading zeros)
        self.seen = 0
        self.emitted = 0


class _ConvTranspose:
    """A leaky ReLU then a ``ConvTranspose1d`` upsampler over streams: output ``t`` of a row is
    emitted once every input that reaches it has arrived; inputs before the start and after
    the end are zeros."""

    def __init__(self, conv: torch.nn.ConvTranspose1d, layout: _Layout, slope: float) -> None:
        self._weight, self._bias = conv.weight.detach(), conv.bias
        self._stride, self._kernel = conv.stride[0], conv.kernel_size[0]
        self._pad = int(conv.padding[0])  # type: ignore[index]
        self._slope = slope
        self._slot = layout.slot(_ConvTransposeState)

    def push(
        self,
        rows: Sequence[VocoderRow],
        xs: Sequence[torch.Tensor],
        finals: Sequence[bool],
        add: torch.Tensor | None = None,
    ) -> list[torch.Tensor]:
        import torch.nn.functional as F

        u, k, pad = self._stride, self._kernel, self._pad
        states: list[_ConvTransposeState] = [row.states[self._slot] for row in rows]
        for state in states:
            if state.kept is None:
                zeros = max(0, math.ceil((k - pad) / u) - 1)  # so output 0 has all its inputs
                state.kept, state.start = zeros, -zeros
        heads = [state.kept for state in states]
        inputs, lengths = _join(heads, xs, finals, math.ceil(pad / u), self._slope)
        spans = []
        for index, (state, x, last) in enumerate(zip(states, xs, finals, strict=True)):
            state.seen += x.shape[-1]
            end = (state.start + lengths[index]) * u - pad
            if last:
                end = min(end, (state.seen - 1) * u - 2 * pad + k)  # ConvTranspose1d's length
            # The first input the next output needs; nothing before it is read again.
            keep_from = max(state.start, math.ceil((end + pad - k + 1) / u))
            width = _width(heads[index]) + x.shape[-1]  # without the closing zeros
            offset = state.start * u - pad  # the global index of y[..., 0]
            spans.append((state.emitted - offset, max(end, state.emitted) - offset))
            state.emitted = max(end, state.emitted)
            state.kept = inputs[index : index + 1, :, keep_from - state.start : width].clone()
            state.start = keep_from
        if all(stop <= begin for begin, stop in spans):
            return [inputs.new_zeros(1, self._weight.shape[1], 0) for _ in rows]
        y = F.conv_transpose1d(inputs, self._weight, self._bias, stride=u)
        if add is not None:
            y += add
        return [y[i : i + 1, :, begin:stop] for i, (begin, stop) in enumerate(spans)]


class _Fifo:
    """A stream's samples not yet used, kept as the tensors they came in (no copies)."""

    def __init__(self) -> None:
        self._parts: list[torch.Tensor] = []
        self.size = 0

    def append(self, x: torch.Tensor) -> None:
        if x.shape[-1]:
            self._parts.append(x)
            self.size += x.shape[-1]

    def add_into(self, out: torch.Tensor) -> None:
        """Add the next ``out.shape[-1]`` samples into ``out`` in place, and drop them."""
        at = 0
        while at < out.shape[-1]:
            part = self._parts[0]
            used = min(part.shape[-1], out.shape[-1] - at)
            out[..., at : at + used] += part[..., :used]
            at += used
            if used == part.shape[-1]:
                self._parts.pop(0)
            else:  # a copy of the few left, not a view that keeps the whole chunk alive
                self._parts[0] = part[..., used:].clone()
        self.size -= at


class _ResBlock:
    """coqui's ResBlock1: three (lrelu, dilated conv, lrelu, conv) branches, each added back
    onto its input, which waits in a per-row FIFO for the branch's delayed output."""

    def __init__(self, block: torch.nn.Module, layout: _Layout) -> None:
        self._layers = [
            (
                _Conv(first, layout, _LRELU_SLOPE),
                _Conv(second, layout, _LRELU_SLOPE),
                layout.slot(_Fifo),
            )
            for first, second in zip(block.convs1, block.convs2, strict=True)  # type: ignore[arg-type]
        ]

    def push(
        self, rows: Sequence[VocoderRow], xs: list[torch.Tensor], finals: Sequence[bool]
    ) -> list[torch.Tensor]:
        for first, second, slot in self._layers:
            waiting: list[_Fifo] = [row.states[slot] for row in rows]
            for fifo, x in zip(waiting, xs, strict=True):
                fifo.append(x)
            xs = second.push(rows, first.push(rows, xs, finals), finals)  # fresh: safe to add into
            for fifo, x in zip(waiting, xs, strict=True):
                fifo.add_into(x)
        return xs


def _mean(fifos: list[_Fifo], parts: list[torch.Tensor]) -> torch.Tensor:
    """The mean of streams of the same positions arriving with different delays."""
    for fifo, part in zip(fifos, parts, strict=True):
        fifo.append(part)
    ready = min(fifo.size for fifo in fifos)
    out = parts[0].new_zeros(*parts[0].shape[:-1], ready)
    for fifo in fifos:
        fifo.add_into(out)
    return out.div_(len(fifos))


class BatchedVocoder:
    """The HiFi-GAN decoder of one model, streaming any number of segments at once.

    ``open`` starts a segment (its speaker, its speed); ``push`` takes the next latents of any
    of the open segments ([1, n, C] each, on the decoder's device) and returns, per segment,
    the output samples (1-D, at the decoder's output rate) that no later latent can change;
    ``final`` says a segment ends there and returns the rest. The weights are read once, here:
    build it under the model lock, and push with the lock held.
    """

    def __init__(self, decoder: HifiDecoder) -> None:
        from TTS.vocoder.models.hifigan_generator import ResBlock1

        generator = decoder.waveform_decoder
        if hasattr(generator, "lin_pre") or not all(
            isinstance(block, ResBlock1) for block in generator.resblocks
        ):
            raise ValueError("only HiFi-GAN generators of ResBlock1 without lin_pre stream")
        self._decoder = decoder
        self._generator = generator
        layout = _Layout()
        self._pre = _Conv(generator.conv_pre, layout)
        kernels = generator.num_kernels
        self._levels = [
            (
                _ConvTranspose(up, layout, _LRELU_SLOPE),
                [_ResBlock(generator.resblocks[i * kernels + j], layout) for j in range(kernels)],
                layout.slot(lambda: [_Fifo() for _ in range(kernels)]),
            )
            for i, up in enumerate(generator.ups)
        ]
        self._post = _Conv(generator.conv_post, layout, _POST_LRELU_SLOPE)
        self._layout = layout

    def open(self, speaker_embedding: torch.Tensor, *, length_scale: float = 1.0) -> VocoderRow:
        """A new segment spoken by ``speaker_embedding`` at ``length_scale`` (1 / speed)."""
        decoder, generator, g = self._decoder, self._generator, speaker_embedding
        # As HifiDecoder.forward (and coqui's speed change before it): linear resampling stages.
        scales = [] if length_scale == 1.0 else [length_scale]
        scales.append(decoder.ar_mel_length_compression / decoder.output_hop_length)
        if decoder.output_sample_rate != decoder.input_sample_rate:
            scales.append(decoder.output_sample_rate / decoder.input_sample_rate)
        conds = [generator.cond_layer(g) if hasattr(generator, "cond_layer") else None]
        for i in range(len(generator.ups)):
            conds.append(generator.conds[i](g) if generator.cond_in_each_up_layer else None)
        return VocoderRow(
            [factory() for factory in self._layout.factories],
            [_Resample(scale) for scale in scales],
            conds,
        )

    def push(self, pushes: Sequence[tuple[VocoderRow, torch.Tensor, bool]]) -> list[torch.Tensor]:
        """Each ``(row, latents, final)``'s new samples, in order; every row at most once."""
        import torch

        rows = [row for row, _, _ in pushes]
        finals = [final for _, _, final in pushes]
        if len({id(row) for row in rows}) != len(rows):
            raise ValueError("a segment was pushed twice in one batch")
        xs = []
        for row, latents, final in pushes:
            if row.done:
                raise RuntimeError("this segment's decoder has already been flushed")
            row.done = final
            x = latents.transpose(1, 2)
            for resampler in row.resamplers:
                x = resampler.push(x, final)
            xs.append(x)
        o = self._pre.push(rows, xs, finals, add=_stacked(rows, 0))
        for level, (up, blocks, mean_slot) in enumerate(self._levels, start=1):
            o = up.push(rows, o, finals, add=_stacked(rows, level))
            branches = [block.push(rows, o, finals) for block in blocks]
            o = [
                _mean(row.states[mean_slot], [branch[index] for branch in branches])
                for index, row in enumerate(rows)
            ]
        return [torch.tanh(out).reshape(-1) for out in self._post.push(rows, o, finals)]


def _stacked(rows: Sequence[VocoderRow], level: int) -> torch.Tensor | None:
    """The rows' conditioning for ``level`` as one [B, C, 1] addend (None: unconditioned)."""
    import torch

    conds = [row.conds[level] for row in rows]
    if conds[0] is None:
        return None
    return conds[0] if len(conds) == 1 else torch.cat(conds)


def lookahead_latents(decoder: HifiDecoder) -> int:
    """How many latents past a sample the decoder must see before it emits that sample: the
    right half of its receptive field, rounded up, plus one for the linear resampling.

    The stream loop waits for this many latents beyond its first chunk, so that chunk holds
    the audio it was sized for rather than a few milliseconds of it.
    """
    generator = decoder.waveform_decoder
    frames = float(generator.conv_pre.padding[0])
    rate = 1
    for i, up in enumerate(generator.ups):
        rate *= up.stride[0]
        blocks = generator.resblocks[i * generator.num_kernels : (i + 1) * generator.num_kernels]
        reach = max(
            sum(int(conv.padding[0]) for conv in (*block.convs1, *block.convs2)) for block in blocks
        )
        frames += (math.ceil(up.padding[0] / up.stride[0]) * up.stride[0] + reach) / rate
    frames += generator.conv_post.padding[0] / rate
    per_latent = decoder.ar_mel_length_compression / decoder.output_hop_length
    per_latent *= decoder.output_sample_rate / decoder.input_sample_rate
    return math.ceil(frames / per_latent) + 1
