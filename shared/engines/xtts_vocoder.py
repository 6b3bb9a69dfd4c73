"""XTTS's HiFi-GAN decoder run incrementally: each latent decoded once, whatever the chunking.

coqui's ``inference_stream`` re-decodes every latent so far at each chunk (quadratic in the
segment's length). The decoder is a stack of linear resamplers and non-causal convolutions, so
each layer here keeps the tail of its input that its next outputs still need, and emits only the
outputs that no later input can change; the final push pads the end with the zeros a whole decode
pads with. Every output sample is computed once, from the same inputs as a whole decode: the
stream equals ``HifiDecoder.forward`` of the same latents up to float rounding (tests measure
it), at the cost of the whole decode plus a few kernel calls per chunk.

The price of a non-causal decoder is lookahead: audio lags the latents by the right half of its
receptive field (``lookahead_latents``: 5 latents = 232 ms for XTTS-v2's decoder), held back until
later latents arrive.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

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
    output equals the whole-sequence one and is emitted once both its inputs exist."""

    def __init__(self, scale: float) -> None:
        self._scale = scale
        # torch turns the scale factor into 1/scale in double, then into the float it indexes with.
        self._step = np.float32(1.0 / scale)
        self._kept: torch.Tensor | None = None  # inputs [base, seen), [B, C, n]
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


def _activated(parts: list[torch.Tensor], new: int, slope: float | None, at: int) -> torch.Tensor:
    """``parts`` joined in one copy, with the leaky ReLU applied in place to the ``new``
    samples from ``at`` (the kept tail is stored activated): one pass over the input, as the
    whole decode's own activation is."""
    import torch
    import torch.nn.functional as F

    joined = torch.cat(parts, dim=-1) if len(parts) > 1 else parts[0].clone()
    if slope is not None and new:
        F.leaky_relu_(joined[..., at : at + new], slope)
    return joined


class _Conv:
    """A same-padded ``Conv1d`` over a stream (after an optional leaky ReLU): zeros before the
    start and after the end, its input's tail kept for the next outputs."""

    def __init__(self, conv: torch.nn.Conv1d, slope: float | None = None) -> None:
        self._weight, self._bias = conv.weight.detach(), conv.bias
        self._dilation = conv.dilation[0]
        self._pad = int(conv.padding[0])  # type: ignore[index]
        if 2 * self._pad != self._dilation * (conv.kernel_size[0] - 1) or conv.stride[0] != 1:
            raise ValueError(f"not a same-padded stride-1 convolution: {conv}")
        self._slope = slope
        self._tail: torch.Tensor | None = None

    def push(self, x: torch.Tensor, final: bool) -> torch.Tensor:
        import torch.nn.functional as F

        pad = self._pad
        head = x.new_zeros(*x.shape[:-1], pad) if self._tail is None else self._tail
        parts = [head, x, x.new_zeros(*x.shape[:-1], pad)] if final else [head, x]
        x = _activated(parts, x.shape[-1], self._slope, head.shape[-1])
        if x.shape[-1] <= 2 * pad:
            self._tail = x
            return x.new_zeros(x.shape[0], self._weight.shape[0], 0)
        self._tail = x[..., x.shape[-1] - 2 * pad :]
        return F.conv1d(x, self._weight, self._bias, dilation=self._dilation)


class _ConvTranspose:
    """A leaky ReLU then a ``ConvTranspose1d`` upsampler over a stream: output ``t`` is emitted
    once every input that reaches it has arrived; inputs before the start and after the end
    are zeros."""

    def __init__(self, conv: torch.nn.ConvTranspose1d, slope: float) -> None:
        self._weight, self._bias = conv.weight.detach(), conv.bias
        self._stride, self._kernel = conv.stride[0], conv.kernel_size[0]
        self._pad = int(conv.padding[0])  # type: ignore[index]
        self._slope = slope
        self._kept: torch.Tensor | None = None
        self._start = 0  # the global index of the first kept input (negative: leading zeros)
        self._seen = 0
        self._emitted = 0

    def push(self, x: torch.Tensor, final: bool) -> torch.Tensor:
        import torch.nn.functional as F

        u, k, pad = self._stride, self._kernel, self._pad
        if self._kept is None:
            zeros = max(0, math.ceil((k - pad) / u) - 1)  # so output 0 has all its inputs
            head, self._start = x.new_zeros(*x.shape[:-1], zeros), -zeros
        else:
            head = self._kept
        parts = [head, x]
        if final:
            parts.append(x.new_zeros(*x.shape[:-1], math.ceil(pad / u)))
        inputs = _activated(parts, x.shape[-1], self._slope, head.shape[-1])
        self._seen += x.shape[-1]
        end = (self._start + inputs.shape[-1]) * u - pad
        if final:
            end = min(end, (self._seen - 1) * u - 2 * pad + k)  # ConvTranspose1d's length
        keep_from = max(self._start, math.ceil((end + pad - k + 1) / u))
        kept = inputs[..., : head.shape[-1] + x.shape[-1]]  # without the closing zeros
        if end <= self._emitted:
            self._kept = kept
            return x.new_zeros(x.shape[0], self._weight.shape[1], 0)
        y = F.conv_transpose1d(inputs, self._weight, self._bias, stride=u)
        offset = self._start * u - pad  # the global index of y[..., 0]
        out = y[..., self._emitted - offset : end - offset]
        self._emitted = end
        self._kept = kept[..., keep_from - self._start :]
        self._start = keep_from
        return out


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
            else:
                self._parts[0] = part[..., used:]
        self.size -= at


class _ResBlock:
    """coqui's ResBlock1: three (lrelu, dilated conv, lrelu, conv) branches, each added back
    onto its input, which waits in a FIFO for the branch's delayed output."""

    def __init__(self, block: torch.nn.Module) -> None:
        self._layers = [
            (_Conv(first, _LRELU_SLOPE), _Conv(second, _LRELU_SLOPE), _Fifo())
            for first, second in zip(block.convs1, block.convs2, strict=True)  # type: ignore[arg-type]
        ]

    def push(self, x: torch.Tensor, final: bool) -> torch.Tensor:
        for first, second, waiting in self._layers:
            waiting.append(x)
            x = second.push(first.push(x, final), final)  # a fresh tensor: safe to add into
            waiting.add_into(x)
        return x


class _Mean:
    """The mean of streams of the same positions arriving with different delays."""

    def __init__(self, count: int) -> None:
        self._fifos = [_Fifo() for _ in range(count)]

    def push(self, parts: list[torch.Tensor]) -> torch.Tensor:
        for fifo, part in zip(self._fifos, parts, strict=True):
            fifo.append(part)
        ready = min(fifo.size for fifo in self._fifos)
        out = parts[0].new_zeros(*parts[0].shape[:-1], ready)
        for fifo in self._fifos:
            fifo.add_into(out)
        return out.div_(len(self._fifos))


class StreamingDecoder:
    """One segment's audio from its GPT latents, pushed a chunk at a time.

    ``push`` takes the next latents ([1, n, C], on the decoder's device) and returns the output
    samples (1-D, at the decoder's output rate) that no later latent can change; ``final=True``
    says the segment ends there and returns the rest. Build one per segment, under the model
    lock: it reads the decoder's weights once, at construction.
    """

    def __init__(
        self, decoder: HifiDecoder, speaker_embedding: torch.Tensor, *, length_scale: float = 1.0
    ) -> None:
        from TTS.vocoder.models.hifigan_generator import ResBlock1

        generator = decoder.waveform_decoder
        if hasattr(generator, "lin_pre") or not all(
            isinstance(block, ResBlock1) for block in generator.resblocks
        ):
            raise ValueError("only HiFi-GAN generators of ResBlock1 without lin_pre stream")
        # As HifiDecoder.forward (and coqui's speed change before it): linear resampling stages.
        scales = [] if length_scale == 1.0 else [length_scale]
        scales.append(decoder.ar_mel_length_compression / decoder.output_hop_length)
        if decoder.output_sample_rate != decoder.input_sample_rate:
            scales.append(decoder.output_sample_rate / decoder.input_sample_rate)
        self._resamplers = [_Resample(scale) for scale in scales]
        g = speaker_embedding
        self._pre = _Conv(generator.conv_pre)
        self._pre_cond = generator.cond_layer(g) if hasattr(generator, "cond_layer") else None
        kernels = generator.num_kernels
        self._levels = [
            (
                _ConvTranspose(up, _LRELU_SLOPE),
                generator.conds[i](g) if generator.cond_in_each_up_layer else None,
                [_ResBlock(generator.resblocks[i * kernels + j]) for j in range(kernels)],
                _Mean(kernels),
            )
            for i, up in enumerate(generator.ups)
        ]
        self._post = _Conv(generator.conv_post, _POST_LRELU_SLOPE)
        self._done = False

    def push(self, latents: torch.Tensor, *, final: bool = False) -> torch.Tensor:
        import torch

        if self._done:
            raise RuntimeError("this segment's decoder has already been flushed")
        self._done = final
        x = latents.transpose(1, 2)
        for resampler in self._resamplers:
            x = resampler.push(x, final)
        o = self._pre.push(x, final)
        if self._pre_cond is not None:
            o = o + self._pre_cond
        for up, cond, blocks, mean in self._levels:
            o = up.push(o, final)
            if cond is not None:
                o = o + cond
            o = mean.push([block.push(o, final) for block in blocks])
        return torch.tanh(self._post.push(o, final)).reshape(-1)


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
