"""The XTTS engine bench's results: their shape (what ``--json`` writes), their table and chart.

Every figure is measured for both kinds in the same run; ratios (ours / stock) are derived here,
for the table, and not stored: the JSON keeps the measurements themselves.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Generic, TypeVar

from pydantic import BaseModel

F = TypeVar("F", bound=BaseModel)


class ColdStart(BaseModel):
    """Seconds from spawning a fresh process: its code running, model ready, first job done;
    the process's peak memory (MiB) when ready and after that job."""

    process_start_s: float
    model_ready_s: float
    first_job_s: float
    ready_mib: float
    first_job_mib: float


class OneStream(BaseModel):
    """Sequential streams of one segment: time to first audio, and stream time / audio time."""

    first_audio_p50_s: float
    first_audio_p95_s: float
    rtf: float
    audio_s: float


class StreamingCost(BaseModel):
    """One segment streamed and made whole (medians): the target is ratio <= 1.15."""

    stream_s: float
    whole_s: float
    ratio: float
    audio_s: float


class Level(BaseModel):
    """``streams`` clients at once: audio seconds made per wall second, first audio as each
    client saw it (waits included), and peak memory over what the process held before."""

    throughput: float
    first_audio_p50_s: float
    first_audio_p95_s: float
    extra_mib: float


class Compared(BaseModel, Generic[F]):
    stock: F
    ours: F


class LengthCost(BaseModel):
    tokens: int
    cost: Compared[StreamingCost]


class LevelPair(BaseModel):
    streams: int
    requests: int
    result: Compared[Level]


class Setup(BaseModel):
    device: str
    device_name: str
    checkpoint: str
    torch: str
    max_audio_tokens: int
    stream_chunk_tokens: int
    requests: int
    memory_metric: str
    # True: the two cold-start processes ran at once, beside the rest of the run (a quick smoke
    # run), so their figures are not each one's own.
    cold_start_overlapped: bool


class BenchResult(BaseModel):
    setup: Setup
    cold_start: Compared[ColdStart]
    one_stream: Compared[OneStream]
    streaming_cost: list[LengthCost]
    concurrency: list[LevelPair]


def ratio(ours: float, stock: float) -> float | None:
    return ours / stock if stock > 0 and math.isfinite(ours / stock) else None


def _rows(result: BenchResult) -> Iterator[tuple[str, float, float, str]]:
    """(figure, stock, ours, number format) in the table's order."""
    cold = result.cold_start
    yield "cold start: process running (s)", *_pair(cold, "process_start_s"), ".2f"
    yield "cold start: model ready (s)", *_pair(cold, "model_ready_s"), ".2f"
    yield "cold start: first job done (s)", *_pair(cold, "first_job_s"), ".2f"
    memory = "GPU max allocated" if result.setup.memory_metric.startswith("cuda") else "RSS peak"
    yield f"memory, model ready ({memory}, MiB)", *_pair(cold, "ready_mib"), ".0f"
    yield f"memory, after first job ({memory}, MiB)", *_pair(cold, "first_job_mib"), ".0f"
    one = result.one_stream
    yield "first audio p50, one stream (s)", *_pair(one, "first_audio_p50_s"), ".3f"
    yield "first audio p95, one stream (s)", *_pair(one, "first_audio_p95_s"), ".3f"
    yield "real-time factor, one stream", *_pair(one, "rtf"), ".3f"
    for length in result.streaming_cost:
        audio = length.cost.stock.audio_s
        label = f"streaming / whole compute, {audio:.1f} s ({length.tokens} tokens)"
        yield label, *_pair(length.cost, "ratio"), ".2f"
    for level in result.concurrency:
        n = level.streams
        yield f"throughput, {n} streams (audio s / s)", *_pair(level.result, "throughput"), ".2f"
        yield f"first audio p95, {n} streams (s)", *_pair(level.result, "first_audio_p95_s"), ".3f"
        yield f"extra memory, {n} streams (MiB)", *_pair(level.result, "extra_mib"), ".0f"


def _pair(compared: Compared[F], name: str) -> tuple[float, float]:
    return getattr(compared.stock, name), getattr(compared.ours, name)


def table(result: BenchResult) -> str:
    """The results as one markdown table: stock, ours, and ours / stock on every line."""
    lines = ["| figure | stock coqui-tts | ours | ours / stock |", "|---|---:|---:|---:|"]
    for label, stock, ours, fmt in _rows(result):
        share = ratio(ours, stock)
        shown = f"{share:.2f}x" if share is not None else "n/a"
        lines.append(f"| {label} | {stock:{fmt}} | {ours:{fmt}} | {shown} |")
    return "\n".join(lines)


def write_chart(result: BenchResult, path: Path) -> None:
    """Throughput and p95 first audio against concurrent streams, and streaming cost against
    segment length, stock beside ours, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")  # no display on a worker or CI machine
    import matplotlib.pyplot as plt

    streams = [level.streams for level in result.concurrency]
    seconds = [length.cost.stock.audio_s for length in result.streaming_cost]
    figure, (put, first, cost) = plt.subplots(1, 3, figsize=(15, 4.5))
    for kind, style in (("stock", "o--"), ("ours", "s-")):
        levels = [getattr(level.result, kind) for level in result.concurrency]
        put.plot(streams, [level.throughput for level in levels], style, label=kind)
        first.plot(streams, [level.first_audio_p95_s for level in levels], style, label=kind)
        costs = [getattr(length.cost, kind).ratio for length in result.streaming_cost]
        cost.plot(seconds, costs, style, label=kind)
    cost.axhline(1.15, color="grey", linestyle=":", label="1.15x target")
    for axes, title, ylabel in (
        (put, "throughput", "audio s per wall s"),
        (first, "first audio, p95", "seconds"),
        (cost, "streaming / whole compute", "ratio"),
    ):
        axes.set_title(title)
        axes.set_ylabel(ylabel)
        axes.set_ylim(bottom=0)  # from zero, so the gap between the kinds reads true
        axes.grid(alpha=0.3)
        axes.legend()
    for axes in (put, first):
        axes.set_xscale("log", base=2)
        axes.set_xticks(streams, [str(n) for n in streams])
        axes.set_xlabel("concurrent streams")
    cost.set_xlabel("segment audio (s)")
    setup = result.setup
    figure.suptitle(
        f"XTTS-v2 {setup.checkpoint}, {setup.device_name}: stock coqui-tts vs ours "
        f"(cap {setup.max_audio_tokens} tokens, chunks of {setup.stream_chunk_tokens})"
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
