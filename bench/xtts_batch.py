"""GPT decode throughput: N XTTS requests batched (``BatchedGpt``) against one at a time.

For each N, the same N requests (different texts, the engine's sampling settings, seeded) are
decoded three ways, GPT only (HiFi-GAN is not part of this figure):
- stock: coqui's own ``GPT.generate``, one request after another (what ``Xtts.inference`` runs);
- serial: ``BatchedGpt`` with a batch of one, one request after another (the same kernels as
  batched, so the ratio is batching alone);
- batched: all N joined at once into one ``BatchedGpt`` and stepped together;
- compiled (with ``--compile MODE``): batched, its decode step through ``torch.compile`` (shapes
  dynamic: the batch and the attended span change between steps; ``reduce-overhead`` adds CUDA
  graphs on a GPU). Compilation happens in the untimed warm-up run.
Random weights never emit the stop token, so each request makes exactly ``--tokens`` tokens and
runs compare. Tokens/s counts generated tokens of all N requests over the wall time, prefill
included; decode tokens/s counts them over the time spent in ``step`` alone (the prompts'
prefill, one request at a time in every kind, left out; stock's cannot be split off). The tiny
checkpoint's figures say nothing about real XTTS-v2; ``--full-size`` has its real compute
(meant for a GPU; on a CPU keep ``--tokens`` and ``--batches`` small).

Run: ``python -m bench.xtts_batch [--full-size | --xtts-dir DIR] [--device auto|cuda|cpu]
[--batches 1,4,8] [--tokens 24] [--runs 3] [--threads N] [--compile MODE]``.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from bench.xtts_engine import _int_list, checkpoint_dir, device_name, resolve_device
from bench.xtts_stock import load_stock
from shared.engines.xtts import SAMPLING
from shared.engines.xtts_batch import BatchedGpt, GptRequest
from shared.engines.xtts_batch_sampling import SamplingSettings

TEXTS: tuple[str, ...] = (
    "thanks for calling acme, your order shipped this morning.",
    "is there anything else i can help you with?",
    "your appointment is on thursday at three in the afternoon.",
    "one moment please.",
    "the weather tomorrow will be sunny with a light breeze from the west.",
    "please hold while i transfer you to a specialist.",
    "we have received your payment, thank you.",
    "goodbye!",
)
KINDS: tuple[str, ...] = ("stock", "serial", "batched")
T = TypeVar("T")
F = TypeVar("F")


@dataclass(frozen=True, slots=True)
class Made:
    """What one run generated, and the seconds its decode steps took (None: not measurable)."""

    tokens: int
    decode_s: float | None = None

    def __add__(self, other: Made) -> Made:
        decode = None
        if self.decode_s is not None and other.decode_s is not None:
            decode = self.decode_s + other.decode_s
        return Made(self.tokens + other.tokens, decode)


@dataclass(frozen=True, slots=True)
class Figure:
    batch: int
    kind: str
    seconds: float
    made: Made

    @property
    def tokens_per_s(self) -> float:
        return self.made.tokens / self.seconds

    @property
    def decode_tokens_per_s(self) -> float | None:
        decode = self.made.decode_s
        return None if decode is None else self.made.tokens / decode


def requests(model: Any, cond_latent: Any, count: int, tokens: int) -> list[GptRequest]:
    sampling = SamplingSettings.from_kwargs(asdict(SAMPLING))
    return [
        GptRequest(
            text_tokens=model.tokenizer.encode(TEXTS[i % len(TEXTS)], lang="en"),
            cond_latent=cond_latent,
            max_new_tokens=tokens,
            sampling=sampling,
            seed=i,
        )
        for i in range(count)
    ]


def coqui_generate(gpt: Any, request: GptRequest) -> Any:
    """coqui's own ``GPT.generate`` of ``request`` (what ``Xtts.inference`` runs): [1, n] codes."""
    import torch

    sampling = request.sampling
    text = torch.IntTensor(list(request.text_tokens)).unsqueeze(0).to(request.cond_latent.device)
    with torch.inference_mode():
        return gpt.generate(
            cond_latents=request.cond_latent,
            text_inputs=text,
            do_sample=True,
            top_k=sampling.top_k,
            top_p=sampling.top_p,
            temperature=sampling.temperature,
            repetition_penalty=sampling.repetition_penalty,
            num_return_sequences=1,
            num_beams=1,
            length_penalty=1.0,
            output_attentions=False,
        )


def run_stock(model: Any, batch: list[GptRequest]) -> Made:
    """coqui's generate, one request after another."""
    made = Made(0)
    for request in batch:
        made += Made(int(coqui_generate(model.gpt, request).shape[-1]))
    return made


def run_batched(gpt: BatchedGpt, batch: list[GptRequest]) -> Made:
    """Join all of ``batch`` (as many as fit), step until every request stops. ``step`` ends
    with the sampled tokens on the host, so its time is the device's too."""
    tokens, decode = 0, 0.0
    pending = list(batch)
    while pending or gpt.active:
        while pending and gpt.free:
            gpt.join(pending.pop(0))
        started = time.perf_counter()
        tokens += len(gpt.step())
        decode += time.perf_counter() - started
    return Made(tokens, decode)


def run_serial(gpt: BatchedGpt, batch: list[GptRequest]) -> Made:
    made = Made(0, 0.0)
    for request in batch:
        made += run_batched(gpt, [request])
    return made


def timed(run: Callable[[], T], device: str, runs: int) -> tuple[float, T]:
    """Median wall seconds of ``runs`` runs after one warm-up run, and the median run's output."""
    import torch

    def once() -> tuple[float, T]:
        started = time.perf_counter()
        made = run()
        if device.startswith("cuda"):
            torch.cuda.synchronize(device)
        return time.perf_counter() - started, made

    once()
    results = sorted((once() for _ in range(runs)), key=lambda result: result[0])
    return results[len(results) // 2]


def compiled(gpt: BatchedGpt, mode: str) -> BatchedGpt:
    """``gpt`` with its per-step forward compiled: the bench's trial of torch.compile, kept out
    of the engine until a figure shows it helps."""
    import torch

    forward = gpt._forward  # the bench reaches in: the engine offers no such switch
    forward.step = torch.compile(forward.step, dynamic=True, mode=mode)  # type: ignore[method-assign]
    return gpt


def bench(args: argparse.Namespace, model_dir: Path, device: str) -> list[Figure]:
    stock = load_stock(
        model_dir, device=device, max_audio_tokens=args.tokens, stream_chunk_tokens=args.tokens
    )
    model, cond = stock.model, stock.gpt_cond_latent
    serial_gpt = BatchedGpt(model.gpt, device=device, max_batch=1)
    figures = []
    for size in args.batches:
        batch = requests(model, cond, size, args.tokens)
        batched_gpt = BatchedGpt(model.gpt, device=device, max_batch=size)
        runners: dict[str, Callable[[], Made]] = {
            "stock": lambda b=batch: run_stock(model, b),
            "serial": lambda b=batch: run_serial(serial_gpt, b),
            "batched": lambda b=batch, g=batched_gpt: run_batched(g, b),
        }
        if args.compile:
            gpt = compiled(BatchedGpt(model.gpt, device=device, max_batch=size), args.compile)
            runners["compiled"] = lambda b=batch, g=gpt: run_batched(g, b)
        for kind in runners:
            seconds, made = timed(runners[kind], device, args.runs)
            figure = Figure(batch=size, kind=kind, seconds=seconds, made=made)
            figures.append(figure)
            decode = figure.decode_tokens_per_s
            print(
                f"  N={size:<3} {kind:<8} {figure.tokens_per_s:9.1f} tokens/s"
                + ("" if decode is None else f", decode {decode:9.1f} tokens/s"),
                flush=True,
            )
        del batched_gpt
    return figures


def table(figures: Sequence[Figure]) -> str:
    by = {(f.batch, f.kind): f for f in figures}
    with_compiled = any(f.kind == "compiled" for f in figures)
    extra = " compiled decode tokens/s | decode compiled / batched |" if with_compiled else ""
    lines = [
        "| N | stock tokens/s | serial tokens/s | batched tokens/s | batched / serial "
        "| batched / stock | serial decode tokens/s | batched decode tokens/s "
        "| decode batched / serial |" + extra,
        "|---|---|---|---|---|---|---|---|---|" + ("---|---|" if with_compiled else ""),
    ]
    for size in sorted({f.batch for f in figures}):
        stock, serial, batched = (by[(size, kind)] for kind in KINDS)
        serial_decode = serial.decode_tokens_per_s or math.nan
        batched_decode = batched.decode_tokens_per_s or math.nan
        line = (
            f"| {size} | {stock.tokens_per_s:.1f} | {serial.tokens_per_s:.1f} | "
            f"{batched.tokens_per_s:.1f} | {batched.tokens_per_s / serial.tokens_per_s:.2f}x | "
            f"{batched.tokens_per_s / stock.tokens_per_s:.2f}x | {serial_decode:.1f} | "
            f"{batched_decode:.1f} | {batched_decode / serial_decode:.2f}x |"
        )
        if with_compiled:
            decode = by[(size, "compiled")].decode_tokens_per_s or math.nan
            line += f" {decode:.1f} | {decode / batched_decode:.2f}x |"
        lines.append(line)
    return "\n".join(lines)


def batch_parser(description: str, batches: list[int]) -> argparse.ArgumentParser:
    """The options ``run_main`` reads (checkpoint, device, threads), N and runs."""
    parser = argparse.ArgumentParser(description=description.split("\n\n")[0])
    parser.add_argument("--full-size", action="store_true", help="30 x 1024 random XTTS (GPU)")
    parser.add_argument("--xtts-dir", type=Path, default=None, help="a model directory to use")
    parser.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    parser.add_argument("--batches", type=_int_list, default=batches, help="values of N")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per figure (median)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    return parser


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = batch_parser(__doc__, [1, 4, 8])
    parser.add_argument("--tokens", type=int, default=24, help="tokens per request")
    parser.add_argument(
        "--compile", choices=["default", "reduce-overhead", "max-autotune"], default=None,
        help="also run the batched decode step through torch.compile in this mode",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.tokens < 1 or args.runs < 1:
        parser.error("--tokens and --runs must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    run_main(args, f"{args.tokens} tokens per request, median of {args.runs}", bench, table)


def run_main(
    args: argparse.Namespace,
    detail: str,
    measure: Callable[[argparse.Namespace, Path, str], Sequence[F]],
    tabulate: Callable[[Sequence[F]], str],
) -> None:
    """The checkpoint, device and threads ``args`` name; ``measure`` on them; its table."""
    # transformers warns about GPT-2 token ids XTTS never uses; keep the figures readable.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import torch

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device, cuda=torch.cuda.is_available())
    with tempfile.TemporaryDirectory() as tmp:
        model_dir, name = checkpoint_dir(args, Path(tmp))
        print(
            f"{name} on {device_name(device)}, {torch.get_num_threads()} torch threads, {detail}",
            flush=True,
        )
        figures = measure(args, model_dir, device)
    print()
    print(tabulate(figures))


if __name__ == "__main__":
    main()
