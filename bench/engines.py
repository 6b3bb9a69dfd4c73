"""Engine speed: Piper's real-time factor and first-chunk latency, and XTTS streaming vs not.

XTTS runs on a random-weight checkpoint built here (no weights can be downloaded): the tiny one by
default (2 x 256, CPU-friendly, timings say nothing about real XTTS), or with ``--full-size`` the
real XTTS-v2 architecture (30 x 1024, ~450 M parameters), whose timings are those of real XTTS-v2.
``--full-size`` is meant for GPU machines: on a CPU it takes minutes. ``--xtts-dir`` benchmarks a
real model directory instead. Random weights never emit the stop token, so each run generates
exactly ``--max-audio-tokens`` tokens (21.5 per second of audio) and runs are comparable.

Run: ``python -m bench.engines [--runs N] [--full-size] [--device auto|cuda|cpu]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from shared.engines.base import Pcm
from shared.engines.piper import PiperEngine
from shared.engines.xtts import XttsEngine

PIPER_TEXT = (
    "Thanks for calling Acme. Your order shipped this morning and should arrive on Thursday. "
    "Is there anything else I can help you with?"
)
# One segment: XTTS is always called per sentence-packed segment within the language's limit.
XTTS_TEXT = "Thanks for calling Acme, your order shipped this morning and arrives on Thursday."


@dataclass(frozen=True, slots=True)
class Run:
    first_chunk_s: float
    total_s: float
    audio_s: float


def timed_stream(chunks: Callable[[], Iterator[Pcm]], sample_rate: int) -> Run:
    started = time.perf_counter()
    first = None
    samples = 0
    for chunk in chunks():
        if first is None:
            first = time.perf_counter() - started
        samples += chunk.size
    total = time.perf_counter() - started
    return Run(first if first is not None else total, total, samples / sample_rate)


def timed_whole(synthesize: Callable[[], Pcm], sample_rate: int) -> Run:
    started = time.perf_counter()
    pcm = synthesize()
    total = time.perf_counter() - started
    return Run(total, total, pcm.size / sample_rate)


def median(runs: list[Run], field: str) -> float:
    return statistics.median(getattr(run, field) for run in runs)


def bench_piper(runs: int) -> None:
    started = time.perf_counter()
    engine = PiperEngine.load()
    print(f"piper  load {time.perf_counter() - started:.2f} s   voice {engine.default_voice}")
    voice = engine.voice(engine.default_voice)
    engine.synthesize("Warm up.", voice=voice, language="en", speed=1.0)
    results = [
        timed_stream(
            lambda: engine.stream(PIPER_TEXT, voice=voice, language="en", speed=1.0),
            engine.sample_rate,
        )
        for _ in range(runs)
    ]
    total, audio = median(results, "total_s"), median(results, "audio_s")
    first = median(results, "first_chunk_s")
    print(f"piper  3 sentences, {audio:.2f} s of audio (median of {runs}):")
    print(f"         first chunk {first:.3f} s, total {total:.3f} s, RTF {total / audio:.3f}")


def bench_xtts(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-xtts-") as tmp:
        model_dir = args.xtts_dir
        if model_dir is None:
            from tests.xtts_checkpoint import build_tiny_xtts_checkpoint

            started = time.perf_counter()
            model_dir = build_tiny_xtts_checkpoint(Path(tmp), full_size=args.full_size)
            size = "full-size (30 x 1024)" if args.full_size else "tiny (2 x 256)"
            print(f"xtts   built {size} random checkpoint in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        engine = XttsEngine.load(
            model_dir,
            device=args.device,
            max_audio_tokens=args.max_audio_tokens,
            stream_chunk_tokens=args.stream_chunk_tokens,
            warmup=True,
        )
        print(
            f"xtts   load + warm-up {time.perf_counter() - started:.2f} s on {engine.device},"
            f" cap {args.max_audio_tokens} tokens, stream chunks of {args.stream_chunk_tokens}"
        )
        run_xtts(engine, args.runs)


def run_xtts(engine: XttsEngine, runs: int) -> None:
    voice, rate = engine.voice(engine.default_voice), engine.sample_rate
    whole: list[Run] = []
    streamed: list[Run] = []
    for _ in range(runs):  # interleaved, so drift in machine load hits both alike
        whole.append(
            timed_whole(
                lambda: engine.synthesize(XTTS_TEXT, voice=voice, language="en", speed=1.0), rate
            )
        )
        streamed.append(
            timed_stream(
                lambda: engine.stream(XTTS_TEXT, voice=voice, language="en", speed=1.0), rate
            )
        )
    audio = median(whole, "audio_s")
    whole_total, stream_total = median(whole, "total_s"), median(streamed, "total_s")
    print(f"xtts   one segment, {audio:.2f} s of audio (median of {runs}):")
    print(f"         non-streaming: total {whole_total:.3f} s, RTF {whole_total / audio:.3f}")
    print(
        f"         streaming:     first chunk {median(streamed, 'first_chunk_s'):.3f} s,"
        f" total {stream_total:.3f} s, RTF {stream_total / audio:.3f}"
    )
    print(f"         streaming total / non-streaming total = {stream_total / whole_total:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--full-size", action="store_true", help="30 x 1024 random XTTS (GPU)")
    parser.add_argument("--xtts-dir", type=Path, default=None, help="a real XTTS model directory")
    parser.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    parser.add_argument("--max-audio-tokens", type=int, default=64)
    parser.add_argument("--stream-chunk-tokens", type=int, default=20)
    parser.add_argument("--skip-piper", action="store_true")
    args = parser.parse_args()
    # transformers warns about GPT-2 token ids XTTS never uses; keep the figures readable.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    if not args.skip_piper:
        bench_piper(args.runs)
    bench_xtts(args)


if __name__ == "__main__":
    main()
