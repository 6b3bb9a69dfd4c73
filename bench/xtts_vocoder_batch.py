"""HiFi-GAN decode throughput: N concurrent XTTS segments decoded as one batch against one by one.

For each N, the same N segments of random GPT latents (``--latents`` each; the decoder's cost
does not depend on what the latents are) are decoded three ways, decoder only (GPT is not part
of this figure):
- whole: coqui's own ``HifiDecoder.forward`` on each segment in one piece (what ``inference``
  runs; no streaming, the baseline for the decoder's compute);
- serial: each segment streamed alone in chunks of ``--chunk`` latents, one segment after
  another (``BatchedVocoder`` with one row per call, as a lone stream decodes);
- batched: the N segments streamed in the same chunks, each chunk of all N decoded in one
  ``BatchedVocoder.push`` (as ``BatchedStreams`` decodes chunks that fall due together).
Throughput is seconds of audio decoded per wall second, for all N segments. The tiny
checkpoint's figures say nothing about real XTTS-v2; ``--full-size`` has its real decoder.

Run: ``python -m bench.xtts_vocoder_batch [--full-size | --xtts-dir DIR] [--device auto|cuda|cpu]
[--batches 1,4,16] [--latents 40] [--chunk 20] [--runs 3] [--threads N]``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.xtts_batch import batch_parser, run_main, timed
from bench.xtts_stock import load_stock
from shared.engines.xtts_vocoder import BatchedVocoder

KINDS: tuple[str, ...] = ("whole", "serial", "batched")


@dataclass(frozen=True, slots=True)
class Figure:
    batch: int
    kind: str
    seconds: float
    audio_s: float

    @property
    def throughput(self) -> float:
        return self.audio_s / self.seconds


def decode_whole(decoder: Any, g: Any, segments: list[Any]) -> int:
    """Each segment in one piece; returns the samples made."""
    return sum(int(decoder(latents, g=g).numel()) for latents in segments)


def decode_streamed(
    vocoder: BatchedVocoder, g: Any, segments: list[Any], chunk: int, *, together: bool
) -> int:
    """Each segment in chunks of ``chunk`` latents: all segments' chunk k in one push
    (``together``), or every push one segment's chunk, segment after segment."""
    rows = [vocoder.open(g) for _ in segments]
    total = segments[0].shape[1]
    bounds = [(start, min(total, start + chunk)) for start in range(0, total, chunk)]
    made = 0
    if together:
        for start, end in bounds:
            pushes = [
                (row, one[:, start:end], end == total)
                for row, one in zip(rows, segments, strict=True)
            ]
            made += sum(int(pcm.numel()) for pcm in vocoder.push(pushes))
        return made
    for row, one in zip(rows, segments, strict=True):
        for start, end in bounds:
            (pcm,) = vocoder.push([(row, one[:, start:end], end == total)])
            made += int(pcm.numel())
    return made


def bench(args: argparse.Namespace, model_dir: Path, device: str) -> list[Figure]:
    import torch

    stock = load_stock(model_dir, device=device, max_audio_tokens=8, stream_chunk_tokens=8)
    decoder, g = stock.model.hifigan_decoder, stock.speaker_embedding
    width = int(stock.model.args.decoder_input_dim)
    rate = stock.sample_rate
    vocoder = BatchedVocoder(decoder)
    generator = torch.Generator().manual_seed(0)
    figures = []
    for size in args.batches:
        segments = [
            torch.randn(1, args.latents, width, generator=generator).to(device) for _ in range(size)
        ]
        runners: dict[str, Callable[[], int]] = {
            "whole": lambda s=segments: decode_whole(decoder, g, s),
            "serial": lambda s=segments: decode_streamed(vocoder, g, s, args.chunk, together=False),
            "batched": lambda s=segments: decode_streamed(vocoder, g, s, args.chunk, together=True),
        }
        for kind in KINDS:
            with torch.inference_mode():
                seconds, samples = timed(runners[kind], device, args.runs)
            figure = Figure(batch=size, kind=kind, seconds=seconds, audio_s=samples / rate)
            figures.append(figure)
            print(f"  N={size:<3} {kind:<8} {figure.throughput:8.2f} audio s/s", flush=True)
    return figures


def table(figures: Sequence[Figure]) -> str:
    by = {(f.batch, f.kind): f for f in figures}
    lines = [
        "| N | whole audio s/s | serial stream audio s/s | batched stream audio s/s "
        "| batched / serial | batched / whole |",
        "|---|---|---|---|---|---|",
    ]
    for size in sorted({f.batch for f in figures}):
        whole, serial, batched = (by[(size, kind)] for kind in KINDS)
        lines.append(
            f"| {size} | {whole.throughput:.2f} | {serial.throughput:.2f} | "
            f"{batched.throughput:.2f} | {batched.throughput / serial.throughput:.2f}x | "
            f"{batched.throughput / whole.throughput:.2f}x |"
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = batch_parser(__doc__, [1, 4, 16])
    parser.add_argument("--latents", type=int, default=40, help="GPT latents per segment")
    parser.add_argument("--chunk", type=int, default=20, help="latents per streamed chunk")
    args = parser.parse_args(argv)
    if args.latents < 1 or args.chunk < 1 or args.runs < 1:
        parser.error("--latents, --chunk and --runs must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    detail = f"{args.latents} latents per segment in chunks of {args.chunk}, median of {args.runs}"
    run_main(args, detail, bench, table)


if __name__ == "__main__":
    main()
